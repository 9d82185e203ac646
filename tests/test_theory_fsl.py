"""FSL model, its match to the exact risk, optimal schedules under a data budget, catch-up."""

import numpy as np
import pytest
from scipy import integrate

from bsjax.theory.catchup import catch_up, catch_up_scaling
from bsjax.theory.errors import TheoryInputError
from bsjax.theory.fsl import FSL, classify_task, predicted_switch_exponent
from bsjax.theory.fsl_check import compare_fsl_exact
from bsjax.theory.linreg import LinRegProblem
from bsjax.theory.optimal import (
    optimal_bucket_schedule,
    optimal_continuous_schedule,
    optimal_switch,
    optimal_switches,
    phase_loss,
    switch_scaling,
    two_phase_loss,
)
from bsjax.theory.schedules import Schedule, Segment

HARD = FSL(s=0.2, beta=2.0)
EASY = FSL(s=1.0, beta=2.0)


def test_noise_integral_against_adaptive_quadrature():
    f = FSL(s=0.4, beta=1.7, noise=0.3, signal_offset=2.0, kernel_offset=0.5)
    t, z0, z1 = 5000.0, 10.0, 4990.0
    want = integrate.quad(
        lambda z: f.kernel(t - z) * (f.signal(z) + f.noise),
        z0,
        z1,
        limit=500,
        points=[4000.0, 4900.0],
    )[0]
    assert f.noise_term(t, z0, z1) == pytest.approx(want, rel=1e-7)
    assert float(f.kernel_integral(0.0, 7.0)) == pytest.approx(
        integrate.quad(f.kernel, 0, 7)[0], rel=1e-10
    )


def test_fsl_tracks_exact_risk_up_to_a_bounded_ratio():
    problem = LinRegProblem(a=2.0, b=3.0, noise=1.0, dim=2000)
    scheds = [
        Schedule.constant(0.2, 4, steps=8000),
        Schedule((Segment(6000, 0.2, 1), Segment(2000, 0.2, 16))),
    ]
    cmp = compare_fsl_exact(problem, scheds, ["constant", "switch"], num_records=40)
    ratio = cmp.ratio_GR[:, 2:]
    assert np.all((ratio > 0.5) & (ratio < 1.5)), ratio
    # within the constant phase the ratio is flat: an asymptotic equivalence, not a drift
    const = cmp.ratio_GR[0, 10:]
    assert const.max() / const.min() < 1.05
    # after the switch the FSL follows the drop of the exact risk
    before, after = cmp.steps_R <= 6000, cmp.steps_R >= 7000
    drop_exact = cmp.exact_GR[1, after][-1] / cmp.exact_GR[1, before][-1]
    drop_fsl = cmp.fsl_GR[1, after][-1] / cmp.fsl_GR[1, before][-1]
    assert drop_exact < 0.2 and drop_fsl == pytest.approx(drop_exact, rel=0.35)


def test_classification_on_both_sides_of_the_boundary():
    # boundary s = 1 - 1/beta; for beta = 2 it is s = 0.5, for beta = 4 it is 0.75
    assert classify_task(0.49, 2.0) == "hard" and classify_task(0.51, 2.0) == "easy"
    assert classify_task(0.5, 2.0) == "easy"
    assert classify_task(0.74, 4.0) == "hard" and classify_task(0.76, 4.0) == "easy"
    # through the linear-regression map s = (b-1)/a, beta = a the boundary is b = a
    assert FSL.from_linreg(LinRegProblem(2.0, 1.9, dim=100)).task_class == "hard"
    assert FSL.from_linreg(LinRegProblem(2.0, 2.1, dim=100)).task_class == "easy"
    # and the optimal schedule's shape agrees on each side
    for fsl, cls in ((FSL(0.3, 2.0), "hard"), (FSL(0.8, 2.0), "easy")):
        cont = optimal_continuous_schedule(fsl, lr=0.1, data_size=10**7)
        assert cont.measured_class == cls


def test_optimal_schedules_shapes_and_budget():
    hard = optimal_continuous_schedule(HARD, lr=0.1, data_size=10**6)
    easy = optimal_continuous_schedule(EASY, lr=0.1, data_size=10**6)
    for cont in (hard, easy):
        assert cont.examples_used == pytest.approx(10**6, rel=1e-9)
    # hard: smallest batch for most of training, then a late ramp
    assert hard.fraction_at_min > 0.8
    late = hard.batch_N[hard.examples_N > 0.99 * 10**6]
    assert late.max() > 50
    # easy: above the smallest batch throughout, growing over the last 90% of the data
    assert easy.fraction_at_min == 0.0
    tail = easy.batch_N[easy.examples_N > 0.1 * 10**6]
    assert np.all(np.diff(tail) >= -1e-9 * tail[:-1]) and tail[-1] > 10 * tail[0]
    # the optimum beats every constant batch under the same budget
    consts = [HARD.final_loss(Schedule.constant(0.1, b, examples=10**6)) for b in (1, 4, 16, 64)]
    assert hard.loss < min(consts)


@pytest.mark.parametrize(
    "data_size, buckets",
    [
        (1_000_003, [1, 2, 4, 8, 16, 32, 64, 128]),
        (999_998, [2, 6, 10, 50]),
        (123_456, [4, 16, 64, 256]),
    ],
)
def test_bucket_schedule_meets_the_budget_exactly(data_size, buckets):
    res = optimal_bucket_schedule(HARD, lr=0.1, data_size=data_size, buckets=buckets)
    assert res.schedule.num_examples == data_size
    assert {s.batch for s in res.schedule.segments} <= set(buckets)
    assert res.loss == pytest.approx(res.relaxed_loss, rel=0.02)
    assert sum(seg["examples"] for seg in res.to_json()["segments"]) == data_size


def test_bucket_budget_errors():
    with pytest.raises(TheoryInputError, match="multiple of their gcd 4"):
        optimal_bucket_schedule(HARD, lr=0.1, data_size=1002, buckets=[4, 8])
    with pytest.raises(TheoryInputError, match="data_size D=3 must be >= the smallest batch 4"):
        optimal_bucket_schedule(HARD, lr=0.1, data_size=3, buckets=[4, 8])
    with pytest.raises(TheoryInputError, match="^s must be > 0"):
        FSL(s=-0.1, beta=2.0)
    with pytest.raises(TheoryInputError, match="^beta must be > 1"):
        FSL(s=0.5, beta=1.0)


def test_switch_point_exponent_matches_notes_formula():
    fsl = FSL(s=0.1, beta=2.0)
    res = switch_scaling(fsl, lr=0.1, batch1=1, batch2=64, data_sizes=[10**8, 10**10, 10**12])
    assert res.task_class == "hard"
    assert res.predicted_exponent == pytest.approx(-(1 - 0.5 - 0.1) / 1.5)
    assert abs(res.measured_exponent - res.predicted_exponent) < 0.02
    fractions = [p.remaining_fraction for p in res.points]
    assert fractions[0] > fractions[1] > fractions[2]  # the switch moves later as D grows
    assert predicted_switch_exponent(0.8, 2.0) == 0.0


def test_late_switch_beats_early_switch_and_constant_at_equal_data():
    D, lr = 10**7, 0.1
    best = optimal_switch(HARD, lr=lr, batch1=1, batch2=64, data_size=D)
    early = two_phase_loss(HARD, lr, 1, 64, D, 0.2 * D)
    assert best.remaining_fraction < 0.5  # late
    assert best.loss < early < max(best.loss_constant_small, best.loss_constant_large)
    assert best.loss < min(best.loss_constant_small, best.loss_constant_large)


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
def test_two_phase_loss_matches_direct_quadrature(P):
    D, s, beta, sigma2, lr = 1_000_000, 0.3, 2.5, 0.5, 0.4
    ours = two_phase_loss(FSL(s=s, beta=beta, noise=sigma2), lr, 64, 512, D, P)
    assert ours == pytest.approx(
        _direct_two_phase_loss(P, D, 64, 512, s, beta, sigma2, lr), rel=1e-7
    )


def test_two_phase_optimum_matches_a_dense_brute_force_search():
    D, lr = 2_000_000, 0.5
    best = optimal_switch(HARD, lr=lr, batch1=64, batch2=512, data_size=D)
    P_X = np.linspace(0.0, D, 2001)
    losses_X = np.array([two_phase_loss(HARD, lr, 64, 512, D, P) for P in P_X])
    assert best.loss <= losses_X.min() + 1e-12
    assert best.switch_examples == pytest.approx(P_X[np.argmin(losses_X)], abs=2 * D / 2000)
    assert best.remaining_fraction == pytest.approx(1 - best.switch_examples / D, rel=1e-12)


def test_easy_task_does_not_defer_the_large_batch():
    easy = FSL(s=0.8, beta=2.0)  # easy: s >= 1 - 1/beta = 0.5
    small_D, large_D = (
        optimal_switch(easy, lr=0.5, batch1=64, batch2=512, data_size=D).remaining_fraction
        for D in (10**6, 10**8)
    )
    assert small_D > 0.3 and large_D > small_D  # the large batch arrives earlier as D grows


def test_several_sizes_switch_in_order_and_spend_the_budget_exactly():
    D, lr = 10**6, 0.5
    best = optimal_switches(HARD, lr=lr, sizes=[64, 128, 256, 512], data_size=D)
    assert list(best.switch_examples) == sorted(best.switch_examples)
    assert sum(best.phase_examples()) == pytest.approx(D, rel=1e-12)
    assert best.loss == pytest.approx(phase_loss(HARD, lr, best.sizes, best.phase_examples()))
    assert best.remaining_fraction == pytest.approx(1 - best.switch_examples[-1] / D, rel=1e-9)
    two = optimal_switch(HARD, lr=lr, batch1=64, batch2=512, data_size=D)
    assert best.loss <= two.loss  # more sizes cannot do worse
    assert best.constant_losses[0] == two.loss_constant_small
    assert best.constant_losses[-1] == two.loss_constant_large
    # each switch is a local optimum: moving one switch point either way costs loss
    for j, P in enumerate(best.switch_examples):
        for step in (-500.0, 500.0):
            moved = list(best.switch_examples)
            moved[j] = P + step
            full = [0.0, *moved, D]
            phases = [b - a for a, b in zip(full, full[1:])]
            assert phase_loss(HARD, lr, best.sizes, phases) >= best.loss


def test_two_sizes_are_one_search():
    fsl, D = FSL(s=0.3, beta=2.5), 10**8
    two = optimal_switch(fsl, lr=0.5, batch1=32, batch2=1024, data_size=D)
    best = optimal_switches(fsl, lr=0.5, sizes=[32, 1024], data_size=D)
    assert best.switch_examples == (two.switch_examples,)
    assert (best.remaining_fraction, best.loss) == (two.remaining_fraction, two.loss)


def test_catch_up_gap_decays_through_the_forgetting_kernel():
    cu = catch_up(FSL(s=0.3, beta=2.0), lr=0.1, batch_small=1, batch_large=16, switch_step=10**6)
    assert cu.predicted_decay_exponent == pytest.approx(-0.5)
    assert abs(cu.decay_exponent - cu.predicted_decay_exponent) < 0.1
    assert np.all(np.diff(cu.gap_R) < 0) and cu.gap_R[-1] > 0
    assert cu.catch_up_steps is not None and cu.catch_up_steps < 0.1 * cu.switch_step
    assert cu.examples_saved == 15 * 10**6


def test_catch_up_time_depends_on_task_difficulty():
    hard = catch_up_scaling(
        FSL(0.2, 3.0), lr=0.1, batch_small=1, batch_large=16, switch_steps=[10**4, 10**5, 10**6]
    )
    slow = catch_up_scaling(
        FSL(0.3, 1.5), lr=0.1, batch_small=1, batch_large=16, switch_steps=[10**4, 10**5, 10**6]
    )
    # hard task: tau_c ~ t_s^(s / (1 - 1/beta)) = t_s^0.3, so tau_c / t_s shrinks fast
    assert abs(hard.measured_exponent - hard.predicted_exponent) < 0.1
    hard_frac = [r.catch_up_steps / r.switch_step for r in hard.runs]
    assert hard_frac[0] > hard_frac[1] > hard_frac[2] and hard_frac[-1] < 0.01
    # beta close to 1 forgets slowly: the first switch is not caught up within the horizon
    assert slow.runs[0].catch_up_steps is None
    assert slow.runs[-1].catch_up_steps / slow.runs[-1].switch_step > 0.1
