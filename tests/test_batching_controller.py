"""Policy interface: ScheduledPolicy drives fixed schedules, state round-trips, off-bucket sizes."""

import json
import warnings

import pytest

from bsjax.batching import (
    BatchConfigError,
    BatchPolicy,
    Decision,
    OffBucketWarning,
    PolicyContext,
    RampSchedule,
    ScheduledPolicy,
    TableSchedule,
    round_to_bucket,
    switch_points,
)


def _drive(policy, ctx_len, num_steps, metrics_at=lambda step: {}):
    """The trainer's side of the protocol: returns [(step, tokens, Decision)] of switches."""
    batch_size, tokens, switches = policy.initial_batch_size(), 0, []
    for step in range(num_steps):
        decision = policy.maybe_decide(PolicyContext(step, tokens, batch_size, metrics_at(step)))
        if decision is not None:
            switches.append((step, tokens, decision))
            batch_size = decision.batch_size
        tokens += batch_size * ctx_len
    return switches


@pytest.mark.parametrize(
    "schedule", [TableSchedule.parse("0:64 2M:128 8M:256"), RampSchedule(32, 32, 4_000_000, 256)]
)
def test_scheduled_policy_switches_where_the_schedule_does(schedule):
    policy = ScheduledPolicy(schedule)
    switches = _drive(policy, ctx_len=512, num_steps=400)
    expected = [(p.step, p.tokens, p.batch_size) for p in switch_points(schedule, 512)[1:]]
    assert [(s, t, d.batch_size) for s, t, d in switches] == expected
    assert all(d.reason == "schedule" for _, _, d in switches)
    assert policy.num_switches == len(expected)


def test_scheduled_policy_decide_keeps_size_between_switches():
    policy = ScheduledPolicy(TableSchedule.parse("0:64 2M:128"))
    assert policy.initial_batch_size() == 64
    assert policy.candidate_sizes() == [64, 128]
    assert policy.decide(PolicyContext(3, 1_999_999, 64, {})) is None
    decision = policy.decide(PolicyContext(62, 2_000_000, 64, {"loss": 3.0}))
    assert decision == Decision(128, "schedule", {"tokens": 2e6, "from_batch_size": 64.0})
    json.dumps(decision.to_dict())


def test_scheduled_policy_state_round_trip_through_json():
    schedule = TableSchedule.parse("0:64 2M:128 8M:256")
    policy = ScheduledPolicy(schedule)
    _drive(policy, ctx_len=512, num_steps=200)
    state = json.loads(json.dumps(policy.state_dict()))
    restored = ScheduledPolicy(schedule)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restored.load_state_dict(state)
    assert restored.state_dict() == policy.state_dict()
    assert restored.num_switches == 2 and restored.last_switch_step == policy.last_switch_step


def test_scheduled_policy_load_refuses_other_policy_and_warns_on_changed_schedule():
    policy = ScheduledPolicy(TableSchedule.parse("0:64 2M:128"))
    state = policy.state_dict()
    with pytest.raises(BatchConfigError, match="policy state is for 'noise_scale'"):
        policy.load_state_dict({**state, "policy": "noise_scale"})
    other = ScheduledPolicy(TableSchedule.parse("0:64 4M:128"))
    with pytest.warns(UserWarning, match="checkpoint used 'table 0:64 2M:128'"):
        other.load_state_dict(state)


class _DoubleWhenCBSExceeds(BatchPolicy):
    """An adaptive policy in the interface: every `every` steps, double B if a
    measured CBS exceeds 2B (the rule of Merrill et al. 2025), with its state."""

    def __init__(self, start, every, max_size):
        self.start, self.every, self.max_size, self.doublings = start, every, max_size, 0

    def initial_batch_size(self):
        return self.start

    def candidate_sizes(self):
        sizes, B = [], self.start
        while self.max_size >= B:
            sizes.append(B)
            B *= 2
        return sizes

    def is_decision_point(self, ctx):
        return ctx.step > 0 and ctx.step % self.every == 0

    def decide(self, ctx):
        batch_size = ctx.batch_size
        cbs = ctx.metrics.get("cbs")
        if cbs is None or cbs <= 2 * batch_size or 2 * batch_size > self.max_size:
            return None
        self.doublings += 1
        return Decision(2 * batch_size, "cbs > 2B", {"cbs": cbs})

    def state_dict(self):
        return {"policy": "double_when_cbs", "doublings": self.doublings}

    def load_state_dict(self, state):
        self.doublings = state["doublings"]


def test_adaptive_policy_decides_only_at_decision_points():
    policy = _DoubleWhenCBSExceeds(start=32, every=10, max_size=256)
    switches = _drive(
        policy, ctx_len=128, num_steps=100, metrics_at=lambda step: {"cbs": 8.0 * step}
    )
    # cbs(step) = 8 step > 2B first at step 10 (80 > 64), then 20 (160 > 128), 40 (320 > 256).
    assert [(s, d.batch_size) for s, _, d in switches] == [(10, 64), (20, 128), (40, 256)]
    assert switches[0][2].measured == {"cbs": 80.0}
    assert policy.doublings == 3


def test_round_to_bucket_exact_sizes_pass_silently():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert round_to_bucket(128, [64, 128, 256], "round") == 128
        assert round_to_bucket(128, [64, 128, 256], "error") == 128


def test_round_to_bucket_rounds_down_with_warning():
    with pytest.warns(
        OffBucketWarning, match="batch size 200 has no compiled bucket; rounded down to 128"
    ):
        assert round_to_bucket(200, {256: None, 64: None, 128: None}, "round") == 128
    with pytest.warns(OffBucketWarning):
        assert round_to_bucket(10_000, [64, 128, 256], "round") == 256


def test_round_to_bucket_refuses():
    with pytest.raises(
        BatchConfigError,
        match=r"batch size 200 has no compiled bucket \(off_bucket='error'\).*nearest: 128 or 256",
    ):
        round_to_bucket(200, [64, 128, 256], "error")
    with pytest.raises(BatchConfigError, match="below every compiled size"):
        round_to_bucket(32, [64, 128], "round")
    with pytest.raises(BatchConfigError, match="off_bucket: unknown mode 'nearest'"):
        round_to_bucket(64, [64], "nearest")
