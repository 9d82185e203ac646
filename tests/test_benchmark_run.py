"""python -m experiments.benchmarks.run: the --small (CI) run writes every section, and --only
selects sections. Figures are checked for being measured (finite, positive), never for speed."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL_SECTIONS = ("mfu", "overhead", "stall", "compile", "pipeline", "memory")
MEASURED = {
    "mfu": ("tokens_per_s", "tokens_per_s_bare_jit", "flops_per_token", "achieved_tflops"),
    "overhead": ("loop_step_s", "bare_step_s", "ratio"),
    "stall": ("first_step_s", "steady_step_s", "stall_ratio"),
    "compile": ("cold_s", "warm_s", "warm_over_cold"),
    "pipeline": (
        "read_tokens_per_s",
        "assemble_tokens_per_s",
        "step_tokens_per_s",
        "read_over_step",
        "assemble_over_step",
    ),
    "memory": ("compiled_total_bytes",),
}


def _load_run_module():
    spec = importlib.util.spec_from_file_location(
        "benchmarks_run", ROOT / "experiments" / "benchmarks" / "run.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _finite_positive(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def test_only_selects_sections_and_small_leaves_out_the_retrace_baseline():
    bench = _load_run_module()
    plan, _ = bench.parse_args(["--small"])
    assert plan.sections == list(SMALL_SECTIONS)
    assert plan.presets == ["tiny"] and plan.accum == [1, 2] and len(plan.stall_sizes) == 3
    plan, _ = bench.parse_args(["--small", "--only", "compile,retrace", "--ctx", "64"])
    assert plan.sections == ["retrace", "compile"] and plan.ctx == [64] and plan.stall_ctx == 64
    with pytest.raises(SystemExit):
        bench.parse_args(["--only", "mfu,bogus"])


@pytest.mark.slow
def test_small_run_writes_every_section_with_measured_figures(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device
    env.update(
        JAX_PLATFORMS="cpu",
        BSJAX_DATA_DIR=str(tmp_path / "tfds"),
        BSJAX_CACHE_DIR=str(tmp_path / "packed"),
    )
    out_dir = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.benchmarks.run", "--small", "--out", str(out_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    report = json.loads((out_dir / "benchmark-small.json").read_text())
    for key in ("device", "jax_version", "date", "command", "results"):
        assert report[key], key
    assert report["device"]["backend"] == "cpu"
    assert "--small" in report["command"]
    by_section = {s: [r for r in report["results"] if r["section"] == s] for s in SMALL_SECTIONS}
    for section, fields in MEASURED.items():
        records = by_section[section]
        assert records, f"no {section} records"
        for record in records:
            assert record["config"], section
            for field in fields:
                assert _finite_positive(record[field]), (section, field, record[field])

    assert sorted(r["config"]["K"] for r in by_section["mfu"]) == [1, 2]
    for r in by_section["mfu"]:
        assert r["mfu"] is None and r["mfu_text"] == "n/a (no published peak)"
    assert {r["variant"] for r in by_section["stall"]} == {"bsjax-cold", "bsjax-warm"}
    assert len(by_section["stall"]) == 4  # two switches, cold and warm
    train_steps = [r for r in by_section["compile"] if r["config"]["executable"] == "train_step"]
    assert len(train_steps) == 3  # one bucket per size of the schedule
    for r in by_section["memory"]:
        assert r["device_peak_bytes"] is None or r["device_peak_bytes"] > 0

    table = (out_dir / "benchmark-small.md").read_text()
    assert table.strip() and "| preset |" in table
    for heading in ("## MFU", "## Step overhead", "## Switch stall", "## Compile", "## Input"):
        assert heading in table
    assert "## Memory" in proc.stdout
