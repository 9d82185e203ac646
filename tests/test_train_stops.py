"""Stops: SIGTERM (save, 'preempted', exit 0), divergence, target loss; config errors."""

import math
import signal
import subprocess

import pytest
import train_helpers as th
from test_train_switch import _wait_for_step

from bsjax.config import ConfigError, base_config, validate
from bsjax.train.loop import train


def test_sigterm_saves_and_exits_zero(tmp_path, text_corpus, data_caches):
    proc = subprocess.Popen(
        th.cli_command(
            tmp_path,
            text_corpus,
            data_caches,
            train__max_steps=100000,
            train__checkpoint_every=100000,
        ),
        env=th.cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_step(tmp_path, 3, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    summary = th.summary(tmp_path)
    assert summary["status"] == "preempted" and summary["steps"] >= 3
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert saved[-1] == summary["steps"]  # the preemption checkpoint is the newest


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path, text_corpus, data_caches):
    summary = train(
        th.config(
            text_corpus,
            data_caches,
            optim__lr=1e9,
            optim__clip_norm=0.0,
            optim__warmup_tokens=0,
            train__checkpoint_every=1,
            train__max_steps=50,
        ),
        tmp_path,
    )
    assert summary["status"] == "diverged"
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert not saved or saved[-1] <= summary["steps"]
    diverged = [l for l in th.metric_lines(tmp_path, "event") if l["event"] == "diverged"]
    assert diverged and not math.isfinite(float(diverged[0]["loss"]))
    assert diverged[0]["step"] == summary["steps"] + 1


def test_target_loss_stops_with_steps_to_target(tmp_path, text_corpus, data_caches):
    summary = train(
        th.config(
            text_corpus,
            data_caches,
            train__target_loss=5.2,
            train__eval_every=2,
            train__max_steps=200,
        ),
        tmp_path,
    )
    assert summary["status"] == "target_reached"
    evals = th.metric_lines(tmp_path, "eval")
    first = next(l for l in evals if l["ewa_eval_loss"] <= 5.2)
    assert summary["steps_to_target"] == first["step"] == summary["steps"]
    assert summary["tokens_to_target"] == first["tokens"]
    crossing = summary["target_crossing"]  # interpolated between the bracketing evaluations
    before = evals[evals.index(first) - 1]
    assert (crossing["before_step"], crossing["after_step"]) == (before["step"], first["step"])
    assert before["step"] < crossing["steps"] <= first["step"]


BAD = [
    ("batch.batch_size", 12, "batch"),  # not divisible by 8 devices
    ("model.preset", "3B", "model.preset"),
    ("optim.schedule", "linear", "optim.schedule"),
    ("optim.lr", -1.0, "optim.lr"),
    ("optim.ewa_tau", 1.0, "optim.ewa_tau"),
    ("data.source", "text_folder", "path"),  # no folder given
    ("train.max_steps", 0, "set a stop"),
    ("mesh.fsdp", 3, "mesh.fsdp"),
    ("model.n_heads", 3, "n_heads"),
]


@pytest.mark.parametrize("key,value,needle", BAD)
def test_each_bad_key_gets_one_clear_message(key, value, needle):
    config = base_config()
    config.train.max_steps = 10
    section, name = key.split(".")
    config[section][name] = value
    problems = validate(config, num_devices=8)
    assert len(problems) == 1, problems
    assert needle in problems[0]


def test_bad_config_fails_before_anything_is_written(tmp_path):
    config = base_config()
    config.optim.lr = -1.0
    config.train.max_steps = 10
    with pytest.raises(ConfigError, match="optim.lr"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
