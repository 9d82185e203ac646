"""Coverage of fit-cbs's 95% intervals for B* on synthetic steps-to-target data of known B*.

Each replicate draws steps to target ``Y(B) = (a + b / B) * exp(sigma * z)`` at the demo's batch
sizes (2 to 64), with ``seeds`` runs per batch size, fits it with
:func:`bsjax.cbs.fits.fit_steps_curve` and checks whether the interval holds the true B*.
The truth is the demo's own fit (a = 94.6, b = 6,250 at B_opt = 8); sigma 0.04 is about the
scatter of its log steps. Prints one line per (interval kind, seeds, sigma):

    .venv/bin/python experiments/cbs/calibration.py [--replicates 400] [--bootstrap 400]

With 400 replicates the binomial standard error of a 95% coverage is 1.1 points.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from bsjax.cbs.fits import CbsFitWarning, critical_batch_size, fit_steps_curve

BATCH_SIZES = np.array([2, 4, 8, 16, 32, 64], dtype=float)
A_TRUE, B_TRUE, B_OPT = 94.6, 6250.0, 8.0


def coverage(
    *, seeds: int, sigma: float, interval: str, replicates: int, bootstrap: int, seed: int = 0
) -> tuple[float, float]:
    """(fraction of replicates whose interval holds the true B*, median relative width)."""
    truth = critical_batch_size(A_TRUE, B_TRUE, 1.0, B_OPT, 0.2)
    rng = np.random.default_rng(seed)
    sizes = np.repeat(BATCH_SIZES, seeds)
    labels = np.tile(np.arange(seeds), BATCH_SIZES.size)
    hits, widths = 0, []
    for r in range(replicates):
        steps = (A_TRUE + B_TRUE / sizes) * np.exp(sigma * rng.standard_normal(sizes.size))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CbsFitWarning)
            fit = fit_steps_curve(
                sizes,
                steps,
                seeds=labels,
                b_opt=B_OPT,
                bootstrap=bootstrap,
                seed=seed * 100_003 + r,
                interval=interval,
            )
        ci = fit.ci["critical_batch_size"]
        hits += ci.low <= truth <= ci.high
        widths.append((ci.high - ci.low) / fit.critical_batch_size)
    return hits / replicates, float(np.sort(widths)[len(widths) // 2])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--replicates", type=int, default=400)
    p.add_argument("--bootstrap", type=int, default=400)
    args = p.parse_args()
    print(f"true B* = {critical_batch_size(A_TRUE, B_TRUE, 1.0, B_OPT, 0.2):.4g}")
    print("interval    seeds  sigma  coverage(95%)  median width/B*")
    for interval, seeds in (
        ("parametric", 1),
        ("parametric", 2),
        ("parametric", 3),
        ("seeds", 2),
        ("seeds", 3),
    ):
        for sigma in (0.02, 0.04, 0.1):
            cov, width = coverage(
                seeds=seeds,
                sigma=sigma,
                interval=interval,
                replicates=args.replicates,
                bootstrap=args.bootstrap,
            )
            print(f"{interval:<10}  {seeds:>5}  {sigma:>5}  {100 * cov:>12.1f}%  {width:>15.3f}")


if __name__ == "__main__":
    main()
