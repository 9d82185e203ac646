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

    The ETA is the mean wall time of the runs trained so far in this
    invocation times the runs still to train (runs differ in length, so it is
    rough until a few have finished).
    """

    def __init__(self, total: int, to_train: int, out: Callable[[str], None]):
        self.total, self.to_train, self.out = total, to_train, out
        self.index = 0
        self.start = time.perf_counter()
        self.walls: list[float] = []

    def _tag(self) -> str:
        return f"[{self.index}/{self.total}]"

    def skipped(self, name: str, why: str) -> None:
        self.index += 1
        self.out(f"{self._tag()} {name}: {why}, skipped")

    def started(self, name: str, what: str) -> float:
        self.index += 1
        self.out(f"{self._tag()} {name}: start ({what})")
        return time.perf_counter()

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
            eta = f"ETA {duration(self.to_train * sum(self.walls) / len(self.walls))}"
        self.out(
            f"{self._tag()} {name}: {result} in {wall:.1f}s | elapsed {duration(time.perf_counter() - self.start)}, "
            f"{eta} ({max(self.to_train, 0)} run(s) left)"
        )
