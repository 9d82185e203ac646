"""Batch-size switches: exactly-once consumption across switches, kills and resumes."""

import random
import signal
import subprocess
import time

import pytest
import train_helpers as th

from bsjax.train.loop import train

TOTAL_EXAMPLES = 3 * 16 + 2 * 32 + 2 * 48 + 7 * 64  # the "switch" config's 14 steps


@pytest.fixture
def uninterrupted(switch_reference):
    return switch_reference


def test_switches_logged_and_every_example_read_once(uninterrupted):
    workdir, summary = uninterrupted
    assert summary["status"] == "max_steps" and summary["examples"] == TOTAL_EXAMPLES
    ids = th.consumed_ids(workdir)
    assert ids == list(range(TOTAL_EXAMPLES))
    switches = th.metric_lines(workdir, "switch")
    assert [(s["old_batch_size"], s["new_batch_size"]) for s in switches] == [
        (16, 32),
        (32, 48),
        (48, 64),
    ]
    assert [s["step"] for s in switches] == [3, 5, 7]
    for s in switches:
        assert s["reason"] == "schedule" and s["new_K"] * s["new_M"] == s["new_batch_size"]
        assert {"stall_s", "first_step_s", "steady_step_s", "compile_wait_s"} <= set(s)
        assert 0 <= s["compile_wait_s"] <= s["first_step_s"]
    compiles = {(l["K"], l["M"]) for l in th.metric_lines(workdir, "compile") if "K" in l}
    assert compiles == {(1, 16), (2, 16), (3, 16), (4, 16)}
    lrs = {l["batch_size"]: l["lr"] for l in th.metric_lines(workdir, "train") if l["step"] > 3}
    assert lrs[64] == pytest.approx(lrs[32] * 2**0.5, rel=1e-6)  # sqrt LR scaling


def test_resume_landing_on_a_switch_step(tmp_path, uninterrupted, text_corpus, data_caches):
    _, full = uninterrupted
    first = train(th.config(text_corpus, data_caches, "switch", train__max_steps=5), tmp_path)
    assert first["steps"] == 5  # the next step is the 32 -> 48 switch
    resumed = train(th.config(text_corpus, data_caches, "switch"), tmp_path)
    assert resumed["params_sha256"] == full["params_sha256"]
    assert [s["step"] for s in th.metric_lines(tmp_path, "switch")] == [3, 5, 7]


def _wait_for_step(workdir, step, proc, timeout=300):
    start = time.time()
    while time.time() - start < timeout:
        if proc.poll() is not None:
            return False
        try:
            if any(l["step"] >= step for l in th.metric_lines(workdir, "train")):
                return True
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"step {step} not reached in {timeout}s")


@pytest.mark.slow
def test_sigkill_twice_then_resume_reads_each_example_once(
    tmp_path, uninterrupted, text_corpus, data_caches
):
    _, full = uninterrupted
    rng = random.Random(1234)
    kill_steps = sorted(rng.sample(range(2, 13), 2))
    for kill_at in kill_steps:
        proc = subprocess.Popen(
            th.cli_command(
                tmp_path,
                text_corpus,
                data_caches,
                "switch",
                train__log_example_ids=True,
                train__checkpoint_every=3,
            ),
            env=th.cli_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_step(tmp_path, kill_at, proc)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    th.run_cli(
        tmp_path,
        text_corpus,
        data_caches,
        "switch",
        train__log_example_ids=True,
        train__checkpoint_every=3,
    )
    summary = th.summary(tmp_path)
    assert summary["status"] == "max_steps"
    assert th.consumed_ids(tmp_path) == list(range(TOTAL_EXAMPLES))
    assert summary["params_sha256"] == full["params_sha256"]
    starts = [l["start"] for l in th.metric_lines(tmp_path, "resume")]
    assert len(starts) == 3 and starts[-1] == "resume", starts
