"""Trackers: TensorBoard event files written without TensorFlow, read back by TensorBoard;
a W&B offline run holding the history; MetricsLog feeding both from metrics lines."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("wandb")

# Runs in a fresh interpreter where importing TensorFlow fails, as on a host without it.
_WRITER_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                raise ImportError("no TensorFlow on this host")

    sys.meta_path.insert(0, NoTensorFlow())
    from bsjax.train import trackers

    workdir = sys.argv[1]
    writer = trackers.make_writer(
        workdir,
        tensorboard=True,
        wandb_project="bsjax-test",
        hparams={"optim.lr": 0.003, "batch.schedule": "table", "train.tensorboard": True},
    )
    for step in (10, 20, 30):
        writer.write_scalars(step, {"train/loss": 5.0 - step / 10, "train/batch_size": 64})
    writer.write_scalars(30, {"eval/ewa_eval_loss": 2.25})
    writer.close()
    loaded = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow."))
    print(json.dumps({"tensorflow_modules": loaded}))
    """
)


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("tracked") / "run_a"
    workdir.mkdir()
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DISABLE_CODE="true")
    done = subprocess.run(
        [sys.executable, "-c", _WRITER_SCRIPT, str(workdir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=Path(__file__).parents[1],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["tensorflow_modules"] == []  # the writer never imported TensorFlow
    return workdir


def _accumulator(logdir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return acc


def test_tensorboard_reads_scalars_written_without_tensorflow(tracked_run):
    acc = _accumulator(tracked_run / "tensorboard")
    assert {"train/loss", "train/batch_size", "eval/ewa_eval_loss"} <= set(acc.Tags()["scalars"])
    loss = [(e.step, round(e.value, 6)) for e in acc.Scalars("train/loss")]
    assert loss == [(10, 4.0), (20, 3.0), (30, 2.0)]
    assert [e.value for e in acc.Scalars("eval/ewa_eval_loss")] == [2.25]


def test_tensorboard_hparams_hold_the_run_config(tracked_run):
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = _accumulator(tracked_run / "tensorboard")
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    values = start.session_start_info.hparams
    assert values["optim.lr"].number_value == pytest.approx(0.003)
    assert values["batch.schedule"].string_value == "table"
    assert values["train.tensorboard"].bool_value is True
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    assert {h.name for h in experiment.experiment.hparam_infos} == set(values)


def _wandb_records(path: Path):
    """Records of a .wandb file: a 7-byte header, then LevelDB-log records in 32 KiB blocks."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:  # zero padding to the end of the block
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:  # a whole record
            yield chunk
        elif kind == 2:  # first, middle, last pieces
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk


def test_wandb_offline_run_holds_the_history(tracked_run):
    from wandb.proto import wandb_internal_pb2

    runs = list((tracked_run / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((tracked_run / "wandb").iterdir())
    files = list(runs[0].glob("run-*.wandb"))
    assert len(files) == 1
    history = []
    for raw in _wandb_records(files[0]):
        record = wandb_internal_pb2.Record.FromString(raw)
        if record.WhichOneof("record_type") == "history":
            history.append(
                {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json)
                    for item in record.history.item
                }
            )
    train = [(h["step"], h["train/loss"]) for h in history if "train/loss" in h]
    assert train == [(10, 4.0), (20, 3.0), (30, 2.0)]
    assert [h["eval/ewa_eval_loss"] for h in history if "eval/ewa_eval_loss" in h] == [2.25]


def test_metrics_log_feeds_tensorboard_from_metric_lines(tmp_path):
    from bsjax.train.metrics import MetricsLog

    log = MetricsLog(tmp_path, tensorboard=True, hparams={"batch.batch_size": 64})
    log.write("train", 5, 320, 40960, loss=3.5, lr=1e-3, batch_size=64)
    log.write("eval", 5, 320, 40960, eval_loss=3.6, ewa_eval_loss=3.4)
    log.write("compile", 0, 0, 0, executable="train_step", seconds=1.0)
    log.close()
    acc = _accumulator(tmp_path / "tensorboard")
    scalars = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/tokens", "eval/ewa_eval_loss"} <= scalars
    assert not any(tag.startswith("compile/") for tag in scalars)  # compile lines stay in jsonl
    assert [e.step for e in acc.Scalars("train/loss")] == [5]
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["train", "eval", "compile"]


def test_a_run_with_a_wandb_project_feeds_both_trackers(
    tmp_path, monkeypatch, text_corpus, data_caches
):
    import train_helpers as th

    for name, value in dict(
        WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DISABLE_CODE="true"
    ).items():
        monkeypatch.setenv(name, value)
    workdir = tmp_path / "run"
    th.run_cli(
        workdir, text_corpus, data_caches, train__max_steps=4, train__wandb__project="bsjax-test"
    )
    assert len(list((workdir / "wandb").glob("offline-run-*"))) == 1
    (event_file,) = (workdir / "tensorboard").iterdir()
    acc = _accumulator(event_file.parent)
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4]


def test_importing_the_trackers_loads_no_tensorflow_where_it_is_installed(tmp_path):
    """Every run imports bsjax.train.trackers (for flat_hparams), so it must not pull in
    TensorFlow through clu.metric_writers: seconds of every start, TensorBoard on or off."""
    pytest.importorskip("tensorflow")
    script = textwrap.dedent(
        """
        import json, sys
        from bsjax.train import trackers

        writer = trackers.make_writer(sys.argv[1], tensorboard=True, hparams={"optim.lr": 0.1})
        writer.write_scalars(1, {"train/loss": 1.0})
        writer.close()
        heavy = ("tensorflow", "clu")
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parents[1],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    assert list((tmp_path / "tensorboard").iterdir())
