"""WSD E(S) policy: batch raised to the next target's B_opt as the running loss crosses targets."""

import json
import math

import numpy as np
import pytest

from bsjax.batching import BatchConfigError, PolicyContext, TableSchedule, default_batch_config
from bsjax.batching.policies import (
    LossTargetPolicy,
    parse_loss_targets,
    policy_from_config,
    token_stepped_policy,
)

TARGETS = "4.0:64 3.5:128 3.2:256 3.0:512"


def _loss(step, rng=None):
    value = 3.0 + 2.0 * math.exp(-step / 150)  # 5.0 -> 3.0
    return value + (0.0 if rng is None else float(rng.normal(scale=0.05)))


def _drive(policy, num_steps, loss_at, start=0, batch_size=None, switches=None, key="loss"):
    batch_size = policy.initial_batch_size() if batch_size is None else batch_size
    switches = [] if switches is None else switches
    for step in range(start, num_steps):
        metrics = {"step": step - 1, key: loss_at(step - 1)} if step else {}
        decision = policy.maybe_decide(PolicyContext(step, step * 4096, batch_size, metrics))
        if decision is not None:
            switches.append((step, decision))
            batch_size = decision.batch_size
    return switches, batch_size


def _crossing_step(target):
    return math.ceil(-150 * math.log((target - 3.0) / 2.0))


def test_targets_parse_and_sort_highest_loss_first():
    assert parse_loss_targets("3.5:128 4.0:64") == [(3.5, 128), (4.0, 64)]
    policy = LossTargetPolicy(parse_loss_targets("3.5:128 4.0:64 3.2:256"))
    assert policy.target_losses == [4.0, 3.5, 3.2]
    assert policy.initial_batch_size() == 64 and policy.candidate_sizes() == [64, 128, 256]


def test_batch_rises_to_the_next_targets_b_opt_as_each_target_is_crossed():
    policy = LossTargetPolicy(parse_loss_targets(TARGETS), ema=0.0)
    switches, final = _drive(policy, 800, _loss)
    got = [(step, d.batch_size) for step, d in switches]
    # Crossing 4.0 moves to B_opt(3.5) = 128, and so on; metrics lag one step.
    assert got == [
        (_crossing_step(4.0) + 1, 128),
        (_crossing_step(3.5) + 1, 256),
        (_crossing_step(3.2) + 1, 512),
    ]
    for (_, d), crossed in zip(switches, (4.0, 3.5, 3.2)):
        assert d.reason == "wsd-es"
        assert d.measured["crossed_target"] == crossed
        assert d.measured["running_loss"] <= crossed
    assert final == 512 and policy.next_target == 3  # 3.0 is never reached by this curve


def test_smoothing_ignores_a_single_low_loss():
    rng = np.random.default_rng(0)
    noisy = {s: _loss(s, rng) for s in range(800)}
    noisy[20] = 3.9  # one freak batch well below the 4.0 target, long before the curve gets there
    policy = LossTargetPolicy(parse_loss_targets(TARGETS), ema=0.95)
    switches, _ = _drive(policy, 800, noisy.__getitem__)
    first_step = switches[0][0]
    assert first_step > _crossing_step(4.0)  # the EMA lags, it does not jump early
    unsmoothed = LossTargetPolicy(parse_loss_targets(TARGETS), ema=0.0)
    # Without smoothing the freak batch switches at once: step 20's metrics arrive at step 21.
    assert _drive(unsmoothed, 800, noisy.__getitem__)[0][0][0] == 21


def test_several_targets_crossed_at_once_jump_straight_to_the_right_size():
    policy = LossTargetPolicy(parse_loss_targets(TARGETS), loss_key="ewa_eval_loss")
    decision = policy.decide(PolicyContext(500, 0, 64, {"ewa_eval_loss": 3.3}))
    assert decision.batch_size == 256 and decision.measured["targets_crossed"] == 2
    assert decision.measured["next_target"] == 3.2


def test_eval_loss_key_waits_for_an_evaluation():
    policy = LossTargetPolicy(parse_loss_targets(TARGETS), loss_key="eval_loss")
    assert (
        policy.decide(PolicyContext(10, 0, 64, {"loss": 2.0})) is None
    )  # train loss is not the key
    assert (
        policy.decide(PolicyContext(11, 0, 64, {"loss": 2.0, "eval_loss": 3.9})).batch_size == 128
    )


def test_falling_fitted_sizes_become_a_running_maximum_with_a_warning():
    with pytest.warns(UserWarning, match="using the running maximum"):
        policy = LossTargetPolicy([(4.0, 128), (3.5, 96), (3.2, 256)])
    assert policy.sizes == [128, 128, 256]


@pytest.mark.parametrize(
    "spec,message",
    [
        ("", "empty"),
        ("4.0-64", "not of the form KEY:VALUE"),
        ("x:64", "cannot read loss 'x'"),
        ("4.0:64 4.0:128", "each target loss may appear once"),
        ("4.0:0", "must be positive"),
    ],
)
def test_bad_targets_get_one_clear_message(spec, message):
    with pytest.raises(BatchConfigError, match=message):
        parse_loss_targets(spec)


def test_token_stepped_variant_is_a_table_with_reason_wsd_es():
    policy = token_stepped_policy("0:64 2M:128 6M:256")
    assert policy.schedule == TableSchedule.parse("0:64 2M:128 6M:256")
    d = policy.maybe_decide(PolicyContext(100, 2_000_000, 64, {}))
    assert d.batch_size == 128 and d.reason == "wsd-es"
    assert policy.maybe_decide(PolicyContext(101, 2_100_000, 128, {})) is None


def test_config_builds_both_modes():
    cfg = default_batch_config()
    cfg.policy.name = "wsd_es"
    cfg.policy.wsd_es.targets = TARGETS
    assert isinstance(policy_from_config(cfg, ctx_len=128), LossTargetPolicy)
    cfg.policy.wsd_es.mode = "tokens"
    cfg.policy.wsd_es.table = "0:64 1M:128"
    assert policy_from_config(cfg, ctx_len=128).schedule.batch_size_at(1_000_000) == 128
    cfg.policy.wsd_es.mode = "staircase"
    with pytest.raises(
        BatchConfigError, match="wsd_es.mode: 'staircase' is unknown; choose one of loss, tokens"
    ):
        policy_from_config(cfg, ctx_len=128)


def test_state_round_trips_through_json():
    policy = LossTargetPolicy(parse_loss_targets(TARGETS), ema=0.9)
    _drive(policy, 200, _loss)
    state = json.loads(json.dumps(policy.state_dict()))
    restored = LossTargetPolicy(parse_loss_targets(TARGETS), ema=0.9)
    restored.load_state_dict(state)
    assert restored.state_dict() == policy.state_dict()
    assert restored.running_loss == policy.running_loss
