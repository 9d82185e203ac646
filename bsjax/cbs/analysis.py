"""Fits over a whole sweep: Y(B) and B* per curve, the trade-off, scaling laws.

Pure computation on :mod:`bsjax.cbs.results` (no plotting): ``report.py``
renders what this returns, and ``bsjax analyze`` prints its B* values.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

from bsjax.cbs.fits import (
    DEFAULT_B_OPT,
    DEFAULT_OVERHEAD,
    CurveFitError,
    StepsCurveFit,
    fit_steps_curve,
)
from bsjax.cbs.results import Curve, SweepResults, load_sweep
from bsjax.cbs.scaling import ScalingFit, fit_scaling_law
from bsjax.cbs.tradeoff import TradeoffFit, fit_tradeoff

MIN_SCALING_SIZES = 3


@dataclasses.dataclass
class CurveAnalysis:
    """One curve (model, ctx_len, target loss) and its fits; ``fit`` is None when impossible."""

    curve: Curve
    fit: StepsCurveFit | None
    tradeoff: TradeoffFit | None
    notes: list[str]


@dataclasses.dataclass
class SweepAnalysis:
    """Everything the report shows."""

    results: SweepResults
    curves: list[CurveAnalysis]
    scaling: dict[str, ScalingFit]
    notes: list[str]
    options: dict
    # For each scaling law, the curves whose B* it was fitted on, in order.
    scaling_sources: dict[str, list[CurveAnalysis]] = dataclasses.field(default_factory=dict)

    @property
    def sweep_dir(self) -> Path:
        return self.results.sweep_dir

    def measured(self) -> list[CurveAnalysis]:
        return [c for c in self.curves if c.fit is not None]


def analyze_sweep(
    sweep_dir: Path | str,
    *,
    b_opt: float = DEFAULT_B_OPT,
    overhead: float = DEFAULT_OVERHEAD,
    alpha: float | str = 1.0,
    bootstrap: int = 1000,
    seed: int = 0,
    ci_level: float = 0.95,
) -> SweepAnalysis:
    """Read a sweep folder and fit every curve that has enough batch sizes at target.

    Curves with fewer than the needed batch sizes get a note instead of a fit;
    scaling laws are fitted against N (millions of parameters) and D
    (billions of reference tokens, from ``target.ref_tokens``) when the
    measured curves span at least 3 distinct values of that size.
    Raises :class:`~bsjax.cbs.results.SweepError` for a missing or empty folder.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = load_sweep(sweep_dir)
        notes = list(results.warnings)
        curves = []
        for curve in results.curves:
            curves.append(_analyze_curve(curve, b_opt, overhead, alpha, bootstrap, seed, ci_level))
        scaling, sources = {}, {}
        measured = [c for c in curves if c.fit is not None]
        for variable, size_of in (
            ("N", lambda c: c.curve.n_millions),
            ("D", lambda c: None if c.curve.ref_tokens is None else c.curve.ref_tokens / 1e9),
        ):
            used = [c for c in measured if size_of(c)]
            pairs = [(size_of(c), c.fit.critical_batch_size) for c in used]
            distinct = {x for x, _ in pairs}
            if len(distinct) >= MIN_SCALING_SIZES:
                try:
                    scaling[variable] = fit_scaling_law(
                        [x for x, _ in pairs],
                        [y for _, y in pairs],
                        variable=variable,
                        bootstrap=bootstrap,
                        seed=seed,
                        ci_level=ci_level,
                    )
                    sources[variable] = used
                except CurveFitError as exc:
                    notes.append(f"scaling law in {variable}: {exc}")
            elif len(distinct) > 1:
                notes.append(
                    f"no scaling law in {variable}: the measured B* span {len(distinct)} distinct values of "
                    f"{variable}, at least {MIN_SCALING_SIZES} are needed"
                )
    del caught  # fit warnings live in the fit objects and notes; nothing is lost
    options = dict(
        b_opt=b_opt,
        overhead=overhead,
        alpha=alpha,
        bootstrap=bootstrap,
        seed=seed,
        ci_level=ci_level,
    )
    return SweepAnalysis(results, curves, scaling, notes, options, sources)


def _analyze_curve(
    curve: Curve, b_opt, overhead, alpha, bootstrap, seed, ci_level
) -> CurveAnalysis:
    notes: list[str] = []
    fit = tradeoff = None
    sizes, steps = curve.batch_sizes(), curve.steps()
    try:
        fit = fit_steps_curve(
            sizes,
            steps,
            alpha=alpha,
            b_opt=b_opt,
            overhead=overhead,
            bootstrap=bootstrap,
            seed=seed,
            ci_level=ci_level,
        )
        notes.extend(f"{curve.label}: {w}" for w in fit.warnings)
    except CurveFitError as exc:
        notes.append(f"{curve.label}: no Y(B) fit: {exc}")
    examples = curve.examples()
    if fit is not None and all(e is not None for e in examples):
        try:
            tradeoff = fit_tradeoff(
                steps, examples, bootstrap=bootstrap, seed=seed, ci_level=ci_level
            )
        except CurveFitError as exc:
            notes.append(f"{curve.label}: no steps-examples fit: {exc}")
    return CurveAnalysis(curve, fit, tradeoff, notes)
