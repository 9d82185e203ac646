"""Run-integrity parts on their own: identity comparison, the workdir lock, verified
checkpoints and the metrics ledger (no training; the end-to-end cases are in
test_integrity_faults.py)."""

import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bsjax.train import checkpoint as checkpoint_lib
from bsjax.train import identity as identity_lib
from bsjax.train import lock as lock_lib
from bsjax.train import metrics as metrics_lib

# ------------------------------------------------------------------ identity


def _identity(**changes):
    config = dict(
        seed=0,
        model=dict(ctx_len=32),
        data=dict(shuffle_seed=0, path="/a/corpus", cache_dir="/a/cache"),
        optim=dict(lr=3e-3, b2=0.99),
        batch=dict(schedule="constant", batch_size=16, policy=dict(name="none")),
        train=dict(max_steps=12, max_tokens=0, eval_batch_size=8, log_every=1),
    )
    for key, value in changes.items():
        section, name = key.split("__")
        config[section][name] = value
    model = dict(vocab_size=257, d_model=32, n_layers=2)
    corpus = dict(
        corpus=dict(source="text_folder", path="/a/corpus", content_sha256="abc"),
        tokenizer=dict(kind="bytes", vocab_size=257),
        ctx_len=config["model"]["ctx_len"],
        splits=dict(train=dict(num_sequences=100, cache_file="/a/cache/x.npy")),
    )
    return identity_lib.run_identity(config, model, corpus, {"data": 8, "fsdp": 1}, 1)


def test_identity_holds_what_decides_the_trajectory_and_no_paths():
    ident = _identity()
    for key in (
        "seed",
        "model.d_model",
        "data.shuffle_seed",
        "data.ctx_len",
        "corpus.content_sha256",
        "tokenizer.vocab_size",
        "data.packed.train.num_sequences",
        "optim.lr",
        "batch.policy.name",
        "mesh.data",
        "mesh.processes",
        "train.eval_batch_size",
        "code.version",
        "code.git_commit",
    ):
        assert key in ident, key
    assert not any("path" in k or "cache" in k for k in ident), sorted(ident)
    assert "train.log_every" not in ident


def test_identity_change_names_each_key_with_old_and_new_value(tmp_path):
    identity_lib.write_identity(tmp_path, _identity())
    before = (tmp_path / "identity.json").read_bytes()
    with pytest.raises(identity_lib.IdentityMismatchError) as err:
        identity_lib.check_resume(tmp_path, _identity(data__shuffle_seed=3, model__ctx_len=64))
    message = str(err.value)
    assert "data.shuffle_seed: the run has 0, this config 3" in message
    assert "data.ctx_len: the run has 32, this config 64" in message
    assert "nothing was changed" in message
    assert (tmp_path / "identity.json").read_bytes() == before


def test_identity_allows_a_raised_limit_and_records_it():
    comparison = identity_lib.compare(_identity(), _identity(train__max_steps=20))
    assert comparison.refused == []
    assert comparison.extended == {"train.max_steps": [12, 20]}
    moved = identity_lib.compare(_identity(), _identity(data__path="/b/corpus"))
    assert moved.refused == [] and moved.changes == {}


def test_identity_file_that_is_not_json_refuses(tmp_path):
    (tmp_path / "identity.json").write_text("{not json")
    with pytest.raises(identity_lib.IdentityFileError, match="not valid JSON"):
        identity_lib.check_resume(tmp_path, _identity())


# ---------------------------------------------------------------------- lock


def test_second_lock_on_a_folder_refuses_naming_the_holder(tmp_path):
    with (
        lock_lib.RunLock(tmp_path, heartbeat_s=0.05),
        pytest.raises(lock_lib.WorkdirBusyError, match=f"pid {os.getpid()}"),
    ):
        lock_lib.RunLock(tmp_path).acquire()
    assert not (tmp_path / lock_lib.LOCK_FILE).exists()
    with lock_lib.RunLock(tmp_path):  # released: free again
        pass


def test_heartbeat_rewrites_the_lock(tmp_path):
    with lock_lib.RunLock(tmp_path, heartbeat_s=0.05) as lock:
        first = lock.holder()["heartbeat"]
        deadline = time.time() + 10
        while lock.holder()["heartbeat"] == first and time.time() < deadline:
            time.sleep(0.05)
        assert lock.holder()["heartbeat"] > first


def test_lock_of_a_killed_process_is_taken_over_at_once(tmp_path):
    code = (
        "import sys,time; from bsjax.train.lock import RunLock; "
        f"RunLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(lock_lib.WorkdirBusyError, match=f"pid {proc.pid}"):
            lock_lib.RunLock(tmp_path).acquire()
        proc.kill()
        proc.wait()
        with lock_lib.RunLock(tmp_path) as lock:
            assert lock.holder()["pid"] == os.getpid()
    finally:
        proc.kill()


def test_lock_with_an_old_heartbeat_is_stale(tmp_path):
    record = dict(host="elsewhere", pid=1, token="x", started=0.0, heartbeat=time.time() - 100)
    (tmp_path / lock_lib.LOCK_FILE).write_text(json.dumps(record))
    with pytest.raises(lock_lib.WorkdirBusyError, match="host elsewhere"):
        lock_lib.RunLock(tmp_path, stale_s=1000).acquire()
    with lock_lib.RunLock(tmp_path, stale_s=50) as lock:
        assert lock.holder()["host"] != "elsewhere"


class _CheckThenWriteStore(lock_lib._LocalStore):
    """A local folder used like object storage: create-if-absent is not atomic."""

    atomic_create = False

    def create(self, path, text):
        if os.path.exists(path):
            return False
        with open(path, "w") as f:
            f.write(text)
        return True


def test_object_store_protocol_read_back_decides_the_owner(tmp_path):
    first = lock_lib.RunLock(tmp_path, settle_s=0.01, store=_CheckThenWriteStore())
    first.acquire()
    # A second writer that found the lock absent overwrote it (the race window):
    second = lock_lib.RunLock(tmp_path, settle_s=0.01, store=_CheckThenWriteStore())
    (tmp_path / lock_lib.LOCK_FILE).write_text(second._record())
    with pytest.raises(lock_lib.LockLostError):
        first.refresh()
    assert first.lost
    first.release()
    assert (tmp_path / lock_lib.LOCK_FILE).exists()  # not the first's to remove


def test_workdir_checks(tmp_path):
    with pytest.raises(lock_lib.WorkdirError, match="--workdir is empty"):
        lock_lib.check_workdir("")
    (tmp_path / "f").write_text("x")
    with pytest.raises(lock_lib.WorkdirError, match="is a file"):
        lock_lib.check_workdir(tmp_path / "f")
    with pytest.raises(lock_lib.WorkdirError, match="is a file"):
        lock_lib.check_workdir(tmp_path / "f" / "run")
    lock_lib.check_workdir(tmp_path / "new" / "run")


# --------------------------------------------------------------- checkpoints


def _state(value):
    return {
        # 64 KB of random w (incompressible): its bytes fill their own data file.
        "params": {
            "w": jax.random.normal(jax.random.key(int(value)), (128, 128)),
            "b": jnp.arange(3.0) * value,
        },
        "step": jnp.asarray(int(value), jnp.int32),
    }


def _save(ckpt_dir, steps):
    ckpt = checkpoint_lib.Checkpointer(ckpt_dir, keep=5, async_save=False)
    for step in steps:
        ckpt.save(step, _state(step), dict(step=step, policy={"x": np.float32(0.5)}))
    ckpt.close()


def _flip_byte_in_arrays(step_dir):
    """Flip one byte in the middle of the largest data file of the state item (orbax
    restores such a checkpoint without an error: only the digests notice)."""
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and "d" in p.parts]
    target = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))


def test_checkpoint_digests_round_trip_and_save_is_idempotent(tmp_path):
    _save(tmp_path / "ckpt", [1, 2])
    ckpt = checkpoint_lib.Checkpointer(tmp_path / "ckpt", keep=5, async_save=False)
    restored = ckpt.restore_verified(checkpoint_lib.abstract_like(_state(0.0)))
    assert restored.step == 2 and restored.quarantined == []
    assert restored.meta["digests"] == checkpoint_lib.state_digests(_state(2))
    assert restored.meta["policy"] == {"x": 0.5}
    ckpt.save(2, _state(99.0), dict(step=2))  # already on disk: not rewritten
    ckpt.close()
    again = checkpoint_lib.Checkpointer(tmp_path / "ckpt", keep=5, async_save=False)
    state = again.restore_verified(checkpoint_lib.abstract_like(_state(0.0))).state
    assert float(state["params"]["b"][1]) == 2.0
    again.close()


def test_corrupt_newest_checkpoint_is_quarantined_and_the_previous_used(tmp_path):
    _save(tmp_path / "ckpt", [1, 2])
    _flip_byte_in_arrays(tmp_path / "ckpt" / "2")
    ckpt = checkpoint_lib.Checkpointer(tmp_path / "ckpt", keep=5, async_save=False)
    restored = ckpt.restore_verified(checkpoint_lib.abstract_like(_state(0.0)))
    assert restored.step == 1
    [moved] = restored.quarantined
    assert moved["step"] == 2
    assert ckpt.steps() == [1]
    assert (tmp_path / checkpoint_lib.QUARANTINE_DIR).is_dir()
    assert os.path.isdir(moved["moved_to"])
    ckpt.save(2, _state(2), dict(step=2))  # the step can be saved again
    ckpt.close()


def test_no_valid_checkpoint_refuses_and_renames_nothing(tmp_path):
    _save(tmp_path / "ckpt", [1])
    _flip_byte_in_arrays(tmp_path / "ckpt" / "1")
    ckpt = checkpoint_lib.Checkpointer(tmp_path / "ckpt", keep=5, async_save=False)
    with pytest.raises(checkpoint_lib.CheckpointError, match="step 1: 1 of 3 arrays do not match"):
        ckpt.restore_verified(checkpoint_lib.abstract_like(_state(0.0)))
    assert ckpt.steps() == [1]
    assert not (tmp_path / checkpoint_lib.QUARANTINE_DIR).exists()
    ckpt.close()


def test_edited_meta_is_detected(tmp_path):
    _save(tmp_path / "ckpt", [1])
    meta_file = tmp_path / "ckpt" / "1" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    meta["step"] = 7
    meta_file.write_text(json.dumps(meta))
    ckpt = checkpoint_lib.Checkpointer(tmp_path / "ckpt", keep=5, async_save=False)
    with pytest.raises(checkpoint_lib.CheckpointError, match="meta does not match"):
        ckpt.restore_verified(checkpoint_lib.abstract_like(_state(0.0)))
    ckpt.close()


# -------------------------------------------------------------------- ledger


def _write_lines(path, lines):
    (path / "metrics.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))


def test_ledger_keeps_the_live_history_across_resumes(tmp_path):
    def line(kind, step, **kw):
        return dict(kind=kind, step=step, examples=step, tokens=step, **kw)

    _write_lines(
        tmp_path,
        [
            line("resume", 0, fresh=True),
            *[line("train", s) for s in (1, 2, 3, 4, 5, 6)],
            line("eval", 4),
            line("switch", 4),  # decided after the checkpoint at 4: redone
            line("resume", 4),
            *[line("train", s) for s in (5, 6, 7)],
            line("switch", 4, again=True),
        ],
    )
    live = metrics_lib.read_run_metrics(tmp_path)
    assert [l["step"] for l in live if l["kind"] == "train"] == [1, 2, 3, 4, 5, 6, 7]
    assert [l.get("again") for l in live if l["kind"] == "switch"] == [True]
    assert [l["step"] for l in metrics_lib.read_run_metrics(tmp_path, "eval")] == [4]
    assert len(metrics_lib.read_run_metrics(tmp_path, ("resume",))) == 2


def test_a_torn_last_line_stays_apart_from_the_next_start(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"kind": "train", "step": 1}\n{"kind": "tr')
    log = metrics_lib.MetricsLog(tmp_path, tensorboard=False)
    log.write("resume", 1, 0, 0)
    log.close()
    lines = metrics_lib.read_run_metrics(tmp_path)
    assert [(l["kind"], l["step"]) for l in lines] == [("train", 1), ("resume", 1)]


def test_summary_is_written_in_place_on_a_full_disk(tmp_path):
    import subprocess

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        metrics_lib.write_json_atomic(mnt / "summary.json", {"status": "running"})
        with pytest.raises(OSError), open(mnt / "filler", "wb") as f:
            while True:
                f.write(b"x" * 4096)
                f.flush()
        metrics_lib.write_json_atomic(mnt / "summary.json", {"status": "failed", "reason": "full"})
        assert json.loads((mnt / "summary.json").read_text())["status"] == "failed"
        assert sorted(p.name for p in mnt.iterdir()) == ["filler", "summary.json"]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
