"""Sweep executors: parallel local subprocesses give the sequential sweep's results, bitwise;
references finish before their points; a failed run is reported, and retried on request
through submitit."""

import json
import shlex
import shutil
import sys

import pytest
import train_helpers as th
from conftest import tiny_sweep_config as sweep_cfg

from bsjax.cbs.sweep import SweepConfigError, plan_sweep, run_sweep

pytestmark = pytest.mark.slow  # five tiny runs, each a subprocess


def steps_to_target(workdir, plan):
    return {p.name: th.summary(workdir / p.name)["steps_to_target"] for p in plan.runs()}


@pytest.fixture(scope="module")
def parallel_and_sequential(tmp_path_factory, text_corpus, data_caches, tiny_sweep):
    """The tiny sweep with 2 local subprocesses at a time, and the shared one that ran one
    at a time."""
    workdir = tmp_path_factory.mktemp("parallel")
    log: list[str] = []
    config = sweep_cfg(text_corpus, data_caches, executor="local", parallel=2)
    return dict(
        parallel=(config, workdir, run_sweep(config, workdir, out=log.append), log),
        sequential=tiny_sweep,
    )


def test_parallel_sweep_measures_what_the_sequential_one_does(parallel_and_sequential):
    config, par_dir, par, par_log = parallel_and_sequential["parallel"]
    _, seq_dir, seq, seq_log = parallel_and_sequential["sequential"]
    plan = plan_sweep(config)
    names = sorted(p.name for p in plan.runs())
    for outcome in (par, seq):
        assert sorted(outcome.trained) == names and outcome.failed == {} and outcome.skipped == []
    assert "up to 2 run(s) at once" in par_log[0] and "up to 1 run(s) at once" in seq_log[0]
    assert par.targets == seq.targets
    assert steps_to_target(par_dir, plan) == steps_to_target(seq_dir, plan)
    assert all(v is not None for v in steps_to_target(par_dir, plan).values())
    assert par.critical_batch_sizes == seq.critical_batch_sizes
    for p in plan.runs():
        assert (
            th.summary(par_dir / p.name)["params_sha256"]
            == th.summary(seq_dir / p.name)["params_sha256"]
        )
        assert (par_dir / "logs" / f"{p.name}.log").exists()


def test_reference_finishes_before_its_points_start(parallel_and_sequential):
    config, workdir, outcome, log = parallel_and_sequential["parallel"]
    plan = plan_sweep(config)
    ref = plan.references[plan.settings[0]]
    target_line = next(i for i, l in enumerate(log) if l.startswith("target loss"))
    starts = {l.split()[1].rstrip(":"): i for i, l in enumerate(log) if ": start (" in l}
    assert starts[ref.name] < target_line
    assert all(i > target_line for name, i in starts.items() if name != ref.name)
    assert len(starts) == 3
    # Each point's launched command carried the target the reference set.
    for p in plan.points:
        stored = json.loads((workdir / p.name / "config.json").read_text())
        want = 0.0 if p.name == ref.name else outcome.targets[""]
        assert stored["train"]["target_loss"] == want


def test_failed_run_is_reported_and_retried_on_request(
    parallel_and_sequential, tmp_path, text_corpus, data_caches
):
    config, workdir, outcome, _ = parallel_and_sequential["parallel"]
    copy = tmp_path / "sweep"
    shutil.copytree(workdir, copy)
    plan = plan_sweep(config)
    point = next(p for p in plan.points if p.batch_size == 32)
    run_dir = copy / point.name
    shutil.rmtree(run_dir)
    run_dir.mkdir()
    (run_dir / "checkpoints").write_text("not a folder")  # the trainer cannot save: it fails

    log: list[str] = []
    failed = run_sweep(config, copy, out=log.append)
    log_path = copy / "logs" / f"{point.name}.log"
    assert failed.failed == {point.name: str(log_path)} and failed.trained == []
    assert log_path.stat().st_size > 0
    assert any("FAILED" in l and str(log_path) in l for l in log)
    assert any(l.startswith(f"failed: {point.name}") and "retry_failed" in l for l in log)
    record = json.loads((copy / "logs" / f"{point.name}.failed.json").read_text())
    assert record["returncode"] != 0 and record["command"][0] == sys.executable

    # Without retry_failed the failed run is reported again and not rerun.
    log = []
    again = run_sweep(config, copy, out=log.append)
    assert again.trained == [] and point.name in again.failed
    assert any("failed before" in l and point.name in l for l in log)

    (run_dir / "checkpoints").unlink()
    retry = sweep_cfg(  # the retry goes through submitit (its local cluster)
        text_corpus,
        data_caches,
        executor="slurm",
        slurm=dict(cluster="local", array_parallelism=1),
        retry_failed=True,
    )
    retried = run_sweep(retry, copy, out=[].append)
    assert retried.trained == [point.name] and retried.failed == {}
    assert (
        th.summary(run_dir)["steps_to_target"]
        == th.summary(workdir / point.name)["steps_to_target"]
    )
    assert retried.critical_batch_sizes == outcome.critical_batch_sizes


def test_cluster_commands_call_this_interpreter(tmp_path, text_corpus, data_caches):
    lines = run_sweep(
        sweep_cfg(text_corpus, data_caches, print_commands=True), tmp_path, out=[].append
    )
    commands = [l for l in lines if not l.startswith("#")]
    assert len(commands) == 3
    for line in commands:
        words = shlex.split(line.split(' "--config.train.target_loss=')[0])
        assert words[:4] == [sys.executable, "-m", "bsjax", "train"]
    assert sum(f"$({shlex.quote(sys.executable)} -m bsjax.cbs.sweep" in l for l in commands) == 2


def test_bad_launch_keys_fail_before_anything_is_written(tmp_path, text_corpus, data_caches):
    config = sweep_cfg(
        text_corpus,
        data_caches,
        executor="cloud",
        parallel=-1,
        retry_failed="yes",
        slurm=dict(cluster="pbs", timeout_min=0, queue="x"),
    )
    with pytest.raises(SweepConfigError) as err:
        run_sweep(config, tmp_path / "never")
    message = str(err.value)
    for key in (
        "sweep.executor='cloud'",
        "sweep.parallel=-1",
        "sweep.retry_failed='yes'",
        "sweep.slurm.cluster='pbs'",
        "sweep.slurm.timeout_min=0",
        "sweep.slurm.queue: unknown key",
    ):
        assert key in message
    assert not (tmp_path / "never").exists()
