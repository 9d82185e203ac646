"""Tokens/s the input pipeline delivers against tokens/s the train step consumes.

The pipeline is bsjax's own path: example ids -> ExampleStream.read (shuffled,
packed, memory-mapped) -> sharded global batch on the devices. Both rates are
measured in this process for the same batch shape; a ratio above 1 means the
pipeline keeps the step fed (the loop also assembles the next batch in a
background thread while the step runs).

  python experiments/benchmarks/data_throughput.py
  python experiments/benchmarks/data_throughput.py --preset 151M --batch 64 --ctx 512 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import tempfile
import time

import jax
from bench_common import device_summary, run_config, timed_steps

from bsjax.train import step as step_lib
from bsjax.train.loop import Trainer


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--ctx", type=int, default=128)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--micro", type=int, default=0)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batches", type=int, default=200, help="batches the pipeline assembles")
    args = p.parse_args()
    micro = args.micro or max(1, args.batch // jax.device_count())

    with tempfile.TemporaryDirectory() as tmp:
        cfg = run_config(args.preset, args.batch, args.ctx, 1, args.dtype, micro, f"{tmp}/xla")
        trainer = Trainer(cfg, f"{tmp}/run")
        trainer.run()  # one step: builds the corpus, compiles the bucket
        bucket = trainer.plan.bucket(args.batch)

        # Pipeline: fresh example ranges every time (no reuse), across epoch boundaries.
        n = trainer.corpus.train.num_sequences
        start = time.perf_counter()
        offset = 0
        for _ in range(args.batches):
            batch, _ = trainer.feeder.assemble(offset, bucket.K, bucket.M)
            offset += args.batch
        jax.block_until_ready(batch)
        pipe_s = (time.perf_counter() - start) / args.batches

        exe = trainer.executables.get(bucket.K, bucket.M)
        hp = step_lib.hparams_array(1e-3, 0.99, 0.99)
        state = [trainer.fns.init(jax.random.key(0))]

        def step():
            state[0], metrics = exe(state[0], batch, hp)
            return metrics

        step_s = timed_steps(step, args.steps)

    tokens = args.batch * args.ctx
    print(f"device: {device_summary()}")
    print(
        f"corpus: {n} train sequences of {args.ctx + 1} tokens; {args.batches} batches read "
        f"({offset / n:.2f} epochs)"
    )
    print(f"input pipeline : {tokens / pipe_s:14.0f} tokens/s ({pipe_s * 1e3:.3f} ms/batch)")
    print(f"train step     : {tokens / step_s:14.0f} tokens/s ({step_s * 1e3:.3f} ms/step)")
    print(f"ratio pipeline/step: {step_s / pipe_s:.1f}  (> 1: the step never waits for data)")


if __name__ == "__main__":
    main()
