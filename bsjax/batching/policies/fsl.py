"""Late batch-size switching from the functional scaling law (Wang et al. 2026, seed 002).

SECONDARY READING (docs/science.md section 4): the loss model is the FSL of Li et al. 2025 as
docs/science.md writes it, with its default constants (``bsjax.theory.fsl.FSL``), in
intrinsic time t = (sum of learning rates so far) at a constant LR ``lr`` per step.

Given (s, beta) -- fitted from small runs or given directly -- a data budget D
(examples) and the phase sizes B_1 < B_2 < ..., the switch points minimising the
final loss under sum of examples = D come from the theory lab's optimiser
(``bsjax.theory.optimal.optimal_switches``), and the run follows them as a fixed
table (``TablePolicy``, reason "fsl"). This module checks the config values and
turns the solution into that table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bsjax.batching.errors import BatchConfigError
from bsjax.batching.parsing import parse_count
from bsjax.batching.policies.common import BuildContext, PolicySpec, TablePolicy
from bsjax.batching.schedules import TableSchedule
from bsjax.sections import Section, option

if TYPE_CHECKING:
    from bsjax.theory.optimal import SwitchSolution


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


def schedule_from_solution(solution: SwitchSolution, ctx_len: int) -> TableSchedule:
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

    Raises:
      BatchConfigError for bad sizes, exponents, noise, LR or budget.
    """
    _check(sizes, budget, s, beta, sigma2, lr)
    # Imported here: only this policy needs the theory lab (and scipy).
    from bsjax.theory.fsl import FSL, predicted_switch_exponent
    from bsjax.theory.optimal import optimal_switches

    fsl = FSL(s=float(s), beta=float(beta), noise=float(sigma2))
    solution = optimal_switches(
        fsl, lr=float(lr), sizes=[int(B) for B in sizes], data_size=int(budget)
    )
    hard = fsl.task_class == "hard"
    measured = {
        "fsl_s": s,
        "fsl_beta": beta,
        "hard_task": float(hard),
        "remaining_fraction": solution.remaining_fraction,
        "fsl_loss": solution.loss,
        "fsl_loss_constant_smallest": solution.constant_losses[0],
        "fsl_loss_constant_largest": solution.constant_losses[-1],
        "budget_examples": float(budget),
    }
    if hard:
        measured["predicted_fraction_exponent"] = predicted_switch_exponent(s, beta)
    policy = TablePolicy(
        schedule_from_solution(solution, ctx_len), kind="fsl", reason="fsl", measured=measured
    )
    policy.solution = solution
    return policy


@dataclasses.dataclass(frozen=True)
class FslSection(Section):
    """``batch.policy.fsl``: the functional-scaling-law late switch (Wang et al. 2026)."""

    s: float = option(0.0, "FSL source exponent s (> 0)")
    beta: float = option(0.0, "FSL capacity exponent beta (> 1)")
    sigma2: float = option(1.0, "FSL noise level")
    lr: float = option(0.5, "FSL intrinsic time per step (the model's LR)")
    budget_examples: str = option("0", "the run's data budget in examples (e.g. 8M)")


def build(section: FslSection, ctx: BuildContext) -> TablePolicy:
    """The FSL switch table over the ladder's sizes from ``batch.batch_size`` on."""
    phases = [B for B in ctx.ladder().sizes if ctx.start <= B]
    budget = parse_count(section.budget_examples, name="batch.policy.fsl.budget_examples")
    if budget <= 0:
        raise BatchConfigError(
            "batch.policy.fsl.budget_examples must be set to the run's data "
            "budget in examples (e.g. train.max_tokens / model.ctx_len), got "
            f"{section.budget_examples!r}"
        )
    if len(phases) < 2:
        raise BatchConfigError(
            f"batch.policy.sizes: fsl needs at least two phase sizes from "
            f"batch.batch_size={ctx.start} on, got {phases}"
        )
    return fsl_policy(
        phases,
        budget,
        ctx_len=ctx.ctx_len,
        s=section.s,
        beta=section.beta,
        sigma2=section.sigma2,
        lr=section.lr,
    )


SPEC = PolicySpec("fsl", build, FslSection, "fsl policy settings")
