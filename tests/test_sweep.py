"""CBS sweeps end to end: reference target, every point to target, resume, cluster commands, errors."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import train_helpers as th
from absl import flags
from conftest import tiny_sweep_config as sweep_cfg
from ml_collections import config_flags

from bsjax.cbs.sweep import SweepConfigError, plan_sweep, run_config, run_sweep
from bsjax.train.eval_schedule import eval_steps
from bsjax.train.loop import train


@pytest.fixture(scope="module")
def finished(tiny_sweep):
    return tiny_sweep


def eval_lines(run_dir):
    return th.metric_lines(run_dir, "eval")


def test_every_point_trains_to_the_reference_target(finished):
    config, workdir, outcome, log = finished
    plan = plan_sweep(config)
    ref = plan.references[plan.settings[0]]
    assert plan.settings[0].t_chin == 17 and ref.batch_size == 16
    names = [p.name for p in plan.runs()]
    assert sorted(outcome.trained) == sorted(names) and outcome.skipped == []
    assert len(names) == 3  # the reference is also the batch-16 point

    # The target is the reference's EWA eval loss, evaluated exactly at t_chin.
    at_t_chin = [l for l in eval_lines(workdir / ref.name) if l["step"] == 17]
    assert len(at_t_chin) == 1
    target = at_t_chin[0]["ewa_eval_loss"]
    assert outcome.targets[""] == target
    ref_summary = th.summary(workdir / ref.name)
    assert ref_summary["status"] == "max_steps" and ref_summary["steps"] == 17
    assert ref_summary["role"] == "reference" and ref_summary["target_loss"] == target
    assert ref_summary["steps_to_target"] <= 17 and ref_summary["ref_tokens"] == 17 * 16 * 32

    for point in plan.points:
        run_dir = workdir / point.name
        stored = json.loads((run_dir / "config.json").read_text())
        is_reference = point.name == ref.name  # the batch-16 point is the reference run
        assert stored["train"]["target_loss"] == (0.0 if is_reference else target)
        assert stored["target"]["ref_tokens"] == 17 * 16 * 32  # the data size D of the scaling law
        if is_reference:
            continue
        summary = th.summary(run_dir)
        assert summary["status"] == "target_reached", (point.name, summary["status"])
        n_B = max(4, -(-17 * 16 // point.batch_size))  # linear scaling from the reference
        assert stored["train"]["expected_steps"] == n_B and stored["train"]["max_steps"] == 4 * n_B
        # Steps to target: the first step of the hybrid schedule whose EWA eval loss is at the target.
        evals = {l["step"]: l["ewa_eval_loss"] for l in eval_lines(run_dir)}
        assert sorted(evals) == [
            s
            for s in eval_steps(n_B, every=4, max_steps=4 * n_B)
            if s <= summary["steps_to_target"]
        ]
        assert evals[summary["steps_to_target"]] <= target
        assert all(v > target for s, v in evals.items() if s < summary["steps_to_target"])

    # The report fits the best run per batch size and the sweep prints its path and B*.
    assert outcome.report == workdir / "report" / "report.md" and outcome.report.exists()
    assert any(line == f"report: {outcome.report}" for line in log)
    assert any(line.startswith("B* (") for line in log) == bool(outcome.critical_batch_sizes)
    rows = (workdir / "report" / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 3
    assert sum("start (" in line for line in log) == 3
    assert (
        sum("ETA" in line for line in log) == 2
        and "done (0 run(s) left)" in log[-5] + log[-4] + log[-3]
    )


def test_rerun_skips_finished_runs(finished, tmp_path):
    config, workdir, _, _ = finished
    copy = tmp_path / "sweep"
    shutil.copytree(workdir, copy)
    before = {p.parent.name: p.stat().st_mtime_ns for p in copy.glob("*/summary.json")}
    log: list[str] = []
    outcome = run_sweep(config, copy, out=log.append)
    assert outcome.trained == [] and sorted(outcome.skipped) == sorted(before)
    assert {p.parent.name: p.stat().st_mtime_ns for p in copy.glob("*/summary.json")} == before
    assert sum(line.endswith("skipped") for line in log) == 3


def test_analyze_rewrites_the_sweeps_report_byte_for_byte(finished, tmp_path):
    from bsjax.cbs.cli import analyze_main

    _, workdir, _, _ = finished
    copy = tmp_path / workdir.name  # the report's title names the folder
    shutil.copytree(workdir, copy)
    written = {p.name: p.read_bytes() for p in (copy / "report").iterdir() if p.suffix != ".png"}
    shutil.rmtree(copy / "report")
    assert analyze_main([str(copy)]) == 0
    again = {p.name: p.read_bytes() for p in (copy / "report").iterdir() if p.suffix != ".png"}
    assert sorted(again) == sorted(written)
    for name, data in written.items():
        assert again[name] == data.replace(str(workdir).encode(), str(copy).encode()), name


def test_interrupted_run_resumes(finished, tmp_path):
    config, workdir, _, _ = finished
    copy = tmp_path / "sweep"
    shutil.copytree(workdir, copy)
    plan = plan_sweep(config)
    point = next(p for p in plan.points if p.batch_size == 8)
    run_dir = copy / point.name
    shutil.rmtree(run_dir)
    # What a run killed after its step-3 checkpoint leaves: its full config.json,
    # a checkpoint at step 3 and summary.json saying "running".
    full = run_config(plan, point, plan_target(copy, plan))
    partial = run_config(plan, point, plan_target(copy, plan))
    partial.train.max_steps = 3
    train(partial, run_dir)
    stored = json.loads((run_dir / "config.json").read_text())
    stored["train"]["max_steps"] = full.train.max_steps
    (run_dir / "config.json").write_text(json.dumps(stored))
    summary = th.summary(run_dir)
    (run_dir / "summary.json").write_text(json.dumps({**summary, "status": "running"}))

    log: list[str] = []
    outcome = run_sweep(config, copy, out=log.append)
    assert outcome.trained == [point.name]
    assert any(point.name in line and "resuming" in line for line in log)
    resumed = th.metric_lines(run_dir, "resume")[1:]  # after the first start's line
    assert [l["checkpoint_step"] for l in resumed] == [3]
    uninterrupted = th.summary(workdir / point.name)
    again = th.summary(run_dir)
    assert again["status"] == "target_reached"
    assert again["steps_to_target"] == uninterrupted["steps_to_target"]
    assert again["params_sha256"] == uninterrupted["params_sha256"]


def plan_target(workdir, plan):
    ref = plan.references[plan.settings[0]]
    return th.summary(workdir / ref.name)["target_loss"]


def as_json(config):
    return json.loads(json.dumps(config.to_dict(), sort_keys=True))


def parse_train_command(words):
    """The config a `PYTHON -m bsjax train` command line would run, parsed by the same absl flags."""
    assert words[0] == sys.executable and words[1:4] == ["-m", "bsjax", "train"], words[:4]
    argv = ["bsjax"] + words[4:]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", None, "", flag_values=values, lock_config=True, sys_argv=argv
    )
    flags.DEFINE_string("workdir", None, "", flag_values=values)
    values(argv)
    return values.config, values.workdir


def test_cluster_commands_parse_and_reproduce_the_runs(
    finished, tmp_path, text_corpus, data_caches
):
    config, workdir, _, _ = finished
    target_dir = tmp_path / "cluster"
    lines = run_sweep(
        sweep_cfg(text_corpus, data_caches, print_commands=True), target_dir, out=[].append
    )
    commands = [l for l in lines if not l.startswith("#")]
    plan = plan_sweep(config)
    assert len(commands) == 3 and not any((target_dir / p.name).exists() for p in plan.runs())
    target = plan_target(workdir, plan)
    # The reference's folder as the cluster job would leave it, so the points can read their target.
    ref = plan.references[plan.settings[0]]
    shutil.copytree(workdir / ref.name, target_dir / ref.name)

    env = th.cli_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    by_name = {p.name: p for p in plan.runs()}
    for line in commands:
        expr = re.search(r"\$\((.*)\)", line)
        if expr:  # the shell substitution that reads the target from the finished reference
            got = subprocess.run(
                shlex.split(expr.group(1)), env=env, capture_output=True, text=True, check=True
            )
            assert float(got.stdout) == target
            line = line.replace(expr.group(0), got.stdout.strip())
        parsed, run_dir = parse_train_command(shlex.split(line))
        point = by_name[Path(run_dir).name]
        assert Path(run_dir).parent == target_dir.resolve()
        want = run_config(plan, point, target)
        assert as_json(parsed) == as_json(want), point.name

    # One point's command, run by a shell as a cluster job would: the same run as the sweep's.
    point = next(p for p in plan.points if p.batch_size == 32)
    line = next(l for l in commands if point.name in l)
    subprocess.run(
        ["bash", "-c", line], env=env, capture_output=True, text=True, check=True, timeout=600
    )
    ours, theirs = th.summary(workdir / point.name), th.summary(target_dir / point.name)
    assert theirs["status"] == "target_reached"
    assert theirs["steps_to_target"] == ours["steps_to_target"]
    assert theirs["params_sha256"] == ours["params_sha256"]


def test_bad_sweep_config_lists_every_problem_before_writing(tmp_path, text_corpus, data_caches):
    config = sweep_cfg(
        text_corpus,
        data_caches,
        batch_sizes=(8, 0),
        ewa_tau=(1.5,),
        ewa_tau_rule="grid",
        warmup_tokens=(100,),
        max_steps_factor=0.5,
    )
    with pytest.raises(SweepConfigError) as err:
        run_sweep(config, tmp_path / "never")
    message = str(err.value)
    for key in ("sweep.batch_sizes", "sweep.ewa_tau", "warmup_fraction", "sweep.max_steps_factor"):
        assert key in message
    assert not (tmp_path / "never").exists()

    # A batch size the mesh cannot hold is named with its run, before anything compiles.
    with pytest.raises(SweepConfigError, match=r"run bs0012_.*batch"):
        plan_sweep(sweep_cfg(text_corpus, data_caches, batch_sizes=(12, 16)))


def test_cli_prints_one_clean_message(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bsjax",
            "sweep",
            f"--config={th.REPO / 'configs' / 'demo.py'}",
            f"--workdir={tmp_path / 'w'}",
            "--config.sweep.reference_batch_size=0",
        ],
        env=th.cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "sweep.reference_batch_size=0 must be an int > 0" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "w").exists()


def test_finished_run_of_another_config_is_refused(finished, tmp_path, text_corpus, data_caches):
    _, workdir, _, _ = finished
    copy = tmp_path / "sweep"
    shutil.copytree(workdir, copy)
    changed = sweep_cfg(text_corpus, data_caches)
    changed.base.train.eval_batches = 3  # changes the eval loss, so the target and every run
    with pytest.raises(SweepConfigError, match="train.eval_batches: 2 != 3"):
        run_sweep(changed, copy, out=[].append)


def load_config_file(name, arg):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"sweep_cfg_{name}", th.REPO / "configs" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def test_paper_sweep_config_follows_tables_1_3_and_4(tmp_path):
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text("{}")  # validation checks only that the file exists
    config = load_config_file("sweep_paper.py", "151M")
    config.base.data.tokenizer_path = str(tokenizer)
    plan = plan_sweep(config, num_devices=8)
    (setting,) = plan.settings
    assert (
        abs(setting.t_chin - 23438) / 23438 < 1e-3
    )  # Table 1: the Chinchilla step of 151M at batch 256
    by_size = {p.batch_size: p for p in plan.points}
    assert sorted(by_size) == [2**i for i in range(6, 15)]
    assert (by_size[512].b2, by_size[512].ewa_tau) == (0.99, 0.998)  # Table 4, 151M
    assert (by_size[1024].b2, by_size[1024].ewa_tau) == (0.95, 0.95)
    assert by_size[256].warmup_tokens == round(0.25 * setting.ref_tokens)

    grid = load_config_file("sweep_paper.py", "151M,grid")
    grid.base.data.tokenizer_path = str(tokenizer)
    assert len(plan_sweep(grid, num_devices=8).points) == 9 * 5 * 7

    data = load_config_file("sweep_paper.py", "151M,data")
    data.base.data.tokenizer_path = str(tokenizer)
    settings = plan_sweep(data, num_devices=8).settings
    assert [round(s.ref_tokens / settings[2].ref_tokens, 2) for s in settings] == [
        0.28,
        0.5,
        1.0,
        2.0,
        4.0,
    ]


def test_given_target_needs_no_reference_and_unreached_runs_are_left_out(
    tmp_path, text_corpus, data_caches
):
    # A target far below what 9-17 steps can reach: every run stops at its step cap.
    config = sweep_cfg(
        text_corpus, data_caches, batch_sizes=(16, 32), target_loss=0.5, max_steps_factor=1.0
    )
    log: list[str] = []
    outcome = run_sweep(config, tmp_path, out=log.append)
    plan = plan_sweep(config)
    assert plan.references == {} and len(outcome.trained) == 2
    for point in plan.points:
        summary = th.summary(tmp_path / point.name)
        assert summary["status"] == "max_steps" and summary["steps"] == point.expected_steps
        assert summary["steps_to_target"] is None and summary["target_loss"] == 0.5
        assert (
            json.loads((tmp_path / point.name / "config.json").read_text())["target"]["ref_tokens"]
            == 0
        )
        assert any(point.name in line and "censored" in line for line in log)
    assert outcome.critical_batch_sizes == {} and "B*: not measured" in "\n".join(log)


def test_seeds_replicate_every_point_but_the_reference(tmp_path):
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text("{}")  # validation checks only that the file exists
    config = load_config_file("sweep_paper.py", "151M")
    config.base.data.tokenizer_path = str(tokenizer)
    single = plan_sweep(config, num_devices=8)
    config.sweep.seeds = (0, 1, 2)
    seeded = plan_sweep(config, num_devices=8)
    assert len(seeded.points) == 3 * len(single.points)
    assert list(seeded.references.values()) == list(single.references.values())
    point = next(p for p in seeded.points if p.seed == 2)
    assert point.name.endswith("_s2") and point.name[: -len("_s2")] in {
        p.name for p in single.points
    }
    run = run_config(seeded, point, 3.5)
    assert run.seed == 2 and run.data.shuffle_seed == 2
    config.sweep.seeds = (1, 1, -2)
    with pytest.raises(SweepConfigError, match="sweep.seeds=.* must be distinct ints >= 0"):
        plan_sweep(config, num_devices=8)
