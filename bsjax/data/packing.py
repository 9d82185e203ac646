"""Packing: documents -> one token stream (EOS after each) -> fixed-length rows.

Rows are non-overlapping windows of `ctx_len + 1` tokens (inputs and shifted
targets come from one row); the incomplete tail is dropped. The packed array
is cached on disk as `.npy` (uint16 when every id fits, else int32), keyed by
(corpus identity, tokenizer identity, ctx_len, split, max_tokens), and written
to a temporary name then renamed, so a killed build leaves no partial cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bsjax.data.documents import MAX_UNDECODABLE_FRACTION
from bsjax.data.errors import DataError
from bsjax.data.files import identity_key
from bsjax.data.progress import Progress

log = logging.getLogger(__name__)

_FLUSH_TOKENS = 1 << 20  # tokens buffered before a write to the scratch file
_COPY_ROWS = 1 << 14  # rows per block when the scratch file becomes the .npy


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id (< vocab_size) fits in 16 bits, else int32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.int32)


def tokenizer_cache_identity(tokenizer) -> dict:
    """The tokenizer's identity minus its file location (the sha256 decides)."""
    return {k: v for k, v in tokenizer.identity().items() if k != "path"}


def cache_key(
    corpus_identity: dict, tokenizer_identity: dict, ctx_len: int, split: str, max_tokens: int
) -> dict:
    """Everything a packed array depends on, as a JSON dict."""
    return {
        "corpus": {k: v for k, v in corpus_identity.items() if k != "path"},
        "tokenizer": tokenizer_identity,
        "ctx_len": int(ctx_len),
        "split": split,
        "max_tokens": int(max_tokens),
        "format": 1,
    }


@dataclass
class PackedSplit:
    """A packed split: rows `tokens_NL` (memmap, N rows of L = ctx_len + 1) and its stats."""

    tokens_NL: np.ndarray
    path: Path
    stats: dict
    built: bool  # False when it came from the cache


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


REPLACEMENT_CHARACTER = "\ufffd"  # what a UTF-8 decoder puts for bytes it cannot decode


def pack_to_file(
    texts: Iterable[str], tokenizer, seq_len: int, max_tokens: int, out_path: Path
) -> dict:
    """Pack `texts` into rows of `seq_len` tokens and write them atomically to `out_path` (.npy).

    Stops reading documents once `max_tokens` tokens (rounded down to whole
    rows) are packed; 0 means read everything. Reports progress (documents,
    tokens, rate; an ETA under a token cap) on stderr. Returns the packing stats.
    """
    dtype = token_dtype(tokenizer.vocab_size)
    limit = (max_tokens // seq_len) * seq_len if max_tokens else None
    if max_tokens and not limit:
        raise DataError(f"max_tokens: {max_tokens} is less than one sequence of {seq_len} tokens")
    eos = np.array([tokenizer.eos_id], dtype=np.int64)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    scratch_fd, scratch = tempfile.mkstemp(
        dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".raw"
    )
    final_tmp = None
    try:
        written = documents = 0
        pending: list[np.ndarray] = []
        pending_tokens = 0
        characters = replaced = 0
        progress = Progress(
            f"packing {out_path.stem.split('-')[0]}",
            0,
            limit or 0,
            item="documents",
            unit="tokens",
        )
        reported = 0
        with os.fdopen(scratch_fd, "wb") as raw:
            for text in texts:
                characters += len(text)
                replaced += text.count(REPLACEMENT_CHARACTER)
                ids_T = np.concatenate([tokenizer.encode(text).astype(np.int64), eos])
                if ids_T.size and (ids_T.min() < 0 or ids_T.max() >= tokenizer.vocab_size):
                    raise DataError(f"tokenizer: produced ids outside [0, {tokenizer.vocab_size})")
                documents += 1
                if limit is not None:
                    ids_T = ids_T[: limit - written - pending_tokens]
                pending.append(ids_T.astype(dtype))
                pending_tokens += ids_T.size
                if pending_tokens >= _FLUSH_TOKENS:
                    raw.write(np.concatenate(pending).tobytes())
                    progress.update(pending_tokens, pending_tokens, documents - reported)
                    written, pending, pending_tokens = written + pending_tokens, [], 0
                    reported = documents
                if limit is not None and written + pending_tokens >= limit:
                    break
            if pending:
                raw.write(np.concatenate(pending).tobytes())
                progress.update(pending_tokens, pending_tokens, documents - reported)
                written += pending_tokens
        progress.close()
        if characters and replaced > MAX_UNDECODABLE_FRACTION * characters:
            raise DataError(
                f"the corpus is mostly not text: {replaced} of {characters} characters are "
                f"U+FFFD (bytes that are not UTF-8); give a folder of UTF-8 text files"
            )
        rows = written // seq_len
        if rows == 0:
            raise DataError(
                f"split has {written} tokens, fewer than one sequence of {seq_len}; "
                "use a shorter ctx_len or more documents"
            )
        stream_T = np.memmap(scratch, dtype=dtype, mode="r", shape=(written,))
        fd, final_tmp = tempfile.mkstemp(
            dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".npy"
        )
        os.close(fd)
        out_NL = np.lib.format.open_memmap(final_tmp, mode="w+", dtype=dtype, shape=(rows, seq_len))
        for start in range(0, rows, _COPY_ROWS):
            stop = min(start + _COPY_ROWS, rows)
            out_NL[start:stop] = stream_T[start * seq_len : stop * seq_len].reshape(
                stop - start, seq_len
            )
        out_NL.flush()
        del out_NL, stream_T
        with open(final_tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(final_tmp, out_path)
        final_tmp = None
        return {
            "num_sequences": rows,
            "seq_len": seq_len,
            "num_tokens": rows * seq_len,
            "documents_read": documents,
            "dropped_tail_tokens": written - rows * seq_len,
            "dtype": dtype.name,
        }
    finally:
        Path(scratch).unlink(missing_ok=True)
        if final_tmp is not None:
            Path(final_tmp).unlink(missing_ok=True)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _cache_problem(npy_path: Path, meta_path: Path, seq_len: int) -> str | None:
    """Why a packed cache file cannot be used (unreadable header, wrong shape, a size or
    SHA-256 that differs from its sidecar), or None when it is sound."""
    try:
        tokens_NL = np.load(npy_path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as err:
        return f"unreadable ({type(err).__name__}: {err})"
    if tokens_NL.ndim != 2 or tokens_NL.shape[1] != seq_len:
        return f"of shape {tokens_NL.shape}, not [N, {seq_len}]"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return f"without a readable sidecar {meta_path.name}"
    expected = meta.get("stats", {}).get("num_sequences")
    if expected is not None and expected != tokens_NL.shape[0]:
        return f"{tokens_NL.shape[0]} sequences long where its sidecar says {expected}"
    if "sha256" in meta and _file_sha256(npy_path) != meta["sha256"]:
        return "not the file its sidecar's SHA-256 describes"
    return None


def load_or_pack(
    cache_dir: Path, key: dict, texts: Callable[[], Iterable[str]], tokenizer, max_tokens: int
) -> PackedSplit:
    """The packed split for `key`: from `cache_dir` when present, else packed now and cached.

    `texts` is called only on a cache miss. The `.npy` is the completion mark:
    it appears (by rename) only once fully written; its `.json` sidecar holds
    the key and stats for people reading the cache.
    """
    cache_dir = Path(cache_dir)
    seq_len = key["ctx_len"] + 1
    stem = f"{key['split'].replace('/', '_')}-L{seq_len}-{identity_key(key)}"
    npy_path, meta_path = cache_dir / f"{stem}.npy", cache_dir / f"{stem}.json"
    built = False
    if npy_path.exists():
        problem = _cache_problem(npy_path, meta_path, seq_len)
        if problem is not None:
            log.warning("the packed cache %s is %s: rebuilding it", npy_path, problem)
            npy_path.unlink()
            meta_path.unlink(missing_ok=True)
    if not npy_path.exists():
        stats = pack_to_file(texts(), tokenizer, seq_len, max_tokens, npy_path)
        meta = {"key": key, "stats": stats, "sha256": _file_sha256(npy_path)}
        _atomic_write_bytes(meta_path, json.dumps(meta, indent=1).encode())
        built = True
    tokens_NL = np.load(npy_path, mmap_mode="r")
    stats = {
        "num_sequences": int(tokens_NL.shape[0]),
        "seq_len": seq_len,
        "num_tokens": int(tokens_NL.size),
        "dtype": tokens_NL.dtype.name,
    }
    if meta_path.exists():
        stats = {**json.loads(meta_path.read_text())["stats"], **stats}
    return PackedSplit(tokens_NL, npy_path, stats, built)
