"""FSL late switch: the loss model against quadrature, the optimiser, the schedule it runs."""

import math

import numpy as np
import pytest
from scipy import integrate

from bsjax.batching import BatchConfigError, default_batch_config
from bsjax.batching.policies import (
    fsl_loss,
    fsl_policy,
    optimal_switch_points,
    policy_from_config,
    switch_fraction_exponent,
    task_is_hard,
)


def _direct_two_phase_loss(P, D, B1, B2, s, beta, sigma2, lr):
    """docs/science.md section 4's FSL written out with scipy quadrature, for one switch at P examples."""
    gamma = 2 - 1 / beta
    t1 = lr * P / B1
    T = t1 + lr * (D - P) / B2

    def integrand(z):
        return (1 + T - z) ** -gamma * ((1 + z) ** -s + sigma2)

    opts = dict(limit=400, epsabs=0, epsrel=1e-10)
    first = integrate.quad(integrand, 0, t1, points=[min(1.0, t1)], **opts)[0]
    second = integrate.quad(integrand, t1, T, points=[max(T - 1.0, t1)], **opts)[0]
    return (1 + T) ** -s + lr / B1 * first + lr / B2 * second


@pytest.mark.parametrize("P", [0.0, 300_000.0, 970_000.0, 1_000_000.0])
def test_loss_model_matches_direct_quadrature(P):
    D, kw = 1_000_000, dict(s=0.3, beta=2.5, sigma2=0.5, lr=0.4)
    ours = fsl_loss([64, 512], [P, D - P], **kw)
    assert ours == pytest.approx(_direct_two_phase_loss(P, D, 64, 512, **kw), rel=1e-5)


def test_two_phase_optimum_matches_a_dense_brute_force_search():
    D, kw = 2_000_000, dict(s=0.2, beta=2.0, sigma2=1.0, lr=0.5)
    solution = optimal_switch_points([64, 512], D, **kw)
    P_X = np.linspace(0.0, D, 20001)
    losses_X = fsl_loss([64, 512], np.stack([P_X, D - P_X], axis=1), **kw)
    assert solution.loss <= losses_X.min() + 1e-12
    assert solution.switch_examples[0] == pytest.approx(P_X[np.argmin(losses_X)], abs=2 * D / 20000)


def test_hard_task_switches_late_and_ever_later_at_the_predicted_rate():
    s, beta = 0.2, 2.0  # hard: s < 1 - 1/beta = 0.5
    assert task_is_hard(s, beta)
    fractions = {
        D: optimal_switch_points([64, 512], D, s=s, beta=beta).remaining_fraction
        for D in (10**7, 10**8)
    }
    assert fractions[10**7] < 0.05  # most of the data at the small batch
    measured = math.log10(fractions[10**8] / fractions[10**7])
    assert measured == pytest.approx(switch_fraction_exponent(s, beta), abs=0.03)  # -0.2
    # The late switch beats both constant schedules at equal data.
    solution = optimal_switch_points([64, 512], 10**7, s=s, beta=beta)
    assert solution.loss < min(solution.constant_losses) * 0.95


def test_easy_task_does_not_defer_the_large_batch():
    s, beta = 0.8, 2.0  # easy: s >= 0.5
    assert not task_is_hard(s, beta)
    small_D = optimal_switch_points([64, 512], 10**6, s=s, beta=beta).remaining_fraction
    large_D = optimal_switch_points([64, 512], 10**8, s=s, beta=beta).remaining_fraction
    assert small_D > 0.3 and large_D > small_D  # the large batch arrives earlier as D grows


def test_several_sizes_switch_in_order_and_spend_the_budget_exactly():
    solution = optimal_switch_points([64, 128, 256, 512], 10**6, s=0.2, beta=2.0)
    assert list(solution.switch_examples) == sorted(solution.switch_examples)
    assert sum(solution.phase_examples()) == pytest.approx(10**6, rel=1e-12)
    two = optimal_switch_points([64, 512], 10**6, s=0.2, beta=2.0)
    assert solution.loss <= two.loss  # more sizes cannot do worse


def test_policy_runs_the_solution_as_a_table_with_reason_fsl():
    ctx = 128
    policy = fsl_policy([64, 512], 10**6, ctx_len=ctx, s=0.2, beta=2.0)
    P = policy.solution.switch_examples[0]
    assert policy.schedule.segments() == [(0, 64), (round(P) * ctx, 512)]
    examples, step, batch, switches = 0, 0, policy.initial_batch_size(), []
    while examples < 10**6:
        decision = policy.maybe_decide(step, examples * ctx, batch, {})
        if decision is not None:
            switches.append((examples, decision))
            batch = decision.batch_size
        examples += batch
        step += 1
    ((at, decision),) = switches
    assert decision.reason == "fsl" and decision.batch_size == 512
    assert round(P) <= at < round(P) + 64
    assert decision.measured["hard_task"] == 1.0
    assert decision.measured["remaining_fraction"] == pytest.approx(1 - P / 10**6)
    assert decision.measured["predicted_fraction_exponent"] == pytest.approx(-0.2)


@pytest.mark.parametrize(
    "kw,message",
    [
        (dict(beta=1.0), r"beta \(capacity exponent\) must be > 1"),
        (dict(s=0.0), r"s \(source exponent\) must be > 0"),
        (dict(sigma2=-1.0), "sigma2 .* must be >= 0"),
        (dict(budget=100), "budget of 100 examples is smaller than the largest batch 512"),
        (dict(sizes=[512, 64]), "need at least two increasing positive batch sizes"),
    ],
)
def test_bad_parameters_get_a_clear_error(kw, message):
    args = dict(sizes=[64, 512], budget=10**6, s=0.2, beta=2.0, sigma2=1.0)
    args.update(kw)
    with pytest.raises(BatchConfigError, match=message):
        optimal_switch_points(args.pop("sizes"), args.pop("budget"), **args)


def test_config_section_names_the_key_at_fault():
    cfg = default_batch_config()
    cfg.policy.name = "fsl"
    cfg.policy.sizes = "64 512"
    cfg.policy.fsl.s, cfg.policy.fsl.beta = 0.2, 2.0
    with pytest.raises(BatchConfigError, match="batch.policy.fsl.budget_examples must be set"):
        policy_from_config(cfg, ctx_len=128)
    cfg.policy.fsl.budget_examples = "1M"
    policy = policy_from_config(cfg, ctx_len=128)
    assert policy.schedule.sizes() == [64, 512]
    cfg.policy.fsl.beta = 0.5
    with pytest.raises(BatchConfigError, match=r"batch.policy.fsl: beta \(capacity exponent\)"):
        policy_from_config(cfg, ctx_len=128)


@pytest.mark.parametrize(
    "s,beta,D,sizes",
    [(0.2, 2.0, 10**6, (64, 512)), (0.8, 2.0, 10**6, (64, 512)), (0.3, 2.5, 10**8, (32, 1024))],
)
def test_own_optimiser_agrees_with_the_theory_labs_two_phase_switch(s, beta, D, sizes):
    """Two independent implementations (pure numpy here, bsjax.theory's quadrature) of one model."""
    theory_fsl = pytest.importorskip("bsjax.theory.fsl")
    theory_optimal = pytest.importorskip("bsjax.theory.optimal")
    ours = optimal_switch_points(list(sizes), D, s=s, beta=beta, sigma2=1.0, lr=0.5)
    theirs = theory_optimal.optimal_switch(
        theory_fsl.FSL(s=s, beta=beta, noise=1.0),
        lr=0.5,
        batch1=sizes[0],
        batch2=sizes[1],
        data_size=D,
    )
    assert ours.switch_examples[0] == pytest.approx(theirs.switch_examples, rel=1e-6)
    assert ours.loss == pytest.approx(theirs.loss, rel=1e-6)
    assert ours.constant_losses == pytest.approx(
        (theirs.loss_constant_small, theirs.loss_constant_large), rel=1e-6
    )
    # The policy's two-phase table comes from the theory lab's optimiser.
    policy = fsl_policy(list(sizes), D, ctx_len=128, s=s, beta=beta)
    assert policy.solution.switch_examples[0] == pytest.approx(theirs.switch_examples, rel=1e-12)
