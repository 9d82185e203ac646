"""Late batch-size switching from the functional scaling law (Wang et al. 2026, seed 002).

SECONDARY READING (docs/science.md section 4): the seed text is the abstract only; the
loss model below is the FSL of Li et al. 2025 as docs/science.md writes it, with the
constant term M^(-s beta) dropped (it does not depend on the schedule):

    L = e(T) + integral_0^T K(T - z) (e(z) + sigma2) eta / b(z) dz,
    e(t) = (1 + t)^-s,   K(t) = (1 + t)^-(2 - 1/beta),

in intrinsic time t = (sum of learning rates so far). With a constant LR
``lr`` per step, a phase of E examples at batch B lasts E / B steps, i.e.
lr E / B intrinsic time, and contributes lr / B times the kernel integral over
its own time span. The integral of K e has no closed form and is computed by
Simpson's rule on logarithmic grids anchored at both ends of each phase (the
integrand varies on a unit scale near z = 0 and near z = T); the sigma2 part
is integrated exactly.

Given (s, beta) -- fitted from small runs or given directly -- a data budget D
(examples) and the phase sizes B_1 < B_2 < ..., the switch points minimising L
under sum of examples = D are found numerically, and the run follows them as a
fixed table (``TablePolicy``, reason "fsl"). Two phases (the paper's late
switch) use the theory lab's optimiser, ``bsjax.theory.optimal.optimal_switch``
(same FSL with its default constants). More phases use
``optimal_switch_points`` below, a small pure-numpy optimiser (a 1-D log-grid
search refined by golden section per switch point, coordinate descent over
several); for two phases the two agree to about 1e-8 (tests/test_policies_fsl.py).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import numpy as np

from bsjax.batching.errors import BatchConfigError
from bsjax.batching.policies.common import TablePolicy
from bsjax.batching.schedules import TableSchedule

GRID_POINTS = 129  # Simpson nodes per half phase (odd)
SEARCH_POINTS = 161  # candidate switch points per 1-D search
SMALLEST_FRACTION = 1e-9  # smallest remaining fraction of an interval the search looks at
SWEEP_TOL = 1e-9  # coordinate descent stops when a sweep improves the loss by less (relative)


def task_is_hard(s: float, beta: float) -> bool:
    """Hard task (late switching optimal): ``s < 1 - 1/beta`` (docs/science.md section 4)."""
    return s < 1.0 - 1.0 / beta


def switch_fraction_exponent(s: float, beta: float) -> float:
    """Predicted exponent of (D - P*)/D against D (hard task): -(1 - 1/beta - s)/(2 - 1/beta)."""
    return -(1.0 - 1.0 / beta - s) / (2.0 - 1.0 / beta)


def _simpson_weights(n: int) -> np.ndarray:
    w_N = np.ones(n)
    w_N[1:-1:2] = 4.0
    w_N[2:-1:2] = 2.0
    return w_N / (3.0 * (n - 1))


def _kernel_signal_integral(
    a_X: np.ndarray, b_X: np.ndarray, T_X: np.ndarray, s: float, gamma: float
) -> np.ndarray:
    """integral_a^b (1 + T - z)^-gamma (1 + z)^-s dz for each candidate X (a <= b <= T)."""
    u_N = np.linspace(0.0, 1.0, GRID_POINTS)
    w_N = _simpson_weights(GRID_POINTS)
    mid_X = 0.5 * (a_X + b_X)
    total_X = np.zeros(np.shape(a_X))
    # Left half z = a + expm1(u log1p(mid - a)); right half z = b - expm1(u log1p(b - mid)).
    for anchor_X, span_X, sign in ((a_X, mid_X - a_X, 1.0), (b_X, b_X - mid_X, -1.0)):
        log_span_X1 = np.log1p(span_X)[:, None]
        offset_XN = np.expm1(u_N * log_span_X1)
        z_XN = anchor_X[:, None] + sign * offset_XN
        jac_XN = (offset_XN + 1.0) * log_span_X1
        f_XN = (1.0 + T_X[:, None] - z_XN) ** -gamma * (1.0 + z_XN) ** -s
        total_X += (f_XN * jac_XN) @ w_N
    return total_X


def fsl_loss(
    sizes: Sequence[int],
    phase_examples,
    *,
    s: float,
    beta: float,
    sigma2: float = 1.0,
    lr: float = 0.5,
) -> np.ndarray:
    """FSL loss (up to a constant) after ``phase_examples[..., i]`` examples at ``sizes[i]``.

    ``phase_examples`` has shape [X, n] (X candidate schedules, n = len(sizes))
    or [n]; returns shape [X] or a scalar.
    """
    sizes_N = np.asarray(sizes, dtype=np.float64)
    ex = np.asarray(phase_examples, dtype=np.float64)
    scalar = ex.ndim == 1
    ex_XN = np.atleast_2d(ex)
    gamma = 2.0 - 1.0 / beta
    tau_XN = np.concatenate(
        [np.zeros((ex_XN.shape[0], 1)), np.cumsum(lr * ex_XN / sizes_N, axis=1)], axis=1
    )
    T_X = tau_XN[:, -1]
    loss_X = (1.0 + T_X) ** -s
    for i, B in enumerate(sizes_N):
        a_X, b_X = tau_XN[:, i], tau_XN[:, i + 1]
        signal_X = _kernel_signal_integral(a_X, b_X, T_X, s, gamma)
        # integral_a^b (1 + T - z)^-gamma dz, exactly.
        noise_X = ((1.0 + T_X - b_X) ** (1.0 - gamma) - (1.0 + T_X - a_X) ** (1.0 - gamma)) / (
            gamma - 1.0
        )
        loss_X = loss_X + lr / B * (signal_X + sigma2 * noise_X)
    return float(loss_X[0]) if scalar else loss_X


@dataclasses.dataclass(frozen=True)
class FslSolution:
    """Optimal switch points of a piecewise-constant schedule under a data budget."""

    sizes: tuple[int, ...]
    budget: int  # examples
    switch_examples: tuple[float, ...]  # cumulative examples at each switch (len(sizes) - 1)
    loss: float
    constant_losses: tuple[float, ...]  # the loss of a constant schedule at each size
    hard: bool

    @property
    def remaining_fraction(self) -> float:
        """(D - P*) / D of the last switch: the share of the data after it."""
        return (self.budget - self.switch_examples[-1]) / self.budget

    def phase_examples(self) -> list[float]:
        bounds = [0.0, *self.switch_examples, float(self.budget)]
        return [b - a for a, b in zip(bounds, bounds[1:])]


def _check(
    sizes: Sequence[int], budget: int, s: float, beta: float, sigma2: float, lr: float
) -> None:
    problems = []
    sizes = list(sizes)
    bad_size = any(isinstance(B, bool) or not isinstance(B, int) or B <= 0 for B in sizes)
    if len(sizes) < 2 or bad_size or any(b <= a for a, b in zip(sizes, sizes[1:])):
        problems.append(f"sizes: need at least two increasing positive batch sizes, got {sizes}")
    if not (isinstance(s, (int, float)) and s > 0):
        problems.append(f"s (source exponent) must be > 0, got {s!r}")
    if not (isinstance(beta, (int, float)) and beta > 1):
        problems.append(f"beta (capacity exponent) must be > 1, got {beta!r}")
    if not (isinstance(sigma2, (int, float)) and sigma2 >= 0):
        problems.append(f"sigma2 (noise level) must be >= 0, got {sigma2!r}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        problems.append(f"lr (intrinsic time per step) must be > 0, got {lr!r}")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0:
        problems.append(f"budget must be a positive number of examples, got {budget!r}")
    elif not problems and budget < max(sizes):
        problems.append(
            f"budget of {budget} examples is smaller than the largest batch "
            f"{max(sizes)}: not one step fits"
        )
    if problems:
        raise BatchConfigError(problems)


def _golden(f, lo: float, hi: float, iters: int = 40) -> float:
    """Minimiser of a unimodal scalar f on [lo, hi]."""
    g = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = hi - g * (hi - lo), lo + g * (hi - lo)
    fc, fd = f(c), f(d)
    for _ in range(iters):
        if fc <= fd:
            hi, d, fd = d, c, fc
            c = hi - g * (hi - lo)
            fc = f(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + g * (hi - lo)
            fd = f(d)
    return 0.5 * (lo + hi)


def optimal_switch_points(
    sizes: Sequence[int],
    budget: int,
    *,
    s: float,
    beta: float,
    sigma2: float = 1.0,
    lr: float = 0.5,
    sweeps: int = 20,
) -> FslSolution:
    """Switch points (in examples) minimising the FSL loss with ``budget`` examples in all.

    Each switch point is searched between its neighbours on a grid of the
    remaining fraction of that interval (log-spaced down to 1e-9, since for
    hard tasks the optimum lies close to the end), refined by golden section
    in log of that fraction; several switch points are found by coordinate
    descent until none moves. A switch point at the end of its interval means
    the phase after it is skipped.

    Raises:
      BatchConfigError for bad sizes, exponents, noise, LR or budget.
    """
    _check(sizes, budget, s, beta, sigma2, lr)
    return _solve(
        tuple(int(B) for B in sizes),
        int(budget),
        float(s),
        float(beta),
        float(sigma2),
        float(lr),
        int(sweeps),
    )


@functools.lru_cache(maxsize=32)  # validation and the plan build ask for the same solution
def _solve(
    sizes: tuple[int, ...],
    budget: int,
    s: float,
    beta: float,
    sigma2: float,
    lr: float,
    sweeps: int,
) -> FslSolution:
    D = float(budget)
    n = len(sizes)
    kw = dict(s=s, beta=beta, sigma2=sigma2, lr=lr)
    fractions_R = np.concatenate(
        [[0.0], np.logspace(math.log10(SMALLEST_FRACTION), 0.0, SEARCH_POINTS - 1)]
    )

    def phases(bounds_XJ: np.ndarray) -> np.ndarray:
        full_XJ = np.concatenate(
            [np.zeros((bounds_XJ.shape[0], 1)), bounds_XJ, np.full((bounds_XJ.shape[0], 1), D)],
            axis=1,
        )
        return np.diff(full_XJ, axis=1)

    # Start with every switch late, as the hard-task optimum is.
    bounds = np.array([D * (1.0 - 0.5**j) for j in range(1, n)])
    best = fsl_loss(sizes, phases(bounds[None])[0], **kw)
    for _ in range(sweeps):
        before = best
        for j in range(n - 1):
            lo = bounds[j - 1] if j > 0 else 0.0
            hi = bounds[j + 1] if j < n - 2 else D
            cand_XJ = np.repeat(bounds[None], len(fractions_R), axis=0)
            cand_XJ[:, j] = hi - (hi - lo) * fractions_R
            losses_X = fsl_loss(sizes, phases(cand_XJ), **kw)
            i = int(np.argmin(losses_X))
            value, loss = cand_XJ[i, j], float(losses_X[i])
            if 0 < i < len(fractions_R) - 1 and hi > lo:

                def f(log_r, j=j, lo=lo, hi=hi):
                    trial = bounds.copy()
                    trial[j] = hi - (hi - lo) * math.exp(log_r)
                    return fsl_loss(sizes, phases(trial[None])[0], **kw)

                log_r = _golden(
                    f, math.log(fractions_R[max(i - 1, 1)]), math.log(fractions_R[i + 1])
                )
                refined = f(log_r)
                if refined < loss:
                    value, loss = hi - (hi - lo) * math.exp(log_r), refined
            if loss < best:
                bounds[j], best = value, loss
        if best >= before - SWEEP_TOL * abs(before):
            break
    constant = tuple(fsl_loss([B], [D], **kw) for B in sizes)
    return FslSolution(
        sizes=tuple(sizes),
        budget=budget,
        switch_examples=tuple(float(b) for b in bounds),
        loss=float(best),
        constant_losses=constant,
        hard=task_is_hard(s, beta),
    )


def schedule_from_solution(solution: FslSolution, ctx_len: int) -> TableSchedule:
    """The solution as a token-keyed table; phases shorter than one example are dropped."""
    entries: list[tuple[int, int]] = []
    start = 0
    for size, examples in zip(solution.sizes, solution.phase_examples()):
        end = start + examples
        key = int(round(start)) * ctx_len
        if int(round(end)) > int(round(start)):
            if entries and key == entries[-1][0]:
                entries[-1] = (key, size)
            else:
                entries.append((key, size))
        start = end
    entries[0] = (0, entries[0][1])
    return TableSchedule(entries, name="batch.policy.fsl")


def _theory_two_phase(
    sizes: Sequence[int], budget: int, *, s: float, beta: float, sigma2: float, lr: float
) -> FslSolution:
    """The two-phase optimum from ``bsjax.theory`` (imported here: only this policy needs it)."""
    _check(sizes, budget, s, beta, sigma2, lr)
    from bsjax.theory.fsl import FSL
    from bsjax.theory.optimal import optimal_switch

    point = optimal_switch(
        FSL(s=float(s), beta=float(beta), noise=float(sigma2)),
        lr=float(lr),
        batch1=int(sizes[0]),
        batch2=int(sizes[1]),
        data_size=int(budget),
    )
    return FslSolution(
        sizes=(int(sizes[0]), int(sizes[1])),
        budget=int(budget),
        switch_examples=(float(point.switch_examples),),
        loss=float(point.loss),
        constant_losses=(float(point.loss_constant_small), float(point.loss_constant_large)),
        hard=task_is_hard(s, beta),
    )


def fsl_policy(
    sizes: Sequence[int],
    budget: int,
    *,
    ctx_len: int,
    s: float,
    beta: float,
    sigma2: float = 1.0,
    lr: float = 0.5,
) -> TablePolicy:
    """The FSL-optimal switch schedule as a fixed table (reason "fsl").

    Every switch line carries the model's figures: the task class, the last
    switch's remaining fraction and its predicted exponent, and the predicted
    loss of this schedule against constant schedules at the smallest and
    largest size.
    """
    sizes = list(sizes)
    if len(sizes) == 2:
        solution = _theory_two_phase(sizes, budget, s=s, beta=beta, sigma2=sigma2, lr=lr)
    else:
        solution = optimal_switch_points(sizes, budget, s=s, beta=beta, sigma2=sigma2, lr=lr)
    measured = {
        "fsl_s": s,
        "fsl_beta": beta,
        "hard_task": float(solution.hard),
        "remaining_fraction": solution.remaining_fraction,
        "fsl_loss": solution.loss,
        "fsl_loss_constant_smallest": solution.constant_losses[0],
        "fsl_loss_constant_largest": solution.constant_losses[-1],
        "budget_examples": float(budget),
    }
    if solution.hard:
        measured["predicted_fraction_exponent"] = switch_fraction_exponent(s, beta)
    policy = TablePolicy(
        schedule_from_solution(solution, ctx_len), kind="fsl", reason="fsl", measured=measured
    )
    policy.solution = solution
    return policy
