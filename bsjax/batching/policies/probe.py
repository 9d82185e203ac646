"""Branched CBS probe (Merrill et al. 2025, docs/science.md section 5).

At a decision point the trainer trains short branches from the current state,
one per factor k in ``factors`` (1, 2, 4, ...), at batch size k B with the LR
multiplied by the run's LR rule at k B (sqrt(k) for the sqrt rule), each over
the same next ``probe_tokens`` tokens of the stream, and reports each branch's
loss. The measured local CBS is k* B, where k* is the largest factor whose loss
stays within ``eps`` of every smaller factor's loss (the scan stops at the first
factor that does not). When the measured CBS exceeds ``cbs_over`` B (2 B in the
paper), the batch doubles: the next ladder size at or above 2 B.

The policy cannot train, so a ``Prober`` is injected with ``attach_prober``.
Branch compute (tokens and optimizer steps) is counted in the policy state and
in every decision's ``measured``, so it can be reported apart from the main run.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from bsjax.batching.controller import Decision, PolicyContext
from bsjax.batching.coupling import lr_scale
from bsjax.batching.errors import BatchConfigError
from bsjax.batching.parsing import parse_count, parse_count_list
from bsjax.batching.policies.common import BuildContext, Ladder, PolicyBase, PolicySpec
from bsjax.sections import Section, option

EPS_MODES = ("relative", "absolute")
HISTORY = 16  # probes kept in the checkpointed state


@runtime_checkable
class Prober(Protocol):
    """What the trainer provides to run branches from its current state."""

    def probe(
        self,
        step: int,
        batch_size: int,
        factors: list[int],
        lr_multipliers: list[float],
        tokens: int,
    ) -> dict[int, float]:
        """Train one branch per factor k from the current state and return its loss.

        Branch k runs at batch size ``k * batch_size`` with the current LR times
        ``lr_multipliers[i]``, over the next ``tokens`` tokens of the stream
        (the same tokens for every branch; the main run later consumes them
        too). The main run's state, stream position and policy are unchanged.
        Returns ``{k: loss}`` with the loss of each branch's parameters at the
        end (an evaluation loss on held-out batches is the least noisy).
        """


class ProberMissingError(RuntimeError):
    """A probe policy reached a decision point with no prober attached."""


def measured_cbs_factor(
    losses: Mapping[int, float], factors: Sequence[int], eps: float, eps_mode: str = "relative"
) -> int:
    """The largest factor whose loss stays within ``eps`` of every smaller factor's.

    Factors are scanned in increasing order; factor k passes when
    ``loss[k] <= min(loss[j] for j < k) + tol`` with ``tol = eps`` (absolute) or
    ``eps * min(...)`` (relative). The scan stops at the first failure, so a
    lucky large branch after a failed one does not count. The first factor
    always passes.
    """
    if eps_mode not in EPS_MODES:
        raise BatchConfigError(
            f"eps_mode: unknown mode {eps_mode!r}; expected one of {', '.join(EPS_MODES)}"
        )
    best = losses[factors[0]]
    k_star = factors[0]
    for k in factors[1:]:
        tol = eps * abs(best) if eps_mode == "relative" else eps
        if not losses[k] <= best + tol:
            break
        k_star = k
        best = min(best, losses[k])
    return k_star


class ProbePolicy(PolicyBase):
    """Doubles the batch when a branched probe measures a CBS above ``cbs_over * B``."""

    kind = "probe"
    wants_prober = True

    def __init__(
        self,
        ladder: Ladder,
        initial: int,
        *,
        ctx_len: int,
        factors: Sequence[int],
        probe_tokens: int,
        every_tokens: int,
        start_tokens: int | None = None,
        eps: float = 0.01,
        eps_mode: str = "relative",
        cbs_over: float = 2.0,
        lr_rule: str = "sqrt",
    ):
        problems = []
        factors = list(factors)
        if initial not in ladder.sizes:
            problems.append(f"initial batch size {initial} is not on the ladder {ladder.sizes}")
        if (
            len(factors) < 2
            or factors[0] != 1
            or any(isinstance(k, bool) or not isinstance(k, int) for k in factors)
            or any(b <= a for a, b in zip(factors, factors[1:]))
        ):
            problems.append(
                f"factors must be increasing ints starting at 1 with at least two "
                f"entries (e.g. '1 2 4'), got {factors!r}"
            )
        for name, value in (
            ("ctx_len", ctx_len),
            ("probe_tokens", probe_tokens),
            ("every_tokens", every_tokens),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                problems.append(f"{name} must be a positive int, got {value!r}")
        if start_tokens is not None and (not isinstance(start_tokens, int) or start_tokens < 0):
            problems.append(f"start_tokens must be an int >= 0, got {start_tokens!r}")
        if not (isinstance(eps, (int, float)) and eps >= 0):
            problems.append(f"eps must be >= 0, got {eps!r}")
        if eps_mode not in EPS_MODES:
            problems.append(
                f"eps_mode: unknown mode {eps_mode!r}; expected one of {', '.join(EPS_MODES)}"
            )
        if not (isinstance(cbs_over, (int, float)) and cbs_over >= 1):
            problems.append(f"cbs_over must be >= 1, got {cbs_over!r}")
        if not problems:
            try:
                lr_scale(2, 1, lr_rule)
            except BatchConfigError as err:
                problems += err.problems
        if problems:
            raise BatchConfigError(problems)
        self.ladder = ladder
        self.initial = initial
        self.ctx_len = ctx_len
        self.factors = factors
        self.probe_tokens = probe_tokens
        self.every_tokens = every_tokens
        self.eps = float(eps)
        self.eps_mode = eps_mode
        self.cbs_over = float(cbs_over)
        self.lr_rule = lr_rule
        self.prober: Prober | None = None
        self.next_probe_tokens = every_tokens if start_tokens is None else start_tokens
        self.num_probes = 0
        self.num_switches = 0
        self.branch_tokens = 0
        self.branch_steps = 0
        self.history: list[dict[str, Any]] = []

    def attach_prober(self, prober: Prober) -> None:
        """Give the policy the trainer's branch runner (again after every resume)."""
        if not callable(getattr(prober, "probe", None)):
            raise TypeError(
                f"prober must have a probe(step, batch_size, factors, "
                f"lr_multipliers, tokens) method, got {type(prober).__name__}"
            )
        self.prober = prober

    # -- protocol -----------------------------------------------------------
    def initial_batch_size(self) -> int:
        return self.initial

    def candidate_sizes(self) -> list[int]:
        """Ladder sizes plus every branch size k B of a size that can still grow.

        The branches run through compiled buckets too, so they are listed here
        and the plan compiles them ahead of time.
        """
        sizes = set(self.ladder.sizes)
        sizes.update(self.branch_sizes())
        return sorted(sizes)

    def branch_sizes(self) -> list[int]:
        """Batch sizes the probes may train branches at."""
        growable = [B for B in self.ladder.sizes if self.ladder.at_least(2 * B) is not None]
        return sorted({k * B for B in growable for k in self.factors})

    def lr_multipliers(self, batch_size: int) -> list[float]:
        """LR multiplier of each branch: the run's LR rule from B to k B."""
        return [lr_scale(k * batch_size, batch_size, self.lr_rule) for k in self.factors]

    def is_decision_point(self, ctx: PolicyContext) -> bool:
        return ctx.tokens >= self.next_probe_tokens

    def decide(self, ctx: PolicyContext) -> Decision | None:
        if ctx.tokens < self.next_probe_tokens:
            return None
        self.next_probe_tokens = ctx.tokens + self.every_tokens
        doubled = self.ladder.at_least(2 * ctx.batch_size)
        if doubled is None:
            return None  # at the top of the ladder: a probe could change nothing
        if self.prober is None:
            raise ProberMissingError(
                "probe policy reached a decision point without a prober; the trainer must "
                "call policy.attach_prober(...) after building and after resuming"
            )
        multipliers = self.lr_multipliers(ctx.batch_size)
        losses = self.prober.probe(
            ctx.step, ctx.batch_size, list(self.factors), multipliers, self.probe_tokens
        )
        missing = [k for k in self.factors if k not in losses]
        if missing:
            raise ValueError(
                f"prober returned no loss for factors {missing} (asked for "
                f"{self.factors}); got {sorted(losses)}"
            )
        losses = {k: float(losses[k]) for k in self.factors}
        steps = sum(
            math.ceil(self.probe_tokens / (k * ctx.batch_size * self.ctx_len)) for k in self.factors
        )
        self.num_probes += 1
        self.branch_tokens += len(self.factors) * self.probe_tokens
        self.branch_steps += steps
        # A diverged branch (nan or inf) fails the comparison, so the scan stops before it.
        k_star = measured_cbs_factor(losses, self.factors, self.eps, self.eps_mode)
        cbs = k_star * ctx.batch_size
        switch = cbs > self.cbs_over * ctx.batch_size
        record = {
            "step": ctx.step,
            "tokens": ctx.tokens,
            "batch_size": ctx.batch_size,
            "k_star": k_star,
            "cbs": cbs,
            "switched": switch,
            "losses": {
                str(k): v if math.isfinite(v) else None  # JSON-safe
                for k, v in losses.items()
            },
        }
        self.history = (self.history + [record])[-HISTORY:]
        if not switch:
            return None
        self.num_switches += 1
        measured = {
            "cbs": float(cbs),
            "k_star": float(k_star),
            "from_batch_size": float(ctx.batch_size),
            "probe_tokens": float(self.probe_tokens),
            "branch_tokens_total": float(self.branch_tokens),
            "branch_steps_total": float(self.branch_steps),
            "branch_steps": float(steps),
            "probes": float(self.num_probes),
        }
        measured.update({f"loss_k{k}": v for k, v in losses.items() if math.isfinite(v)})
        return Decision(doubled, "probe", measured)

    # -- hooks and state ----------------------------------------------------
    def metrics_to_log(self) -> dict[str, float]:
        """Branch compute so far and the latest measured CBS."""
        out = {"branch_tokens": float(self.branch_tokens), "branch_steps": float(self.branch_steps)}
        if self.history:
            out["measured_cbs"] = float(self.history[-1]["cbs"])
        return out

    def summary(self) -> dict[str, float]:
        return {
            "probes": float(self.num_probes),
            "probe_switches": float(self.num_switches),
            "branch_tokens": float(self.branch_tokens),
            "branch_steps": float(self.branch_steps),
        }

    def describe(self) -> str:
        return (
            f"probe: factors {self.factors}, eps {self.eps:g} ({self.eps_mode}), "
            f"{self.probe_tokens} tokens per branch every {self.every_tokens} tokens, "
            f"double when CBS > {self.cbs_over:g} B, LR rule {self.lr_rule}, "
            f"ladder {self.ladder.sizes}"
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.kind,
            "describe": self.describe(),
            "next_probe_tokens": self.next_probe_tokens,
            "num_probes": self.num_probes,
            "num_switches": self.num_switches,
            "branch_tokens": self.branch_tokens,
            "branch_steps": self.branch_steps,
            "history": list(self.history),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._check_state(state)
        self.next_probe_tokens = int(state["next_probe_tokens"])
        self.num_probes = int(state["num_probes"])
        self.num_switches = int(state["num_switches"])
        self.branch_tokens = int(state["branch_tokens"])
        self.branch_steps = int(state["branch_steps"])
        self.history = [dict(r) for r in state.get("history", [])]


@dataclasses.dataclass(frozen=True)
class ProbeSection(Section):
    """``batch.policy.probe``: branched local-CBS probes (Merrill et al. 2025)."""

    factors: str = option("1 2 4", "branch factors k (branches at k B), increasing from 1")
    eps: float = option(0.01, "k passes within eps of every smaller k's loss")
    eps_mode: str = option("relative", "eps is relative | absolute")
    probe_tokens: str = option("100K", "tokens each branch trains on")
    every_tokens: str = option("1M", "tokens between probes")
    start_tokens: str = option("", "tokens before the first probe ('': every_tokens)")
    cbs_over: float = option(2.0, "double B when the measured CBS > cbs_over x B")


def _tokens(section: ProbeSection, key: str, problems: list[str], *, low: int = 1) -> int | None:
    name = f"batch.policy.probe.{key}"
    try:
        n = parse_count(section[key], name=name)
    except BatchConfigError as err:
        problems += err.problems
        return None
    if n < low:
        problems.append(f"{name} must be {'positive' if low else '>= 0'}, got {section[key]!r}")
        return None
    return n


def build(section: ProbeSection, ctx: BuildContext) -> ProbePolicy:
    """The probe policy of ``batch.policy.probe``; the branch LRs follow ``batch.lr_scaling``."""
    ladder = ctx.ladder()
    problems: list[str] = []
    probe_tokens = _tokens(section, "probe_tokens", problems)
    every_tokens = _tokens(section, "every_tokens", problems)
    start_tokens = None
    if section.start_tokens:
        start_tokens = _tokens(section, "start_tokens", problems, low=0)
    try:
        factors = parse_count_list(section.factors, name="batch.policy.probe.factors")
    except BatchConfigError as err:
        problems += err.problems
        factors = []
    if problems:
        raise BatchConfigError(problems)
    return ProbePolicy(
        ladder,
        ctx.start,
        ctx_len=ctx.ctx_len,
        factors=factors,
        probe_tokens=probe_tokens,
        every_tokens=every_tokens,
        start_tokens=start_tokens,
        eps=section.eps,
        eps_mode=section.eps_mode,
        cbs_over=section.cbs_over,
        lr_rule=ctx.lr_scaling,
    )


SPEC = PolicySpec("probe", build, ProbeSection, "probe policy settings")
