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


def validate_optim_config(ocfg) -> list[str]:
    """One message per bad optimizer key, before anything is compiled."""
    errors = []
    if not ocfg.lr > 0:
        errors.append(f"optim.lr={ocfg.lr} must be positive (e.g. 3.16e-3)")
    for key in ("b1", "b2"):
        if not 0 <= getattr(ocfg, key) < 1:
            errors.append(f"optim.{key}={getattr(ocfg, key)} must lie in [0, 1)")
    if not 0 <= ocfg.ewa_tau < 1:
        errors.append(f"optim.ewa_tau={ocfg.ewa_tau} must lie in [0, 1) (0 turns the average off)")
    if ocfg.eps <= 0:
        errors.append(f"optim.eps={ocfg.eps} must be positive")
    if ocfg.weight_decay < 0:
        errors.append(f"optim.weight_decay={ocfg.weight_decay} must be >= 0")
    if ocfg.clip_norm < 0:
        errors.append(f"optim.clip_norm={ocfg.clip_norm} must be >= 0 (0 disables clipping)")
    if ocfg.warmup_tokens < 0:
        errors.append(f"optim.warmup_tokens={ocfg.warmup_tokens} must be >= 0")
    if ocfg.schedule not in SCHEDULES:
        errors.append(f"optim.schedule={ocfg.schedule!r} is unknown; choose one of {SCHEDULES}")
    elif ocfg.schedule != "constant":
        if ocfg.total_tokens <= ocfg.warmup_tokens:
            errors.append(
                f"optim.total_tokens={ocfg.total_tokens} must exceed optim.warmup_tokens="
                f"{ocfg.warmup_tokens} for the {ocfg.schedule} schedule"
            )
        if ocfg.schedule == "wsd" and not 0 < ocfg.decay_fraction <= 1:
            errors.append(f"optim.decay_fraction={ocfg.decay_fraction} must lie in (0, 1]")
    if ocfg.decay_shape not in DECAY_SHAPES:
        errors.append(
            f"optim.decay_shape={ocfg.decay_shape!r} is unknown; choose one of {DECAY_SHAPES}"
        )
    if not 0 <= ocfg.final_lr_fraction <= 1:
        errors.append(f"optim.final_lr_fraction={ocfg.final_lr_fraction} must lie in [0, 1]")
    return errors
