"""What the adaptive policies share: a size ladder, a base class with a state check,
state checks on resume, and a fixed table behind the policy interface with its own reason."""

from __future__ import annotations

import bisect
import dataclasses
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bsjax.batching.controller import BatchPolicy, Decision, PolicyContext, ScheduledPolicy
from bsjax.batching.errors import BatchConfigError
from bsjax.batching.parsing import parse_count_list
from bsjax.batching.schedules import Schedule

DEFAULT_LADDER_SPAN = 8  # batch.policy.max_batch_size = 0 means 8 x the start size


class PolicyBase(BatchPolicy):
    """A ``BatchPolicy`` with a one-line description and the state check on resume."""

    kind = "policy"

    def describe(self) -> str:
        """One line for logs."""
        return self.kind

    def _check_state(self, state: Mapping[str, Any]) -> None:
        """Refuse another policy's state; warn when the configuration changed since the save."""
        if state.get("policy") != self.kind:
            raise BatchConfigError(
                f"policy state is for {state.get('policy')!r}, not "
                f"{self.kind!r}; the checkpoint came from another policy"
            )
        saved = state.get("describe")
        if saved is not None and saved != self.describe():
            warnings.warn(
                f"resuming policy {self.kind!r} configured as '{self.describe()}' "
                f"but the checkpoint used '{saved}'",
                stacklevel=3,
            )


class Ladder:
    """The sorted batch sizes an adaptive policy moves between."""

    def __init__(self, sizes: Iterable[int], *, name: str = "sizes"):
        sizes = list(sizes)
        problems = []
        if not sizes:
            problems.append(f"{name}: empty; give at least one batch size")
        for i, size in enumerate(sizes):
            if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
                problems.append(f"{name}: entry {i} must be a positive int, got {size!r}")
            elif i > 0 and isinstance(sizes[i - 1], int) and size <= sizes[i - 1]:
                problems.append(
                    f"{name}: sizes must be strictly increasing, but {size} follows {sizes[i - 1]}"
                )
        if problems:
            raise BatchConfigError(problems)
        self.sizes: list[int] = sizes

    @classmethod
    def doubling(cls, start: int, top: int) -> Ladder:
        """``start, 2 start, 4 start, ...`` up to and including ``top`` (if reached)."""
        if isinstance(start, bool) or not isinstance(start, int) or start <= 0:
            raise BatchConfigError(f"ladder start must be a positive int, got {start!r}")
        if isinstance(top, bool) or not isinstance(top, int) or top < start:
            raise BatchConfigError(
                f"max_batch_size must be an int >= the start size {start}, got {top!r}"
            )
        sizes, size = [], start
        while size <= top:
            sizes.append(size)
            size *= 2
        return cls(sizes)

    def __iter__(self):
        return iter(self.sizes)

    def __len__(self) -> int:
        return len(self.sizes)

    def __repr__(self) -> str:
        return f"Ladder({self.sizes})"

    @property
    def smallest(self) -> int:
        return self.sizes[0]

    @property
    def largest(self) -> int:
        return self.sizes[-1]

    def index(self, batch_size: int) -> int:
        """Index of the largest ladder size <= ``batch_size`` (0 below the ladder)."""
        return max(bisect.bisect_right(self.sizes, batch_size) - 1, 0)

    def above(self, batch_size: int) -> int | None:
        """Smallest ladder size strictly above ``batch_size`` (None at the top)."""
        i = bisect.bisect_right(self.sizes, batch_size)
        return self.sizes[i] if i < len(self.sizes) else None

    def below(self, batch_size: int) -> int | None:
        """Largest ladder size strictly below ``batch_size`` (None at the bottom)."""
        i = bisect.bisect_left(self.sizes, batch_size)
        return self.sizes[i - 1] if i > 0 else None

    def at_least(self, batch_size: float) -> int | None:
        """Smallest ladder size >= ``batch_size`` (None if all are smaller)."""
        i = bisect.bisect_left(self.sizes, batch_size)
        return self.sizes[i] if i < len(self.sizes) else None

    def nearest(self, target: float) -> int:
        """The ladder size nearest to ``target`` in log scale (a positive, finite target)."""
        if not (target > 0 and math.isfinite(target)):
            raise ValueError(f"target batch size must be positive and finite, got {target!r}")
        log_t = math.log(target)
        return min(self.sizes, key=lambda s: (abs(math.log(s) - log_t), s))


class TablePolicy(ScheduledPolicy, PolicyBase):
    """A fixed schedule behind the policy interface, with its own kind and reason.

    Used where a policy's decisions are known before training starts (WSD
    token steps, FSL switch points, seesaw): the trainer gets ``.schedule`` for
    prefetching and compile order, and every switch line carries ``reason``
    plus the ``measured`` quantities the policy derived its table from.
    """

    def __init__(
        self,
        schedule: Schedule,
        *,
        kind: str,
        reason: str,
        measured: Mapping[str, float] | None = None,
    ):
        super().__init__(schedule)
        self.kind = kind
        self.reason = reason
        self.extra_measured = {k: float(v) for k, v in (measured or {}).items()}

    def decide(self, ctx: PolicyContext) -> Decision | None:
        decision = super().decide(ctx)
        if decision is None:
            return None
        return Decision(
            decision.batch_size, self.reason, {**decision.measured, **self.extra_measured}
        )

    def describe(self) -> str:
        return f"{self.kind}: {self.schedule.describe()}"


class LRScheduleMissingError(BatchConfigError):
    """A policy that needs the LR schedule was built without one (validation may skip it)."""


@dataclasses.dataclass(frozen=True)
class BuildContext:
    """What a policy's builder reads besides its own config section.

    ``sizes`` / ``max_batch_size`` are ``batch.policy``'s ladder keys;
    ``sizes_override`` replaces them (a sweep or a test passing its own ladder).
    """

    start: int
    ctx_len: int
    data_shards: int | None = None
    micro_batch_per_device: int = 16
    max_accum_steps: int | None = None
    lr_scaling: str = "none"
    lr_schedule: Any = None
    sizes: str = ""
    max_batch_size: int = 0
    sizes_override: tuple[int, ...] | None = None

    def ladder(self) -> Ladder:
        """The sizes the policy moves between.

        Raises:
          BatchConfigError naming the key when ``batch.policy.sizes`` is unreadable,
          unsorted or misses the start size, or ``max_batch_size`` is below it.
        """
        if self.sizes_override is not None:
            return Ladder(self.sizes_override)
        if self.sizes:
            sizes = parse_count_list(self.sizes, name="batch.policy.sizes")
            ladder = Ladder(sizes, name="batch.policy.sizes")
            if self.start not in ladder.sizes:
                raise BatchConfigError(
                    f"batch.policy.sizes: {ladder.sizes} must include the start "
                    f"size batch.batch_size={self.start}"
                )
            return ladder
        top = self.max_batch_size
        if top < 0:
            raise BatchConfigError(
                f"batch.policy.max_batch_size must be >= 0 (0: {DEFAULT_LADDER_SPAN} x the "
                f"start size), got {top!r}"
            )
        if top and top < self.start:
            raise BatchConfigError(
                f"batch.policy.max_batch_size={top} is below the start size "
                f"batch.batch_size={self.start}"
            )
        return Ladder.doubling(self.start, top or DEFAULT_LADDER_SPAN * self.start)

    def sizes_key(self) -> str:
        """The key the ladder comes from, for messages."""
        return "batch.policy.sizes" if self.sizes else "batch.policy.max_batch_size"


@dataclasses.dataclass(frozen=True)
class PolicySpec:
    """A policy as the config knows it: its name, its config section and its builder.

    ``build(section, ctx)`` returns the policy or raises ``BatchConfigError``
    naming each bad key; ``section`` is None for a policy without settings of
    its own (its builder then gets None). ``sizes_key(section, ctx)``, when
    given, names the key a size that fits no bucket came from.
    """

    name: str
    build: Callable[[Any, BuildContext], BatchPolicy]
    section: type | None = None
    help: str = ""
    sizes_key: Callable[[Any, BuildContext], str] | None = None
