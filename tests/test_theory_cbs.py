"""CBS against data size on the exact linear-regression risk, checked against Corollary 6."""

import numpy as np
import pytest

from bsjax.theory.cbs_scaling import (
    best_risk_at_batch,
    cbs_scaling,
    critical_batch_size,
    predicted_cbs_exponent,
)
from bsjax.theory.errors import TheoryInputError
from bsjax.theory.linreg import LinRegProblem

SIZES = [256, 1024, 4096]


def test_predicted_exponent_in_each_regime():
    assert predicted_cbs_exponent(2.0, 3.0) == pytest.approx(1 - 2 / 3)  # a < b < 2a+1
    assert predicted_cbs_exponent(2.0, 6.0) == pytest.approx(1 - 2 / 5)  # b > 2a+1
    assert predicted_cbs_exponent(2.0, 1.5) == 0.0  # b <= a
    assert predicted_cbs_exponent(2.0, 2.0) == 0.0


@pytest.mark.parametrize("a, b", [(2.0, 3.0), (3.0, 4.0), (2.0, 6.0)])
def test_measured_exponent_matches_corollary_6(a, b):
    res = cbs_scaling(a, b, data_sizes=SIZES)
    assert abs(res.measured_exponent - predicted_cbs_exponent(a, b)) < 0.05, res.to_json()
    bstar = [p.critical_batch_size for p in res.points]
    assert np.all(np.diff(bstar) > 0)
    # B* sits well inside the range of batch sizes that were searched
    assert all(1 < p.critical_batch_size < p.data_size / 2 for p in res.points)


def test_bias_dominated_regime_gives_batch_one():
    res = cbs_scaling(3.0, 2.0, data_sizes=SIZES, dim=512)
    assert res.predicted_exponent == 0.0
    for p in res.points:
        # B = 1 is optimal up to a constant close to 1 (the lr cap B / tr(H) binds at B = 1)
        assert p.optimal_batch <= 2
        assert p.batches[0].batch == 1 and p.batches[0].risk <= 1.05 * p.optimal_risk
    assert res.measured_exponent < 0.05  # B* does not grow with the data
    assert res.to_json()["predicted_critical_batch_size"] == 1


def test_best_risk_depends_mostly_on_lr_over_batch_below_cbs():
    # Theorem 5: below the CBS the best risk is flat in B and the best lr grows ~ B
    problem = LinRegProblem(a=2.0, b=3.0, dim=256)
    r1, r4 = best_risk_at_batch(problem, 4096, 1), best_risk_at_batch(problem, 4096, 4)
    assert r4.risk == pytest.approx(r1.risk, rel=0.02)
    assert r4.lr / r1.lr == pytest.approx(4.0, rel=0.1)
    point = critical_batch_size(problem, 4096)
    big = [r for r in point.batches if r.batch > 2 * point.critical_batch_size]
    assert big and all(r.risk > 2.0 * point.optimal_risk for r in big)


def test_bad_parameters():
    with pytest.raises(TheoryInputError, match="^a must be > 1"):
        cbs_scaling(1.0, 3.0)
    with pytest.raises(TheoryInputError, match="data_sizes must hold at least two"):
        cbs_scaling(2.0, 3.0, data_sizes=[1024])
    with pytest.raises(TheoryInputError, match="noise must be >= 0"):
        cbs_scaling(2.0, 3.0, noise=-1.0, data_sizes=[256, 1024])
    with pytest.raises(TheoryInputError, match="risk_factor must be > 1"):
        critical_batch_size(LinRegProblem(2.0, 3.0, dim=64), 256, risk_factor=0.5)
    with pytest.raises(TheoryInputError, match="D=8 must be >= batch size B=16"):
        best_risk_at_batch(LinRegProblem(2.0, 3.0, dim=64), 8, 16)
