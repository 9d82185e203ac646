"""Tokens/s the input pipeline delivers against tokens/s the train step consumes.

The pipeline is bsjax's own path: example ids -> ExampleStream.read (shuffled,
packed, memory-mapped) -> sharded global batch on the devices. Both rates are
measured in this process for the same batch shape (bench_common.measure_step);
a ratio above 1 means the pipeline keeps the step fed (the loop also assembles
the next batch in a background thread while the step runs).

  python experiments/benchmarks/data_throughput.py
  python experiments/benchmarks/data_throughput.py --preset 151M --batch 64 --ctx 512 --dtype bfloat16
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
    p.add_argument("--micro", type=int, default=0)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batches", type=int, default=200, help="batches the pipeline assembles")
    args = p.parse_args()

    m = measure_step(
        args.preset,
        args.batch,
        args.ctx,
        dtype=args.dtype,
        micro_per_device=args.micro,
        steps=args.steps,
        warmup=1,
        pipeline_batches=args.batches,
    )
    pipe = m.pipeline
    step_tokens_per_s = m.tokens_per_step / m.bare_step_s
    print(f"device: {device_summary()}")
    print(
        f"corpus: {pipe['train_sequences']} train sequences of {args.ctx + 1} tokens; "
        f"{args.batches} batches read ({pipe['assemble_epochs']:.2f} epochs)"
    )
    print(f"stream reads   : {pipe['read_tokens_per_s']:14.0f} tokens/s")
    print(
        f"input pipeline : {pipe['assemble_tokens_per_s']:14.0f} tokens/s "
        f"({pipe['assemble_batch_s'] * 1e3:.3f} ms/batch)"
    )
    print(
        f"train step     : {step_tokens_per_s:14.0f} tokens/s ({m.bare_step_s * 1e3:.3f} ms/step)"
    )
    print(
        f"ratio pipeline/step: {pipe['assemble_tokens_per_s'] / step_tokens_per_s:.1f}  "
        "(> 1: the step never waits for data)"
    )


if __name__ == "__main__":
    main()
