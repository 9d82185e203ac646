"""Shared set-up of the benchmarks: a run config by preset, and small timing helpers."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import jax

from bsjax.config import base_config


def run_config(
    preset: str,
    batch_size: int,
    ctx_len: int,
    steps: int,
    dtype: str,
    micro_per_device: int,
    workdir_cache: str = "",
):
    """A run on the embedded corpus with evaluation and checkpoints out of the timed span."""
    c = base_config()
    c.model.preset = preset
    c.model.ctx_len = ctx_len
    c.model.dtype = dtype
    c.batch.batch_size = batch_size
    c.batch.micro_batch_per_device = micro_per_device
    c.optim.warmup_tokens = 0
    c.train.max_steps = steps
    c.train.eval_every = 10**9
    c.train.checkpoint_every = 10**9
    c.train.log_every = 1
    c.train.tensorboard = False
    c.train.eval_batches = 1
    c.train.eval_batch_size = jax.device_count()
    c.train.compile_cache_dir = workdir_cache
    return c


def train_lines(workdir: str | Path) -> list[dict]:
    from bsjax.train.metrics import read_run_metrics

    return read_run_metrics(workdir, "train")


def timed_steps(fn, n: int) -> float:
    """Mean seconds per call of ``fn`` over ``n`` calls, synchronised at both ends."""
    jax.block_until_ready(fn())
    start = time.perf_counter()
    out = None
    for _ in range(n):
        out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / n


def median(xs):
    return statistics.median(xs)


def device_summary() -> str:
    d = jax.devices()[0]
    return f"{jax.default_backend()} x{jax.device_count()} ({d.device_kind}), jax {jax.__version__}"
