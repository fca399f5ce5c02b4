"""The bounds against METHOD.md's reference vectors and their defining properties."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import comb

from latentbids.analysis import bounds
from latentbids.errors import UsageError

# METHOD.md section 6, eta = 0.05: (n, d) -> (Delta_VC, Delta_G)
REFERENCE = {(400, 1): (0.214, 0.068), (400, 10): (0.395, 0.236), (400, 64): (0.762, 0.468),
             (100, 1): (0.395, 0.136), (800, 1): (0.157, 0.048)}


@pytest.mark.parametrize("n,d", sorted(REFERENCE))
def test_reference_vectors(n, d):
    vc, g = REFERENCE[(n, d)]
    assert round(bounds.delta_vc(n, d, 0.05), 3) == vc
    assert round(bounds.delta_g(n, d, 0.05), 3) == g


def test_vc_growth_function_is_capped_by_two_to_the_n():
    """ln Pi(n) = min(h (ln(2n/h) + 1), n ln 2), and exactly n ln 2 when n < h = d + 1 (every labelling is
    realised).  The first version's abs() of a negative log gave Delta_VC(23, 128) = 0.125, small enough to
    let noise "separate"; the capped bound cannot pass anything there."""
    assert bounds.log_growth_vc(23, 128) == pytest.approx(23 * math.log(2))
    assert bounds.delta_vc(23, 128) == pytest.approx(math.sqrt((23 * math.log(2) - math.log(0.05 / 4)) / 23))
    assert bounds.delta_vc(23, 128) > 0.9
    for n, d in [(10, 50), (23, 128), (60, 200), (129, 128), (400, 1), (400, 64)]:
        h = d + 1
        expected = n * math.log(2) if n < h else min(h * (math.log(2 * n / h) + 1), n * math.log(2))
        assert bounds.log_growth_vc(n, d) == pytest.approx(expected)
        assert bounds.delta_vc(n, d) >= math.sqrt(-math.log(0.05 / 4) / n)  # never below the no-growth floor
    # more features never make the bound smaller, whatever n (the abs() version fell to 0.1 at d = 128)
    for n in (10, 23, 60, 400):
        by_d = [bounds.delta_vc(n, d) for d in (1, 4, 16, 64, 128, 512)]
        assert np.all(np.diff(by_d) >= -1e-12), (n, by_d)


def test_pure_noise_does_not_separate_with_more_units_than_subjects_under_vc():
    """METHOD.md section 6: pure noise at n = 23, K = 128 "separated" in 20 of 20 cohorts with bound="VC"."""
    from latentbids.analysis.agnostic import latent_vector_test

    hits = 0
    for r in range(20):
        rng = np.random.default_rng([23, 128, r])
        Z, y = rng.normal(size=(23, 128)), np.arange(23) % 2
        res = latent_vector_test(Z, y, eta=0.05, bound="VC", n_permutations=0, random_state=r)
        assert res["accuracy"] == 1.0  # 128 units shatter 23 subjects: resubstitution accuracy means nothing
        hits += res["supported"]
    assert hits == 0


def test_g_is_hoeffding_for_one_feature_and_matches_method_example():
    for n in (10, 40, 333, 5000):
        assert bounds.delta_g(n, 1, 0.05) == pytest.approx(math.sqrt(math.log(2 / 0.05) / (2 * n)))
    assert round(bounds.delta_g(40, 1, 0.05), 3) == 0.215  # METHOD section 5's LRCP example


def test_growth_functions_equal_exact_binomial_sums():
    for n, d in [(12, 1), (12, 3), (30, 5), (50, 7)]:
        c_g = 2 * sum(comb(n - 1, k - 1, exact=True) for k in range(1, d + 1))
        c_gz = 2 * sum(comb(n, z, exact=True) * comb(n - 1 - z, k - 1, exact=True)
                       for z in range(d) for k in range(1, d - z + 1))
        assert bounds.log_growth_g(n, d) == pytest.approx(math.log(c_g), rel=1e-12)
        assert bounds.log_growth_gz(n, d) == pytest.approx(math.log(c_gz), rel=1e-12)


def test_bounds_grow_with_features_and_shrink_with_samples():
    for name in bounds.BOUNDS:
        by_d = [bounds.delta(400, d, 0.05, name) for d in (1, 2, 8, 32, 128)]
        by_n = [bounds.delta(n, 4, 0.05, name) for n in (50, 100, 400, 1600)]
        assert np.all(np.diff(by_d) > 0) and np.all(np.diff(by_n) < 0)
    assert bounds.delta_gz(400, 10) >= bounds.delta_g(400, 10)
    # large n stays finite (log-space sums)
    assert 0 < bounds.delta_g(100_000, 128) < 0.1


def test_full_latent_vector_cannot_pass_at_typical_cohort_sizes():
    # METHOD: with d = K = 32..128 the bound is 0.37-0.56 at n ~ 400
    assert 0.3 < bounds.delta_g(400, 32) < bounds.delta_g(400, 128) < 0.6
    assert bounds.worst_case_accuracy(0.85, 400, d=32) < 0.5 < bounds.worst_case_accuracy(0.85, 400, d=1)


def test_pac_bayes_grid_and_monotonicity():
    assert len(bounds.PAC_BAYES_LAMBDAS) == 941
    base = bounds.delta_pac_bayes(0.2, np.ones(3), 100)
    assert base > 0
    assert bounds.delta_pac_bayes(0.2, np.ones(3) * 5, 100) > base  # larger weights: looser
    assert bounds.delta_pac_bayes(0.2, np.ones(3), 1000) < base  # more samples: tighter
    # the minimum over the grid is at most the value at any grid point
    lam = 2.0
    a = 1 / (1 - 1 / (2 * lam))
    at_two = (a - 1) * 0.2 + a * (lam / 100) * ((1 - 0.95) / 2 * 3 + math.log(941 / 0.05))
    assert base <= at_two + 1e-12


@pytest.mark.parametrize("args", [(1, 1, 0.05), (100, 0, 0.05), (100, 1, 0.0), (100, 1, 1.5)])
def test_invalid_arguments_are_usage_errors(args):
    with pytest.raises(UsageError):
        bounds.delta_g(*args)


def test_unknown_bound_name():
    with pytest.raises(UsageError, match="unknown bound"):
        bounds.delta(100, 1, 0.05, "XYZ")
