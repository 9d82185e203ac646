"""Hyper-parameters that move with the batch size: LR scale, Adam beta2, EWA tau.

All are plain functions of the global batch size B so the trainer can feed
them to the compiled step as run-time inputs (no recompilation per size).

Rules
- LR (``lr_scaling``): ``lr = base_lr * f(B / base_B)`` with f = 1 ("none"),
  sqrt ("sqrt", the Adam rule of Merrill et al. 2025) or identity ("linear").
- beta2 and EWA tau (``beta2_rule``, ``tau_rule``):
  * ``fixed``: the optimizer's base value at every B.
  * ``table``: a table B -> value, looked up at the **nearest lower entry**
    (the largest tabulated B' <= B), so the table is piecewise constant in B
    like the batch-size tables; a B below the smallest entry is refused rather
    than extrapolated. ``table:<model>`` uses Zhang et al. (2024) Table 4.
  * ``half_life``: keep the decay's half-life fixed in tokens (Marek et al.
    2025): ``value(B) = base ** (B / base_B)``, so two steps at B decay as much
    as one step at 2B.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from bsjax.batching.errors import BatchConfigError
from bsjax.batching.paper_tables import PRESET_NAMES, table4_beta2, table4_tau
from bsjax.batching.parsing import parse_count, parse_pairs

LR_RULES = ("none", "sqrt", "linear")
DECAY_RULES = ("fixed", "table", "half_life")


def lr_scale(batch_size: int, base_batch_size: int, rule: str) -> float:
    """Multiplier on the base LR at ``batch_size``: f(B / base_B) for ``rule``."""
    ratio = batch_size / base_batch_size
    if rule == "none":
        return 1.0
    if rule == "sqrt":
        return math.sqrt(ratio)
    if rule == "linear":
        return ratio
    raise BatchConfigError(
        f"lr_scaling: unknown rule {rule!r}; expected one of {', '.join(LR_RULES)}"
    )


def half_life_decay(base_decay: float, batch_size: int, base_batch_size: int) -> float:
    """Per-step decay at ``batch_size`` with the same half-life in tokens as at the base."""
    return base_decay ** (batch_size / base_batch_size)


def half_life_tokens(decay: float, batch_size: int, ctx_len: int) -> float:
    """Tokens after which an EMA with per-step ``decay`` at ``batch_size`` halves a weight."""
    if decay <= 0.0:
        return 0.0
    return math.log(0.5) / math.log(decay) * batch_size * ctx_len


def table_value(table: Mapping[int, float], batch_size: int, *, name: str) -> float:
    """Value at the largest tabulated batch size <= ``batch_size``.

    Raises:
      BatchConfigError naming ``name`` when ``batch_size`` is below every entry.
    """
    keys = sorted(table)
    i = bisect.bisect_right(keys, batch_size) - 1
    if i < 0:
        raise BatchConfigError(
            f"{name}: no entry at or below batch size {batch_size} (smallest entry is "
            f"{keys[0]}); add an entry like '{batch_size}:VALUE'"
        )
    return table[keys[i]]


def _check_unit_interval(value: Any, name: str) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        return [f"{name} must be in [0, 1), got {value!r}"]
    return []


def parse_decay_table(
    spec: str | Mapping[int, float], *, name: str, quantity: str
) -> dict[int, float]:
    """Read a B -> value table: ``"64:0.999 1024:0.95"``, a Table 4 preset name
    (``"151M"`` or ``"table:151M"``) or a mapping. ``quantity`` is "beta2" or "tau".

    Raises:
      BatchConfigError listing every bad entry (unsorted keys, values outside [0, 1)).
    """
    if isinstance(spec, str):
        preset = spec.strip()
        prefixed = preset.lower().startswith("table:")
        preset = preset[len("table:") :] if prefixed else preset
        match = [p for p in PRESET_NAMES if p.lower() == preset.lower()]
        if match:
            return table4_beta2(match[0]) if quantity == "beta2" else table4_tau(match[0])
        if prefixed:
            raise BatchConfigError(
                f"{name}: unknown paper Table 4 preset {preset!r}; expected "
                f"one of {', '.join(PRESET_NAMES)}"
            )
        if not spec.strip():
            raise BatchConfigError(
                f"{name}: empty; write e.g. '64:0.999 1024:0.95' or a paper preset "
                f"({', '.join(PRESET_NAMES)})"
            )
        items = []
        problems = []
        for key_text, value_text in parse_pairs(spec, name=name):
            try:
                key = parse_count(key_text, name=f"{name} batch size {key_text!r}")
                value = float(value_text)
            except (BatchConfigError, ValueError):
                problems.append(
                    f"{name}: cannot read entry '{key_text}:{value_text}' as BATCH_SIZE:VALUE"
                )
                continue
            items.append((key, value))
    elif isinstance(spec, Mapping):
        items = list(spec.items())
        problems = []
    else:
        raise BatchConfigError(f"{name}: expected a string like '64:0.999 1024:0.95', got {spec!r}")
    for i, (key, value) in enumerate(items):
        if isinstance(key, bool) or not isinstance(key, int) or key <= 0:
            problems.append(f"{name}: batch size {key!r} must be a positive int")
        elif i > 0 and isinstance(items[i - 1][0], int) and key <= items[i - 1][0]:
            problems.append(
                f"{name}: batch sizes must be strictly increasing, but {key} "
                f"follows {items[i - 1][0]}"
            )
        problems += _check_unit_interval(value, f"{name} value at batch size {key}")
    if problems:
        raise BatchConfigError(problems)
    return {int(k): float(v) for k, v in items}


@dataclasses.dataclass(frozen=True)
class DecayRule:
    """How one decay (beta2 or EWA tau) follows the batch size.

    ``base`` is the optimizer's value at the base batch size; with rule
    ``fixed`` and no base, ``value_at`` returns None, meaning "leave the
    optimizer's configured value as it is".
    """

    name: str  # the quantity, for messages: "beta2" or "tau"
    rule: str = "fixed"
    base: float | None = None
    table: Mapping[int, float] | None = None

    @classmethod
    def build(
        cls, name: str, rule: str, table_spec: Any, base: float | None, *, check_base: bool = True
    ) -> DecayRule:
        """Validate and build; ``rule`` may be ``table:<preset>``.

        ``check_base=False`` skips the check that ``half_life`` has a base
        (for validating a config before the optimizer's values are known).

        Raises:
          BatchConfigError listing every problem (unknown rule, bad table, bad base).
        """
        problems = []
        if base is not None:
            problems += _check_unit_interval(base, f"base {name}")
        if not isinstance(rule, str):
            raise BatchConfigError(f"{name}_rule: expected a string, got {rule!r}")
        table = None
        if rule.startswith("table:"):
            if isinstance(table_spec, str) and table_spec.strip():
                problems.append(
                    f"{name}_rule={rule!r} names a preset but {name}_table is also "
                    f"set ({table_spec!r}); set only one of them"
                )
            table_spec, rule = rule, "table"
        if rule not in DECAY_RULES:
            problems.append(
                f"{name}_rule: unknown rule {rule!r}; expected one of "
                f"{', '.join(DECAY_RULES)} or table:<{'|'.join(PRESET_NAMES)}>"
            )
        elif rule == "table":
            try:
                table = parse_decay_table(table_spec, name=f"{name}_table", quantity=name)
            except BatchConfigError as err:
                problems += err.problems
        elif rule == "half_life" and base is None and check_base:
            problems.append(
                f"{name}_rule='half_life' needs the optimizer's base {name} "
                f"(pass it to Coupling.from_config)"
            )
        if problems:
            raise BatchConfigError(problems)
        return cls(name=name, rule=rule, base=base, table=table)

    def value_at(self, batch_size: int, base_batch_size: int) -> float | None:
        """The decay at ``batch_size`` (None: keep the optimizer's own value)."""
        if self.rule == "fixed":
            return self.base
        if self.rule == "table":
            return table_value(self.table, batch_size, name=f"{self.name}_table")
        if self.base is None:
            raise BatchConfigError(
                f"{self.name}_rule='half_life' needs the optimizer's base {self.name}"
            )
        return half_life_decay(self.base, batch_size, base_batch_size)

    def describe(self) -> str:
        if self.rule == "table":
            return f"{self.name} table " + " ".join(
                f"{k}:{v:g}" for k, v in sorted(self.table.items())
            )
        base = "optimizer's" if self.base is None else f"{self.base:g}"
        return f"{self.name} {self.rule} (base {base})"


@dataclasses.dataclass(frozen=True)
class Coupling:
    """LR scale, beta2 and EWA tau as functions of the global batch size."""

    base_batch_size: int
    lr_rule: str = "none"
    beta2: DecayRule = DecayRule("beta2")
    tau: DecayRule = DecayRule("tau")

    def __post_init__(self):
        if (
            isinstance(self.base_batch_size, bool)
            or not isinstance(self.base_batch_size, int)
            or self.base_batch_size <= 0
        ):
            raise BatchConfigError(
                f"base_batch_size must be a positive int, got {self.base_batch_size!r}"
            )
        if self.lr_rule not in LR_RULES:
            raise BatchConfigError(
                f"lr_scaling: unknown rule {self.lr_rule!r}; expected one of {', '.join(LR_RULES)}"
            )

    @classmethod
    def from_config(
        cls,
        batch_cfg: Mapping[str, Any],
        *,
        base_b2: float | None = None,
        base_ewa_tau: float | None = None,
        first_batch_size: int | None = None,
        check_bases: bool = True,
    ) -> Coupling:
        """Build from the batch config section.

        Keys read: ``lr_scaling``, ``base_batch_size`` (0: the schedule's first
        size), ``beta2_rule``, ``beta2_table``, ``tau_rule``, ``tau_table``.
        ``base_b2`` / ``base_ewa_tau`` are the optimizer's values at the base
        batch size (needed by ``half_life``; returned as is by ``fixed``).
        ``first_batch_size`` saves building the schedule when it is known.
        ``check_bases=False`` accepts ``half_life`` without a base (validation only).

        Raises:
          BatchConfigError listing every problem in these keys.
        """
        problems = []
        base_B = batch_cfg.get("base_batch_size", 0)
        if isinstance(base_B, bool) or not isinstance(base_B, int) or base_B < 0:
            problems.append(
                f"base_batch_size must be an int >= 0 (0: the first batch size), got {base_B!r}"
            )
        elif base_B == 0:
            if first_batch_size is None:
                from bsjax.batching.schedules import schedule_from_config

                try:
                    first_batch_size = schedule_from_config(batch_cfg).batch_size_at(0)
                except BatchConfigError as err:
                    problems += err.problems
            base_B = first_batch_size
        lr_rule = batch_cfg.get("lr_scaling", "none")
        if lr_rule not in LR_RULES:
            problems.append(
                f"lr_scaling: unknown rule {lr_rule!r}; expected one of {', '.join(LR_RULES)}"
            )
        rules = {}
        for name, base in (("beta2", base_b2), ("tau", base_ewa_tau)):
            try:
                rules[name] = DecayRule.build(
                    name,
                    batch_cfg.get(f"{name}_rule", "fixed"),
                    batch_cfg.get(f"{name}_table", ""),
                    base,
                    check_base=check_bases,
                )
            except BatchConfigError as err:
                problems += err.problems
        if problems:
            raise BatchConfigError(problems)
        return cls(base_batch_size=base_B, lr_rule=lr_rule, beta2=rules["beta2"], tau=rules["tau"])

    def hparams_for(self, batch_size: int) -> dict[str, float | None]:
        """``{"lr_scale", "b2", "ewa_tau"}`` at ``batch_size``; None keeps the optimizer's value."""
        return {
            "lr_scale": lr_scale(batch_size, self.base_batch_size, self.lr_rule),
            "b2": self.beta2.value_at(batch_size, self.base_batch_size),
            "ewa_tau": self.tau.value_at(batch_size, self.base_batch_size),
        }

    def describe(self) -> str:
        """One line for logs."""
        return (
            f"lr {self.lr_rule} from base batch {self.base_batch_size}; "
            f"{self.beta2.describe()}; {self.tau.describe()}"
        )
