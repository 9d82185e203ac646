"""Finding (c): a late small-to-large switch at equal tokens, and the catch-up after it.

Wang et al. 2026 (batch-size scheduling via functional scaling laws; docs/science.md
section 4): on a hard task the best schedule trains at the small batch and
switches late; after a small-to-large switch the loss rejoins the
constant-large-batch curve quickly ("fast catch-up"), so a late switch beats
both the constant batch and an early switch at equal tokens.

The miniature reuses the policy comparison's fixed arms
(``experiments/policies/compare.py``: the demo model, B = 4 -> 16, 2.0M tokens,
the same run folders): constant 4, constant 16, switch at 10% and the fsl
policy's switch point (74%). Catch-up is measured as in the theory
(``bsjax theory catch-up``): at equal optimizer steps against a constant
B = 16 run, which for the late switch means a longer B = 16 run
(``const_large_long``: the late switch's step count, 3.2x the tokens).

  nice -n 19 .venv/bin/python experiments/findings/late_switch.py          # CPU, ~20 min
  .venv/bin/python experiments/findings/late_switch.py --small             # pipeline check
  .venv/bin/python experiments/findings/late_switch.py --large             # 4x the budget

Writes late_switch.png and late_switch.md next to this file (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
POLICIES = HERE.parent / "policies"
for path in (HERE, POLICIES):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import compare  # noqa: E402
import runs as runs_lib  # noqa: E402
import summarize  # noqa: E402

ARMS = ("const_small", "const_large", "early_switch", "late_switch")
CATCH_UP_TOLERANCE = 0.01  # gap below 1% of the constant-large loss


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--small", action="store_true", help="a tiny budget: checks the pipeline only")
    g.add_argument("--large", "--gpu", action="store_true", help="4x the budget, 5 seeds")
    p.add_argument("--seeds", type=int, nargs="+", default=None)
    p.add_argument("--long-seeds", type=int, default=1, help="seeds of the long B = 16 run")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=HERE)
    args = p.parse_args(argv)
    args.mode = "small" if args.small else "large" if args.large else "cpu"
    if args.seeds is None:
        args.seeds = {"small": [0], "cpu": [0, 1, 2], "large": [0, 1, 2, 3, 4]}[args.mode]
    if not 1 <= args.long_seeds <= len(args.seeds):
        raise SystemExit(
            f"--long-seeds={args.long_seeds}: must be 1..{len(args.seeds)} (the seeds)"
        )
    if args.workdir is None:
        name = "policy_compare" + ("" if args.mode == "cpu" else f"_{args.mode}")
        args.workdir = runs_lib.REPO / "runs" / name
    return args


def compare_args(args) -> argparse.Namespace:
    argv = ["--arms", *ARMS, "--seeds", *map(str, args.seeds), "--workdir", str(args.workdir)]
    if args.small:
        argv.append("--small")
    if args.large:
        argv += ["--budget-examples", str(4 * compare.BUDGET_EXAMPLES)]
    return compare.parse_args(argv)


def late_steps(budget_examples: int) -> int:
    switch, _ = compare.fsl_switch_examples(budget_examples)
    return switch // compare.SMALL + (budget_examples - switch) // compare.LARGE


def ensure_long_runs(cargs, seeds) -> None:
    """B = 16 for as many steps as the late switch takes (for catch-up at equal steps)."""
    steps = late_steps(cargs.budget_examples)
    for seed in seeds:
        run_dir = cargs.workdir / f"const_large_long_s{seed}"
        if runs_lib.is_finished(run_dir):
            continue
        values = compare.common_values(cargs.budget_examples, seed, cargs.eval_every)
        values["batch.batch_size"] = compare.LARGE
        values["train.max_tokens"] = steps * compare.LARGE * compare.CTX
        print(f"  const_large_long_s{seed}: B={compare.LARGE} for {steps} steps", flush=True)
        runs_lib.train(run_dir, values)


def gap_after_switch(run: dict, long_run: dict, key_index: int = 2):
    """(steps since the switch, loss gap to the constant-large run at equal steps) after
    the run's first switch; raw eval loss by default (index 2 of an eval tuple)."""
    import numpy as np

    if not run["switches"]:
        return np.array([]), np.array([])
    s0 = run["switches"][0]["step"]
    ls = np.array([e[3] for e in long_run["evals"]], float)
    ll = np.array([e[key_index] for e in long_run["evals"]])
    pts = [(e[3], e[key_index]) for e in run["evals"] if e[3] > s0 and e[3] <= ls[-1]]
    if not pts:
        return np.array([]), np.array([])
    steps = np.array([p[0] for p in pts], float)
    gaps = np.array([p[1] for p in pts]) - np.interp(steps, ls, ll)
    return steps - s0, gaps


def catch_up_steps(after, gaps, ref_losses) -> float:
    """First steps-since-switch where the gap is below the tolerance; nan if never."""
    for a, g, ref in zip(after, gaps, ref_losses):
        if g <= CATCH_UP_TOLERANCE * ref:
            return float(a)
    return math.nan


def plot(runs: dict, longs: dict, budget_tokens: int, path: Path) -> dict:
    """Three panels; returns the catch-up numbers per arm and seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    import plots

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    ax = axes[0]
    for arm in ARMS:
        if arm not in runs:
            continue
        curves = [
            (np.array([e[0] for e in r["evals"]], float), np.array([e[1] for e in r["evals"]]))
            for r in runs[arm].values()
        ]
        grid, mean, lo, hi = plots.mean_curve(curves)
        color, ls = plots._style(arm)
        ax.plot(grid / 1e6, mean, color=color, ls=ls, label=f"{arm} (n={len(curves)})")
        ax.fill_between(grid / 1e6, lo, hi, color=color, alpha=0.15, lw=0)
    ax.set_xlim(0.4 * budget_tokens / 1e6, budget_tokens / 1e6 * 1.02)
    ends = [r["final_ewa"] for by in runs.values() for r in by.values()]
    ax.set_ylim(min(ends) - 0.03, max(ends) + 0.15)
    ax.set(
        xlabel="tokens (M)", ylabel="EWA eval loss", title="equal tokens: EWA eval loss (last 60%)"
    )
    ax.legend(fontsize=8)

    catch = {}
    seed = min(longs)
    ax = axes[1]
    long_run = longs[seed]
    xs = [e[3] for e in long_run["evals"]]
    ax.plot(xs, [e[2] for e in long_run["evals"]], color="#d62728", label="const 16 (long)")
    for arm in ("early_switch", "late_switch", "const_small"):
        if arm in runs and seed in runs[arm]:
            r = runs[arm][seed]
            color, ls = plots._style(arm)
            ax.plot(
                [e[3] for e in r["evals"]],
                [e[2] for e in r["evals"]],
                color=color,
                ls=ls,
                label=arm,
            )
    ax.set(xlabel="optimizer steps", ylabel="raw eval loss", yscale="log")
    ax.set_title(f"equal steps (seed {seed}): catch-up after the switch")
    ax.set_ylim(None, 2.6)
    ax.legend(fontsize=8)

    ax = axes[2]
    for arm in ("early_switch", "late_switch"):
        for s, long_run in longs.items():
            if arm not in runs or s not in runs[arm]:
                continue
            after, gaps = gap_after_switch(runs[arm][s], long_run)
            if not len(after):
                continue
            ref = np.interp(
                after + runs[arm][s]["switches"][0]["step"],
                [e[3] for e in long_run["evals"]],
                [e[2] for e in long_run["evals"]],
            )
            catch[f"{arm}_s{s}"] = dict(
                switch_step=runs[arm][s]["switches"][0]["step"],
                gap_first=float(gaps[0]),
                gap_last=float(gaps[-1]),
                steps_after_last=float(after[-1]),
                catch_up_steps=catch_up_steps(after, gaps, ref),
            )
            color, ls = plots._style(arm)
            ax.plot(after, gaps, color=color, ls=ls, marker=".", label=f"{arm} s{s}")
    ax.axhline(0, color="gray", lw=0.8)
    ax.set(xlabel="steps since the switch", ylabel="raw eval loss minus const 16 (equal steps)")
    ax.set_xscale("log")
    ax.set_title("gap to the constant-large run after the switch")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return catch


def markdown(runs, claim, catch, cargs, command, minutes) -> str:
    budget = cargs.budget_examples * compare.CTX
    lines = [
        "# Finding (c): late switch and catch-up at equal tokens",
        "",
        f"Demo model, B = {compare.SMALL} -> {compare.LARGE}, {budget:,} tokens per arm, "
        f"seeds {cargs.seeds}. Command `{command}`; {minutes:.1f} min on this machine for the "
        "runs this call trained (runs shared with the policy comparison are reused).",
        "",
        "| arm | final EWA eval loss, mean [95% t-interval] | final raw eval loss (mean) | steps |",
        "|---|---|---|---|",
    ]
    for arm in ARMS:
        if arm not in runs:
            continue
        vals = [r["final_ewa"] for r in runs[arm].values()]
        m, lo, hi = summarize.t_interval(vals)
        raw = sum(r["final_raw"] for r in runs[arm].values()) / len(vals)
        steps = next(iter(runs[arm].values()))["steps"]
        ci = "" if math.isnan(lo) else f" [{lo:.4f}, {hi:.4f}]"
        lines.append(f"| {arm} | {m:.4f}{ci} | {raw:.4f} | {steps} |")
    lines += [
        "",
        "| claim (Wang et al. 2026) | paper | here (late_switch minus other, paired by seed) |",
        "|---|---|---|",
    ]
    for other, c in claim["comparisons"].items():
        if c is None:
            continue
        lines.append(
            f"| late switch beats {other} at equal tokens | yes (LLM runs up to 1.1B) | "
            f"{summarize._ci(c)}: late switch {c['verdict']} |"
        )
    lines.append(f"| overall: late >= constant and >= early | held | **{claim['verdict']}** |")
    lines += [
        "",
        f"Catch-up (raw eval loss against the constant B = {compare.LARGE} run at equal steps; "
        f"catch-up = first eval after the switch with a gap below {CATCH_UP_TOLERANCE:.0%}):",
        "",
        "| run | switch step | gap at first eval after | gap at last | steps after switch (last) | catch-up steps |",
        "|---|---|---|---|---|---|",
    ]
    for name, c in catch.items():
        cu = (
            "not within the run"
            if math.isnan(c["catch_up_steps"])
            else f"{c['catch_up_steps']:.0f}"
        )
        lines.append(
            f"| {name} | {c['switch_step']} | {c['gap_first']:+.4f} | {c['gap_last']:+.4f} | "
            f"{c['steps_after_last']:.0f} | {cu} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    """Train what is missing, then write the figure and the table."""
    args = parse_args(argv)
    cargs = compare_args(args)
    start = time.perf_counter()
    compare.ensure_runs(cargs)
    long_seeds = args.seeds[: args.long_seeds]
    ensure_long_runs(cargs, long_seeds)
    minutes = (time.perf_counter() - start) / 60
    runs = summarize.read_runs(cargs.workdir, ARMS, args.seeds)
    budget = cargs.budget_examples * compare.CTX
    summarize.check_tokens(runs, budget, compare.LARGE * compare.CTX, compare.FIXED_ARMS)
    longs = {s: summarize.read_run(cargs.workdir / f"const_large_long_s{s}") for s in long_seeds}
    claim_cmp = {o: summarize.paired(runs, "late_switch", o) for o in summarize.CLAIM_ARMS}
    claim = dict(comparisons=claim_cmp, verdict=summarize.claim_verdict(claim_cmp))
    suffix = "" if args.mode == "cpu" else f"_{args.mode}"
    args.out.mkdir(parents=True, exist_ok=True)
    catch = plot(runs, longs, budget, args.out / f"late_switch{suffix}.png")
    command = "nice -n 19 .venv/bin/python experiments/findings/late_switch.py" + (
        f" --{args.mode}" if args.mode != "cpu" else ""
    )
    (args.out / f"late_switch{suffix}.md").write_text(
        markdown(runs, claim, catch, cargs, command, minutes)
    )
    (args.out / f"late_switch{suffix}.json").write_text(
        json.dumps(dict(claim=claim, catch_up=catch, minutes=minutes), indent=1, default=str) + "\n"
    )
    print(f"wrote {args.out / f'late_switch{suffix}.md'}: claim {claim['verdict']}")
    return claim


if __name__ == "__main__":
    main()
