"""One writer per run folder: a lock file with an owner and a heartbeat.

``run.lock`` in the run folder holds JSON: host, pid, a random token, when the
run started and when it last beat. The lock is taken by creating that file only
if it is absent, kept by rewriting its heartbeat every ``heartbeat_s`` seconds,
and given back by deleting it. A second run on the same folder refuses at once,
naming the holder.

A lock is stale, and may be taken over, when its heartbeat is older than
``stale_s`` seconds, or at once when it names this host and a process that no
longer exists (a run killed with SIGKILL leaves its lock behind; the next start
on the same machine must not wait for the timeout).

Two stores:

* local folders: ``open(O_CREAT | O_EXCL)`` makes "create if absent" atomic, so
  of two runs that start together exactly one gets the lock;
* object storage (``gs://``, ``s3://``: no flock): the create is a conditional
  PUT (``bsjax.storage.create_exclusive``), atomic as well. For a store without
  one, ``RunLock`` also runs the check-then-write protocol: the lock is written if
  absent and after ``settle_s`` seconds read back, and the run owns it only if
  its own token is still there (of two writers within ``settle_s`` the later
  wins, the earlier refuses; only a store slower than ``settle_s`` to show a
  write to readers could let both pass).

Race window: taking over a stale lock deletes it and creates it again. Two runs
taking over the same stale lock at once race only in that step (one create
fails and refuses). A holder that was only slow (a paused VM past ``stale_s``)
learns at its next heartbeat that its token is gone (``lost``), and the trainer
reads the lock before every checkpoint (``check``): for at most ``heartbeat_s``
both may append metrics lines, and only a save that starts in the moment
between that read and the takeover can still land.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any

from bsjax.errors import ProblemsError

log = logging.getLogger(__name__)

LOCK_FILE = "run.lock"
HEARTBEAT_S = 20.0
STALE_S = 180.0
SETTLE_S = 2.0


class WorkdirBusyError(ProblemsError):
    """Another run holds the lock of this folder."""


class WorkdirError(ProblemsError):
    """The given workdir cannot hold a run."""


class LockLostError(RuntimeError):
    """Another run took this run's lock (it was thought stale): stop writing."""


def is_object_store(path: str) -> bool:
    return "://" in str(path)


def check_workdir(workdir: str | os.PathLike | None) -> None:
    """Refuse a workdir that cannot hold a run, before anything is written.

    Checks: a non-empty path, not an existing file, and where it exists (or the
    nearest parent that exists) writable by this process.
    """
    if workdir is None or not str(workdir).strip():
        raise WorkdirError(
            "--workdir is empty; give the folder of the run, e.g. --workdir=runs/tiny"
        )
    from bsjax import storage

    storage.as_path(workdir, "--workdir")  # refuses unknown schemes and URLs pathlib mangled
    if is_object_store(str(workdir)):
        storage.check_checkpoint_location(workdir)  # where orbax writes checkpoints correctly
        return  # permissions and kinds are the store's; the lock's create fails clearly
    path = Path(workdir)
    if path.exists() and not path.is_dir():
        raise WorkdirError(f"--workdir={workdir} is a file, not a folder; give a folder path")
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise WorkdirError(f"--workdir={workdir}: {existing} is a file, so the folder cannot exist")
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise WorkdirError(
            f"--workdir={workdir}: {existing} is not writable by this user; choose a "
            f"writable folder or fix its permissions"
        )


class _LocalStore:
    atomic_create = True

    def create(self, path: str, text: str) -> bool:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        return True

    def read(self, path: str) -> str | None:
        try:
            return Path(path).read_text()
        except FileNotFoundError:
            return None

    def replace(self, path: str, text: str) -> None:
        tmp = f"{path}.beat{os.getpid()}"
        Path(tmp).write_text(text)
        os.replace(tmp, path)

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


class _ObjectStore:
    """gs://, s3:// through bsjax.storage: create-if-absent is a conditional PUT."""

    atomic_create = True

    def create(self, path: str, text: str) -> bool:
        from bsjax import storage

        return storage.create_exclusive(path, text)

    def read(self, path: str) -> str | None:
        from bsjax import storage

        return storage.read_text_or_none(path)

    def replace(self, path: str, text: str) -> None:
        from bsjax import storage

        storage.write_text_atomic(path, text)  # one PUT

    def remove(self, path: str) -> None:
        from bsjax import storage

        with contextlib.suppress(FileNotFoundError):
            storage.as_path(path).unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """The lock of one run folder; use as a context manager or acquire()/release()."""

    def __init__(
        self,
        workdir: str | os.PathLike,
        heartbeat_s: float = HEARTBEAT_S,
        stale_s: float = STALE_S,
        settle_s: float = SETTLE_S,
        store: Any = None,
    ):
        self.workdir = str(workdir)
        self.path = f"{self.workdir.rstrip('/')}/{LOCK_FILE}"
        self.heartbeat_s, self.stale_s, self.settle_s = heartbeat_s, stale_s, settle_s
        if store is None:
            store = _ObjectStore() if is_object_store(self.workdir) else _LocalStore()
        self._store = store
        self._token = secrets.token_hex(8)
        self._started = time.time()
        self._held = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost = False

    # ------------------------------------------------------------- records
    def _record(self) -> str:
        return json.dumps(
            dict(
                host=socket.gethostname(),
                pid=os.getpid(),
                token=self._token,
                started=self._started,
                heartbeat=time.time(),
            )
        )

    def holder(self) -> dict[str, Any] | None:
        """The lock's record as stored (``{}`` if unreadable), or None when absent."""
        text = self._store.read(self.path)
        if text is None:
            return None
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            return {}
        return record if isinstance(record, dict) else {}

    def _stale_reason(self, record: dict[str, Any]) -> str | None:
        beat = record.get("heartbeat")
        if not isinstance(beat, (int, float)):
            # Unreadable (a write torn by a kill): judge by the file's age.
            try:
                beat = os.path.getmtime(self.path) if not is_object_store(self.path) else None
            except OSError:
                beat = None
            if beat is None:
                return "its record is unreadable"
        age = time.time() - beat
        if age > self.stale_s:
            return f"its last heartbeat is {age:.0f}s old (stale after {self.stale_s:.0f}s)"
        pid = record.get("pid")
        same_host = record.get("host") == socket.gethostname()
        if same_host and isinstance(pid, int) and not _pid_alive(pid):
            return f"process {pid} on this host is gone"
        return None

    # -------------------------------------------------------------- acquire
    def acquire(self) -> None:
        """Take the lock or raise ``WorkdirBusyError`` naming its holder."""
        if not self._try_create():
            record = self.holder() or {}
            reason = self._stale_reason(record)
            if reason is None:
                raise self._busy(record)
            log.warning("taking over the lock %s: %s", self.path, reason)
            self._store.remove(self.path)
            if not self._try_create():
                raise self._busy(self.holder() or {})
        self._held = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="bsjax-lock", daemon=True)
        self._thread.start()

    def _try_create(self) -> bool:
        if not self._store.create(self.path, self._record()):
            return False
        if not self._store.atomic_create:
            time.sleep(self.settle_s)
            record = self.holder() or {}
            if record.get("token") != self._token:
                return False
        return True

    def _busy(self, record: dict[str, Any]) -> WorkdirBusyError:
        if not record:
            return WorkdirBusyError(
                f"{self.workdir} is locked by another run ({self.path} exists but is unreadable; "
                f"it becomes stale {self.stale_s:.0f}s after it was written)"
            )
        beat = record.get("heartbeat")
        age = f"{time.time() - beat:.0f}s ago" if isinstance(beat, (int, float)) else "never"
        return WorkdirBusyError(
            f"{self.workdir} is in use by another run: host {record.get('host')}, pid "
            f"{record.get('pid')}, last heartbeat {age}; wait for it to finish, or if it is gone "
            f"(on another host) start again after {self.stale_s:.0f}s without a heartbeat"
        )

    # ------------------------------------------------------------ heartbeat
    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.refresh()
            except LockLostError as err:
                log.error("%s", err)
                return
            except OSError as err:  # a full or flaky disk: the next beat tries again
                log.warning("lock heartbeat failed: %s", err)

    def refresh(self) -> None:
        """Rewrite the heartbeat; raise ``LockLostError`` if another run holds the lock now."""
        record = self.holder()
        if record is None or record.get("token") != self._token:
            self._lost = True
            raise LockLostError(
                f"the lock {self.path} is now held by {record or 'nobody'}; this run stops "
                f"writing to {self.workdir}"
            )
        self._store.replace(self.path, self._record())

    @property
    def lost(self) -> bool:
        return self._lost

    def check(self) -> None:
        """Raise ``LockLostError`` unless the lock file still holds this run's token (one read)."""
        record = self.holder()
        if self._lost or record is None or record.get("token") != self._token:
            self._lost = True
            raise LockLostError(
                f"the lock {self.path} is now held by {record or 'nobody'}; this run stops "
                f"writing to {self.workdir}"
            )

    # -------------------------------------------------------------- release
    def release(self) -> None:
        """Stop the heartbeat and delete the lock if this run still holds it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if not self._held:
            return
        self._held = False
        try:
            record = self.holder()
            if record is not None and record.get("token") == self._token:
                self._store.remove(self.path)
        except OSError as err:
            log.warning("could not remove the lock %s: %s", self.path, err)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
