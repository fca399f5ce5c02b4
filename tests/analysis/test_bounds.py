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
