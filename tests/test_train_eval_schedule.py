"""The hybrid evaluation schedule and steps to target."""

import math

import pytest

from bsjax.train.eval_schedule import (
    EvalSchedule,
    EvalScheduleError,
    eval_steps,
    expected_steps_for,
    steps_to_target,
)


def test_small_run_powers_of_two_and_dense_tail():
    # n = 100, no 1k multiple inside: 2^i up to 64, then 0.70n .. 1.0n every 0.05n.
    assert eval_steps(100) == [1, 2, 4, 8, 16, 32, 64, 70, 75, 80, 85, 90, 95, 100]


def test_long_run_has_all_three_parts():
    steps = eval_steps(10_000)
    powers = [2**i for i in range(14)]  # 1 .. 8192
    thousands = list(range(1000, 10_001, 1000))
    dense = [7000 + 500 * k for k in range(7)]  # 7000, 7500, ..., 10000
    assert steps == sorted(set(powers + thousands + dense))
    assert steps[-1] == 10_000


def test_dense_grid_does_not_drift_past_the_end():
    assert eval_steps(20, every=1000) == [1, 2, 4, 8, 14, 15, 16, 17, 18, 19, 20]


def test_max_steps_caps_or_extends_the_schedule():
    assert eval_steps(100, max_steps=50) == [1, 2, 4, 8, 16, 32]
    extended = eval_steps(100, max_steps=130)
    assert extended[-8:] == [100, 105, 110, 115, 120, 125, 128, 130]
    assert eval_steps(100, max_steps=130, dense_beyond=False)[-3:] == [95, 100, 128]


def test_custom_every_and_dense_spacing():
    steps = eval_steps(1000, every=300, dense_from=0.9, dense_every=0.02)
    assert {300, 600, 900} <= set(steps)
    assert [s for s in steps if s > 900] == [920, 940, 960, 980, 1000]


def test_schedule_set_lookup():
    sched = EvalSchedule.hybrid(5000)
    assert sched.should_eval(4096) and 3500 in sched and 1000 in sched
    assert not sched.should_eval(3) and 3499 not in sched
    assert len(sched) == len(eval_steps(5000))


def test_expected_steps_by_linear_scaling_with_floor():
    assert expected_steps_for(1024, 256, 23438) == math.ceil(23438 * 256 / 1024)
    assert expected_steps_for(256, 256, 23438) == 23438
    assert expected_steps_for(64, 256, 1000) == 4000
    assert expected_steps_for(2**20, 256, 1000) == 100
    assert expected_steps_for(2**20, 256, 1000, floor=10) == 10


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(expected_steps=0), "expected_steps must be an int >= 1"),
        (dict(expected_steps=100, every=0), "every must be an int >= 1"),
        (dict(expected_steps=100, dense_from=1.5), "dense_from must be a fraction"),
        (dict(expected_steps=100, dense_every=0), "dense_every must be a fraction"),
        (dict(expected_steps=100, max_steps=0), "max_steps must be an int >= 1"),
        (dict(expected_steps=10.5), "expected_steps must be an int"),
    ],
)
def test_bad_schedule_arguments(kwargs, match):
    with pytest.raises(EvalScheduleError, match=match):
        eval_steps(**kwargs)


def test_bad_expected_steps_arguments():
    with pytest.raises(EvalScheduleError, match="batch_size"):
        expected_steps_for(0, 256, 1000)


def _records():
    return [
        {"kind": "train", "step": 50, "loss": 1.0},  # not an eval line: ignored
        {"kind": "eval", "step": 400, "eval_loss": 3.0, "ewa_eval_loss": 2.9},
        {"kind": "eval", "step": 100, "eval_loss": 4.0, "ewa_eval_loss": 4.1},
        {"kind": "eval", "step": 200, "eval_loss": 3.2, "ewa_eval_loss": float("nan")},
        {"kind": "eval", "step": 300, "eval_loss": 3.05, "ewa_eval_loss": 3.0},
    ]


def test_steps_to_target_first_eval_at_or_below():
    recs = _records()
    assert steps_to_target(recs, 3.0) == 300  # "at or below"
    assert steps_to_target(recs, 2.95) == 400
    assert steps_to_target(recs, 2.0) is None
    assert steps_to_target(recs, 3.1, key="eval_loss") == 300
    assert steps_to_target(recs, 4.1) == 100  # records need not be sorted


def test_steps_to_target_wrong_key_is_named():
    with pytest.raises(EvalScheduleError, match="ewa_eval_loss"):
        steps_to_target([{"kind": "eval", "step": 1, "eval_loss": 3.0}], 3.0)


def test_dense_points_round_half_up():
    # 0.75 * 150 = 112.5 and 0.85 * 150 = 127.5
    assert [s for s in eval_steps(150) if s > 100] == [105, 113, 120, 128, 135, 143, 150]
