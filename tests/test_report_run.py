"""``bsjax report RUN_DIR``: the plots of one real tiny run and the report.md listing them."""

from __future__ import annotations

import subprocess
import sys

import pytest
import train_helpers as th

from bsjax import cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALWAYS = ("loss_vs_steps.png", "loss_vs_tokens.png", "batch_lr_vs_tokens.png", "step_time.png")


@pytest.fixture(scope="module")
def noise_scale_run(tmp_path_factory, text_corpus, data_caches):
    """Eight steps of configs/tiny_cpu.py under the noise_scale policy (K=2 micro-steps)."""
    workdir = tmp_path_factory.mktemp("report_run") / "tiny"
    overrides = {
        "data.source": "text_folder",
        "data.path": text_corpus,
        "data.data_dir": data_caches["data_dir"],
        "data.cache_dir": data_caches["cache_dir"],
        "train.compile_cache_dir": data_caches["compile_cache_dir"],
        "model.ctx_len": 32,
        "optim.warmup_tokens": 16 * 32 * 2,
        "batch.batch_size": 16,
        "batch.micro_batch_per_device": 1,  # 16 over 8 devices: K = 2, the noise scale needs >= 2
        "batch.policy.name": "noise_scale",
        "batch.policy.max_batch_size": 32,
        "batch.policy.noise_scale.warmup_steps": 2,
        "batch.policy.noise_scale.decide_every": 2,
        "train.max_steps": 8,
        "train.eval_every": 4,
        "train.eval_batches": 2,
        "train.eval_batch_size": 8,
        "train.checkpoint_every": 4,
        "train.log_every": 1,
    }
    command = [
        sys.executable,
        "-m",
        "bsjax",
        "train",
        f"--config={th.REPO / 'configs' / 'tiny_cpu.py'}",
        f"--workdir={workdir}",
        "--log=plain",
        *[f"--config.{k}={v}" for k, v in overrides.items()],
    ]
    done = subprocess.run(
        command, env=th.cli_env(), capture_output=True, text=True, timeout=600, cwd=th.REPO
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


def _assert_png(path):
    assert path.exists(), path
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000, path  # a drawn figure, not an empty file


def test_report_writes_every_plot_of_a_noise_scale_run(noise_scale_run, capsys):
    assert cli.main(["report", str(noise_scale_run)]) == 0
    out = noise_scale_run / "report"
    for name in ALWAYS + ("noise_scale_vs_tokens.png",):
        _assert_png(out / name)
        assert f"`{name}`" in (out / "report.md").read_text()
    text = (out / "report.md").read_text()
    assert "| status | max_steps |" in text and "| steps | 8 |" in text
    assert str(out / "report.md") in capsys.readouterr().out


def test_report_marks_the_switches_of_a_scheduled_run(switch_reference, tmp_path):
    workdir, _ = switch_reference
    assert cli.main(["report", str(workdir), "--out", str(tmp_path / "rep")]) == 0
    for name in ALWAYS:
        _assert_png(tmp_path / "rep" / name)
    # No noise-scale estimates in a scheduled run: no such plot.
    assert not (tmp_path / "rep" / "noise_scale_vs_tokens.png").exists()
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "| switches | 3 |" in text
    for old, new in ((16, 32), (32, 48), (48, 64)):
        assert f"| {old} -> {new} |" in text


def test_report_of_a_folder_without_a_run_is_one_clear_error(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path)]) == 2
    message = capsys.readouterr().out
    assert "no train or eval lines" in message and "--workdir of a bsjax train run" in message
    assert list(tmp_path.iterdir()) == []  # nothing written
