"""Seesaw (2025, docs/science.md section 5): trade LR decay for batch growth.

Where the LR schedule would have halved the LR once more (its
``halving_tokens()``), double the batch instead and multiply the LR by
1/sqrt(2). After n such points the run trains at ``B_0 2^n`` with LR
``peak (1/sqrt 2)^n``, constant in between (so the LR no longer follows the
schedule's smooth decay). When the ladder's top size is reached, the remaining
halving points halve the LR as the schedule would, so the run still anneals.
During warmup the schedule's own LR applies.

The batch sizes are known before training, so this is a fixed table
(``.schedule``) plus an LR the trainer must use instead of its schedule's:
``lr_override(tokens)``. Each switch line also carries ``lr_multiplier`` (the
factor this switch applies to the LR) and ``lr`` (the LR from this switch on).
"""

from __future__ import annotations

import bisect
import math
from typing import Any, Protocol

from bsjax.batching.controller import Decision, PolicyContext
from bsjax.batching.errors import BatchConfigError
from bsjax.batching.policies.common import (
    BuildContext,
    LRScheduleMissingError,
    PolicySpec,
    TablePolicy,
)
from bsjax.batching.schedules import TableSchedule

INV_SQRT2 = 1.0 / math.sqrt(2.0)


class HalvingSchedule(Protocol):
    """The part of ``bsjax.optim.LRSchedule`` seesaw reads (kept duck-typed: no JAX here)."""

    peak_lr: float
    warmup_tokens: float

    def halving_tokens(self) -> list[float]: ...


class SeesawPolicy(TablePolicy):
    """Doubles the batch at each LR-halving point of the schedule, up to ``max_batch_size``."""

    def __init__(self, lr_schedule: HalvingSchedule, initial: int, max_batch_size: int):
        problems = []
        if isinstance(initial, bool) or not isinstance(initial, int) or initial <= 0:
            problems.append(f"initial batch size must be a positive int, got {initial!r}")
        if (
            isinstance(max_batch_size, bool)
            or not isinstance(max_batch_size, int)
            or (isinstance(initial, int) and max_batch_size < initial)
        ):
            problems.append(
                f"max_batch_size must be an int >= the initial size {initial}, "
                f"got {max_batch_size!r}"
            )
        marks: list[int] = []
        for t in lr_schedule.halving_tokens():  # whole tokens, strictly increasing
            marks.append(max(int(math.ceil(t)), marks[-1] + 1 if marks else 1))
        if not marks:
            problems.append(
                "seesaw needs an LR schedule that decays (optim.schedule 'cosine' or "
                "'wsd'); this one never halves the LR, so seesaw would never switch"
            )
        if problems:
            raise BatchConfigError(problems)
        self.peak_lr = float(lr_schedule.peak_lr)
        self.warmup_tokens = float(lr_schedule.warmup_tokens)
        self.halving_marks = marks
        self.max_doublings = int(math.floor(math.log2(max_batch_size / initial)))
        entries = [(0, initial)]
        for n, key in enumerate(marks[: self.max_doublings], start=1):
            entries.append((key, initial * 2**n))
        super().__init__(TableSchedule(entries, name="seesaw"), kind="seesaw", reason="seesaw")

    def halvings_before(self, tokens: int) -> int:
        """Halving points at or before ``tokens``."""
        return bisect.bisect_right(self.halving_marks, tokens)

    def lr_factor(self, halvings: int) -> float:
        """LR / peak after ``halvings`` points: 1/sqrt(2) per doubling, 1/2 past the top size."""
        doublings = min(halvings, self.max_doublings)
        return INV_SQRT2**doublings * 0.5 ** (halvings - doublings)

    def lr_override(self, tokens: int) -> float | None:
        """The LR after ``tokens`` tokens; None during warmup (follow the schedule there)."""
        if tokens < self.warmup_tokens:
            return None
        return self.peak_lr * self.lr_factor(self.halvings_before(tokens))

    def decide(self, ctx: PolicyContext) -> Decision | None:
        decision = super().decide(ctx)
        if decision is None:
            return None
        doublings = round(math.log2(decision.batch_size / ctx.batch_size))
        halvings = self.halvings_before(ctx.tokens)
        return Decision(
            decision.batch_size,
            self.reason,
            {
                **decision.measured,
                "lr_multiplier": INV_SQRT2**doublings,
                "lr": self.peak_lr * self.lr_factor(halvings),
                "halvings": float(halvings),
            },
        )

    def describe(self) -> str:
        return (
            f"seesaw: {self.schedule.describe()}, LR {self.peak_lr:g} x (1/sqrt 2)^n, "
            f"halving points {self.halving_marks}"
        )

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "describe": self.describe()}


def build(section: None, ctx: BuildContext) -> SeesawPolicy:
    """Seesaw over a doubling ladder from ``batch.batch_size``, with the run's LR schedule.

    Raises:
      LRScheduleMissingError after the config checks when ``ctx.lr_schedule`` is None.
    """
    ladder = ctx.ladder()
    expected = [ctx.start * 2**i for i in range(len(ladder))]
    problems = []
    if ladder.sizes != expected:
        problems.append(
            f"batch.policy.sizes: seesaw doubles the batch at each step, so "
            f"the ladder must be {expected[:4]}..., got {ladder.sizes}"
        )
    if ctx.lr_scaling != "none":
        problems.append(
            f"batch.lr_scaling={ctx.lr_scaling!r} with batch.policy.name='seesaw': seesaw sets "
            f"the LR itself (x 1/sqrt(2) per doubling); set batch.lr_scaling='none'"
        )
    if problems:
        raise BatchConfigError(problems)
    if ctx.lr_schedule is None:
        raise LRScheduleMissingError(
            "batch.policy.name='seesaw' needs the LR schedule: pass "
            "lr_schedule=bsjax.optim.lr_schedule_from_config(config.optim)"
        )
    return SeesawPolicy(ctx.lr_schedule, ctx.start, ladder.largest)


SPEC = PolicySpec("seesaw", build, None, "")
