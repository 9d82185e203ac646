"""Batch growth from the WSD E(S) fits (Zhou et al. 2026, seed 000; docs/science.md section 3).

A sweep fitted per target loss L_i the example-optimal batch B_opt(L_i)
(``bsjax.cbs.wsd.fit_wsd_curves``; ``bsjax analyze`` does not run this fit); B_opt
grows as the target falls. Two ways to turn that into a schedule:

- **loss-driven** (``LossTargetPolicy``): train at the B_opt of the next
  target still ahead. Start at B_opt(L_1) of the highest target; when the
  running loss falls to L_i, move to B_opt(L_{i+1}); after the last target the
  size stays. Sizes are made non-decreasing (a running maximum), as the batch
  is only ever raised. The running loss is the train loss smoothed by an EMA,
  or an evaluation loss the trainer passes (``eval_loss`` / ``ewa_eval_loss``,
  used as given, when present).
- **token-stepped**: the paper's own scheduler raises the batch at fixed token
  counts ("0:B1 2M:B2"): a ``TablePolicy`` with reason ``wsd-es``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from bsjax.batching.controller import Decision, PolicyContext
from bsjax.batching.errors import BatchConfigError
from bsjax.batching.parsing import parse_count, parse_pairs
from bsjax.batching.policies.common import BuildContext, PolicyBase, PolicySpec, TablePolicy
from bsjax.batching.schedules import TableSchedule
from bsjax.sections import Section, one_of, option

LOSS_KEYS = ("loss", "eval_loss", "ewa_eval_loss")
MODES = ("loss", "tokens")


def parse_loss_targets(spec: str, *, name: str = "targets") -> list[tuple[float, int]]:
    """Read ``"4.0:64 3.5:128 3.2:256"`` (target loss : fitted B_opt) into pairs.

    Raises:
      BatchConfigError naming ``name`` for an unreadable entry, a non-positive
      size, a non-finite loss or repeated losses.
    """
    problems = []
    pairs = []
    try:
        items = parse_pairs(spec, name=name)
    except BatchConfigError as err:
        raise BatchConfigError(err.problems) from None
    if not items:
        raise BatchConfigError(
            f"{name}: empty; write target losses with their fitted B_opt, "
            f"e.g. '4.0:64 3.5:128 3.2:256'"
        )
    for loss_text, size_text in items:
        try:
            loss = float(loss_text)
        except ValueError:
            problems.append(f"{name}: cannot read loss {loss_text!r} in '{loss_text}:{size_text}'")
            continue
        try:
            size = parse_count(size_text, name=f"{name} size {size_text!r}")
        except BatchConfigError as err:
            problems += err.problems
            continue
        if not math.isfinite(loss):
            problems.append(f"{name}: loss {loss_text!r} must be finite")
        if size <= 0:
            problems.append(f"{name}: batch size {size} for loss {loss_text} must be positive")
        pairs.append((loss, size))
    losses = [loss for loss, _ in pairs]
    if len(set(losses)) != len(losses):
        problems.append(f"{name}: each target loss may appear once, got {losses}")
    if problems:
        raise BatchConfigError(problems)
    return pairs


class LossTargetPolicy(PolicyBase):
    """Raises the batch to the next target's B_opt each time the running loss crosses a target."""

    kind = "wsd_es"

    def __init__(
        self,
        targets: Sequence[tuple[float, int]],
        *,
        loss_key: str = "loss",
        ema: float = 0.9,
        min_steps: int = 0,
    ):
        problems = []
        if not targets:
            problems.append("targets: give at least one 'loss:B_opt' pair")
        if loss_key not in LOSS_KEYS:
            problems.append(
                f"loss_key: unknown key {loss_key!r}; expected one of {', '.join(LOSS_KEYS)}"
            )
        if isinstance(ema, bool) or not isinstance(ema, (int, float)) or not 0 <= ema < 1:
            problems.append(f"ema must be in [0, 1), got {ema!r}")
        if isinstance(min_steps, bool) or not isinstance(min_steps, int) or min_steps < 0:
            problems.append(f"min_steps must be an int >= 0, got {min_steps!r}")
        if problems:
            raise BatchConfigError(problems)
        ordered = sorted(targets, key=lambda pair: -pair[0])  # highest loss is reached first
        self.target_losses = [float(loss) for loss, _ in ordered]
        self.fitted_sizes = [int(size) for _, size in ordered]
        self.sizes: list[int] = []
        for size in self.fitted_sizes:
            self.sizes.append(max(size, self.sizes[-1]) if self.sizes else size)
        if self.sizes != self.fitted_sizes:
            warnings.warn(
                f"wsd_es targets: fitted B_opt {self.fitted_sizes} fall as the target "
                f"loss falls; using the running maximum {self.sizes}",
                stacklevel=2,
            )
        self.loss_key = loss_key
        self.ema_decay = float(ema)
        self.min_steps = min_steps
        self.next_target = 0  # index of the first target not yet crossed
        self.running_loss = math.nan
        self._ema_sum = 0.0
        self._ema_count = 0
        self.last_metrics_step: int | None = None
        self.num_switches = 0

    def initial_batch_size(self) -> int:
        return self.sizes[0]

    def candidate_sizes(self) -> list[int]:
        return sorted(set(self.sizes))

    def size_for(self, next_target: int) -> int:
        """Batch size while ``next_target`` is the first target not yet crossed."""
        return self.sizes[min(next_target, len(self.sizes) - 1)]

    def _update_running_loss(self, metrics: Mapping[str, float]) -> bool:
        if self.loss_key not in metrics:
            return False
        if "step" in metrics:
            last = self.last_metrics_step
            if last is not None and int(metrics["step"]) <= last:
                return False
            self.last_metrics_step = int(metrics["step"])
        value = float(metrics[self.loss_key])
        if not math.isfinite(value):
            return False
        if self.loss_key == "loss":
            self._ema_sum = self.ema_decay * self._ema_sum + (1 - self.ema_decay) * value
            self._ema_count += 1
            self.running_loss = self._ema_sum / (1 - self.ema_decay**self._ema_count)
        else:
            self._ema_count += 1
            self.running_loss = value
        return True

    def decide(self, ctx: PolicyContext) -> Decision | None:
        if not self._update_running_loss(ctx.metrics) or ctx.step < self.min_steps:
            return None
        crossed = self.next_target
        targets = self.target_losses
        while crossed < len(targets) and self.running_loss <= targets[crossed]:
            crossed += 1
        if crossed == self.next_target:
            return None
        self.next_target = crossed
        new_size = self.size_for(crossed)
        if new_size == ctx.batch_size:
            return None
        self.num_switches += 1
        measured = {
            "running_loss": self.running_loss,
            "crossed_target": self.target_losses[crossed - 1],
            "targets_crossed": float(crossed),
            "from_batch_size": float(ctx.batch_size),
            "b_opt": float(self.fitted_sizes[min(crossed, len(self.sizes) - 1)]),
        }
        if crossed < len(self.target_losses):
            measured["next_target"] = self.target_losses[crossed]
        return Decision(new_size, "wsd-es", measured)

    def metrics_to_log(self) -> dict[str, float]:
        if not self._ema_count:
            return {}
        return {"running_loss": self.running_loss, "targets_crossed": float(self.next_target)}

    def summary(self) -> dict[str, float]:
        return {
            "targets_crossed": float(self.next_target),
            "wsd_es_switches": float(self.num_switches),
        }

    def describe(self) -> str:
        pairs = " ".join(f"{loss:g}:{size}" for loss, size in zip(self.target_losses, self.sizes))
        return f"wsd_es: loss targets {pairs} on {self.loss_key} (ema {self.ema_decay:g})"

    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.kind,
            "describe": self.describe(),
            "next_target": self.next_target,
            "ema_sum": self._ema_sum,
            "ema_count": self._ema_count,
            "running_loss": None if math.isnan(self.running_loss) else self.running_loss,
            "last_metrics_step": self.last_metrics_step,
            "num_switches": self.num_switches,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._check_state(state)
        self.next_target = int(state["next_target"])
        self._ema_sum = float(state["ema_sum"])
        self._ema_count = int(state["ema_count"])
        running = state.get("running_loss")
        self.running_loss = math.nan if running is None else float(running)
        last = state.get("last_metrics_step")
        self.last_metrics_step = None if last is None else int(last)
        self.num_switches = int(state["num_switches"])


def token_stepped_policy(table: str | TableSchedule) -> TablePolicy:
    """The paper's scheduler: the batch rises at fixed token counts, e.g. ``"0:64 2M:128"``."""
    schedule = (
        table
        if isinstance(table, TableSchedule)
        else TableSchedule.parse(table, name="batch.policy.wsd_es.table")
    )
    return TablePolicy(schedule, kind="wsd_es_tokens", reason="wsd-es")


@dataclasses.dataclass(frozen=True)
class WsdEsSection(Section):
    """``batch.policy.wsd_es``: batch growth from WSD E(S) fits (Zhou et al. 2026)."""

    mode: str = option("loss", "loss (cross target losses) | tokens (a token table)")
    targets: str = option("", "mode loss: 'loss:B_opt ...' pairs from a WSD sweep")
    table: str = option("", "mode tokens: '0:B1 2M:B2' token table")
    loss_key: str = option(
        "loss", "running loss: loss (EMA of train loss) | eval_loss | ewa_eval_loss"
    )
    ema: float = option(0.9, "EMA decay of the train loss (loss_key 'loss')")
    min_steps: int = option(0, "no switch before this step")

    def check(self, path: str = "batch.policy.wsd_es") -> list[str]:
        return one_of(f"{path}.mode", self.mode, MODES)


def build(section: WsdEsSection, ctx: BuildContext) -> TablePolicy | LossTargetPolicy:
    """The WSD policy of ``batch.policy.wsd_es``: a token table, or loss-driven targets."""
    if section.mode == "tokens":
        return token_stepped_policy(section.table)
    targets = parse_loss_targets(section.targets, name="batch.policy.wsd_es.targets")
    return LossTargetPolicy(
        targets, loss_key=section.loss_key, ema=section.ema, min_steps=section.min_steps
    )


def _sizes_key(section: WsdEsSection, ctx: BuildContext) -> str:
    return "batch.policy.wsd_es." + ("table" if section.mode == "tokens" else "targets")


SPEC = PolicySpec("wsd_es", build, WsdEsSection, "wsd_es policy settings", _sizes_key)
