"""Test set-up: a CPU mesh of 8 fake devices (set before JAX is imported), and
a small text corpus with per-session TFDS and packing caches, so training tests
need no download and do not touch ~/.cache."""

import os
import sys
import sysconfig
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

TESTS_DIR = Path(__file__).parent
sys.path.insert(0, str(TESTS_DIR))


@pytest.fixture(scope="session")
def text_corpus(tmp_path_factory) -> Path:
    """A folder of .txt files copied from the interpreter's own stdlib (about 400 KB)."""
    root = tmp_path_factory.mktemp("corpus")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    names = sorted(p for p in stdlib.glob("*.py"))[:60]
    for i, path in enumerate(names):
        (root / f"doc{i:03d}.txt").write_text(path.read_text(encoding="utf-8", errors="replace"))
    return root


@pytest.fixture(scope="session")
def data_caches(tmp_path_factory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("caches")
    return dict(
        data_dir=str(base / "tfds"),
        cache_dir=str(base / "packed"),
        compile_cache_dir=str(base / "xla"),
    )


@pytest.fixture(scope="session")
def switch_reference(tmp_path_factory, text_corpus, data_caches):
    """One uninterrupted run of the tiny "switch" config (three switches), with example ids."""
    import train_helpers as th

    from bsjax.train.loop import train

    workdir = tmp_path_factory.mktemp("switch_reference")
    summary = train(
        th.config(text_corpus, data_caches, "switch", train__log_example_ids=True), workdir
    )
    return workdir, summary


# The tiny sweep shared by test_sweep.py and test_executors.py: t_chin = ceil(0.5 * 16704 /
# (32 * 16)) = 17 steps for the tiny test model at the reference batch 16.
TINY_SWEEP = dict(
    batch_sizes=(8, 16, 32),
    reference_batch_size=16,
    chinchilla_ratio=0.5,
    lr=(1e-2,),
    b2=(0.99,),
    ewa_tau=(0.9,),
    ewa_tau_rule="half_life",
    warmup_fraction=(0.1,),
    max_steps_factor=4.0,
    min_expected_steps=4,
    analysis=dict(bootstrap=20),
)


def tiny_sweep_config(corpus, caches, **sweep_values):
    """The tiny sweep's config with ``sweep_values`` changed."""
    import train_helpers as th

    from bsjax.cbs.sweep import sweep_config

    base = th.config(corpus, caches, train__tensorboard=False, train__checkpoint_every=1000)
    return sweep_config(base, **{**TINY_SWEEP, **sweep_values})


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory, text_corpus, data_caches):
    """The tiny sweep run to the end by the local executor, one run at a time:
    (config, workdir, outcome, printed lines). Tests only read it or copy it."""
    from bsjax.cbs.sweep import run_sweep

    workdir = tmp_path_factory.mktemp("sweep")
    log: list[str] = []
    config = tiny_sweep_config(text_corpus, data_caches, parallel=1)
    outcome = run_sweep(config, workdir, out=log.append)
    return config, workdir, outcome, log
