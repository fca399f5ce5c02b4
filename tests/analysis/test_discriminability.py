"""Family-wise discriminability tests (METHOD.md 5B): exact statistics, valid and powerful family-wise rules."""
from __future__ import annotations

import math

import numpy as np
import pytest

from latentbids.analysis import bounds
from latentbids.analysis import discriminability as dsc
from latentbids.errors import UsageError


def _brute(x, y, balanced):
    best = 0.0
    for t in np.concatenate(([-np.inf], np.unique(x))):
        for pred in (x > t, x <= t):
            score = 0.5 * (pred[y == 1].mean() + (~pred[y == 0]).mean()) if balanced else np.mean(pred == (y == 1))
            best = max(best, score)
    return best


def test_threshold_scores_equal_brute_force_with_ties():
    rng = np.random.default_rng(0)
    for trial in range(150):
        n = int(rng.integers(4, 25))
        X = rng.integers(0, 4, size=(n, 3)).astype(float)  # many ties
        y = rng.integers(0, 2, n)
        if y.min() == y.max():
            continue
        for name, bal in (("balanced", True), ("majority", False)):
            got = dsc.threshold_scores(X, y, name)
            exp = [_brute(X[:, c], y, bal) for c in range(3)]
            np.testing.assert_allclose(got, exp, err_msg=f"trial {trial} {name}")


def test_balanced_score_is_half_plus_half_the_ks_statistic():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=90), np.r_[np.zeros(60, int), np.ones(30, int)]
    ks = ks_2samp(x[y == 1], x[y == 0]).statistic
    assert dsc.threshold_scores(x, y)[0] == pytest.approx(0.5 + ks / 2)


@pytest.mark.parametrize("n1", [50, 30])
@pytest.mark.parametrize("method", ["permutation", "bonferroni"])
def test_family_wise_rate_on_noise(method, n1):
    """Over 60 null datasets of a 40-feature family, some feature passes in at most ~eta of them."""
    rng = np.random.default_rng(7 if n1 == 50 else 8)
    hits = 0
    y = np.r_[np.zeros(100 - n1, int), np.ones(n1, int)]
    for rep in range(60):
        X = rng.normal(size=(100, 40))
        X[:, 20:] = X[:, :20] + 0.5 * rng.normal(size=(100, 20))  # correlated features, as regions are
        t = dsc.family_test(X, y, method=method, n_permutations=200, random_state=rep)
        hits += t.passes.any()
    assert hits / 60 <= 0.12


def test_permutation_finds_a_planted_feature_and_is_consistent():
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1], 50)
    X = rng.normal(size=(100, 30))
    X[:, 4] += 2.2 * y
    t = dsc.family_test(X, y, n_permutations=500, random_state=0)
    assert t.passes[4] and t.passes.sum() <= 2
    # passes <=> p_fwer <= eta <=> statistic above the critical value; score_star above chance
    assert (t.passes == (t.p_fwer <= 0.05)).all()
    assert (t.passes == (t.statistic > t.critical)).all()
    assert (t.passes == (t.score_star > t.chance)).all()
    assert (t.p_fwer >= t.p_uncorrected - 1e-12).all()
    assert t.p_fwer.min() == pytest.approx(1 / 501)
    again = dsc.family_test(X, y, n_permutations=500, random_state=0)
    np.testing.assert_array_equal(t.p_fwer, again.p_fwer)
    # the Bonferroni rule is stricter and its margin the per-class DKW bound at eta / 30
    b = dsc.family_test(X, y, method="bonferroni")
    assert b.passes[4] and math.isnan(b.p_fwer[0])
    assert b.critical == pytest.approx(0.5 + dsc.balanced_margin(50, 50, 0.05 / 30))
    # the uncorrected rule is METHOD's first one: accuracy - Delta_G(n, 1, eta) vs the majority share
    acc = dsc.threshold_scores(X, y, "majority")
    np.testing.assert_allclose(t.score_star_uncorrected, acc - bounds.delta_g(100, 1, 0.05))


def test_degenerate_and_usage():
    y = np.repeat([0, 1], [1, 9])
    t = dsc.family_test(np.random.default_rng(0).normal(size=(10, 3)), y)
    assert not t.passes.any() and "at least 2 subjects per class" in t.reason
    few = dsc.family_test(np.random.default_rng(0).normal(size=(20, 3)), np.repeat([0, 1], 10), n_permutations=10)
    assert not few.passes.any() and "cannot give p" in few.reason
    with pytest.raises(UsageError):
        dsc.family_test(np.ones((10, 2)), np.arange(10) % 3)
    with pytest.raises(UsageError):
        dsc.family_test(np.ones((10, 2)), np.arange(10) % 2, method="holm")
    with pytest.raises(UsageError):
        dsc.threshold_scores(np.ones((10, 2)), np.arange(10) % 2, "auc")
