"""A run's records: metrics.jsonl, the trackers (TensorBoard, W&B), summary.json.

Every metrics.jsonl line has ``kind`` (train | eval | switch | compile | event |
resume), ``step``, ``examples`` and ``tokens`` (docs/architecture.md contract). Only
process 0 writes; other processes keep a no-op log so the loop needs no branches.

metrics.jsonl is a ledger: lines are only ever appended. Each start of a run
appends one ``resume`` line whose ``step`` is the step it continues from (0 for
a new run). A run killed after its checkpoint at step s has written lines past s
that the resumed run writes again; ``read_run_metrics`` returns the live
history: at each ``resume`` line at step s it drops the earlier lines with step
> s, and the earlier ``switch`` lines at step s (a switch at s is decided after
the checkpoint at s, so the resumed run decides it again). Every reader of
metrics.jsonl goes through it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from bsjax import storage

METRICS_FILE = "metrics.jsonl"
KINDS = ("train", "eval", "switch", "compile", "event", "resume")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or inf; keep them readable
    return value


class MetricsLog:
    """Appends metric lines to metrics.jsonl and scalars to the trackers (TensorBoard, W&B)."""

    def __init__(
        self,
        workdir: str | Path,
        enabled: bool = True,
        tensorboard: bool = True,
        wandb_project: str = "",
        wandb_entity: str = "",
        hparams: dict[str, Any] | None = None,
    ):
        self.enabled = enabled
        self._file = None
        self._writer = None
        if not enabled:
            return
        workdir = storage.as_path(workdir)
        # Ends a line cut by a kill, so it stays one unreadable line of its own; on object
        # storage, lines are staged locally and uploaded by flush() (bsjax.storage).
        self._file = storage.AppendFile(workdir / METRICS_FILE)
        # TensorBoard event files without TensorFlow, and W&B when a project is named.
        from bsjax.train.trackers import make_writer

        self._writer = make_writer(
            workdir,
            tensorboard=tensorboard,
            wandb_project=wandb_project,
            wandb_entity=wandb_entity,
            hparams=hparams,
        )

    def write(self, kind: str, step: int, examples: int, tokens: int, **values: Any) -> None:
        """Write one line; numeric values also go to TensorBoard as ``kind/name``."""
        if kind not in KINDS:
            raise ValueError(f"metric kind {kind!r} must be one of {KINDS}")
        if not self.enabled:
            return
        line = dict(kind=kind, step=int(step), examples=int(examples), tokens=int(tokens))
        line.update({k: _jsonable(v) for k, v in values.items()})
        self._file.write(json.dumps(line) + "\n")
        if self._writer is not None and kind in ("train", "eval", "switch"):
            scalars = {
                f"{kind}/{k}": v
                for k, v in line.items()
                if k not in ("kind", "step") and isinstance(v, (int, float))
            }
            self._writer.write_scalars(int(step), scalars)

    def flush(self) -> None:
        """Make every line and scalar written so far durable (uploaded, on object storage)."""
        if self._writer is not None:
            self._writer.flush()
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
        if self._file is not None:
            self._file.close()


def write_json_atomic(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON that readers see whole or not at all (a rename locally, one PUT remotely).

    On a full local disk (no room for the temporary file) an existing file is
    overwritten in place instead: a summary fits in the blocks its earlier
    version holds, so a run that fails for lack of space can still say so.
    """
    body = {k: _jsonable(v) for k, v in data.items()}
    text = json.dumps(body, indent=2, default=str)
    try:
        storage.write_text_atomic(path, text)
    except OSError as err:
        local = not storage.is_remote(path) and os.path.exists(os.fspath(path))
        if err.errno not in (errno.ENOSPC, errno.EDQUOT) or not local:
            raise
        leftover = os.path.join(
            os.path.dirname(os.fspath(path)), f".{os.path.basename(path)}.tmp{os.getpid()}"
        )
        with contextlib.suppress(FileNotFoundError):
            os.remove(leftover)  # the part of the temporary file that fitted
        with open(os.fspath(path), "r+b") as f:
            f.write(text.encode())
            f.truncate()


def _superseded(line: dict[str, Any], resume_step: int) -> bool:
    step = line.get("step")
    if not isinstance(step, int):
        return False
    return step > resume_step or (line.get("kind") == "switch" and step == resume_step)


def live_history(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lines of a ledger that describe the run as it now stands (see the module doc)."""
    live: list[dict[str, Any]] = []
    for line in lines:
        if line.get("kind") == "resume" and isinstance(line.get("step"), int):
            live = [old for old in live if not _superseded(old, line["step"])]
        live.append(line)
    return live


def read_run_metrics(
    run_dir: str | Path, kinds: str | tuple[str, ...] | None = None
) -> list[dict[str, Any]]:
    """The live history of a run's metrics.jsonl, optionally only lines of ``kinds``.

    A missing file gives no lines. Lines that are not JSON objects (a line cut
    short by a kill, or a file being written) are skipped.
    """
    try:
        data = (storage.as_path(run_dir) / METRICS_FILE).read_bytes()
    except FileNotFoundError:
        return []
    lines = []
    for raw in data.decode("utf-8", errors="replace").split("\n"):
        raw = raw.strip()
        if not raw:
            continue
        try:
            line = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(line, dict):
            lines.append(line)
    if isinstance(kinds, str):
        kinds = (kinds,)
    return [l for l in live_history(lines) if kinds is None or l.get("kind") in kinds]


class Stopwatch:
    """Wall time since construction."""

    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start
