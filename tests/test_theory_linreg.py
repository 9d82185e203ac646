"""The exact SGD risk recursion of bsjax.theory.linreg: against Monte Carlo, a float64 loop, bad input."""

import jax
import numpy as np
import pytest

from bsjax.theory.errors import TheoryInputError
from bsjax.theory.linreg import (
    LinRegProblem,
    risk_curves,
    risk_curves_reference,
    risk_grid,
    stable_lr,
)
from bsjax.theory.linreg_mc import monte_carlo_risk
from bsjax.theory.schedules import Schedule, Segment

SMALL = LinRegProblem(a=1.5, b=2.5, noise=0.5, dim=12)
SWITCHED = Schedule((Segment(15, 0.3, 1), Segment(25, 0.2, 4)))


def test_recursion_matches_monte_carlo_within_error_bars():
    mc = monte_carlo_risk(SMALL, SWITCHED, num_runs=3000, seed=1, average_from=4)
    exact = risk_curves(SMALL, SWITCHED, average_from=4, record_every=1)
    for mean, sem, ref in (
        (mc.last_mean_T, mc.last_sem_T, exact.last_GR[0]),
        (mc.averaged_mean_T, mc.averaged_sem_T, exact.averaged_GR[0]),
    ):
        z = (mean[1:] - ref[1:]) / sem[1:]
        assert np.all(np.abs(z) < 4.5), z
        # the error bars are tight enough for the check to mean something
        assert np.all(sem[1:] / ref[1:] < 0.05)
    # the averaged iterate really differs from the last iterate here
    assert np.abs(exact.averaged_GR[0, -1] / exact.last_GR[0, -1] - 1) > 0.1


def test_float32_scan_agrees_with_float64_numpy_loop():
    problem = LinRegProblem(a=2.0, b=3.0, noise=1.0, dim=300)
    scheds = [
        Schedule.constant(0.5, 1, steps=400),
        Schedule.constant(0.05, 32, steps=250),
        Schedule((Segment(100, 0.4, 2), Segment(300, 0.4, 64))),
    ]
    last, avg = risk_curves_reference(problem, scheds, average_from=10)
    got = risk_curves(problem, scheds, average_from=10, record_every=1)
    assert np.max(np.abs(got.last_GR / last - 1)) < 1e-4
    assert np.max(np.abs(got.averaged_GR / avg - 1)) < 1e-4
    # one config per block: the blocks are spread over the 8 fake devices
    spread = risk_curves(problem, scheds, average_from=10, record_every=1, block=1)
    assert np.max(np.abs(spread.averaged_GR / avg - 1)) < 1e-4
    got64 = risk_curves(problem, scheds, average_from=10, record_every=1, dtype="float64")
    assert np.max(np.abs(got64.last_GR / last - 1)) < 1e-10
    assert np.max(np.abs(got64.averaged_GR / avg - 1)) < 1e-10
    assert not jax.config.jax_enable_x64  # the float64 run did not flip the global flag


def test_shorter_schedules_hold_their_final_values_and_count_examples():
    problem = LinRegProblem(a=2.0, b=3.0, dim=50)
    curves, shape = risk_grid(problem, [0.1, 0.3], [2, 8], examples=400, num_records=10)
    assert shape == (2, 2)
    assert list(curves.num_steps_G) == [200, 200, 50, 50]
    np.testing.assert_array_equal(curves.examples_GR[:, -1], [400, 400, 400, 400])
    # configs with B=8 stop after 50 steps: their records past step 50 repeat the final value
    late = curves.steps_R >= 50
    assert np.all(curves.last_GR[2:, late] == curves.last_GR[2:, -1:])
    assert np.all(np.diff(curves.last_GR[:2, :], axis=1)[:, -1] != 0)


def test_average_of_one_iterate_is_that_iterate():
    problem = LinRegProblem(a=2.0, b=3.0, dim=40)
    c = risk_curves(problem, Schedule.constant(0.4, 2, steps=30), average_from=7, record_every=1)
    assert c.averaged_GR[0, 8] == pytest.approx(c.last_GR[0, 7], rel=1e-5)


def test_stable_lr_separates_convergence_from_divergence():
    problem = LinRegProblem(a=1.5, b=2.5, dim=200)
    lr = stable_lr(problem, 1)
    assert lr < 2.0  # the fourth-moment term binds before the mean dynamics at B = 1
    good = risk_curves(problem, Schedule.constant(0.9 * lr, 1, steps=4000), num_records=4).last_GR[
        0
    ]
    bad = risk_curves(problem, Schedule.constant(1.1 * lr, 1, steps=4000), num_records=4).last_GR[0]
    assert np.all(np.isfinite(good)) and good[-1] == pytest.approx(good[-2], rel=0.02)
    assert not np.isfinite(bad[-1]) or bad[-1] > 1e6 * good[-1]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(a=1.0, b=2.0), "a"),
        (dict(a=0.5, b=2.0), "a"),
        (dict(a=2.0, b=1.0), "b"),
        (dict(a=2.0, b=3.0, noise=-0.1), "noise"),
        (dict(a=2.0, b=3.0, dim=0), "dim"),
    ],
)
def test_bad_problem_parameters_name_the_argument(kwargs, name):
    with pytest.raises(TheoryInputError, match=rf"^{name} must be"):
        LinRegProblem(**kwargs)


def test_data_smaller_than_batch_and_other_schedule_errors():
    with pytest.raises(
        TheoryInputError, match=r"examples \(the data size D=10\) must be >= the batch size B=64"
    ):
        Schedule.constant(0.1, 64, examples=10)
    with pytest.raises(TheoryInputError, match="lr must be > 0"):
        Schedule.constant(-0.1, 4, steps=10)
    with pytest.raises(TheoryInputError, match="average_from=50"):
        risk_curves(SMALL, Schedule.constant(0.1, 1, steps=20), average_from=50)
    with pytest.raises(TheoryInputError, match="dtype"):
        risk_curves(SMALL, Schedule.constant(0.1, 1, steps=20), dtype="float16")


def test_records_end_at_the_last_step():
    problem = LinRegProblem(a=2.0, b=3.0, dim=30)
    c = risk_curves(
        problem,
        [Schedule.constant(0.2, 1, steps=1001), Schedule.constant(0.2, 2, steps=37)],
        num_records=10,
    )
    assert c.steps_R[0] == 0 and c.steps_R[-1] == 1001 and np.all(np.diff(c.steps_R) > 0)
    ref_last, ref_avg = risk_curves_reference(problem, [Schedule.constant(0.2, 1, steps=1001)])
    assert c.final_averaged_G[0] == pytest.approx(ref_avg[0, -1], rel=1e-4)
    assert c.examples_GR[1, -1] == 74
