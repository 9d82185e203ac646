"""Exponent of the critical batch size against data size for several (a, b) (Corollary 6).

For each (a, b): B*(D) on the exact risk of averaged mini-batch SGD (bsjax.theory.cbs_scaling),
D = 2^10 .. 2^18, risk factor 2; the fitted slope against 1 - a / min(b, 2a + 1).
Writes results/cbs_exponent_table.{png,md,json}.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parser, write_results

from bsjax.theory import plots
from bsjax.theory.cbs_scaling import cbs_scaling

PAIRS = [
    (1.5, 2.5),
    (2.0, 2.4),
    (2.0, 3.0),
    (2.5, 4.0),
    (3.0, 4.0),
    (1.5, 5.0),
    (2.0, 6.0),
    (3.0, 9.0),
    (1.3, 2.0),
    (3.0, 2.0),
]


def comparison_cells(res) -> str:
    """The predicted / measured / error cells of one (a, b) row.

    For b > a: the exponent of Corollary 6, the fitted log-log slope and their difference. For
    b <= a the corollary predicts no growth (a plateau), so the fitted slope is not an exponent:
    the row gives the plateau test's verdict and the slope as a finite-size drift with its 95%
    interval (the comparison `bsjax theory cbs-exponent` makes).
    """
    if res.plateau is None:
        err = abs(res.measured_exponent - res.predicted_exponent)
        return f"{res.predicted_exponent:.3f} | {res.measured_exponent:.3f} | {err:.3f}"
    test = res.plateau
    ci = (
        ""
        if test.slope_ci95 is None
        else f" [{test.slope_ci95[0]:+.3f}, {test.slope_ci95[1]:+.3f}]"
    )
    verdict = "consistent" if test.consistent else "not consistent"
    return (
        f"plateau (B* = O(1)) | plateau test: {verdict}, B* max/min x{test.ratio:.2f} "
        f"(band x{test.band:.2f}); drift {test.slope:+.3f}{ci} | –"
    )


def main() -> None:
    args = parser(__doc__.split("\n")[0]).parse_args()
    sizes = [2**k for k in (range(8, 13, 2) if args.quick else range(10, 19, 2))]
    rows, results, data = [], [], {"data_sizes": sizes, "pairs": []}
    for a, b in PAIRS:
        t0 = time.perf_counter()
        dim = 512 if b <= a else None
        res = cbs_scaling(a, b, data_sizes=sizes, dim=dim)
        secs = time.perf_counter() - t0
        bstar = np.array([p.critical_batch_size for p in res.points])
        local = np.diff(np.log(bstar)) / np.diff(np.log(sizes))
        rows.append(
            f"| {a:g} | {b:g} | {res.dim} | {comparison_cells(res)} | "
            f"{', '.join(f'{x:.3f}' for x in local)} | "
            f"{', '.join(f'{x:.0f}' for x in bstar)} | "
            f"{', '.join(str(p.optimal_batch) for p in res.points)} | {secs:.0f} |"
        )
        data["pairs"].append({**res.to_json(), "local_exponents": local.tolist(), "seconds": secs})
        if b > a:
            results.append(res)
    plots.plot_cbs_scaling(results, args.out / "cbs_exponent_table.png")
    md = [
        "# CBS exponent against Corollary 6 (exact linear-regression risk)",
        "",
        f"D = {sizes[0]} .. {sizes[-1]} (x4), B* = largest batch with best risk within x2 of the "
        "optimum (lr searched up to min(stability, 1/lambda_1)), averaged iterate, sigma^2 = 1.",
        "",
        "| a | b | dim | predicted | measured (b > a: slope; b <= a: plateau test) | abs err | "
        "local slopes | B*(D) | risk-optimal B* | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "(*) smallest batch visited whose best risk is within 0.5% of the optimum; the descent "
        "from D/2 stops after three flat halvings, so for b > a the flat region reaches below it.",
        "",
        "For b <= a Corollary 6 gives B* = O(1) (no growth with D): the row reports the plateau "
        "test (max/min of B* over the D range within the batch grid's resolution, slope "
        "indistinguishable from 0) and the fitted slope only as a finite-size drift, not as an "
        "exponent; the risk-optimal batch column is the other check there.",
    ]
    write_results(args.out, "cbs_exponent_table", "\n".join(md), data)


if __name__ == "__main__":
    main()
