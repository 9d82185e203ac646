"""Stall at batch-size switches: bsjax's ahead-of-time buckets against a plain jax.jit re-trace.

One schedule with several switches runs three ways, each in a fresh process:
  plain      one jax.jit step, called with each new batch shape as it comes
             (JAX re-traces and compiles at the switch; no persistent cache),
  bsjax-cold bsjax's loop: every bucket compiled ahead in a background thread,
             persistent compilation cache empty at start,
  bsjax-warm the same with the cache filled by the cold run (a restart).
For each switch it prints the wall time of the first step after the switch
divided by the steady step time of the new batch size (1.0 = no stall).

  python experiments/benchmarks/switch_stall.py
  python experiments/benchmarks/switch_stall.py --preset 151M --ctx 512 --dtype bfloat16 \
      --sizes 32,64,128,256 --micro 32
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def schedule_table(sizes: list[int], ctx: int, first_steps: int, steps: int) -> str:
    """A token-keyed table: ``first_steps`` at sizes[0], then ``steps`` at each next size."""
    parts, tokens = [f"0:{sizes[0]}"], first_steps * sizes[0] * ctx
    for _prev, size in zip(sizes, sizes[1:]):
        parts.append(f"{tokens}:{size}")
        tokens += steps * size * ctx
    return " ".join(parts)


def total_steps(sizes, first_steps, steps):
    return first_steps + steps * (len(sizes) - 1)


def config_for(args, workdir_cache: str):
    sys.path.insert(0, str(HERE))
    from bench_common import run_config

    sizes = [int(s) for s in args.sizes.split(",")]
    c = run_config(
        args.preset,
        sizes[0],
        args.ctx,
        total_steps(sizes, args.first_steps, args.steps),
        args.dtype,
        args.micro,
        workdir_cache,
    )
    c.batch.schedule = "table"
    c.batch.table = schedule_table(sizes, args.ctx, args.first_steps, args.steps)
    c.train.warm_buckets = not args.no_warm_buckets
    return c


def run_bsjax(args) -> dict:
    """One bsjax run of the schedule: its ``switch`` lines and its train-step ``compile`` lines."""
    from bsjax.train.loop import train
    from bsjax.train.metrics import read_run_metrics

    with tempfile.TemporaryDirectory() as tmp:
        train(config_for(args, args.cache_dir), f"{tmp}/run")
        lines = read_run_metrics(f"{tmp}/run")
    switches = [
        dict(
            old=l["old_batch_size"],
            new=l["new_batch_size"],
            first_s=l["first_step_s"],
            steady_s=l["steady_step_s"],
            stall_ratio=l["stall_ratio"],
            compile_wait_s=l["compile_wait_s"],
            step=l["step"],
        )
        for l in lines
        if l["kind"] == "switch"
    ]
    compiles = [
        dict(
            executable=l["executable"],
            K=l.get("K"),
            M=l.get("M"),
            batch_size=l.get("batch_size"),
            seconds=l["seconds"],
        )
        for l in lines
        if l["kind"] == "compile"
    ]
    return dict(switches=switches, compiles=compiles)


def run_plain(args) -> dict:
    """The same step and data with one jax.jit that re-traces at each new shape."""
    import jax

    jax.config.update("jax_enable_compilation_cache", False)
    from bsjax import config as config_lib
    from bsjax import data as data_lib
    from bsjax.batching.config import plan_from_config
    from bsjax.train import feed as feed_lib
    from bsjax.train import mesh as mesh_lib
    from bsjax.train import step as step_lib

    cfg = config_for(args, "off")
    mesh = mesh_lib.make_mesh(cfg.mesh.data, cfg.mesh.fsdp)
    corpus = data_lib.load(cfg.data, args.ctx)
    model_cfg = config_lib.model_config(cfg, corpus.vocab_size)
    plan = plan_from_config(cfg.batch, args.ctx, mesh_lib.data_shards(mesh))
    results = []
    with jax.set_mesh(mesh):
        fns = step_lib.build(model_cfg, cfg.optim, mesh)
        feeder = feed_lib.BatchFeeder(corpus.train.read, args.ctx + 1, mesh)
        state = fns.init(jax.random.key(0))
        hp = step_lib.hparams_array(1e-3, 0.99, 0.99)
        sizes = [int(s) for s in args.sizes.split(",")]
        offset = 0
        for i, size in enumerate(sizes):
            bucket = plan.bucket(size)
            times = []
            for _ in range(args.first_steps if i == 0 else args.steps):
                start = time.perf_counter()
                batch, _ = feeder.assemble(offset, bucket.K, bucket.M)
                state, metrics = fns.train_step(state, batch, hp)  # plain jit: traces new shapes
                jax.block_until_ready(metrics)
                times.append(time.perf_counter() - start)
                offset += size
            if i > 0:
                results.append(
                    dict(
                        old=sizes[i - 1],
                        new=size,
                        first_s=times[0],
                        steady_s=statistics.median(times[1:]),
                        stall_ratio=times[0] / statistics.median(times[1:]),
                    )
                )
        feeder.close()
    return dict(switches=results, compiles=[])


# (name, variant, extra options): the last is the warm-cache run without the bucket warm-up,
# the baseline of train.warm_buckets.
VARIANTS = (
    ("plain", "plain", ()),
    ("bsjax-cold", "bsjax", ()),
    ("bsjax-warm", "bsjax", ()),
    ("warm-no-warmup", "bsjax", ("--no-warm-buckets",)),
)


def variant_options(
    preset: str,
    ctx: int,
    dtype: str,
    sizes: list[int],
    micro: int,
    first_steps: int,
    steps: int,
) -> list[str]:
    """The command-line options of a child run of this script."""
    return [
        f"--preset={preset}",
        f"--ctx={ctx}",
        f"--dtype={dtype}",
        f"--sizes={','.join(str(s) for s in sizes)}",
        f"--micro={micro}",
        f"--first-steps={first_steps}",
        f"--steps={steps}",
    ]


def run_variant(variant: str, options: list[str], cache_dir: str) -> dict:
    """Run one variant ("plain" or "bsjax") in a fresh process; its switches and compiles.

    Raises:
      RuntimeError with the end of the child's stderr if it failed.
    """
    out = subprocess.run(
        [
            sys.executable,
            str(HERE / "switch_stall.py"),
            f"--variant={variant}",
            f"--cache-dir={cache_dir}",
            *options,
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )
    result_lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    if out.returncode or not result_lines:
        raise RuntimeError(f"{variant} run failed:\n{out.stderr[-3000:]}")
    return json.loads(result_lines[-1][len("RESULT ") :])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--ctx", type=int, default=128)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--sizes", default="16,32,64,128")
    p.add_argument("--micro", type=int, default=64, help="micro-batch per device")
    p.add_argument(
        "--first-steps",
        type=int,
        default=60,
        help="steps before the first switch (ahead-of-time compiles finish meanwhile)",
    )
    p.add_argument("--steps", type=int, default=12, help="steps at each later size")
    p.add_argument(
        "--no-warm-buckets",
        action="store_true",
        help="train.warm_buckets=False (no warm-up run of each compiled bucket)",
    )
    p.add_argument("--variant", choices=("plain", "bsjax"), help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", default="", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.variant:  # a child process: run one variant, print its switches as JSON
        from bench_common import hide_tensorflow_if_asked

        hide_tensorflow_if_asked()
        result = run_plain(args) if args.variant == "plain" else run_bsjax(args)
        print("RESULT " + json.dumps(result))
        return

    options = variant_options(
        args.preset,
        args.ctx,
        args.dtype,
        [int(x) for x in args.sizes.split(",")],
        args.micro,
        args.first_steps,
        args.steps,
    )
    rows = {}
    with tempfile.TemporaryDirectory() as cache:
        for name, variant, extra in VARIANTS:
            try:
                rows[name] = run_variant(variant, [*options, *extra], cache)["switches"]
            except RuntimeError as err:
                sys.exit(f"{name}: {err}")

    import jax

    print(
        f"device: {jax.default_backend()} ({jax.devices()[0].device_kind}), model {args.preset}, "
        f"ctx {args.ctx}, {args.dtype}, sizes {args.sizes}"
    )
    print(f"{'switch':>12} | " + " | ".join(f"{n:>22}" for n in rows))
    print(f"{'':>12} | " + " | ".join(f"{'first/steady (first s)':>22}" for _ in rows))
    for i, sw in enumerate(rows["plain"]):
        cells = []
        for name in rows:
            r = rows[name][i]
            cells.append(f"{r['stall_ratio']:8.2f} ({r['first_s']:8.3f}s)")
        print(f"{sw['old']:>5} -> {sw['new']:<4} | " + " | ".join(f"{c:>22}" for c in cells))
    for name in rows:
        worst = max(r["stall_ratio"] for r in rows[name])
        print(
            f"worst ratio {name:>14}: {worst:.2f}" + ("  (aim <= 1.1)" if "bsjax" in name else "")
        )
    warm, base = rows["bsjax-warm"], rows["warm-no-warmup"]
    gains = [b["stall_ratio"] / w["stall_ratio"] for w, b in zip(warm, base)]
    print(
        "bucket warm-up: stall without / with, per switch: " + ", ".join(f"{g:.2f}" for g in gains)
    )


if __name__ == "__main__":
    main()
