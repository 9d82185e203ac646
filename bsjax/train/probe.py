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
    """Implements the probe policy's ``Prober`` protocol with the trainer's parts.

    ``hparams(batch_size, tokens)`` gives the step's hyper-parameters;
    ``executable(size)`` the compiled step of the bucket of ``size`` (resolved
    to a bucket size first); ``assemble(offset, K, M)`` a batch of the stream.
    Before each decision the loop sets ``state``, ``examples`` and ``tokens``:
    the live state and where the stream stands.
    """

    def __init__(
        self,
        plan,
        executables,
        assemble: Callable[[int, int, int], tuple[Any, Any]],
        hparams: Callable[[int, int], dict[str, float]],
        eval_fn: Callable[[Any], float],
        ctx_len: int,
    ):
        self._plan = plan
        self._executables = executables
        self._assemble = assemble
        self._hparams = hparams
        self._eval = eval_fn
        self._ctx_len = ctx_len
        self.state = None
        self.examples = 0
        self.tokens = 0

    def probe(
        self,
        step: int,
        batch_size: int,
        factors: list[int],
        lr_multipliers: list[float],
        tokens: int,
    ) -> dict[int, float]:
        losses = {}
        for k, multiplier in zip(factors, lr_multipliers):
            size = self._plan.resolve(k * batch_size)
            bucket = self._plan.bucket(size)
            executable = self._executables.get(bucket.K, bucket.M)
            hp = self._hparams(batch_size, self.tokens)
            hp["lr"] *= multiplier
            hp_arrays = step_lib.hparams_array(**hp)
            branch = jax.tree.map(jnp.copy, self.state)  # the step donates its input
            for i in range(max(1, math.ceil(tokens / (size * self._ctx_len)))):
                batch_KMT, _ = self._assemble(self.examples + i * size, bucket.K, bucket.M)
                branch, _ = executable(branch, batch_KMT, hp_arrays)
            losses[k] = self._eval(branch["params"])
        return losses
