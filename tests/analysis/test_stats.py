"""Ground-truth tests of latentbids.analysis.stats (references: scipy, scikit-learn, hand computations)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from latentbids.analysis import effect_sizes, stats
from latentbids.errors import UsageError


def test_standardize_zscores_and_constant_columns():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(5, 3, 50), np.full(50, 2.5), rng.normal(-1, 0.1, 50)])
    Z = stats.standardize(X)
    np.testing.assert_allclose(Z[:, [0, 2]].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z[:, [0, 2]].std(axis=0, ddof=1), 1, atol=1e-12)
    assert np.all(Z[:, 1] == 0)  # constant -> 0, not NaN
    np.testing.assert_allclose(stats.standardize(X[:, 0]), sps.zscore(X[:, 0], ddof=1))
    assert stats.standardize(X[:, 0]).ndim == 1


def test_residualize_removes_planted_confound():
    rng = np.random.default_rng(1)
    n = 200
    age = rng.normal(70, 8, n)
    sex = rng.integers(0, 2, n).astype(float)
    signal = rng.normal(0, 1, n)
    x = 0.3 * age - 2.0 * sex + signal  # confound dominates the raw variable
    assert abs(np.corrcoef(x, age)[0, 1]) > 0.8
    C = np.column_stack([age, sex])
    res = stats.residualize(x, C)
    assert res.shape == (n,)
    assert abs(np.corrcoef(res, age)[0, 1]) < 1e-10
    assert abs(np.corrcoef(res, sex)[0, 1]) < 1e-10
    assert abs(res.mean()) < 1e-10  # the intercept is fitted
    assert np.corrcoef(res, signal)[0, 1] > 0.99  # what is left is the signal
    # 2-D input: each column residualised on its own
    X2 = np.column_stack([x, 2 * x + 1])
    np.testing.assert_allclose(stats.residualize(X2, C)[:, 1], 2 * res, atol=1e-9)


def test_residualize_refuses_nan_confounds_and_bad_shapes():
    C = np.array([[1.0], [np.nan], [3.0], [4.0]])
    with pytest.raises(UsageError, match="NaN"):
        stats.residualize(np.arange(4.0), C)
    with pytest.raises(UsageError, match="rows"):
        stats.residualize(np.arange(5.0), np.arange(4.0))


def test_pearson_matches_scipy():
    rng = np.random.default_rng(2)
    n = 37
    A = rng.normal(size=(n, 4))
    B = np.column_stack([A[:, 0] * 0.5 + rng.normal(size=n), rng.normal(size=n), -A[:, 3] + 0.1 * rng.normal(size=n)])
    r, p = stats.correlate(A, B)
    assert r.shape == p.shape == (4, 3)
    for j, k in [(0, 0), (1, 1), (3, 2), (2, 0)]:
        ref = sps.pearsonr(A[:, j], B[:, k])
        assert r[j, k] == pytest.approx(ref.statistic, abs=1e-12)
        assert p[j, k] == pytest.approx(ref.pvalue, rel=1e-8, abs=1e-300)
    assert p[0, 0] < 0.05 and p[3, 2] < 1e-10


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(3)
    n = 41
    A = np.round(rng.normal(size=(n, 3)), 1)  # ties
    B = np.column_stack([np.exp(A[:, 0]) + 0.3 * rng.normal(size=n), np.round(rng.normal(size=n), 1)])
    r, p = stats.correlate(A, B, method="spearman")
    for j in range(3):
        for k in range(2):
            ref = sps.spearmanr(A[:, j], B[:, k])
            assert r[j, k] == pytest.approx(ref.statistic, abs=1e-12)
            assert p[j, k] == pytest.approx(ref.pvalue, rel=1e-8)
    # a monotone but non-linear relation: Spearman 1 where Pearson is below 1
    x = np.linspace(0, 3, 30)
    rs, ps = stats.correlate(x, np.exp(3 * x), "spearman")
    rp, _ = stats.correlate(x, np.exp(3 * x), "pearson")
    assert rs[0, 0] == pytest.approx(1.0) and ps[0, 0] == 0.0 and rp[0, 0] < 0.9


def test_correlate_nan_for_constant_or_tiny_inputs():
    rng = np.random.default_rng(4)
    A = np.column_stack([rng.normal(size=20), np.ones(20)])
    r, p = stats.correlate(A, rng.normal(size=(20, 2)))
    assert np.all(np.isnan(r[1])) and np.all(np.isnan(p[1])) and np.all(np.isfinite(r[0]))
    r2, p2 = stats.correlate(np.arange(2.0), np.arange(2.0))
    assert np.isnan(r2).all() and np.isnan(p2).all()
    with pytest.raises(UsageError):
        stats.correlate(A, A, method="kendall")
    with pytest.raises(UsageError):
        stats.correlate(A, A[:10])


def test_bh_and_bonferroni_hand_computed():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    # sorted 0.005, 0.01, 0.03, 0.04, 0.5 -> p*5/i = 0.025, 0.025, 0.05, 0.05, 0.5 (already monotone)
    np.testing.assert_allclose(stats.adjust_pvalues(p, "fdr_bh"), [0.025, 0.05, 0.05, 0.025, 0.5])
    np.testing.assert_allclose(stats.adjust_pvalues(p, "bonferroni"), [0.05, 0.2, 0.15, 0.025, 1.0])
    # step-up monotonicity: 0.02*3/2 = 0.03 > 0.03*3/3 = 0.03 -> min over later ranks
    np.testing.assert_allclose(stats.adjust_pvalues([0.02, 0.021, 0.03], "fdr_bh"), [0.03, 0.03, 0.03])
    # NaN stays NaN and does not count in m
    out = stats.adjust_pvalues([0.01, np.nan, 0.02], "bonferroni")
    np.testing.assert_allclose(out, [0.02, np.nan, 0.04])
    with pytest.raises(UsageError):
        stats.adjust_pvalues(p, "holm")


def test_bh_matches_scipy_false_discovery_control():
    fdc = getattr(sps, "false_discovery_control", None)
    if fdc is None:
        pytest.skip("scipy < 1.11 has no false_discovery_control")
    rng = np.random.default_rng(5)
    p = np.concatenate([rng.uniform(size=90), rng.uniform(0, 1e-3, size=30)]).reshape(12, 10)
    adj = stats.adjust_pvalues(p, "fdr_bh")
    assert adj.shape == p.shape
    np.testing.assert_allclose(adj.ravel(), fdc(p.ravel(), method="bh"), rtol=1e-12)


def _brute_force_maxstat(A, B, n_perm, seed):
    rng = np.random.default_rng(seed)
    J = A.shape[1]
    obs = np.abs(np.corrcoef(A.T, B.T)[:J, J:])
    maxima = []
    for _ in range(n_perm):
        idx = rng.permutation(A.shape[0])
        maxima.append(np.abs(np.corrcoef(A.T, B[idx].T)[:J, J:]).max())
    maxima = np.array(maxima)
    return np.array([[(np.sum(maxima >= o - 1e-12) + 1) / (n_perm + 1) for o in row] for row in obs])


def test_max_stat_permutation_matches_brute_force_and_finds_planted_pair():
    rng = np.random.default_rng(6)
    n = 40
    A = rng.normal(size=(n, 6))
    B = rng.normal(size=(n, 5))
    B[:, 2] = A[:, 4] + 0.3 * rng.normal(size=n)  # planted pair (4, 2)
    p = stats.max_stat_permutation(A, B, n_permutations=199, random_state=11, batch_size=16)
    np.testing.assert_allclose(p, _brute_force_maxstat(A, B, 199, 11))
    assert p[4, 2] == pytest.approx(1 / 200)
    mask = np.ones_like(p, dtype=bool)
    mask[4, 2] = False
    assert np.all(p[mask] > 0.05)  # the FWER null refuses the unplanted pairs
    again = stats.max_stat_permutation(A, B, n_permutations=199, random_state=11)
    np.testing.assert_array_equal(p, again)  # deterministic, independent of batching
    assert np.all((p >= 1 / 200) & (p <= 1))


def test_max_stat_permutation_controls_fwer_on_null_data():
    rng = np.random.default_rng(7)
    rejections = 0
    n_sets = 40
    for s in range(n_sets):
        A, B = rng.normal(size=(25, 5)), rng.normal(size=(25, 4))
        rejections += bool(np.any(stats.max_stat_permutation(A, B, 99, random_state=s) < 0.05))
    # expected 5 % of 40 = 2 families with any rejection; binomial 99th percentile is 6
    assert rejections <= 6


def test_cohens_d_and_auc():
    rng = np.random.default_rng(8)
    y = np.repeat([0, 1], [30, 25])
    x = rng.normal(size=55) + 1.2 * y
    g1, g0 = x[y == 1], x[y == 0]
    pooled = np.sqrt((24 * g1.var(ddof=1) + 29 * g0.var(ddof=1)) / 53)
    assert effect_sizes.cohens_d(x, y) == pytest.approx((g1.mean() - g0.mean()) / pooled)
    assert effect_sizes.cohens_d(-x, y) == pytest.approx(-effect_sizes.cohens_d(x, y))
    assert effect_sizes.auc(x, y) == pytest.approx(roc_auc_score(y, x))
    assert effect_sizes.auc(-x, y) == pytest.approx(1 - effect_sizes.auc(x, y))
    X = np.column_stack([x, np.round(x), -x, rng.normal(size=55)])  # ties in column 1
    np.testing.assert_allclose(effect_sizes.auc_columns(X, y), [roc_auc_score(y, X[:, c]) for c in range(4)])
    d = effect_sizes.cohens_d(x, y)
    np.testing.assert_allclose(effect_sizes.cohens_d_columns(X, y)[[0, 2]], [d, -d])
    # not computable -> NaN, not an exception
    assert np.isnan(effect_sizes.cohens_d(x[:31], y[:31]))  # one subject in class 1
    assert np.isnan(effect_sizes.auc(x[:30], y[:30]))  # one class
    assert np.isnan(effect_sizes.cohens_d(np.ones(55), y))
    with pytest.raises(UsageError):
        effect_sizes.auc(x, y + 1)
