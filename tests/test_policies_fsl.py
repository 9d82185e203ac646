"""FSL late switch: the schedule the policy runs from the theory lab's optimum, its config checks.

The loss model and the switch-point optimiser are tested with the theory lab
(tests/test_theory_fsl.py).
"""

import pytest

from bsjax.batching import BatchConfigError, PolicyContext, default_batch_config
from bsjax.batching.policies import fsl_policy, policy_from_config
from bsjax.theory.fsl import FSL
from bsjax.theory.optimal import optimal_switch, optimal_switches


def test_policy_runs_the_solution_as_a_table_with_reason_fsl():
    ctx = 128
    policy = fsl_policy([64, 512], 10**6, ctx_len=ctx, s=0.2, beta=2.0)
    P = policy.solution.switch_examples[0]
    assert policy.schedule.segments() == [(0, 64), (round(P) * ctx, 512)]
    examples, step, batch, switches = 0, 0, policy.initial_batch_size(), []
    while examples < 10**6:
        decision = policy.maybe_decide(PolicyContext(step, examples * ctx, batch, {}))
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
        fsl_policy(args.pop("sizes"), args.pop("budget"), ctx_len=128, **args)


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
def test_two_phase_table_is_the_theory_labs_switch(s, beta, D, sizes):
    theirs = optimal_switch(
        FSL(s=s, beta=beta), lr=0.5, batch1=sizes[0], batch2=sizes[1], data_size=D
    )
    policy = fsl_policy(list(sizes), D, ctx_len=128, s=s, beta=beta)
    assert policy.solution.switch_examples == (theirs.switch_examples,)
    assert policy.solution.loss == theirs.loss
    assert policy.solution.constant_losses == (
        theirs.loss_constant_small,
        theirs.loss_constant_large,
    )
    assert policy.schedule.segments() == [
        (0, sizes[0]),
        (round(theirs.switch_examples) * 128, sizes[1]),
    ]


def test_several_sizes_run_the_n_phase_optimum():
    sizes, D = [64, 128, 256, 512], 10**6
    policy = fsl_policy(sizes, D, ctx_len=128, s=0.2, beta=2.0, sigma2=0.5, lr=0.4)
    best = optimal_switches(FSL(s=0.2, beta=2.0, noise=0.5), lr=0.4, sizes=sizes, data_size=D)
    assert policy.solution == best
    starts = [0] + [round(P) * 128 for P in best.switch_examples]
    assert policy.schedule.segments() == list(zip(starts, sizes))
