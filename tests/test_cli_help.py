"""bsjax train/sweep --help, bsjax presets, bsjax configs: what a new user reads first."""

import subprocess
import sys
from pathlib import Path

from bsjax import cli_help
from bsjax import model as model_lib
from bsjax.batching.paper_tables import TABLE1_CHINCHILLA_STEPS

REPO = Path(__file__).resolve().parents[1]


def _bsjax(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bsjax", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"},
    )


def test_every_train_and_sweep_key_has_a_meaning():
    for fields in (cli_help.run_fields(), cli_help.sweep_fields()):
        missing = [f.key for f in fields if not f.help.strip() or f.help.strip() == "-"]
        assert missing == []


def test_train_help_lists_each_key_with_its_default_and_the_given_configs_value():
    done = _bsjax("train", "--help", "--config=configs/demo.py")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for key in ("optim.warmup_tokens", "batch.policy.name", "train.warm_buckets", "mesh.fsdp"):
        assert key in out
    assert "--new-run" in out and "--dry-run" in out


def test_presets_lists_counts_and_the_papers_tables():
    done = _bsjax("presets")
    assert done.returncode == 0, done.stderr
    counts = model_lib.count_params(
        model_lib.preset_config("151M", vocab_size=cli_help.PRESET_VOCAB, ctx_len=512)
    )
    row = next(line for line in done.stdout.splitlines() if line.strip().startswith("151M "))
    assert f"{counts['non_embedding']:,}" in row
    assert f"{TABLE1_CHINCHILLA_STEPS['151M']:,}" in row
    assert "Table 4" in done.stdout


def test_configs_lists_each_file_with_its_first_docstring_line():
    done = _bsjax("configs")
    assert done.returncode == 0, done.stderr
    for path in (REPO / "configs").glob("*.py"):
        if not path.name.startswith("_"):
            assert path.name in done.stdout
