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


def monte_carlo_risk(problem: LinRegProblem, schedule: Schedule, *, num_runs: int = 1000,
                     seed: int = 0, average_from: int = 0) -> MonteCarloCurves:
    """Simulate SGD ``num_runs`` times on fresh Gaussian data (``w_0 = 0``, ``w*`` = ``problem.target()``)."""
    num_runs = check_int("num_runs", num_runs, ge=2)
    average_from = check_int("average_from", average_from, ge=0)
    if average_from >= schedule.num_steps:
        raise TheoryInputError(f"average_from={average_from} must be < the schedule's "
                               f"{schedule.num_steps} steps")
    lam_d = jnp.asarray(problem.eigenvalues(), jnp.float32)
    wstar_d = jnp.asarray(problem.target(), jnp.float32)
    key = jax.random.key(seed)
    e_Nd = jnp.broadcast_to(-wstar_d, (num_runs, problem.dim))
    u_Nd = jnp.zeros_like(e_Nd)
    lasts, avgs = [_risk(e_Nd, lam_d)[None]], [_risk(e_Nd, lam_d)[None]]
    start = 0
    for seg in schedule.segments:
        key, sub = jax.random.split(key)
        e_Nd, u_Nd, last_TN, avg_TN = _segment(
            e_Nd, u_Nd, lam_d, wstar_d, sub, float(problem.noise) ** 0.5, seg.lr, start,
            average_from, steps=seg.steps, batch=seg.batch)
        lasts.append(last_TN)
        avgs.append(avg_TN)
        start += seg.steps
    last_TN = np.asarray(jnp.concatenate(lasts), np.float64)
    avg_TN = np.asarray(jnp.concatenate(avgs), np.float64)
    sem = lambda x: x.std(axis=1, ddof=1) / np.sqrt(num_runs)
    return MonteCarloCurves(last_TN.mean(1), sem(last_TN), avg_TN.mean(1), sem(avg_TN), num_runs)


def _risk(e_Nd, lam_d):
    return jnp.sum(e_Nd * e_Nd * lam_d, axis=-1)


@functools.partial(jax.jit, static_argnames=("steps", "batch"))
def _segment(e_Nd, u_Nd, lam_d, wstar_d, key, noise_std, lr, start, average_from, *, steps, batch):
    N, d = e_Nd.shape
    sqrt_lam_d = jnp.sqrt(lam_d)

    def step(carry, inp):
        e, u = carry
        t, k = inp
        kx, kn = jax.random.split(k)
        x_NBd = jax.random.normal(kx, (N, batch, d)) * sqrt_lam_d
        xi_NB = jax.random.normal(kn, (N, batch)) * noise_std
        # residual <x, w> - y = <x, e> - xi ; gradient = mean_j residual_j x_j
        resid_NB = jnp.einsum("nbd,nd->nb", x_NBd, e) - xi_NB
        grad_Nd = jnp.einsum("nb,nbd->nd", resid_NB, x_NBd) / batch
        w = (t >= average_from).astype(e.dtype)
        u = u + w * e
        e = e - lr * grad_Nd
        count = jnp.maximum(t + 1 - average_from, 1).astype(e.dtype)
        avg = jnp.where(t + 1 > average_from, _risk(u / count, lam_d), _risk(e, lam_d))
        return (e, u), (_risk(e, lam_d), avg)

    ts = start + jnp.arange(steps)
    (e_Nd, u_Nd), (last_TN, avg_TN) = jax.lax.scan(step, (e_Nd, u_Nd), (ts, jax.random.split(key, steps)))
    return e_Nd, u_Nd, last_TN, avg_TN
