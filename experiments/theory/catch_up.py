"""Fast catch-up after a small-to-large batch switch, and its dependence on (s, beta).

FSL: batch 1 -> 16 at lr 0.1; for several (s, beta), the relative loss gap to the constant-16
curve after a switch at 1e5 steps, the gap's decay exponent against -(1 - 1/beta), and the
catch-up time (gap < 5%) at switch steps 1e4..1e7 with its growth exponent against
s / (1 - 1/beta) (derived in bsjax.theory.catchup; valid while the large-batch loss is
signal-dominated). Exact linear regression (a = 2, b = 1.6): the same gap on the exact risk.
Writes results/catch_up.{png,md,json}.
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

from bsjax.theory.catchup import catch_up, catch_up_scaling, exact_loss_fn
from bsjax.theory.fsl import FSL
from bsjax.theory.linreg import LinRegProblem

TASKS = [(0.1, 2.0), (0.3, 2.0), (0.45, 2.0), (0.8, 2.0), (0.2, 3.0), (0.3, 1.5), (0.1, 1.3)]


def main() -> None:
    args = parser(__doc__.split("\n")[0]).parse_args()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.4))
    switch_steps = [10**4, 10**5, 10**6] if args.quick else [10**4, 10**5, 10**6, 10**7]
    rows, data = [], {"fsl": [], "switch_steps": switch_steps}
    for s, beta in TASKS:
        fsl = FSL(s, beta)
        cu = catch_up(fsl, lr=0.1, batch_small=1, batch_large=16, switch_step=10**5)
        sc = catch_up_scaling(fsl, lr=0.1, batch_small=1, batch_large=16, switch_steps=switch_steps)
        ax0.loglog(
            cu.steps_after_R,
            np.maximum(cu.relative_gap_R, 1e-9),
            label=f"s={s}, beta={beta} ({fsl.task_class})",
        )
        tc = [r.catch_up_steps for r in sc.runs]
        frac = ["-" if t is None else f"{t / r.switch_step:.3g}" for t, r in zip(tc, sc.runs)]
        meas = "-" if sc.measured_exponent is None else f"{sc.measured_exponent:.3f}"
        rows.append(
            f"| {s} | {beta} | {fsl.task_class} | {cu.decay_exponent:.3f} | {cu.predicted_decay_exponent:.3f} | "
            f"{' / '.join(frac)} | {meas} | {sc.predicted_exponent:.3f} |"
        )
        data["fsl"].append(
            {
                "s": s,
                "beta": beta,
                "class": fsl.task_class,
                "decay_exponent": cu.decay_exponent,
                "predicted_decay_exponent": cu.predicted_decay_exponent,
                "catch_up_steps": tc,
                "catch_up_exponent": sc.measured_exponent,
                "predicted_catch_up_exponent": sc.predicted_exponent,
            }
        )
    ax0.axhline(0.05, color="k", ls="--", lw=1)
    ax0.set_xlabel("steps since the switch (switch at 1e5, lr 0.1)")
    ax0.set_ylabel("relative gap to constant B=16")
    ax0.set_title("FSL catch-up, batch 1 -> 16")
    ax0.legend(fontsize=7)
    ax0.grid(True, which="both", alpha=0.3)

    problem = LinRegProblem(a=2.0, b=1.6, noise=1.0, dim=2000)
    n1 = 5000 if args.quick else 20000
    exact = catch_up(exact_loss_fn(problem), lr=0.2, batch_small=1, batch_large=16, switch_step=n1)
    fsl_m = catch_up(
        FSL.from_linreg(problem), lr=0.2, batch_small=1, batch_large=16, switch_step=n1
    )
    for cu, name in ((exact, "exact risk"), (fsl_m, "matched FSL")):
        ax1.loglog(
            cu.steps_after_R,
            np.maximum(cu.relative_gap_R, 1e-9),
            label=f"{name}: decay {cu.decay_exponent:.3f}, catch-up {cu.catch_up_steps:.0f} steps",
        )
    ax1.axhline(0.05, color="k", ls="--", lw=1)
    ax1.set_xlabel(f"steps since the switch (switch at {n1}, lr 0.2)")
    ax1.set_ylabel("relative gap to constant B=16")
    ax1.set_title("linear regression a=2, b=1.6 (s=0.3, beta=2)")
    ax1.legend(fontsize=7)
    ax1.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "catch_up.png", dpi=120)
    plt.close(fig)
    data["exact"] = {
        "a": 2.0,
        "b": 1.6,
        "dim": 2000,
        "switch_step": n1,
        "exact_decay_exponent": exact.decay_exponent,
        "exact_catch_up_steps": exact.catch_up_steps,
        "fsl_decay_exponent": fsl_m.decay_exponent,
        "fsl_catch_up_steps": fsl_m.catch_up_steps,
        "predicted_decay_exponent": -(1 - 1 / 2.0),
    }
    md = [
        "# Fast catch-up after a small-to-large batch switch",
        "",
        "FSL, batch 1 -> 16, lr 0.1. Gap decay exponent fitted over 1e-3..3e-2 of the switch step "
        "(switch at 1e5); catch-up = relative gap below 5%, shown as a fraction of the switch step "
        f"for switch steps {', '.join(f'{n:.0e}' for n in switch_steps)} ('-': not within as many steps again).",
        "",
        "| s | beta | class | gap decay | -(1-1/beta) | catch-up / switch step | tau_c exponent | s/(1-1/beta) |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Reading: the gap decays as the forgetting kernel's tail, tau^-(1-1/beta), for every task "
        "(close for beta >= 2; steeper than predicted at beta <= 1.5, where the kernel's offset "
        "still matters). The catch-up time follows tau_c ~ t_s^(s/(1-1/beta)) where the large-batch "
        "loss is signal-dominated and the task is clearly hard (compare the last two columns); "
        "near the boundary, at small beta, and for easy tasks (whose large-batch loss sits on its "
        "noise floor) the measured growth departs from that law. Larger beta and smaller s give "
        "the fastest catch-up relative to the switch time.",
        "",
        f"Exact linear regression (a=2, b=1.6, dim 2000), switch at {n1} steps, lr 0.2: gap decay "
        f"{exact.decay_exponent:.3f} (FSL {fsl_m.decay_exponent:.3f}, predicted -0.5); catch-up "
        f"after {exact.catch_up_steps:.0f} steps (FSL {fsl_m.catch_up_steps:.0f}).",
    ]
    write_results(args.out, "catch_up", "\n".join(md), data)


if __name__ == "__main__":
    main()
