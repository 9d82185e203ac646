"""Piecewise-constant LR and batch-size schedules, counted in optimizer steps.

Both theory models (the exact linear-regression recursion and the functional
scaling law) read a schedule as a list of segments ``(steps, lr, batch)``.
Intrinsic time is the running sum of learning rates, ``t_k = sum_{j<k} lr_j``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from bsjax.theory.errors import TheoryInputError, check_int, check_number


@dataclasses.dataclass(frozen=True)
class Segment:
    """``steps`` optimizer steps at learning rate ``lr`` and batch size ``batch``."""

    steps: int
    lr: float
    batch: int

    def __post_init__(self):
        check_int("steps", self.steps, ge=1)
        check_number("lr", self.lr, gt=0.0)
        check_int("batch", self.batch, ge=1)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A sequence of constant segments; see the module docstring."""

    segments: tuple[Segment, ...]

    def __post_init__(self):
        if not self.segments:
            raise TheoryInputError("segments must hold at least one segment; got none")
        object.__setattr__(self, "segments", tuple(self.segments))

    # -- constructors -------------------------------------------------------
    @classmethod
    def constant(
        cls, lr: float, batch: int, *, steps: int | None = None, examples: int | None = None
    ) -> Schedule:
        """Constant LR and batch for ``steps`` steps, or for ``examples // batch`` steps."""
        batch = check_int("batch", batch)
        if (steps is None) == (examples is None):
            raise TheoryInputError("give exactly one of steps or examples for a constant schedule")
        if steps is None:
            examples = check_int("examples", examples)
            if examples < batch:
                raise TheoryInputError(
                    f"examples (the data size D={examples}) must be >= the batch size B={batch}"
                )
            steps = examples // batch
        return cls((Segment(check_int("steps", steps), lr, batch),))

    @classmethod
    def two_phase(
        cls, lr: float, batch1: int, batch2: int, *, switch_examples: int, total_examples: int
    ) -> Schedule:
        """``batch1`` for the first ``switch_examples`` examples, then ``batch2`` up to ``total_examples``.

        Step counts are rounded down, so the examples used are at most ``total_examples``;
        a phase with fewer examples than its batch is left out.
        """
        batch1, batch2 = check_int("batch1", batch1), check_int("batch2", batch2)
        total = check_int("total_examples", total_examples)
        switch = check_int("switch_examples", switch_examples, ge=0)
        if switch > total:
            raise TheoryInputError(
                f"switch_examples must be <= total_examples={total}; got {switch}"
            )
        n1 = switch // batch1
        n2 = (total - n1 * batch1) // batch2
        segs = [Segment(n, lr, b) for n, b in ((n1, batch1), (n2, batch2)) if n > 0]
        if not segs:
            raise TheoryInputError(
                f"total_examples={total} is smaller than both batch sizes ({batch1}, {batch2})"
            )
        return cls(tuple(segs))

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[int, int]], lr: float) -> Schedule:
        """Segments from ``(batch, steps)`` pairs at one learning rate; pairs with 0 steps are dropped."""
        segs = [Segment(int(n), lr, int(b)) for b, n in pairs if int(n) > 0]
        return cls(tuple(segs))

    # -- views --------------------------------------------------------------
    @property
    def num_steps(self) -> int:
        return int(sum(s.steps for s in self.segments))

    @property
    def num_examples(self) -> int:
        return int(sum(s.steps * s.batch for s in self.segments))

    @property
    def step_ends(self) -> np.ndarray:
        """Cumulative step count at the end of each segment, shape (K,)."""
        return np.cumsum([s.steps for s in self.segments]).astype(np.int64)

    @property
    def total_time(self) -> float:
        """Intrinsic time at the end: the sum of all learning rates."""
        return float(sum(s.steps * s.lr for s in self.segments))

    def per_step(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lr_T, batch_T)``: the learning rate and batch of every step."""
        lr_T = np.concatenate([np.full(s.steps, s.lr) for s in self.segments])
        batch_T = np.concatenate([np.full(s.steps, s.batch, dtype=np.int64) for s in self.segments])
        return lr_T, batch_T

    def examples_at(self, steps) -> np.ndarray:
        """Examples consumed after ``steps`` steps (any shape of non-negative ints)."""
        return self._cumulative(steps, np.array([s.batch for s in self.segments], float))

    def time_at(self, steps) -> np.ndarray:
        """Intrinsic time (sum of learning rates) after ``steps`` steps."""
        return self._cumulative(steps, np.array([s.lr for s in self.segments], float))

    def _cumulative(self, steps, rate_K: np.ndarray) -> np.ndarray:
        steps = np.asarray(steps, dtype=np.float64)
        ends_K = self.step_ends.astype(np.float64)
        starts_K = ends_K - np.array([s.steps for s in self.segments], float)
        inside = np.clip(steps[..., None] - starts_K, 0.0, ends_K - starts_K)
        return inside @ rate_K
