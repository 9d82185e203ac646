"""Fault injection: a run folder never loses, mixes or silently restarts its history.

Each case ends in one of two outcomes, checked exactly: the run's parameters are
bitwise those of one uninterrupted run (``reference``), or the command refuses
with one message and every file of the folder is byte for byte what it was.
Run alone with ``pytest -m faults``.
"""

import hashlib
import inspect
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import train_helpers as th

from bsjax.train import checkpoint as checkpoint_lib
from bsjax.train import identity as identity_lib
from bsjax.train import lock as lock_lib
from bsjax.train.loop import train

pytestmark = pytest.mark.faults

if "new_run" not in inspect.signature(train).parameters:
    # The loop opens run folders through identity, lock and verified checkpoints only
    # once their integration hunks (set-up, restore-or-init, save, summary, exit codes)
    # are in bsjax/train/loop.py and bsjax/cli.py; until then these cases cannot run.
    pytest.skip(
        "bsjax.train.loop.train has no new_run yet: run-integrity integration pending",
        allow_module_level=True,
    )

STEPS = 12  # tiny_test: checkpoints every 4 steps, evaluations every 4


def files_digest(folder) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, by relative path."""
    folder = Path(folder)
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory, text_corpus, data_caches):
    """One uninterrupted run of 12 steps."""
    workdir = tmp_path_factory.mktemp("reference") / "run"
    summary = train(th.config(text_corpus, data_caches), workdir)
    assert summary["status"] == "max_steps" and summary["steps"] == STEPS
    return workdir, summary


@pytest.fixture(scope="module")
def half(tmp_path_factory, text_corpus, data_caches):
    """The same run stopped at its limit of 6 steps: checkpoints 4 and 6."""
    workdir = tmp_path_factory.mktemp("half") / "run"
    train(th.config(text_corpus, data_caches, train__max_steps=6), workdir)
    assert checkpoint_lib.steps_on_disk(workdir / "checkpoints") == [4, 6]
    return workdir


def copy_of(run, tmp_path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


def assert_one_history(workdir, steps=STEPS):
    """The live metrics hold each train step once, in order."""
    assert [l["step"] for l in th.metric_lines(workdir, "train")] == list(range(1, steps + 1))


def array_files(step_dir) -> list[Path]:
    """The data files of a checkpoint's arrays (orbax's ocdbt ``d/`` folders)."""
    return [p for p in (Path(step_dir) / "state").rglob("*") if p.is_file() and "d" in p.parts]


# ------------------------------------------------------------ re-runs and resumes


def test_finished_run_rerun_prints_its_summary_and_changes_nothing(
    reference, tmp_path, text_corpus, data_caches
):
    workdir = copy_of(reference[0], tmp_path)
    before = files_digest(workdir)
    proc = th.run_cli(workdir, text_corpus, data_caches)
    assert proc.returncode == 0
    assert f"status: max_steps  steps: {STEPS}" in proc.stdout
    assert files_digest(workdir) == before


def test_raised_limit_extends_the_run_to_the_uninterrupted_result(
    reference, half, tmp_path, text_corpus, data_caches
):
    workdir = copy_of(half, tmp_path)
    summary = train(th.config(text_corpus, data_caches), workdir)
    assert summary["params_sha256"] == reference[1]["params_sha256"]
    resumes = th.metric_lines(workdir, "resume")
    assert [(r["step"], r["start"]) for r in resumes] == [(0, "new"), (6, "extend")]
    assert resumes[-1]["changes"] == {"train.max_steps": [6, STEPS]}
    assert_one_history(workdir)


@pytest.mark.parametrize(
    "override, key",
    [
        (dict(model__d_model=64), "model.d_model"),
        (dict(data__shuffle_seed=7), "data.shuffle_seed"),
        (dict(model__ctx_len=16), "data.ctx_len"),
        (dict(batch__batch_size=32), "batch.batch_size"),
        (dict(optim__lr=1e-3), "optim.lr"),
        (dict(train__eval_batch_size=16), "train.eval_batch_size"),
    ],
)
def test_resume_with_another_identity_refuses_and_changes_nothing(
    half, tmp_path, text_corpus, data_caches, override, key
):
    workdir = copy_of(half, tmp_path)
    before = files_digest(workdir)
    with pytest.raises(identity_lib.IdentityMismatchError) as err:
        train(th.config(text_corpus, data_caches, **override), workdir)
    assert f"{key}: the run has " in str(err.value)
    assert files_digest(workdir) == before


def test_new_run_flag_refuses_a_folder_that_is_not_empty(half, tmp_path, text_corpus, data_caches):
    workdir = copy_of(half, tmp_path)
    before = files_digest(workdir)
    with pytest.raises(identity_lib.NewRunError, match="is not empty"):
        train(th.config(text_corpus, data_caches), workdir, new_run=True)
    assert files_digest(workdir) == before


# --------------------------------------------------------------------- checkpoints


def _flip_all(step_dir) -> None:
    for path in array_files(step_dir):
        _flip(path)


def _truncate_all(step_dir) -> None:
    """Cut every array file in half (a single file may hold bytes no restore reads)."""
    for path in array_files(step_dir):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(path: Path) -> None:
    """Flip one byte in every KiB (a single flip may land in bytes no restore reads)."""
    data = bytearray(path.read_bytes())
    for i in range(512, len(data), 1024):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _delete_metadata(step_dir: Path) -> None:
    (step_dir / "state" / "_METADATA").unlink()


@pytest.mark.parametrize(
    "damage",
    [
        _flip_all,
        _truncate_all,
        _delete_metadata,
    ],
    ids=["flipped_bytes", "truncated_file", "missing_file"],
)
def test_damaged_newest_checkpoint_is_quarantined_and_the_previous_one_used(
    reference, half, tmp_path, text_corpus, data_caches, damage
):
    workdir = copy_of(half, tmp_path)
    damage(workdir / "checkpoints" / "6")
    summary = train(th.config(text_corpus, data_caches), workdir)
    assert summary["params_sha256"] == reference[1]["params_sha256"]
    [quarantined] = [
        l for l in th.metric_lines(workdir, "event") if l["event"] == "checkpoint_quarantined"
    ]
    assert quarantined["checkpoint_step"] == 6 and Path(quarantined["moved_to"]).is_dir()
    assert th.metric_lines(workdir, "resume")[-1]["checkpoint_step"] == 4
    assert_one_history(workdir)


def test_no_valid_checkpoint_refuses_and_changes_nothing(half, tmp_path, text_corpus, data_caches):
    workdir = copy_of(half, tmp_path)
    for step in (4, 6):
        _flip_all(workdir / "checkpoints" / str(step))
    before = files_digest(workdir)
    with pytest.raises(checkpoint_lib.CheckpointError, match="step 6: .*\n  - step 4: "):
        train(th.config(text_corpus, data_caches, train__max_steps=STEPS), workdir)
    assert files_digest(workdir) == before


def test_deleted_checkpoints_refuse_instead_of_restarting(half, tmp_path, text_corpus, data_caches):
    workdir = copy_of(half, tmp_path)
    shutil.rmtree(workdir / "checkpoints")
    before = files_digest(workdir)
    with pytest.raises(identity_lib.HistoryLostError, match="reached step 6"):
        train(th.config(text_corpus, data_caches), workdir)
    assert files_digest(workdir) == before
    assert not (workdir / "checkpoints").exists()


# ------------------------------------------------- kills, Ctrl-C, concurrent starts


def _wait_for(predicate, timeout=240.0, poll=0.002):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return False


def _saving(workdir) -> bool:
    ckpt = Path(workdir) / "checkpoints"
    return ckpt.is_dir() and any("tmp" in p.name for p in ckpt.iterdir())


def _trained_to(workdir, step) -> bool:
    path = Path(workdir) / "metrics.jsonl"
    return path.exists() and f'"kind": "train", "step": {step},' in path.read_text()


def test_ctrl_c_then_kill_9_in_a_save_then_resume_is_the_uninterrupted_run(
    reference, tmp_path, text_corpus, data_caches
):
    workdir = tmp_path / "run"
    rng = random.Random(0)
    # 1. Ctrl-C at a random step: a preemption (checkpoint, status preempted, exit 0).
    stop_at = rng.randint(2, 7)
    proc = subprocess.Popen(
        th.cli_command(workdir, text_corpus, data_caches, train__max_steps=200),
        env=th.cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait_for(lambda: _trained_to(workdir, stop_at))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    preempted = th.summary(workdir)
    assert preempted["status"] == "preempted" and preempted["steps"] >= stop_at

    # 2. Resume; a second start while it runs refuses at once, naming it; kill -9 during
    #    a checkpoint save.
    proc = subprocess.Popen(
        th.cli_command(workdir, text_corpus, data_caches, train__max_steps=200),
        env=th.cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert _wait_for(lambda: (workdir / lock_lib.LOCK_FILE).exists())
        with pytest.raises(lock_lib.WorkdirBusyError, match=f"pid {proc.pid}"):
            train(th.config(text_corpus, data_caches), workdir)
        assert _wait_for(lambda: _saving(workdir) or proc.poll() is not None)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL, "the run ended before a save could be caught"

    # 3. The next start takes over the dead run's lock and continues; the final state is
    #    bitwise the uninterrupted run's and the live history has each step once.
    summary = train(th.config(text_corpus, data_caches, train__max_steps=STEPS), workdir)
    assert summary["status"] == "max_steps"
    assert summary["params_sha256"] == reference[1]["params_sha256"]
    assert_one_history(workdir)
    assert len(th.metric_lines(workdir, "resume")) == 3


# --------------------------------------------------------------- full and read-only disks


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs (needs root and mount); unmounted afterwards."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_fails_with_the_reason_then_resumes_to_the_same_result(
    reference, tmpfs, text_corpus, data_caches
):
    workdir = tmpfs / "run"
    proc = th.run_cli(workdir, text_corpus, data_caches, check=False)
    assert proc.returncode == 4, proc.stderr[-3000:]
    assert "the disk is full" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    failed = th.summary(workdir)
    assert failed["status"] == "failed" and "the disk is full" in failed["reason"]
    # The summary names the last good checkpoint (0 when the disk filled before the first
    # one fit: how far a 3 MiB disk gets depends on the sizes orbax writes).
    kept = checkpoint_lib.steps_on_disk(workdir / "checkpoints")
    assert failed["steps"] == max(kept, default=0)
    subprocess.run(["mount", "-o", "remount,size=64m", str(tmpfs)], check=True)
    summary = train(th.config(text_corpus, data_caches), workdir)
    assert summary["params_sha256"] == reference[1]["params_sha256"]
    assert_one_history(workdir)


def test_read_only_folder_refuses_with_one_message(reference, tmpfs, text_corpus, data_caches):
    subprocess.run(["mount", "-o", "remount,size=64m", str(tmpfs)], check=True)
    workdir = copy_of(reference[0], tmpfs)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    before = files_digest(workdir)
    proc = th.run_cli(workdir, text_corpus, data_caches, check=False)
    assert proc.returncode == 2
    assert "is not writable" in proc.stderr and "Traceback" not in proc.stderr
    assert files_digest(workdir) == before


# ---------------------------------------------------------------------- bad input


def _cli(*args, cwd=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bsjax", *args],
        env=th.cli_env(),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_each_bad_input_is_one_message_without_a_traceback(tmp_path, text_corpus, data_caches):
    bad_syntax = tmp_path / "bad.py"
    bad_syntax.write_text("def get_config(:\n")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    tiny = str(th.CONFIG)
    data = [f"--config.{k}={v}" for k, v in th.overrides(text_corpus, data_caches).items()]
    cases = {
        "missing config file": (
            ["train", f"--config={tmp_path}/nope.py", f"--workdir={tmp_path}/w1"],
            "no config file",
        ),
        "config syntax error": (
            ["train", f"--config={bad_syntax}", f"--workdir={tmp_path}/w2"],
            "syntax error at line 1",
        ),
        "unknown preset": (
            ["train", "--config=configs/paper.py:999M", f"--workdir={tmp_path}/w3"],
            "unknown preset",
        ),
        "unknown override key": (
            ["train", f"--config={tiny}", "--config.train.nope=1", f"--workdir={tmp_path}/w4"],
            "has no key 'train.nope'",
        ),
        "empty workdir": (["train", f"--config={tiny}", "--workdir=", *data], "--workdir is empty"),
        "workdir is a file": (
            ["train", f"--config={tiny}", f"--workdir={a_file}", *data],
            "is a file",
        ),
        "binary file to fit-cbs": (["fit-cbs", str(binary)], "is not a text CSV file"),
    }
    procs = {name: _cli(*args, cwd=th.REPO) for name, (args, _) in cases.items()}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, f"{name}: rc {proc.returncode}\n{err[-2000:]}"
        assert cases[name][1] in err, f"{name}: {err[-2000:]}"
        assert "Traceback" not in err, f"{name}: {err[-2000:]}"
    assert not (Path.cwd() / "metrics.jsonl").exists()  # --workdir= trained nowhere
    for i in range(1, 5):
        assert not (tmp_path / f"w{i}").exists()


def test_diverged_run_exits_3(tmp_path, text_corpus, data_caches):
    workdir = tmp_path / "run"
    proc = th.run_cli(workdir, text_corpus, data_caches, check=False, optim__lr=1e9)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert th.summary(workdir)["status"] == "diverged"
    before = files_digest(workdir)
    again = th.run_cli(workdir, text_corpus, data_caches, check=False, optim__lr=1e9)
    assert again.returncode == 3 and files_digest(workdir) == before


def test_no_stray_files_after_a_refused_start(tmp_path, text_corpus, data_caches):
    """A start that refuses on a new folder leaves no folder behind."""
    workdir = tmp_path / "new"
    with pytest.raises(Exception, match="eval"):
        train(th.config(text_corpus, data_caches, train__eval_batches=10**6), workdir)
    assert not workdir.exists()
