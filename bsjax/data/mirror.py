"""Local copies of remote cache files, so that they can be memory-mapped.

A shard in a local (or mounted) cache is mapped in place. A shard behind a
URL (gs://, s3://, ...) is fetched once, whole, into
`$BSJAX_MIRROR_DIR` (default ~/.cache/bsjax/mirror) under a name derived from
its URL, then mapped from there.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from etils import epath

MIRROR_DIR_ENV = "BSJAX_MIRROR_DIR"
DEFAULT_MIRROR_DIR = "~/.cache/bsjax/mirror"


def is_remote(path) -> bool:
    """Whether `path` is a URL rather than a local path."""
    return "://" in str(path)


def local_copy(path) -> str:
    """A local path holding the bytes of `path` (itself when it is local)."""
    if not is_remote(path):
        return os.fspath(path)
    root = Path(os.environ.get(MIRROR_DIR_ENV) or DEFAULT_MIRROR_DIR).expanduser()
    url = str(path)
    local = root / hashlib.sha256(url.encode()).hexdigest()[:16] / Path(url).name
    if not local.exists():
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{os.getpid()}.tmp")
        epath.Path(url).copy(epath.Path(tmp), overwrite=True)
        os.replace(tmp, local)
    return str(local)
