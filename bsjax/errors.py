"""The base of bsjax's input errors: one message per problem, all reported at once."""

from __future__ import annotations

from collections.abc import Sequence


class ProblemsError(ValueError):
    """Bad input found before anything is compiled or written.

    ``problems`` holds one message per problem, each naming what is wrong and
    what would be right. Subclasses with a ``heading`` print the problems as a
    list under it; without one, ``str(err)`` joins them with "; ".
    """

    heading: str = ""

    def __init__(self, problems: str | Sequence[str]):
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        if self.heading:
            message = self.heading + ":\n" + "\n".join(f"  - {p}" for p in self.problems)
        else:
            message = "; ".join(self.problems)
        super().__init__(message)


# Exit codes of ``bsjax train`` (and the commands built on it).
EXIT_OK = 0  # finished, stopped at a limit or the target, or preempted (resume to continue)
EXIT_BAD_INPUT = 2  # refused before anything was written: the message says what to change
EXIT_DIVERGED = 3  # the loss became NaN or inf; the last finite checkpoint is kept
EXIT_FAILED = (
    4  # an I/O or runtime failure; summary.json says why, the last good checkpoint is kept
)
EXIT_INTERRUPTED = 130  # Ctrl-C before training started (during it, Ctrl-C is a preemption)

_STATUS_EXIT = {"diverged": EXIT_DIVERGED, "failed": EXIT_FAILED}


def exit_code_for_status(status: str) -> int:
    """The exit code of a run that ended with summary status ``status``."""
    return _STATUS_EXIT.get(status, EXIT_OK)


def describe_os_error(err: OSError) -> str:
    """One line for a file-system error: what failed, on which path, and the likely fix."""
    import errno

    where = f" ({err.filename})" if getattr(err, "filename", None) else ""
    reason = err.strerror or str(err)
    hints = {
        errno.ENOSPC: "the disk is full: free space or move the run folder, then start it again",
        errno.EDQUOT: "the disk quota is exhausted: free space, then start the run again",
        errno.EROFS: "the file system is read-only: give a writable --workdir",
        errno.EACCES: "permission denied: give a folder this user may write",
        errno.EPERM: "operation not permitted: give a folder this user may write",
        errno.EIO: "the storage reported an I/O error: check the disk, then start the run again",
    }
    hint = hints.get(err.errno, "")
    return f"{reason}{where}" + (f"; {hint}" if hint else "")


class RunFailure(RuntimeError):
    """A run that stopped on a failure after it began writing; its summary says ``failed``."""


_DISK_FULL_MARKERS = ("No space left on device", "os_error_code='28'", "Disk quota exceeded")


def describe_failure(err: BaseException) -> str:
    """One line for an error that stopped a run: disk full and I/O errors by name (orbax
    and TensorFlow wrap them in their own error types), else the error's first line."""
    if isinstance(err, OSError) and err.errno is not None:
        return describe_os_error(err)
    text = str(err).strip()
    if any(marker in text for marker in _DISK_FULL_MARKERS):
        return (
            f"the disk is full ({type(err).__name__} while writing); free space or move the "
            f"run folder, then start the run again: it resumes from its last checkpoint"
        )
    first = text.splitlines()[0][:300] if text else ""
    return f"{type(err).__name__}: {first}"
