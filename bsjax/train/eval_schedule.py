"""The hybrid evaluation schedule of the CBS protocol, and steps to target.

Zhang et al. evaluate at every power of two, every 1k steps, and at
0.70n, 0.75n, ..., 1.0n of the expected run length n, so that the end of
training, where the target loss is crossed, is sampled densely. A run's
expected length comes from linear scaling of the reference run
(``n_B = ref_steps * ref_B / B``). Above the critical batch size runs take
longer than linear scaling predicts, so when a step cap beyond n is given the
dense grid continues past n (1.05n, 1.10n, ...) up to the cap.

This module is pure Python (no numpy, no I/O) so the training loop can use it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

DEFAULT_EVERY = 1000
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
    dense_from: float = DEFAULT_DENSE_FROM,
    dense_every: float = DEFAULT_DENSE_EVERY,
    max_steps: int | None = None,
    *,
    dense_beyond: bool = True,
) -> list[int]:
    """Sorted, unique steps (>= 1) at which to evaluate.

    The union of: every power of two, every multiple of ``every``, and
    ``f * expected_steps`` rounded half up for ``f = dense_from, dense_from +
    dense_every, ...`` up to 1. The schedule ends at ``max_steps`` when given
    (else at ``expected_steps``); if ``max_steps`` exceeds ``expected_steps``
    and ``dense_beyond`` is true, the dense grid keeps its spacing of
    ``dense_every * expected_steps`` up to ``max_steps``.
    """
    n = _check_int("expected_steps", expected_steps, 1)
    _check_int("every", every, 1)
    start = _check_fraction("dense_from", dense_from)
    spacing = _check_fraction("dense_every", dense_every)
    limit = n if max_steps is None else _check_int("max_steps", max_steps, 1)

    steps = set()
    p = 1
    while p <= limit:
        steps.add(p)
        p *= 2
    steps.update(range(every, limit + 1, every))
    end_fraction = limit / n if (dense_beyond and limit > n) else 1.0
    # Index grid points by an integer k so 0.7 + k * 0.05 cannot accumulate
    # drift; halves round up (112.5 -> 113), with a hair of slack for float error.
    k = 0
    while True:
        fraction = start + k * spacing
        if fraction > end_fraction + 1e-9:
            break
        step = int(math.floor(fraction * n + 0.5 + 1e-9))
        if 1 <= step <= limit:
            steps.add(step)
        k += 1
    return sorted(steps)


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


class EvalSchedule:
    """A fixed set of evaluation steps with O(1) membership."""

    def __init__(self, steps: Iterable[int]):
        self.steps: tuple[int, ...] = tuple(sorted({int(s) for s in steps}))
        self._set = frozenset(self.steps)

    @classmethod
    def hybrid(cls, expected_steps: int, **kwargs) -> EvalSchedule:
        """The hybrid schedule of :func:`eval_steps`."""
        return cls(eval_steps(expected_steps, **kwargs))

    def should_eval(self, step: int) -> bool:
        """True if ``step`` is an evaluation step."""
        return step in self._set

    __contains__ = should_eval

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        return (
            f"EvalSchedule({len(self.steps)} steps, last={self.steps[-1] if self.steps else None})"
        )


def first_eval_at_target(
    eval_records: Iterable[Mapping], target: float, key: str = "ewa_eval_loss"
) -> Mapping | None:
    """The first evaluation record (by step) whose ``key`` is at or below ``target``.

    Records with a ``kind`` other than ``"eval"`` are skipped, as are records
    lacking ``key`` or holding a non-finite value. Raises
    :class:`EvalScheduleError` if no eval record has ``key`` at all, which
    usually means the wrong key (e.g. a run without EWA: use ``eval_loss``).
    """
    if not isinstance(target, (int, float)) or not math.isfinite(target):
        raise EvalScheduleError(f"target must be a finite loss, got {target!r}")
    seen_key = False
    seen_eval = False
    candidates = []
    for rec in eval_records:
        if rec.get("kind", "eval") != "eval":
            continue
        seen_eval = True
        value = rec.get(key)
        if value is None:
            continue
        seen_key = True
        if isinstance(value, (int, float)) and math.isfinite(value) and value <= target:
            candidates.append(rec)
    if seen_eval and not seen_key:
        raise EvalScheduleError(
            f"no eval record has the key {key!r}; pass key='eval_loss' for runs without EWA"
        )
    if not candidates:
        return None
    return min(candidates, key=lambda r: r["step"])


def steps_to_target(
    eval_records: Iterable[Mapping], target: float, key: str = "ewa_eval_loss"
) -> int | None:
    """First evaluated step whose EWA eval loss is <= ``target``, or None if never reached."""
    rec = first_eval_at_target(eval_records, target, key)
    return None if rec is None else int(rec["step"])
