"""Large file sets (source="files"): text, JSON lines, gzip or Parquet, local or remote.

Meant for corpora such as C4 as published in JSON-lines or Parquet files
(`en/c4-train.00000-of-01024.json.gz`, ...), in a local folder or behind a
URL that `etils.epath` opens (gs://, s3://, ...). Nothing here needs Beam or
TensorFlow.

Splits: a file whose relative path contains the train or validation split
name as a word (delimited by non-alphanumerics: `c4-train.00000`,
`train/part-0.parquet`) belongs to that split; when no file names either
split, every document goes to the split its key hashes to.

Identity: reading every byte to key a cache would take hours for a large
remote set, so a file set is identified by each file's relative path, size
and the sha256 of its first and last `FINGERPRINT_BYTES` bytes. Published
shard sets are immutable; an edit that keeps a file's size, head and tail is
not noticed. The shards' records keep the exact token digests.
"""

from __future__ import annotations

import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from etils import epath

from bsjax.data.documents import CORPUS_SUFFIXES
from bsjax.data.errors import DataError
from bsjax.data.files import TRAIN, VALIDATION, CorpusPlan, identity_key
from bsjax.data.mirror import is_remote

FINGERPRINT_BYTES = 1 << 16
_LIST_THREADS = 16


def _list(root: epath.Path) -> list[tuple[str, int]]:
    """(relative POSIX path, size) of the corpus files under `root`, sorted by path."""
    found = []
    if not is_remote(root):
        base = Path(os.fspath(root))
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in filenames:
                if name.endswith(CORPUS_SUFFIXES) and not name.startswith("."):
                    full = Path(dirpath, name)
                    found.append((full.relative_to(base).as_posix(), full.stat().st_size))
        return sorted(found)
    stack = [root]
    while stack:
        folder = stack.pop()
        for child in folder.iterdir():
            if child.is_dir():
                stack.append(child)
            elif child.name.endswith(CORPUS_SUFFIXES) and not child.name.startswith("."):
                rel = str(child)[len(str(root)) :].lstrip("/")
                found.append((rel, child.stat().length))
    return sorted(found)


def _fingerprint(root: epath.Path, rel: str, size: int) -> str:
    digest = hashlib.sha256()
    with (root / rel).open("rb") as f:
        digest.update(f.read(FINGERPRINT_BYTES))
        if size > 2 * FINGERPRINT_BYTES:
            f.seek(size - FINGERPRINT_BYTES)
        digest.update(f.read())
    return digest.hexdigest()


def _words(rel: str) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", rel.lower()))


def plan_files(
    path: str,
    validation_fraction: float,
    text_field: str,
    train_split: str = TRAIN,
    validation_split: str = VALIDATION,
) -> tuple[CorpusPlan, dict[str, int]]:
    """Plan a file set: the files per split, the identity, and each file's size."""
    root = epath.Path(path)
    if not is_remote(path):
        root = epath.Path(Path(path).expanduser().resolve())
    if not root.is_dir():
        raise DataError(f"path: folder {path!r} does not exist or cannot be listed")
    listed = _list(root)
    if not listed:
        raise DataError(f"path: {path!r} holds no corpus files ({', '.join(CORPUS_SUFFIXES)})")
    # Files are labelled with the canonical split names, whatever the config calls them.
    named = {
        rel: label
        for rel, _ in listed
        for label, split in ((TRAIN, train_split), (VALIDATION, validation_split))
        if split.lower() in _words(rel)
    }
    if named:
        layout = "named"
        files = tuple((named[rel], rel) for rel, _ in listed if rel in named)
        present = {label for label, _ in files}
        for label, split in ((TRAIN, train_split), (VALIDATION, validation_split)):
            if label not in present:
                raise DataError(
                    f"path: {path!r} has files named for one split but none for {split!r}; "
                    "name files of both splits, or neither (then documents are split by hash)"
                )
    else:
        layout = "hash"
        files = tuple(("", rel) for rel, _ in listed)
    sizes = dict(listed)
    with ThreadPoolExecutor(_LIST_THREADS) as pool:
        prints = list(pool.map(lambda f: _fingerprint(root, f[1], sizes[f[1]]), files))
    digest = hashlib.sha256()
    for (split, rel), fingerprint in zip(files, prints):
        digest.update(f"{split}\0{rel}\0{sizes[rel]}\0{fingerprint}\n".encode())
    identity = {
        "source": "files",
        "path": str(root),
        "layout": layout,
        "file_count": len(files),
        "total_bytes": sum(sizes[rel] for _, rel in files),
        "fingerprint_sha256": digest.hexdigest(),
        "fingerprint_bytes": FINGERPRINT_BYTES,
        "text_field": text_field,
    }
    if layout == "hash":
        identity["validation_fraction"] = validation_fraction
    keyed = {k: v for k, v in identity.items() if k != "path"}
    name = f"files_{identity_key(keyed)}"
    plan = CorpusPlan(str(root), files, identity, name, validation_fraction, text_field)
    return plan, sizes
