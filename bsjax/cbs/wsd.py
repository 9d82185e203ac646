"""Examples-vs-steps curve E(S) under the WSD schedule (Zhou et al. 2026).

SECONDARY READING: the seed text for this paper is a summary page only; the
three-stage form below is the best available public reading (see
docs/science.md section 3), not checked against the paper's own equations.

For one target loss, each batch size gives one point: ``S`` steps and
``E = B * S`` examples to reach it in the stable phase. E(S) has three stages:

    inverse    E = B_-1 / (S - S_min) + B_0        S_min < S <= S_1
    quadratic  E = C (S - S_opt)^2 + E_min          S_1 <= S <= S_2
    linear     E = A_1 S + A_0                      S >= S_2

``B_min = A_1``: as S grows, E / S tends to A_1, so a smaller batch never
reaches the target. ``B_opt = E_min / S_opt``: the batch that spends the
fewest examples.

Continuity (our design choice): the curve is C^1, i.e. value AND slope agree
at both joins S_1 < S_opt < S_2. That removes four of the ten parameters
(B_-1, B_0, A_1, A_0 follow from the rest), leaves the joins free, and keeps
the least-squares objective smooth in the join positions. In particular
``A_1 = 2 C (S_2 - S_opt)``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import warnings
from collections.abc import Mapping

import numpy as np
from scipy import optimize

from bsjax.cbs.fits import CbsFitWarning, CurveFitError, _as_positive_array

MIN_POINTS = 7  # six free parameters plus one degree of freedom


@dataclasses.dataclass(frozen=True)
class WSDFit:
    """A fitted three-stage E(S) curve for one target loss (C^1 at the joins)."""

    s_min: float
    s_1: float
    s_opt: float
    s_2: float
    c: float
    e_min: float
    b_m1: float
    b_0: float
    a_1: float
    a_0: float
    residuals: tuple[float, ...]
    n_points: int
    target_loss: float | None = None
    warnings: tuple[str, ...] = ()

    @property
    def b_min(self) -> float:
        """Smallest batch size that still reaches the target: ``A_1``."""
        return self.a_1

    @property
    def b_opt(self) -> float:
        """Example-optimal batch size: ``E_min / S_opt``."""
        return self.e_min / self.s_opt

    def examples(self, steps) -> np.ndarray:
        """E(S) of the fitted curve (inf at or below S_min)."""
        return _curve(
            np.asarray(steps, dtype=float),
            self.s_min,
            self.s_1,
            self.s_opt,
            self.s_2,
            self.c,
            self.e_min,
        )

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["residuals"] = list(self.residuals)
        out["warnings"] = list(self.warnings)
        out["b_min"] = self.b_min
        out["b_opt"] = self.b_opt
        return out

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def _derived(s_min, s_1, s_opt, s_2, c, e_min):
    """(B_-1, B_0, A_1, A_0) from C^1 continuity at S_1 and S_2."""
    d1 = s_opt - s_1
    b_m1 = 2.0 * c * d1 * (s_1 - s_min) ** 2
    b_0 = (
        c * d1**2 + e_min - 2.0 * c * d1 * (s_1 - s_min)
    )  # = value at S_1 minus B_-1 / (S_1 - S_min)
    a_1 = 2.0 * c * (s_2 - s_opt)
    a_0 = c * (s_2 - s_opt) ** 2 + e_min - a_1 * s_2
    return b_m1, b_0, a_1, a_0


def _curve(s_arr, s_min, s_1, s_opt, s_2, c, e_min):
    b_m1, b_0, a_1, a_0 = _derived(s_min, s_1, s_opt, s_2, c, e_min)
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = b_m1 / (s_arr - s_min) + b_0
    inverse = np.where(s_arr > s_min, inverse, np.inf)
    quadratic = c * (s_arr - s_opt) ** 2 + e_min
    linear = a_1 * s_arr + a_0
    return np.where(s_arr <= s_1, inverse, np.where(s_arr <= s_2, quadratic, linear))


def _unpack(params, s_lo):
    """Positive, ordered parameters from unconstrained ones: S_min < min(S) and S_min < S_1 < S_opt < S_2."""
    p = np.clip(params, -200.0, 200.0)  # keep exp finite while the optimiser explores
    s_min = s_lo / (1.0 + math.exp(-p[0]))
    s_1 = s_min + math.exp(p[1])
    s_opt = s_1 + math.exp(p[2])
    s_2 = s_opt + math.exp(p[3])
    return s_min, s_1, s_opt, s_2, math.exp(p[4]), math.exp(p[5])


def fit_wsd_curve(steps, examples, *, target_loss: float | None = None) -> WSDFit:
    """Fit the three-stage C^1 E(S) curve to (steps, examples) pairs of one target loss.

    Least squares on ``log E`` from a few starts (join positions spread over
    the data); the best is kept. Needs at least 7 points. Warnings (recorded
    in the result and emitted as :class:`CbsFitWarning`) flag a linear stage
    or a minimum that lie outside the measured steps, where ``B_min`` or
    ``B_opt`` are extrapolations.
    """
    s_arr = _as_positive_array(steps, "steps")
    e_arr = _as_positive_array(examples, "examples")
    if s_arr.shape != e_arr.shape:
        raise CurveFitError(
            f"steps and examples must have the same length, got {s_arr.size} and {e_arr.size}"
        )
    if s_arr.size < MIN_POINTS:
        raise CurveFitError(
            f"need at least {MIN_POINTS} (steps, examples) points to fit the WSD E(S) curve, got {s_arr.size}"
        )
    order = np.argsort(s_arr)
    s_arr, e_arr = s_arr[order], e_arr[order]
    log_e = np.log(e_arr)
    s_lo, s_hi = float(s_arr[0]), float(s_arr[-1])

    def residual(params):
        model = _curve(s_arr, *_unpack(params, s_lo))
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.log(model) - log_e
        return np.where(np.isfinite(out), out, 1e3)

    i_best = int(np.argmin(e_arr))
    s_opt0, e_min0 = float(s_arr[i_best]), float(e_arr[i_best])
    if s_opt0 <= s_lo:
        s_opt0 = s_lo * 1.2
    tail_slope = (e_arr[-1] - e_arr[-2]) / max(s_arr[-1] - s_arr[-2], 1e-12)
    best = None
    for f_min, f_1, f_2 in itertools.product((0.5, 0.9), (0.3, 0.7), (0.3, 0.7)):
        s_min0 = f_min * s_lo
        s_10 = s_min0 + f_1 * (s_opt0 - s_min0)
        s_20 = s_opt0 + f_2 * max(s_hi - s_opt0, 0.5 * s_opt0)
        c0 = tail_slope / (2 * (s_20 - s_opt0)) if tail_slope > 0 else e_min0 / s_opt0**2
        p0 = np.array(
            [
                math.log(f_min / (1 - f_min)),
                math.log(s_10 - s_min0),
                math.log(s_opt0 - s_10),
                math.log(s_20 - s_opt0),
                math.log(c0),
                math.log(e_min0),
            ]
        )
        sol = optimize.least_squares(
            residual, p0, method="trf", x_scale="jac", xtol=1e-12, ftol=1e-12, max_nfev=3000
        )
        if best is None or sol.cost < best.cost:
            best = sol
    s_min, s_1, s_opt, s_2, c, e_min = _unpack(best.x, s_lo)
    b_m1, b_0, a_1, a_0 = _derived(s_min, s_1, s_opt, s_2, c, e_min)

    notes = []
    label = f" (target loss {target_loss:g})" if target_loss is not None else ""
    if s_2 >= s_hi:
        notes.append(
            f"WSD fit{label}: the linear stage starts at S_2={s_2:.4g}, beyond the largest measured S={s_hi:.4g}; B_min is extrapolated"
        )
    if not (s_lo < s_opt < s_hi):
        notes.append(
            f"WSD fit{label}: the minimum S_opt={s_opt:.4g} is outside the measured steps [{s_lo:.4g}, {s_hi:.4g}]; B_opt is extrapolated"
        )
    for note in notes:
        warnings.warn(note, CbsFitWarning, stacklevel=2)
    return WSDFit(
        s_min=s_min,
        s_1=s_1,
        s_opt=s_opt,
        s_2=s_2,
        c=c,
        e_min=e_min,
        b_m1=b_m1,
        b_0=b_0,
        a_1=a_1,
        a_0=a_0,
        residuals=tuple(float(-r) for r in best.fun),
        n_points=int(s_arr.size),
        target_loss=None if target_loss is None else float(target_loss),
        warnings=tuple(notes),
    )


def fit_wsd_curves(points: Mapping[float, tuple]) -> dict[float, WSDFit]:
    """Fit one E(S) curve per target loss: ``{target_loss: (steps, examples)}``.

    Returns ``{target_loss: WSDFit}``; each fit carries ``b_min`` and ``b_opt``.
    """
    if not points:
        raise CurveFitError("points must map at least one target loss to (steps, examples)")
    out = {}
    for target, pair in points.items():
        try:
            s_vals, e_vals = pair
        except (TypeError, ValueError):
            raise CurveFitError(f"points[{target!r}] must be a (steps, examples) pair") from None
        out[float(target)] = fit_wsd_curve(s_vals, e_vals, target_loss=float(target))
    return out
