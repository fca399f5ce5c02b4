"""Atlas-free voxel association (issue 21): exact statistics, family-wise error rate on null data, power.

The draws run with one BLAS thread: the products are tiny, and a second thread only waits on a machine
whose cores the parallel test workers already share.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import pearsonr
from threadpoolctl import threadpool_limits

from latentbids.analysis import voxel_association as va
from latentbids.analysis.discriminability import permutation_indices
from latentbids.errors import UsageError


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(1):
        yield


def _planted(rng, n, n_voxels=500, n_units=3, n_planted=20, r=0.7):
    """Independent units and voxels; voxel v < n_planted has correlation ``r`` with unit v % n_units."""
    Z = rng.normal(size=(n, n_units))
    X = rng.normal(size=(n, n_voxels))
    units = np.arange(n_planted) % n_units
    X[:, :n_planted] = r * Z[:, units] + math.sqrt(1 - r * r) * X[:, :n_planted]
    return Z, X, units


def test_statistic_null_and_p_are_the_definitions():
    rng = np.random.default_rng(0)
    Z, X, units = _planted(rng, 25, n_voxels=40, n_units=3, n_planted=5, r=0.8)
    res = va.voxel_association(Z, X, n_permutations=49, random_state=3)
    r = np.array([[pearsonr(Z[:, k], X[:, v])[0] for v in range(40)] for k in range(3)])
    np.testing.assert_allclose(res.statistic, np.abs(r).max(axis=0), atol=1e-12)
    np.testing.assert_array_equal(res.best_unit, np.abs(r).argmax(axis=0))
    np.testing.assert_allclose(res.r_best, r[res.best_unit, np.arange(40)], atol=1e-12)
    perms = permutation_indices(25, 49, 3)  # the same draws as discriminability's tests
    brute = [max(abs(pearsonr(Z[p, k], X[:, v])[0]) for k in range(3) for v in range(40)) for p in perms[:6]]
    np.testing.assert_allclose(res.null_max[:6], brute, atol=1e-12)
    count = (res.null_max[None, :] >= res.statistic[:, None] - 1e-10).sum(axis=1)
    np.testing.assert_allclose(res.p_fwer, (count + 1) / 50)  # the +1 rule
    assert res.threshold == np.sort(res.null_max)[::-1][1]  # r = floor(0.05 * 50) = 2nd largest maximum
    np.testing.assert_array_equal(res.supported, res.statistic > res.threshold)
    assert res.supported[:5].any() and res.n_permutations == 49 and res.reason == "" and not res.stratified


def test_blocks_of_voxels_and_permutations_give_the_same_result(monkeypatch):
    rng = np.random.default_rng(1)
    Z, X, _ = _planted(rng, 30, n_voxels=300)
    whole = va.voxel_association(Z, X, n_permutations=99)
    monkeypatch.setattr(va, "_BLOCK_ELEMENTS", 700)  # 3 units x 233 voxels x 1 permutation per product
    monkeypatch.setattr(va, "_VOXEL_BLOCK_ELEMENTS", 30 * 70)  # 70 voxels per block
    blocked = va.voxel_association(Z, X, n_permutations=99)
    np.testing.assert_allclose(blocked.null_max, whole.null_max, atol=1e-12)
    np.testing.assert_allclose(blocked.statistic, whole.statistic, atol=1e-12)
    np.testing.assert_array_equal(blocked.supported, whole.supported)


def test_family_wise_error_rate_on_null_data():
    """200 null draws (n = 30, 500 voxels, 3 units, 99 permutations, eta = 0.05): the exact permutation
    test rejects in 5 % of draws on average (10 of 200); Binomial(200, 0.05) exceeds 21 with probability
    < 0.001, so more than 21 draws with any supported voxel (10.5 %) means the control is broken."""
    rng = np.random.default_rng(2)
    any_supported = 0
    for draw in range(200):
        Z, X = rng.normal(size=(30, 3)), rng.normal(size=(30, 500))
        res = va.voxel_association(Z, X, n_permutations=99, random_state=draw, eta=0.05)
        any_supported += bool(res.supported.any())
        assert res.threshold > 0.5  # the max |r| of 1500 null correlations at n = 30
    assert any_supported <= 21, f"{any_supported} of 200 null draws had a supported voxel"


def test_power_on_a_planted_association_and_no_excess_outside_it():
    """40 draws (n = 60, 500 voxels, 3 units, 99 permutations): 20 voxels each correlate r = 0.7 with one
    unit.  Most planted voxels are found in most draws, with the right unit; the draws with any supported
    voxel among the 480 others stay within Binomial(40, 0.05)'s 99.9 % bound (7)."""
    rng = np.random.default_rng(4)
    found, outside = [], 0
    for draw in range(40):
        Z, X, units = _planted(rng, 60)
        res = va.voxel_association(Z, X, n_permutations=99, random_state=draw)
        found.append(res.supported[:20].mean())
        outside += bool(res.supported[20:].any())
        hit = res.supported[:20]
        np.testing.assert_array_equal(res.best_unit[:20][hit], units[hit])
    found = np.array(found)
    assert found.mean() >= 0.9, found
    assert (found >= 0.75).mean() >= 0.9, found
    assert outside <= 7, f"{outside} of 40 draws supported a voxel outside the planted ones"


def test_class_strata_keep_a_class_driven_tie_in_the_null():
    """Unit and voxels 0-9 both follow the class (r ~ 0.7 across the cohort, 0 within each class); voxel 10
    tracks the unit within the classes.  The plain test supports both; given the class (partial r,
    permutations within the classes) only voxel 10 is supported."""
    rng = np.random.default_rng(5)
    y = np.repeat([0, 1], 40)
    unit = y + 0.3 * rng.normal(size=80)
    X = rng.normal(size=(80, 200))
    X[:, :10] = y[:, None] + 0.3 * rng.normal(size=(80, 10))
    X[:, 10] = (unit - y) + 0.1 * rng.normal(size=80)
    plain = va.voxel_association(unit, X, n_permutations=199)
    strata = va.voxel_association(unit, X, y, n_permutations=199)
    assert plain.supported[:11].all() and not plain.supported[11:].any()
    assert strata.stratified and strata.supported[10] and not strata.supported[:10].any()
    assert not strata.supported[11:].any()


def test_edge_cases_give_a_reason_not_an_exception():
    rng = np.random.default_rng(6)
    few = va.voxel_association(rng.normal(size=(3, 2)), rng.normal(size=(3, 50)), n_permutations=99)
    assert "at least 4 subjects" in few.reason and few.n_permutations == 0
    assert few.statistic.shape == (50,) and np.isnan(few.statistic).all() and not few.supported.any()
    assert (few.best_unit == -1).all()
    none = va.voxel_association(np.empty((20, 0)), rng.normal(size=(20, 50)), n_permutations=99)
    assert none.reason == "no latent unit to test" and not none.supported.any() and none.n_units == 0
    Z, X, _ = _planted(rng, 60, n_voxels=50, r=0.95)
    X[:, 30] = 1.7  # a constant voxel (outside the brain, or a saturated one)
    res = va.voxel_association(Z, X, n_permutations=99)
    assert res.statistic[30] == 0.0 and res.p_fwer[30] == 1.0 and res.best_unit[30] == -1
    assert res.r_best[30] == 0.0 and not res.supported[30] and res.supported[:20].all()
    short = va.voxel_association(Z, X, n_permutations=10)
    assert short.threshold == math.inf and not short.supported.any() and "at least 19" in short.reason


def test_bad_inputs_are_usage_errors():
    rng = np.random.default_rng(7)
    Z, X = rng.normal(size=(20, 2)), rng.normal(size=(20, 30))
    with pytest.raises(UsageError, match="one row per subject"):
        va.voxel_association(Z, X[:19], n_permutations=9)
    X[3, 4] = np.nan
    with pytest.raises(UsageError, match="NaN"):
        va.voxel_association(Z, X, n_permutations=9)
    with pytest.raises(UsageError, match="eta"):
        va.voxel_association(Z, X, n_permutations=9, eta=1.5)
    with pytest.raises(UsageError, match="one label per subject"):
        va.voxel_association(Z, np.nan_to_num(X), np.zeros(5), n_permutations=9)


def test_regional_summary_shows_what_a_region_averages_away():
    rng = np.random.default_rng(8)
    Z, X, _ = _planted(rng, 60, n_voxels=100, n_planted=5, r=0.9)
    res = va.voxel_association(Z, X, n_permutations=99)
    labels = np.r_[np.full(10, 1), np.full(40, 2), np.full(50, 0)]  # region 1 holds the 5 planted voxels
    table = va.regional_summary(res, labels, [1, 2, 3])
    assert table.index.tolist() == [1, 2, 3] and table.loc[3, "n_voxels"] == 0
    assert table.loc[1, "n_voxels"] == 10 and table.loc[1, "n_supported"] == res.supported[:10].sum() >= 4
    assert table.loc[1, "fraction_supported"] == pytest.approx(table.loc[1, "n_supported"] / 10)
    assert table.loc[1, "max_statistic"] == pytest.approx(res.statistic[:10].max())
    assert table.loc[1, "min_p_fwer"] == pytest.approx(res.p_fwer[:10].min())
    assert np.isnan(table.loc[3, "fraction_supported"]) and np.isnan(table.loc[3, "max_statistic"])
    with pytest.raises(UsageError, match="one label per voxel"):
        va.regional_summary(res, labels[:50], [1])
