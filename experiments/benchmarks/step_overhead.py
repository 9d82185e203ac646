"""Steady step time of bsjax's training loop against a bare jax.jit loop of the same step.

Both run in this process on the same model, batch shape and compiled step; the
bare loop re-feeds one device-resident batch with no data, metrics or
bookkeeping, so the ratio is what bsjax's loop costs on top of the step.

  python experiments/benchmarks/step_overhead.py                    # tiny, CPU
  python experiments/benchmarks/step_overhead.py --preset 151M --batch 64 --ctx 512 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import tempfile

import jax
import numpy as np
from bench_common import device_summary, run_config, timed_steps, train_lines

from bsjax.train import step as step_lib
from bsjax.train.loop import Trainer


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--ctx", type=int, default=128)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--micro", type=int, default=0, help="micro-batch per device (0: whole batch)")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    args = p.parse_args()
    micro = args.micro or max(1, args.batch // jax.device_count())

    with tempfile.TemporaryDirectory() as tmp:
        cfg = run_config(
            args.preset,
            args.batch,
            args.ctx,
            args.warmup + args.steps,
            args.dtype,
            micro,
            workdir_cache=f"{tmp}/xla",
        )
        trainer = Trainer(cfg, f"{tmp}/run")
        trainer.run()
        lines = train_lines(f"{tmp}/run")
        # Each step_time_s is the interval between consecutive step completions.
        ours = float(np.mean([l["step_time_s"] for l in lines if l["step"] > args.warmup]))

        # The bare loop: the same compiled step, one batch placed once, nothing else.
        fns = trainer.fns
        bucket = trainer.plan.bucket(args.batch)
        exe = trainer.executables.get(bucket.K, bucket.M)  # the very executable the loop ran
        batch, _ = trainer.feeder.assemble(0, bucket.K, bucket.M)
        hp = step_lib.hparams_array(1e-3, 0.99, 0.99)
        state = [fns.init(jax.random.key(0))]

        def bare_step():
            state[0], metrics = exe(state[0], batch, hp)
            return metrics

        for _ in range(args.warmup):
            bare_step()
        bare = timed_steps(bare_step, args.steps)

    print(f"device: {device_summary()}")
    print(
        f"model {args.preset}, batch {args.batch} (K={bucket.K}, M={bucket.M}), ctx {args.ctx}, "
        f"{args.dtype}, {args.steps} timed steps"
    )
    print(f"bare jax.jit loop : {bare * 1e3:9.3f} ms/step")
    print(f"bsjax loop        : {ours * 1e3:9.3f} ms/step")
    print(f"ratio bsjax/bare  : {ours / bare:9.4f}  (aim <= 1.03)")


if __name__ == "__main__":
    main()
