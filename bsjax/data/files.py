"""Local corpus files: listing, the stable hash split, and content identity.

No TensorFlow here. The TFDS builders in `builders.py` use these to decide
what goes into each split; the loader uses the identity to key caches.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from bsjax.data.errors import DataError

# The embedded corpus is the standard library's own code. Third-party packages
# (site-packages) are not part of it and test suites are left out: they are
# large, repetitive and partly non-UTF-8 fixtures rather than library code.
STDLIB_EXCLUDED_DIRS = (
    "site-packages",
    "dist-packages",
    "test",
    "tests",
    "idle_test",
    "__pycache__",
)
TEXT_SUFFIXES = (".txt", ".jsonl")
TRAIN, VALIDATION = "train", "validation"


def hash_split(key: str, validation_fraction: float) -> str:
    """ "validation" for about `validation_fraction` of keys, else "train".

    The decision depends only on `key` (a relative path, or path:line), so it
    is the same on every machine and does not move when other files change.
    """
    unit = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0**64
    return VALIDATION if unit < validation_fraction else TRAIN


def list_files(
    root: Path, suffixes: tuple[str, ...], excluded_dirs: tuple[str, ...] = ()
) -> list[str]:
    """Relative POSIX paths of files under `root` ending in `suffixes`, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in excluded_dirs]
        for filename in filenames:
            if filename.endswith(suffixes):
                found.append(Path(dirpath, filename).relative_to(root).as_posix())
    return sorted(found)


def _jsonl_keys(data: bytes, rel: str) -> list[str]:
    """Document keys ("rel:line") of the non-blank lines of a JSONL file's bytes.

    Lines are split on newline bytes only, as the builder reads them.
    """
    return [f"{rel}:{no}" for no, line in enumerate(data.split(b"\n"), start=1) if line.strip()]


def digest_files(root: Path, files: tuple[tuple[str, str], ...], validation_fraction: float):
    """Read each (split, rel) file once: (total bytes, sha256, documents per split).

    The sha256 runs over (path, length, bytes) of each file in order; the
    length prefixes keep the pairs unambiguous. A split of "" means per-line
    hash split (JSONL in a folder without split subfolders).
    """
    digest = hashlib.sha256()
    total = 0
    counts = {TRAIN: 0, VALIDATION: 0}
    for split, rel in files:
        data = (root / rel).read_bytes()
        total += len(data)
        encoded = rel.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little") + encoded)
        digest.update(len(data).to_bytes(8, "little") + data)
        if not rel.endswith(".jsonl"):
            counts[split] += 1
        else:
            for key in _jsonl_keys(data, rel):
                counts[split or hash_split(key, validation_fraction)] += 1
    return total, digest.hexdigest(), counts


def _check_splits(counts: dict, where: str) -> None:
    for split, count in counts.items():
        if count == 0:
            raise DataError(
                f"validation_fraction: the {split} split of {where} would have no documents "
                f"({counts}); change data.validation_fraction, add documents, or give "
                "train/ and validation/ subfolders"
            )


def identity_key(identity: dict) -> str:
    """A short hex key over a JSON-serialisable identity (for config and cache names)."""
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class CorpusPlan:
    """What a local-files builder will write: the files per split and the identity."""

    root: str
    files: tuple[tuple[str, str], ...]  # (split or "" for per-line hash split, relative path)
    identity: dict
    config_name: str
    validation_fraction: float
    text_field: str = "text"


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def plan_embedded(validation_fraction: float) -> CorpusPlan:
    """Plan the embedded corpus: the running interpreter's stdlib `*.py` files."""
    root = stdlib_root()
    rel_paths = list_files(root, (".py",), STDLIB_EXCLUDED_DIRS)
    if not rel_paths:
        raise DataError(f"source: no .py files found under the standard library at {root}")
    files = tuple((hash_split(rel, validation_fraction), rel) for rel in rel_paths)
    total, sha, counts = digest_files(root, files, validation_fraction)
    _check_splits(counts, f"the standard library at {root}")
    identity = {
        "source": "embedded",
        "python_implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "file_count": len(rel_paths),
        "total_bytes": total,
        "content_sha256": sha,
        "validation_fraction": validation_fraction,
        "split_documents": counts,
        "excluded_dirs": list(STDLIB_EXCLUDED_DIRS),
    }
    v = sys.version_info
    name = f"py{v.major}_{v.minor}_{v.micro}_{identity_key(identity)}"
    return CorpusPlan(str(root), files, identity, name, validation_fraction)


def plan_text_folder(path: str | Path, validation_fraction: float, text_field: str) -> CorpusPlan:
    """Plan a folder of `.txt` (one document per file) / `.jsonl` (one per line) files.

    With `train/` and `validation/` subfolders those are the splits; otherwise
    .txt files are split by hash of their relative path and JSONL lines by hash
    of "relative_path:line_number".
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"path: folder {str(path)!r} does not exist")
    has_train, has_val = (root / TRAIN).is_dir(), (root / VALIDATION).is_dir()
    if has_train != has_val:
        present, absent = (TRAIN, VALIDATION) if has_train else (VALIDATION, TRAIN)
        raise DataError(
            f"path: folder {str(root)!r} has a {present}/ subfolder but no {absent}/; "
            "give both or neither (then files are split by hash)"
        )
    rel_paths = list_files(root, TEXT_SUFFIXES)
    if has_train:
        layout = "subfolders"
        files = tuple(
            (rel.split("/", 1)[0], rel)
            for rel in rel_paths
            if rel.split("/", 1)[0] in (TRAIN, VALIDATION)
        )
    else:
        layout = "hash"
        files = tuple(
            ("" if rel.endswith(".jsonl") else hash_split(rel, validation_fraction), rel)
            for rel in rel_paths
        )
    if not files:
        raise DataError(f"path: folder {str(root)!r} holds no .txt or .jsonl files")
    total, sha, counts = digest_files(root, files, validation_fraction)
    _check_splits(counts, f"folder {str(root)!r}")
    identity = {
        "source": "text_folder",
        "path": str(root),
        "layout": layout,
        "file_count": len(files),
        "total_bytes": total,
        "content_sha256": sha,
        "text_field": text_field,
        "split_documents": counts,
    }
    if layout == "hash":
        identity["validation_fraction"] = validation_fraction
    # The folder's location is reported but does not key the data: the same
    # files elsewhere give the same dataset.
    keyed = {k: v for k, v in identity.items() if k != "path"}
    stem = "".join(c if c.isalnum() else "_" for c in root.name.lower())[:40] or "folder"
    return CorpusPlan(
        str(root), files, identity, f"{stem}_{identity_key(keyed)}", validation_fraction, text_field
    )
