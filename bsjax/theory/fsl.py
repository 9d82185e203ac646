"""Functional scaling law (FSL) for LR and batch-size schedules (docs/science.md section 4).

The form implemented (secondary reading of Wang et al. 2026 / Li et al. 2025, as docs/science.md says)::

    L(t) = M^(-s beta) + e(t) + integral_0^t K(t - z) (e(z) + sigma^2) lr(z) / b(z) dz

with intrinsic time ``t = sum of learning rates``, signal ``e(t) = A (t_e + t)^-s`` and forgetting
kernel ``K(u) = C (t_K + u)^-(2 - 1/beta)``. The form of docs/science.md is ``A = C = t_e = t_K = 1``, the
default. ``L`` here is the excess loss (the constant ``sigma^2/2`` of docs/science.md is dropped); the
``M^(-s beta)`` model-size term is added only when ``model_size`` is given.

Link to the linear-regression model of :mod:`bsjax.theory.linreg`: mode ``i`` decays as
``exp(-2 lambda_i t)``, so ``e(t) = sum_i lambda_i w*_i^2 exp(-2 lambda_i t)`` and
``K(u) = sum_i lambda_i^2 exp(-2 lambda_i u)``; the noise term is the continuous-time, first-order
form of the recursion's ``lr^2 lambda / B (m_t + sigma^2)`` injection, with ``m`` replaced by ``e``.
For ``lambda_i = i^-a`` and ``lambda_i w*_i^2 = i^-b`` the sums behave as power laws with
``beta = a`` and ``s = (b - 1) / a``: ``e(t) ~ Gamma(s) / a (2t)^-s`` and
``K(u) ~ Gamma(2 - 1/a) / a (2u)^-(2 - 1/a)``; :meth:`FSL.from_linreg` uses these prefactors and
picks the offsets so that ``e(0)`` matches the initial risk and ``integral_0^inf K`` matches
``sum_i lambda_i / 2`` (which sets the constant-LR noise floor). Under this map the FSL's
easy/hard boundary ``s = 1 - 1/beta`` is ``b = a``, the boundary of Corollary 6.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from bsjax.theory.errors import check_number
from bsjax.theory.schedules import Schedule

_GL_X, _GL_W = np.polynomial.legendre.leggauss(8)


@dataclasses.dataclass(frozen=True)
class FSL:
    """The functional scaling law; see the module docstring for the formula and defaults."""

    s: float
    beta: float
    noise: float = 1.0
    signal_scale: float = 1.0
    signal_offset: float = 1.0
    kernel_scale: float = 1.0
    kernel_offset: float = 1.0
    model_size: float | None = None

    def __post_init__(self):
        check_number("s", self.s, gt=0.0, why="source exponent of the FSL")
        check_number("beta", self.beta, gt=1.0, why="capacity exponent of the FSL")
        check_number("noise", self.noise, ge=0.0, why="the noise variance sigma^2")
        for name in ("signal_scale", "signal_offset", "kernel_scale", "kernel_offset"):
            check_number(name, getattr(self, name), gt=0.0)
        if self.model_size is not None:
            check_number("model_size", self.model_size, gt=0.0)

    # -- the pieces ---------------------------------------------------------
    @property
    def kernel_exponent(self) -> float:
        return 2.0 - 1.0 / self.beta

    @property
    def task_class(self) -> str:
        """``'easy'`` when ``s >= 1 - 1/beta`` (keep growing the batch), else ``'hard'`` (switch late)."""
        return classify_task(self.s, self.beta)

    def signal(self, t):
        return self.signal_scale * (self.signal_offset + np.asarray(t, float)) ** -self.s

    def kernel(self, u):
        return (
            self.kernel_scale * (self.kernel_offset + np.asarray(u, float)) ** -self.kernel_exponent
        )

    def kernel_integral(self, u0, u1):
        """``integral_{u0}^{u1} K(u) du`` in closed form."""
        p1 = self.kernel_exponent - 1.0
        c = self.kernel_offset
        return (
            self.kernel_scale
            * ((c + np.asarray(u0, float)) ** -p1 - (c + np.asarray(u1, float)) ** -p1)
            / p1
        )

    def floor(self) -> float:
        return 0.0 if self.model_size is None else float(self.model_size) ** (-self.s * self.beta)

    # -- losses -------------------------------------------------------------
    def noise_term(self, t: float, z0: float, z1: float) -> float:
        """``integral_{z0}^{z1} K(t - z) (e(z) + sigma^2) dz`` for ``0 <= z0 <= z1 <= t``."""
        if z1 <= z0:
            return 0.0
        z_N, w_N = quadrature(z0, z1, t, self.signal_offset, self.kernel_offset)
        signal_part = float(np.sum(w_N * self.kernel(t - z_N) * self.signal(z_N)))
        return signal_part + self.noise * float(self.kernel_integral(t - z1, t - z0))

    def loss_at_time(self, t: float, seg_time_S, seg_rate_S) -> float:
        """Loss at intrinsic time ``t`` for segments ending at intrinsic times ``seg_time_S`` with
        noise rates ``lr / batch`` ``seg_rate_S`` (the segments start at 0 and are contiguous)."""
        total, z0 = self.floor() + float(self.signal(t)), 0.0
        for z1, rate in zip(seg_time_S, seg_rate_S):
            hi = min(float(z1), t)
            if hi > z0:
                total += rate * self.noise_term(t, z0, hi)
            z0 = float(z1)
            if z0 >= t:
                break
        return total

    def loss(self, schedule: Schedule, steps) -> np.ndarray:
        """FSL loss after each of ``steps`` (array of step counts) under ``schedule``."""
        steps = np.atleast_1d(np.asarray(steps))
        seg_time = schedule.time_at(schedule.step_ends)
        seg_rate = [s.lr / s.batch for s in schedule.segments]
        times = schedule.time_at(steps)
        return np.array([self.loss_at_time(float(t), seg_time, seg_rate) for t in times])

    def final_loss(self, schedule: Schedule) -> float:
        return float(self.loss(schedule, [schedule.num_steps])[0])

    # -- constructors -------------------------------------------------------
    @classmethod
    def from_linreg(cls, problem) -> FSL:
        """FSL matched to a :class:`~bsjax.theory.linreg.LinRegProblem` (see the module docstring)."""
        a, b = float(problem.a), float(problem.b)
        s = (b - 1.0) / a
        p = 2.0 - 1.0 / a
        e0 = problem.initial_risk
        k_total = problem.trace / 2.0  # integral of K over [0, inf): sets the noise floor
        sig_scale = math.gamma(s) / a * 2.0**-s
        ker_scale = math.gamma(p) / a * 2.0**-p
        return cls(
            s=s,
            beta=a,
            noise=float(problem.noise),
            signal_scale=sig_scale,
            signal_offset=(sig_scale / e0) ** (1.0 / s),
            kernel_scale=ker_scale,
            kernel_offset=((p - 1.0) * k_total / ker_scale) ** (1.0 / (1.0 - p)),
        )


def classify_task(s: float, beta: float) -> str:
    """FSL task class: ``'easy'`` iff ``s >= 1 - 1/beta``."""
    s = check_number("s", s, gt=0.0)
    beta = check_number("beta", beta, gt=1.0)
    return "easy" if s >= 1.0 - 1.0 / beta else "hard"


def predicted_switch_exponent(s: float, beta: float) -> float:
    """Exponent of ``(D - P*)/D`` against ``D`` for the best two-phase switch (docs/science.md section 4).

    ``-(1 - 1/beta - s) / (2 - 1/beta)`` for hard tasks; 0 for easy tasks (the large-batch phase
    keeps a fixed fraction of the data). Derivation: after the switch the accumulated small-batch
    noise decays as ``tau^-(1 - 1/beta)`` while each example moved to the large batch costs
    ``~T^-(s+1)`` of signal progress; balancing the derivatives gives
    ``tau* ~ T^((s+1)/(2-1/beta))`` with ``T ~ D``.
    """
    if classify_task(s, beta) == "easy":
        return 0.0
    return -(1.0 - 1.0 / beta - s) / (2.0 - 1.0 / beta)


def quadrature(z0: float, z1: float, t: float, head: float = 1.0, tail: float = 1.0):
    """Nodes and weights on ``[z0, z1]`` for integrands ``f(z) g(t - z)`` with power-law ``f, g``.

    Pieces are graded geometrically away from ``z = 0`` (scale ``head``) and from ``z = t``
    (scale ``tail``), 8 Gauss-Legendre nodes each; relative error ~1e-8 for the FSL integrands.
    """
    if z1 <= z0:
        return np.zeros(0), np.zeros(0)
    n_head = int(math.ceil(math.log2(max(z1, head) / head + 1.0))) + 1
    n_tail = int(math.ceil(math.log2(max(t - z0, tail) / tail + 1.0))) + 1
    cuts = np.concatenate(
        [
            [z0, z1],
            head * (2.0 ** np.arange(n_head) - 1.0),
            t - tail * (2.0 ** np.arange(n_tail) - 1.0),
        ]
    )
    cuts = np.unique(np.clip(cuts, z0, z1))
    lo, hi = cuts[:-1], cuts[1:]
    half = 0.5 * (hi - lo)
    mid = 0.5 * (hi + lo)
    z = (mid[:, None] + half[:, None] * _GL_X[None, :]).ravel()
    w = (half[:, None] * _GL_W[None, :]).ravel()
    return z, w
