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
