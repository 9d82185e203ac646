"""Helpers shared by the training tests: the tiny config and CLI subprocesses."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "tests" / "configs" / "tiny_test.py"


def overrides(corpus, caches, **extra) -> dict:
    values = {
        "data.path": str(corpus),
        "data.data_dir": caches["data_dir"],
        "data.cache_dir": caches["cache_dir"],
        "train.compile_cache_dir": caches["compile_cache_dir"],
    }
    values.update({k.replace("__", "."): v for k, v in extra.items()})
    return values


def config(corpus, caches, arg=None, **extra):
    """The tiny test config with the test corpus and caches, plus overrides."""
    sys.path.insert(0, str(CONFIG.parent))
    import tiny_test

    c = tiny_test.get_config(arg)
    for key, value in overrides(corpus, caches, **extra).items():
        section, name = key.split(".")
        c[section][name] = value
    return c


def cli_command(workdir, corpus, caches, arg=None, **extra) -> list[str]:
    spec = f"{CONFIG}:{arg}" if arg else str(CONFIG)
    flags = [f"--config.{k}={v}" for k, v in overrides(corpus, caches, **extra).items()]
    return [
        sys.executable,
        "-m",
        "bsjax",
        "train",
        f"--config={spec}",
        f"--workdir={workdir}",
        *flags,
    ]


def cli_env() -> dict:
    env = dict(os.environ)
    env.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    env["JAX_PLATFORMS"] = "cpu"
    return env


def run_cli(workdir, corpus, caches, arg=None, check=True, **extra) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cli_command(workdir, corpus, caches, arg, **extra),
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"bsjax train failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def summary(workdir) -> dict:
    return json.loads((Path(workdir) / "summary.json").read_text())


def metric_lines(workdir, kind=None) -> list[dict]:
    """The live history of the run's metrics.jsonl (what every reader sees)."""
    from bsjax.train.metrics import read_run_metrics

    return read_run_metrics(workdir, kind)


def consumed_ids(workdir) -> list[int]:
    """Example ids per step, the last record of each step winning (a killed run may
    have read steps past its last checkpoint; the resumed run reads them again)."""
    by_step = {}
    for path in sorted(Path(workdir).glob("example_ids.p*.jsonl")):
        for line in path.read_text().splitlines():
            if line:
                rec = json.loads(line)
                by_step.setdefault(rec["step"], {})[path.name] = rec["ids"]
    ids = []
    for step in sorted(by_step):
        step_ids = [i for name in by_step[step] for i in by_step[step][name]]
        assert len(step_ids) == len(set(step_ids)), f"step {step} read an example twice"
        ids.extend(sorted(step_ids))
    return ids
