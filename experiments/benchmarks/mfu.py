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

import jax
from bench_common import device_summary, measure_step

from bsjax import model as model_lib

PEAK_BF16_TFLOPS = {
    "H100": 989.0,
    "H200": 989.0,
    "A100": 312.0,
    "TPU v4": 275.0,
    "TPU v5 lite": 197.0,
    "TPU v5": 459.0,
    "TPU v6 lite": 918.0,
}

FLOPS_FORMULA = (
    "FLOPs/token = 6 * matmul params (attention, MLP, output projection) "
    "+ 12 * n_layers * ctx * d_model (attention scores and values, causal mask not halved)"
)
MFU_FORMULA = "MFU = FLOPs/token * tokens/s / (devices * peak dense bf16 FLOP/s)"


def peak_tflops(kind: str) -> float | None:
    """Published dense bf16 peak TFLOP/s of one device of ``kind``; None if unknown."""
    for name, tflops in PEAK_BF16_TFLOPS.items():
        if name.lower() in kind.lower():
            return tflops
    return None


def achieved_tflops(tokens_per_s: float, model_cfg) -> float:
    """TFLOP/s the step performs at ``tokens_per_s`` (FLOPS_FORMULA)."""
    return tokens_per_s * model_lib.flops_per_token(model_cfg) / 1e12


def mfu(tokens_per_s: float, model_cfg, peak_per_device: float | None, devices: int):
    """Model FLOPs utilisation (MFU_FORMULA), or None without a peak."""
    if not peak_per_device:
        return None
    return achieved_tflops(tokens_per_s, model_cfg) / (peak_per_device * devices)


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

    m = measure_step(
        args.preset,
        args.batch,
        args.ctx,
        dtype=args.dtype,
        micro_per_device=args.micro,
        steps=args.steps,
        warmup=args.warmup,
        attention=args.attention,
        vocab_size=args.vocab,
    )
    kind = jax.devices()[0].device_kind
    peak = args.peak_tflops or peak_tflops(kind)
    counts = model_lib.count_params(m.model_cfg)
    flops_per_token = model_lib.flops_per_token(m.model_cfg)
    print(f"device: {device_summary()}")
    print(
        f"model {args.preset}: {counts['non_embedding'] / 1e6:.1f}M non-embedding params, "
        f"vocab {m.model_cfg.vocab_size}, ctx {args.ctx}, {args.dtype}; batch {args.batch} "
        f"(K={m.config['K']}, M={m.config['M']}); {flops_per_token / 1e9:.3f} GFLOP/token"
    )
    print(FLOPS_FORMULA)
    for name, seconds in (("bsjax loop", m.loop_step_s), ("bare jit  ", m.bare_step_s)):
        tps = m.tokens_per_step / seconds
        line = (
            f"{name}: {seconds * 1e3:9.2f} ms/step  {tps:12.0f} tokens/s  "
            f"{achieved_tflops(tps, m.model_cfg):8.2f} TFLOP/s"
        )
        utilisation = mfu(tps, m.model_cfg, peak, jax.device_count())
        if utilisation is not None:
            line += f"  MFU {utilisation:6.1%}"
        print(line)
    print(f"ratio bsjax/bare tokens/s: {m.bare_step_s / m.loop_step_s:.4f}")
    if not peak:
        print(f"(peak FLOP/s of '{kind}' unknown: pass --peak-tflops for MFU)")


if __name__ == "__main__":
    main()
