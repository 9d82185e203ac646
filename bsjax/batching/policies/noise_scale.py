"""Gradient noise scale (McCandlish et al. 2018) measured inside the step, and a policy
whose batch follows a multiple of it.

Estimator (docs/science.md section 2). A step of K micro-batches of M sequences gives two
squared gradient norms for free: the mean over micro-steps of |g_micro|^2
(batch ``B_small = M``) and |g_mean|^2 of their mean (``B_big = K M``). With
per-example gradients of mean G and covariance Sigma,
    E|g_B|^2 = |G|^2 + tr(Sigma) / B,
so the two norms give unbiased estimates of |G|^2 and tr(Sigma):
    |G|^2    ~ (B_big |g_big|^2 - B_small |g_small|^2) / (B_big - B_small)
    tr Sigma ~ (|g_small|^2 - |g_big|^2) / (1/B_small - 1/B_big).
Each is noisy (|G|^2 can come out negative), so the two are averaged separately
by EMAs and only then divided: ``B_simple = EMA(tr Sigma) / EMA(|G|^2)``.
K = 1 gives B_small = B_big: nothing can be estimated, and the step is skipped.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from bsjax.batching.buckets import bucket_for, enumerate_buckets
from bsjax.batching.controller import Decision, PolicyContext
from bsjax.batching.errors import BatchConfigError
from bsjax.batching.policies.common import BuildContext, Ladder, PolicyBase, PolicySpec
from bsjax.sections import Section, option


class NoiseScaleWarning(UserWarning):
    """The noise scale cannot be measured from the steps the trainer reports (e.g. K = 1)."""


def noise_scale_estimate(grad_sq, micro_grad_sq, B_small, B_big):
    """Unbiased one-step estimates ``(|G|^2, tr Sigma)`` from two batch sizes.

    Args:
      grad_sq: |g|^2 of the gradient averaged over ``B_big`` examples.
      micro_grad_sq: mean of |g|^2 over gradients of ``B_small`` examples each.
      B_small, B_big: the two batch sizes, ``B_small < B_big``.
    Arrays broadcast; floats in, floats out.

    Raises:
      ValueError when the sizes are not ``0 < B_small < B_big``.
    """
    B_small = np.asarray(B_small, dtype=np.float64)
    B_big = np.asarray(B_big, dtype=np.float64)
    if np.any(B_small <= 0) or np.any(B_big <= B_small):
        raise ValueError(
            f"noise_scale_estimate needs 0 < B_small < B_big, got B_small={B_small}, "
            f"B_big={B_big} (B_big = B_small means one micro-step: use K >= 2)"
        )
    grad_sq = np.asarray(grad_sq, dtype=np.float64)
    micro_grad_sq = np.asarray(micro_grad_sq, dtype=np.float64)
    g_sq = (B_big * grad_sq - B_small * micro_grad_sq) / (B_big - B_small)
    trace_sigma = (micro_grad_sq - grad_sq) / (1.0 / B_small - 1.0 / B_big)
    if g_sq.ndim == 0:
        return float(g_sq), float(trace_sigma)
    return g_sq, trace_sigma


class NoiseScaleEMA:
    """EMAs of |G|^2 and tr(Sigma), bias-corrected, and their ratio B_simple."""

    def __init__(self, decay: float):
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
            raise BatchConfigError(f"noise-scale ema decay must be in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.count = 0
        self._g_sq = 0.0
        self._trace_sigma = 0.0

    def update(self, g_sq: float, trace_sigma: float) -> None:
        """Fold in one step's estimates (non-finite values are ignored)."""
        if not (math.isfinite(g_sq) and math.isfinite(trace_sigma)):
            return
        d = self.decay
        self._g_sq = d * self._g_sq + (1.0 - d) * g_sq
        self._trace_sigma = d * self._trace_sigma + (1.0 - d) * trace_sigma
        self.count += 1

    def _correction(self) -> float:
        return 1.0 - self.decay**self.count

    @property
    def g_sq(self) -> float:
        """Bias-corrected EMA of |G|^2 (nan before the first update)."""
        return self._g_sq / self._correction() if self.count else math.nan

    @property
    def trace_sigma(self) -> float:
        """Bias-corrected EMA of tr(Sigma) (nan before the first update)."""
        return self._trace_sigma / self._correction() if self.count else math.nan

    @property
    def b_simple(self) -> float:
        """tr(Sigma) / |G|^2; nan until both averages are positive."""
        if not self.count or self._g_sq <= 0.0 or self._trace_sigma <= 0.0:
            return math.nan
        return self._trace_sigma / self._g_sq  # the bias corrections cancel

    def state_dict(self) -> dict[str, Any]:
        return {
            "decay": self.decay,
            "count": self.count,
            "g_sq": self._g_sq,
            "trace_sigma": self._trace_sigma,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.count = int(state["count"])
        self._g_sq = float(state["g_sq"])
        self._trace_sigma = float(state["trace_sigma"])


class NoiseScalePolicy(PolicyBase):
    """The batch follows ``multiple * B_simple``, rounded to a ladder, with hysteresis.

    Every step folds the latest metrics into the EMAs (``metrics_to_log`` then
    holds this step's figures). Every ``decide_every`` steps, once
    ``warmup_steps`` estimates are in, the target ``multiple * B_simple`` is
    rounded to the nearest ladder size in log scale. To leave the current size
    c for a larger one, the target must pass the geometric midpoint between c
    and the next size up by the factor ``1 + hysteresis`` (likewise downwards,
    and only with ``allow_decrease``); the same move must be proposed at
    ``patience`` decision points in a row. So a target wobbling around a
    midpoint does not make the batch flap.

    Metrics read: ``grad_sq``, ``micro_grad_sq``, ``micro_batch_size`` (M) and
    ``accum_steps`` (K); when the last two are missing, the bucket of the
    metrics' ``batch_size`` (else of the current size) in ``buckets`` gives
    them. A ``step`` key, when present, makes repeated metrics count once.
    """

    kind = "noise_scale"

    def __init__(
        self,
        ladder: Ladder,
        initial: int,
        *,
        multiple: float = 1.0,
        ema: float = 0.95,
        decide_every: int = 10,
        warmup_steps: int = 20,
        hysteresis: float = 0.25,
        patience: int = 2,
        allow_decrease: bool = False,
        buckets: Mapping[int, Any] | None = None,
    ):
        problems = []
        if initial not in ladder.sizes:
            problems.append(f"initial batch size {initial} is not on the ladder {ladder.sizes}")
        if not (isinstance(multiple, (int, float)) and multiple > 0):
            problems.append(f"multiple must be positive, got {multiple!r}")
        for name, value, low in (
            ("decide_every", decide_every, 1),
            ("warmup_steps", warmup_steps, 0),
            ("patience", patience, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                problems.append(f"{name} must be an int >= {low}, got {value!r}")
        if not (isinstance(hysteresis, (int, float)) and hysteresis >= 0):
            problems.append(f"hysteresis must be >= 0, got {hysteresis!r}")
        if problems:
            raise BatchConfigError(problems)
        self.ladder = ladder
        self.initial = initial
        self.multiple = float(multiple)
        self.ema = NoiseScaleEMA(ema)
        self.decide_every = decide_every
        self.warmup_steps = warmup_steps
        self.hysteresis = float(hysteresis)
        self.patience = patience
        self.allow_decrease = bool(allow_decrease)
        self.buckets = dict(buckets or {})
        self.pending_size: int | None = None
        self.pending_count = 0
        self.num_switches = 0
        self.skipped_steps = 0
        self.last_metrics_step: int | None = None
        self._latest: dict[str, float] = {}
        self._warned = False

    # -- protocol -----------------------------------------------------------
    def initial_batch_size(self) -> int:
        return self.initial

    def candidate_sizes(self) -> list[int]:
        return list(self.ladder.sizes)

    def decide(self, ctx: PolicyContext) -> Decision | None:
        self._ingest(ctx.metrics, ctx.batch_size)
        if ctx.step % self.decide_every or self.ema.count < self.warmup_steps:
            return None
        b_simple = self.ema.b_simple
        if not math.isfinite(b_simple):
            return None
        target = self.multiple * b_simple
        proposal = self._proposal(ctx.batch_size, target)
        if proposal is None:
            self.pending_size, self.pending_count = None, 0
            return None
        if proposal == self.pending_size:
            self.pending_count += 1
        else:
            self.pending_size, self.pending_count = proposal, 1
        if self.pending_count < self.patience:
            return None
        self.pending_size, self.pending_count = None, 0
        self.num_switches += 1
        return Decision(
            proposal,
            "noise_scale",
            {
                "b_simple": b_simple,
                "target_batch_size": target,
                "multiple": self.multiple,
                "g_sq_ema": self.ema.g_sq,
                "trace_sigma_ema": self.ema.trace_sigma,
                "estimates": float(self.ema.count),
                "from_batch_size": float(ctx.batch_size),
            },
        )

    # -- measurement --------------------------------------------------------
    def _shape(self, metrics: Mapping[str, float], batch_size: int) -> tuple[int, int] | None:
        if "micro_batch_size" in metrics and "accum_steps" in metrics:
            return int(metrics["micro_batch_size"]), int(metrics["accum_steps"])
        bucket = self.buckets.get(int(metrics.get("batch_size", batch_size)))
        if bucket is None:
            return None
        return int(bucket.M), int(bucket.K)

    def _ingest(self, metrics: Mapping[str, float], batch_size: int) -> None:
        if "grad_sq" not in metrics or "micro_grad_sq" not in metrics:
            return
        if "step" in metrics:
            last = self.last_metrics_step
            if last is not None and int(metrics["step"]) <= last:
                return  # the trainer passed the same step's metrics again
            self.last_metrics_step = int(metrics["step"])
        shape = self._shape(metrics, batch_size)
        if shape is None or shape[1] < 2:
            self.skipped_steps += 1
            if not self._warned:
                self._warned = True
                why = (
                    "the step's micro-batch shape is unknown"
                    if shape is None
                    else f"the step had K={shape[1]} micro-step (M={shape[0]}); the estimator "
                    f"needs K >= 2"
                )
                warnings.warn(
                    f"noise scale not measured: {why}; lower "
                    f"batch.micro_batch_per_device so every bucket has K >= 2",
                    NoiseScaleWarning,
                    stacklevel=3,
                )
            return
        M, K = shape
        g_sq, trace_sigma = noise_scale_estimate(
            metrics["grad_sq"], metrics["micro_grad_sq"], M, K * M
        )
        self.ema.update(g_sq, trace_sigma)
        self._latest = {
            "g_sq": g_sq,
            "trace_sigma": trace_sigma,
            "g_sq_ema": self.ema.g_sq,
            "trace_sigma_ema": self.ema.trace_sigma,
            "b_simple": self.ema.b_simple,
        }

    def _proposal(self, current: int, target: float) -> int | None:
        """A ladder size other than ``current`` if the target is clearly away from it."""
        nearest = self.ladder.nearest(target)
        if nearest > current:
            up = self.ladder.above(current)
            if up is not None and target >= math.sqrt(current * up) * (1.0 + self.hysteresis):
                return nearest
        elif nearest < current and self.allow_decrease:
            down = self.ladder.below(current)
            if down is not None and target <= math.sqrt(current * down) / (1.0 + self.hysteresis):
                return nearest
        return None

    # -- hooks and state ----------------------------------------------------
    def metrics_to_log(self) -> dict[str, float]:
        """This step's |G|^2 and tr(Sigma) estimates, their EMAs and B_simple."""
        return dict(self._latest)

    def summary(self) -> dict[str, float]:
        return {
            "noise_scale_switches": float(self.num_switches),
            "noise_scale_estimates": float(self.ema.count),
            "noise_scale_skipped_steps": float(self.skipped_steps),
            "b_simple": self.ema.b_simple,
        }

    def describe(self) -> str:
        return (
            f"noise_scale: {self.multiple:g} x B_simple on {self.ladder.sizes}, ema "
            f"{self.ema.decay:g}, every {self.decide_every} steps after {self.warmup_steps}, "
            f"hysteresis {self.hysteresis:g}, patience {self.patience}"
            + (", may decrease" if self.allow_decrease else "")
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.kind,
            "describe": self.describe(),
            "ema": self.ema.state_dict(),
            "pending_size": self.pending_size,
            "pending_count": self.pending_count,
            "num_switches": self.num_switches,
            "skipped_steps": self.skipped_steps,
            "last_metrics_step": self.last_metrics_step,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._check_state(state)
        self.ema.load_state_dict(state["ema"])
        pending = state.get("pending_size")
        self.pending_size = None if pending is None else int(pending)
        self.pending_count = int(state["pending_count"])
        self.num_switches = int(state["num_switches"])
        self.skipped_steps = int(state["skipped_steps"])
        last = state.get("last_metrics_step")
        self.last_metrics_step = None if last is None else int(last)


@dataclasses.dataclass(frozen=True)
class NoiseScaleSection(Section):
    """``batch.policy.noise_scale``: batch = multiple x B_simple (McCandlish et al. 2018)."""

    multiple: float = option(1.0, "batch = multiple x B_simple")
    ema: float = option(0.95, "EMA decay of the |G|^2 and tr(Sigma) estimates, in [0, 1)")
    decide_every: int = option(10, "steps between decisions")
    warmup_steps: int = option(20, "estimates to collect before the first decision")
    hysteresis: float = option(0.25, "fraction past the geometric midpoint needed to move")
    patience: int = option(2, "decisions in a row that must propose the same move")
    allow_decrease: bool = option(False, "let the batch shrink")


def _single_micro_step_problem(ladder: Ladder, ctx: BuildContext) -> list[str]:
    """The estimator needs K >= 2 micro-steps at every ladder size."""
    single = []
    for B in ladder.sizes:
        try:
            if (
                bucket_for(B, ctx.data_shards, ctx.micro_batch_per_device, ctx.max_accum_steps).K
                < 2
            ):
                single.append(B)
        except BatchConfigError:
            continue  # the bucket check reports it
    if not single:
        return []
    fix = min(single) // (2 * ctx.data_shards)
    remedy = (
        f"set batch.micro_batch_per_device <= {fix}"
        if fix >= 1
        else f"the smallest size must be at least {2 * ctx.data_shards} (two micro-steps on "
        f"{ctx.data_shards} data shards)"
    )
    return [
        f"batch.policy.name='noise_scale' measures the noise scale from >= 2 micro-steps "
        f"per step, but batch sizes {single} run as one micro-step (K=1) with "
        f"batch.micro_batch_per_device={ctx.micro_batch_per_device} on {ctx.data_shards} "
        f"data shards; {remedy}"
    ]


def build(section: NoiseScaleSection, ctx: BuildContext) -> NoiseScalePolicy:
    """The noise-scale policy of ``batch.policy.noise_scale`` (buckets known when the data
    shards are); refuses ladder sizes that run as a single micro-step."""
    ladder = ctx.ladder()
    buckets = None
    if ctx.data_shards:
        problems = _single_micro_step_problem(ladder, ctx)
        if problems:
            raise BatchConfigError(problems)
        try:
            buckets = enumerate_buckets(
                ladder.sizes, ctx.data_shards, ctx.micro_batch_per_device, ctx.max_accum_steps
            )
        except BatchConfigError:
            buckets = None  # reported by the bucket check of validation
    return NoiseScalePolicy(
        ladder,
        ctx.start,
        multiple=section.multiple,
        ema=section.ema,
        decide_every=section.decide_every,
        warmup_steps=section.warmup_steps,
        hysteresis=section.hysteresis,
        patience=section.patience,
        allow_decrease=section.allow_decrease,
        buckets=buckets,
    )


SPEC = PolicySpec("noise_scale", build, NoiseScaleSection, "noise_scale policy settings")
