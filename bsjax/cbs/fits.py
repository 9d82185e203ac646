"""Steps-to-target curve Y(B) and the critical batch size (Zhang et al., 2024).

The curve is ``Y(B) = a + b / B**alpha``, fitted by least squares on
``log Y`` (so each batch size weighs by its relative error, as in the paper).
``a`` is the plateau of steps at very large batch, ``b / B**alpha`` the part
that linear scaling removes. The critical batch size ``B*`` at overhead ``rho``
is the batch above ``B_opt`` where the examples spent reach ``(1 + rho)`` times
those at ``B_opt``:

    (a + b / B_opt**alpha) * (1 + rho) * B_opt = (a + b / B*^alpha) * B*

For ``alpha = 1`` this is ``B* = (1 + rho) * B_opt + rho * b / a`` (the paper's
``b / (5a) + 1.2 B_opt``); otherwise it is solved numerically.

Note on the paper's Table 6 (b): its caption computes ``B*`` for a fitted
alpha as ``((b + 5a * 1.2 * B_opt) / (5a)) ** (1 / alpha)``, which is not the
root of the equation above unless alpha = 1. We solve the equation itself.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import optimize

DEFAULT_B_OPT = 256.0
DEFAULT_OVERHEAD = 0.2
# Steps at a larger batch may exceed the best smaller-batch value by this
# fraction before the curve counts as non-monotone (eval-schedule granularity
# and seed noise make Y(B) a little ragged near the plateau).
DEFAULT_MONOTONE_TOLERANCE = 0.10


class CurveFitError(ValueError):
    """Bad input to a curve fit, or a fit that cannot give a meaningful answer."""


class NonMonotoneCurveError(CurveFitError):
    """Steps to target rise with batch size by more than the noise tolerance."""


class CbsFitWarning(UserWarning):
    """A fit that ran but whose answer needs care (extrapolation, non-monotone data)."""


@dataclasses.dataclass(frozen=True)
class Interval:
    """A two-sided percentile bootstrap interval."""

    low: float
    high: float
    level: float

    def to_dict(self) -> dict:
        return {"low": self.low, "high": self.high, "level": self.level}


@dataclasses.dataclass(frozen=True)
class StepsCurveFit:
    """Fitted ``Y(B) = a + b / B**alpha`` and the critical batch size it implies.

    ``residuals`` are ``log Y_measured - log Y_fitted`` at ``batch_sizes``
    (one per distinct batch size, after keeping the best run of duplicates).
    ``ci`` maps ``a``, ``b``, ``alpha`` (when fitted) and
    ``critical_batch_size`` to bootstrap intervals; it is empty without
    bootstrap.
    """

    a: float
    b: float
    alpha: float
    alpha_fitted: bool
    b_opt: float
    overhead: float
    critical_batch_size: float
    log2: float
    residuals: tuple[float, ...]
    n_points: int
    n_runs: int
    batch_sizes: tuple[float, ...]
    steps: tuple[float, ...]
    ci: dict[str, Interval] = dataclasses.field(default_factory=dict)
    n_bootstrap: int = 0
    warnings: tuple[str, ...] = ()

    def predict(self, batch_size) -> np.ndarray:
        """Fitted steps to target at ``batch_size`` (scalar or array)."""
        b_arr = np.asarray(batch_size, dtype=float)
        return self.a + self.b / b_arr**self.alpha

    @property
    def rms_log_residual(self) -> float:
        r = np.asarray(self.residuals)
        return float(np.sqrt(np.mean(r**2))) if r.size else float("nan")

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of the fit (no numpy types)."""
        return {
            "a": self.a,
            "b": self.b,
            "alpha": self.alpha,
            "alpha_fitted": self.alpha_fitted,
            "b_opt": self.b_opt,
            "overhead": self.overhead,
            "critical_batch_size": self.critical_batch_size,
            "log2_critical_batch_size": self.log2,
            "residuals": list(self.residuals),
            "rms_log_residual": self.rms_log_residual,
            "n_points": self.n_points,
            "n_runs": self.n_runs,
            "batch_sizes": list(self.batch_sizes),
            "steps": list(self.steps),
            "ci": {k: v.to_dict() for k, v in self.ci.items()},
            "n_bootstrap": self.n_bootstrap,
            "warnings": list(self.warnings),
        }

    def to_json(self, indent: int | None = None) -> str:
        """The fit as one strict JSON object (a non-finite number, e.g. B* = inf, becomes null)."""
        return json.dumps(_finite_or_none(self.to_dict()), indent=indent, allow_nan=False)


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


# --------------------------------------------------------------------------
# Input handling


def _as_positive_array(values, name: str) -> np.ndarray:
    try:
        arr = np.asarray(
            list(values) if not isinstance(values, np.ndarray) else values, dtype=float
        )
    except (TypeError, ValueError) as exc:
        raise CurveFitError(f"{name} must be a sequence of numbers: {exc}") from None
    if arr.ndim != 1:
        raise CurveFitError(f"{name} must be one-dimensional, got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        raise CurveFitError(
            f"{name} must be finite and > 0; got {arr[bad].tolist()} at positions {np.flatnonzero(bad).tolist()}"
        )
    return arr


def best_per_batch_size(batch_sizes, steps) -> tuple[np.ndarray, np.ndarray]:
    """Validate points and keep, for each batch size, the fewest steps (the best run).

    Returns ``(batch_sizes, steps)`` sorted by batch size with unique sizes.
    """
    b_arr = _as_positive_array(batch_sizes, "batch_sizes")
    y_arr = _as_positive_array(steps, "steps")
    if b_arr.shape != y_arr.shape:
        raise CurveFitError(
            f"batch_sizes and steps must have the same length, got {b_arr.size} and {y_arr.size}"
        )
    uniq = np.unique(b_arr)
    best = np.array([y_arr[b_arr == b].min() for b in uniq])
    return uniq, best


def check_monotone(batch_sizes, steps, tolerance: float = DEFAULT_MONOTONE_TOLERANCE) -> list[str]:
    """Messages for each batch size whose steps exceed the best smaller batch by > tolerance.

    Expects unique, sorted batch sizes (see :func:`best_per_batch_size`).
    An empty list means Y(B) is non-increasing within the noise tolerance.
    """
    b_arr = np.asarray(batch_sizes, dtype=float)
    y_arr = np.asarray(steps, dtype=float)
    problems = []
    for i in range(1, b_arr.size):
        j = int(np.argmin(y_arr[:i]))
        if y_arr[i] > y_arr[j] * (1.0 + tolerance):
            problems.append(
                f"B={_fmt(b_arr[i])} needs {_fmt(y_arr[i])} steps but the smaller B={_fmt(b_arr[j])} "
                f"needed {_fmt(y_arr[j])}"
            )
    return problems


def _fmt(x: float) -> str:
    return f"{x:.6g}"


# --------------------------------------------------------------------------
# The least-squares core, shared with the trade-off and scaling fits.


def _log_model(params: np.ndarray, log_x: np.ndarray, alpha_fixed: float | None) -> np.ndarray:
    log_a, log_b = params[0], params[1]
    alpha = alpha_fixed if alpha_fixed is not None else math.exp(params[2])
    # log(a + b x^-alpha) without overflow: logaddexp of the two terms.
    return np.logaddexp(log_a, log_b - alpha * log_x)


def _initial_guess(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[float, float]:
    """(a, b) from a linear fit of y against x**-alpha, weighted by 1/y, made positive."""
    design = np.stack([np.ones_like(x), x**-alpha], axis=1) / y[:, None]
    (a0, b0), *_ = np.linalg.lstsq(design, np.ones_like(y), rcond=None)
    if not np.isfinite(a0) or a0 <= 0:
        a0 = 0.5 * float(y.min())
    if not np.isfinite(b0) or b0 <= 0:
        b0 = max(float(y.max() - a0), 1e-3 * float(y.min())) * float(x.min()) ** alpha
    return float(a0), float(b0)


def fit_inverse_power(x, y, alpha: float | None = 1.0, *, init: Sequence[float] | None = None):
    """Least squares of ``log y = log(a + b / x**alpha)`` with a, b (and alpha) > 0.

    ``alpha=None`` fits alpha too. Returns ``(a, b, alpha, residuals_log)``
    where residuals are ``log y - log fitted``. ``init`` is an optional
    starting ``(a, b[, alpha])``, used as the only start; without it the fit
    starts from a linear fit of y on x**-alpha (for a few alphas when fitted).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    log_x, log_y = np.log(x), np.log(y)

    def residual(params):
        return _log_model(params, log_x, alpha) - log_y

    def jacobian(params):
        # d/du, d/dv of log(e^u + e^(v - alpha log x)) are the two terms' shares.
        alpha_now = alpha if alpha is not None else math.exp(params[2])
        log_model = _log_model(params, log_x, alpha)
        share_b = np.exp(params[1] - alpha_now * log_x - log_model)
        cols = [1.0 - share_b, share_b]
        if alpha is None:
            cols.append(-alpha_now * log_x * share_b)  # chain rule through alpha = exp(p)
        return np.stack(cols, axis=1)

    starts = []
    if init is not None:
        p = [math.log(init[0]), math.log(init[1])]
        if alpha is None:
            p.append(math.log(init[2] if len(init) > 2 else 1.0))
        starts.append(np.array(p))
    # A given start (the full-data optimum, in the bootstrap) is used alone: the
    # resampled optimum lies close to it, and one start halves the cost.
    alpha_starts = [] if init is not None else ([alpha] if alpha is not None else [1.0, 0.5, 2.0])
    for alpha0 in alpha_starts:
        a0, b0 = _initial_guess(x, y, alpha0)
        p = [math.log(a0), math.log(b0)]
        if alpha is None:
            p.append(math.log(alpha0))
        starts.append(np.array(p))

    best = None
    for p0 in starts:
        sol = optimize.least_squares(
            residual,
            p0,
            jac=jacobian,
            method="trf",
            x_scale="jac",
            xtol=1e-12,
            ftol=1e-12,
            gtol=1e-12,
            max_nfev=2000,
        )
        if best is None or sol.cost < best.cost:
            best = sol
    params = best.x
    a_fit, b_fit = math.exp(params[0]), math.exp(params[1])
    alpha_fit = alpha if alpha is not None else math.exp(params[2])
    return a_fit, b_fit, alpha_fit, -best.fun


# --------------------------------------------------------------------------
# Critical batch size


def critical_batch_size(
    a: float,
    b: float,
    alpha: float = 1.0,
    b_opt: float = DEFAULT_B_OPT,
    overhead: float = DEFAULT_OVERHEAD,
) -> float:
    """Solve ``(a + b/B_opt^alpha)(1+rho) B_opt = (a + b/B^alpha) B`` for ``B > B_opt``.

    Closed form for ``alpha == 1``; a bracketed root otherwise. The root is
    unique: ``(a + b B^-alpha) B`` is below the left side at ``B_opt`` and has
    at most one interior minimum, after which it grows without bound.
    Returns ``inf`` when ``a`` is so small that the root is beyond 2**1000.
    """
    for name, value in (("a", a), ("b", b), ("alpha", alpha), ("b_opt", b_opt)):
        if not (math.isfinite(value) and value > 0):
            raise CurveFitError(
                f"{name} must be finite and > 0 to compute a critical batch size, got {value}"
            )
    if not (math.isfinite(overhead) and overhead > 0):
        raise CurveFitError(f"overhead must be finite and > 0 (e.g. 0.2 for 20%), got {overhead}")
    if alpha == 1.0:
        return (1.0 + overhead) * b_opt + overhead * b / a
    budget = (a + b / b_opt**alpha) * (1.0 + overhead) * b_opt

    def excess(log2_b: float) -> float:
        bb = 2.0**log2_b
        return (a + b / bb**alpha) * bb / budget - 1.0

    lo = math.log2(b_opt)
    hi = lo + 1.0
    while excess(hi) <= 0:
        hi += 1.0 + (hi - lo)
        if hi > 1000:
            return math.inf
    return 2.0 ** optimize.brentq(excess, lo, hi, xtol=1e-12, rtol=1e-14)


# --------------------------------------------------------------------------
# The public fit


def fit_steps_curve(
    batch_sizes: Iterable[float],
    steps: Iterable[float],
    *,
    alpha: float | str | None = 1.0,
    b_opt: float = DEFAULT_B_OPT,
    overhead: float = DEFAULT_OVERHEAD,
    bootstrap: int = 0,
    seed: int = 0,
    ci_level: float = 0.95,
    monotone_tolerance: float = DEFAULT_MONOTONE_TOLERANCE,
    on_non_monotone: str = "warn",
) -> StepsCurveFit:
    """Fit ``log Y = log(a + b / B**alpha)`` to steps-to-target and derive ``B*``.

    Args:
      batch_sizes, steps: one entry per run; repeated batch sizes keep the run
        with the fewest steps (the best of a hyper-parameter sweep).
      alpha: a positive number to hold alpha fixed (1 by default, as in the
        paper), or ``"fit"`` / ``None`` to fit it.
      b_opt: batch size in the linear-scaling regime that ``B*`` is measured
        from (256 in the paper).
      overhead: ``rho``, the tolerated extra examples over linear scaling.
      bootstrap: number of bootstrap resamples for percentile intervals
        (0: none). Resampling draws runs with replacement, then keeps the best
        run per batch size, so it covers both seeds/hparams and batch sizes.
      seed: seed of the bootstrap resampling.
      on_non_monotone: ``"warn"`` (fit anyway, warn and record it) or
        ``"raise"`` (:class:`NonMonotoneCurveError`) when steps rise with batch
        size by more than ``monotone_tolerance``.

    Raises:
      CurveFitError: non-positive or non-finite inputs, mismatched lengths,
        fewer than 3 distinct batch sizes (4 when alpha is fitted), bad options.
    """
    alpha_fixed = _parse_alpha(alpha)
    if on_non_monotone not in ("warn", "raise"):
        raise CurveFitError(f"on_non_monotone must be 'warn' or 'raise', got {on_non_monotone!r}")
    if not (0 < ci_level < 1):
        raise CurveFitError(f"ci_level must be in (0, 1), got {ci_level}")
    if bootstrap < 0:
        raise CurveFitError(f"bootstrap must be >= 0 resamples, got {bootstrap}")
    raw_b = _as_positive_array(batch_sizes, "batch_sizes")
    raw_y = _as_positive_array(steps, "steps")
    b_arr, y_arr = best_per_batch_size(raw_b, raw_y)
    min_points = 3 if alpha_fixed is not None else 4
    if b_arr.size < min_points:
        what = "alpha fixed" if alpha_fixed is not None else "alpha fitted"
        raise CurveFitError(
            f"need at least {min_points} distinct batch sizes to fit Y(B) with {what}, got {b_arr.size} "
            f"({b_arr.tolist()})"
        )
    # Validate b_opt/overhead before the work.
    critical_batch_size(1.0, 1.0, 1.0, b_opt, overhead)

    notes: list[str] = []
    problems = check_monotone(b_arr, y_arr, monotone_tolerance)
    if problems:
        msg = (
            "steps to target rise with batch size beyond the "
            f"{monotone_tolerance:.0%} noise tolerance ({'; '.join(problems)}); Y(B) should be "
            "non-increasing, so check those runs' hyper-parameters and the target loss"
        )
        if on_non_monotone == "raise":
            raise NonMonotoneCurveError(msg)
        notes.append(msg)

    a_fit, b_fit, alpha_fit, resid = fit_inverse_power(b_arr, y_arr, alpha_fixed)
    b_star = critical_batch_size(a_fit, b_fit, alpha_fit, b_opt, overhead)
    notes.extend(_range_notes(b_arr, b_star, b_opt))

    ci: dict[str, Interval] = {}
    if bootstrap and b_arr.size == min_points:
        # Resamples must keep min_points distinct sizes, so each usable one is the
        # full data set again: a zero-width interval that would look like certainty.
        notes.append(
            f"no bootstrap intervals: they need more than {min_points} distinct batch sizes, got {b_arr.size}"
        )
    elif bootstrap:
        samples = _bootstrap(
            raw_b,
            raw_y,
            alpha_fixed,
            b_opt,
            overhead,
            bootstrap,
            seed,
            min_points,
            (a_fit, b_fit, alpha_fit),
        )
        ci = _percentile_intervals(samples, ci_level, include_alpha=alpha_fixed is None)

    for note in notes:
        warnings.warn(note, CbsFitWarning, stacklevel=2)
    return StepsCurveFit(
        a=a_fit,
        b=b_fit,
        alpha=float(alpha_fit),
        alpha_fitted=alpha_fixed is None,
        b_opt=float(b_opt),
        overhead=float(overhead),
        critical_batch_size=float(b_star),
        log2=float(math.log2(b_star)) if math.isfinite(b_star) else math.inf,
        residuals=tuple(float(r) for r in resid),
        n_points=int(b_arr.size),
        n_runs=int(raw_b.size),
        batch_sizes=tuple(float(v) for v in b_arr),
        steps=tuple(float(v) for v in y_arr),
        ci=ci,
        n_bootstrap=int(bootstrap) if ci else 0,
        warnings=tuple(notes),
    )


def _parse_alpha(alpha) -> float | None:
    if alpha is None or (isinstance(alpha, str) and alpha.strip().lower() == "fit"):
        return None
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise CurveFitError(f"alpha must be a positive number or 'fit', got {alpha!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise CurveFitError(f"alpha must be a positive number or 'fit', got {alpha!r}")
    return value


def _range_notes(b_arr: np.ndarray, b_star: float, b_opt: float) -> list[str]:
    notes = []
    if not (b_arr.min() <= b_opt <= b_arr.max()):
        notes.append(
            f"b_opt={_fmt(b_opt)} lies outside the measured batch sizes [{_fmt(b_arr.min())}, {_fmt(b_arr.max())}]; "
            "B* then rests on the fitted curve's extrapolation"
        )
    if b_star > b_arr.max():
        notes.append(
            f"B*={_fmt(b_star)} is above the largest measured batch size {_fmt(b_arr.max())}: it is an extrapolation; "
            "measure larger batches to confirm it"
        )
    return notes


def _bootstrap(raw_b, raw_y, alpha_fixed, b_opt, overhead, n, seed, min_points, init):
    rng = np.random.default_rng(seed)
    rows = []
    attempts = 0
    while len(rows) < n and attempts < 20 * n:
        attempts += 1
        idx = rng.integers(0, raw_b.size, size=raw_b.size)
        b_s, y_s = best_per_batch_size(raw_b[idx], raw_y[idx])
        if b_s.size < min_points:
            continue
        a_s, bb_s, al_s, _ = fit_inverse_power(b_s, y_s, alpha_fixed, init=init)
        rows.append((a_s, bb_s, al_s, critical_batch_size(a_s, bb_s, al_s, b_opt, overhead)))
    if len(rows) < max(10, n // 2):
        raise CurveFitError(
            f"bootstrap drew only {len(rows)} usable resamples of {n}: too few distinct batch sizes "
            f"({np.unique(raw_b).size}) for the requested fit"
        )
    return np.array(rows)


def _percentile_intervals(
    samples: np.ndarray, level: float, include_alpha: bool
) -> dict[str, Interval]:
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    names = ["a", "b", "alpha", "critical_batch_size"]
    out = {}
    for i, name in enumerate(names):
        if name == "alpha" and not include_alpha:
            continue
        col = samples[:, i]
        out[name] = Interval(
            float(np.percentile(col, lo_q)), float(np.percentile(col, hi_q)), level
        )
    return out
