"""One interface for fixed and adaptive batch-size policies.

Protocol the trainer follows, once before every step ``step`` (0-based):
  1. ``tokens`` = tokens consumed before this step, ``batch_size`` = the size
     the previous step used (``policy.initial_batch_size()`` before step 0).
  2. If ``policy.is_decision_point(step, tokens)``, call
     ``policy.decide(step, tokens, batch_size, metrics)`` with the latest
     measured metrics (an empty dict when none exist yet).
  3. A returned ``Decision`` whose size differs from ``batch_size`` is a switch:
     the trainer maps the size to a compiled bucket with ``round_to_bucket``
     (or ``BatchPlan.resolve``) and logs a "switch" line with the reason and
     measured quantities. None means "keep the current size".
Decision points are where a policy may change the size; between them the
trainer need not call ``decide`` (an adaptive policy might decide every N
steps, or when a measurement is ready). ``ScheduledPolicy`` treats every step
as a decision point, because the check is cheap and stateless, which keeps it
correct across restarts.
Policies checkpoint through ``state_dict`` / ``load_state_dict`` (JSON-safe).
"""

from __future__ import annotations

import abc
import bisect
import dataclasses
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from bsjax.batching.buckets import Bucket
from bsjax.batching.errors import BatchConfigError
from bsjax.batching.schedules import Schedule

OFF_BUCKET_MODES = ("round", "error")


class OffBucketWarning(UserWarning):
    """A policy asked for a batch size no compiled bucket holds and it was rounded down."""


@dataclasses.dataclass(frozen=True)
class Decision:
    """A policy's request to train at ``batch_size`` from this step on."""

    batch_size: int
    reason: str
    measured: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, e.g. for a metrics "switch" line."""
        return {
            "batch_size": int(self.batch_size),
            "reason": self.reason,
            "measured": {k: float(v) for k, v in self.measured.items()},
        }


@dataclasses.dataclass(frozen=True)
class PolicyContext:
    """What a policy sees before a step: the run's position, its size and the last metrics.

    ``metrics`` is the last finished step's train line as the trainer read it
    (``loss``, ``grad_sq``, ``micro_grad_sq``, ``micro_batch_size``,
    ``accum_steps``, ``step``, and ``eval_loss`` / ``ewa_eval_loss`` after an
    evaluation); empty before the first step. ``bucket`` is the compiled shape
    of ``batch_size`` (K micro-steps of M sequences per device) when the
    trainer knows it.
    """

    step: int
    tokens: int
    batch_size: int
    metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)
    examples: int | None = None
    bucket: Bucket | None = None


class BatchPolicy(abc.ABC):
    """Decides the global batch size during training (see the module docstring)."""

    @abc.abstractmethod
    def initial_batch_size(self) -> int:
        """Batch size of step 0."""

    @abc.abstractmethod
    def candidate_sizes(self) -> list[int]:
        """Every size the policy may ask for, sorted, so buckets compile ahead of time."""

    def is_decision_point(self, ctx: PolicyContext) -> bool:
        """Whether ``decide`` should be called before ``ctx.step`` (default: every step)."""
        return True

    @abc.abstractmethod
    def decide(self, ctx: PolicyContext) -> Decision | None:
        """The size for ``ctx.step`` onwards, or None to keep ``ctx.batch_size``."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state for checkpoints."""

    @abc.abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    def metrics_to_log(self) -> dict[str, float]:
        """Quantities the policy measured, added to every train line (none by default)."""
        return {}

    def summary(self) -> dict[str, float]:
        """Cumulative figures for summary.json (none by default)."""
        return {}

    def lr_override(self, tokens: int) -> float | None:
        """An LR that replaces the schedule's after ``tokens`` tokens (None: no override)."""
        return None

    def planned_schedule(self) -> Schedule | None:
        """The sizes over the run when they are known before it starts (the trainer prefetches
        and compiles in their order); None for a policy that decides from measurements."""
        return None

    # A policy that measures by training branches from the live state (the probe) sets
    # this; the trainer then calls ``attach_prober`` with its branch runner.
    wants_prober: bool = False

    def attach_prober(self, prober: Any) -> None:
        """Receive the trainer's branch runner (only called when ``wants_prober``)."""
        raise TypeError(f"policy {type(self).__name__} does not use a prober")

    def maybe_decide(self, ctx: PolicyContext) -> Decision | None:
        """``decide`` at decision points, None elsewhere and when the size stays."""
        if not self.is_decision_point(ctx):
            return None
        decision = self.decide(ctx)
        if decision is None or decision.batch_size == ctx.batch_size:
            return None
        return decision


class ScheduledPolicy(BatchPolicy):
    """A fixed ``Schedule`` behind the policy interface (reason "schedule")."""

    kind = "scheduled"

    def __init__(self, schedule: Schedule):
        self.schedule = schedule
        self.num_switches = 0
        self.last_switch_step: int | None = None

    def initial_batch_size(self) -> int:
        return self.schedule.batch_size_at(0)

    def planned_schedule(self) -> Schedule:
        return self.schedule

    def candidate_sizes(self) -> list[int]:
        return self.schedule.sizes()

    def decide(self, ctx: PolicyContext) -> Decision | None:
        target = self.schedule.batch_size_at(ctx.tokens)
        if target == ctx.batch_size:
            return None
        self.num_switches += 1
        self.last_switch_step = ctx.step
        return Decision(
            target,
            "schedule",
            {"tokens": float(ctx.tokens), "from_batch_size": float(ctx.batch_size)},
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.kind,
            "schedule": self.schedule.describe(),
            "num_switches": self.num_switches,
            "last_switch_step": self.last_switch_step,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore counters; a different policy kind is refused, a changed schedule warned about."""
        if state.get("policy") != self.kind:
            raise BatchConfigError(
                f"policy state is for {state.get('policy')!r}, "
                f"not {self.kind!r}; the checkpoint came from another policy"
            )
        if state.get("schedule") != self.schedule.describe():
            warnings.warn(
                f"resuming with schedule '{self.schedule.describe()}' but the "
                f"checkpoint used '{state.get('schedule')}'",
                stacklevel=2,
            )
        self.num_switches = int(state["num_switches"])
        last = state.get("last_switch_step")
        self.last_switch_step = None if last is None else int(last)


def round_to_bucket(batch_size: int, available_sizes: Iterable[int], mode: str) -> int:
    """Map a requested size onto the compiled sizes.

    A size in ``available_sizes`` is returned as is. Otherwise ``mode="round"``
    returns the largest available size below it with an ``OffBucketWarning``,
    and ``mode="error"`` refuses.

    Raises:
      BatchConfigError for mode "error", for a request below every available
      size, or for an unknown mode.
    """
    if mode not in OFF_BUCKET_MODES:
        raise BatchConfigError(
            f"off_bucket: unknown mode {mode!r}; expected one of {', '.join(OFF_BUCKET_MODES)}"
        )
    sizes = sorted(set(available_sizes))
    if not sizes:
        raise BatchConfigError("no compiled batch sizes are available")
    if batch_size in sizes:
        return batch_size
    i = bisect.bisect_left(sizes, batch_size)
    if mode == "error":
        raise BatchConfigError(
            f"batch size {batch_size} has no compiled bucket (off_bucket='error'); "
            f"available sizes: {sizes}; nearest: "
            f"{' or '.join(str(s) for s in sizes[max(i - 1, 0) : i + 1])}"
        )
    if i == 0:
        raise BatchConfigError(
            f"batch size {batch_size} is below every compiled size {sizes}; cannot round down"
        )
    warnings.warn(
        f"batch size {batch_size} has no compiled bucket; rounded down to {sizes[i - 1]}",
        OffBucketWarning,
        stacklevel=2,
    )
    return sizes[i - 1]
