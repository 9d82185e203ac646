"""The optimizer: clip, Adam(W), LR schedules counted in tokens, EWA of parameters.

LR, Adam's beta2 and the EWA decay tau are run-time inputs of the compiled step
(``optax.inject_hyperparams``), so moving them at a batch-size switch compiles
nothing. The LR schedule is evaluated on the host in float64 because token
counts pass 2**31 in real runs; optax's step-count schedules run in int32.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import optax

from bsjax.sections import Section, at_least, in_unit_interval, one_of, option, positive

SCHEDULES = ("constant", "cosine", "wsd")
DECAY_SHAPES = ("linear", "cosine", "sqrt")


@dataclasses.dataclass(frozen=True)
class LRSchedule:
    """Linear warmup, then constant, cosine or WSD (warmup-stable-decay), in tokens.

    ``total_tokens`` is the length that cosine and WSD decay over; constant ignores
    it (the source paper's protocol: constant LR plus EWA, no fixed length).
    WSD decays over the last ``decay_fraction`` of ``total_tokens`` with shape
    linear, cosine or ``sqrt`` (1 - sqrt(progress)).
    """

    peak_lr: float
    warmup_tokens: float = 0.0
    kind: str = "constant"
    total_tokens: float = 0.0
    decay_fraction: float = 0.2
    decay_shape: str = "linear"
    final_lr_fraction: float = 0.0

    def __call__(self, tokens: float) -> float:
        tokens = float(tokens)
        if self.warmup_tokens > 0 and tokens < self.warmup_tokens:
            return self.peak_lr * tokens / self.warmup_tokens
        if self.kind == "constant":
            return self.peak_lr
        if self.kind == "cosine":
            start, span = self.warmup_tokens, self.total_tokens - self.warmup_tokens
            return self._decayed(min(max((tokens - start) / span, 0.0), 1.0), "cosine")
        decay_start = self.total_tokens * (1.0 - self.decay_fraction)
        if tokens < decay_start:
            return self.peak_lr
        span = self.total_tokens - decay_start
        return self._decayed(min((tokens - decay_start) / span, 1.0), self.decay_shape)

    def _decayed(self, progress: float, shape: str) -> float:
        if shape == "linear":
            factor = 1.0 - progress
        elif shape == "cosine":
            factor = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            factor = 1.0 - math.sqrt(progress)
        floor = self.final_lr_fraction
        return self.peak_lr * (floor + (1.0 - floor) * factor)

    def halving_tokens(self) -> list[float]:
        """Token counts where the decay phase has halved the LR once more (for seesaw)."""
        if self.kind == "constant":
            return []
        marks, target, lo = [], 0.5, self.warmup_tokens
        while (
            target * self.peak_lr > max(self.final_lr_fraction * self.peak_lr, 1e-12)
            and target > 1e-3
        ):
            hi = self.total_tokens
            if self(hi) > target * self.peak_lr:
                break
            for _ in range(100):  # bisection: the schedule is non-increasing after warmup
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if self(mid) > target * self.peak_lr else (lo, mid)
            marks.append(hi)
            target /= 2
        return marks


def lr_schedule_from_config(ocfg) -> LRSchedule:
    return LRSchedule(
        peak_lr=ocfg.lr,
        warmup_tokens=ocfg.warmup_tokens,
        kind=ocfg.schedule,
        total_tokens=ocfg.total_tokens,
        decay_fraction=ocfg.decay_fraction,
        decay_shape=ocfg.decay_shape,
        final_lr_fraction=ocfg.final_lr_fraction,
    )


def _decay_mask(params):
    """Weight decay on matrices only; LayerNorm scales and biases are left alone."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(ocfg) -> optax.GradientTransformation:
    """Global-norm clipping followed by AdamW whose LR and beta2 are injectable."""
    # ``mask`` must be static: inject_hyperparams would call a callable as a schedule.
    adam = optax.inject_hyperparams(optax.adamw, static_args=("mask",))(
        learning_rate=ocfg.lr,
        b1=ocfg.b1,
        b2=ocfg.b2,
        eps=ocfg.eps,
        weight_decay=ocfg.weight_decay,
        mask=_decay_mask,
    )
    if ocfg.clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(ocfg.clip_norm), adam)
    return optax.chain(optax.identity(), adam)


def set_hyperparams(opt_state, lr: jax.Array, b2: jax.Array):
    """Return ``opt_state`` with the injected LR and beta2 replaced (traced scalars)."""
    clip_state, adam_state = opt_state
    hyper = dict(adam_state.hyperparams)
    hyper["learning_rate"] = jnp.asarray(lr, hyper["learning_rate"].dtype)
    hyper["b2"] = jnp.asarray(b2, hyper["b2"].dtype)
    return (clip_state, adam_state._replace(hyperparams=hyper))


def ewa_update(ewa, params, tau: jax.Array):
    """Exponential weight average, xi <- tau * xi + (1 - tau) * theta (Zhang et al.)."""
    return jax.tree.map(lambda e, p: (tau * e + (1.0 - tau) * p).astype(e.dtype), ewa, params)


@dataclasses.dataclass(frozen=True)
class OptimSection(Section):
    """The ``optim`` section. Defaults: Zhang et al. Table 3 (beta1 0.95, LR 3.16e-3, no
    weight decay, clip 1.0)."""

    lr: float = option(3.16e-3, "peak learning rate")
    b1: float = option(0.95, "Adam beta1, in [0, 1)")
    b2: float = option(0.99, "Adam beta2 at the base batch size, in [0, 1)")
    eps: float = option(1e-8, "Adam epsilon")
    weight_decay: float = option(0.0, "decoupled weight decay on matrices")
    clip_norm: float = option(1.0, "global-norm gradient clipping (0: off)")
    schedule: str = option("constant", "LR schedule after warmup: " + " | ".join(SCHEDULES))
    warmup_tokens: int = option(0, "linear LR warmup length in tokens")
    total_tokens: int = option(0, "length that cosine and wsd decay over, in tokens")
    decay_fraction: float = option(0.2, "wsd: share of total_tokens spent decaying")
    decay_shape: str = option("linear", "wsd decay shape: " + " | ".join(DECAY_SHAPES))
    final_lr_fraction: float = option(0.0, "LR at the end of the decay, as a fraction of the peak")
    ewa_tau: float = option(0.99, "EWA decay of the parameters per step at the base batch (0: off)")

    def check(self, path: str = "optim") -> list[str]:
        return validate_optim_config(self, path)


def validate_optim_config(ocfg, path: str = "optim") -> list[str]:
    """One message per bad optimizer key, before anything is compiled."""
    problems = positive(f"{path}.lr", ocfg.lr, "3.16e-3") + positive(f"{path}.eps", ocfg.eps)
    for key in ("b1", "b2"):
        problems += in_unit_interval(f"{path}.{key}", ocfg[key])
    problems += in_unit_interval(f"{path}.ewa_tau", ocfg.ewa_tau, note=" (0 turns the average off)")
    problems += at_least(f"{path}.weight_decay", ocfg.weight_decay, 0)
    problems += at_least(f"{path}.clip_norm", ocfg.clip_norm, 0, " (0 disables clipping)")
    problems += at_least(f"{path}.warmup_tokens", ocfg.warmup_tokens, 0)
    schedule_problems = one_of(f"{path}.schedule", ocfg.schedule, SCHEDULES)
    problems += schedule_problems
    if not schedule_problems and ocfg.schedule != "constant":
        if ocfg.total_tokens <= ocfg.warmup_tokens:
            problems.append(
                f"{path}.total_tokens={ocfg.total_tokens} must exceed {path}.warmup_tokens="
                f"{ocfg.warmup_tokens} for the {ocfg.schedule} schedule"
            )
        if ocfg.schedule == "wsd" and not 0 < ocfg.decay_fraction <= 1:
            problems.append(f"{path}.decay_fraction: must lie in (0, 1], got {ocfg.decay_fraction}")
    problems += one_of(f"{path}.decay_shape", ocfg.decay_shape, DECAY_SHAPES)
    problems += in_unit_interval(f"{path}.final_lr_fraction", ocfg.final_lr_fraction, closed=True)
    return problems
