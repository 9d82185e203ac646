"""One path type for every folder bsjax reads or writes: local paths and object-storage URLs.

Workdirs, sweep folders, data caches and reports are ``etils.epath.Path``
objects made by :func:`as_path`. epath is what orbax itself uses, so the same
object goes to orbax, to tensorstore (through orbax) and to every JSON, JSONL
and lock file of a run. Accepted: local paths, ``file://`` URLs, ``gs://``,
``s3://`` and ``az://`` (fsspec backends gcsfs, s3fs, adlfs) and ``hf://`` for
reading. A ``pathlib.Path`` must never hold a URL: it turns ``gs://b/run`` into
the local folder ``gs:/b/run``; :func:`as_path` refuses such mangled paths.

Backends. epath sends ``gs://`` to TensorFlow's gfile whenever TensorFlow is
installed; bsjax sets ``EPATH_USE_TF=false`` (unless the user set it) so that
every object-storage access goes through fsspec whether TensorFlow is
installed or not, and TensorFlow is never needed for storage.

Emulators. The standard ``STORAGE_EMULATOR_HOST`` (``host:port`` or a URL)
points every layer at a GCS emulator: gcsfs reads it itself; tensorstore, which
orbax uses for the arrays, is given ``TENSORSTORE_GCS_HTTP_URL`` (its GCS base
URL) and ``GOOGLE_AUTH_TOKEN_FOR_TESTING`` (a fixed bearer token, so it never
asks a metadata server for credentials); gcsfs connects anonymously and skips
its bucket-layout lookup (a gRPC control-plane call an emulator does not
serve). For S3 emulators the standard ``AWS_ENDPOINT_URL`` is read by both
s3fs (botocore) and tensorstore, so nothing needs wiring here. The same command
then works against a real bucket and against an emulator.

Object semantics. An object PUT is atomic (readers see the old object or the
new one), but objects cannot be appended to or renamed cheaply. Hence:

* :func:`write_text_atomic`: local files go through a temporary file and a
  rename; objects are written in one PUT.
* :class:`AppendFile` (metrics.jsonl): appends go to a local staging copy (the
  existing object is downloaded first, so a resumed run continues it) and the
  whole object is uploaded by :meth:`AppendFile.flush`, at most every
  ``upload_every_s`` seconds on a write, and at close. A run killed with
  SIGKILL loses at most the lines written since its last upload; the training
  loop flushes before each checkpoint, so every line up to the newest
  checkpoint is on the store.
* TensorBoard events go through :class:`AppendFile` too (``binary=True``).
* :func:`create_exclusive` (locks): a create-if-absent that is atomic on local
  disks (``O_EXCL``), GCS (``ifGenerationMatch=0``) and S3 (``If-None-Match``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import re
import shutil
import tempfile
import time
from typing import Any

from etils import epath

from bsjax.errors import ProblemsError

log = logging.getLogger(__name__)

Path = epath.Path
PathLike = str | os.PathLike

# Schemes epath serves, and the fsspec package each needs.
BACKENDS = {"gs": "gcsfs", "s3": "s3fs", "az": "adlfs", "hf": "huggingface_hub"}
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# "gs:/bucket/x": what pathlib makes of "gs://bucket/x".
_MANGLED = re.compile(r"^(gs|s3|az|hf):/(?!/)")

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
# Variables that configure() sets for an emulator, unless the user set them.
_EMULATOR_DEFAULTS = ("TENSORSTORE_GCS_HTTP_URL", "GOOGLE_AUTH_TOKEN_FOR_TESTING")
_set_by_us: dict[str, str] = {}
_configured_for: str | None = None


class StorageError(ProblemsError):
    """A path or URL that bsjax cannot use as storage."""


# ----------------------------------------------------------------- set-up


def emulator_url() -> str | None:
    """The GCS emulator's base URL from ``STORAGE_EMULATOR_HOST``, or None for real GCS."""
    host = os.environ.get(EMULATOR_ENV, "").strip()
    if not host or host == "default":
        return None
    return host.rstrip("/") if "://" in host else f"http://{host.rstrip('/')}"


def configure() -> None:
    """Point epath at fsspec and every GCS layer at ``STORAGE_EMULATOR_HOST`` when it is set.

    Idempotent and cheap; :func:`as_path` calls it, so any code that made its
    paths with :func:`as_path` is configured before it touches storage. Call it
    again after changing ``STORAGE_EMULATOR_HOST`` in the same process.
    """
    global _configured_for
    os.environ.setdefault("EPATH_USE_TF", "false")
    url = emulator_url()
    if url == _configured_for:
        return
    for name, value in list(_set_by_us.items()):  # undo the previous emulator's wiring
        if os.environ.get(name) == value:
            del os.environ[name]
        del _set_by_us[name]
    if url is not None:
        for name, value in zip(_EMULATOR_DEFAULTS, (url, "emulator")):
            if name not in os.environ:
                os.environ[name] = _set_by_us[name] = value
        _use_plain_gcsfs()
    _forget_cached_filesystems()
    _configured_for = url


def _use_plain_gcsfs() -> None:
    """Anonymous gcsfs without the bucket-layout lookup (emulators serve only the JSON API)."""
    import fsspec

    fsspec.config.conf.setdefault("gcs", {}).setdefault("token", "anon")
    fsspec.config.conf.setdefault("gs", {}).setdefault("token", "anon")
    try:
        from gcsfs.core import GCSFileSystem
    except ImportError:
        return  # as_path names the missing package when a gs:// path is used
    for protocol in ("gs", "gcs"):
        fsspec.register_implementation(protocol, GCSFileSystem, clobber=True)


def _forget_cached_filesystems() -> None:
    """Drop filesystem objects made for another endpoint (fsspec and epath cache them)."""
    import sys

    if "gcsfs" in sys.modules:
        import fsspec

        for protocol in ("gs", "gcs"):
            with contextlib.suppress(ValueError, ImportError):
                fsspec.get_filesystem_class(protocol).clear_instance_cache()
    from etils.epath import backend

    backend.fsspec_backend._get_filesystem.cache_clear()


# ------------------------------------------------------------------ paths


def url_scheme(path: PathLike) -> str | None:
    """The scheme of a URL (``"gs"`` for ``gs://b/x``), or None for a local path."""
    match = _URL.match(os.fspath(path))
    return match.group(1).lower() if match else None


def is_remote(path: PathLike) -> bool:
    """True for object-storage paths (``gs://``, ``s3://``, ...), False for local ones."""
    scheme = url_scheme(path)
    return scheme is not None and scheme != "file"


def as_path(path: PathLike, what: str = "path") -> epath.Path:
    """``path`` as the one path type of bsjax, or ``StorageError`` naming what is wrong.

    ``what`` names the argument in the message (e.g. ``"--workdir"``).
    """
    configure()
    if isinstance(path, epath.Path):  # already ours (a pathlib.Path is not an epath.Path)
        return path
    text = os.fspath(path)
    if not text.strip():
        raise StorageError(f"{what} is empty; give a local folder or a gs:// or s3:// URL")
    if _MANGLED.match(text):
        raise StorageError(
            f"{what}={text} looks like a {text.split(':')[0]}:// URL with one slash lost "
            f"(pathlib does that); pass the URL as a string, e.g. "
            f"{text.split(':')[0]}://{text.split(':/', 1)[1]}"
        )
    scheme = url_scheme(text)
    if scheme is None:
        return epath.Path(text)
    if scheme == "file":
        return epath.Path(text[len("file://") :])
    if scheme not in BACKENDS:
        schemes = ", ".join(f"{s}://" for s in BACKENDS)
        raise StorageError(
            f"{what}={text}: {scheme}:// is not a storage bsjax can use; give a local path "
            f"or a URL with one of {schemes}"
        )
    package = BACKENDS[scheme]
    try:
        __import__(package)
    except ImportError:
        raise StorageError(
            f"{what}={text}: {scheme}:// paths need the {package} package, which is not "
            f"installed; pip install {package.replace('_', '-')}"
        ) from None
    return epath.Path(text)


# Where orbax-checkpoint writes array checkpoints correctly. orbax 0.12 normalises
# checkpoint paths with os.path.normpath and restores the second slash only for
# gs://, so s3:// and az:// checkpoints go to a local folder named "s3:" or "az:"
# (tests/test_storage.py checks that this is still so).
CHECKPOINT_SCHEMES = (None, "file", "gs")


def check_checkpoint_location(path: PathLike, what: str = "--workdir") -> None:
    """Refuse, with ``StorageError``, a folder where orbax cannot write checkpoints."""
    scheme = url_scheme(path)
    if scheme in CHECKPOINT_SCHEMES:
        return
    from importlib import metadata

    version = metadata.version("orbax-checkpoint")
    raise StorageError(
        f"{what}={os.fspath(path)}: orbax-checkpoint {version} cannot write checkpoints to "
        f"{scheme}:// (it drops a slash of the URL and writes to a local folder "
        f"'{scheme}:'); give a gs:// URL or a local folder for runs (data and reports may stay "
        f"on {scheme}://)"
    )


def child(parent: PathLike, *names: str) -> epath.Path:
    """``parent / name / ...`` as an epath path (for callers that hold a string)."""
    return as_path(parent).joinpath(*names)


def absolute(path: PathLike, what: str = "path") -> epath.Path:
    """:func:`as_path`, made absolute where it is local (orbax needs absolute folders)."""
    path = as_path(path, what)
    return path if is_remote(path) else epath.Path(os.path.abspath(os.fspath(path)))


# ------------------------------------------------------------ whole files


def write_text_atomic(path: PathLike, text: str) -> None:
    """Write ``text`` so that readers see the old content or the new one, never a part."""
    path = as_path(path)
    if is_remote(path):
        path.write_text(text)  # one PUT: atomic on object storage
        return
    local = pathlib.Path(os.fspath(path))
    tmp = local.with_name(f".{local.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, local)


def write_json_atomic(path: PathLike, data: Any, **dumps_kwargs: Any) -> None:
    """``json.dumps(data, **dumps_kwargs)`` written with :func:`write_text_atomic`."""
    dumps_kwargs.setdefault("indent", 2)
    write_text_atomic(path, json.dumps(data, **dumps_kwargs) + "\n")


def read_text_or_none(path: PathLike) -> str | None:
    """The text of a file, or None if it does not exist."""
    path = as_path(path)
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def create_exclusive(path: PathLike, text: str) -> bool:
    """Create ``path`` holding ``text`` only if it does not exist; True if this call created it.

    Atomic on local disks, GCS and S3: of two callers racing, exactly one gets True.
    """
    path = as_path(path)
    if not is_remote(path):
        try:
            fd = os.open(os.fspath(path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        return True
    import fsspec

    fs, key = fsspec.core.url_to_fs(os.fspath(path))
    try:
        fs.pipe_file(key, text.encode("utf-8"), mode="create")
    except FileExistsError:
        return False
    return True


def move(src: PathLike, dst: PathLike) -> None:
    """Move a file or folder (on object storage: copy then delete, which is not atomic)."""
    src, dst = as_path(src), as_path(dst)
    if not is_remote(src) and not is_remote(dst):
        shutil.move(os.fspath(src), os.fspath(dst))
        return
    src.rename(dst)


def upload_file(local: PathLike, dst: PathLike) -> None:
    """Copy a local file to ``dst`` as one whole object."""
    as_path(dst).write_bytes(pathlib.Path(os.fspath(local)).read_bytes())


def _staging_dir(kind: str) -> pathlib.Path:
    return pathlib.Path(tempfile.mkdtemp(prefix=f"bsjax-{kind}-"))


# ---------------------------------------------------------------- appends


class AppendFile:
    """A file that is only appended to, on a local disk or object storage.

    Local: an ordinary file opened for appending, line-buffered. Object storage:
    a local staging copy (the existing object downloaded first) whose whole
    content is uploaded by :meth:`flush`, by :meth:`write` when
    ``upload_every_s`` seconds have passed since the last upload, and by
    :meth:`close`. A failed upload during :meth:`write` is logged and tried
    again at the next one; :meth:`flush` and :meth:`close` raise it.

    Text mode (the default): a file whose last line was cut short (a run killed
    mid-write) gets a newline first, so that line stays a line of its own and
    the next starts clean (``ended_torn_line`` tells whether that happened).
    ``binary=True`` takes bytes and changes nothing that is there.
    """

    def __init__(self, path: PathLike, upload_every_s: float = 30.0, binary: bool = False):
        self.path = as_path(path)
        self.remote = is_remote(self.path)
        self.upload_every_s = upload_every_s
        self._staging: pathlib.Path | None = None
        if self.remote:
            self._staging = _staging_dir("append")
            local = self._staging / self.path.name
            if self.path.exists():
                local.write_bytes(self.path.read_bytes())
        else:
            local = pathlib.Path(os.fspath(self.path))
        self.local = local
        if binary:
            self.ended_torn_line = False
            self._file = open(local, "ab")
        else:
            self.ended_torn_line = _ends_without_newline(local)
            self._file = open(local, "a", buffering=1, encoding="utf-8")
        if self.ended_torn_line:
            self._file.write("\n")
        self._uploaded_at = time.monotonic()
        self._dirty = self.ended_torn_line

    def write(self, data: str | bytes) -> None:
        """Append ``data`` (on object storage: uploaded at the next due upload)."""
        self._file.write(data)
        self._dirty = True
        if self.remote and time.monotonic() - self._uploaded_at >= self.upload_every_s:
            try:
                self._upload()
            except OSError as err:
                log.warning("upload of %s failed (%s); retried at the next write", self.path, err)

    def flush(self) -> None:
        """Make everything written so far durable where the file lives."""
        self._file.flush()
        if self.remote:
            self._upload()

    def _upload(self) -> None:
        self._file.flush()
        if self._dirty:
            upload_file(self.local, self.path)
            self._dirty = False
        self._uploaded_at = time.monotonic()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def close(self) -> None:
        """Flush, close, and remove the staging copy."""
        if self._file.closed:
            return
        try:
            self.flush()
        finally:
            self._file.close()
            if self._staging is not None:
                shutil.rmtree(self._staging, ignore_errors=True)


def _ends_without_newline(local: pathlib.Path) -> bool:
    if not local.exists() or local.stat().st_size == 0:
        return False
    with open(local, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"
