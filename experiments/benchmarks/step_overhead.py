"""Steady step time of bsjax's training loop against a bare jax.jit loop of the same step.

Both run in this process on the same model, batch shape and compiled step; the
bare loop re-feeds one device-resident batch with no data, metrics or
bookkeeping, so the ratio is what bsjax's loop costs on top of the step
(bench_common.measure_step, shared with mfu.py and run.py).

  python experiments/benchmarks/step_overhead.py                    # tiny, CPU
  python experiments/benchmarks/step_overhead.py --preset 151M --batch 64 --ctx 512 --dtype bfloat16
"""

from __future__ import annotations

import argparse

from bench_common import device_summary, measure_step


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

    m = measure_step(
        args.preset,
        args.batch,
        args.ctx,
        dtype=args.dtype,
        micro_per_device=args.micro,
        steps=args.steps,
        warmup=args.warmup,
    )
    print(f"device: {device_summary()}")
    print(
        f"model {args.preset}, batch {args.batch} (K={m.config['K']}, M={m.config['M']}), "
        f"ctx {args.ctx}, {args.dtype}, {args.steps} timed steps"
    )
    print(f"bare jax.jit loop : {m.bare_step_s * 1e3:9.3f} ms/step")
    print(f"bsjax loop        : {m.loop_step_s * 1e3:9.3f} ms/step")
    print(f"ratio bsjax/bare  : {m.loop_step_s / m.bare_step_s:9.4f}  (aim <= 1.03)")


if __name__ == "__main__":
    main()
