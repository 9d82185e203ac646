"""Bias of steps to target per batch size, on synthetic loss curves on the demo's own eval grid.

For each batch size of the demo sweep (``configs/demo.py``: 2 to 64), a synthetic EWA eval-loss
curve ``L(s) = L_inf + A * (s / f)^-alpha`` is evaluated at the steps the demo's run at that
batch size evaluates (``bsjax.train.eval_schedule.eval_steps`` with the expected steps and cap of
``plan_sweep(configs/demo.py)``). The shape ``(L_inf, A, alpha)`` per batch size is a power law
fitted to the demo's own EWA eval curves (``runs/demo``, last 80% of each run; ``DEMO_SHAPES``),
and the target is the demo's target loss. Each replicate shifts the curve in log-steps by a
factor ``f`` drawn log-uniformly in [0.9, 1.1] (so the crossing falls at a random phase of the
grid) and adds eval noise: an Ornstein-Uhlenbeck process in steps with standard deviation
``sigma`` and a correlation time of the EWA's time constant at that batch size
(``1 / (1 - 0.975^(B/8))`` steps, the demo's half-life rule), which is how an EWA of parameters
makes consecutive evaluations correlated.

The truth is the crossing of the noise-free curve, ``f * s_0`` where ``L(s_0) = target``. Two
estimates are compared: the interpolated crossing (``target_crossing``, what the fits now use)
and the old rule, the first evaluation at or below the target (``steps_to_target``). With noise,
both are first-passage times of a noisy curve, which cross early on average; with ``sigma = 0``
what is left is the grid's own bias. The noise levels: 0, the demo's (0.008: the standard
deviation of the demo's EWA eval loss around its power-law fit, 0.0077 to 0.014 across batch
sizes), and 0.02.

  .venv/bin/python experiments/cbs/steps_bias.py                 # 4000 replicates, ~1 min
  .venv/bin/python experiments/cbs/steps_bias.py --small         # 100 replicates, seconds

Prints the table and writes steps_bias.md (and .json) next to this file, or under ``--out``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import time
from pathlib import Path

import numpy as np

from bsjax.train.eval_schedule import eval_steps, steps_to_target, target_crossing

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEMO_CONFIG = REPO / "configs" / "demo.py"

# Power law L_inf + A s^-alpha fitted to the EWA eval loss of each demo run (evaluations after
# 20% of the run): inputs of the simulation, not results. Refit them from a demo sweep folder
# (`bsjax sweep --config=configs/demo.py --workdir=runs/demo`) with `--fit-shapes runs/demo`.
DEMO_SHAPES = {
    2: (1.8313, 150.78, 0.8186),
    4: (1.5743, 57.327, 0.6633),
    8: (1.4446, 13.348, 0.4580),
    16: (1.2342, 10.015, 0.3958),
    32: (0.6829, 7.3912, 0.2769),
    64: (0.9232, 8.1214, 0.3359),
}
DEMO_TARGET_LOSS = 1.9955  # the demo's reference run's EWA eval loss at t_chin (runs/demo)
DEMO_EWA_TAU, DEMO_REF_BATCH = 0.975, 8
NOISE_LEVELS = (0.0, 0.008, 0.02)
SHIFT_RANGE = (0.9, 1.1)


def demo_grids() -> dict[int, tuple[int, int, list[int]]]:
    """``{batch_size: (expected_steps, max_steps, eval steps)}`` of the demo sweep's runs."""
    from bsjax.cbs.sweep.plan import plan_sweep

    spec = importlib.util.spec_from_file_location("bsjax_demo_sweep_config", DEMO_CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    plan = plan_sweep(module.get_config())
    every = int(plan.base.train.eval_every)
    out = {}
    for point in plan.points:
        steps = eval_steps(point.expected_steps, every=every, max_steps=point.max_steps)
        out[point.batch_size] = (point.expected_steps, point.max_steps, steps)
    return out


def fit_shapes(sweep_dir: Path) -> dict[int, tuple[float, float, float]]:
    """``{batch_size: (L_inf, A, alpha)}`` fitted to each run's EWA eval loss in a demo sweep folder."""
    from scipy.optimize import curve_fit

    shapes = {}
    for run_dir in sorted(Path(sweep_dir).glob("bs*")):
        records = []
        for line in (run_dir / "metrics.jsonl").read_text().splitlines():
            rec = json.loads(line) if line.strip() else {}
            if rec.get("kind") == "eval":
                records.append(rec)
        steps = np.array([r["step"] for r in records], float)
        losses = np.array([r["ewa_eval_loss"] for r in records], float)
        keep = steps >= 0.2 * steps[-1]
        params, _ = curve_fit(
            lambda s, l_inf, amp, alpha: l_inf + amp * s**-alpha,
            steps[keep],
            losses[keep],
            p0=[1.5, 5.0, 0.5],
            maxfev=20000,
        )
        batch_size = json.loads((run_dir / "summary.json").read_text())["batch_size"]
        shapes[int(batch_size)] = tuple(float(v) for v in params)
    return shapes


def true_crossing(shape: tuple[float, float, float], target: float) -> float:
    """The step where ``L_inf + A s^-alpha`` equals ``target``."""
    l_inf, amp, alpha = shape
    return ((target - l_inf) / amp) ** (-1.0 / alpha)


def ou_noise(steps: np.ndarray, sigma: float, corr_steps: float, n: int, rng) -> np.ndarray:
    """``n`` stationary Ornstein-Uhlenbeck paths sampled at ``steps``: shape (n, len(steps))."""
    out = np.zeros((n, steps.size))
    if sigma == 0.0:
        return out
    out[:, 0] = sigma * rng.standard_normal(n)
    for k in range(1, steps.size):
        rho = math.exp(-(steps[k] - steps[k - 1]) / corr_steps)
        out[:, k] = rho * out[:, k - 1] + sigma * math.sqrt(1 - rho**2) * rng.standard_normal(n)
    return out


def bias_for_batch(
    batch_size: int,
    grid: list[int],
    *,
    sigma: float,
    replicates: int,
    rng,
    target: float = DEMO_TARGET_LOSS,
) -> dict:
    """Relative errors of both estimates over the replicates, summarised (mean, s.e., censored)."""
    shape = DEMO_SHAPES[batch_size]
    l_inf, amp, alpha = shape
    s0 = true_crossing(shape, target)
    steps = np.asarray(grid, float)
    corr = 1.0 / (1.0 - DEMO_EWA_TAU ** (batch_size / DEMO_REF_BATCH))
    shifts = np.exp(rng.uniform(*np.log(SHIFT_RANGE), size=replicates))
    noise = ou_noise(steps, sigma, corr, replicates, rng)
    err_interp, err_first, brackets, censored = [], [], [], 0
    for r in range(replicates):
        losses = l_inf + amp * (steps / shifts[r]) ** -alpha + noise[r]
        records = [
            {"kind": "eval", "step": int(s), "ewa_eval_loss": float(v)}
            for s, v in zip(steps, losses)
        ]
        truth = shifts[r] * s0
        hit = target_crossing(records, target)
        first = steps_to_target(records, target)
        if hit is None or first is None:
            censored += 1
            continue
        err_interp.append(hit.steps / truth - 1.0)
        err_first.append(first / truth - 1.0)
        if hit.bracket_ratio is not None:
            brackets.append(hit.bracket_ratio)

    def summary(errors):
        e = np.asarray(errors)
        if e.size == 0:
            return dict(mean=math.nan, se=math.nan, rms=math.nan)
        se = float(e.std(ddof=1) / math.sqrt(e.size)) if e.size > 1 else math.nan
        return dict(mean=float(e.mean()), se=se, rms=float(np.sqrt((e**2).mean())))

    return dict(
        batch_size=batch_size,
        sigma=sigma,
        true_steps=s0,
        n_evals=len(grid),
        median_bracket_ratio=float(np.median(brackets)) if brackets else math.nan,
        interpolated=summary(err_interp),
        first_eval=summary(err_first),
        censored=censored,
        replicates=replicates,
    )


def markdown(rows: list[dict], grids: dict, command: str, seconds: float) -> str:
    """The results page: one table per noise level."""
    lines = [
        "# Steps to target: bias per batch size on the demo's eval grid",
        "",
        "Synthetic EWA eval-loss curves with the demo's shape per batch size (power laws fitted to "
        "`runs/demo`), evaluated on the demo sweep's own eval grid (geometric dense grid, ratio "
        "1.05, from 0.25 n to the cap of 5 n), crossing shifted by a log-uniform factor in "
        "[0.9, 1.1], OU eval noise with the EWA's correlation time. Bias = mean of "
        "(estimate / true crossing - 1), with its standard error; rms = root mean square relative "
        "error. See the docstring of `experiments/cbs/steps_bias.py`.",
        "",
        f"Command `{command}`; {seconds:.0f} s on this machine (2 shared CPU cores).",
        "",
        "| B | expected steps n | cap | evals | true crossing |",
        "|---|---|---|---|---|",
    ]
    seen = set()
    for row in rows:
        b = row["batch_size"]
        if b in seen:
            continue
        seen.add(b)
        n, cap, grid = grids[b]
        lines.append(f"| {b} | {n} | {cap} | {len(grid)} | {row['true_steps']:.0f} |")
    for sigma in sorted({row["sigma"] for row in rows}):
        lines += [
            "",
            f"Eval noise sigma = {sigma:g} ({rows[0]['replicates']} replicates per batch size):",
            "",
            "| B | interpolated: bias [s.e.] | rms | first eval at or below: bias [s.e.] | rms "
            "| median bracket ratio | never reached |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            if row["sigma"] != sigma:
                continue
            i, f = row["interpolated"], row["first_eval"]
            lines.append(
                f"| {row['batch_size']} | {100 * i['mean']:+.2f}% [{100 * i['se']:.2f}] | "
                f"{100 * i['rms']:.2f}% | {100 * f['mean']:+.2f}% [{100 * f['se']:.2f}] | "
                f"{100 * f['rms']:.2f}% | {row['median_bracket_ratio']:.3f} | {row['censored']} |"
            )
    worst = {}
    for row in rows:
        m = abs(row["interpolated"]["mean"])
        worst[row["sigma"]] = max(worst.get(row["sigma"], 0.0), m)
    lines += ["", "Largest |bias| of the interpolated crossing over the batch sizes:", ""]
    for sigma, m in sorted(worst.items()):
        verdict = "below 1% at every batch size" if m < 0.01 else "NOT below 1% everywhere"
        lines.append(f"- sigma {sigma:g}: {100 * m:.2f}% ({verdict})")
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--replicates", type=int, default=None, help="default 4000 (--small: 100)")
    p.add_argument("--small", action="store_true", help="100 replicates: checks the pipeline")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument(
        "--fit-shapes",
        type=Path,
        default=None,
        metavar="SWEEP_DIR",
        help="print the power-law shapes fitted to a demo sweep folder and exit",
    )
    args = p.parse_args(argv)
    if args.replicates is None:
        args.replicates = 100 if args.small else 4000
    return args


def main(argv=None) -> list[dict]:
    """Simulate, print the table, write steps_bias{_small}.md and .json."""
    args = parse_args(argv)
    if args.fit_shapes is not None:
        for batch_size, shape in fit_shapes(args.fit_shapes).items():
            print(f"{batch_size}: ({shape[0]:.4f}, {shape[1]:.5g}, {shape[2]:.4f}),")
        return []
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    grids = demo_grids()
    rows = [
        bias_for_batch(b, grids[b][2], sigma=sigma, replicates=args.replicates, rng=rng)
        for sigma in NOISE_LEVELS
        for b in sorted(grids)
    ]
    seconds = time.perf_counter() - start
    suffix = "_small" if args.small else ""
    command = ".venv/bin/python experiments/cbs/steps_bias.py" + (" --small" if args.small else "")
    if args.replicates != (100 if args.small else 4000):
        command += f" --replicates {args.replicates}"
    text = markdown(rows, grids, command, seconds)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"steps_bias{suffix}.md").write_text(text)
    (args.out / f"steps_bias{suffix}.json").write_text(
        json.dumps(dict(rows=rows, seconds=seconds), indent=1) + "\n"
    )
    return rows


if __name__ == "__main__":
    main()
