"""Scaling laws of the critical batch size against model or data size.

Two forms, both fitted by least squares on ``log B*``:

* ``"power"`` (default): ``B* = c * X**beta``. In log space this is a
  straight line, solved exactly.
* ``"offset"``: ``B* = offset + c * X**beta`` with ``offset >= 0``. This is
  the paper's general form ``log B* = log(c' + d / N**beta')`` written with
  ``offset = c'``, ``c = d``, ``beta = -beta'``; the paper sets ``c' = 0``,
  which is the power form.

``X`` is the model size N in millions of parameters or the data size D in
billions of tokens (the units of Zhang et al.'s ``93.20 * N**0.47``). Their
``22.91 * D**0.47`` only matches their Table 7 forecasts (D in billions) if D
is counted in millions of tokens when fitting; with D in billions the same
points give ``578.13 * D**0.467`` and reproduce Table 7.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable

import numpy as np
from scipy import optimize

from bsjax.cbs.fits import CurveFitError, Interval, _as_positive_array

FORMS = ("power", "offset")


@dataclasses.dataclass(frozen=True)
class Forecast:
    """Predicted B* at one size, with a bootstrap interval when available."""

    x: float
    critical_batch_size: float
    log2: float
    ci: Interval | None = None

    def to_dict(self) -> dict:
        return {
            "x": self.x,
            "critical_batch_size": self.critical_batch_size,
            "log2": self.log2,
            "ci": None if self.ci is None else self.ci.to_dict(),
        }


@dataclasses.dataclass(frozen=True)
class ScalingFit:
    """Fitted ``B* = offset + c * X**beta`` (offset = 0 for the power form)."""

    c: float
    beta: float
    offset: float
    form: str
    variable: str
    x: tuple[float, ...]
    critical_batch_sizes: tuple[float, ...]
    residuals: tuple[float, ...]
    n_points: int
    ci: dict[str, Interval] = dataclasses.field(default_factory=dict)
    n_bootstrap: int = 0
    # (n_bootstrap, 3) samples of (c, beta, offset); kept for forecast intervals.
    samples: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)

    def predict(self, x) -> np.ndarray:
        """B* of the fitted law at ``x`` (scalar or array)."""
        return self.offset + self.c * np.asarray(x, dtype=float) ** self.beta

    def forecast(self, xs: Iterable[float], ci_level: float | None = None) -> list[Forecast]:
        """Forecasts at ``xs``, with percentile intervals if the fit was bootstrapped."""
        xs_arr = _as_positive_array(xs, "xs")
        level = (
            ci_level
            if ci_level is not None
            else (next(iter(self.ci.values())).level if self.ci else 0.95)
        )
        out = []
        for x in xs_arr:
            value = float(self.predict(x))
            interval = None
            if self.samples is not None and len(self.samples):
                preds_S = self.samples[:, 2] + self.samples[:, 0] * x ** self.samples[:, 1]
                lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
                interval = Interval(
                    float(np.percentile(preds_S, lo)), float(np.percentile(preds_S, hi)), level
                )
            out.append(Forecast(float(x), value, math.log2(value), interval))
        return out

    def formula(self) -> str:
        """The law as text, e.g. ``B* = 93.20 * N^0.468``."""
        core = f"{self.c:.2f} * {self.variable}^{self.beta:.3f}"
        return f"B* = {self.offset:.2f} + {core}" if self.form == "offset" else f"B* = {core}"

    def to_dict(self) -> dict:
        return {
            "c": self.c,
            "beta": self.beta,
            "offset": self.offset,
            "form": self.form,
            "variable": self.variable,
            "formula": self.formula(),
            "x": list(self.x),
            "critical_batch_sizes": list(self.critical_batch_sizes),
            "residuals": list(self.residuals),
            "n_points": self.n_points,
            "ci": {k: v.to_dict() for k, v in self.ci.items()},
            "n_bootstrap": self.n_bootstrap,
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def _fit_once(
    x_arr: np.ndarray, y_arr: np.ndarray, form: str, init=None
) -> tuple[float, float, float]:
    log_x, log_y = np.log(x_arr), np.log(y_arr)
    beta, log_c = np.polyfit(log_x, log_y, 1)
    if form == "power":
        return float(math.exp(log_c)), float(beta), 0.0

    def residual(p):
        return np.logaddexp(p[0], p[1] + p[2] * log_x) - log_y

    starts = []
    if init is not None:
        c0, beta0, off0 = init
        starts.append(np.array([math.log(max(off0, 1e-6 * y_arr.min())), math.log(c0), beta0]))
    for frac in (1e-3, 0.5):
        # A start with a small offset continues the power fit; one with half the
        # smallest B* as offset lets the power part bend more.
        off0 = frac * float(y_arr.min())
        rest = y_arr - off0
        b0, lc0 = np.polyfit(log_x, np.log(rest), 1)
        starts.append(np.array([math.log(off0), lc0, b0]))
    best = None
    for p0 in starts:
        sol = optimize.least_squares(
            residual, p0, method="trf", x_scale="jac", xtol=1e-12, ftol=1e-12, max_nfev=2000
        )
        if best is None or sol.cost < best.cost:
            best = sol
    return float(math.exp(best.x[1])), float(best.x[2]), float(math.exp(best.x[0]))


def fit_scaling_law(
    x: Iterable[float],
    critical_batch_sizes: Iterable[float],
    *,
    form: str = "power",
    variable: str = "N",
    bootstrap: int = 0,
    seed: int = 0,
    ci_level: float = 0.95,
) -> ScalingFit:
    """Fit B* against size ``x`` (N in millions or D in billions) in log space.

    Args:
      x: sizes, > 0; ``critical_batch_sizes``: measured B* at each size.
      form: ``"power"`` (``c * X**beta``) or ``"offset"`` (``offset + c * X**beta``).
      variable: name of the size for labels (``"N"`` or ``"D"``).
      bootstrap: resamples of the points (with replacement, seeded) for
        percentile intervals on c, beta (and offset) and on forecasts.

    Raises:
      CurveFitError: bad values, unknown form, or too few points (3 with at
        least 2 distinct sizes for the power form, 4 with 3 distinct for the
        offset form).
    """
    if form not in FORMS:
        raise CurveFitError(f"form must be one of {FORMS}, got {form!r}")
    if bootstrap < 0:
        raise CurveFitError(f"bootstrap must be >= 0 resamples, got {bootstrap}")
    if not (0 < ci_level < 1):
        raise CurveFitError(f"ci_level must be in (0, 1), got {ci_level}")
    x_arr = _as_positive_array(x, "x")
    y_arr = _as_positive_array(critical_batch_sizes, "critical_batch_sizes")
    if x_arr.shape != y_arr.shape:
        raise CurveFitError(
            f"x and critical_batch_sizes must have the same length, got {x_arr.size} and {y_arr.size}"
        )
    min_points, min_distinct = (3, 2) if form == "power" else (4, 3)
    if x_arr.size < min_points or np.unique(x_arr).size < min_distinct:
        raise CurveFitError(
            f"the {form} scaling law needs at least {min_points} points over {min_distinct} distinct sizes, "
            f"got {x_arr.size} points over {np.unique(x_arr).size} sizes"
        )
    c, beta, offset = _fit_once(x_arr, y_arr, form)
    resid = np.log(y_arr) - np.log(offset + c * x_arr**beta)

    ci: dict[str, Interval] = {}
    samples = None
    if bootstrap:
        rng = np.random.default_rng(seed)
        rows = []
        for _ in range(20 * bootstrap):
            if len(rows) == bootstrap:
                break
            idx = rng.integers(0, x_arr.size, size=x_arr.size)
            if np.unique(x_arr[idx]).size < min_distinct:
                continue
            rows.append(_fit_once(x_arr[idx], y_arr[idx], form, init=(c, beta, offset)))
        samples = np.array(rows)
        lo, hi = 100 * (1 - ci_level) / 2, 100 * (1 + ci_level) / 2
        names = ("c", "beta", "offset") if form == "offset" else ("c", "beta")
        for i, name in enumerate(names):
            ci[name] = Interval(
                float(np.percentile(samples[:, i], lo)),
                float(np.percentile(samples[:, i], hi)),
                ci_level,
            )
    return ScalingFit(
        c=c,
        beta=beta,
        offset=offset,
        form=form,
        variable=variable,
        x=tuple(float(v) for v in x_arr),
        critical_batch_sizes=tuple(float(v) for v in y_arr),
        residuals=tuple(float(r) for r in resid),
        n_points=int(x_arr.size),
        ci=ci,
        n_bootstrap=int(bootstrap),
        samples=samples,
    )
