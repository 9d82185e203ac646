"""Y(B) fits and the critical batch size: synthetic recovery and the paper's Table 6."""

import json
import math
import warnings

import numpy as np
import pytest

from bsjax.cbs.fits import (
    CbsFitWarning,
    CurveFitError,
    NonMonotoneCurveError,
    critical_batch_size,
    fit_inverse_power,
    fit_inverse_power_many,
    fit_steps_curve,
)

BATCH = 2.0 ** np.arange(6, 15)  # 64 .. 16384, as in the paper's sweeps

# Zhang et al., Appendix H, Table 6 (a): alpha fixed at 1, B_opt = 256.
TABLE6A = {
    "85M": (1293.83, 2834258.08, 9.54),
    "151M": (1752.42, 5677478.78, 9.90),
    "302M": (2095.35, 11383269.89, 10.44),
    "604M": (2459.93, 19449688.59, 10.88),
    "1.2B": (3897.31, 43381130.22, 11.31),
}


@pytest.mark.parametrize("size", list(TABLE6A))
def test_table6a_curves_give_back_a_b_and_log2_bstar(size):
    a, b, log2_bstar = TABLE6A[size]
    fit = fit_steps_curve(BATCH, a + b / BATCH)
    assert fit.a == pytest.approx(a, rel=1e-6)
    assert fit.b == pytest.approx(b, rel=1e-6)
    assert fit.alpha == 1.0 and not fit.alpha_fitted
    assert round(fit.log2, 2) == pytest.approx(log2_bstar, abs=1e-9)
    # The paper's closed form b / (5a) + 1.2 B_opt.
    assert fit.critical_batch_size == pytest.approx(b / (5 * a) + 1.2 * 256, rel=1e-9)
    assert max(abs(r) for r in fit.residuals) < 1e-8


def test_fixed_alpha_recovery_with_noise():
    rng = np.random.default_rng(0)
    a, b = 2000.0, 6e6
    batch = np.repeat(BATCH, 2)
    steps = (a + b / batch) * np.exp(rng.normal(0.0, 0.03, batch.size))
    fit = fit_steps_curve(batch, steps, seeds=np.tile([0, 1], BATCH.size))
    true_bstar = critical_batch_size(a, b)
    # 3% log-noise on 9 sizes: parameters within 10%, B* within 10%.
    assert fit.a == pytest.approx(a, rel=0.10)
    assert fit.b == pytest.approx(b, rel=0.10)
    assert fit.critical_batch_size == pytest.approx(true_bstar, rel=0.10)
    assert fit.n_points == BATCH.size and fit.n_runs == batch.size


def test_fitted_alpha_recovery():
    a, b, alpha = 1500.0, 1.2e7, 1.2
    exact = fit_steps_curve(BATCH, a + b / BATCH**alpha, alpha="fit")
    assert exact.alpha_fitted
    assert exact.alpha == pytest.approx(alpha, rel=1e-5)
    assert exact.a == pytest.approx(a, rel=1e-4)
    assert exact.b == pytest.approx(b, rel=1e-4)
    rng = np.random.default_rng(1)
    noisy = fit_steps_curve(
        BATCH, (a + b / BATCH**alpha) * np.exp(rng.normal(0, 0.02, BATCH.size)), alpha=None
    )
    assert noisy.alpha == pytest.approx(alpha, abs=0.1)
    assert noisy.critical_batch_size == pytest.approx(critical_batch_size(a, b, alpha), rel=0.15)


def test_critical_batch_size_solves_the_defining_equation():
    for a, b, alpha, b_opt, rho in [
        (1300.0, 3e6, 1.0, 256.0, 0.2),
        (1348.31, 3386537.23, 1.03, 256, 0.2),
        (2000.0, 5e6, 0.8, 128, 0.1),
        (500.0, 1e9, 1.7, 256, 0.3),
    ]:
        bstar = critical_batch_size(a, b, alpha, b_opt, rho)
        assert bstar > b_opt
        lhs = (a + b / b_opt**alpha) * (1 + rho) * b_opt
        assert (a + b / bstar**alpha) * bstar == pytest.approx(lhs, rel=1e-9)
    # alpha = 1 closed form
    assert critical_batch_size(1000.0, 2e6, 1.0, 256, 0.2) == pytest.approx(
        1.2 * 256 + 0.2 * 2e6 / 1000.0
    )


def test_table6b_formula_differs_from_the_root_for_alpha_not_one():
    # Table 6 (b) row 85M: a, b, alpha = 1348.31, 3386537.23, 1.03, reported log2 B* = 9.34.
    a, b, alpha = 1348.31, 3386537.23, 1.03
    caption_formula = ((b + 5 * a * 1.2 * 256) / (5 * a)) ** (1 / alpha)
    assert math.log2(caption_formula) == pytest.approx(9.34, abs=0.05)
    root = critical_batch_size(a, b, alpha)
    # We solve the defining equation; for alpha != 1 it lands elsewhere (documented in fits.py).
    assert math.log2(root) == pytest.approx(9.65, abs=0.01)


def test_duplicated_batch_sizes_keep_the_best_run_and_say_so():
    steps = 1300 + 2.8e6 / BATCH
    batch = np.concatenate([BATCH, BATCH[:4]])
    worse = np.concatenate([steps, steps[:4] * 1.5])
    with pytest.warns(CbsFitWarning, match="4 repeated batch size.*hyper-parameter variant"):
        fit = fit_steps_curve(batch, worse)
    assert fit.steps == pytest.approx(tuple(steps))
    assert fit.a == pytest.approx(1300, rel=1e-6)


def test_seeds_are_averaged_and_variants_minimised():
    steps = 1300 + 2.8e6 / BATCH
    # Two seeds at each size, 10% above and below the curve: their geometric mean is the curve.
    batch = np.concatenate([BATCH, BATCH])
    seeded = np.concatenate([steps * 1.1, steps / 1.1])
    fit = fit_steps_curve(batch, seeded, seeds=[0] * BATCH.size + [1] * BATCH.size)
    assert fit.steps == pytest.approx(tuple(steps))
    assert fit.seeds_per_point == (2,) * BATCH.size
    assert fit.noise_sigma == pytest.approx(math.log(1.1) * math.sqrt(18 / 16), rel=1e-6)
    # A second variant 1.5x slower at every size loses whatever its seeds do.
    batch4 = np.concatenate([batch, batch])
    steps4 = np.concatenate([seeded, seeded * 1.5])
    variants = ["lr1"] * batch.size + ["lr2"] * batch.size
    seeds = list(np.repeat([0, 1], BATCH.size)) * 2
    both = fit_steps_curve(batch4, steps4, seeds=seeds, variants=variants)
    assert both.steps == pytest.approx(tuple(steps)) and both.n_runs == 4 * BATCH.size
    with pytest.raises(CurveFitError, match="seed 0 appears twice at batch size 64"):
        fit_steps_curve(batch, seeded, seeds=[0] * batch.size)


def test_vectorised_fits_agree_with_the_scalar_fit():
    rng = np.random.default_rng(0)
    log_y = np.log(1300 + 2.8e6 / BATCH)[None, :] + rng.normal(0, 0.05, (20, BATCH.size))
    for alpha in (1.0, None):
        init = [math.log(1300), math.log(2.8e6)] + ([] if alpha else [0.0])
        many = fit_inverse_power_many(np.log(BATCH), log_y, np.ones(BATCH.size), alpha, init)
        for row, params in zip(log_y, many):
            a, b, al, _ = fit_inverse_power(BATCH, np.exp(row), alpha)
            assert math.exp(params[0]) == pytest.approx(a, rel=1e-4)
            assert math.exp(params[1]) == pytest.approx(b, rel=1e-4)
            if alpha is None:
                assert math.exp(params[2]) == pytest.approx(al, rel=1e-4)


@pytest.mark.parametrize("seeds", [1, 3])
def test_intervals_cover_at_their_nominal_rate(seeds):
    # Synthetic runs of known B* at the demo's batch sizes; 240 replicates give a binomial
    # standard error of 1.4 points at 95%, so 92-98% is a 2-sigma band around nominal.
    batch = np.repeat([2.0, 4, 8, 16, 32, 64], seeds)
    labels = np.tile(np.arange(seeds), 6)
    a, b = 94.6, 6250.0
    truth = critical_batch_size(a, b, 1.0, 8.0, 0.2)
    rng = np.random.default_rng(11 + seeds)
    hits = 0
    for r in range(240):
        steps = (a + b / batch) * np.exp(0.04 * rng.standard_normal(batch.size))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CbsFitWarning)
            fit = fit_steps_curve(batch, steps, seeds=labels, b_opt=8, bootstrap=200, seed=r)
        ci = fit.ci["critical_batch_size"]
        hits += ci.low <= truth <= ci.high
    assert 0.92 <= hits / 240 <= 0.98


def test_censored_runs_check_the_fit():
    steps = 1300 + 2.8e6 / BATCH
    # Y(32768) = 1385: a run that stopped at 1000 steps is consistent with the fit ...
    fit = fit_steps_curve(BATCH, steps, censored=[(32768, 1000)])
    assert fit.censored == ((32768.0, 1000.0),) and fit.warnings == ()
    with pytest.warns(
        CbsFitWarning, match="censored run at B=32768 stopped short.*after 2000 steps"
    ):
        fit_steps_curve(BATCH, steps, censored=[(32768, 2000)])


def test_bootstrap_intervals_cover_truth_and_are_seeded():
    rng = np.random.default_rng(3)
    a, b = 1300.0, 2.8e6
    batch = np.repeat(BATCH, 3)
    steps = (a + b / batch) * np.exp(rng.normal(0, 0.03, batch.size))
    seeds = np.tile([0, 1, 2], BATCH.size)
    fit = fit_steps_curve(batch, steps, seeds=seeds, bootstrap=60, seed=7)
    again = fit_steps_curve(batch, steps, seeds=seeds, bootstrap=60, seed=7)
    other = fit_steps_curve(batch, steps, seeds=seeds, bootstrap=60, seed=8)
    by_seeds = fit_steps_curve(batch, steps, seeds=seeds, bootstrap=60, interval="seeds")
    assert by_seeds.interval == "seeds" and "critical_batch_size" in by_seeds.ci
    assert set(fit.ci) == {"a", "b", "critical_batch_size"}
    ci = fit.ci["critical_batch_size"]
    assert ci.low < fit.critical_batch_size < ci.high  # coverage: test_intervals_cover_at_...
    assert ci == again.ci["critical_batch_size"]
    assert ci != other.ci["critical_batch_size"]


def test_to_json_round_trips():
    fit = fit_steps_curve(BATCH, 1300 + 2.8e6 / BATCH, bootstrap=20)
    data = json.loads(fit.to_json())
    for key in (
        "a",
        "b",
        "alpha",
        "b_opt",
        "overhead",
        "critical_batch_size",
        "log2_critical_batch_size",
        "residuals",
        "n_points",
    ):
        assert key in data
    assert data["critical_batch_size"] == pytest.approx(fit.critical_batch_size)
    assert data["ci"]["critical_batch_size"]["low"] <= data["critical_batch_size"]


@pytest.mark.parametrize(
    "batch, steps, kwargs, match",
    [
        ([256, 512], [1000, 600], {}, "at least 3 distinct batch sizes"),
        ([256, 512, 1024], [1000, 600, 400], {"alpha": "fit"}, "at least 4 distinct batch sizes"),
        ([256, 256, 256, 512], [1000, 900, 800, 600], {}, "at least 3 distinct"),
        ([256, 512, 0], [1000, 600, 400], {}, "batch_sizes must be finite and > 0"),
        ([256, 512, 1024], [1000, -600, 400], {}, "steps must be finite and > 0"),
        ([256, 512, 1024], [1000, 600], {}, "same length"),
        (
            [256, 512, 1024],
            [1000, 600, 400],
            {"alpha": "two"},
            "alpha must be a positive number or 'fit'",
        ),
        ([256, 512, 1024], [1000, 600, 400], {"overhead": 0}, "overhead"),
        ([256, 512, 1024], [1000, 600, 400], {"b_opt": -1}, "b_opt"),
    ],
)
def test_bad_input_gets_one_clear_error(batch, steps, kwargs, match):
    with pytest.raises(CurveFitError, match=match):
        fit_steps_curve(batch, steps, **kwargs)


def test_non_monotone_curve_warns_or_raises():
    steps = list(1300 + 2.8e6 / BATCH)
    steps[6] = steps[3] * 1.5  # B = 4096 needs more steps than B = 512
    with pytest.warns(CbsFitWarning, match=r"rise with batch size.*B=4096"):
        fit = fit_steps_curve(BATCH, steps)
    assert any("B=4096" in w for w in fit.warnings)
    assert math.isfinite(fit.critical_batch_size)
    with pytest.raises(NonMonotoneCurveError, match="B=4096"):
        fit_steps_curve(BATCH, steps, on_non_monotone="raise")


def test_small_noise_is_not_called_non_monotone():
    steps = 1300 + 2.8e6 / BATCH
    steps[-1] = steps[-2] * 1.05  # within the 10% tolerance
    with warnings.catch_warnings():
        warnings.simplefilter("error", CbsFitWarning)
        fit = fit_steps_curve(BATCH[: len(steps)], steps)
    assert fit.warnings == ()


def test_extrapolated_bstar_is_flagged():
    batch = BATCH[:4]  # 64 .. 512, all inside linear scaling
    with pytest.warns(CbsFitWarning, match="extrapolation"):
        fit = fit_steps_curve(batch, 300 + 2e7 / batch)
    assert fit.critical_batch_size > batch.max()


def test_no_fake_zero_width_interval_from_minimal_data():
    # Three points and two parameters leave one degree of freedom: a wide interval, not none.
    fit = fit_steps_curve([32, 64, 128], [128, 116, 105], b_opt=32, bootstrap=200)
    ci = fit.ci["critical_batch_size"]
    assert fit.noise_dof == 1 and ci.low < fit.critical_batch_size < ci.high
    assert ci.high > 1.1 * ci.low
    with pytest.warns(CbsFitWarning, match="interval='seeds' needs batch sizes with more than one"):
        fit = fit_steps_curve([32, 64, 128], [128, 116, 105], bootstrap=50, interval="seeds")
    assert fit.ci == {}
