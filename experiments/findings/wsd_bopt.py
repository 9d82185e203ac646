"""Finding (b): B_opt and B_min against the target loss in the stable phase of WSD (Zhou et al.).

Zhou et al. 2026 (docs/science.md section 3): in the stable phase of a warmup-stable-decay
schedule, the examples ``E`` needed to reach a target loss, against the steps ``S``, follow a
three-stage curve; its minimum gives ``B_opt = E_min / S_opt`` and its linear tail
``B_min = A_1``, and both grow as the target loss falls.

The miniature trains the demo model (``experiments/findings/demo_model.py``: the demo's model,
LR 1e-2, beta2 and EWA tau by the half-life rules) at constant LR after warm-up (the stable
phase of WSD: the decay is never reached, so it is not run) at each batch size until its EWA
eval loss reaches the lowest target or a token cap. For every target loss each run gives one
point ``(S, E)``: the crossing interpolated by ``bsjax.train.eval_schedule.target_crossing``.
Per target, ``bsjax.cbs.wsd.fit_wsd_curve`` fits E(S) (six free parameters: needs >= 7 batch
sizes that reach the target), and the result is checked for being well posed: the fit's own
warnings (a minimum or a linear stage outside the measured steps) and the spread of B_opt when
each point is left out in turn. Beside it, a model-free B_opt: the batch size of fewest
examples, refined by a parabola in log B through it and its two neighbours.

  nice -n 19 .venv/bin/python experiments/findings/wsd_bopt.py          # CPU, 12 runs (~15 min)
  nice -n 19 .venv/bin/python experiments/findings/wsd_bopt.py --small  # 3 runs: pipeline check
  .venv/bin/python experiments/findings/wsd_bopt.py --large             # lower targets, 4x cap

Writes wsd_bopt{,_small,_large}.png, .md and .json next to this file (or under ``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import runs as runs_lib  # noqa: E402

CTX = 64
REF_BATCH = 8
# batch sizes, target losses (EWA eval loss), token cap per run
MODES = {
    "small": dict(batch_sizes=(8, 16, 32), targets=(3.2, 3.0), max_tokens=200_000),
    "cpu": dict(
        batch_sizes=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64),
        targets=(2.6, 2.5, 2.4, 2.3, 2.2, 2.1, 2.0),
        max_tokens=2_000_000,
    ),
    "large": dict(
        batch_sizes=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128),
        targets=(2.6, 2.4, 2.2, 2.1, 2.0, 1.9, 1.8),
        max_tokens=8_000_000,
    ),
}
EVALS_PER_RUN = 80


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--small", action="store_true", help="3 runs to a high loss: pipeline check")
    g.add_argument("--large", "--gpu", action="store_true", help="more batch sizes, lower targets")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=HERE)
    args = p.parse_args(argv)
    args.mode = "small" if args.small else "large" if args.large else "cpu"
    if args.workdir is None:
        suffix = "" if args.mode == "cpu" else f"_{args.mode}"
        args.workdir = runs_lib.REPO / "runs" / "findings" / f"wsd_bopt{suffix}"
    return args


def guessed_examples(batch_size: int, mode: str) -> float:
    """A rough guess of the examples a run needs (it only spaces the evaluations)."""
    scale = 300.0 if mode == "small" else 4000.0
    return scale * (1.0 + batch_size / REF_BATCH)


def run_values(batch_size: int, mode: str) -> dict:
    """Config overrides of the run at ``batch_size``."""
    spec = MODES[mode]
    steps = guessed_examples(batch_size, mode) / batch_size
    return {
        "batch.batch_size": batch_size,
        "optim.schedule": "constant",
        "train.target_loss": min(spec["targets"]),
        "train.max_tokens": spec["max_tokens"],
        "train.max_steps": 0,
        "train.eval_schedule": "every",
        "train.eval_every": max(2, round(steps / EVALS_PER_RUN)),
        "train.log_every": 100,
        "train.checkpoint_every": 10**9,
        "train.keep_checkpoints": 1,
    }


def ensure_runs(args) -> float:
    """Train the runs that are missing; returns the seconds spent."""
    seconds = 0.0
    for batch_size in MODES[args.mode]["batch_sizes"]:
        run_dir = args.workdir / f"bs{batch_size:04d}"
        if runs_lib.is_finished(run_dir):
            continue
        print(f"  {run_dir.name}: training", flush=True)
        seconds += runs_lib.train(run_dir, run_values(batch_size, args.mode))
    return seconds


def crossings(args) -> dict[float, dict[int, tuple[float, float]]]:
    """``{target: {batch_size: (steps, examples)}}`` for the runs that reach each target."""
    from bsjax.train.eval_schedule import target_crossing

    out: dict[float, dict[int, tuple[float, float]]] = {t: {} for t in MODES[args.mode]["targets"]}
    for batch_size in MODES[args.mode]["batch_sizes"]:
        records = runs_lib.read_metrics(args.workdir / f"bs{batch_size:04d}").get("eval", [])
        for target in out:
            hit = target_crossing(records, target)
            if hit is not None and hit.method == "interpolated":
                examples = hit.examples if hit.examples is not None else hit.steps * batch_size
                out[target][batch_size] = (hit.steps, examples)
    return out


def empirical_b_opt(points: dict[int, tuple[float, float]]) -> float:
    """Batch size of fewest examples, refined by a parabola in log B through its neighbours."""
    import numpy as np

    sizes = sorted(points)
    if not sizes:
        return math.nan
    examples = [points[b][1] for b in sizes]
    i = int(np.argmin(examples))
    if i == 0 or i == len(sizes) - 1:
        return float(sizes[i])
    x = np.log([sizes[i - 1], sizes[i], sizes[i + 1]])
    y = np.log(examples[i - 1 : i + 2])
    c2, c1, _ = np.polyfit(x, y, 2)
    return float(math.exp(-c1 / (2 * c2))) if c2 > 0 else float(sizes[i])


def batch_at_twice_min_examples(points: dict[int, tuple[float, float]]) -> float:
    """The batch size whose examples are twice the fewest (interpolated in log B, log E).

    McCandlish et al.'s ``E / E_min = 1 + B / B_noise`` puts ``E = 2 E_min`` at ``B = B_noise``
    (docs/science.md section 2): a model-free measure of where batches stop being cheap in
    examples. nan when no measured batch size reaches twice the fewest examples.
    """
    sizes = sorted(points)
    if not sizes:
        return math.nan
    e_min = min(points[b][1] for b in sizes)
    b_fewest = min(sizes, key=lambda b: points[b][1])
    prev = None
    for b in sizes:
        if b < b_fewest:
            continue
        ratio = points[b][1] / e_min
        if ratio >= 2.0 and prev is not None:
            (b0, r0) = prev
            w = math.log(2.0 / r0) / math.log(ratio / r0)
            return math.exp(math.log(b0) + w * (math.log(b) - math.log(b0)))
        prev = (b, ratio)
    return math.nan


def fit_target(points: dict[int, tuple[float, float]], target: float) -> dict:
    """The WSD fit of one target with its well-posedness checks (leave-one-out B_opt spread)."""
    from bsjax.cbs.fits import CbsFitWarning, CurveFitError
    from bsjax.cbs.wsd import MIN_POINTS, fit_wsd_curve

    sizes = sorted(points)
    result = dict(
        target=target,
        n_points=len(sizes),
        batch_sizes=sizes,
        steps=[points[b][0] for b in sizes],
        examples=[points[b][1] for b in sizes],
        empirical_b_opt=empirical_b_opt(points),
        batch_at_2x_examples=batch_at_twice_min_examples(points),
        b_opt=math.nan,
        b_min=math.nan,
        loo_b_opt=[],
        warnings=[],
        fit=None,
    )
    if len(sizes) < MIN_POINTS:
        result["warnings"].append(
            f"only {len(sizes)} batch sizes reach the target; the fit needs {MIN_POINTS}"
        )
        return result

    def fit(keep):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CbsFitWarning)
            return fit_wsd_curve(
                [points[b][0] for b in keep], [points[b][1] for b in keep], target_loss=target
            )

    try:
        full = fit(sizes)
    except CurveFitError as exc:
        result["warnings"].append(f"fit failed: {exc}")
        return result
    result.update(b_opt=full.b_opt, b_min=full.b_min, fit=full.to_dict())
    result["warnings"] += list(full.warnings)
    if len(sizes) > MIN_POINTS:
        for left_out in sizes:
            try:
                result["loo_b_opt"].append(fit([b for b in sizes if b != left_out]).b_opt)
            except CurveFitError:
                result["loo_b_opt"].append(math.nan)
    return result


def plot(results: list[dict], path: Path) -> None:
    """E(S) per target with its fit, and B_opt / B_min against the target loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from bsjax.cbs.wsd import WSDFit

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    ax = axes[0]
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(results)))
    for res, color in zip(results, colors):
        if not res["n_points"]:
            continue
        s, e = np.array(res["steps"]), np.array(res["examples"]) * CTX
        ax.scatter(s, e, color=color, s=18, label=f"target {res['target']:g}")
        for b, x, y in zip(res["batch_sizes"], s, e):
            ax.annotate(
                str(b),
                (x, y),
                fontsize=6,
                color=color,
                xytext=(2, 2),
                **{"textcoords": "offset points"},
            )
        if res["fit"] is not None:
            fields = {k: res["fit"][k] for k in WSDFit.__dataclass_fields__ if k in res["fit"]}
            fields["residuals"] = tuple(fields["residuals"])
            fields["warnings"] = tuple(fields["warnings"])
            grid = np.geomspace(s.min() * 0.9, s.max() * 1.1, 200)
            ax.plot(grid, WSDFit(**fields).examples(grid) * CTX, color=color, lw=1)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="steps S to the target",
        ylabel="tokens E * ctx to the target",
    )
    ax.set_title("E(S) per target loss (labels: batch size)")
    ax.legend(fontsize=8)

    ax = axes[1]
    targets = [r["target"] for r in results]
    ax.plot(
        targets,
        [r["empirical_b_opt"] for r in results],
        "o-",
        label="B_opt, fewest tokens (model-free)",
    )
    ax.plot(
        targets,
        [r["batch_at_2x_examples"] for r in results],
        "D-",
        label="B at 2x the fewest tokens (model-free)",
    )
    ax.plot(targets, [r["b_opt"] for r in results], "s--", label="B_opt, WSD fit")
    ax.plot(targets, [r["b_min"] for r in results], "^:", label="B_min, WSD fit")
    for r in results:
        loo = [v for v in r["loo_b_opt"] if math.isfinite(v)]
        if loo:
            ax.vlines(r["target"], min(loo), max(loo), color="gray", lw=3, alpha=0.4)
    ax.set(xlabel="target EWA eval loss", ylabel="batch size (sequences)", yscale="log")
    ax.set_ylim(0.3, 300)  # ill-posed fits land far outside (the table has their values)
    ax.invert_xaxis()
    ax.set_title("against the target (gray: leave-one-out fitted B_opt; axis clipped)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def trend(results: list[dict], key: str) -> str:
    """Whether ``key`` rises as the target falls, over the targets where it is finite."""
    vals = [(r["target"], r[key]) for r in results if math.isfinite(r[key])]
    if len(vals) < 2:
        return "not measurable"
    vals.sort(reverse=True)  # from the highest target (reached first) to the lowest
    seq = [v for _, v in vals]
    span = f" ({seq[0]:.3g} at {vals[0][0]:g} -> {seq[-1]:.3g} at {vals[-1][0]:g})"
    rises = sum(b > a for a, b in zip(seq, seq[1:]))
    if rises == len(seq) - 1:
        return "rises as the target falls" + span
    if rises == 0:
        return "does not rise" + span
    return f"not monotone: rises in {rises} of {len(seq) - 1} steps down the targets" + span


def runs_wall_minutes(args) -> float:
    """Sum of the training runs' wall times, from their summary.json."""
    total = 0.0
    for batch_size in MODES[args.mode]["batch_sizes"]:
        summary = runs_lib.read_summary(args.workdir / f"bs{batch_size:04d}")
        total += float(summary.get("wall_s", math.nan))
    return total / 60


def markdown(results, args, command, minutes, run_minutes) -> str:
    """The results page."""
    spec = MODES[args.mode]
    lines = [
        "# Finding (b): B_opt and B_min against the target loss (stable phase of WSD)",
        "",
        f"Demo model at constant LR after warm-up (the stable phase), batch sizes "
        f"{list(spec['batch_sizes'])}, each run until its EWA eval loss reaches "
        f"{min(spec['targets'])} or {spec['max_tokens']:,} tokens. Crossings interpolated in "
        "log-steps (`target_crossing`); E in sequences (x64 for tokens).",
        f"Command `{command}`; the runs' own wall time (their summary.json, on 2 shared CPU "
        f"cores): {runs_wall_minutes(args):.1f} min; this call {minutes:.1f} min, of which "
        f"{run_minutes:.1f} training (finished runs in the work folder are reused).",
        "",
        "| target | batch sizes reaching it | B_opt (fewest examples, model-free) | "
        "B at 2x the fewest examples | B_opt (WSD fit) | leave-one-out B_opt range | "
        "B_min (WSD fit) | fit warnings |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        loo = [v for v in r["loo_b_opt"] if math.isfinite(v)]
        loo_text = f"{min(loo):.3g} – {max(loo):.3g}" if loo else "–"
        fit_opt = f"{r['b_opt']:.3g}" if math.isfinite(r["b_opt"]) else "–"
        fit_min = f"{r['b_min']:.3g}" if math.isfinite(r["b_min"]) else "–"
        notes = "; ".join(w.split(": ", 1)[-1] for w in r["warnings"]) or "none"
        lines.append(
            f"| {r['target']:g} | {r['n_points']} | {r['empirical_b_opt']:.3g} | "
            f"{r['batch_at_2x_examples']:.3g} | {fit_opt} | "
            f"{loo_text} | {fit_min} | {notes} |"
        )
    lines += [
        "",
        "Examples to the target per batch size (sequences; steps in brackets):",
        "",
        "| B | " + " | ".join(f"target {r['target']:g}" for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for b in spec["batch_sizes"]:
        cells = []
        for r in results:
            if b in r["batch_sizes"]:
                i = r["batch_sizes"].index(b)
                cells.append(f"{r['examples'][i]:,.0f} ({r['steps'][i]:.0f})")
            else:
                cells.append("not reached")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"- Model-free B_opt {trend(results, 'empirical_b_opt')}; B at 2x the fewest examples "
        f"{trend(results, 'batch_at_2x_examples')}; fitted B_opt "
        f"{trend(results, 'b_opt')}; fitted B_min {trend(results, 'b_min')}.",
        "- Paper (Zhou et al., secondary reading): both B_opt and B_min grow as the target loss falls.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> list[dict]:
    """Train what is missing, fit per target, write the figure and the tables."""
    args = parse_args(argv)
    start = time.perf_counter()
    run_seconds = ensure_runs(args)
    by_target = crossings(args)
    results = [
        fit_target(points, target) for target, points in sorted(by_target.items(), reverse=True)
    ]
    minutes = (time.perf_counter() - start) / 60
    suffix = "" if args.mode == "cpu" else f"_{args.mode}"
    args.out.mkdir(parents=True, exist_ok=True)
    plot(results, args.out / f"wsd_bopt{suffix}.png")
    command = "nice -n 19 .venv/bin/python experiments/findings/wsd_bopt.py" + (
        f" --{args.mode}" if args.mode != "cpu" else ""
    )
    text = markdown(results, args, command, minutes, run_seconds / 60)
    (args.out / f"wsd_bopt{suffix}.md").write_text(text)
    (args.out / f"wsd_bopt{suffix}.json").write_text(
        json.dumps(dict(results=results, minutes=minutes, run_minutes=run_seconds / 60), indent=1)
        + "\n"
    )
    print(text)
    return results


if __name__ == "__main__":
    main()
