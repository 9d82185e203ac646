"""Fits over a whole sweep: Y(B) and B* per curve, the trade-off, scaling laws.

Pure computation on :mod:`bsjax.cbs.results` (no plotting): ``report.py``
renders what this returns, and ``bsjax analyze`` prints its B* values.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

from bsjax import storage
from bsjax.cbs.fits import (
    DEFAULT_B_OPT,
    DEFAULT_OVERHEAD,
    CurveFitError,
    StepsCurveFit,
    fit_steps_curve,
)
from bsjax.cbs.results import Curve, SweepError, SweepResults, load_sweep
from bsjax.cbs.scaling import ScalingFit, fit_scaling_law
from bsjax.cbs.tradeoff import TradeoffFit, fit_tradeoff

MIN_SCALING_SIZES = 3
SWEEP_FILE = "sweep.json"  # written by bsjax sweep (bsjax.cbs.sweep.runs.write_plan_files)


def analysis_options(analysis: dict, reference_batch_size: int | float) -> dict:
    """The keyword options of :func:`analyze_sweep` from a sweep's ``analysis`` section.

    ``b_opt = 0`` stands for the reference batch size. The sweep and ``bsjax
    analyze`` both go through this, so the report of one is the report of the other.
    """
    alpha = str(analysis["alpha"]).strip().lower()
    return dict(
        b_opt=float(analysis["b_opt"]) or float(reference_batch_size),
        overhead=float(analysis["overhead"]),
        alpha="fit" if alpha == "fit" else float(alpha),
        bootstrap=int(analysis["bootstrap"]),
        seed=int(analysis["seed"]),
    )


def sweep_options(sweep_dir: Path | str) -> dict:
    """The analysis options a sweep folder's ``sweep.json`` recorded (see :func:`analysis_options`).

    Raises :class:`~bsjax.cbs.results.SweepError` when the folder holds no
    readable sweep.json: it is then not a sweep.
    """
    if not storage.as_path(sweep_dir).is_dir():
        raise SweepError(f"sweep folder {str(sweep_dir)!r} does not exist or is not a folder")
    path = storage.as_path(sweep_dir) / SWEEP_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SweepError(
            f"{str(sweep_dir)!r} holds no sweep: there is no {SWEEP_FILE} (bsjax sweep writes it); "
            "give the folder a `bsjax sweep --workdir` wrote"
        ) from None
    except (OSError, ValueError) as exc:
        raise SweepError(f"{path}: cannot read the sweep: {exc}") from None
    try:
        settings = data.get("settings") or [{}]
        ref_sizes = {s.get("ref_batch_size") for s in settings if s.get("ref_batch_size")}
        return analysis_options(data["analysis"], min(ref_sizes) if ref_sizes else 0)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise SweepError(
            f"{path}: no usable 'analysis' section (b_opt, overhead, alpha, bootstrap, seed): {exc!r}"
        ) from None


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
    interval: str = "parametric",
) -> SweepAnalysis:
    """Read a sweep folder and fit every curve that has enough batch sizes at target.

    Each curve is fitted over every run at target (seeds averaged, variants
    minimised, see :func:`bsjax.cbs.fits.group_runs`); its censored runs are
    passed as lower bounds. Curves with fewer than the needed batch sizes get
    a note instead of a fit;
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
            curves.append(
                _analyze_curve(curve, b_opt, overhead, alpha, bootstrap, seed, ci_level, interval)
            )
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
        interval=interval,
    )
    return SweepAnalysis(results, curves, scaling, notes, options, sources)


def _analyze_curve(
    curve: Curve, b_opt, overhead, alpha, bootstrap, seed, ci_level, interval
) -> CurveAnalysis:
    notes: list[str] = []
    fit = tradeoff = None
    steps = curve.steps()
    sizes, run_steps, seeds, variants = curve.fit_rows()
    try:
        fit = fit_steps_curve(
            sizes,
            run_steps,
            seeds=seeds,
            variants=variants,
            censored=[(r.batch_size, r.steps or 0) for r in curve.censored if r.steps],
            interval=interval,
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
