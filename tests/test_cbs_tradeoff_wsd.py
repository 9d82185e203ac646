"""The steps-examples trade-off (McCandlish et al. 2018) and the WSD E(S) curve."""

import numpy as np
import pytest

from bsjax.cbs.fits import CbsFitWarning, CurveFitError
from bsjax.cbs.tradeoff import fit_tradeoff
from bsjax.cbs.wsd import fit_wsd_curve, fit_wsd_curves

BATCH = 2.0 ** np.arange(5, 15)


def tradeoff_points(s_min, e_min, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    b_noise = e_min / s_min
    steps = s_min * (1 + b_noise / BATCH) * np.exp(rng.normal(0, noise, BATCH.size))
    return steps, steps * BATCH


def test_tradeoff_exact_points_on_the_hyperbola():
    steps, examples = tradeoff_points(2000.0, 4e6)
    fit = fit_tradeoff(steps, examples)
    assert fit.s_min == pytest.approx(2000.0, rel=1e-6)
    assert fit.e_min == pytest.approx(4e6, rel=1e-6)
    assert fit.b_crit == pytest.approx(2000.0, rel=1e-6)
    # Every point satisfies (S/S_min - 1)(E/E_min - 1) = 1.
    product = (steps / fit.s_min - 1) * (examples / fit.e_min - 1)
    assert product == pytest.approx(np.ones_like(product), rel=1e-5)


def test_tradeoff_noisy_recovery_and_bootstrap():
    steps, examples = tradeoff_points(1500.0, 1.2e6, noise=0.03, seed=2)
    fit = fit_tradeoff(steps, examples, bootstrap=60, seed=0)
    assert fit.b_crit == pytest.approx(800.0, rel=0.15)
    assert fit.ci["b_crit"].low < 800.0 < fit.ci["b_crit"].high
    assert fit.examples_at_steps([fit.s_min * 0.5])[0] == np.inf


def test_tradeoff_needs_three_batch_sizes():
    with pytest.raises(CurveFitError, match="at least 3 distinct batch sizes"):
        fit_tradeoff([1000, 500], [64000, 64000])


# A C^1 three-stage E(S) curve with known parameters.
TRUE = dict(s_min=1000.0, s_1=1800.0, s_opt=3000.0, s_2=5000.0, c=2e-2, e_min=4e5)
B_MIN_TRUE = 2 * TRUE["c"] * (TRUE["s_2"] - TRUE["s_opt"])  # A_1
B_OPT_TRUE = TRUE["e_min"] / TRUE["s_opt"]


def true_examples(steps):
    s = np.asarray(steps, dtype=float)
    s_min, s_1, s_opt, s_2, c, e_min = TRUE.values()
    b_m1 = 2 * c * (s_opt - s_1) * (s_1 - s_min) ** 2
    b_0 = c * (s_opt - s_1) ** 2 + e_min - b_m1 / (s_1 - s_min)
    a_0 = c * (s_2 - s_opt) ** 2 + e_min - B_MIN_TRUE * s_2
    return np.where(
        s <= s_1,
        b_m1 / (s - s_min) + b_0,
        np.where(s <= s_2, c * (s - s_opt) ** 2 + e_min, B_MIN_TRUE * s + a_0),
    )


STEPS = np.geomspace(1150, 12000, 14)


def test_wsd_exact_recovery():
    fit = fit_wsd_curve(STEPS, true_examples(STEPS))
    assert fit.b_min == pytest.approx(B_MIN_TRUE, rel=1e-4)
    assert fit.b_opt == pytest.approx(B_OPT_TRUE, rel=1e-4)
    assert fit.s_min == pytest.approx(TRUE["s_min"], rel=1e-3)
    # C^1 at both joins.
    for join in (fit.s_1, fit.s_2):
        left, right = fit.examples([join * (1 - 1e-7)])[0], fit.examples([join * (1 + 1e-7)])[0]
        assert left == pytest.approx(right, rel=1e-6)
    assert fit.examples([fit.s_opt])[0] == pytest.approx(fit.e_min)


def test_wsd_noisy_recovery_per_target_loss():
    rng = np.random.default_rng(4)
    points = {}
    for target, scale in ((3.2, 1.0), (3.1, 1.3)):
        # A lower target: every E scaled up (same S) -> B_min and B_opt grow by the scale.
        points[target] = (
            STEPS,
            true_examples(STEPS) * scale * np.exp(rng.normal(0, 0.01, STEPS.size)),
        )
    fits = fit_wsd_curves(points)
    assert set(fits) == {3.2, 3.1}
    assert fits[3.2].b_min == pytest.approx(B_MIN_TRUE, rel=0.1)
    assert fits[3.2].b_opt == pytest.approx(B_OPT_TRUE, rel=0.1)
    assert fits[3.1].b_opt == pytest.approx(1.3 * B_OPT_TRUE, rel=0.1)
    assert fits[3.1].b_min > fits[3.2].b_min
    assert fits[3.1].target_loss == 3.1


def test_wsd_flags_an_unobserved_linear_stage():
    steps = np.geomspace(1150, 3900, 9)
    with pytest.warns(CbsFitWarning, match="B_min is extrapolated"):
        fit = fit_wsd_curve(steps, true_examples(steps))
    assert any("linear stage" in w for w in fit.warnings)


def test_wsd_needs_seven_points():
    with pytest.raises(CurveFitError, match="at least 7"):
        fit_wsd_curve(STEPS[:6], true_examples(STEPS[:6]))
