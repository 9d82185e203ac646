"""Batch-size schedules that minimise the FSL's final loss under a fixed data budget.

Setting (docs/science.md section 4): constant learning rate ``lr``, so intrinsic time is ``t = lr * steps``;
a schedule is a batch size ``b(z)`` over intrinsic time ``z in [0, T]`` using
``sum_k b_k = integral b(z) dz / lr = D`` examples. The final loss is

    L(T) = e(T) + integral_0^T w_T(z) / b(z) dz,   w_T(z) = lr K(T - z) (e(z) + sigma^2).

For fixed ``T`` this is separable in ``z``: with a multiplier ``mu`` for the budget, each ``z``
takes the ``b`` minimising ``w_T(z) / b + mu b``, i.e. ``b(z) = sqrt(w_T(z) / mu)`` clipped to
``[b_min, b_max]`` for continuous batches, or the best of the given bucket sizes. ``mu`` is set by
bisection so that the budget is met, and ``T`` by a 1-D search. The bucketed schedule is then
rounded to whole steps and corrected so that it uses exactly ``D`` examples.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from functools import reduce

import numpy as np
from scipy import optimize

from bsjax.theory.errors import TheoryInputError, check_int, check_number
from bsjax.theory.fsl import FSL, predicted_switch_exponent, quadrature
from bsjax.theory.schedules import Schedule


# ---------------------------------------------------------------------------------------------
# continuous and bucketed optimal schedules
@dataclasses.dataclass(frozen=True)
class ContinuousSchedule:
    """The optimal continuous ``b(z)``; arrays are over quadrature nodes ``z_N`` (sorted)."""

    total_time: float
    lr: float
    data_size: int
    time_N: np.ndarray
    batch_N: np.ndarray
    examples_N: np.ndarray
    loss: float
    min_batch: float
    fraction_at_min: float

    @property
    def total_steps(self) -> float:
        return self.total_time / self.lr

    @property
    def examples_used(self) -> float:
        return float(self.examples_N[-1])

    @property
    def measured_class(self) -> str:
        """``'hard'`` when the schedule sits at the smallest batch for most of training."""
        return "hard" if self.fraction_at_min > 0.5 else "easy"


@dataclasses.dataclass(frozen=True)
class BucketSchedule:
    """The optimal schedule over given bucket sizes, in whole steps, using exactly ``data_size``."""

    schedule: Schedule
    data_size: int
    buckets: tuple[int, ...]
    loss: float
    relaxed_loss: float

    def to_json(self) -> dict:
        return {
            "segments": [
                {"batch": s.batch, "steps": s.steps, "examples": s.steps * s.batch}
                for s in self.schedule.segments
            ],
            "examples": self.schedule.num_examples,
            "data_size": self.data_size,
            "steps": self.schedule.num_steps,
            "loss": self.loss,
            "relaxed_loss": self.relaxed_loss,
            "buckets": list(self.buckets),
        }


def optimal_continuous_schedule(
    fsl: FSL, *, lr: float, data_size: int, min_batch: float = 1.0, max_batch: float | None = None
) -> ContinuousSchedule:
    """Minimise the FSL final loss over continuous ``b(z)`` in ``[min_batch, max_batch]`` (see module)."""
    lr, D, b_lo, b_hi = _check_budget(lr, data_size, min_batch, max_batch)
    t_lo, t_hi = lr * D / b_hi, lr * D / b_lo

    def solve(T):
        z, w, wt = _weights(fsl, lr, T)
        mu = _solve_mu(lambda m: np.clip(np.sqrt(wt / m), b_lo, b_hi), w, lr * D, wt)
        b = np.clip(np.sqrt(wt / mu), b_lo, b_hi)
        return z, w, b, float(fsl.floor() + fsl.signal(T) + np.sum(w * wt / b))

    T = _argmin_log(lambda T: solve(T)[3], t_lo, t_hi)
    z, w, b, loss = solve(T)
    examples = np.cumsum(w * b) / lr
    at_min = float(np.sum(w[b <= b_lo * (1 + 1e-9)]) / T)
    return ContinuousSchedule(
        total_time=T,
        lr=lr,
        data_size=D,
        time_N=z,
        batch_N=b,
        examples_N=examples,
        loss=loss,
        min_batch=b_lo,
        fraction_at_min=at_min,
    )


def optimal_bucket_schedule(
    fsl: FSL, *, lr: float, data_size: int, buckets: Sequence[int]
) -> BucketSchedule:
    """Minimise the FSL final loss over piecewise-constant schedules with batches in ``buckets``.

    The result uses exactly ``data_size`` examples in whole steps (``data_size`` must be a multiple
    of the buckets' greatest common divisor).
    """
    buckets = tuple(sorted({check_int("buckets", b) for b in buckets}))
    if not buckets:
        raise TheoryInputError("buckets must hold at least one batch size")
    lr, D, _, _ = _check_budget(lr, data_size, buckets[0], buckets[-1])
    g = reduce(math.gcd, buckets)
    if D % g:
        raise TheoryInputError(
            f"data_size D={D} cannot be split exactly into batches of sizes "
            f"{list(buckets)}: make D a multiple of their gcd {g}"
        )
    b_K = np.array(buckets, float)

    def pick(wt, mu):
        return b_K[np.argmin(wt[:, None] / b_K[None, :] + mu * b_K[None, :], axis=1)]

    def solve(T):
        z, w, wt = _weights(fsl, lr, T)
        mu = _solve_mu(lambda m: pick(wt, m), w, lr * D, wt)
        b = pick(wt, mu)
        return z, w, b, float(fsl.floor() + fsl.signal(T) + np.sum(w * wt / b))

    T = _argmin_log(lambda T: solve(T)[3], lr * D / buckets[-1], lr * D / buckets[0])
    z, w, b, relaxed = solve(T)
    schedule = _to_whole_steps(z, w, b, lr, D, buckets)
    return BucketSchedule(
        schedule=schedule,
        data_size=D,
        buckets=buckets,
        loss=fsl.final_loss(schedule),
        relaxed_loss=relaxed,
    )


# ---------------------------------------------------------------------------------------------
# switch points of a piecewise-constant schedule
SWITCH_SWEEPS = 20  # coordinate-descent sweeps at most (several switch points)
SWEEP_TOL = 1e-9  # ... stopping when a sweep improves the loss by less (relative)


def phase_loss(
    fsl: FSL, lr: float, sizes: Sequence[float], phase_examples: Sequence[float]
) -> float:
    """FSL final loss of ``phase_examples[i]`` examples at batch ``sizes[i]``, in order (fractional steps)."""
    times, rates, t = [], [], 0.0
    for batch, examples in zip(sizes, phase_examples):
        t = t + lr * examples / batch
        times.append(t)
        rates.append(lr / batch)
    return fsl.loss_at_time(t, times, rates)


def two_phase_loss(
    fsl: FSL, lr: float, batch1: float, batch2: float, data_size: float, switch_examples: float
) -> float:
    """FSL final loss of ``batch1`` for ``switch_examples`` examples then ``batch2`` (fractional steps)."""
    return phase_loss(fsl, lr, (batch1, batch2), (switch_examples, data_size - switch_examples))


@dataclasses.dataclass(frozen=True)
class SwitchSolution:
    """Best switch points between increasing batch ``sizes`` using ``data_size`` examples in all."""

    sizes: tuple[int, ...]
    data_size: int
    switch_examples: tuple[float, ...]  # cumulative examples at each switch (len(sizes) - 1)
    remaining_fraction: float  # (D - last switch) / D, as searched: the share of the data after it
    loss: float
    constant_losses: tuple[float, ...]  # the loss of a constant schedule at each size

    def phase_examples(self) -> list[float]:
        bounds = [0.0, *self.switch_examples, float(self.data_size)]
        return [b - a for a, b in zip(bounds, bounds[1:])]


def optimal_switches(
    fsl: FSL, *, lr: float, sizes: Sequence[int], data_size: int, sweeps: int = SWITCH_SWEEPS
) -> SwitchSolution:
    """Switch points minimising the final loss of phases at ``sizes`` under a ``data_size`` budget.

    Each switch point is searched between its neighbours in log of the share of that interval
    left after it (at least one batch of the next size, since for hard tasks the optimum lies
    close to the end); several switch points are found by coordinate descent, sweeping until a
    sweep no longer lowers the loss. A switch at the start of its interval skips the phase
    before it. With two sizes this is one search, :func:`optimal_switch`.
    """
    lr = check_number("lr", lr, gt=0.0)
    sizes = tuple(check_int("sizes", b) for b in sizes)
    if len(sizes) < 2 or any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise TheoryInputError(f"sizes must hold at least two increasing batch sizes; got {sizes}")
    D = check_int("data_size", data_size)
    if sizes[-1] > D:
        raise TheoryInputError(f"data_size D={D} must be >= the largest batch {sizes[-1]}")

    def loss_of(bounds):
        full = [0.0, *bounds, D]
        return phase_loss(fsl, lr, sizes, [b - a for a, b in zip(full, full[1:])])

    # Start with every switch late, as the hard-task optimum is.
    bounds = [D * (1.0 - 0.5**j) for j in range(1, len(sizes))]
    best, fraction = loss_of(bounds), 0.0
    for _ in range(sweeps):
        before = best
        for j in range(len(bounds)):
            lo = bounds[j - 1] if j > 0 else 0.0
            hi = bounds[j + 1] if j + 1 < len(bounds) else D
            if hi <= lo:  # both neighbours at one point: this switch cannot move
                continue

            def loss_of_fraction(f, j=j, lo=lo, hi=hi):
                return loss_of([*bounds[:j], lo + (hi - lo) * (1.0 - f), *bounds[j + 1 :]])

            fraction = _argmin_log(loss_of_fraction, sizes[j + 1] / (hi - lo), 1.0, points=32)
            bounds[j] = lo + (hi - lo) * (1.0 - fraction)
            best = loss_of_fraction(fraction)
        if len(bounds) == 1 or best >= before - SWEEP_TOL * abs(before):
            break
    last_lo = bounds[-2] if len(bounds) > 1 else 0.0
    return SwitchSolution(
        sizes=sizes,
        data_size=D,
        switch_examples=tuple(bounds),
        remaining_fraction=fraction * ((D - last_lo) / D),
        loss=best,
        constant_losses=tuple(
            phase_loss(fsl, lr, sizes, [D if i == k else 0 for k in range(len(sizes))])
            for i in range(len(sizes))
        ),
    )


@dataclasses.dataclass(frozen=True)
class TwoPhaseSwitch:
    """Best switch from ``batch1`` to ``batch2`` at data size ``D`` (continuous in the switch point)."""

    data_size: int
    switch_examples: float
    remaining_fraction: float
    loss: float
    loss_constant_small: float
    loss_constant_large: float


def optimal_switch(
    fsl: FSL, *, lr: float, batch1: int, batch2: int, data_size: int
) -> TwoPhaseSwitch:
    """Switch point ``P*`` minimising the two-phase final loss; ``(D - P*)/D`` is searched in log space."""
    check_number("lr", lr, gt=0.0)  # named first, as the CLI's flags are checked in this order
    b1, b2 = check_int("batch1", batch1), check_int("batch2", batch2)
    if b2 <= b1:
        raise TheoryInputError(f"batch2 must be larger than batch1={b1}; got {b2}")
    D = check_int("data_size", data_size)
    if b2 > D:
        raise TheoryInputError(f"data_size D={D} must be >= batch2={b2}")
    best = optimal_switches(fsl, lr=lr, sizes=(b1, b2), data_size=D)
    return TwoPhaseSwitch(
        data_size=D,
        switch_examples=best.switch_examples[0],
        remaining_fraction=best.remaining_fraction,
        loss=best.loss,
        loss_constant_small=best.constant_losses[0],
        loss_constant_large=best.constant_losses[1],
    )


@dataclasses.dataclass(frozen=True)
class SwitchScaling:
    s: float
    beta: float
    task_class: str
    points: tuple[TwoPhaseSwitch, ...]
    measured_exponent: float
    predicted_exponent: float

    def to_json(self) -> dict:
        return {
            "s": self.s,
            "beta": self.beta,
            "task_class": self.task_class,
            "predicted_exponent": self.predicted_exponent,
            "measured_exponent": self.measured_exponent,
            "abs_error": abs(self.measured_exponent - self.predicted_exponent),
            "points": [dataclasses.asdict(p) for p in self.points],
        }


def switch_scaling(
    fsl: FSL, *, lr: float, batch1: int, batch2: int, data_sizes: Sequence[int]
) -> SwitchScaling:
    """``P*(D)`` over ``data_sizes`` and the slope of ``log((D - P*)/D)`` against ``log D``."""
    data_sizes = sorted({check_int("data_sizes", d) for d in data_sizes})
    if len(data_sizes) < 2:
        raise TheoryInputError(
            "data_sizes must hold at least two distinct sizes to fit an exponent"
        )
    pts = tuple(
        optimal_switch(fsl, lr=lr, batch1=batch1, batch2=batch2, data_size=D) for D in data_sizes
    )
    slope = float(
        np.polyfit(
            np.log([p.data_size for p in pts]), np.log([p.remaining_fraction for p in pts]), 1
        )[0]
    )
    return SwitchScaling(
        s=fsl.s,
        beta=fsl.beta,
        task_class=fsl.task_class,
        points=pts,
        measured_exponent=slope,
        predicted_exponent=predicted_switch_exponent(fsl.s, fsl.beta),
    )


# ---------------------------------------------------------------------------------------------
def _check_budget(lr, data_size, min_batch, max_batch):
    lr = check_number("lr", lr, gt=0.0)
    D = check_int("data_size", data_size)
    b_lo = check_number("min_batch", min_batch, gt=0.0)
    b_hi = float(D) if max_batch is None else check_number("max_batch", max_batch, ge=b_lo)
    if b_lo > D:
        raise TheoryInputError(f"data_size D={D} must be >= the smallest batch {b_lo:g}")
    return lr, D, b_lo, min(b_hi, float(D))


def _weights(fsl: FSL, lr: float, T: float):
    """Quadrature nodes/weights on [0, T] and the noise weight ``w_T(z)`` at the nodes."""
    z, w = quadrature(0.0, T, T, fsl.signal_offset, fsl.kernel_offset)
    wt = lr * fsl.kernel(T - z) * (fsl.signal(z) + fsl.noise)
    return z, w, wt


def _solve_mu(batch_of_mu, w, budget, wt) -> float:
    """Bisection in log(mu) for ``integral b dz = budget`` (``b`` is non-increasing in ``mu``)."""

    def spent(log_mu):
        return float(np.sum(w * batch_of_mu(math.exp(log_mu)))) - budget

    wmax = float(np.max(wt))
    lo, hi = math.log(wmax) - 120.0, math.log(wmax) + 120.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if spent(mid) > 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13:
            break
    return math.exp(0.5 * (lo + hi))


def _argmin_log(f, lo: float, hi: float, points: int = 24) -> float:
    """Minimise ``f`` over ``[lo, hi]`` in log space: a grid, then bounded Brent around the best."""
    if hi <= lo * (1 + 1e-12):
        return hi
    xs = np.linspace(math.log(lo), math.log(hi), points)
    vals = [f(math.exp(x)) for x in xs]
    j = int(np.argmin(vals))
    a, b = xs[max(j - 1, 0)], xs[min(j + 1, points - 1)]
    res = optimize.minimize_scalar(
        lambda x: f(math.exp(x)), bounds=(a, b), method="bounded", options={"xatol": 1e-7}
    )
    best = res.x if res.fun <= vals[j] else xs[j]
    return float(math.exp(best))


def _to_whole_steps(z, w, b, lr, D, buckets) -> Schedule:
    """Runs of equal bucket in intrinsic time -> whole steps using exactly ``D`` examples."""
    steps_N = w / lr  # steps spent at each node
    runs: list[list] = []
    for bn, sn in zip(b, steps_N):
        if runs and runs[-1][0] == bn:
            runs[-1][1] += sn
        else:
            runs.append([bn, sn])
    batch_J = np.array([int(r[0]) for r in runs])
    n_J = np.floor([r[1] for r in runs]).astype(np.int64)
    rest = D - int(n_J @ batch_J)
    while rest < 0:  # over budget after rounding: drop steps from the largest-batch run
        j = int(np.argmax(np.where(n_J > 0, batch_J, -1)))
        n_J[j] -= 1
        rest += int(batch_J[j])
    coins = sorted(set(batch_J.tolist()) | {buckets[0]})
    for _ in range(64):
        counts = _coin_change(rest, coins)
        if counts is not None:
            break
        j = int(np.argmax(np.where(n_J > 0, batch_J, -1)))  # free up examples and retry
        n_J[j] -= 1
        rest += int(batch_J[j])
    else:
        raise TheoryInputError(
            f"could not split data_size D={D} exactly into buckets {list(buckets)}"
        )
    for coin, k in counts.items():
        if k == 0:
            continue
        idx = np.nonzero(batch_J == coin)[0]
        if idx.size:
            n_J[idx[0]] += k
        else:  # the smallest bucket was unused: it opens the schedule
            batch_J = np.concatenate([[coin], batch_J])
            n_J = np.concatenate([[k], n_J])
    sched = Schedule.from_pairs(list(zip(batch_J.tolist(), n_J.tolist())), lr)
    merged: list[tuple[int, int]] = []
    for seg in sched.segments:
        if merged and merged[-1][0] == seg.batch:
            merged[-1] = (seg.batch, merged[-1][1] + seg.steps)
        else:
            merged.append((seg.batch, seg.steps))
    out = Schedule.from_pairs(merged, lr)
    assert out.num_examples == D, (out.num_examples, D)
    return out


def _coin_change(total: int, coins: Sequence[int]) -> dict[int, int] | None:
    """Non-negative counts with ``sum count * coin = total`` (fewest coins), or None."""
    if total == 0:
        return dict.fromkeys(coins, 0)
    INF = 1 << 60
    best = np.full(total + 1, INF, dtype=np.int64)
    last = np.full(total + 1, -1, dtype=np.int64)
    best[0] = 0
    for v in range(1, total + 1):
        for c in coins:
            if c <= v and best[v - c] + 1 < best[v]:
                best[v] = best[v - c] + 1
                last[v] = c
    if best[total] >= INF:
        return None
    counts = dict.fromkeys(coins, 0)
    v = total
    while v > 0:
        counts[int(last[v])] += 1
        v -= int(last[v])
    return counts
