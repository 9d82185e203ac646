"""Tokenized shards: a split's files in fixed groups, each tokenized into one `.npy`.

A shard is a run of consecutive files of the corpus plan (small files are
grouped up to `SHARD_TARGET_BYTES`, a large file is a shard of its own), so
the shards depend on the corpus alone, never on how many workers tokenize
them. `tokenize_shard` is what a worker process runs: it reads the shard's
documents, tokenizes them (EOS after each), and writes `NNNNN.npy` (the 1-D
token stream) and then `NNNNN.json` (counts and the sha256 of the tokens).
The `.json` is the shard's completion mark; both are written to a temporary
name and renamed, so a killed worker leaves no half shard behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from etils import epath

from bsjax.data.documents import (
    CORPUS_SUFFIXES,
    MAX_UNDECODABLE_FRACTION,
    ReadStats,
    file_texts,
)
from bsjax.data.errors import DataError
from bsjax.data.tokenizers import make_tokenizer

SHARD_TARGET_BYTES = 1 << 20  # small files are grouped into shards of about this many bytes
SHARD_FORMAT = 2
_ENCODE_BATCH = 256  # documents per tokenizer call


@dataclass(frozen=True)
class ShardSpec:
    """One shard of a split: its position and the (file split, relative path) it reads."""

    index: int
    files: tuple[tuple[str, str], ...]
    source_bytes: int  # size of its files on disk, for progress and ETA


def plan_shards(
    files: tuple[tuple[str, str], ...],
    sizes: dict[str, int],
    split: str,
    target_bytes: int | None = None,
) -> list[ShardSpec]:
    """Group the files that can hold documents of `split` into shards, in plan order.

    `target_bytes` defaults to `SHARD_TARGET_BYTES`.
    """
    target_bytes = target_bytes or SHARD_TARGET_BYTES
    specs: list[ShardSpec] = []
    group: list[tuple[str, str]] = []
    group_bytes = 0
    for file_split, rel in files:
        if file_split not in (split, ""):
            continue
        group.append((file_split, rel))
        group_bytes += sizes[rel]
        if group_bytes >= target_bytes:
            specs.append(ShardSpec(len(specs), tuple(group), group_bytes))
            group, group_bytes = [], 0
    if group:
        specs.append(ShardSpec(len(specs), tuple(group), group_bytes))
    return specs


@dataclass(frozen=True)
class ShardJob:
    """Everything a worker process needs to tokenize one shard (picklable)."""

    root: str
    split: str
    text_field: str
    validation_fraction: float
    tokenizer_kind: str
    tokenizer_path: str
    dtype: str
    out_dir: str
    spec: ShardSpec


def shard_names(index: int) -> tuple[str, str]:
    """File names of shard `index`: (tokens .npy, completion .json)."""
    return f"{index:05d}.npy", f"{index:05d}.json"


_TOKENIZERS: dict = {}


def _tokenizer(kind: str, path: str):
    """One tokenizer per worker process, built on first use."""
    if (kind, path) not in _TOKENIZERS:
        _TOKENIZERS[(kind, path)] = make_tokenizer(kind, path)
    return _TOKENIZERS[(kind, path)]


def _encode_batch(tokenizer, texts: list[str]) -> list[np.ndarray]:
    batch = getattr(tokenizer, "encode_batch", None)
    return batch(texts) if batch is not None else [tokenizer.encode(t) for t in texts]


def _describe(spec: ShardSpec) -> str:
    first, last = spec.files[0][1], spec.files[-1][1]
    return first if first == last else f"{first} .. {last} ({len(spec.files)} files)"


def _publish(local_tmp: Path, dst: epath.Path) -> None:
    """Move a finished local file to `dst` (local rename, or copy to a URL)."""
    if "://" not in str(dst):
        os.replace(local_tmp, os.fspath(dst))
        return
    tmp_dst = dst.parent / f".{dst.name}.tmp"
    epath.Path(local_tmp).copy(tmp_dst, overwrite=True)
    tmp_dst.rename(dst)
    local_tmp.unlink(missing_ok=True)


def _write_local_tmp(out_dir: epath.Path, suffix: str) -> tuple[int, Path]:
    local_dir = Path(os.fspath(out_dir)) if "://" not in str(out_dir) else None
    fd, tmp = tempfile.mkstemp(dir=local_dir, prefix=".shard.", suffix=suffix)
    return fd, Path(tmp)


def tokens_sha256(tokens_T: np.ndarray) -> str:
    """sha256 of a token array's bytes (little-endian as stored)."""
    return hashlib.sha256(np.ascontiguousarray(tokens_T).view(np.uint8)).hexdigest()


def tokenize_shard(job: ShardJob) -> dict:
    """Tokenize one shard, write its `.npy` then its `.json`; return the `.json` record.

    Raises `DataError` when a record lacks the text field, a tokenizer id is
    out of range, or most of the shard's bytes are not UTF-8.
    """
    tokenizer = _tokenizer(job.tokenizer_kind, job.tokenizer_path)
    dtype = np.dtype(job.dtype)
    eos_1 = np.array([tokenizer.eos_id], dtype=dtype)
    stats = ReadStats()
    pieces: list[np.ndarray] = []
    pending: list[str] = []

    def flush():
        for ids in _encode_batch(tokenizer, pending):
            if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= tokenizer.vocab_size):
                raise DataError(f"tokenizer: produced ids outside [0, {tokenizer.vocab_size})")
            pieces.append(ids.astype(dtype, copy=False))
            pieces.append(eos_1)
        pending.clear()

    for file_split, rel in job.spec.files:
        for text in file_texts(
            job.root, file_split, rel, job.split, job.text_field, job.validation_fraction, stats
        ):
            pending.append(text)
            if len(pending) >= _ENCODE_BATCH:
                flush()
    flush()
    if (
        stats.source_bytes
        and stats.undecodable_bytes > MAX_UNDECODABLE_FRACTION * stats.source_bytes
    ):
        raise DataError(
            f"path: {_describe(job.spec)} is mostly not UTF-8 text ({stats.undecodable_bytes} of "
            f"{stats.source_bytes} bytes could not be decoded); a corpus is UTF-8 text in "
            f"{', '.join(CORPUS_SUFFIXES)} files"
        )
    tokens_T = np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)

    out_dir = epath.Path(job.out_dir)
    npy_name, json_name = shard_names(job.spec.index)
    fd, tmp = _write_local_tmp(out_dir, ".npy")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, tokens_T, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, out_dir / npy_name)
    finally:
        tmp.unlink(missing_ok=True)
    record = {
        "format": SHARD_FORMAT,
        "index": job.spec.index,
        "split": job.split,
        "files": len(job.spec.files),
        "first_file": job.spec.files[0][1],
        "last_file": job.spec.files[-1][1],
        "num_documents": stats.documents,
        "num_tokens": int(tokens_T.size),
        "source_bytes": stats.source_bytes,
        "undecodable_bytes": stats.undecodable_bytes,
        "dtype": dtype.name,
        "sha256": tokens_sha256(tokens_T),
    }
    fd, tmp = _write_local_tmp(out_dir, ".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, out_dir / json_name)
    finally:
        tmp.unlink(missing_ok=True)
    return record


def shard_problem(tokens_T, record: dict, verify_digest: bool) -> str | None:
    """Why an opened shard disagrees with its `.json` record, or None when it agrees."""
    if tokens_T.ndim != 1:
        return f"has shape {tokens_T.shape}, expected 1-D"
    if tokens_T.dtype.name != record["dtype"]:
        return f"has dtype {tokens_T.dtype.name}, expected {record['dtype']}"
    if tokens_T.size != record["num_tokens"]:
        return f"holds {tokens_T.size} tokens, its record says {record['num_tokens']}"
    if verify_digest and tokens_sha256(tokens_T) != record["sha256"]:
        return "tokens do not match the sha256 of its record"
    return None
