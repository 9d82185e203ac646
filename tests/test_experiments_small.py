"""The --small mode of the finding scripts end to end: they run and write outputs that parse.

experiments/cbs/steps_bias.py (synthetic, a few seconds) and experiments/findings/wsd_bopt.py
(three short training runs of the demo model, about 40 s on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, str(REPO / script), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_steps_bias_small_writes_a_table_per_noise_level(tmp_path):
    _run_script("experiments/cbs/steps_bias.py", "--small", "--out", str(tmp_path))
    data = json.loads((tmp_path / "steps_bias_small.json").read_text())
    batch_sizes = sorted({row["batch_size"] for row in data["rows"]})
    assert batch_sizes == [2, 4, 8, 16, 32, 64]
    noise_free = [row for row in data["rows"] if row["sigma"] == 0.0]
    assert len(noise_free) == len(batch_sizes)
    for row in noise_free:
        assert row["censored"] == 0
        # without noise, only the grid's own error is left: interpolation removes it
        assert abs(row["interpolated"]["mean"]) < 1e-3
        assert row["first_eval"]["mean"] > 0
    text = (tmp_path / "steps_bias_small.md").read_text()
    assert text.startswith("# Steps to target") and "| 64 |" in text


def test_wsd_bopt_small_trains_and_reports(tmp_path):
    out, workdir = tmp_path / "out", tmp_path / "runs"
    _run_script(
        "experiments/findings/wsd_bopt.py", "--small", "--out", str(out), "--workdir", str(workdir)
    )
    data = json.loads((out / "wsd_bopt_small.json").read_text())
    targets = [r["target"] for r in data["results"]]
    assert targets == sorted(targets, reverse=True) and len(targets) == 2
    for result in data["results"]:
        assert result["n_points"] == len(result["batch_sizes"]) == len(result["examples"])
        # three batch sizes are fewer than the fit needs: the page says so instead of fitting
        assert result["fit"] is None and any("the fit needs" in w for w in result["warnings"])
    assert (out / "wsd_bopt_small.png").stat().st_size > 0
    assert (out / "wsd_bopt_small.md").read_text().startswith("# Finding (b)")
