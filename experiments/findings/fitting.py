"""Small fitting helpers the finding scripts share: the `bsjax fit-cbs` CLI and log-log slopes."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def fit_cbs(
    steps_by_batch: dict[int, float], csv_path: Path, *, b_opt: int, bootstrap: int = 500
) -> dict:
    """Fit Y(B) = a + b/B with `bsjax fit-cbs` on a CSV written to ``csv_path``; its JSON."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["batch_size", "steps"])
        for batch, steps in sorted(steps_by_batch.items()):
            writer.writerow([batch, f"{steps:.4f}"])
    cmd = [sys.executable, "-m", "bsjax", "fit-cbs", str(csv_path), "--json"]
    cmd += ["--b-opt", str(b_opt), "--bootstrap", str(bootstrap)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout)


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares fit log y = log c + k log x: (k, c, standard error of k; nan for 2 points)."""
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    k, logc = np.polyfit(lx, ly, 1)
    if len(lx) > 2:
        resid = ly - (k * lx + logc)
        se = math.sqrt(float(resid @ resid) / (len(lx) - 2) / float(((lx - lx.mean()) ** 2).sum()))
    else:
        se = math.nan
    return float(k), float(math.exp(logc)), se


def fmt_interval(value: float, ci: Sequence[float] | None, digits: int = 1) -> str:
    """'12.8 [12.1, 13.7]' (or just the value when there is no interval)."""
    if ci is None or len(ci) != 2 or any(v is None or not math.isfinite(v) for v in ci):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
