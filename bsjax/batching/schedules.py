"""Fixed batch-size schedules keyed by tokens consumed.

Every schedule is a piecewise-constant map from *tokens consumed before a step*
to the global batch size B (in sequences) of that step. A switch happens at the
first step whose tokens-consumed-before-step is >= the switch key; the step that
crosses a key is not split, so with coarse steps a short segment can be jumped
over entirely (see ``switch_points`` for what a run at a given ctx_len does).
"""

from __future__ import annotations

import abc
import bisect
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from bsjax.batching.errors import BatchConfigError
from bsjax.batching.parsing import format_count, parse_count, parse_count_list, parse_pairs

SCHEDULE_KINDS = ("constant", "table", "ramp", "doubling")


def _check_size(value: Any, name: str) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, int):
        return [f"{name}: batch size must be an int, got {value!r}"]
    if value <= 0:
        return [f"{name}: batch size must be positive, got {value}"]
    return []


class Schedule(abc.ABC):
    """A piecewise-constant batch size as a function of tokens consumed."""

    kind: str = ""

    def __init__(self, segments: Sequence[tuple[int, int]]):
        # Merge runs of equal size so that every key left is a real switch.
        keys_S: list[int] = []
        sizes_S: list[int] = []
        for key, size in segments:
            if sizes_S and sizes_S[-1] == size:
                continue
            keys_S.append(key)
            sizes_S.append(size)
        self._keys_S = keys_S
        self._sizes_S = sizes_S

    def segments(self) -> list[tuple[int, int]]:
        """(first token key, batch size) per segment; first key 0, sizes change at each key."""
        return list(zip(self._keys_S, self._sizes_S))

    def batch_size_at(self, tokens: int) -> int:
        """Global batch size of the step that starts after ``tokens`` tokens."""
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise BatchConfigError(f"tokens must be a non-negative int, got {tokens!r}")
        return self._sizes_S[bisect.bisect_right(self._keys_S, tokens) - 1]

    def sizes(self) -> list[int]:
        """Every batch size the schedule can reach, sorted ascending."""
        return sorted(set(self._sizes_S))

    def switch_tokens(self) -> list[int]:
        """Token keys at which the batch size changes (0 excluded)."""
        return self._keys_S[1:]

    @abc.abstractmethod
    def describe(self) -> str:
        """One line a person can read (and, for tables, paste back as a spec)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and self.segments() == other.segments()

    def __hash__(self) -> int:
        return hash(tuple(self.segments()))


class ConstantSchedule(Schedule):
    """The same batch size for the whole run."""

    kind = "constant"

    def __init__(self, batch_size: int):
        problems = _check_size(batch_size, "batch_size")
        if problems:
            raise BatchConfigError(problems)
        self.batch_size = batch_size
        super().__init__([(0, batch_size)])

    def describe(self) -> str:
        return f"constant {self.batch_size}"


class TableSchedule(Schedule):
    """Segments given as (token key, batch size), Megatron style ("0:64 2M:128")."""

    kind = "table"

    def __init__(self, entries: Sequence[tuple[int, int]], *, name: str = "table"):
        problems = []
        if not entries:
            problems.append(f"{name}: empty; write e.g. '0:64 2M:128'")
        for i, (key, size) in enumerate(entries):
            problems += _check_size(size, f"{name} entry {i} ({format_count(key)}:{size})")
            if i == 0 and key != 0:
                problems.append(
                    f"{name}: must start at token 0 (first key is {format_count(key)}); "
                    f"write e.g. '0:{size} ...'"
                )
            if i > 0 and key <= entries[i - 1][0]:
                problems.append(
                    f"{name}: token keys must be strictly increasing, but "
                    f"{format_count(key)} follows {format_count(entries[i - 1][0])}"
                )
        if problems:
            raise BatchConfigError(problems)
        self.entries = [(int(k), int(s)) for k, s in entries]
        super().__init__(self.entries)

    @classmethod
    def parse(cls, spec: str, *, name: str = "table") -> TableSchedule:
        """Parse ``"0:64 2M:128 8M:256"`` (token key with optional K/M/B/T suffix : size)."""
        problems = []
        entries = []
        try:
            pairs = parse_pairs(spec, name=name)
        except BatchConfigError as err:
            raise BatchConfigError(err.problems) from None
        for key_text, size_text in pairs:
            try:
                key = parse_count(key_text, name=f"{name} key {key_text!r}")
                size = parse_count(size_text, name=f"{name} size {size_text!r}")
            except BatchConfigError as err:
                problems += err.problems
                continue
            entries.append((key, size))
        if problems:
            raise BatchConfigError(problems)
        return cls(entries, name=name)

    def describe(self) -> str:
        return "table " + " ".join(f"{format_count(k)}:{s}" for k, s in self.segments())


class RampSchedule(Schedule):
    """Linear ramp from ``start`` to ``end`` in steps of ``increment``.

    As in GPT-3 / Megatron's batch-size rampup: the n = (end - start) / increment
    increments are spread evenly over ``ramp_tokens``, so the size after t tokens
    is ``start + increment * min(n, floor(t * n / ramp_tokens))`` and the run is
    at ``end`` from ``ramp_tokens`` on. Integer arithmetic, so keys are exact.
    """

    kind = "ramp"

    def __init__(self, start: int, increment: int, ramp_tokens: int, end: int):
        problems = _check_size(start, "ramp start (batch_size)") + _check_size(end, "ramp_end")
        if isinstance(increment, bool) or not isinstance(increment, int) or increment <= 0:
            problems.append(f"ramp_increment must be a positive int, got {increment!r}")
        if isinstance(ramp_tokens, bool) or not isinstance(ramp_tokens, int) or ramp_tokens <= 0:
            problems.append(f"ramp_tokens must be a positive token count, got {ramp_tokens!r}")
        if not problems:
            if end < start:
                problems.append(f"ramp_end ({end}) must be >= the start batch size ({start})")
            elif (end - start) % increment:
                lo = start + (end - start) // increment * increment
                problems.append(
                    f"ramp_end - start ({end} - {start}) must be a multiple of ramp_increment "
                    f"({increment}); e.g. ramp_end={lo} or {lo + increment}"
                )
        if problems:
            raise BatchConfigError(problems)
        self.start, self.increment, self.ramp_tokens, self.end = start, increment, ramp_tokens, end
        n = (end - start) // increment
        segments = [(0, start)]
        for i in range(1, n + 1):
            segments.append((-(-i * ramp_tokens // n), start + i * increment))  # ceil(i R / n)
        super().__init__(segments)

    def describe(self) -> str:
        return (
            f"ramp {self.start} -> {self.end} by {self.increment} over "
            f"{format_count(self.ramp_tokens)} tokens"
        )


class DoublingSchedule(Schedule):
    """Starts at ``start`` and doubles at each token count in ``at_tokens``."""

    kind = "doubling"

    def __init__(self, start: int, at_tokens: Sequence[int]):
        problems = _check_size(start, "doubling start (batch_size)")
        at_tokens = list(at_tokens)
        for i, key in enumerate(at_tokens):
            if isinstance(key, bool) or not isinstance(key, int) or key <= 0:
                problems.append(
                    f"doubling_tokens: every entry must be a positive token count, got {key!r}"
                )
            elif i > 0 and isinstance(at_tokens[i - 1], int) and key <= at_tokens[i - 1]:
                problems.append(
                    f"doubling_tokens must be strictly increasing, but {format_count(key)} "
                    f"follows {format_count(at_tokens[i - 1])}"
                )
        if problems:
            raise BatchConfigError(problems)
        self.start, self.at_tokens = start, at_tokens
        super().__init__(
            [(0, start)] + [(k, start * 2 ** (i + 1)) for i, k in enumerate(at_tokens)]
        )

    def describe(self) -> str:
        keys = " ".join(format_count(k) for k in self.at_tokens) or "never"
        return f"doubling from {self.start} at {keys} tokens"


@dataclasses.dataclass(frozen=True)
class SwitchPoint:
    """The first step of a run that uses ``batch_size``."""

    step: int
    examples: int  # sequences consumed before this step
    tokens: int  # tokens consumed before this step (examples * ctx_len)
    batch_size: int


def switch_points(schedule: Schedule, ctx_len: int) -> list[SwitchPoint]:
    """The steps at which a run with sequences of ``ctx_len`` tokens changes batch size.

    Step t consumes ``B_t * ctx_len`` tokens; a segment whose keys both fall
    inside one step is never used and does not appear. The first entry is step 0.
    """
    if isinstance(ctx_len, bool) or not isinstance(ctx_len, int) or ctx_len <= 0:
        raise BatchConfigError(f"ctx_len must be a positive int, got {ctx_len!r}")
    keys_S = schedule.switch_tokens()
    step, tokens = 0, 0
    size = schedule.batch_size_at(0)
    points = [SwitchPoint(0, 0, 0, size)]
    i = 0
    while i < len(keys_S):
        if keys_S[i] <= tokens:
            i += 1
            continue
        # Steps at the current size until tokens reach the next key.
        n_steps = -(-(keys_S[i] - tokens) // (size * ctx_len))
        step += n_steps
        tokens += n_steps * size * ctx_len
        new_size = schedule.batch_size_at(tokens)
        if new_size != size:
            points.append(SwitchPoint(step, tokens // ctx_len, tokens, new_size))
            size = new_size
    return points


def reachable_sizes(schedule: Schedule, ctx_len: int) -> list[int]:
    """Batch sizes a run at ``ctx_len`` actually uses (sorted); a subset of ``sizes()``."""
    return sorted({p.batch_size for p in switch_points(schedule, ctx_len)})


def schedule_from_config(batch_cfg: Mapping[str, Any]) -> Schedule:
    """Build the schedule that ``batch_cfg.schedule`` names.

    Keys read: ``schedule``, ``batch_size`` (constant size and the start of ramp
    and doubling; ignored by ``table``, whose first entry is the start),
    ``table``, ``ramp_increment``, ``ramp_tokens``, ``ramp_end``,
    ``doubling_tokens``. Token counts accept K/M/B/T suffixes.

    Raises:
      BatchConfigError listing every problem in these keys.
    """
    kind = batch_cfg.get("schedule", "constant")
    batch_size = batch_cfg.get("batch_size")
    if kind == "constant":
        return ConstantSchedule(batch_size)
    if kind == "table":
        return TableSchedule.parse(batch_cfg.get("table", ""), name="table")
    if kind == "ramp":
        problems = []
        try:
            ramp_tokens = parse_count(batch_cfg.get("ramp_tokens", 0), name="ramp_tokens")
        except BatchConfigError as err:
            problems += err.problems
            ramp_tokens = 1
        try:
            schedule = RampSchedule(
                batch_size,
                batch_cfg.get("ramp_increment"),
                ramp_tokens,
                batch_cfg.get("ramp_end"),
            )
        except BatchConfigError as err:
            problems += err.problems
        if problems:
            raise BatchConfigError(problems)
        return schedule
    if kind == "doubling":
        at_tokens = parse_count_list(batch_cfg.get("doubling_tokens", ""), name="doubling_tokens")
        return DoublingSchedule(batch_size, at_tokens)
    raise BatchConfigError(
        f"schedule: unknown kind {kind!r}; expected one of {', '.join(SCHEDULE_KINDS)}"
    )
