"""The hybrid evaluation schedule of the CBS protocol, and steps to target.

Zhang et al. evaluate at every power of two, every 1k steps, and densely near
the expected run length n, so that the part of training where the target loss
is crossed is sampled densely. A run's expected length comes from linear
scaling of the reference run (``n_B = ref_steps * ref_B / B``: the same
tokens at every batch size).

The dense part here is geometric by default: ``n * r**k`` for integer k, from
``dense_from * n`` up to the step cap, with a fixed ratio ``r`` (1.05). A
crossing then lies in a bracket of the same *relative* width (5%) at every
batch size, whether the run crosses early (small batches beat linear
scaling) or late (large batches saturate). The paper's grid (0.70n, 0.75n,
..., 1.0n, continued at the same spacing up to the cap) is ``dense_ratio=None``;
its bracket is relatively wider for a run that crosses before 0.7n, which is
where small batches cross, and that biased steps to target upward there.

Steps to target interpolates between the two evaluations that bracket the
target (:func:`target_crossing`), so the grid's granularity leaves no bias of
its own sign; :func:`steps_to_target` keeps the first-evaluation rule the
training loop stops on.

This module is pure Python (no numpy, no I/O) so the training loop can use it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping

DEFAULT_EVERY = 1000
DEFAULT_DENSE_RATIO = 1.05
# Where the dense grid starts, as a fraction of the expected steps: the
# geometric grid starts early enough for small batches that beat linear
# scaling (seen at 0.6n on the demo); the paper's linear grid starts at 0.7n.
DEFAULT_DENSE_FROM_GEOMETRIC = 0.25
DEFAULT_DENSE_FROM = 0.7
DEFAULT_DENSE_EVERY = 0.05
DEFAULT_MIN_EXPECTED_STEPS = 100


class EvalScheduleError(ValueError):
    """A bad argument to the evaluation schedule."""


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise EvalScheduleError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value <= 1):
        raise EvalScheduleError(f"{name} must be a fraction in (0, 1], got {value!r}")
    return float(value)


def eval_steps(
    expected_steps: int,
    every: int = DEFAULT_EVERY,
    dense_from: float | None = None,
    dense_every: float = DEFAULT_DENSE_EVERY,
    max_steps: int | None = None,
    *,
    dense_beyond: bool = True,
    dense_ratio: float | None = DEFAULT_DENSE_RATIO,
) -> list[int]:
    """Sorted, unique steps (>= 1) at which to evaluate.

    The union of: every power of two, every multiple of ``every``, and a
    dense grid near ``n = expected_steps``. The schedule ends at
    ``max_steps`` when given (else at ``n``); the dense grid continues past
    ``n`` up to ``max_steps`` when ``dense_beyond`` is true.

    - ``dense_ratio=r`` (default 1.05): the geometric grid ``n * r**k``
      (rounded half up) from ``dense_from * n`` (default 0.25); it holds
      ``n`` itself.
    - ``dense_ratio=None``: the paper's linear grid ``f * n`` for ``f =
      dense_from, dense_from + dense_every, ...`` (default 0.7 by 0.05),
      keeping the spacing ``dense_every * n`` past ``n``.
    """
    n = _check_int("expected_steps", expected_steps, 1)
    _check_int("every", every, 1)
    if dense_from is None:
        dense_from = DEFAULT_DENSE_FROM if dense_ratio is None else DEFAULT_DENSE_FROM_GEOMETRIC
    start = _check_fraction("dense_from", dense_from)
    spacing = _check_fraction("dense_every", dense_every)
    limit = n if max_steps is None else _check_int("max_steps", max_steps, 1)
    if dense_ratio is not None and (
        isinstance(dense_ratio, bool)
        or not isinstance(dense_ratio, (int, float))
        or not 1.0 < dense_ratio <= 2.0
    ):
        raise EvalScheduleError(
            f"dense_ratio must be a number in (1, 2] (e.g. 1.05), or None, got {dense_ratio!r}"
        )

    steps = set()
    p = 1
    while p <= limit:
        steps.add(p)
        p *= 2
    steps.update(range(every, limit + 1, every))
    end_fraction = limit / n if (dense_beyond and limit > n) else 1.0
    # Index grid points by an integer k so the grid cannot accumulate drift;
    # halves round up (112.5 -> 113), with a hair of slack for float error.
    if dense_ratio is None:
        fractions = _linear_fractions(start, spacing, end_fraction)
    else:
        fractions = _geometric_fractions(start, float(dense_ratio), end_fraction)
    for fraction in fractions:
        step = int(math.floor(fraction * n + 0.5 + 1e-9))
        if 1 <= step <= limit:
            steps.add(step)
    return sorted(steps)


def _linear_fractions(start: float, spacing: float, end: float) -> list[float]:
    out, k = [], 0
    while start + k * spacing <= end + 1e-9:
        out.append(start + k * spacing)
        k += 1
    return out


def _geometric_fractions(start: float, ratio: float, end: float) -> list[float]:
    log_r = math.log(ratio)
    k_lo = math.ceil(math.log(start) / log_r - 1e-9)
    k_hi = math.floor(math.log(end) / log_r + 1e-9)
    return [ratio**k for k in range(k_lo, k_hi + 1)]


def expected_steps_for(
    batch_size: int,
    ref_batch_size: int,
    ref_steps: int,
    *,
    floor: int = DEFAULT_MIN_EXPECTED_STEPS,
) -> int:
    """Expected run length at ``batch_size`` by linear scaling from a reference run.

    ``ceil(ref_steps * ref_batch_size / batch_size)``, never below ``floor``
    (a very large batch still needs enough steps for a dense grid to mean
    something).
    """
    b = _check_int("batch_size", batch_size, 1)
    rb = _check_int("ref_batch_size", ref_batch_size, 1)
    rs = _check_int("ref_steps", ref_steps, 1)
    fl = _check_int("floor", floor, 1)
    return max(fl, math.ceil(rs * rb / b))


def _eval_points(eval_records: Iterable[Mapping], key: str) -> list[Mapping]:
    """Eval records with a finite ``key``, one per step (the last line wins), sorted by step.

    Raises :class:`EvalScheduleError` if eval records exist but none has ``key``.
    """
    seen_key = seen_eval = False
    by_step: dict[int, Mapping] = {}
    for rec in eval_records:
        if rec.get("kind", "eval") != "eval":
            continue
        seen_eval = True
        value = rec.get(key)
        if value is None:
            continue
        seen_key = True
        if isinstance(value, (int, float)) and math.isfinite(value):
            by_step[int(rec["step"])] = rec
    if seen_eval and not seen_key:
        raise EvalScheduleError(
            f"no eval record has the key {key!r}; pass key='eval_loss' for runs without EWA"
        )
    return [by_step[s] for s in sorted(by_step)]


def _check_target(target) -> None:
    if not isinstance(target, (int, float)) or not math.isfinite(target):
        raise EvalScheduleError(f"target must be a finite loss, got {target!r}")


def first_eval_at_target(
    eval_records: Iterable[Mapping], target: float, key: str = "ewa_eval_loss"
) -> Mapping | None:
    """The first evaluation record (by step) whose ``key`` is at or below ``target``.

    Records with a ``kind`` other than ``"eval"`` are skipped, as are records
    lacking ``key`` or holding a non-finite value. Raises
    :class:`EvalScheduleError` if no eval record has ``key`` at all, which
    usually means the wrong key (e.g. a run without EWA: use ``eval_loss``).
    """
    _check_target(target)
    for rec in _eval_points(eval_records, key):
        if rec[key] <= target:
            return rec
    return None


def steps_to_target(
    eval_records: Iterable[Mapping], target: float, key: str = "ewa_eval_loss"
) -> int | None:
    """First evaluated step whose EWA eval loss is <= ``target``, or None if never reached.

    This is the rule the training loop stops on; :func:`target_crossing`
    interpolates the crossing between it and the evaluation before it.
    """
    rec = first_eval_at_target(eval_records, target, key)
    return None if rec is None else int(rec["step"])


@dataclasses.dataclass(frozen=True)
class TargetCrossing:
    """Where a run's eval loss crosses the target, interpolated between two evaluations.

    ``steps`` (a float) interpolates linearly in log-steps against the loss
    between the last evaluation above the target (``before_step``,
    ``before_loss``) and the first at or below it (``after_step``,
    ``after_loss``; ``after_step`` is the first-evaluation rule's answer).
    ``tokens`` and ``examples`` interpolate the same way when the records hold
    them. ``method`` is ``"interpolated"``, or ``"first_eval"`` when no
    evaluation above the target precedes the first one below it (the
    crossing lies before the first evaluation; ``steps = after_step``).
    """

    steps: float
    tokens: float | None
    examples: float | None
    before_step: int | None
    before_loss: float | None
    after_step: int
    after_loss: float
    method: str

    @property
    def bracket_ratio(self) -> float | None:
        """``after_step / before_step``: the relative width of the bracket (None without one)."""
        return None if self.before_step is None else self.after_step / self.before_step


def target_crossing(
    eval_records: Iterable[Mapping], target: float, key: str = "ewa_eval_loss"
) -> TargetCrossing | None:
    """The interpolated crossing of ``target`` by ``key``, or None if the target was never reached.

    Why log-steps against the loss: near the target the loss falls like a
    power of the step count, which is close to a straight line in log-steps
    over one bracket (5% wide on the default grid), so the interpolation
    error is second order in the bracket's log-width (below 0.1% of steps
    for a power law there). The loss itself rather than its logarithm: across
    one bracket the loss changes by well under 1%, where the two agree to
    second order, and the target stays exactly representable.
    """
    _check_target(target)
    points = _eval_points(eval_records, key)
    hit = next((i for i, rec in enumerate(points) if rec[key] <= target), None)
    if hit is None:
        return None
    after = points[hit]
    if hit == 0 or int(after["step"]) <= 0:
        return TargetCrossing(
            float(after["step"]),
            _opt(after.get("tokens")),
            _opt(after.get("examples")),
            None,
            None,
            int(after["step"]),
            float(after[key]),
            "first_eval",
        )
    before = points[hit - 1]
    l0, l1 = float(before[key]), float(after[key])
    w = (l0 - target) / (l0 - l1)  # in (0, 1]: l0 > target >= l1

    def log_interp(field: str) -> float | None:
        v0, v1 = before.get(field), after.get(field)
        if not (isinstance(v0, (int, float)) and isinstance(v1, (int, float))) or v0 <= 0:
            return None
        if w >= 1.0:  # the later evaluation sits exactly at the target
            return float(v1)
        return math.exp(math.log(v0) + w * (math.log(v1) - math.log(v0)))

    return TargetCrossing(
        log_interp("step"),
        log_interp("tokens"),
        log_interp("examples"),
        int(before["step"]),
        l0,
        int(after["step"]),
        l1,
        "interpolated",
    )


def _opt(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None
