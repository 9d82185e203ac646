"""The FSL against the exact linear-regression risk along training (constant and switched batches).

For several (a, b), FSL.from_linreg predicts the last iterate's excess risk of constant-lr SGD;
the ratio FSL / exact is reported along training for constant B = 1, constant B = 16 and a switch
1 -> 16 at 3/4 of the steps. An asymptotic equivalence shows as a bounded, flat ratio.
Writes results/fsl_vs_exact.{png,md,json}.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parser, write_results

from bsjax.theory.fsl_check import compare_fsl_exact
from bsjax.theory.linreg import LinRegProblem
from bsjax.theory.schedules import Schedule, Segment

PAIRS = [(2.0, 3.0), (2.0, 1.6), (1.5, 4.0), (3.0, 5.0)]


def main() -> None:
    args = parser(__doc__.split("\n")[0]).parse_args()
    n, lr = (5000, 0.2) if args.quick else (40000, 0.2)
    sw = 3 * n // 4
    scheds = [
        Schedule.constant(lr, 1, steps=n),
        Schedule.constant(lr, 16, steps=n),
        Schedule((Segment(sw, lr, 1), Segment(n - sw, lr, 16))),
    ]
    names = ["constant B=1", "constant B=16", f"switch 1->16 at {sw}"]
    fig, axes = plt.subplots(2, len(PAIRS), figsize=(4 * len(PAIRS), 6.5), sharex=True)
    rows, data = [], {"steps": n, "lr": lr, "pairs": []}
    for k, (a, b) in enumerate(PAIRS):
        problem = LinRegProblem(a=a, b=b, noise=1.0, dim=4000)
        cmp = compare_fsl_exact(problem, scheds, names, num_records=80)
        s = np.maximum(cmp.steps_R, 1)
        for g, name in enumerate(names):
            line = axes[0, k].loglog(s, cmp.exact_GR[g], "-", label=f"{name}")[0]
            axes[0, k].loglog(s, cmp.fsl_GR[g], "--", color=line.get_color())
            axes[1, k].semilogx(s[1:], cmp.ratio_GR[g, 1:], color=line.get_color())
            r = cmp.ratio_GR[g, 5:]
            rows.append(
                f"| {a} | {b} | {(b - 1) / a:.2f} | {name} | {r.min():.3f} | {r.max():.3f} | "
                f"{cmp.ratio_GR[g, -1]:.3f} |"
            )
        axes[0, k].set_title(
            f"a={a}, b={b} (s={(b - 1) / a:.2f}, beta={a}); dashed: FSL", fontsize=9
        )
        axes[1, k].set_xlabel("steps")
        axes[1, k].axhline(1.0, color="k", lw=0.8)
        for ax in axes[:, k]:
            ax.grid(True, which="both", alpha=0.3)
        data["pairs"].append({"a": a, "b": b, **cmp.to_json()})
    axes[0, 0].set_ylabel("excess risk (last iterate)")
    axes[1, 0].set_ylabel("FSL / exact")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "fsl_vs_exact.png", dpi=110)
    plt.close(fig)
    md = [
        "# FSL against the exact linear-regression risk",
        "",
        f"Constant lr {lr}, {n} steps, dim 4000, sigma^2 = 1; FSL matched by FSL.from_linreg "
        "(s = (b-1)/a, beta = a, power-law prefactors from the spectrum, offsets fitting e(0) and "
        "the integral of K). Ratio FSL / exact after the first few records:",
        "",
        "| a | b | s | schedule | ratio min | ratio max | final ratio |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "The ratio stays within a constant band and is flat within each phase: the FSL is "
        "asymptotically equivalent to the exact risk up to constants. Below 1 at B = 1 because the "
        "FSL multiplies the noise by the signal e(z) + sigma^2 where the exact recursion has the "
        "full risk m(z) + sigma^2 (a first-order approximation) and uses the continuous-time "
        "kernel (no lr^2 lambda^2 term); both matter most at B = 1. Above 1 for a = 2, b = 1.6: "
        "with b close to 1 the power-law e(t) keeps the tail beyond dim 4000 that the exact, "
        "finite problem does not have.",
    ]
    write_results(args.out, "fsl_vs_exact", "\n".join(md), data)


if __name__ == "__main__":
    main()
