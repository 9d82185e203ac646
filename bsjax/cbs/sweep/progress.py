"""Progress lines of a sweep: one per run start and finish, elapsed time and an ETA."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping


def duration(seconds: float) -> str:
    """``4m05s`` (``1h02m03s`` past an hour)."""
    seconds = max(0, int(round(seconds)))
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress:
    """Writes ``[i/n] RUN: start (...)`` and ``[i/n] RUN: STATUS ... | elapsed, ETA`` lines.

    ``i`` is the run's place in the order the sweep took it up (a run that
    finishes keeps the number it started with, also when several run at
    once). The ETA is the mean wall time of the runs trained so far in this
    invocation times the runs still to train, divided by the runs that train
    at once (``parallel``); runs differ in length, so it is rough until a few
    have finished.
    """

    def __init__(self, total: int, to_train: int, out: Callable[[str], None], parallel: int = 1):
        self.total, self.to_train, self.out = total, to_train, out
        self.parallel = max(1, parallel)
        self.index = 0
        self.start = time.perf_counter()
        self.walls: list[float] = []
        self._numbers: dict[str, int] = {}

    def _tag(self, name: str) -> str:
        if name not in self._numbers:
            self.index += 1
            self._numbers[name] = self.index
        return f"[{self._numbers[name]}/{self.total}]"

    def skipped(self, name: str, why: str) -> None:
        self.out(f"{self._tag(name)} {name}: {why}, skipped")

    def started(self, name: str, what: str) -> float:
        self.out(f"{self._tag(name)} {name}: start ({what})")
        return time.perf_counter()

    def failed(self, name: str, why: str) -> None:
        """A run that ended without a final status; it is not rerun unless retried."""
        self.to_train -= 1
        self.out(f"{self._tag(name)} {name}: FAILED ({why}) ({max(self.to_train, 0)} run(s) left)")

    def finished(self, name: str, summary: Mapping, started: float) -> None:
        wall = time.perf_counter() - started
        self.walls.append(wall)
        self.to_train -= 1
        stt = summary.get("steps_to_target")
        result = f"{summary.get('status')} after {summary.get('steps')} steps" + (
            f", {stt} steps to target" if stt is not None else ""
        )
        if summary.get("status") == "preempted":
            eta = "stopping"
        elif self.to_train <= 0:
            eta = "done"
        else:
            mean = sum(self.walls) / len(self.walls)
            eta = f"ETA {duration(self.to_train * mean / min(self.parallel, self.to_train))}"
        self.out(
            f"{self._tag(name)} {name}: {result} in {wall:.1f}s | elapsed "
            f"{duration(time.perf_counter() - self.start)}, {eta} ({max(self.to_train, 0)} run(s) left)"
        )
