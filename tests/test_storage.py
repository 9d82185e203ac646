"""bsjax.storage: one path type for local folders and object storage, against local emulators."""

from __future__ import annotations

import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from etils import epath
from storage_emulators import environment, gcs_emulator, s3_emulator  # noqa: F401 (fixtures)

from bsjax import storage

# ------------------------------------------------------------------ paths


def test_local_paths_and_urls_become_one_path_type(tmp_path):
    local = storage.as_path(str(tmp_path / "run"))
    assert isinstance(local, epath.Path) and os.fspath(local) == str(tmp_path / "run")
    assert not storage.is_remote(local)
    assert os.fspath(storage.as_path(f"file://{tmp_path}/run")) == str(tmp_path / "run")
    remote = storage.as_path("gs://bucket/runs/a")
    assert str(remote) == "gs://bucket/runs/a" and str(remote / "metrics.jsonl").startswith("gs://")
    assert storage.is_remote(remote) and storage.is_remote("s3://b/x")
    assert storage.as_path(remote) is remote


@pytest.mark.parametrize(
    "bad, expected",
    [
        ("", "is empty"),
        ("gs:/bucket/run", "gs://bucket/run"),
        (pathlib.Path("gs://bucket/run"), "gs://bucket/run"),
        ("hdfs://cluster/run", "hdfs:// is not a storage"),
    ],
)
def test_unusable_paths_get_one_clear_error(bad, expected):
    with pytest.raises(storage.StorageError, match="--workdir") as err:
        storage.as_path(bad, what="--workdir")
    assert expected in str(err.value)


def test_epath_uses_fsspec_not_tensorflow_for_gs():
    from etils.epath import backend

    assert storage.as_path("gs://bucket/x")._backend is backend.fsspec_backend


def test_emulator_wiring_reaches_tensorstore_and_is_undone():
    with environment({"STORAGE_EMULATOR_HOST": "127.0.0.1:4443"}):
        assert storage.emulator_url() == "http://127.0.0.1:4443"
        assert os.environ["TENSORSTORE_GCS_HTTP_URL"] == "http://127.0.0.1:4443"
        assert os.environ["GOOGLE_AUTH_TOKEN_FOR_TESTING"]
    if "STORAGE_EMULATOR_HOST" not in os.environ:
        assert "TENSORSTORE_GCS_HTTP_URL" not in os.environ
    user_value = {"TENSORSTORE_GCS_HTTP_URL": "http://elsewhere:1"}
    with environment(user_value), environment({"STORAGE_EMULATOR_HOST": "127.0.0.1:4443"}):
        assert os.environ["TENSORSTORE_GCS_HTTP_URL"] == "http://elsewhere:1"  # the user's wins


# ------------------------------------------------------------ local files


def test_local_atomic_write_exclusive_create_and_torn_append(tmp_path):
    target = tmp_path / "summary.json"
    storage.write_json_atomic(target, {"status": "done"})
    assert json.loads(target.read_text()) == {"status": "done"}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary left

    lock = tmp_path / "run.lock"
    assert storage.create_exclusive(lock, "first") is True
    assert storage.create_exclusive(lock, "second") is False
    assert lock.read_text() == "first"

    log = tmp_path / "metrics.jsonl"
    log.write_text('{"a": 1}\n{"b"')  # the last line cut by a kill
    appender = storage.AppendFile(log)
    assert appender.ended_torn_line
    appender.write('{"c": 3}\n')
    appender.close()
    assert log.read_text().splitlines() == ['{"a": 1}', '{"b"', '{"c": 3}']


# ------------------------------------------------------ object storage


def _roundtrip(base: epath.Path) -> None:
    """epath read, write, list, rename and copy on ``base`` (a fresh remote folder)."""
    (base / "sub").mkdir(parents=True, exist_ok=True)
    (base / "sub" / "a.txt").write_text("alpha")
    (base / "b.bin").write_bytes(b"\x00\x01")
    assert sorted(p.name for p in base.iterdir()) == ["b.bin", "sub"]
    assert (base / "sub").is_dir() and (base / "sub" / "a.txt").exists()
    assert (base / "sub" / "a.txt").read_text() == "alpha"
    (base / "sub" / "a.txt").rename(base / "sub" / "moved.txt")
    assert not (base / "sub" / "a.txt").exists()
    (base / "sub" / "moved.txt").copy(base / "copy.txt")
    assert (base / "copy.txt").read_text() == "alpha"
    (base / "copy.txt").unlink()
    assert not (base / "copy.txt").exists()


def _orbax_save_restore(directory: epath.Path) -> None:
    """A real orbax CheckpointManager (async, two items, max_to_keep) saving and restoring."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=2, create=True, enable_async_checkpointing=True
    )
    state = {"w": jnp.arange(12.0).reshape(3, 4), "b": jnp.ones(3, jnp.int32)}
    with ocp.CheckpointManager(directory, options=options, item_names=("state", "meta")) as m:
        for step in (1, 2, 3):
            scaled = jax.tree.map(lambda x, s=step: x * s, state)
            m.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(scaled), meta=ocp.args.JsonSave({"step": step})
                ),
            )
        m.wait_until_finished()
    assert sorted(p.name for p in directory.iterdir() if p.name.isdigit()) == ["2", "3"]
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )
    with ocp.CheckpointManager(directory, options=options, item_names=("state", "meta")) as m:
        assert m.latest_step() == 3
        restored = m.restore(
            3,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
    np.testing.assert_array_equal(restored["state"]["w"], np.arange(12.0).reshape(3, 4) * 3)
    np.testing.assert_array_equal(restored["state"]["b"], np.full(3, 3, np.int32))
    assert restored["meta"] == {"step": 3}


def _object_semantics(base: epath.Path) -> None:
    """Atomic JSON, exclusive create and appends on a remote folder."""
    storage.write_json_atomic(base / "summary.json", {"status": "running"})
    storage.write_json_atomic(base / "summary.json", {"status": "done"})
    assert json.loads((base / "summary.json").read_text()) == {"status": "done"}

    assert storage.create_exclusive(base / "run.lock", "first") is True
    assert storage.create_exclusive(base / "run.lock", "second") is False
    assert (base / "run.lock").read_text() == "first"

    log = storage.AppendFile(base / "metrics.jsonl", upload_every_s=3600)
    log.write("1\n")
    assert not (base / "metrics.jsonl").exists()  # staged until a flush
    log.flush()
    assert (base / "metrics.jsonl").read_text() == "1\n"
    log.close()
    resumed = storage.AppendFile(base / "metrics.jsonl", upload_every_s=0)  # each write uploads
    resumed.write("2\n")
    assert (base / "metrics.jsonl").read_text() == "1\n2\n"
    resumed.close()
    assert not resumed.local.exists()  # the staging copy is gone
    events = storage.AppendFile(base / "events.bin", upload_every_s=3600, binary=True)
    events.write(b"\x00ab")
    events.close()
    assert (base / "events.bin").read_bytes() == b"\x00ab" and events.closed


@pytest.fixture
def no_local_scheme_folders(tmp_path, monkeypatch):
    """Run in an empty folder and check that no ``gs:`` or ``s3:`` folder appears there."""
    monkeypatch.chdir(tmp_path)
    yield
    assert not [name for name in os.listdir(tmp_path) if name.endswith(":")]


def test_gcs_emulator_files(gcs_emulator, no_local_scheme_folders):  # noqa: F811
    _roundtrip(storage.as_path(gcs_emulator.url_of("files")))
    _object_semantics(storage.as_path(gcs_emulator.url_of("objects")))


def test_gcs_emulator_orbax_checkpoints(gcs_emulator, no_local_scheme_folders):  # noqa: F811
    directory = storage.as_path(gcs_emulator.url_of("run", "checkpoints"))
    _orbax_save_restore(directory)
    # The arrays went through tensorstore to the emulator, not to a local folder.
    import fsspec

    fs, _ = fsspec.core.url_to_fs(str(directory))
    assert any("/3/state/" in name for name in fs.find(str(directory)))


def test_s3_emulator_files(s3_emulator, no_local_scheme_folders):  # noqa: F811
    _roundtrip(storage.as_path(s3_emulator.url_of("files")))
    _object_semantics(storage.as_path(s3_emulator.url_of("objects")))


def test_checkpoints_only_where_orbax_writes_them():
    storage.check_checkpoint_location("runs/a")
    storage.check_checkpoint_location("gs://bucket/runs/a")
    with pytest.raises(storage.StorageError, match=r"--workdir=s3://b/run: orbax-checkpoint"):
        storage.check_checkpoint_location("s3://b/run")


def test_orbax_still_writes_s3_checkpoints_to_a_local_folder(s3_emulator, tmp_path, monkeypatch):  # noqa: F811
    """Why s3:// runs are refused: when this starts to fail, orbax handles s3:// and
    storage.CHECKPOINT_SCHEMES can include "s3"."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="should be absolute. Got s3:/bsjax-test"):
        _orbax_save_restore(storage.as_path(s3_emulator.url_of("run", "checkpoints")))
    assert (tmp_path / "s3:").is_dir()


# ----------------------------------------------------- a run's records


def test_workdir_check_refuses_what_storage_cannot_hold(tmp_path):
    from bsjax.train import lock as lock_lib

    lock_lib.check_workdir(tmp_path / "run")
    lock_lib.check_workdir("gs://bucket/run")
    for bad, needle in [
        ("gs:/bucket/run", "one slash lost"),
        ("hdfs://cluster/run", "hdfs:// is not a storage"),
        ("s3://bucket/run", "cannot write checkpoints to s3://"),
    ]:
        with pytest.raises(storage.StorageError, match=needle):
            lock_lib.check_workdir(bad)


def test_run_records_on_gcs(gcs_emulator, tmp_path, no_local_scheme_folders):  # noqa: F811
    """metrics.jsonl, TensorBoard events, summary.json, identity.json and run.lock on gs://."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from bsjax.train import identity as identity_lib
    from bsjax.train import lock as lock_lib
    from bsjax.train import metrics as metrics_lib

    run = gcs_emulator.url_of("records", "run")
    log = metrics_lib.MetricsLog(run, tensorboard=True)
    log.write("train", 1, 16, 512, loss=2.5)
    log.flush()
    assert [l["loss"] for l in metrics_lib.read_run_metrics(run, "train")] == [2.5]
    log.write("train", 2, 32, 1024, loss=2.0)
    log.close()
    assert [l["step"] for l in metrics_lib.read_run_metrics(run, "train")] == [1, 2]

    (event_file,) = (storage.as_path(run) / "tensorboard").iterdir()
    local_logdir = tmp_path / "tb"
    local_logdir.mkdir()
    (local_logdir / event_file.name).write_bytes(event_file.read_bytes())
    accumulator = EventAccumulator(str(local_logdir))
    accumulator.Reload()
    assert [e.value for e in accumulator.Scalars("train/loss")] == [2.5, 2.0]

    metrics_lib.write_json_atomic(f"{run}/summary.json", {"status": "done", "steps": 2})
    assert identity_lib.read_summary(run)["steps"] == 2
    identity_lib.write_identity(run, {"model.d_model": 32})
    assert identity_lib.read_identity(run) == {"model.d_model": 32}

    busy = pytest.raises(lock_lib.WorkdirBusyError, match="in use by another run")
    with lock_lib.RunLock(run), busy:
        lock_lib.RunLock(run).acquire()
    assert not (storage.as_path(run) / lock_lib.LOCK_FILE).exists()


def test_analyze_reads_a_sweep_on_gcs_and_writes_its_report_there(
    gcs_emulator,  # noqa: F811
    tmp_path,
    no_local_scheme_folders,
    capsys,
):
    """The same synthetic sweep on a local folder and on gs:// gives the same report."""
    from test_cbs_report import MODELS, make_sweep

    from bsjax.cbs.cli import analyze_main

    models = {"s1": MODELS["s1"]}
    local = make_sweep(tmp_path / "sweep", models=models)
    remote = make_sweep(storage.as_path(gcs_emulator.url_of("sweeps", "s1")), models=models)
    assert analyze_main([str(local)]) == 0
    local_out = capsys.readouterr().out
    assert analyze_main([str(remote)]) == 0
    remote_out = capsys.readouterr().out
    assert f"report: {remote}/report/report.md" in remote_out
    assert local_out.split("\n", 1)[1] == remote_out.split("\n", 1)[1]  # same B* lines
    local_fits = json.loads((local / "report" / "fits.json").read_text())
    remote_fits = json.loads((remote / "report" / "fits.json").read_text())
    assert remote_fits.pop("sweep_dir") == str(remote)
    local_fits.pop("sweep_dir")
    assert remote_fits == local_fits
    figures = sorted(p.name for p in (remote / "report").iterdir() if p.name.endswith(".png"))
    assert figures and figures == sorted(
        p.name for p in (local / "report").iterdir() if p.name.endswith(".png")
    )


@pytest.mark.slow
def test_train_kill_resume_on_gcs_ends_bitwise_as_a_local_run(
    gcs_emulator,  # noqa: F811
    tmp_path,
    text_corpus,
    data_caches,
    no_local_scheme_folders,
):
    """A run on gs:// killed with SIGKILL after a checkpoint resumes to the local run's params."""
    import signal
    import subprocess
    import time

    import train_helpers as th

    from bsjax.train.checkpoint import steps_on_disk
    from bsjax.train.loop import train

    local = train(th.config(text_corpus, data_caches), tmp_path / "local")
    run = gcs_emulator.url_of("runs", "killed")
    proc = subprocess.Popen(
        th.cli_command(run, text_corpus, data_caches, train__max_steps=200),
        env=th.cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not steps_on_disk(f"{run}/checkpoints"):
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert steps_on_disk(f"{run}/checkpoints"), "no checkpoint reached the bucket"

    resumed = train(th.config(text_corpus, data_caches), run)
    assert resumed["status"] == "max_steps" and resumed["steps"] == 12
    assert resumed["params_sha256"] == local["params_sha256"]
    starts = [l["start"] for l in th.metric_lines(run, "resume")]
    assert starts[0] == "new" and starts[-1] == "resume"
    assert [l["step"] for l in th.metric_lines(run, "train")] == list(range(1, 13))
