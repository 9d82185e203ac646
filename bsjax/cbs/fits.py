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

Runs: a batch size may hold several runs, each a seed of one hyper-parameter
variant. Seeds of a variant are averaged (the mean of log steps, the scale
the fit works on); variants are minimised (the paper keeps the best
hyper-parameters at each batch size). Intervals come from a parametric
bootstrap by default: the noise scale of log steps is estimated from the
fit's residuals and the scatter between seeds together, with its own
uncertainty (a scaled inverse chi-square draw per resample), so that 95%
intervals cover at their nominal rate even with one run per batch size
(``experiments/cbs/calibration.py`` measures it). ``interval="seeds"``
resamples seeds within each batch size and variant instead; with 2-3 seeds
it is too narrow (a resample of n values has (n-1)/n of their variance and
no lack-of-fit term), which the same script shows.

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
    (one per distinct batch size: the seed average of the best variant).
    ``seeds_per_point`` counts the seeds behind each point and
    ``noise_sigma`` is the estimated standard deviation of one run's log
    steps (residuals and seed scatter together, ``noise_dof`` degrees of
    freedom). ``ci`` maps ``a``, ``b``, ``alpha`` (when fitted) and
    ``critical_batch_size`` to bootstrap intervals (``interval`` says which
    kind); it is empty without bootstrap. ``censored`` holds ``(B, steps)``
    of runs that stopped before the target after ``steps``: not in the fit,
    a lower bound on Y(B) that the fit is checked against.
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
    seeds_per_point: tuple[int, ...] = ()
    noise_sigma: float = float("nan")
    noise_dof: int = 0
    interval: str = "parametric"
    censored: tuple[tuple[float, float], ...] = ()

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
            "seeds_per_point": list(self.seeds_per_point),
            "noise_sigma": self.noise_sigma,
            "noise_dof": self.noise_dof,
            "ci": {k: v.to_dict() for k, v in self.ci.items()},
            "interval": self.interval,
            "n_bootstrap": self.n_bootstrap,
            "censored": [list(c) for c in self.censored],
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


@dataclasses.dataclass(frozen=True)
class RunGroups:
    """Runs grouped by batch size and variant; the points the fit sees.

    ``groups[k]`` lists, for the k-th batch size, one array of log steps per
    variant (its seeds). ``log_steps[k]`` is the mean over the seeds of the
    best variant (lowest mean), ``n_seeds[k]`` their number and
    ``best_variant[k]`` its label.
    """

    batch_sizes: np.ndarray
    log_steps: np.ndarray
    n_seeds: np.ndarray
    best_variant: tuple
    groups: tuple[tuple[np.ndarray, ...], ...]

    @property
    def steps(self) -> np.ndarray:
        return np.exp(self.log_steps)

    def seed_scatter(self) -> tuple[float, int]:
        """Sum of squared deviations of log steps from their seed mean, over the best variants, and its dof."""
        ss, dof = 0.0, 0
        for groups, variant in zip(self.groups, self._best_index()):
            values = groups[variant]
            ss += float(np.sum((values - values.mean()) ** 2))
            dof += values.size - 1
        return ss, dof

    def _best_index(self) -> list[int]:
        return [int(np.argmin([g.mean() for g in groups])) for groups in self.groups]


def group_runs(batch_sizes, steps, seeds=None, variants=None) -> RunGroups:
    """Validate runs and group them: seeds of a variant averaged, variants minimised.

    ``seeds`` and ``variants`` are optional labels per run. Without either,
    each run is its own variant (repeated batch sizes keep the fewest steps,
    the old rule, right for a hyper-parameter sweep). With ``seeds`` and no
    ``variants``, all runs at a batch size are seeds of one variant. With
    ``variants`` and no ``seeds``, runs of the same variant and batch size are
    taken as seeds. A (batch size, variant, seed) given twice is an error.
    """
    b_arr = _as_positive_array(batch_sizes, "batch_sizes")
    y_arr = _as_positive_array(steps, "steps")
    if b_arr.shape != y_arr.shape:
        raise CurveFitError(
            f"batch_sizes and steps must have the same length, got {b_arr.size} and {y_arr.size}"
        )
    n = b_arr.size
    for name, labels in (("seeds", seeds), ("variants", variants)):
        if labels is not None and len(labels) != n:
            raise CurveFitError(f"{name} must have one label per run ({n}), got {len(labels)}")
    if variants is None:
        variants = list(range(n)) if seeds is None else [""] * n
    if seeds is not None:
        seen = set()
        for b, v, sd in zip(b_arr, variants, seeds):
            if (b, v, sd) in seen:
                raise CurveFitError(
                    f"seed {sd!r} appears twice at batch size {_fmt(b)}"
                    + (f" (variant {v!r})" if v != "" else "")
                    + ": each (batch size, variant, seed) is one run"
                )
            seen.add((b, v, sd))
    uniq = np.unique(b_arr)
    log_y = np.log(y_arr)
    all_groups, means, counts, best = [], [], [], []
    for b in uniq:
        at = np.flatnonzero(b_arr == b)
        labels = list(dict.fromkeys(variants[i] for i in at))
        groups = tuple(np.array([log_y[i] for i in at if variants[i] == v]) for v in labels)
        k = int(np.argmin([g.mean() for g in groups]))
        all_groups.append(groups)
        means.append(groups[k].mean())
        counts.append(groups[k].size)
        best.append(labels[k])
    return RunGroups(uniq, np.array(means), np.array(counts), tuple(best), tuple(all_groups))


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


def fit_inverse_power(
    x, y, alpha: float | None = 1.0, *, init: Sequence[float] | None = None, weights=None
):
    """Least squares of ``log y = log(a + b / x**alpha)`` with a, b (and alpha) > 0.

    ``alpha=None`` fits alpha too. Returns ``(a, b, alpha, residuals_log)``
    where residuals are ``log y - log fitted``. ``init`` is an optional
    starting ``(a, b[, alpha])``, used as the only start; without it the fit
    starts from a linear fit of y on x**-alpha (for a few alphas when fitted).
    ``weights`` (e.g. seeds per point) weigh the squared log residuals.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    log_x, log_y = np.log(x), np.log(y)
    sqrt_w = np.ones_like(x) if weights is None else np.sqrt(np.asarray(weights, dtype=float))

    def residual(params):
        return (_log_model(params, log_x, alpha) - log_y) * sqrt_w

    def jacobian(params):
        # d/du, d/dv of log(e^u + e^(v - alpha log x)) are the two terms' shares.
        alpha_now = alpha if alpha is not None else math.exp(params[2])
        log_model = _log_model(params, log_x, alpha)
        share_b = np.exp(params[1] - alpha_now * log_x - log_model)
        cols = [1.0 - share_b, share_b]
        if alpha is None:
            cols.append(-alpha_now * log_x * share_b)  # chain rule through alpha = exp(p)
        return np.stack(cols, axis=1) * sqrt_w[:, None]

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
    return a_fit, b_fit, alpha_fit, -best.fun / sqrt_w


def fit_inverse_power_many(log_x, log_y, weights, alpha: float | None, init) -> np.ndarray:
    """Vectorised Levenberg-Marquardt of many data sets at once (the bootstrap's fits).

    ``log_y`` is ``(R, K)``: R data sets at the K batch sizes ``exp(log_x)``.
    ``init`` holds the starting ``(log a, log b[, log alpha])`` (shape ``(P,)``
    or ``(R, P)``). Returns ``(R, P)`` parameters in the same log form; the
    same least-squares problem as :func:`fit_inverse_power`, solved for all R
    data sets together (the full-data optimum is a close start for each).
    """
    log_x = np.asarray(log_x, dtype=float)[None, :]
    log_y = np.asarray(log_y, dtype=float)
    sqrt_w = np.sqrt(np.asarray(weights, dtype=float))[None, :]
    n_sets = log_y.shape[0]
    params = np.array(np.broadcast_to(np.asarray(init, dtype=float), (n_sets, len(init))))
    n_params = params.shape[1]

    def residual_and_jacobian(p):
        alpha_now = alpha if alpha is not None else np.exp(p[:, 2:3])
        shifted = p[:, 1:2] - alpha_now * log_x
        model = np.logaddexp(p[:, 0:1], shifted)
        share_b = np.exp(shifted - model)
        cols = [1.0 - share_b, share_b]
        if alpha is None:
            cols.append(-alpha_now * log_x * share_b)
        jac = np.stack(cols, axis=2) * sqrt_w[:, :, None]
        return (model - log_y) * sqrt_w, jac

    r, jac = residual_and_jacobian(params)
    cost = np.sum(r**2, axis=1)
    damping = np.full(n_sets, 1e-3)
    eye = np.eye(n_params)[None]
    for _ in range(200):
        grad = np.einsum("rkp,rk->rp", jac, r)
        hess = np.einsum("rkp,rkq->rpq", jac, jac)
        scaled = hess + damping[:, None, None] * (hess * eye + 1e-12 * eye)
        step = -np.linalg.solve(scaled, grad[:, :, None])[:, :, 0]
        trial = params + step
        r_new, jac_new = residual_and_jacobian(trial)
        cost_new = np.sum(r_new**2, axis=1)
        better = cost_new <= cost
        params = np.where(better[:, None], trial, params)
        r = np.where(better[:, None], r_new, r)
        jac = np.where(better[:, None, None], jac_new, jac)
        cost = np.where(better, cost_new, cost)
        damping = np.where(better, damping / 3.0, damping * 4.0)
        if np.all(np.abs(step) < 1e-10) or np.all(damping > 1e12):
            break
    return params


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


INTERVALS = ("parametric", "seeds")


def fit_steps_curve(
    batch_sizes: Iterable[float],
    steps: Iterable[float],
    *,
    seeds: Sequence | None = None,
    variants: Sequence | None = None,
    alpha: float | str | None = 1.0,
    b_opt: float = DEFAULT_B_OPT,
    overhead: float = DEFAULT_OVERHEAD,
    bootstrap: int = 0,
    seed: int = 0,
    ci_level: float = 0.95,
    interval: str = "parametric",
    censored: Iterable[tuple[float, float]] = (),
    monotone_tolerance: float = DEFAULT_MONOTONE_TOLERANCE,
    on_non_monotone: str = "warn",
) -> StepsCurveFit:
    """Fit ``log Y = log(a + b / B**alpha)`` to steps-to-target and derive ``B*``.

    Args:
      batch_sizes, steps: one entry per run.
      seeds, variants: optional labels per run (see :func:`group_runs`):
        seeds of a variant are averaged in log steps, variants (hyper-parameter
        settings) are minimised. Without either, repeated batch sizes keep the
        run with the fewest steps and a warning says so.
      alpha: a positive number to hold alpha fixed (1 by default, as in the
        paper), or ``"fit"`` / ``None`` to fit it.
      b_opt: batch size in the linear-scaling regime that ``B*`` is measured
        from (256 in the paper).
      overhead: ``rho``, the tolerated extra examples over linear scaling.
      bootstrap: number of bootstrap resamples for percentile intervals (0: none).
      seed: seed of the bootstrap resampling.
      interval: ``"parametric"`` (default): each resample redraws every
        point's seed mean as the fitted curve times log-normal noise whose
        scale is estimated from the residuals and the seed scatter (and
        itself redrawn from its chi-square distribution); calibrated with any
        number of seeds. ``"seeds"``: resample seeds within each batch size
        and variant, then minimise over variants (needs >= 2 seeds somewhere;
        too narrow with few seeds).
      censored: ``(batch_size, steps)`` of runs that stopped before the
        target; they are not fitted, and a fit predicting fewer steps than
        such a run took without reaching the target is flagged.
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
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or bootstrap < 0:
        raise CurveFitError(f"bootstrap must be an int >= 0 resamples, got {bootstrap!r}")
    if interval not in INTERVALS:
        raise CurveFitError(f"interval must be one of {', '.join(INTERVALS)}, got {interval!r}")
    runs = group_runs(batch_sizes, steps, seeds, variants)
    b_arr, y_arr, n_seeds = runs.batch_sizes, runs.steps, runs.n_seeds
    n_runs = int(sum(g.size for groups in runs.groups for g in groups))
    min_points = 3 if alpha_fixed is not None else 4
    if b_arr.size < min_points:
        what = "alpha fixed" if alpha_fixed is not None else "alpha fitted"
        raise CurveFitError(
            f"need at least {min_points} distinct batch sizes to fit Y(B) with {what}, got {b_arr.size} "
            f"({b_arr.tolist()})"
        )
    censored = tuple((float(b), float(y)) for b, y in censored)
    # Validate b_opt/overhead before the work.
    critical_batch_size(1.0, 1.0, 1.0, b_opt, overhead)

    notes: list[str] = []
    if seeds is None and variants is None and n_runs > b_arr.size:
        notes.append(
            f"{n_runs - b_arr.size} repeated batch size(s) without seed or variant labels: each run is "
            "taken as a hyper-parameter variant and the fewest steps kept; label seeds to average them"
        )
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

    a_fit, b_fit, alpha_fit, resid = fit_inverse_power(b_arr, y_arr, alpha_fixed, weights=n_seeds)
    b_star = critical_batch_size(a_fit, b_fit, alpha_fit, b_opt, overhead)
    notes.extend(_range_notes(b_arr, b_star, b_opt))
    for b_c, y_c in censored:
        predicted = a_fit + b_fit / b_c**alpha_fit
        if predicted < y_c:
            notes.append(
                f"censored run at B={_fmt(b_c)} stopped short of the target after {_fmt(y_c)} steps, but the "
                f"fit predicts {_fmt(predicted)}: the fit underestimates the steps there"
            )

    n_params = 2 if alpha_fixed is not None else 3
    scatter_ss, scatter_dof = runs.seed_scatter()
    dof = int(n_seeds.sum()) - n_params
    sigma = (
        math.sqrt((float(np.sum(n_seeds * resid**2)) + scatter_ss) / dof) if dof > 0 else math.nan
    )
    ci: dict[str, Interval] = {}
    if bootstrap and interval == "parametric" and dof < 1:
        notes.append(
            f"no bootstrap intervals: {int(n_seeds.sum())} runs leave no degree of freedom for the noise "
            f"scale after fitting {n_params} parameters"
        )
    elif (
        bootstrap
        and interval == "seeds"
        and not any(g.size > 1 for groups in runs.groups for g in groups)
    ):
        notes.append(
            "no bootstrap intervals: interval='seeds' needs batch sizes with more than one seed"
        )
    elif bootstrap:
        rng = np.random.default_rng(seed)
        init = [math.log(a_fit), math.log(b_fit)] + (
            [] if alpha_fixed is not None else [math.log(alpha_fit)]
        )
        if interval == "parametric":
            log_y = _parametric_resamples(
                np.log(a_fit + b_fit / b_arr**alpha_fit), n_seeds, sigma, dof, bootstrap, rng
            )
        else:
            log_y = _seed_resamples(runs, bootstrap, rng)
        params = fit_inverse_power_many(np.log(b_arr), log_y, n_seeds, alpha_fixed, init)
        samples = _bootstrap_table(params, alpha_fixed, b_opt, overhead)
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
        n_runs=n_runs,
        batch_sizes=tuple(float(v) for v in b_arr),
        steps=tuple(float(v) for v in y_arr),
        ci=ci,
        n_bootstrap=int(bootstrap) if ci else 0,
        warnings=tuple(notes),
        seeds_per_point=tuple(int(n) for n in n_seeds),
        noise_sigma=float(sigma),
        noise_dof=max(dof, 0),
        interval=interval,
        censored=censored,
    )


def _parametric_resamples(log_fitted, n_seeds, sigma, dof, n, rng) -> np.ndarray:
    """``(n, K)`` seed means: the fit times log-normal noise of a redrawn scale.

    The scale is drawn as ``sigma * sqrt(dof / chi2(dof))`` per resample, so
    the intervals widen as a t-distribution does when few runs estimate it.
    """
    sigma_r = sigma * np.sqrt(dof / rng.chisquare(dof, size=n))
    noise = rng.standard_normal((n, log_fitted.size)) / np.sqrt(n_seeds)[None, :]
    return log_fitted[None, :] + sigma_r[:, None] * noise


def _seed_resamples(runs: RunGroups, n, rng) -> np.ndarray:
    """``(n, K)``: per batch size, resample each variant's seeds, average, keep the best variant."""
    cols = []
    for groups in runs.groups:
        means = [
            g[rng.integers(0, g.size, size=(n, g.size))].mean(axis=1)
            if g.size > 1
            else np.full(n, g[0])
            for g in groups
        ]
        cols.append(np.min(np.stack(means, axis=1), axis=1))
    return np.stack(cols, axis=1)


def _bootstrap_table(params, alpha_fixed, b_opt, overhead) -> np.ndarray:
    """``(R, 4)`` rows of ``(a, b, alpha, B*)`` from the bootstrap's log parameters."""
    a_s, b_s = np.exp(params[:, 0]), np.exp(params[:, 1])
    al_s = np.full_like(a_s, alpha_fixed) if alpha_fixed is not None else np.exp(params[:, 2])
    if alpha_fixed == 1.0:
        with np.errstate(divide="ignore", over="ignore"):  # a -> 0: B* = inf, kept as such
            b_star = (1.0 + overhead) * b_opt + overhead * b_s / a_s
    else:
        with np.errstate(all="ignore"):  # a resample's wild alpha may overflow: B* = inf
            b_star = np.array(
                [critical_batch_size(a, b, al, b_opt, overhead) for a, b, al in zip(a_s, b_s, al_s)]
            )
    return np.stack([a_s, b_s, al_s, b_star], axis=1)


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
        with np.errstate(invalid="ignore"):  # inf - inf between two infinite samples
            low, high = (float(np.percentile(col, q)) for q in (lo_q, hi_q))
        out[name] = Interval(
            math.inf if math.isnan(low) else low, math.inf if math.isnan(high) else high, level
        )
    return out
