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


def _load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(
        f"benchmarks_{name}", ROOT / "experiments" / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_sweep_benchmark_reads_b_star_lines_and_compares_the_runs():
    bench = _load_benchmark("sweep_executor")
    out = "report: x/report.md\nB* (): 13.2 [11.9, 15.5] = 2^3.72 sequences\nB* (lr=1e-2): 8\n"
    assert bench.parse_b_star(out) == {
        "": {"value": 13.2, "low": 11.9, "high": 15.5},
        "lr=1e-2": {"value": 8.0, "low": None, "high": None},
    }
    runs = {"bs0008": {"steps_to_target": 40.5, "params_sha256": "ab"}}
    seq = dict(b_star=bench.parse_b_star(out), runs=runs, wall_s=100.0)
    par = dict(seq, wall_s=80.0)
    verdict = bench.compare(seq, par)
    assert verdict["same_b_star"] and verdict["same_runs"] and verdict["runs_compared"] == 1
    assert verdict["parallel_over_sequential_wall"] == 0.8
    other = dict(par, runs={"bs0008": {"steps_to_target": 41.0, "params_sha256": "cd"}})
    assert bench.compare(seq, other)["differing_runs"] == ["bs0008"]


def test_warm_restart_benchmark_groups_import_times_and_reads_whole_lines(tmp_path):
    bench = _load_benchmark("warm_restart")
    importtime = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:      2000 |       2000 |     jax._src.core",
            "import time:      1000 |       3000 |   jax",
            "import time:   3000000 |    3000000 |       tensorflow.python",
            "import time:    500000 |    3500000 |     tensorflow",
            "import time:      1000 |    3501000 |   clu.metric_writers",
            "import time:       100 |    3504100 | bsjax.train.trackers",
            "I1203 a log line",
        ]
    )
    imports = bench.import_breakdown(importtime)
    assert imports["self_s_by_group"]["tensorflow"] == 3.5
    assert imports["self_s_by_group"]["jax"] == 0.003
    assert imports["self_s_by_group"]["clu"] == 0.001
    assert imports["slowest_top_level"] == [("bsjax.train.trackers", 3.5041)]
    assert math.isclose(imports["total_self_s"], 3.5041)

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"kind": "resume", "step": 10}\n{"kind": "train", "st')
    lines, offset = bench._new_lines(metrics, 0)
    assert lines == [{"kind": "resume", "step": 10}]
    with open(metrics, "a") as f:
        f.write('ep": 11}\n')
    assert bench._new_lines(metrics, offset)[0] == [{"kind": "train", "step": 11}]
    argv = bench.train_argv("configs/tiny_cpu.py", tmp_path, 13, tmp_path / "xla", [])
    assert "--config.train.max_steps=13" in argv and "--config.train.log_every=1" in argv
