"""Branches from the live train state, for the branched CBS probe (Merrill et al. 2025).

Each branch copies the current state, trains k * B sequences per step with LR
multiplied as the policy asks, over the examples that start at the stream's
current position (the same examples for every branch), and is scored by its
eval loss. The main run's state and stream position are left untouched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from bsjax.train import step as step_lib


class BranchProber:
    """Implements the probe policy's ``Prober`` protocol on a Trainer."""

    def __init__(self, trainer, eval_fn: Callable[[Any], float]):
        self._trainer = trainer
        self._eval = eval_fn
        self.state = None  # the live state, set by the loop before each decision
        self.examples = 0  # the stream position, set with it

    def probe(
        self,
        step: int,
        batch_size: int,
        factors: list[int],
        lr_multipliers: list[float],
        tokens: int,
    ) -> dict[int, float]:
        tr = self._trainer
        losses = {}
        for k, multiplier in zip(factors, lr_multipliers):
            size = tr.plan.resolve(k * batch_size)
            bucket = tr.plan.bucket(size)
            executable = tr.executables.get(bucket.K, bucket.M)
            hp = tr._hparams(batch_size, tr._tokens_now)
            hp["lr"] *= multiplier
            hp_arrays = step_lib.hparams_array(**hp)
            branch = jax.tree.map(jnp.copy, self.state)  # the step donates its input
            for i in range(max(1, math.ceil(tokens / (size * tr.ctx_len)))):
                batch_KMT, _ = tr.feeder.assemble(self.examples + i * size, bucket.K, bucket.M)
                branch, _ = executable(branch, batch_KMT, hp_arrays)
            losses[k] = self._eval(branch["params"])
        return losses
