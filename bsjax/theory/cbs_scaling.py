"""Critical batch size against data size in linear regression (Zhang et al., Corollary 6).

For each data size ``D`` the exact risk of the averaged SGD iterate (``bsjax.theory.linreg``) is
minimised over the learning rate for batch sizes ``B = 1, 2, 4, ...`` (``D // B`` steps each).
``R*(D)`` is the lowest risk found, and the critical batch size ``B*(D)`` is the largest batch
whose best risk stays within ``risk_factor * R*(D)`` (interpolated in log B between the last
batch inside and the first one outside). The default factor 2 measures ``B*`` where the
bias-dominated large-batch branch is already a clean power law; factors close to 1 sit on the
knee, whose pre-asymptotic drift makes the fitted slope converge slowly (e.g. 0.37 instead of 1/3
at a=2, b=3 over D = 2^10..2^20 with factor 1.1, against 0.346 with factor 2).

What is compared with the corollary depends on the regime:

- ``b > a``: the slope of ``log B*`` against ``log D`` is an exponent, compared with
  ``1 - a / min(b, 2a + 1)``.
- ``b <= a``: the corollary predicts that ``B*`` does not grow with ``D`` (exponent 0, a
  plateau; the risk-optimal batch is 1). The result is a plateau test (:class:`PlateauTest`), and
  the fitted slope is reported as a finite-size drift, not as an exponent.

Why a finite-size drift appears for ``b <= a``, from the definition above. The learning rate is
searched up to ``min(stability limit, 1 / lambda_1)``; the stability limit grows with ``B`` and
passes ``1 / lambda_1`` within a few examples per batch (``B_c = 3`` at a=1.6, b=1.4). Above
``B_c`` every batch runs at the same capped learning rate, so its best risk depends on ``D`` only
through the step count ``D / B``, and in this regime it falls only slowly with the steps (the
bias decays like ``steps^-((b - 1) / a)``, ``steps^-0.25`` at a=1.6, b=1.4). ``B*`` is where that
shallow curve crosses ``risk_factor * R*(D)``: with a local log-slope ``p`` of the risk in ``B``,
``B* ~ B_c (risk_factor R*(D) / R(B_c))^(1/p)``, so small changes of ``R(B_c) / R*(D)`` or of
``p`` move ``B*`` by large factors when ``p`` is small (``1/p ~ 4`` here). At finite ``D`` neither
is at its limit: both grow with ``D`` (at a=1.6, b=1.4, dim 32768, noise 0, from D = 2^8 to 2^14:
``R(4) / R*`` 1.09 -> 1.21, ``p`` between B = 8 and 32 0.25 -> 0.27, ``B*`` 42 -> 26), so ``B*`` falls with ``D``. The
truncation at ``dim`` adds to it (the bias falls faster once the learned frontier nears ``dim``):
over the same D, noise 0, the slope is -0.27 at dim 2048, -0.17 at 8192 and -0.12 at 32768. The
label noise is not its source (noise 0 drifts as well; noise 1 raises ``B*``). The corollary's
``B* = O(1)`` is a statement about ``D -> infinity``, which a finite range of ``D`` does not reach;
the plateau test below says whether the measured curve is flat within the grid's resolution.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from bsjax.theory.errors import TheoryInputError, check_int, check_number
from bsjax.theory.linreg import LinRegProblem, risk_curves, stable_lr
from bsjax.theory.schedules import Schedule

# The range in which the defaults (dimension rule, D = 2^10..2^18) were checked to resolve the
# exponent within 0.05 (experiments/theory/cbs_exponent_table.py); outside it the measurement
# still runs, and the result says it is unchecked.
A_RANGE = (1.3, 3.0)
B_MAX_OVER_A = 3.5
_FLAT = 0.005  # relative change per halving below which the small-batch risk counts as flat
# Plateau band for b <= a: the largest max/min ratio of B*(D) over the D range that still counts
# as flat. critical_batch_size refines the crossing on quarter-octave batches (b_in * 2^(k/4)) and
# interpolates inside one such cell (unless B* is the largest batch searched), so the grid alone
# fixes each B* only to within a factor 2^(1/4); two values of one constant B* can therefore
# differ by up to 2^(1/2). A wider band would be a choice, not something the definition gives.
PLATEAU_BAND = 2.0**0.5


def in_checked_range(a: float, b: float) -> bool:
    """Whether ``(a, b)`` lies where the defaults were checked: ``1.3 <= a <= 3``, ``b <= 3.5 a``."""
    return A_RANGE[0] <= a <= A_RANGE[1] and b <= B_MAX_OVER_A * a


def predicted_cbs_exponent(a: float, b: float) -> float:
    """Corollary 6: ``B* ~ D^(1 - a / min(b, 2a + 1))`` for ``b > a``; ``B* = 1`` (exponent 0) otherwise."""
    a = check_number("a", a, gt=1.0)
    b = check_number("b", b, gt=1.0)
    return 1.0 - a / min(b, 2.0 * a + 1.0) if b > a else 0.0


@dataclasses.dataclass(frozen=True)
class PlateauTest:
    """Whether ``B*(D)`` is flat over the measured ``D`` range (the ``b <= a`` prediction).

    ``ratio`` is ``max B* / min B*`` over the range; ``within_band`` is ``ratio <= band``
    (``PLATEAU_BAND``: the grid's resolution, see there). ``slope`` is the least-squares slope of
    ``log B*`` against ``log D``, a finite-size drift rather than an exponent; ``slope_ci95`` its
    95% interval (Student t, ``n - 2`` degrees of freedom; None with two data sizes), and
    ``slope_tolerance = log(band) / log(D_max / D_min)`` the slope that a change of one band over
    the range amounts to. ``consistent``: within the band, and the slope is indistinguishable from
    0 (its interval contains 0, or ``|slope| <= slope_tolerance``).
    """

    band: float
    ratio: float
    min_critical_batch_size: float
    max_critical_batch_size: float
    first_critical_batch_size: float
    last_critical_batch_size: float
    slope: float
    slope_ci95: tuple[float, float] | None
    slope_tolerance: float
    within_band: bool
    slope_ci_contains_zero: bool | None
    slope_within_tolerance: bool
    consistent: bool
    verdict: str

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["slope_finite_size_drift"] = out.pop("slope")
        out["slope_ci95"] = None if self.slope_ci95 is None else list(self.slope_ci95)
        return out


def plateau_test(
    data_sizes: Sequence[float], critical_batch_sizes: Sequence[float], band: float = PLATEAU_BAND
) -> PlateauTest:
    """Classify a measured ``B*(D)`` curve against a plateau (see :class:`PlateauTest`)."""
    D = np.asarray(data_sizes, float)
    B = np.asarray(critical_batch_sizes, float)
    if len(D) < 2 or len(D) != len(B):
        raise TheoryInputError("a plateau test needs B* at two or more data sizes")
    band = check_number("band", band, gt=1.0)
    x, y = np.log(D), np.log(B)
    slope, icpt = np.polyfit(x, y, 1)
    ci = None
    if len(x) > 2:
        resid = y - (slope * x + icpt)
        se = math.sqrt(float(resid @ resid) / (len(x) - 2) / float(((x - x.mean()) ** 2).sum()))
        half = float(stats.t.ppf(0.975, len(x) - 2)) * se
        ci = (float(slope - half), float(slope + half))
    tol = math.log(band) / math.log(D.max() / D.min())
    ratio = float(B.max() / B.min())
    within = ratio <= band
    ci_zero = None if ci is None else ci[0] <= 0.0 <= ci[1]
    slope_ok = abs(slope) <= tol
    consistent = within and (slope_ok or bool(ci_zero))
    first, last = float(B[np.argmin(D)]), float(B[np.argmax(D)])
    ci_txt = "" if ci is None else f", 95% interval [{ci[0]:+.3f}, {ci[1]:+.3f}]"
    detail = (
        f"B* {first:.3g} at D={int(D.min())} -> {last:.3g} at D={int(D.max())}; "
        f"slope (finite-size drift) {slope:+.3f}{ci_txt}, tolerance +-{tol:.3f}"
    )
    if consistent:
        verdict = f"plateau: consistent (B* within x{ratio:.2f} <= x{band:.2f}; {detail})"
    else:
        verdict = (
            f"plateau: not consistent, B* changes by x{ratio:.2f} over the D range "
            f"(band x{band:.2f}; {detail})"
        )
    return PlateauTest(
        band=float(band),
        ratio=ratio,
        min_critical_batch_size=float(B.min()),
        max_critical_batch_size=float(B.max()),
        first_critical_batch_size=first,
        last_critical_batch_size=last,
        slope=float(slope),
        slope_ci95=ci,
        slope_tolerance=float(tol),
        within_band=bool(within),
        slope_ci_contains_zero=ci_zero,
        slope_within_tolerance=bool(slope_ok),
        consistent=bool(consistent),
        verdict=verdict,
    )


@dataclasses.dataclass(frozen=True)
class BatchRisk:
    """Best risk over the learning rate at one batch size (``steps = D // batch``)."""

    batch: int
    steps: int
    lr: float
    risk: float
    stable_lr: float


@dataclasses.dataclass(frozen=True)
class CBSPoint:
    """The measurement at one data size.

    ``optimal_batch`` is the smallest batch within 0.5% of the best risk ``optimal_risk`` (the
    risk-optimal batch; Corollary 6's ``B* = 1`` for ``b <= a``), ``critical_batch_size`` the
    largest batch within ``risk_factor`` of it.
    """

    data_size: int
    critical_batch_size: float
    optimal_batch: int
    optimal_lr: float
    optimal_risk: float
    batches: tuple[BatchRisk, ...]


@dataclasses.dataclass(frozen=True)
class CBSScaling:
    """``B*(D)`` over a grid of data sizes and the fitted slope.

    For ``b > a`` the slope ``measured_exponent`` is compared with ``predicted_exponent``; for
    ``b <= a`` (``plateau`` set) the same slope is only a finite-size drift and the comparison is
    the plateau test. ``comparison``, ``predicted_behaviour`` and ``verdict`` say which.
    """

    a: float
    b: float
    noise: float
    dim: int
    risk_factor: float
    points: tuple[CBSPoint, ...]
    measured_exponent: float
    measured_prefactor: float
    predicted_exponent: float
    regime: str
    plateau: PlateauTest | None = None

    @property
    def comparison(self) -> str:
        """``"plateau"`` for ``b <= a``, ``"exponent"`` for ``b > a``."""
        return "plateau" if self.b <= self.a else "exponent"

    @property
    def predicted_behaviour(self) -> str:
        if self.comparison == "plateau":
            return "B* does not grow with D (exponent 0: a plateau); risk-optimal batch 1"
        return f"B* ~ D^{self.predicted_exponent:.3f}"

    @property
    def verdict(self) -> str:
        if self.plateau is not None:
            return self.plateau.verdict
        diff = self.measured_exponent - self.predicted_exponent
        return (
            f"exponent: measured {self.measured_exponent:.3f} vs predicted "
            f"{self.predicted_exponent:.3f} (difference {diff:+.3f})"
        )

    def to_json(self, with_batches: bool = False) -> dict:
        """A JSON-ready summary (each point's per-batch table only when ``with_batches``)."""
        pts = []
        for p in self.points:
            row = {
                "data_size": p.data_size,
                "critical_batch_size": p.critical_batch_size,
                "optimal_batch": p.optimal_batch,
                "optimal_lr": p.optimal_lr,
                "optimal_risk": p.optimal_risk,
            }
            if with_batches:
                row["batches"] = [dataclasses.asdict(br) for br in p.batches]
            pts.append(row)
        exponent = self.comparison == "exponent"
        return {
            "a": self.a,
            "b": self.b,
            "noise": self.noise,
            "dim": self.dim,
            "risk_factor": self.risk_factor,
            "regime": self.regime,
            "comparison": self.comparison,
            "predicted_behaviour": self.predicted_behaviour,
            "verdict": self.verdict,
            "predicted_exponent": self.predicted_exponent,
            # for b <= a the slope is a finite-size drift (in "plateau"), not an exponent
            "measured_exponent": self.measured_exponent if exponent else None,
            "abs_error": abs(self.measured_exponent - self.predicted_exponent)
            if exponent
            else None,
            "measured_prefactor": self.measured_prefactor if exponent else None,
            "plateau": None if self.plateau is None else self.plateau.to_json(),
            "predicted_critical_batch_size": 1 if self.b <= self.a else None,
            "risk_optimal_batches": [p.optimal_batch for p in self.points],
            "in_checked_range": in_checked_range(self.a, self.b),
            "points": pts,
        }


def best_risk_at_batch(
    problem: LinRegProblem, data_size: int, batch: int, *, dtype: str = "float32"
) -> BatchRisk:
    """Minimise the averaged iterate's final risk over the learning rate at one (D, B).

    Learning rates are searched up to ``min(stability limit, 1 / lambda_1)``, the step-size
    condition of Theorem 5 (``lr <~ min(B / tr H, 1 / ||H||)``); above ``1 / lambda_1`` the top
    modes oscillate and the averaged iterate gains from the cancellation, a parity effect in the
    step count that is not the paper's regime. A 16-point geometric grid from that cap down by
    2^10, an 8-point refinement around the best point, then a parabola in (log lr, log risk)
    through the best refined point and its neighbours.
    """
    steps = data_size // batch
    if steps < 1:
        raise TheoryInputError(f"data_size D={data_size} must be >= batch size B={batch}")
    lr_stable = stable_lr(problem, batch)
    lr_max = min(0.995 * lr_stable, 1.0 / float(problem.eigenvalues()[0]))

    def risks(lrs):
        sched = [Schedule.constant(float(g), batch, steps=steps) for g in lrs]
        return risk_curves(problem, sched, num_records=1, dtype=dtype).final_averaged_G

    coarse = lr_max * 2.0 ** (-2.0 * np.arange(16) / 3.0)
    r_c = risks(coarse)
    j = int(np.nanargmin(r_c))
    hi = lr_max if j == 0 else coarse[j - 1]
    lo = coarse[min(j + 1, len(coarse) - 1)] * (1.0 if j + 1 < len(coarse) else 0.5)
    fine = np.geomspace(lo, hi, 8)
    r_f = risks(fine)
    lrs, idx = np.unique(np.concatenate([coarse, fine]), return_index=True)
    rs = np.concatenate([r_c, r_f])[idx]
    k = int(np.nanargmin(rs))
    best_lr, best = float(lrs[k]), float(rs[k])
    if 0 < k < len(lrs) - 1 and np.all(np.isfinite(rs[k - 1 : k + 2])):
        vertex = _parabola_min(np.log(lrs[k - 1 : k + 2]), np.log(rs[k - 1 : k + 2]))
        if vertex is not None:
            best_lr, best = float(np.exp(vertex[0])), float(min(best, np.exp(vertex[1])))
    return BatchRisk(batch=batch, steps=steps, lr=best_lr, risk=best, stable_lr=float(lr_stable))


def _parabola_min(x, y):
    """Vertex ``(x, y)`` of the parabola through three points with increasing ``x``, if convex and inside."""
    (x0, x1, x2), (y0, y1, y2) = x, y
    d01, d12 = (y1 - y0) / (x1 - x0), (y2 - y1) / (x2 - x1)
    curv = (d12 - d01) / (x2 - x0)
    if curv <= 0:
        return None
    xv = 0.5 * (x0 + x1) - d01 / (2.0 * curv)
    if not x0 <= xv <= x2:
        return None
    return xv, y1 + d01 * (xv - x1) + curv * (xv - x0) * (xv - x1)


def critical_batch_size(
    problem: LinRegProblem, data_size: int, *, risk_factor: float = 2.0, dtype: str = "float32"
) -> CBSPoint:
    """``B*(D)``: the largest batch whose best risk is within ``risk_factor * R*(D)``.

    Batches are visited from ``D / 2`` downwards in factors of 2 and the descent stops once the
    best risk has stopped improving by more than 0.5% for three halvings (the flat small-batch
    region), or at ``B = 1``. Between the last batch inside the factor and the next
    power of two, three intermediate batches refine the crossing, which is then interpolated.
    """
    D = check_int("data_size", data_size, ge=4)
    factor = check_number("risk_factor", risk_factor, gt=1.0, le=100.0)
    top = 2 ** int(math.floor(math.log2(D / 2)))
    rows: dict[int, BatchRisk] = {}
    B, flat = top, 0
    while B >= 1:
        rows[B] = best_risk_at_batch(problem, D, B, dtype=dtype)
        if 2 * B in rows:
            improving = rows[B].risk < rows[2 * B].risk * (1.0 - _FLAT)
            within = rows[B].risk <= (1.0 + _FLAT) * min(r.risk for r in rows.values())
            flat = flat + 1 if (not improving and within) else 0
        if flat >= 3:
            break
        B //= 2
    best_risk = min(r.risk for r in rows.values())
    limit = factor * best_risk
    inside = [b for b, r in rows.items() if r.risk <= limit]
    b_in = max(inside)
    if 2 * b_in in rows:  # refine the crossing between b_in and 2 b_in
        for k in (1, 2, 3):
            bk = int(round(b_in * 2 ** (k / 4)))
            if bk not in rows and b_in < bk < 2 * b_in:
                rows[bk] = best_risk_at_batch(problem, D, bk, dtype=dtype)
    best_risk = min(r.risk for r in rows.values())
    limit = factor * best_risk
    ordered = sorted(rows)
    inside = [b for b in ordered if rows[b].risk <= limit]
    b_in = max(inside)
    above = [b for b in ordered if b > b_in]
    if above:
        b_out = above[0]
        x0, x1 = math.log(b_in), math.log(b_out)
        y0, y1 = math.log(rows[b_in].risk), math.log(rows[b_out].risk)
        frac = (math.log(limit) - y0) / (y1 - y0) if y1 > y0 else 0.0
        b_star = math.exp(x0 + min(max(frac, 0.0), 1.0) * (x1 - x0))
    else:
        b_star = float(b_in)
    # the small-batch region is flat, so its argmin is arbitrary: report the smallest batch
    # within _FLAT of the best risk as the risk-optimal one
    best = min(
        (rows[b] for b in ordered if rows[b].risk <= (1.0 + _FLAT) * best_risk),
        key=lambda r: r.batch,
    )
    return CBSPoint(
        data_size=D,
        critical_batch_size=b_star,
        optimal_batch=best.batch,
        optimal_lr=best.lr,
        optimal_risk=best.risk,
        batches=tuple(rows[b] for b in ordered),
    )


def default_dim(a: float, b: float, max_data_size: int) -> int:
    """A dimension far enough beyond the learned frontier ``k* ~ D^(1/min(b, 2a+1))``.

    The modes beyond ``dim`` hold ``~ (k*/dim)^(b-1)`` of the unlearned (bias) risk; the default
    keeps that near 1% so the truncated problem still shows the infinite-dimensional rates. Capped
    at 8192; for ``b`` close to 1 the cap binds and the truncation shows (see ``regime``).
    """
    frontier = max_data_size ** (1.0 / min(max(b, a), 2.0 * a + 1.0))
    return int(min(max(256, frontier * 100.0 ** (1.0 / (b - 1.0))), 8192))


def cbs_scaling(
    a: float,
    b: float,
    *,
    noise: float = 1.0,
    data_sizes: Sequence[int] | None = None,
    dim: int | None = None,
    risk_factor: float = 2.0,
    dtype: str = "float32",
) -> CBSScaling:
    """Measure ``B*(D)`` over ``data_sizes`` (default ``2^10 .. 2^18``) and fit its slope.

    For ``b <= a`` the result also carries the plateau test (:func:`plateau_test`).
    """
    a = check_number("a", a, gt=1.0, why="capacity exponent; the spectrum i^-a must be summable")
    b = check_number("b", b, gt=1.0, why="source exponent; the initial risk must be finite")
    if data_sizes is None:
        data_sizes = [2**k for k in range(10, 19, 2)]
    data_sizes = sorted({check_int("data_sizes", d, ge=16) for d in data_sizes})
    if len(data_sizes) < 2:
        raise TheoryInputError(
            "data_sizes must hold at least two distinct sizes to fit an exponent"
        )
    if dim is None:
        dim = default_dim(a, b, data_sizes[-1])
    problem = LinRegProblem(a=a, b=b, noise=noise, dim=dim)
    points = tuple(
        critical_batch_size(problem, D, risk_factor=risk_factor, dtype=dtype) for D in data_sizes
    )
    x = np.log([p.data_size for p in points])
    y = np.log([p.critical_batch_size for p in points])
    slope, icpt = np.polyfit(x, y, 1)
    if b <= a:
        regime = "b <= a: bias-dominated, B* = O(1)"
    elif b < 2 * a + 1:
        regime = "a < b < 2a+1: B* ~ D^(1 - a/b)"
    else:
        regime = "b >= 2a+1: B* ~ D^(1 - a/(2a+1))"
    return CBSScaling(
        a=a,
        b=b,
        noise=float(noise),
        dim=int(dim),
        risk_factor=float(risk_factor),
        points=points,
        measured_exponent=float(slope),
        measured_prefactor=float(np.exp(icpt)),
        predicted_exponent=predicted_cbs_exponent(a, b),
        regime=regime,
        plateau=plateau_test([p.data_size for p in points], [p.critical_batch_size for p in points])
        if b <= a
        else None,
    )
