"""Shared set-up of the benchmarks: a run config by preset, one finished run, and the step timing.

``measure_step`` is the one measurement of the train step that mfu.py,
step_overhead.py, data_throughput.py and run.py share: a short bsjax run whose
``train`` lines give the loop's steady step time, then the very executable that
run used, called from a bare loop on one device-resident batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

from bsjax import config as config_lib
from bsjax.config import base_config

HIDE_TENSORFLOW_ENV = "BSJAX_BENCH_HIDE_TENSORFLOW"


def hide_tensorflow() -> None:
    """Make ``import tensorflow`` fail in this process and in the benchmark processes it starts.

    Training needs no TensorFlow (only ``data.source="tfds"`` does); hidden, a
    benchmark shows that no import on the training path pulls it in and pays
    nothing for it (about 8 s a process on 2 cores). Call it before anything
    imports TensorFlow.
    """
    sys.modules.setdefault("tensorflow", None)
    os.environ[HIDE_TENSORFLOW_ENV] = "1"


def hide_tensorflow_if_asked() -> bool:
    """``hide_tensorflow()`` in a process whose parent hid it; whether it is hidden."""
    if os.environ.get(HIDE_TENSORFLOW_ENV) == "1":
        hide_tensorflow()
        return True
    return False


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


def train_run(config, workdir: str | Path):
    """Train ``config`` (a ConfigDict) in the new folder ``workdir``; return the finished Trainer.

    The Trainer is kept for what it built: its plan, compiled executables, feeder
    and corpus (its background pools are closed, its executables still callable).
    """
    from bsjax.train import identity as identity_lib
    from bsjax.train.loop import Trainer

    trainer = Trainer(config_lib.parse(config, jax.device_count()), workdir)
    trainer.run(identity_lib.decide_start(trainer.workdir, trainer.identity, new_run=True))
    return trainer


def train_lines(workdir: str | Path) -> list[dict]:
    """The ``train`` lines of a run's metrics.jsonl."""
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
    """The median of ``xs``."""
    return statistics.median(xs)


def device_summary() -> str:
    """Backend, device count and kind, and the JAX version, in one line."""
    d = jax.devices()[0]
    return f"{jax.default_backend()} x{jax.device_count()} ({d.device_kind}), jax {jax.__version__}"


def measure_read(stream, rows_per_call=256, seconds=3.0):
    """Tokens/s of ``stream.read`` over consecutive global ids from id 0, as the loop reads
    them (each epoch shuffled), and the epochs covered."""
    total = base = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch = stream.read(np.arange(base, base + rows_per_call))
        total += batch.size
        base += rows_per_call
    return total / (time.perf_counter() - start), base / stream.num_sequences


def device_peak_bytes() -> int | None:
    """Peak bytes in use on the first local device so far, where the backend reports it."""
    stats = jax.local_devices()[0].memory_stats()
    if not stats:
        return None
    peak = stats.get("peak_bytes_in_use")
    return int(peak) if peak else None


def compiled_memory_bytes(executable) -> dict[str, int] | None:
    """XLA's memory analysis of a compiled step: argument, output, temporary and total bytes."""
    try:
        analysis = executable.memory_analysis()
    except (AttributeError, NotImplementedError, jax.errors.JaxRuntimeError):
        return None
    if analysis is None:
        return None
    parts = dict(
        argument=int(analysis.argument_size_in_bytes),
        output=int(analysis.output_size_in_bytes),
        temp=int(analysis.temp_size_in_bytes),
        alias=int(analysis.alias_size_in_bytes),
    )
    parts["total"] = parts["argument"] + parts["output"] + parts["temp"] - parts["alias"]
    return parts


@dataclasses.dataclass
class StepMeasurement:
    """One configuration's step times, bsjax loop and bare jit, and what was measured beside."""

    config: dict[str, Any]
    model_cfg: Any
    loop_step_s: float
    bare_step_s: float
    compiled_memory: dict[str, int] | None
    device_peak_bytes: int | None
    pipeline: dict[str, Any] | None = None

    @property
    def tokens_per_step(self) -> int:
        """Tokens one optimizer step consumes: global batch x context."""
        return self.config["batch_size"] * self.config["ctx_len"]


@contextlib.contextmanager
def finished_run(config) -> Iterator[Any]:
    """A Trainer that has run ``config`` in a temporary folder (removed on exit)."""
    with tempfile.TemporaryDirectory() as tmp:
        if not config.train.compile_cache_dir:
            config.train.compile_cache_dir = f"{tmp}/xla"
        trainer = train_run(config, f"{tmp}/run")
        yield trainer


def bare_step(trainer, batch_size: int):
    """The executable the run used for ``batch_size``, called on one placed batch, nothing else.

    Returns the step function (a call advances its own state and returns the
    metrics), the batch and the bucket.
    """
    from bsjax.train import step as step_lib

    bucket = trainer.plan.bucket(batch_size)
    executable = trainer.executables.get(bucket.K, bucket.M)
    batch, _ = trainer.feeder.assemble(0, bucket.K, bucket.M)
    hparams = step_lib.hparams_array(1e-3, 0.99, 0.99)
    state = [trainer.fns.init(jax.random.key(0))]

    def step():
        state[0], metrics = executable(state[0], batch, hparams)
        return metrics

    return step, batch, bucket, executable


def pipeline_rates(trainer, batch_size: int, batches: int, read_seconds: float) -> dict[str, Any]:
    """Tokens/s of the input pipeline for ``batch_size``: the example stream's reads, and whole
    sharded batches assembled on the devices from fresh example ranges."""
    bucket = trainer.plan.bucket(batch_size)
    stream = trainer.corpus.train
    read_tokens_per_s, read_epochs = measure_read(stream, batch_size, read_seconds)
    start = time.perf_counter()
    offset = 0
    batch = None
    for _ in range(batches):
        batch, _ = trainer.feeder.assemble(offset, bucket.K, bucket.M)
        offset += batch_size
    jax.block_until_ready(batch)
    assemble_s = (time.perf_counter() - start) / batches
    return dict(
        read_tokens_per_s=read_tokens_per_s,
        read_rows_per_call=batch_size,
        read_seconds=read_seconds,
        read_epochs=read_epochs,
        assemble_tokens_per_s=batch_size * trainer.ctx_len / assemble_s,
        assemble_batch_s=assemble_s,
        assemble_batches=batches,
        assemble_epochs=offset / stream.num_sequences,
        train_sequences=stream.num_sequences,
    )


def measure_step(
    preset: str,
    batch_size: int,
    ctx_len: int,
    dtype: str = "float32",
    micro_per_device: int = 0,
    steps: int = 20,
    warmup: int = 5,
    attention: str = "auto",
    vocab_size: int = 0,
    pipeline_batches: int = 0,
    pipeline_read_seconds: float = 1.0,
    compile_cache_dir: str = "",
) -> StepMeasurement:
    """Steady step time of bsjax's loop and of a bare jit loop of the same executable.

    bsjax runs ``warmup + steps`` steps; its loop time is the mean ``step_time_s``
    of the steps after ``warmup`` (each the interval between consecutive step
    completions). The bare loop re-feeds one batch: ``warmup`` calls, then the
    mean of ``steps`` calls. ``micro_per_device`` 0 is the whole batch (K = 1).
    With ``pipeline_batches``, the input pipeline's rates are measured too.
    """
    micro = micro_per_device or max(1, batch_size // jax.device_count())
    config = run_config(
        preset, batch_size, ctx_len, warmup + steps, dtype, micro, workdir_cache=compile_cache_dir
    )
    config.model.vocab_size = vocab_size
    config.model.attention = attention
    with finished_run(config) as trainer:
        lines = [l for l in train_lines(trainer.workdir) if l["step"] > warmup]
        loop_s = float(np.mean([l["step_time_s"] for l in lines]))
        step, _batch, bucket, executable = bare_step(trainer, batch_size)
        for _ in range(warmup):
            step()
        bare_s = timed_steps(step, steps)
        pipeline = None
        if pipeline_batches:
            pipeline = pipeline_rates(trainer, batch_size, pipeline_batches, pipeline_read_seconds)
        measured = StepMeasurement(
            config=dict(
                preset=preset,
                batch_size=batch_size,
                ctx_len=ctx_len,
                dtype=dtype,
                K=bucket.K,
                M=bucket.M,
                micro_per_device=micro,
                devices=jax.device_count(),
                steps=steps,
                warmup=warmup,
                attention=attention,
                vocab_size=trainer.model_cfg.vocab_size,
            ),
            model_cfg=trainer.model_cfg,
            loop_step_s=loop_s,
            bare_step_s=bare_s,
            compiled_memory=compiled_memory_bytes(executable),
            device_peak_bytes=device_peak_bytes(),
            pipeline=pipeline,
        )
    return measured
