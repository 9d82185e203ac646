"""Read the comparison's run folders and write results.md, results.json and the plots.

One run folder per (arm, seed): summary.json, metrics.jsonl and final_eval.json
(written by compare.py). The paired comparison against ``const_small`` uses the
per-seed difference of final EWA eval loss: both arms of a pair share the model
init and the data order, so the difference cancels much of the seed noise.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import plots

REFERENCE = "const_small"
FINISHED = ("max_tokens", "max_steps", "target_reached", "diverged")


def read_run(workdir: Path) -> dict | None:
    """One finished run's numbers and curves; None when it is missing or unfinished."""
    summary_path, final_path = workdir / "summary.json", workdir / "final_eval.json"
    if not (summary_path.exists() and final_path.exists()):
        return None
    summary = json.loads(summary_path.read_text())
    if summary.get("status") not in FINISHED:
        return None
    final = json.loads(final_path.read_text())
    evals, batch, switches = [], [], []
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == "eval":
            evals.append((rec["tokens"], rec["ewa_eval_loss"], rec["step"]))
        elif rec["kind"] == "train":
            batch.append((rec["tokens"], rec["batch_size"]))
        elif rec["kind"] == "switch":
            switches.append(
                dict(
                    tokens=rec["tokens"],
                    step=rec["step"],
                    old=rec["old_batch_size"],
                    new=rec["new_batch_size"],
                    reason=rec.get("reason", ""),
                )
            )
    if not evals or evals[-1][0] != final["tokens"]:
        evals.append((final["tokens"], final["ewa_eval_loss"], final["step"]))
    policy = summary.get("policy", {})
    return dict(
        status=summary["status"],
        steps=summary["steps"],
        tokens=summary["tokens"],
        wall_s=summary["wall_s"],
        compile_s=summary.get("compile_s", 0.0),
        final_ewa=final["ewa_eval_loss"],
        final_raw=final["eval_loss"],
        loop_last_ewa=summary.get("final_ewa_eval_loss"),
        branch_steps=policy.get("branch_steps", 0.0),
        branch_tokens=policy.get("branch_tokens", 0.0),
        evals=evals,
        batch=batch,
        switches=switches,
    )


def _mean_sd(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def _fmt(mean: float, sd: float, digits: int = 4) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.{digits}f}" + ("" if math.isnan(sd) else f" ± {sd:.{digits}f}")


def paired(runs: dict, arm: str, seeds: list[int]) -> dict:
    """Per-seed differences of final EWA eval loss (arm minus the reference) and a paired t-test.

    The verdict is "better"/"worse" when every seed's difference has the same
    sign and the two-sided paired t-test rejects "no difference" at 5%; a run
    identical to the reference on every seed (sd 0, mean 0) is "identical".
    """
    from scipy import stats

    deltas = {
        s: runs[arm][s]["final_ewa"] - runs[REFERENCE][s]["final_ewa"]
        for s in seeds
        if s in runs.get(arm, {}) and s in runs.get(REFERENCE, {})
    }
    values = list(deltas.values())
    mean, sd = _mean_sd(values)
    raw_mean, _ = _mean_sd(
        [runs[arm][s]["final_raw"] - runs[REFERENCE][s]["final_raw"] for s in deltas]
    )
    n = len(values)
    t_stat = p_value = math.nan
    if n >= 2 and sd > 0:
        t_stat = mean / (sd / math.sqrt(n))
        p_value = float(2 * stats.t.sf(abs(t_stat), df=n - 1))
    same_sign = n >= 2 and (all(d < 0 for d in values) or all(d > 0 for d in values))
    if arm == REFERENCE:
        verdict = "reference"
    elif n < 2:
        verdict = "too few seeds"
    elif all(d == 0 for d in values):
        verdict = "identical"
    elif same_sign and p_value < 0.05:
        verdict = "better" if mean < 0 else "worse"
    else:
        verdict = "within noise"
    return dict(
        deltas=deltas, mean=mean, sd=sd, t=t_stat, p=p_value, verdict=verdict, raw_mean=raw_mean
    )


def reference_tokens_to(runs: dict, loss: float) -> float:
    """Fraction of the budget at which the reference's seed-mean EWA curve first reaches ``loss``.

    NaN when the reference never gets there or has no runs. Linear interpolation
    between the reference's eval points, on the tokens every reference seed covers.
    """
    import numpy as np

    ref = runs.get(REFERENCE)
    if not ref:
        return math.nan
    curves = [
        (np.array([e[0] for e in r["evals"]], float), np.array([e[1] for e in r["evals"]]))
        for r in ref.values()
    ]
    grid_G, mean_G, _, _ = plots.mean_curve(curves)
    below = np.nonzero(mean_G <= loss)[0]
    if len(below) == 0:
        return math.nan
    i = below[0]
    if i == 0:
        return float(grid_G[0])
    x0, x1, y0, y1 = grid_G[i - 1], grid_G[i], mean_G[i - 1], mean_G[i]
    return float(x0 + (x1 - x0) * (y0 - loss) / (y0 - y1))


def _path(run: dict, budget_tokens: int) -> str:
    if not run["switches"]:
        return str(run["batch"][0][1]) if run["batch"] else "?"
    first = run["switches"][0]["old"]
    hops = [f"{s['new']}@{100 * s['tokens'] / budget_tokens:.0f}%" for s in run["switches"]]
    return " → ".join([str(first)] + hops)


def write_report(
    workdir: Path,
    out: Path,
    *,
    arms: list[str],
    seeds: list[int],
    budget_examples: int,
    command: str,
) -> dict:
    """Write results.md, results.json and the PNGs under ``out``; return the numbers."""
    runs: dict[str, dict[int, dict]] = {}
    missing = []
    for arm in arms:
        for seed in seeds:
            run = read_run(workdir / f"{arm}_s{seed}")
            if run is None:
                missing.append(f"{arm}_s{seed}")
            else:
                runs.setdefault(arm, {})[seed] = run
    budget_tokens = budget_examples * 128
    rows = []
    for arm in arms:
        arm_runs = runs.get(arm, {})
        if not arm_runs:
            continue
        vals = list(arm_runs.values())
        loss = _mean_sd([r["final_ewa"] for r in vals])
        rows.append(
            dict(
                arm=arm,
                n=len(vals),
                loss=loss,
                raw=_mean_sd([r["final_raw"] for r in vals]),
                steps=_mean_sd([r["steps"] for r in vals]),
                tokens=_mean_sd([r["tokens"] for r in vals]),
                wall=_mean_sd([r["wall_s"] for r in vals]),
                switches=_mean_sd([len(r["switches"]) for r in vals]),
                branch_steps=_mean_sd([r["branch_steps"] for r in vals]),
                branch_tokens=_mean_sd([r["branch_tokens"] for r in vals]),
                paths={s: _path(r, budget_tokens) for s, r in sorted(arm_runs.items())},
                pair=paired(runs, arm, seeds) if REFERENCE in runs else None,
                ref_tokens=reference_tokens_to(runs, loss[0]) / budget_tokens,
            )
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(_markdown(rows, missing, seeds, budget_examples, command))
    data = dict(
        budget_examples=budget_examples,
        budget_tokens=budget_tokens,
        seeds=seeds,
        missing=missing,
        arms={
            r["arm"]: dict(
                final_ewa_mean=r["loss"][0],
                final_ewa_sd=r["loss"][1],
                paired_delta=r["pair"] and {k: v for k, v in r["pair"].items() if k != "deltas"},
                reference_budget_fraction=r["ref_tokens"],
            )
            for r in rows
        },
        runs={
            arm: {
                str(s): {k: v for k, v in r.items() if k not in ("evals", "batch")}
                for s, r in by_seed.items()
            }
            for arm, by_seed in runs.items()
        },
    )
    (out / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    plots.loss_vs_tokens(runs, out / "loss_vs_tokens.png", budget_tokens)
    plots.batch_vs_tokens(runs, out / "batch_vs_tokens.png", budget_tokens)
    plots.steps_vs_loss(runs, out / "steps_vs_loss.png")
    return data


def _markdown(
    rows: list[dict], missing: list[str], seeds: list[int], budget_examples: int, command: str
) -> str:
    ref_sd = next((r["loss"][1] for r in rows if r["arm"] == REFERENCE), math.nan)
    lines = ["# Batch-size policies at an equal token budget (tiny model, embedded corpus)", ""]
    if missing:
        lines += [
            f"**PARTIAL**: {len(missing)} run(s) missing: {', '.join(missing)}. Finish with "
            f"the command below (finished runs are skipped).",
            "",
        ]
    lines += [
        f"Budget: {budget_examples} sequences x 128 tokens = {budget_examples * 128:,} tokens "
        f"per run; seeds {seeds} (model init and data order). Command: `{command}`",
        "",
        "Final EWA eval loss is measured on the final state of each run (same 4 x 32 "
        "validation sequences for every run). Steps are optimizer steps of the main run; "
        "the probe's branch steps and tokens are extra compute, listed apart. Wall time is "
        "on a 2-core CPU shared with other jobs: compare it only roughly.",
        "",
        "| policy | runs | final EWA eval loss | raw eval loss | steps | tokens | wall s | "
        "switches | branch steps / tokens | batch path (seed: sizes @ % of budget) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: r["loss"][0]):
        branch = (
            "-"
            if not r["branch_steps"][0]
            else f"{r['branch_steps'][0]:.0f} / {r['branch_tokens'][0]:,.0f}"
        )
        paths = "; ".join(f"s{s}: {p}" for s, p in r["paths"].items())
        lines.append(
            f"| {r['arm']} | {r['n']} | {_fmt(*r['loss'])} | {_fmt(*r['raw'])} | "
            f"{_fmt(*r['steps'], 0)} | {r['tokens'][0]:,.0f} | {_fmt(*r['wall'], 0)} | "
            f"{_fmt(*r['switches'], 1)} | {branch} | {paths} |"
        )
    lines += [
        "",
        f"## Paired against {REFERENCE} (same seeds)",
        "",
        "Δ = policy minus const_small in final EWA eval loss, per seed (both runs of a pair "
        "share model init and data order). Verdict: better/worse when every seed's Δ has the "
        "same sign and a two-sided paired t-test gives p < 0.05; identical when every Δ is 0 "
        "(the policy never left B = 32). For scale, const_small's own seed-to-seed sd is "
        f"{ref_sd:.4f}. The last column is where const_small's seed-mean curve first reaches "
        "the policy's final loss, as a fraction of the budget (data efficiency).",
        "",
        "| policy | mean Δ | sd of Δ | per-seed Δ | paired t | p | verdict | "
        "const_small reaches it at | mean Δ, raw (non-EWA) eval loss |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: r["loss"][0]):
        p = r["pair"]
        if p is None:
            continue
        per_seed = ", ".join(f"s{s}: {d:+.4f}" for s, d in sorted(p["deltas"].items()))
        sd = "n/a" if math.isnan(p["sd"]) else f"{p['sd']:.4f}"
        t = "n/a" if math.isnan(p["t"]) else f"{p['t']:+.1f}"
        pv = "n/a" if math.isnan(p["p"]) else f"{p['p']:.2g}"
        reach = "n/a" if math.isnan(r["ref_tokens"]) else f"{100 * r['ref_tokens']:.0f}%"
        lines.append(
            f"| {r['arm']} | {p['mean']:+.4f} | {sd} | {per_seed} | {t} | {pv} | "
            f"{p['verdict']} | {reach} | {p['raw_mean']:+.4f} |"
        )
    lines += [
        "",
        "Plots: `loss_vs_tokens.png` (EWA eval loss against tokens, mean over seeds, "
        "band = min..max), `batch_vs_tokens.png` (batch size against tokens, every seed), "
        "`steps_vs_loss.png` (final loss against optimizer steps, every run).",
        "",
    ]
    return "\n".join(lines)
