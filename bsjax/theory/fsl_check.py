"""The FSL against the exact linear-regression risk along training (an asymptotic equivalence).

The FSL matched to a problem (:meth:`FSL.from_linreg`) predicts the last iterate's excess risk
up to constant factors, so the useful check is the ratio ``FSL / exact`` along training: it should
stay bounded and roughly flat within each phase of a schedule, not tend to 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from bsjax.theory.fsl import FSL
from bsjax.theory.linreg import LinRegProblem, risk_curves
from bsjax.theory.schedules import Schedule


@dataclasses.dataclass(frozen=True)
class FSLComparison:
    """Exact and FSL losses of G schedules at shared record steps (shape (G, R))."""

    names: tuple[str, ...]
    steps_R: np.ndarray
    exact_GR: np.ndarray
    fsl_GR: np.ndarray

    @property
    def ratio_GR(self) -> np.ndarray:
        return self.fsl_GR / self.exact_GR

    def to_json(self) -> dict:
        out = {"steps": self.steps_R.tolist(), "schedules": {}}
        for g, name in enumerate(self.names):
            r = self.ratio_GR[g, 1:]
            out["schedules"][name] = {
                "exact": self.exact_GR[g].tolist(),
                "fsl": self.fsl_GR[g].tolist(),
                "ratio": self.ratio_GR[g].tolist(),
                "ratio_min": float(r.min()),
                "ratio_max": float(r.max()),
                "ratio_final": float(r[-1]),
            }
        return out


def compare_fsl_exact(
    problem: LinRegProblem,
    schedules: Sequence[Schedule],
    names: Sequence[str] | None = None,
    *,
    num_records: int = 60,
    fsl: FSL | None = None,
) -> FSLComparison:
    """Exact last-iterate risk and FSL loss of each schedule at ``num_records`` shared steps."""
    schedules = list(schedules)
    names = (
        tuple(names) if names is not None else tuple(f"schedule_{i}" for i in range(len(schedules)))
    )
    fsl = FSL.from_linreg(problem) if fsl is None else fsl
    curves = risk_curves(problem, schedules, num_records=num_records)
    steps = curves.steps_R
    fsl_GR = np.stack([fsl.loss(s, np.minimum(steps, s.num_steps)) for s in schedules])
    return FSLComparison(names=names, steps_R=steps, exact_GR=curves.last_GR, fsl_GR=fsl_GR)
