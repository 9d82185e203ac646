"""Read the comparison's run folders and write results.md, results.json and the plots.

One run folder per (arm, seed), written by ``bsjax train``: summary.json (final
losses: the loop evaluates the final state when it stops at its token limit)
and metrics.jsonl (eval, train and switch lines). Arms are compared seed by
seed: both runs of a pair share the model init and the data order, so the
per-seed difference of final EWA eval loss cancels much of the seed noise; its
mean gets a 95% t-interval over seeds.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FINDINGS = HERE.parent / "findings"
for path in (HERE, FINDINGS):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import plots  # noqa: E402
import runs as runs_lib  # noqa: E402

REFERENCE = "const_small"
CLAIM_ARMS = ("const_small", "const_large", "early_switch")  # late_switch against each


class UnequalTokensError(AssertionError):
    """A fixed-schedule arm did not consume exactly the budget, or an adaptive one overshot."""


def read_run(workdir: Path) -> dict | None:
    """One finished run's numbers and curves; None when it is missing or unfinished."""
    if not runs_lib.is_finished(workdir):
        return None
    summary = runs_lib.read_summary(workdir)
    metrics = runs_lib.read_metrics(workdir)
    evals = [
        (r["tokens"], r["ewa_eval_loss"], r["eval_loss"], r["step"])
        for r in metrics.get("eval", [])
    ]
    batch = [(r["tokens"], r["batch_size"]) for r in metrics.get("train", [])]
    switches = [
        dict(tokens=r["tokens"], step=r["step"], old=r["old_batch_size"], new=r["new_batch_size"])
        for r in metrics.get("switch", [])
    ]
    policy = summary.get("policy", {}) or {}
    return dict(
        status=summary["status"],
        steps=summary["steps"],
        tokens=summary["tokens"],
        wall_s=summary["wall_s"],
        final_ewa=summary["final_ewa_eval_loss"],
        final_raw=summary["final_eval_loss"],
        branch_tokens=float(policy.get("branch_tokens", 0.0) or 0.0),
        evals=evals,
        batch=batch,
        switches=switches,
    )


def read_runs(workdir: Path, arms, seeds) -> dict:
    """``{arm: {seed: run}}`` of every finished run."""
    out = {}
    for arm in arms:
        by_seed = {s: r for s in seeds if (r := read_run(workdir / f"{arm}_s{s}")) is not None}
        if by_seed:
            out[arm] = by_seed
    return out


def check_tokens(runs: dict, budget_tokens: int, large_tokens: int, fixed_arms) -> dict:
    """Tokens over the budget per arm; raises when a fixed arm is off it or any run overshoots
    by a large batch or more (the comparison would no longer be at equal tokens)."""
    over = {}
    for arm, by_seed in runs.items():
        for seed, run in by_seed.items():
            extra = run["tokens"] - budget_tokens
            if run["status"] != "max_tokens":
                raise UnequalTokensError(f"{arm}_s{seed}: stopped with status {run['status']!r}")
            if (arm in fixed_arms and extra != 0) or not 0 <= extra < large_tokens:
                raise UnequalTokensError(
                    f"{arm}_s{seed}: consumed {run['tokens']:,} tokens, budget {budget_tokens:,}"
                )
            over[arm] = max(over.get(arm, 0), extra)
    return over


def t_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and two-sided 95% t-interval over ``values`` (nan bounds for fewer than 2)."""
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def paired(runs: dict, arm: str, other: str, key: str = "final_ewa") -> dict | None:
    """Per-seed ``arm - other`` of ``key`` over the seeds both have, with a 95% t-interval."""
    seeds = sorted(set(runs.get(arm, {})) & set(runs.get(other, {})))
    if not seeds:
        return None
    deltas = [runs[arm][s][key] - runs[other][s][key] for s in seeds]
    mean, lo, hi = t_interval(deltas)
    if math.isnan(lo):
        verdict = "one seed"
    elif hi < 0:
        verdict = "lower"
    elif lo > 0:
        verdict = "higher"
    else:
        verdict = "within noise"
    return dict(seeds=seeds, deltas=deltas, mean=mean, lo=lo, hi=hi, verdict=verdict)


def claim_verdict(comparisons: dict) -> str:
    """'held', 'not held' or 'inconclusive' for late_switch <= each of CLAIM_ARMS."""
    found = [c for c in comparisons.values() if c is not None]
    if len(found) < len(CLAIM_ARMS):
        return "inconclusive (arms missing)"
    if any(c["verdict"] == "higher" for c in found):
        return "not held"
    if all(c["verdict"] == "lower" for c in found):
        return "held"
    return "inconclusive"


def _path(run: dict, budget_tokens: int) -> str:
    start = run["batch"][0][1] if run["batch"] else "?"
    hops = [f"{s['new']}@{100 * s['tokens'] / budget_tokens:.0f}%" for s in run["switches"]]
    return " ".join([str(start)] + hops)


def _ci(c: dict | None, digits: int = 4) -> str:
    if c is None:
        return "n/a"
    if math.isnan(c["lo"]):
        return f"{c['mean']:+.{digits}f}"
    return f"{c['mean']:+.{digits}f} [{c['lo']:+.{digits}f}, {c['hi']:+.{digits}f}]"


def write_report(
    workdir, out, *, arms, seeds, budget_tokens, large_tokens, fixed_arms, settings, command
):
    """Write results.md, results.json and the PNGs for the runs found under ``workdir``."""
    runs = read_runs(Path(workdir), arms, seeds)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not runs:
        print(f"no finished runs under {workdir}; nothing to report")
        return None
    over = check_tokens(runs, budget_tokens, large_tokens, fixed_arms)
    table = {}
    for arm, by_seed in runs.items():
        finals = [r["final_ewa"] for r in by_seed.values()]
        mean, lo, hi = t_interval(finals)
        table[arm] = dict(
            seeds=sorted(by_seed),
            final_ewa=dict(
                mean=mean, lo=lo, hi=hi, values={s: r["final_ewa"] for s, r in by_seed.items()}
            ),
            final_raw=statistics.fmean(r["final_raw"] for r in by_seed.values()),
            steps=statistics.fmean(r["steps"] for r in by_seed.values()),
            wall_s=statistics.fmean(r["wall_s"] for r in by_seed.values()),
            tokens_over=over.get(arm, 0),
            branch_tokens=statistics.fmean(r["branch_tokens"] for r in by_seed.values()),
            vs_small=paired(runs, arm, REFERENCE) if arm != REFERENCE else None,
            vs_small_raw=paired(runs, arm, REFERENCE, "final_raw") if arm != REFERENCE else None,
            path={s: _path(r, budget_tokens) for s, r in by_seed.items()},
        )
    claim = {other: paired(runs, "late_switch", other) for other in CLAIM_ARMS}
    verdict = claim_verdict(claim)
    plots.loss_vs_tokens(runs, out / "loss_vs_tokens.png", budget_tokens)
    plots.batch_vs_tokens(runs, out / "batch_vs_tokens.png", budget_tokens)
    result = dict(
        settings=settings,
        budget_tokens=budget_tokens,
        command=command,
        arms=table,
        claim=dict(comparisons=claim, verdict=verdict),
    )
    (out / "results.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (out / "results.md").write_text(_markdown(result))
    print(f"wrote {out / 'results.md'}: late switch claim {verdict}")
    return result


def _markdown(result: dict) -> str:
    s = result["settings"]
    lines = [
        "# Policy comparison: results",
        "",
        f"Budget {result['budget_tokens']:,} tokens per arm ({s['budget_examples']:,} sequences "
        f"of {s['ctx']}); start B = {s['small']}, large B = {s['large']}; EWA half-life "
        f"{s['ewa_half_life_tokens']:,} tokens in every arm. Command: `{result['command']}`",
        "",
        "Final EWA eval loss, mean and 95% t-interval over seeds; Δ = arm − const_small, paired "
        "by seed, with its 95% t-interval (negative: the arm is better).",
        "",
        "| arm | seeds | final EWA eval loss | Δ EWA vs const_small | Δ raw eval loss | steps | "
        "tokens over budget | probe branch tokens | batch path (seed 0 or first) | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = sorted(result["arms"].items(), key=lambda kv: kv[1]["final_ewa"]["mean"])
    for arm, row in order:
        f = row["final_ewa"]
        ci = f"{f['mean']:.4f}" + (
            "" if math.isnan(f["lo"]) else f" [{f['lo']:.4f}, {f['hi']:.4f}]"
        )
        path = next(iter(row["path"].values()))
        lines.append(
            f"| {arm} | {len(row['seeds'])} | {ci} | {_ci(row['vs_small'])} | {_ci(row['vs_small_raw'])} "
            f"| {row['steps']:.0f} | {row['tokens_over']:,} | {row['branch_tokens']:,.0f} | {path} "
            f"| {row['wall_s']:.0f} |"
        )
    claim = result["claim"]
    lines += [
        "",
        f"**Claim: late switch ≥ constant and ≥ early switch at equal tokens — {claim['verdict']}.**",
        "",
        "| late_switch minus | per-seed Δ | mean Δ [95% t-interval] | verdict |",
        "|---|---|---|---|",
    ]
    for other, c in claim["comparisons"].items():
        if c is None:
            lines.append(f"| {other} | – | n/a | missing |")
            continue
        per_seed = ", ".join(f"{d:+.4f}" for d in c["deltas"])
        lines.append(f"| {other} | {per_seed} | {_ci(c)} | late switch {c['verdict']} |")
    lines += [
        "",
        f"Late switch at {s['fsl_switch_examples']:,} sequences "
        f"({s['fsl_switch_examples'] / s['budget_examples']:.1%} of the budget): the fsl policy's "
        f"{s['fsl_switch_examples_unrounded']:,} rounded to whole large batches "
        f"(s = {s['fsl_s']}, beta = {s['fsl_beta']}). "
        f"Early switch at {s['early_fraction']:.0%} of the budget. wsd_es targets: "
        f"`{s['wsd_targets'] or 'none'}`.",
        "",
    ]
    return "\n".join(lines)
