"""Tokens/s and model FLOPs utilisation of the train step for a preset.

MFU = tokens/s x training FLOPs per token / peak FLOP/s of the devices. The
peak is looked up for known accelerators (dense bf16) or given with
--peak-tflops; on a CPU it is unknown and only tokens/s and achieved TFLOP/s
are printed. The same step is also run from a bare jax.jit loop, and the
ratio of the two tokens/s is printed (bsjax's loop against no loop at all).

  python experiments/benchmarks/mfu.py                                       # tiny, CPU
  python experiments/benchmarks/mfu.py --preset 151M --batch 64 --dtype bfloat16
  python experiments/benchmarks/mfu.py --preset 1.2B --batch 32 --micro 16 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import tempfile

import jax
import numpy as np
from bench_common import device_summary, run_config, timed_steps, train_lines

from bsjax import model as model_lib
from bsjax.train import step as step_lib
from bsjax.train.loop import Trainer

PEAK_BF16_TFLOPS = {
    "H100": 989.0,
    "H200": 989.0,
    "A100": 312.0,
    "TPU v4": 275.0,
    "TPU v5 lite": 197.0,
    "TPU v5": 459.0,
    "TPU v6 lite": 918.0,
}


def peak_tflops(kind: str) -> float | None:
    for name, tflops in PEAK_BF16_TFLOPS.items():
        if name.lower() in kind.lower():
            return tflops
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--ctx", type=int, default=128)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--micro", type=int, default=0, help="micro-batch per device (0: whole batch)")
    p.add_argument("--attention", default="auto", help="auto | xla | cudnn")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--peak-tflops", type=float, default=0.0, help="per device; 0: look it up")
    p.add_argument(
        "--vocab",
        type=int,
        default=0,
        help="model vocabulary (0: the byte tokenizer's 257; the paper's is 50280)",
    )
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
        cfg.model.vocab_size = args.vocab
        cfg.model.attention = args.attention
        trainer = Trainer(cfg, f"{tmp}/run")
        trainer.run()
        lines = [l for l in train_lines(f"{tmp}/run") if l["step"] > args.warmup]
        loop_s = float(np.mean([l["step_time_s"] for l in lines]))
        bucket = trainer.plan.bucket(args.batch)
        exe = trainer.executables.get(bucket.K, bucket.M)
        batch, _ = trainer.feeder.assemble(0, bucket.K, bucket.M)
        hp = step_lib.hparams_array(1e-3, 0.99, 0.99)
        state = [trainer.fns.init(jax.random.key(0))]

        def bare_step():
            state[0], metrics = exe(state[0], batch, hp)
            return metrics

        bare_s = timed_steps(bare_step, args.steps)
        model_cfg = trainer.model_cfg

    tokens_per_step = args.batch * args.ctx
    flops_per_token = model_lib.flops_per_token(model_cfg)
    kind = jax.devices()[0].device_kind
    peak = args.peak_tflops or peak_tflops(kind)
    counts = model_lib.count_params(model_cfg)
    print(f"device: {device_summary()}")
    print(
        f"model {args.preset}: {counts['non_embedding'] / 1e6:.1f}M non-embedding params, "
        f"vocab {model_cfg.vocab_size}, ctx {args.ctx}, {args.dtype}; batch {args.batch} "
        f"(K={bucket.K}, M={bucket.M}); {flops_per_token / 1e9:.3f} GFLOP/token"
    )
    for name, seconds in (("bsjax loop", loop_s), ("bare jit  ", bare_s)):
        tps = tokens_per_step / seconds
        achieved = tps * flops_per_token / 1e12
        line = (
            f"{name}: {seconds * 1e3:9.2f} ms/step  {tps:12.0f} tokens/s  {achieved:8.2f} TFLOP/s"
        )
        if peak:
            line += f"  MFU {achieved / (peak * jax.device_count()):6.1%}"
        print(line)
    print(f"ratio bsjax/bare tokens/s: {bare_s / loop_s:.4f}")
    if not peak:
        print(f"(peak FLOP/s of '{kind}' unknown: pass --peak-tflops for MFU)")


if __name__ == "__main__":
    main()
