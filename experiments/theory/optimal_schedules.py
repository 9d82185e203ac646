"""FSL-optimal batch-size schedules under a fixed data budget: an easy and a hard task.

Continuous b(t) and piecewise-constant over power-of-two buckets (exact budget), against the best
constant batch; and the measured class (share of training at the smallest batch) across s at
beta = 2 for growing D, which flips at the boundary s = 1 - 1/beta = 0.5.
Writes results/optimal_schedules.{png,md,json}.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parser, write_results

from bsjax.theory.fsl import FSL
from bsjax.theory.optimal import optimal_bucket_schedule, optimal_continuous_schedule
from bsjax.theory.schedules import Schedule

LR = 0.1
BUCKETS = [2**k for k in range(11)]


def main() -> None:
    args = parser(__doc__.split("\n")[0]).parse_args()
    D = 10**6 if args.quick else 10**8
    tasks = {"hard (s=0.2, beta=2)": FSL(0.2, 2.0), "easy (s=1.0, beta=2)": FSL(1.0, 2.0)}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    rows, data = [], {"data_size": D, "lr": LR, "tasks": {}}
    for ax, (name, fsl) in zip(axes, tasks.items()):
        cont = optimal_continuous_schedule(fsl, lr=LR, data_size=D)
        buck = optimal_bucket_schedule(fsl, lr=LR, data_size=D, buckets=BUCKETS)
        consts = {b: fsl.final_loss(Schedule.constant(LR, b, examples=D)) for b in BUCKETS}
        b_best = min(consts, key=consts.get)
        ax.semilogy(cont.examples_N / D, cont.batch_N, label=f"continuous, loss {cont.loss:.4g}")
        x, y, used = [], [], 0
        for seg in buck.schedule.segments:
            x += [used / D, (used + seg.steps * seg.batch) / D]
            y += [seg.batch] * 2
            used += seg.steps * seg.batch
        ax.semilogy(x, y, label=f"buckets, loss {buck.loss:.4g}")
        ax.axhline(
            b_best,
            color="gray",
            ls=":",
            label=f"best constant B={b_best}, loss {consts[b_best]:.4g}",
        )
        ax.set_title(f"{name}: {fsl.task_class} / by shape {cont.measured_class}")
        ax.set_xlabel("fraction of the data budget used")
        ax.set_ylabel("batch size")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        rows.append(
            f"| {name} | {fsl.task_class} | {cont.measured_class} | {cont.fraction_at_min:.3f} | "
            f"{cont.loss:.4g} | {buck.loss:.4g} | {buck.schedule.num_examples == D} | "
            f"{b_best} | {consts[b_best]:.4g} |"
        )
        data["tasks"][name] = {
            "continuous_loss": cont.loss,
            "fraction_at_min": cont.fraction_at_min,
            "bucket": buck.to_json(),
            "constant_losses": consts,
        }
    fig.suptitle(f"FSL-optimal batch schedules, D = {D:.0e} examples, lr = {LR}")
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "optimal_schedules.png", dpi=120)
    plt.close(fig)

    # measured class across the boundary
    s_grid = [0.3, 0.4, 0.45, 0.55, 0.6, 0.7]
    Ds = [10**6, 10**8, 10**10] if not args.quick else [10**6, 10**8]
    frac = {
        s: [
            optimal_continuous_schedule(FSL(s, 2.0), lr=LR, data_size=d).fraction_at_min for d in Ds
        ]
        for s in s_grid
    }
    data["fraction_at_min_vs_s"] = {"data_sizes": Ds, "s": s_grid, "fraction": frac}
    md = [
        "# FSL-optimal batch schedules under a data budget",
        "",
        f"D = {D:.0e} examples, lr = {LR}, buckets 1..1024 (powers of 2), smallest batch 1.",
        "",
        "| task | predicted class | class by shape | time at smallest batch | continuous loss | "
        "bucket loss | budget exact | best constant B | its loss |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Share of training (intrinsic time) at the smallest batch, beta = 2 (boundary s = 0.5):",
        "",
        "| s | " + " | ".join(f"D={d:.0e}" for d in Ds) + " |",
        "|---|" + "---|" * len(Ds),
        *[f"| {s} | " + " | ".join(f"{x:.3f}" for x in frac[s]) + " |" for s in s_grid],
        "",
        "Hard tasks (s < 0.5) spend a growing share at the smallest batch as D grows; easy tasks "
        "never touch it.",
    ]
    write_results(args.out, "optimal_schedules", "\n".join(md), data)


if __name__ == "__main__":
    main()
