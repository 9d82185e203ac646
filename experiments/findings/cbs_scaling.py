"""Finding (a): the critical batch size grows with the data size, not with the model size.

Zhang et al., "How Does Critical Batch Size Scale in Pre-training?" (section 4,
Fig. 1): with the target loss set by a reference run at B_ref after D tokens,
B* scales as D^0.47 at a fixed model size, and is nearly flat in the model size
N at a fixed D (N^0.087 in their fit over 85M-1.2B parameters).

The miniature, on the embedded corpus with the demo's model and optimizer
(``experiments/findings/demo_model.py``: constant LR + EWA, half-life rules):

- data axis: one reference run of the d_model 32 model at B_ref = 8 to D_max;
  its EWA eval loss at D_max/8, /4, /2 and D_max gives four targets. Each batch
  size trains once until it reaches the lowest target; the steps at which its
  EWA eval loss first falls to each target (linear interpolation between
  evals) give four Y(B) curves from the same runs.
- model axis: d_model 16, 32, 64 (n_layers 2, d_ff 4 d_model) at one D
  (D_max/2): a reference run and the batch sizes per model.

Each Y(B) is fitted by ``bsjax fit-cbs`` (Y = a + b/B, B* at 20% overhead over
linear scaling from B_opt = B_ref: B* = 1.2 B_opt + 0.2 b/a, parametric 95%
interval), and B* against D or N by a log-log least-squares line.

  nice -n 19 .venv/bin/python experiments/findings/cbs_scaling.py            # CPU, ~25 min
  .venv/bin/python experiments/findings/cbs_scaling.py --small               # pipeline check
  .venv/bin/python experiments/findings/cbs_scaling.py --large               # an accelerator

Writes cbs_scaling.png and cbs_scaling.md next to this file (or ``--out``);
runs go to runs/findings/cbs_scaling/ and are reused when finished.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import fitting  # noqa: E402
import runs as runs_lib  # noqa: E402

CTX = 64
B_REF = 8
PAPER_D_EXPONENT = 0.47  # B* = 22.91 D^0.47, D in billions of tokens
PAPER_N_EXPONENT = 0.087  # B* = 621.341 N^0.087 at fixed D
DEMO_BSTAR = (12.84, 12.08, 13.66)  # README: `make run`, 0.5M tokens, d_model 32
B_GUESS = 13  # only sets the eval cadence of large batches


@dataclasses.dataclass(frozen=True)
class Mode:
    """Sizes of one mode of the experiment."""

    d_max: int  # tokens of the base model's reference run
    d_fixed: int  # tokens at which the model sizes are compared
    batch_sizes: tuple[int, ...]
    models: tuple[int, ...]  # d_model of the model axis; 32 is the base model
    data_fractions: tuple[float, ...]
    bootstrap: int


MODES = dict(
    small=Mode(2**14, 2**14, (4, 8, 16), (16, 32), (0.5, 1.0), 0),
    cpu=Mode(2**20, 2**19, (2, 4, 8, 16, 32, 64), (16, 32, 64), (0.125, 0.25, 0.5, 1.0), 500),
    large=Mode(
        2**23,
        2**22,
        (2, 4, 8, 16, 32, 64, 128, 256),
        (32, 64, 128),
        (1 / 16, 1 / 8, 0.25, 0.5, 1),
        500,
    ),
)


def model_values(d_model: int) -> dict:
    """Overrides of the model section for width ``d_model`` (2 layers, 1 head, d_ff 4x)."""
    return {"model.d_model": d_model, "model.d_ff": 4 * d_model}


def non_embedding_params(d_model: int, n_layers: int = 2) -> int:
    """Non-embedding parameters of the 2-layer GELU model (as bsjax.model.count_params counts)."""
    return n_layers * (4 * d_model**2 + 2 * d_model * 4 * d_model + 4 * d_model) + 2 * d_model


def run_values(d_model: int, batch: int, *, max_tokens: int, eval_every: int, target: float):
    values = model_values(d_model)
    values.update(
        {
            "batch.batch_size": batch,
            "train.max_tokens": max_tokens,
            "train.max_steps": 0,
            "train.target_loss": target,
            "train.eval_every": eval_every,
            "train.log_every": max(eval_every, 50),
            "train.checkpoint_every": 10**9,
        }
    )
    return values


def eval_every_for(batch: int, first_target_tokens: int) -> int:
    """About 20 evals before the first target (large batches need more than D/B steps)."""
    est_steps = first_target_tokens / (CTX * batch) * (1 + batch / B_GUESS)
    return max(1, round(est_steps / 20))


def reference(workdir: Path, d_model: int, tokens: int, fractions) -> dict[float, float]:
    """Train (or reuse) the B_REF run to ``tokens``; its EWA eval loss at each fraction."""
    ref_dir = workdir / f"d{d_model}_ref"
    step_tokens = B_REF * CTX
    checkpoints = [round(f * tokens) for f in fractions]
    if any(t % step_tokens for t in checkpoints):
        raise ValueError(f"data sizes {checkpoints} must be whole steps of {step_tokens} tokens")
    steps = [t // step_tokens for t in checkpoints]
    eval_every = math.gcd(*steps, max(1, steps[0] // 16))
    if not runs_lib.is_finished(ref_dir):
        print(f"  reference d_model {d_model}: B={B_REF} to {tokens:,} tokens", flush=True)
        runs_lib.train(
            ref_dir,
            run_values(d_model, B_REF, max_tokens=tokens, eval_every=eval_every, target=0.0),
        )
    by_step = {s: loss for s, _, loss in runs_lib.eval_curve(ref_dir)}
    return {f: by_step[s] for f, s in zip(fractions, steps)}


def point_runs(workdir, d_model, batch_sizes, targets: dict[float, float], tokens: int):
    """Steps to each target for every batch size; None where a run never reached it."""
    lowest = min(targets.values())
    first_tokens = round(min(targets) * tokens)
    steps: dict[float, dict[int, float | None]] = {f: {} for f in targets}
    for batch in batch_sizes:
        if batch == B_REF:
            run_dir = workdir / f"d{d_model}_ref"
        else:
            run_dir = workdir / f"d{d_model}_B{batch}"
            if not runs_lib.is_finished(run_dir):
                print(f"  d_model {d_model}: B={batch} to loss {lowest:.4f}", flush=True)
                values = run_values(
                    d_model,
                    batch,
                    max_tokens=8 * tokens,
                    eval_every=eval_every_for(batch, first_tokens),
                    target=lowest,
                )
                runs_lib.train(run_dir, values)
        curve = [(s, loss) for s, _, loss in runs_lib.eval_curve(run_dir)]
        for f, target in targets.items():
            steps[f][batch] = runs_lib.crossing(curve, target)
    return steps


def fit_all(steps_by_target, csv_dir: Path, name: str, bootstrap: int) -> dict[float, dict]:
    """One `bsjax fit-cbs` per target; runs that never reached a target are left out."""
    fits = {}
    for f, by_batch in steps_by_target.items():
        reached = {b: s for b, s in by_batch.items() if s is not None}
        if len(reached) < 3:
            print(f"  {name} D fraction {f}: only {len(reached)} batch sizes reached it; no fit")
            continue
        fits[f] = fitting.fit_cbs(
            reached, csv_dir / f"{name}_f{f:g}.csv", b_opt=B_REF, bootstrap=bootstrap
        )
        fits[f]["missed"] = sorted(b for b, s in by_batch.items() if s is None)
    return fits


def _bstar(fit: dict) -> tuple[float, list[float] | None]:
    ci = fit.get("ci", {}).get("critical_batch_size")
    return fit["critical_batch_size"], ([ci["low"], ci["high"]] if ci else None)


def analyse(mode: Mode, data_fits, model_fits, data_targets, model_targets) -> dict:
    """B* and b/a against D and N, with log-log slopes."""
    data_rows = []
    for f, fit in sorted(data_fits.items()):
        bstar, ci = _bstar(fit)
        data_rows.append(
            dict(
                tokens=round(f * mode.d_max),
                target=data_targets[f],
                bstar=bstar,
                ci=ci,
                b_over_a=fit["b"] / fit["a"],
                rms=fit["rms_log_residual"],
                missed=fit["missed"],
            )
        )
    model_rows = []
    for d_model, fit in sorted(model_fits.items()):
        bstar, ci = _bstar(fit)
        model_rows.append(
            dict(
                d_model=d_model,
                params=non_embedding_params(d_model),
                target=model_targets[d_model],
                bstar=bstar,
                ci=ci,
                b_over_a=fit["b"] / fit["a"],
                rms=fit["rms_log_residual"],
                missed=fit["missed"],
            )
        )
    out = dict(data=data_rows, model=model_rows)
    for key, rows, x in (("data", data_rows, "tokens"), ("model", model_rows, "params")):
        if len(rows) >= 2:
            xs = [r[x] for r in rows]
            out[f"{key}_exponent"] = fitting.loglog_slope(xs, [r["bstar"] for r in rows])
            out[f"{key}_exponent_b_over_a"] = fitting.loglog_slope(
                xs, [r["b_over_a"] for r in rows]
            )
    return out


def plot(result: dict, steps_data: dict, mode: Mode, path: Path) -> None:
    """Three panels: Y(B) per data size, B* against D, B* against N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    ax = axes[0]
    for f, by_batch in sorted(steps_data.items()):
        pts = sorted((b, s) for b, s in by_batch.items() if s is not None)
        if pts:
            ax.plot(*zip(*pts), "o-", label=f"D = {f * mode.d_max / 1e6:.3g}M tokens")
    ax.set(xscale="log", yscale="log", xlabel="batch size B (sequences)", ylabel="steps to target")
    ax.set_title("steps to target (d_model 32)")
    ax.legend(fontsize=8)
    for ax, key, x, xlabel, paper in (
        (axes[1], "data", "tokens", "data size D (tokens)", PAPER_D_EXPONENT),
        (axes[2], "model", "params", "non-embedding parameters N", PAPER_N_EXPONENT),
    ):
        rows = result[key]
        if not rows:
            continue
        xs = np.array([r[x] for r in rows], float)
        ys = np.array([r["bstar"] for r in rows])
        lo = [r["ci"][0] if r["ci"] else r["bstar"] for r in rows]
        hi = [r["ci"][1] if r["ci"] else r["bstar"] for r in rows]
        ax.errorbar(
            xs, ys, yerr=[ys - lo, np.array(hi) - ys], fmt="o", capsize=3, label="B* (95% CI)"
        )
        if f"{key}_exponent" in result:
            k, c, _ = result[f"{key}_exponent"]
            ax.plot(xs, c * xs**k, "-", label=f"fit: exponent {k:.2f}")
            ax.plot(
                xs, ys[0] * (xs / xs[0]) ** paper, "--", color="gray", label=f"paper slope {paper}"
            )
        ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="critical batch size B*")
        ax.legend(fontsize=8)
    axes[1].set_title("B* against data size (d_model 32)")
    axes[2].set_title(f"B* against model size (D = {mode.d_fixed / 1e6:.3g}M tokens)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _exp(result, key) -> str:
    if key not in result:
        return "n/a"
    k, _, se = result[key]
    return f"{k:.3f}" + ("" if math.isnan(se) else f" ± {se:.3f} (s.e.)")


def markdown(result: dict, mode_name: str, mode: Mode, command: str, minutes: float) -> str:
    """The results table, the paper's numbers beside ours."""
    lines = [
        "# Finding (a): CBS against data size and model size",
        "",
        f"Mode `{mode_name}`; command `{command}`; {minutes:.1f} min on this machine "
        "(2 shared CPU cores, runs reused when finished are not counted again).",
        "",
        "| quantity | paper (Zhang et al.) | here |",
        "|---|---|---|",
        f"| exponent of B* against D (fixed N) | {PAPER_D_EXPONENT} | {_exp(result, 'data_exponent')} |",
        f"| exponent of b/a against D | – | {_exp(result, 'data_exponent_b_over_a')} |",
        f"| exponent of B* against N (fixed D) | {PAPER_N_EXPONENT} | {_exp(result, 'model_exponent')} |",
        f"| exponent of b/a against N | – | {_exp(result, 'model_exponent_b_over_a')} |",
        f"| B* of the demo model near 0.5M tokens | demo sweep: {DEMO_BSTAR[0]} "
        f"[{DEMO_BSTAR[1]}, {DEMO_BSTAR[2]}] | see the data table |",
        "",
        "B* = 1.2 B_opt + 0.2 b/a with B_opt = B_ref = 8 (the demo's protocol), so 9.6 of it is "
        "fixed by B_opt; the b/a column is the part that moves with D or N.",
        "",
        "**Data axis** (d_model 32, 24,896 non-embedding parameters):",
        "",
        "| D (tokens) | target EWA eval loss | B* [95% CI] | b/a | rms log residual | never reached |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["data"]:
        lines.append(
            f"| {r['tokens']:,} | {r['target']:.4f} | {fitting.fmt_interval(r['bstar'], r['ci'])} "
            f"| {r['b_over_a']:.1f} | {r['rms']:.3f} | {r['missed'] or '–'} |"
        )
    lines += [
        "",
        f"**Model axis** (D = {mode.d_fixed:,} tokens):",
        "",
        "| d_model | N (non-embedding) | target | B* [95% CI] | b/a | rms log residual | never reached |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["model"]:
        lines.append(
            f"| {r['d_model']} | {r['params']:,} | {r['target']:.4f} | "
            f"{fitting.fmt_interval(r['bstar'], r['ci'])} | {r['b_over_a']:.1f} | {r['rms']:.3f} "
            f"| {r['missed'] or '–'} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--small", action="store_true", help="tiny budgets: checks the pipeline only")
    g.add_argument("--large", "--gpu", action="store_true", help="8x the data, wider models")
    p.add_argument(
        "--workdir", type=Path, default=None, help="default runs/findings/cbs_scaling[_MODE]"
    )
    p.add_argument("--out", type=Path, default=HERE)
    args = p.parse_args(argv)
    args.mode = "small" if args.small else "large" if args.large else "cpu"
    if args.workdir is None:
        suffix = "" if args.mode == "cpu" else f"_{args.mode}"
        args.workdir = runs_lib.REPO / "runs" / "findings" / f"cbs_scaling{suffix}"
    return args


def main(argv=None) -> dict:
    """Train the missing runs, fit, and write the figure and table."""
    args = parse_args(argv)
    mode = MODES[args.mode]
    if 32 not in mode.models and args.mode != "large":
        raise ValueError("the base model (d_model 32) must be on the model axis")
    start = time.perf_counter()
    wd = args.workdir
    base = 32 if 32 in mode.models else mode.models[0]
    fractions = mode.data_fractions
    data_targets = reference(wd, base, mode.d_max, fractions)
    data_steps = point_runs(wd, base, mode.batch_sizes, data_targets, mode.d_max)
    data_fits = fit_all(data_steps, wd / "csv", f"d{base}", mode.bootstrap)
    fixed_fraction = mode.d_fixed / mode.d_max
    model_fits, model_targets = {}, {}
    for d_model in mode.models:
        if d_model == base and fixed_fraction in data_fits:
            model_fits[d_model] = data_fits[fixed_fraction]
            model_targets[d_model] = data_targets[fixed_fraction]
            continue
        targets = reference(wd, d_model, mode.d_fixed, (1.0,))
        steps = point_runs(wd, d_model, mode.batch_sizes, targets, mode.d_fixed)
        fits = fit_all(steps, wd / "csv", f"d{d_model}", mode.bootstrap)
        if 1.0 in fits:
            model_fits[d_model], model_targets[d_model] = fits[1.0], targets[1.0]
    result = analyse(mode, data_fits, model_fits, data_targets, model_targets)
    minutes = (time.perf_counter() - start) / 60
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.mode == "cpu" else f"_{args.mode}"
    command = "nice -n 19 .venv/bin/python experiments/findings/cbs_scaling.py" + (
        f" --{args.mode}" if args.mode != "cpu" else ""
    )
    plot(result, data_steps, mode, args.out / f"cbs_scaling{suffix}.png")
    (args.out / f"cbs_scaling{suffix}.md").write_text(
        markdown(result, args.mode, mode, command, minutes)
    )
    (args.out / f"cbs_scaling{suffix}.json").write_text(
        json.dumps(dict(result=result, steps=_jsonable(data_steps), minutes=minutes), indent=1)
        + "\n"
    )
    print(f"wrote {args.out / f'cbs_scaling{suffix}.md'} ({minutes:.1f} min)")
    return result


def _jsonable(steps) -> dict:
    return {str(f): {str(b): s for b, s in by.items()} for f, by in steps.items()}


if __name__ == "__main__":
    main()
