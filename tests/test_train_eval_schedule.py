"""The hybrid evaluation schedule and steps to target."""

import math

import pytest

from bsjax.train.eval_schedule import (
    EvalScheduleError,
    eval_steps,
    expected_steps_for,
    steps_to_target,
    target_crossing,
)

PAPER = dict(dense_ratio=None)  # the paper's linear dense grid


def test_small_run_powers_of_two_and_dense_tail():
    # n = 100, no 1k multiple inside: 2^i up to 64, then 0.70n .. 1.0n every 0.05n.
    assert eval_steps(100, **PAPER) == [1, 2, 4, 8, 16, 32, 64, 70, 75, 80, 85, 90, 95, 100]


def test_long_run_has_all_three_parts():
    steps = eval_steps(10_000, **PAPER)
    powers = [2**i for i in range(14)]  # 1 .. 8192
    thousands = list(range(1000, 10_001, 1000))
    dense = [7000 + 500 * k for k in range(7)]  # 7000, 7500, ..., 10000
    assert steps == sorted(set(powers + thousands + dense))
    assert steps[-1] == 10_000


def test_dense_grid_does_not_drift_past_the_end():
    assert eval_steps(20, every=1000, **PAPER) == [1, 2, 4, 8, 14, 15, 16, 17, 18, 19, 20]


def test_max_steps_caps_or_extends_the_schedule():
    assert eval_steps(100, max_steps=50, **PAPER) == [1, 2, 4, 8, 16, 32]
    extended = eval_steps(100, max_steps=130, **PAPER)
    assert extended[-8:] == [100, 105, 110, 115, 120, 125, 128, 130]
    assert eval_steps(100, max_steps=130, dense_beyond=False, **PAPER)[-3:] == [95, 100, 128]


def test_custom_every_and_dense_spacing():
    steps = eval_steps(1000, every=300, dense_from=0.9, dense_every=0.02, **PAPER)
    assert {300, 600, 900} <= set(steps)
    assert [s for s in steps if s > 900] == [920, 940, 960, 980, 1000]


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
        (dict(expected_steps=100, dense_ratio=1.0), "dense_ratio must be a number in"),
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
    assert [s for s in eval_steps(150, **PAPER) if s > 100] == [105, 113, 120, 128, 135, 143, 150]


@pytest.mark.parametrize("n, cap", [(3908, 5 * 3908), (977, 977), (122, 5 * 122), (2000, 10_000)])
def test_geometric_grid_has_the_same_relative_spacing_everywhere(n, cap):
    # Geometric dense grid: n * 1.05^k from n/4 to the cap; n itself is on it (the reference
    # run must evaluate exactly at t_chin). Every bracket inside it is at most 5% wide
    # (plus one step of rounding), whatever n is.
    steps = eval_steps(n, max_steps=cap)
    assert n in steps and steps[-1] <= cap
    dense = [s for s in steps if s >= 0.25 * n]
    assert dense[0] <= 0.25 * n * 1.05 + 1
    ratios = [b / a for a, b in zip(dense, dense[1:])]
    assert max(ratios) <= 1.05 + 1.0 / dense[0]
    assert cap / dense[-1] <= 1.05 + 1e-9


def _curve(steps, loss_at):
    return [
        {
            "kind": "eval",
            "step": s,
            "tokens": 64 * s,
            "examples": 2 * s,
            "ewa_eval_loss": loss_at(s),
        }
        for s in steps
    ]


def test_target_crossing_interpolates_in_log_steps():
    # Loss linear in log-step: the interpolation is exact.
    recs = _curve([100, 200, 400], lambda s: 5.0 - math.log(s))
    target = 5.0 - math.log(250.0)
    hit = target_crossing(recs, target)
    assert hit.method == "interpolated"
    assert (hit.before_step, hit.after_step) == (200, 400)
    assert hit.steps == pytest.approx(250.0, rel=1e-12)
    assert hit.tokens == pytest.approx(64 * 250.0) and hit.examples == pytest.approx(500.0)
    assert hit.bracket_ratio == 2.0
    assert steps_to_target(recs, target) == 400  # the first-eval rule the loop stops on


def test_target_crossing_on_a_power_law_is_unbiased_at_grid_resolution():
    # A power-law loss curve on the geometric grid: the interpolated crossing is within
    # 0.1% of the true one, the first evaluation below the target up to 5% late.
    def loss(s):
        return 2.0 + 30.0 * s**-0.5

    steps = eval_steps(1000, max_steps=5000)
    for true in (300.0, 777.0, 1234.5, 4000.0):
        hit = target_crossing(_curve(steps, loss), loss(true))
        assert hit.steps == pytest.approx(true, rel=1e-3)
        assert 1.0 <= hit.after_step / true <= 1.0501


def test_target_crossing_edge_cases():
    assert target_crossing(_curve([1, 2, 4], lambda s: 3.0), 2.0) is None
    first = target_crossing(_curve([10, 20], lambda s: 1.0), 2.0)
    assert first.method == "first_eval" and first.steps == 10.0 and first.before_step is None
    # Non-finite evals are skipped; a repeated step keeps its last line (a resumed run).
    recs = _curve([100, 200, 400], lambda s: 5.0 - math.log(s))
    recs.insert(2, {"kind": "eval", "step": 300, "ewa_eval_loss": float("nan")})
    recs.append({"kind": "eval", "step": 200, "ewa_eval_loss": 5.0 - math.log(200.0)})
    assert target_crossing(recs, 5.0 - math.log(250.0)).before_step == 200
    with pytest.raises(EvalScheduleError, match="target must be a finite loss"):
        target_crossing(recs, float("nan"))
