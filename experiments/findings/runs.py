"""Run `bsjax train` in a subprocess and read its run folder: the one interface the experiments use.

The experiments drive bsjax through its command line and read only what a run
folder holds (``summary.json``; ``metrics.jsonl``, one JSON object a line with
``kind``, ``step``, ``examples``, ``tokens``), so they do not depend on the
package's internal Python API.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO_MODEL_CONFIG = REPO / "experiments" / "findings" / "demo_model.py"
FINISHED = ("max_tokens", "max_steps", "target_reached", "diverged")


class RunFailed(RuntimeError):
    """A `bsjax train` subprocess exited non-zero; the message holds its last output lines."""


def overrides(values: dict) -> list[str]:
    """``{"batch.batch_size": 8}`` -> ``["--config.batch.batch_size=8"]``."""
    return [f"--config.{key}={value}" for key, value in values.items()]


def run_status(workdir: Path) -> str | None:
    """The ``status`` of a run folder's summary.json, None when there is none."""
    path = workdir / "summary.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("status")


def is_finished(workdir: Path) -> bool:
    """True when the run folder holds a run that stopped at one of its stops."""
    return run_status(workdir) in FINISHED


def train(
    workdir: Path,
    config_values: dict,
    *,
    config: Path = DEMO_MODEL_CONFIG,
    log: Path | None = None,
    nice: int = 19,
) -> float:
    """Train one run from scratch into ``workdir`` (an unfinished folder is cleared first).

    Returns the wall time in seconds. Raises RunFailed when the command fails.
    """
    workdir = Path(workdir)
    if workdir.exists():
        print(f"  {workdir.name}: unfinished run folder found; clearing it and starting again")
        shutil.rmtree(workdir)
    workdir.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "bsjax", "train", f"--config={config}", f"--workdir={workdir}"]
    cmd += overrides(config_values)
    if nice:
        cmd = ["nice", "-n", str(nice)] + cmd
    log = log or workdir.parent / f"{workdir.name}.log"
    env = dict(os.environ)
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.pop("XLA_FLAGS", None)  # one device: the runs are the experiment, not a mesh test
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise RunFailed(f"{' '.join(cmd)}\nexited {proc.returncode}; last lines of {log}:\n{tail}")
    return seconds


def read_metrics(workdir: Path) -> dict[str, list[dict]]:
    """The lines of ``metrics.jsonl`` grouped by kind (eval, train, switch, ...)."""
    out: dict[str, list[dict]] = {}
    for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            out.setdefault(rec["kind"], []).append(rec)
    return out


def read_summary(workdir: Path) -> dict:
    """The run's summary.json."""
    return json.loads((Path(workdir) / "summary.json").read_text())


def eval_curve(workdir: Path, key: str = "ewa_eval_loss") -> list[tuple[int, int, float]]:
    """(step, tokens, loss) of every eval line, in order."""
    return [(r["step"], r["tokens"], r[key]) for r in read_metrics(workdir).get("eval", [])]


def crossing(points: Sequence[tuple[float, float]], target: float) -> float | None:
    """The first x where the piecewise-linear curve of (x, loss) falls to ``target``.

    Linear interpolation between the two bracketing points; None when the curve
    never reaches the target.
    """
    prev = None
    for x, loss in points:
        if loss <= target:
            if prev is None:
                return float(x)
            x0, l0 = prev
            return float(x0 + (x - x0) * (l0 - target) / (l0 - loss))
        prev = (x, loss)
    return None
