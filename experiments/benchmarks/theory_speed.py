"""Speed of the exact linear-regression risk recursion (bsjax.theory.linreg).

Target (project issue 5): risk curves for dimension 10^4, 10 batch sizes x 10 learning rates,
10^4 steps each, in at most 10 s on the 2-core development CPU.

Baseline, measured in the same run: the same recursion as a plain float64 NumPy loop
(``risk_curves_reference``), vectorised over the 100 configs. The baseline runs a shorter span of
steps (its cost per step is constant) and the ratio is taken per step; both are also compared
numerically on that span.

The script gives XLA one CPU device per core (``--xla_force_host_platform_device_count``) so the
config blocks run on both cores; it prints wall and CPU time and the load average, since the
machine is shared.

Usage: python experiments/benchmarks/theory_speed.py [--dim 10000] [--steps 10000] [--baseline-steps 300]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

# One XLA CPU device per core, set before JAX starts: risk_curves spreads its config blocks over
# the local devices. (--xla_cpu_multi_thread_eigen stays on for the NumPy-free baseline.)
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={os.cpu_count()}")

import jax
import numpy as np

from bsjax.theory.linreg import LinRegProblem, risk_curves, risk_curves_reference
from bsjax.theory.schedules import Schedule


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--baseline-steps", type=int, default=300)
    ap.add_argument("--block", type=int, default=None)
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()

    load_before = os.getloadavg()[0]
    problem = LinRegProblem(a=2.0, b=3.0, noise=1.0, dim=args.dim)
    batches = 2 ** np.arange(10)
    lrs = np.geomspace(0.02, 0.6, 10)
    scheds = [Schedule.constant(g, int(b), steps=args.steps) for b in batches for g in lrs]

    # compile once on the full shape (same static arguments), then time
    t0 = time.perf_counter()
    risk_curves(problem, scheds, num_records=100, dtype=args.dtype, block=args.block)
    first_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), _cpu_s()
    curves = risk_curves(problem, scheds, num_records=100, dtype=args.dtype, block=args.block)
    ours_s, ours_cpu = time.perf_counter() - t0, _cpu_s() - c0

    short = [Schedule.constant(g, int(b), steps=args.baseline_steps) for b in batches for g in lrs]
    t0, c0 = time.perf_counter(), _cpu_s()
    last_ref, avg_ref = risk_curves_reference(problem, short)
    base_s = time.perf_counter() - t0
    check = risk_curves(problem, short, record_every=1, dtype=args.dtype, block=args.block)
    err = max(
        np.abs(check.last_GR / last_ref - 1).max(), np.abs(check.averaged_GR / avg_ref - 1).max()
    )

    per_step_ours = ours_s / args.steps
    per_step_base = base_s / args.baseline_steps
    out = {
        "dim": args.dim,
        "configs": len(scheds),
        "steps": args.steps,
        "dtype": args.dtype,
        "cpus": os.cpu_count(),
        "jax_devices": jax.local_device_count(),
        "load_avg_1min_before": load_before,
        "load_avg_1min_after": os.getloadavg()[0],
        "first_call_s (incl. compile)": round(first_s, 3),
        "ours_wall_s": round(ours_s, 3),
        "ours_cpu_s": round(ours_cpu, 3),
        "target_s": 10.0,
        "meets_target": ours_s <= 10.0,
        "baseline_numpy_f64_wall_s_per_step": round(per_step_base, 5),
        "ours_wall_s_per_step": round(per_step_ours, 6),
        "speedup_vs_numpy_per_step": round(per_step_base / per_step_ours, 2),
        "baseline_extrapolated_full_s": round(per_step_base * args.steps, 1),
        f"max_rel_diff_vs_float64_reference (first {args.baseline_steps} steps)": float(
            f"{err:.2e}"
        ),
        "final_averaged_risk_range": [
            float(curves.final_averaged_G.min()),
            float(curves.final_averaged_G.max()),
        ],
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
