"""--dry-run: what a train or sweep config will do, printed without building, compiling or
writing anything; the memory estimate's arithmetic."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bsjax import model as model_lib
from bsjax.dry_run import activation_bytes_per_sequence, memory_estimate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bsjax(args, tmp_path, devices=8):
    env = dict(os.environ, JAX_PLATFORMS="cpu", HOME=str(tmp_path / "home"))
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["BSJAX_DATA_DIR"] = str(tmp_path / "tfds")
    env["BSJAX_CACHE_DIR"] = str(tmp_path / "packed")
    (tmp_path / "cwd").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "bsjax", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path / "cwd",
    )


def _all_files(root):
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files
    )


def test_dry_run_of_paper_151m_names_params_buckets_and_memory(tmp_path):
    workdir = tmp_path / "run"
    done = _bsjax(
        [
            "train",
            f"--config={REPO}/configs/paper.py:151M",
            f"--workdir={workdir}",
            "--dry-run",
            # The tokenizer file lives elsewhere; count with its vocabulary size instead.
            "--config.data.tokenizer=bytes",
            "--config.model.vocab_size=50280",
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    counts = model_lib.count_params(model_lib.preset_config("151M", vocab_size=50280, ctx_len=512))
    assert f"{counts['non_embedding']:,} non-embedding" in out
    assert f"{counts['total']:,} total" in out
    # Batch 256 on 8 devices with 32 sequences per device: one bucket, K=1, M=256.
    assert "buckets to compile (1 train step(s)" in out
    assert "1x256x513" in out
    assert "memory per device (an estimate" in out
    for item in ("parameters", "Adam moments", "EWA parameters", "gradients", "activations"):
        assert item in out
    assert "training FLOPs per token" in out and "hybrid" in out
    # Nothing created: no run folder, no caches, not even in HOME.
    assert not workdir.exists()
    assert _all_files(tmp_path) == []


def test_dry_run_of_a_config_that_cannot_run_lists_the_problem_and_writes_nothing(tmp_path):
    done = _bsjax(
        [
            "train",
            f"--config={REPO}/configs/paper.py:151M",
            f"--workdir={tmp_path}/run",
            "--dry-run",
        ],
        tmp_path,
    )
    assert done.returncode == 2
    assert "data.tokenizer_path" in done.stdout and "Traceback" not in done.stderr
    assert _all_files(tmp_path) == []


def test_dry_run_schedule_table_has_every_switch(tmp_path):
    done = _bsjax(
        ["train", f"--config={REPO}/configs/switch_demo.py", "--dry-run"], tmp_path, devices=1
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.strip().startswith("switch")]
    # (step, B, K, M) at each switch: 40 steps at 16, 20 at 32, 20 at 64, then 128 as K=2 x 64.
    assert [(r[2], r[3], r[4], r[5]) for r in rows] == [
        ("40", "32", "1", "32"),
        ("60", "64", "1", "64"),
        ("80", "128", "2", "64"),
    ]
    assert "100 steps, 327,680 tokens" in done.stdout
    assert _all_files(tmp_path) == []


def test_dry_run_of_a_sweep_lists_every_run_with_its_budget(tmp_path):
    from bsjax.cbs.sweep import plan_sweep
    from bsjax.config.files import load_config_file

    done = _bsjax(["sweep", f"--config={REPO}/configs/demo.py", "--dry-run"], tmp_path, devices=1)
    assert done.returncode == 0, done.stdout + done.stderr
    plan = plan_sweep(load_config_file(f"{REPO}/configs/demo.py"), num_devices=1)
    for point in plan.runs():
        line = next(l for l in done.stdout.splitlines() if l.strip().startswith(point.name))
        assert str(point.max_steps) in line.split()
    assert f"runs ({len(plan.runs())};" in done.stdout
    assert _all_files(tmp_path) == []


def test_memory_estimate_shards_the_state_over_fsdp():
    cfg = model_lib.preset_config("151M", vocab_size=50280, ctx_len=512, dtype="bfloat16")
    n = model_lib.count_params(cfg)["total"]
    one = {
        name: b
        for name, b, _ in memory_estimate(
            cfg, fsdp=1, train_micro_per_device=8, eval_per_device=8
        ).items
    }
    eight = {
        name: b
        for name, b, _ in memory_estimate(
            cfg, fsdp=8, train_micro_per_device=8, eval_per_device=8
        ).items
    }
    assert one["parameters"] == n * 4 and one["Adam moments (mu, nu)"] == 2 * n * 4
    assert one["gradients"] == n * 8  # float32 accumulator + one float32 micro-step gradient
    for name in ("parameters", "Adam moments (mu, nu)", "EWA parameters", "gradients"):
        assert eight[name] == pytest.approx(one[name] / 8)
    assert eight["activations"] == one["activations"] == 8 * activation_bytes_per_sequence(cfg)
    # bfloat16 activations: halving the compute width halves the per-layer part only.
    f32 = model_lib.preset_config("151M", vocab_size=50280, ctx_len=512)
    logits = 512 * 2 * 50280 * 4
    assert activation_bytes_per_sequence(f32) - logits == pytest.approx(
        2 * (activation_bytes_per_sequence(cfg) - logits)
    )
