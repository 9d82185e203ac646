"""Fast catch-up after a small-to-large batch switch (Wang et al. 2026; docs/science.md section 4).

Two runs at the same constant learning rate: ``batch_small`` for ``switch_step`` steps then
``batch_large``, against ``batch_large`` from the start. At equal steps (equal intrinsic time) the
signal terms agree, so in the FSL the gap is only the small batch's extra noise, forgotten through
the kernel::

    gap(tau) = lr (1/b_small - 1/b_large) integral_tau^{t} K(u) (e(t - u) + sigma^2) du
             ~ tau^-(1 - 1/beta)         for  offset << tau << t_switch,

with ``tau`` the intrinsic time since the switch. The catch-up time is the first ``tau`` at which
the gap falls below ``tolerance`` times the large-batch loss. The same measurement runs on the
exact linear-regression risk through :func:`exact_loss_fn`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from bsjax.theory.errors import TheoryInputError, check_int, check_number
from bsjax.theory.fsl import FSL
from bsjax.theory.schedules import Schedule, Segment

LossFn = Callable[[Schedule, np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class CatchUp:
    """Loss gap after the switch, at ``steps_after_R`` steps past ``switch_step``."""

    lr: float
    batch_small: int
    batch_large: int
    switch_step: int
    steps_after_R: np.ndarray
    loss_switched_R: np.ndarray
    loss_large_R: np.ndarray
    tolerance: float
    catch_up_steps: float | None
    decay_exponent: float
    predicted_decay_exponent: float | None
    examples_saved: int

    @property
    def gap_R(self) -> np.ndarray:
        return self.loss_switched_R - self.loss_large_R

    @property
    def relative_gap_R(self) -> np.ndarray:
        return self.gap_R / self.loss_large_R

    @property
    def catch_up_time(self) -> float | None:
        return None if self.catch_up_steps is None else self.catch_up_steps * self.lr

    def to_json(self) -> dict:
        return {
            "lr": self.lr,
            "batch_small": self.batch_small,
            "batch_large": self.batch_large,
            "switch_step": self.switch_step,
            "switch_time": self.switch_step * self.lr,
            "tolerance": self.tolerance,
            "catch_up_steps": self.catch_up_steps,
            "catch_up_time": self.catch_up_time,
            "catch_up_fraction_of_switch_time": (
                None if self.catch_up_steps is None else self.catch_up_steps / self.switch_step
            ),
            "decay_exponent": self.decay_exponent,
            "predicted_decay_exponent": self.predicted_decay_exponent,
            "examples_saved": self.examples_saved,
            "curve": {
                "steps_after": self.steps_after_R.tolist(),
                "loss_switched": self.loss_switched_R.tolist(),
                "loss_large": self.loss_large_R.tolist(),
            },
        }


def catch_up(
    loss_fn: LossFn | FSL,
    *,
    lr: float,
    batch_small: int,
    batch_large: int,
    switch_step: int,
    horizon_steps: int | None = None,
    tolerance: float = 0.05,
    num_points: int = 80,
    fit_window: tuple[float, float] = (1e-3, 3e-2),
) -> CatchUp:
    """Measure the catch-up of ``loss_fn`` (an :class:`FSL` or ``f(schedule, steps) -> losses``).

    The gap is sampled at ``num_points`` log-spaced step offsets up to ``horizon_steps`` after the
    switch (default: as long again as the first phase). ``decay_exponent`` is the slope of
    ``log gap`` against ``log steps_after`` over offsets in ``fit_window`` times ``switch_step``.
    """
    lr = check_number("lr", lr, gt=0.0)
    b1, b2 = check_int("batch_small", batch_small), check_int("batch_large", batch_large)
    if b2 <= b1:
        raise TheoryInputError(f"batch_large must exceed batch_small={b1}; got {b2}")
    n1 = check_int("switch_step", switch_step)
    horizon = n1 if horizon_steps is None else check_int("horizon_steps", horizon_steps)
    tol = check_number("tolerance", tolerance, gt=0.0, lt=1.0)
    lo, hi = fit_window
    if not 0 < lo < hi <= 1:
        raise TheoryInputError(f"fit_window must satisfy 0 < lo < hi <= 1; got {fit_window}")
    fn = loss_fn.loss if isinstance(loss_fn, FSL) else loss_fn
    predicted = -(1.0 - 1.0 / loss_fn.beta) if isinstance(loss_fn, FSL) else None

    after = np.unique(np.round(np.geomspace(1, horizon, check_int("num_points", num_points, ge=4))))
    after = after.astype(np.int64)
    switched = Schedule((Segment(n1, lr, b1), Segment(horizon, lr, b2)))
    large = Schedule((Segment(n1 + horizon, lr, b2),))
    l_sw = np.asarray(fn(switched, n1 + after), float)
    l_lg = np.asarray(fn(large, n1 + after), float)
    rel = (l_sw - l_lg) / l_lg

    below = np.nonzero(rel <= tol)[0]
    if below.size == 0:
        caught = None
    elif below[0] == 0:
        caught = float(after[0])
    else:  # interpolate log(rel) in log(steps) across the crossing
        j = below[0]
        x0, x1 = np.log(after[j - 1]), np.log(after[j])
        y0, y1 = np.log(rel[j - 1]), np.log(max(rel[j], 1e-300))
        caught = float(np.exp(x0 + (np.log(tol) - y0) / (y1 - y0) * (x1 - x0)))
    window = (after >= lo * n1) & (after <= hi * n1) & (l_sw > l_lg)
    if window.sum() >= 3:
        slope = float(np.polyfit(np.log(after[window]), np.log((l_sw - l_lg)[window]), 1)[0])
    else:
        slope = float("nan")
    return CatchUp(
        lr=lr,
        batch_small=b1,
        batch_large=b2,
        switch_step=n1,
        steps_after_R=after,
        loss_switched_R=l_sw,
        loss_large_R=l_lg,
        tolerance=tol,
        catch_up_steps=caught,
        decay_exponent=slope,
        predicted_decay_exponent=predicted,
        examples_saved=n1 * (b2 - b1),
    )


def exact_loss_fn(problem, *, dtype: str = "float32") -> LossFn:
    """``f(schedule, steps)``: the exact last-iterate risk of :mod:`bsjax.theory.linreg` at ``steps``."""
    from bsjax.theory.linreg import risk_curves

    def fn(schedule: Schedule, steps) -> np.ndarray:
        steps = np.asarray(steps, dtype=np.int64)
        curves = risk_curves(problem, schedule, record_every=1, dtype=dtype)
        return curves.last_GR[0, steps]

    return fn


@dataclasses.dataclass(frozen=True)
class CatchUpScaling:
    """Catch-up time against the switch time for one task."""

    s: float
    beta: float
    task_class: str
    runs: tuple[CatchUp, ...]
    measured_exponent: float | None
    predicted_exponent: float

    def to_json(self) -> dict:
        return {
            "s": self.s,
            "beta": self.beta,
            "task_class": self.task_class,
            "measured_exponent": self.measured_exponent,
            "predicted_exponent_signal_dominated": self.predicted_exponent,
            "runs": [{k: v for k, v in r.to_json().items() if k != "curve"} for r in self.runs],
        }


def catch_up_scaling(
    fsl: FSL,
    *,
    lr: float,
    batch_small: int,
    batch_large: int,
    switch_steps,
    tolerance: float = 0.05,
) -> CatchUpScaling:
    """Catch-up time ``tau_c`` at several switch steps and the slope of ``log tau_c`` on ``log t_s``.

    Derived from the gap formula of the module docstring: while the large-batch loss is
    dominated by the signal ``e(t) ~ t^-s`` the relative gap is ``~ tau^-(1-1/beta) t^s``, so
    ``tau_c ~ t_s^(s / (1 - 1/beta))``; the catch-up is fast (``tau_c / t_s -> 0``) exactly when
    ``s < 1 - 1/beta``, the hard tasks. Once the large-batch loss reaches its noise floor,
    ``tau_c`` stops growing.
    """
    runs = tuple(
        catch_up(
            fsl,
            lr=lr,
            batch_small=batch_small,
            batch_large=batch_large,
            switch_step=int(n),
            tolerance=tolerance,
        )
        for n in sorted({check_int("switch_steps", n) for n in switch_steps})
    )
    ok = [(r.switch_step, r.catch_up_steps) for r in runs if r.catch_up_steps is not None]
    slope = (
        float(np.polyfit(np.log([a for a, _ in ok]), np.log([b for _, b in ok]), 1)[0])
        if len(ok) >= 2
        else None
    )
    return CatchUpScaling(
        s=fsl.s,
        beta=fsl.beta,
        task_class=fsl.task_class,
        runs=runs,
        measured_exponent=slope,
        predicted_exponent=fsl.s / (1.0 - 1.0 / fsl.beta),
    )
