"""Exact expected risk of mini-batch SGD on Gaussian linear regression (Zhang et al., Appendix A.2).

Model: ``x ~ N(0, H)`` with ``H = diag(lambda_i)``, ``lambda_i = i^-a`` for ``i = 1..dim``;
``y = <x, w*> + noise`` with noise variance ``sigma^2``; the source condition
``lambda_i <v_i, w*>^2 = i^-b`` (we take ``w*_i^2 = i^(a-b)``). SGD from ``w_0 = 0``:
``w_{t+1} = w_t - lr_t / B_t * sum_{j in batch t} (<x_j, w_t> - y_j) x_j``.
Excess risk of ``w`` is ``||w - w*||_H^2`` (the paper's ``R(w) - sigma^2``, no factor 1/2).

The recursion, derived for the error ``e_t = w_t - w*`` (``q_i = 1 - lr lambda_i``):

* second moment ``s_{t,i} = E e_{t,i}^2``. With ``E[x x^T A x x^T] = 2 H A H + tr(HA) H`` for
  Gaussian ``x``, a batch of ``B`` gives ``E[G A G] = H A H + (H A H + tr(HA) H) / B``, whose
  diagonal only needs the diagonal of ``A``; the mini-batch noise adds ``lr^2 sigma^2 H / B``::

      s_{t+1,i} = (q_i^2 + lr^2 lambda_i^2 / B) s_{t,i} + lr^2 lambda_i / B * (m_t + sigma^2),
      m_t = sum_i lambda_i s_{t,i}                        (risk of the last iterate)

  This is exact for any fixed ``w*`` (off-diagonal terms never feed the diagonal).
* iterate averaging over steps ``[average_from, T)`` (the paper averages from step 0): the sum
  ``u_T = sum e_t`` needs ``c_{t,i} = E[e_{t,i} u_{t,i}]``; because ``E[e_{t+1} | past] = q e_t``,
  ``c_{t+1} = q (c_t + s_t)`` and ``P_{t+1} = P_t + 2 C_t + m_t`` with ``C_t = sum lambda_i c_{t,i}``
  and ``P_T = E ||u_T||_H^2``; the averaged iterate's risk is ``P_T / (T - average_from)^2``.

Numerics: the heavy loop runs in float32 by default. To keep the slow modes accurate, the decay
``1 - rho_i = 2 d - d^2 (1 + 1/B)`` with ``d = lr lambda_i`` is formed directly (``1 - lr lambda``
would round to 1 in float32), so the per-step relative rounding is ~6e-8 and stays below
``steps * 6e-8`` over a run (< 1e-3 for 10^4 steps); the scalar sum ``P`` is Kahan-compensated.
``dtype="float64"`` reruns the same code under ``jax.enable_x64`` for long runs or checks.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bsjax.theory.errors import TheoryInputError, check_int, check_number
from bsjax.theory.schedules import Schedule

_FROZEN_END = np.iinfo(np.int32).max


@dataclasses.dataclass(frozen=True)
class LinRegProblem:
    """Diagonal Gaussian linear regression: capacity ``a``, source ``b``, noise ``sigma^2``, dimension."""

    a: float
    b: float
    noise: float = 1.0
    dim: int = 1000

    def __post_init__(self):
        check_number(
            "a",
            self.a,
            gt=1.0,
            why="capacity exponent of lambda_i = i^-a; the spectrum must be summable",
        )
        check_number(
            "b",
            self.b,
            gt=1.0,
            why="source exponent of lambda_i <v_i, w*>^2 = i^-b; the initial risk must be finite",
        )
        check_number("noise", self.noise, ge=0.0, why="the label-noise variance sigma^2")
        check_int("dim", self.dim, ge=1)

    def eigenvalues(self) -> np.ndarray:
        """``lambda_i = i^-a``, shape (dim,), float64."""
        return np.arange(1, self.dim + 1, dtype=np.float64) ** -float(self.a)

    def initial_error(self) -> np.ndarray:
        """``E e_{0,i}^2 = w*_i^2 = i^(a-b)``, shape (dim,), float64."""
        return np.arange(1, self.dim + 1, dtype=np.float64) ** (float(self.a) - float(self.b))

    def target(self) -> np.ndarray:
        """A fixed ``w*`` with ``w*_i^2 = i^(a-b)`` (positive entries), shape (dim,)."""
        return np.sqrt(self.initial_error())

    @property
    def initial_risk(self) -> float:
        return float(self.eigenvalues() @ self.initial_error())

    @property
    def trace(self) -> float:
        return float(self.eigenvalues().sum())


@dataclasses.dataclass(frozen=True)
class RiskCurves:
    """Exact expected excess risk of G schedules, recorded at R shared steps.

    ``steps_R`` starts at 0. For a schedule shorter than the recording grid, records after its last
    step repeat its final value. ``averaged_GR`` is the risk of the iterate average over
    ``[average_from, step)``; it equals ``last_GR`` where no step has been averaged yet.
    """

    steps_R: np.ndarray
    examples_GR: np.ndarray
    time_GR: np.ndarray
    last_GR: np.ndarray
    averaged_GR: np.ndarray
    num_steps_G: np.ndarray
    average_from: int

    @property
    def final_last_G(self) -> np.ndarray:
        return self.last_GR[:, -1]

    @property
    def final_averaged_G(self) -> np.ndarray:
        return self.averaged_GR[:, -1]


def risk_curves(
    problem: LinRegProblem,
    schedules: Schedule | Sequence[Schedule],
    *,
    average_from: int = 0,
    num_records: int = 100,
    record_every: int | None = None,
    dtype: str = "float32",
    block: int | None = None,
) -> RiskCurves:
    """Exact risk curves of SGD for each schedule (see the module docstring).

    ``num_records`` evenly spaced records (or one every ``record_every`` steps) up to the longest
    schedule. All schedules run together: the configs are ``vmap``-ed within blocks of ``block``
    configs (default: a block's state fits in cache on CPU, one block on accelerators), the blocks
    are spread over the local devices, and the steps are a ``lax.scan``.
    """
    if isinstance(schedules, Schedule):
        schedules = [schedules]
    schedules = list(schedules)
    if not schedules:
        raise TheoryInputError("schedules must hold at least one Schedule; got none")
    if dtype not in ("float32", "float64"):
        raise TheoryInputError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
    average_from = check_int("average_from", average_from, ge=0)
    n_G = np.array([s.num_steps for s in schedules], dtype=np.int64)
    if average_from >= n_G.min():
        raise TheoryInputError(
            f"average_from={average_from} must be smaller than every schedule's step count "
            f"(shortest: {n_G.min()})"
        )
    max_steps = int(n_G.max())
    if max_steps >= _FROZEN_END:
        raise TheoryInputError(f"schedules must have fewer than {_FROZEN_END} steps")
    if record_every is None:
        num_records = check_int("num_records", num_records)
        record_every = max(1, math.ceil(max_steps / num_records))
        if record_every > 4:  # a multiple of 4 lets the step loop unroll
            record_every = 4 * math.ceil(record_every / 4)
    record_every = check_int("record_every", record_every)
    n_rec = math.ceil(max_steps / record_every)
    tables = _segment_tables(schedules, average_from)
    lam_d, s0_d = problem.eigenvalues(), problem.initial_error()
    G = len(schedules)
    if block is None:  # CPU: keep a block's state in cache; accelerators: one wide block
        block = max(1, min(G, 50_000 // problem.dim)) if jax.default_backend() == "cpu" else G
    block = min(check_int("block", block), G)

    m_GR, P_GR = _run_scan(lam_d, s0_d, problem.noise, tables, n_rec, record_every, block, dtype)

    # the last record may fall past the longest schedule, whose state is frozen there
    steps_R = np.minimum(
        np.concatenate([[0], np.arange(1, n_rec + 1) * record_every]), max_steps
    ).astype(np.int64)
    m0 = float(lam_d @ s0_d)
    last_GR = np.concatenate([np.full((G, 1), m0), m_GR], axis=1)
    count_GR = np.clip(np.minimum(steps_R[None, :], n_G[:, None]) - average_from, 0, None)
    P_full_GR = np.concatenate([np.zeros((G, 1)), P_GR], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        averaged_GR = np.where(count_GR > 0, P_full_GR / np.maximum(count_GR, 1) ** 2, last_GR)
    clipped_R = np.minimum(steps_R[None, :], n_G[:, None])
    examples_GR = np.stack([s.examples_at(c) for s, c in zip(schedules, clipped_R)])
    time_GR = np.stack([s.time_at(c) for s, c in zip(schedules, clipped_R)])
    return RiskCurves(steps_R, examples_GR, time_GR, last_GR, averaged_GR, n_G, average_from)


def risk_grid(
    problem: LinRegProblem,
    lrs,
    batch_sizes,
    *,
    num_steps: int | None = None,
    examples: int | None = None,
    average_from: int = 0,
    num_records: int = 100,
    dtype: str = "float32",
    block: int | None = None,
) -> tuple[RiskCurves, tuple[int, int]]:
    """Risk curves for every constant (batch size, learning rate) pair; configs ordered B-major.

    Give ``num_steps`` (every pair runs that long) or ``examples`` (each pair runs
    ``examples // B`` steps). Returns the curves and the grid shape ``(len(batch_sizes), len(lrs))``.
    """
    lrs = [check_number("lrs", g, gt=0.0) for g in np.atleast_1d(lrs)]
    batch_sizes = [check_int("batch_sizes", b) for b in np.atleast_1d(batch_sizes)]
    scheds = [
        Schedule.constant(g, b, steps=num_steps, examples=examples)
        for b in batch_sizes
        for g in lrs
    ]
    curves = risk_curves(
        problem,
        scheds,
        average_from=average_from,
        num_records=num_records,
        dtype=dtype,
        block=block,
    )
    return curves, (len(batch_sizes), len(lrs))


def stable_lr(problem: LinRegProblem, batch: int) -> float:
    """Largest constant LR for which the second-moment recursion at batch ``batch`` converges.

    The recursion is ``s -> diag(rho) s + alpha (lambda . s)`` (plus a constant); a
    diagonal-plus-rank-one map with ``rho_i < 1`` has spectral radius < 1 iff
    ``sum_i alpha_i lambda_i / (1 - rho_i) < 1``. Solved by bisection on the LR.
    """
    batch = check_int("batch", batch)
    lam = problem.eigenvalues()

    def stable(lr: float) -> bool:
        d = lr * lam
        one_minus_rho = d * (2.0 - d * (1.0 + 1.0 / batch))
        if np.any(one_minus_rho <= 0):
            return False
        return float(np.sum(lr * d / batch * lam / one_minus_rho)) < 1.0

    lo, hi = 0.0, 2.0 / lam[0]
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if stable(mid) else (lo, mid)
    return lo


# ---------------------------------------------------------------------------------------------
def _segment_tables(schedules: Sequence[Schedule], average_from: int):
    """Per-config segment tables ``(end_GK, lr_GK, inv_batch_GK, weight_GK)``, split at ``average_from``.

    A last sentinel segment with lr 0 and weight 0 freezes a config after its own last step.
    """
    rows = []
    for sched in schedules:
        row, start = [], 0
        for seg in sched.segments:
            end = start + seg.steps
            for lo, hi, w in (
                (start, min(end, average_from), 0.0),
                (max(start, average_from), end, 1.0),
            ):
                if hi > lo:
                    row.append((hi, seg.lr, 1.0 / seg.batch, w))
            start = end
        row.append((_FROZEN_END, 0.0, 0.0, 0.0))
        rows.append(row)
    K = max(len(r) for r in rows)
    for r in rows:  # pad with copies of the sentinel
        r.extend([r[-1]] * (K - len(r)))
    arr = np.array(rows, dtype=np.float64)  # (G, K, 4)
    return (arr[..., 0].astype(np.int64), arr[..., 1], arr[..., 2], arr[..., 3])


def _run_scan(lam_d, s0_d, noise, tables, n_rec, record_every, block, dtype):
    end_GK, lr_GK, invb_GK, w_GK = tables
    G = end_GK.shape[0]
    n_blocks = math.ceil(G / block)
    # blocks are independent: spread them over the local devices (CPU cores when the process
    # was started with --xla_force_host_platform_device_count), one block list per device
    n_dev = min(jax.local_device_count(), n_blocks)
    n_blocks = math.ceil(n_blocks / n_dev) * n_dev
    pad = n_blocks * block - G

    def blocked(x):
        x = np.concatenate([x, np.repeat(x[:1], pad, axis=0)]) if pad else x
        return x.reshape((n_dev, n_blocks // n_dev, block) + x.shape[1:])

    float_np = np.float64 if dtype == "float64" else np.float32
    unroll = 4 if record_every % 4 == 0 else 1
    with jax.enable_x64(dtype == "float64"):
        args = (
            jnp.asarray(lam_d, float_np),
            jnp.asarray(s0_d, float_np),
            jnp.asarray(noise, float_np),
            blocked(np.minimum(end_GK, _FROZEN_END).astype(np.int32)),
            blocked(lr_GK.astype(float_np)),
            blocked(invb_GK.astype(float_np)),
            blocked(w_GK.astype(float_np)),
            jnp.int32(record_every),
        )
        if n_dev == 1:
            m, P = _scan_jit(
                *args[:3], *(a[0] for a in args[3:7]), args[7], n_rec=n_rec, unroll=unroll
            )
            m, P = m[None], P[None]
        else:
            m, P = _scan_pmap(n_rec, unroll, n_dev)(*args)
        m = np.asarray(m, dtype=np.float64)
        P = np.asarray(P, dtype=np.float64)
    # (n_dev, n_blocks / n_dev, n_rec, block) -> (G, n_rec)
    m = m.reshape(n_blocks, n_rec, block).transpose(0, 2, 1).reshape(n_blocks * block, n_rec)[:G]
    P = P.reshape(n_blocks, n_rec, block).transpose(0, 2, 1).reshape(n_blocks * block, n_rec)[:G]
    return m, P


@functools.cache
def _scan_pmap(n_rec: int, unroll: int, n_dev: int):
    fn = functools.partial(_scan_jit, n_rec=n_rec, unroll=unroll)
    return jax.pmap(
        fn, in_axes=(None, None, None, 0, 0, 0, 0, None), devices=jax.local_devices()[:n_dev]
    )


def _dot(x, y):
    # full float32 precision: on GPUs the default f32 matmul may round inputs to TF32 (~5e-4)
    return jnp.dot(x, y, precision=jax.lax.Precision.HIGHEST)


def _config_step(s_d, c_d, P, P_err, lam_d, noise, t, end_K, lr_K, invb_K, w_K):
    """One SGD step of the moment recursion for one config (vmapped over configs)."""
    k = jnp.sum(t >= end_K)
    lr, invb, w = lr_K[k], invb_K[k], w_K[k]
    m = _dot(s_d, lam_d)
    C = _dot(c_d, lam_d)
    # Kahan-compensated P += w (2C + m)
    inc = w * (2.0 * C + m) - P_err
    P_new = P + inc
    P_err = (P_new - P) - inc
    d_d = lr * lam_d
    decay_d = d_d * (2.0 - d_d * (1.0 + invb))  # 1 - rho, formed without cancellation
    s_new = s_d - decay_d * s_d + d_d * (lr * invb * (m + noise))
    u_d = c_d + w * s_d
    c_new = u_d - d_d * u_d
    return s_new, c_new, P_new, P_err


@functools.partial(jax.jit, static_argnames=("n_rec", "unroll"))
def _scan_jit(lam_d, s0_d, noise, end_NbK, lr_NbK, invb_NbK, w_NbK, record_every, *, n_rec, unroll):
    """Moment recursion for blocks of configs; ``record_every`` is traced so that runs of any
    length share one executable. Returns ``(m, P)`` of shape (n_blocks, n_rec, block)."""
    step_b = jax.vmap(_config_step, in_axes=(0, 0, 0, 0, None, None, None, 0, 0, 0, 0))

    def run_block(tables):
        end_bK, lr_bK, invb_bK, w_bK = tables
        nb = end_bK.shape[0]
        s_bd = jnp.broadcast_to(s0_d, (nb,) + s0_d.shape)
        c_bd = jnp.zeros_like(s_bd)
        P_b = jnp.zeros((nb,), s0_d.dtype)

        def one_record(carry, r):
            t0 = r * record_every

            def chunk(i, carry):
                for j in range(unroll):  # manual unroll: the trip count is dynamic
                    carry = step_b(
                        *carry, lam_d, noise, t0 + i * unroll + j, end_bK, lr_bK, invb_bK, w_bK
                    )
                return carry

            carry = jax.lax.fori_loop(0, record_every // unroll, chunk, carry)
            s, _, P, err = carry
            return carry, (_dot(s, lam_d), P - err)

        init = (s_bd, c_bd, P_b, jnp.zeros_like(P_b))
        _, (m_Rb, P_Rb) = jax.lax.scan(one_record, init, jnp.arange(n_rec, dtype=jnp.int32))
        return m_Rb, P_Rb

    return jax.lax.map(run_block, (end_NbK, lr_NbK, invb_NbK, w_NbK))


def risk_curves_reference(
    problem: LinRegProblem, schedules: Sequence[Schedule], *, average_from: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The same recursion as a plain float64 NumPy loop over steps (a check and a speed baseline).

    Written in the textbook form (``q = 1 - lr lambda``, ``rho = q^2 + lr^2 lambda^2 / B``).
    Returns ``(last_GT, averaged_GT)`` at every step ``0..T`` of the longest schedule; shorter
    schedules hold their final values.
    """
    lam_d, s0_d = problem.eigenvalues(), problem.initial_error()
    G, T = len(schedules), max(s.num_steps for s in schedules)
    lr_GT = np.zeros((G, T))
    invb_GT = np.zeros((G, T))
    for g, sched in enumerate(schedules):
        lr_T, b_T = sched.per_step()
        lr_GT[g, : len(lr_T)] = lr_T
        invb_GT[g, : len(b_T)] = 1.0 / b_T
    n_G = np.array([s.num_steps for s in schedules])
    s_Gd = np.tile(s0_d, (G, 1))
    c_Gd = np.zeros_like(s_Gd)
    P_G = np.zeros(G)
    last_GT = np.empty((G, T + 1))
    avg_GT = np.empty((G, T + 1))
    last_GT[:, 0] = avg_GT[:, 0] = s_Gd @ lam_d
    for t in range(T):
        m_G = s_Gd @ lam_d
        w_G = ((t >= average_from) & (t < n_G)).astype(float)
        P_G = P_G + w_G * (2.0 * (c_Gd @ lam_d) + m_G)
        lr, invb = lr_GT[:, t : t + 1], invb_GT[:, t : t + 1]
        q_Gd = 1.0 - lr * lam_d
        c_Gd = q_Gd * (c_Gd + w_G[:, None] * s_Gd)
        s_Gd = (q_Gd**2 + lr**2 * lam_d**2 * invb) * s_Gd + lr**2 * invb * lam_d * (
            m_G[:, None] + problem.noise
        )
        last_GT[:, t + 1] = s_Gd @ lam_d
        count = np.minimum(t + 1, n_G) - average_from
        avg_GT[:, t + 1] = np.where(count > 0, P_G / np.maximum(count, 1) ** 2, last_GT[:, t + 1])
    return last_GT, avg_GT
