"""Monte Carlo mini-batch SGD on sampled Gaussian linear-regression data, in JAX.

A check on :mod:`bsjax.theory.linreg`: the same model and SGD, simulated ``num_runs`` times with
fresh data; the mean risk with its standard error should bracket the exact recursion.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from bsjax.theory.errors import TheoryInputError, check_int
from bsjax.theory.linreg import LinRegProblem
from bsjax.theory.schedules import Schedule


@dataclasses.dataclass(frozen=True)
class MonteCarloCurves:
    """Mean and standard error over runs of the last-iterate and averaged-iterate excess risk.

    Arrays are indexed by step ``0..T`` (shape (T+1,)).
    """

    last_mean_T: np.ndarray
    last_sem_T: np.ndarray
    averaged_mean_T: np.ndarray
    averaged_sem_T: np.ndarray
    num_runs: int


def monte_carlo_risk(
    problem: LinRegProblem,
    schedule: Schedule,
    *,
    num_runs: int = 1000,
    seed: int = 0,
    average_from: int = 0,
) -> MonteCarloCurves:
    """Simulate SGD ``num_runs`` times on fresh Gaussian data (``w_0 = 0``, ``w*`` = ``problem.target()``)."""
    num_runs = check_int("num_runs", num_runs, ge=2)
    average_from = check_int("average_from", average_from, ge=0)
    if average_from >= schedule.num_steps:
        raise TheoryInputError(
            f"average_from={average_from} must be < the schedule's {schedule.num_steps} steps"
        )
    lam_d = jnp.asarray(problem.eigenvalues(), jnp.float32)
    wstar_d = jnp.asarray(problem.target(), jnp.float32)
    lr_T, batch_T = schedule.per_step()
    last_TN, avg_TN = _simulate(
        lam_d,
        wstar_d,
        jax.random.key(seed),
        jnp.float32(float(problem.noise) ** 0.5),
        jnp.asarray(lr_T, jnp.float32),
        jnp.asarray(batch_T, jnp.int32),
        average_from,
        num_runs=num_runs,
        max_batch=int(batch_T.max()),
    )
    last_TN = np.asarray(last_TN, np.float64)
    avg_TN = np.asarray(avg_TN, np.float64)

    def sem(x):
        return x.std(axis=1, ddof=1) / np.sqrt(num_runs)

    return MonteCarloCurves(last_TN.mean(1), sem(last_TN), avg_TN.mean(1), sem(avg_TN), num_runs)


def _risk(e_Nd, lam_d):
    return jnp.sum(e_Nd * e_Nd * lam_d, axis=-1)


@functools.partial(jax.jit, static_argnames=("num_runs", "max_batch"))
def _simulate(lam_d, wstar_d, key, noise_std, lr_T, batch_T, average_from, *, num_runs, max_batch):
    """All steps in one scan; each step draws ``max_batch`` examples and uses the first ``B_t``.

    Memory is ``steps * num_runs * max_batch * dim`` floats: meant for small check problems.
    """
    d = lam_d.shape[0]
    sqrt_lam_d = jnp.sqrt(lam_d)
    e_Nd = jnp.broadcast_to(-wstar_d, (num_runs, d))
    u_Nd = jnp.zeros_like(e_Nd)

    T = lr_T.shape[0]
    kx, kn = jax.random.split(key)
    # all the data up front, drawn flat (XLA compiles a many-dimensional threefry draw very slowly)
    x_TNBd = (
        jax.random.normal(kx, (T * num_runs * max_batch * d,)).reshape(T, num_runs, max_batch, d)
        * sqrt_lam_d
    )
    xi_TNB = (
        jax.random.normal(kn, (T * num_runs * max_batch,)).reshape(T, num_runs, max_batch)
        * noise_std
    )

    def step(carry, inp):
        e, u = carry
        t, x_NBd, xi_NB, lr, batch = inp
        used_B = (jnp.arange(max_batch) < batch).astype(e.dtype)
        # residual <x, w> - y = <x, e> - xi ; gradient = mean over the batch of residual * x
        resid_NB = (jnp.einsum("nbd,nd->nb", x_NBd, e) - xi_NB) * used_B
        grad_Nd = jnp.einsum("nb,nbd->nd", resid_NB, x_NBd) / batch
        w = (t >= average_from).astype(e.dtype)
        u = u + w * e
        e = e - lr * grad_Nd
        count = jnp.maximum(t + 1 - average_from, 1).astype(e.dtype)
        avg = jnp.where(t + 1 > average_from, _risk(u / count, lam_d), _risk(e, lam_d))
        return (e, u), (_risk(e, lam_d), avg)

    inputs = (jnp.arange(T), x_TNBd, xi_TNB, lr_T, batch_T)
    _, (last_TN, avg_TN) = jax.lax.scan(step, (e_Nd, u_Nd), inputs)
    r0 = _risk(e_Nd, lam_d)[None]
    return jnp.concatenate([r0, last_TN]), jnp.concatenate([r0, avg_TN])
