"""Seesaw: double the batch where the LR schedule would halve the LR, LR x 1/sqrt(2) instead."""

import math

import pytest

from bsjax.batching import BatchConfigError, PolicyContext, default_batch_config, plan_from_config
from bsjax.batching.policies import SeesawPolicy, policy_from_config, validate_policy_config
from bsjax.optim import LRSchedule

PEAK = 3e-3
COSINE = LRSchedule(peak_lr=PEAK, warmup_tokens=10_000, kind="cosine", total_tokens=2_000_000)


def test_batch_doubles_at_each_halving_point_up_to_the_top_size():
    marks = COSINE.halving_tokens()
    policy = SeesawPolicy(COSINE, 64, 256)
    keys = [math.ceil(m) for m in marks[:2]]
    assert policy.schedule.segments() == [(0, 64), (keys[0], 128), (keys[1], 256)]
    # At each mark the schedule's own LR is half of what it was at the previous one.
    assert COSINE(marks[0]) == pytest.approx(PEAK / 2, rel=1e-6)
    assert COSINE(marks[1]) == pytest.approx(PEAK / 4, rel=1e-6)


def test_lr_override_trades_halvings_for_doublings_then_anneals_at_the_top():
    policy = SeesawPolicy(COSINE, 64, 256)
    keys = policy.halving_marks
    assert policy.lr_override(5_000) is None  # warmup: the schedule's LR
    assert policy.lr_override(20_000) == pytest.approx(PEAK)
    assert policy.lr_override(keys[0] - 1) == pytest.approx(PEAK)  # not the cosine's decay
    assert policy.lr_override(keys[0]) == pytest.approx(PEAK / math.sqrt(2))
    assert policy.lr_override(keys[1]) == pytest.approx(PEAK / 2)
    # Past the top size (256 = 64 x 2^2) the remaining marks halve the LR as the schedule does.
    assert policy.lr_override(keys[2]) == pytest.approx(PEAK / 4)
    assert policy.lr_override(keys[3]) == pytest.approx(PEAK / 8)


def test_switch_decisions_carry_the_lr_multiplier():
    policy = SeesawPolicy(COSINE, 64, 1024)
    batch, decisions = 64, []
    for tokens in range(0, 2_000_000, 8192):
        decision = policy.maybe_decide(PolicyContext(tokens // 8192, tokens, batch, {}))
        if decision is not None:
            decisions.append(decision)
            batch = decision.batch_size
    assert [d.batch_size for d in decisions] == [128, 256, 512, 1024]
    for n, d in enumerate(decisions, start=1):
        assert d.reason == "seesaw"
        assert d.measured["lr_multiplier"] == pytest.approx(1 / math.sqrt(2))
        assert d.measured["lr"] == pytest.approx(PEAK * 2 ** (-n / 2))


def test_a_schedule_that_never_halves_is_refused():
    with pytest.raises(BatchConfigError, match="seesaw needs an LR schedule that decays"):
        SeesawPolicy(LRSchedule(peak_lr=PEAK, kind="constant"), 64, 512)


def test_config_checks_lr_scaling_and_the_doubling_ladder():
    cfg = default_batch_config()
    cfg.micro_batch_per_device = 4
    cfg.policy.name = "seesaw"
    cfg.lr_scaling = "sqrt"
    (problem,) = validate_policy_config(cfg, ctx_len=128, data_shards=8)
    assert "batch.lr_scaling='sqrt' with batch.policy.name='seesaw'" in problem
    cfg.lr_scaling = "none"
    cfg.policy.sizes = "64 96 128"
    (problem,) = validate_policy_config(cfg, ctx_len=128, data_shards=8)
    assert "batch.policy.sizes: seesaw doubles the batch" in problem
    cfg.policy.sizes = ""
    with pytest.raises(BatchConfigError, match="seesaw.*needs the LR schedule"):
        policy_from_config(cfg, ctx_len=128)


def test_plan_takes_the_seesaw_table_as_its_schedule():
    cfg = default_batch_config()
    cfg.policy.name = "seesaw"
    cfg.policy.max_batch_size = 256
    plan = plan_from_config(cfg, 128, 8, lr_schedule=COSINE)
    assert isinstance(plan.policy, SeesawPolicy)
    assert plan.schedule is plan.policy.schedule
    assert plan.available_sizes() == [64, 128, 256]
    assert [p.batch_size for p in plan.switch_points()] == [64, 128, 256]
