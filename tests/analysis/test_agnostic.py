"""Ground-truth tests of the statistical agnostic tests (SAM, SAR, RUB, latent vector).

Every detector is checked both ways: a planted effect must be found and pure noise must be refused.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

from latentbids.analysis import agnostic as ag
from latentbids.analysis import bounds
from latentbids.errors import UsageError


def _brute_force_accuracy(x, y01):
    """Every threshold between distinct values (and beyond both ends), both directions."""
    u = np.unique(x)
    thresholds = np.concatenate(([u[0] - 1.0], (u[:-1] + u[1:]) / 2, [u[-1] + 1.0]))
    best = 0.0
    for t in thresholds:
        pred = (x > t).astype(int)
        acc = np.mean(pred == y01)
        best = max(best, acc, 1.0 - acc)
    return best


def _balanced(n):
    return np.repeat([0, 1], [n // 2, n - n // 2])


# ------------------------------------------------------------------------ single feature accuracy
def test_single_feature_accuracy_equals_brute_force_with_ties():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(4, 40))
        x = rng.integers(0, int(rng.integers(2, 8)), n).astype(float)  # many ties
        y = rng.integers(0, 2, n)
        if len(np.unique(y)) < 2 or np.ptp(x) == 0:
            continue
        assert ag.single_feature_accuracy(x, y) == pytest.approx(_brute_force_accuracy(x, y), abs=1e-12), trial
    # continuous values too
    x, y = rng.normal(size=57), rng.integers(0, 2, 57)
    assert ag.single_feature_accuracy(x, y) == pytest.approx(_brute_force_accuracy(x, y))


def test_single_feature_accuracy_ties_cannot_be_split():
    # Both classes share the value 1.0: no threshold separates them perfectly.
    x = np.array([0.0, 1.0, 1.0, 2.0])
    y = np.array([0, 0, 1, 1])
    assert ag.single_feature_accuracy(x, y) == pytest.approx(0.75)
    # Either direction: a feature that is high for class 0 is as good as one high for class 1.
    assert ag.single_feature_accuracy(-x, y) == pytest.approx(0.75)


def test_single_feature_accuracy_labels_of_any_type_and_degenerate_input():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=30), rng.integers(0, 2, 30)
    ref = ag.single_feature_accuracy(x, y)
    assert ag.single_feature_accuracy(x, np.where(y == 1, "AD", "CN")) == ref
    assert ag.single_feature_accuracy(x, y + 1) == ref
    assert ag.single_feature_accuracy(x, y.astype(bool)) == ref
    # missing labels and non-finite values are dropped, not fatal
    y_missing = np.where(np.arange(30) < 3, np.nan, y.astype(float))
    assert ag.single_feature_accuracy(x, y_missing) == ag.single_feature_accuracy(x[3:], y[3:])
    x_nan = x.copy()
    x_nan[0] = np.nan
    assert ag.single_feature_accuracy(x_nan, y) == ag.single_feature_accuracy(x[1:], y[1:])
    # degenerate: NaN, never an exception
    assert math.isnan(ag.single_feature_accuracy(np.ones(30), y))
    assert math.isnan(ag.single_feature_accuracy(x, np.zeros(30)))
    assert math.isnan(ag.single_feature_accuracy(x[:3], [0, 1, 0]))
    with pytest.raises(UsageError):
        ag.single_feature_accuracy(x, np.arange(30) % 3)


def test_single_feature_accuracy_is_fast():
    rng = np.random.default_rng(2)
    Z, y = rng.normal(size=(400, 150)), rng.integers(0, 2, 400)
    start = time.perf_counter()
    accs = [ag.single_feature_accuracy(Z[:, k], y) for k in range(150)]
    assert time.perf_counter() - start < 2.0  # ~0.02 s in practice
    assert all(0.5 <= a <= 1.0 for a in accs)


# ------------------------------------------------------------------------------- feature test
def test_feature_test_detects_planted_shift():
    rng = np.random.default_rng(3)
    y = _balanced(200)
    x = rng.normal(size=200) + 1.0 * y  # Cohen's d = 1
    res = ag.feature_test(x, y, eta=0.05, bound="G")
    assert res["delta"] == pytest.approx(bounds.delta_g(200, 1, 0.05))
    assert res["acc_star"] == pytest.approx(res["accuracy"] - res["delta"])
    assert res["significant"] is True and res["acc_star"] > 0.5 and res["reason"] == ""


def test_feature_test_refuses_noise():
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        res = ag.feature_test(rng.normal(size=100), rng.integers(0, 2, 100))
        assert res["significant"] is False, seed
        assert res["acc_star"] < res["chance"]


def test_feature_test_chance_is_the_majority_share():
    # 70/30 classes: any feature reaches >= 0.70 in sample, so "acc* > 0.5" would pass pure noise.
    rng = np.random.default_rng(4)
    y = np.repeat([0, 1], [70, 30])
    x = rng.normal(size=100)
    literal = ag.feature_test(x, y, chance=0.5)
    assert literal["accuracy"] >= 0.70 and literal["significant"] is True
    guarded = ag.feature_test(x, y)
    assert guarded["chance"] == pytest.approx(0.70) and guarded["significant"] is False


def test_feature_test_degenerate_inputs_give_nan_and_reason():
    rng = np.random.default_rng(5)
    cases = {
        "constant": (np.full(20, 3.0), _balanced(20)),
        "one class": (rng.normal(size=20), np.ones(20)),
        "too few": (rng.normal(size=3), [0, 1, 1]),
    }
    for name, (x, y) in cases.items():
        res = ag.feature_test(x, y)
        assert math.isnan(res["accuracy"]) and math.isnan(res["acc_star"]), name
        assert res["significant"] is False and res["reason"], name


# ---------------------------------------------------------------------------------------- SAM
def _sam_data(seed, n=100, shift=0.8):
    rng = np.random.default_rng(seed)
    y = _balanced(n)
    sizes = {1: 80, 2: 80, 3: 80, 4: 80, 5: 20}
    labels = np.concatenate([[r] * v for r, v in sizes.items()])
    X = rng.normal(size=(n, len(labels)))
    X[np.ix_(y == 1, np.flatnonzero(labels == 1))] += shift  # region 1 planted
    return X, labels, y


def test_sam_finds_the_planted_region_and_its_permutation_p_refuses_noise():
    X, labels, y = _sam_data(0)
    df = ag.sam_regions(X, labels, y, [1, 2, 3, 4, 5], top_voxels=50, n_permutations=50, random_state=0)
    assert list(df.columns) == ["region_index", "n_voxels", "n_selected", "accuracy", "delta", "acc_star",
                                "chance", "passes_bound", "p_perm", "p_fwer", "supported", "reason"]
    planted = df.set_index("region_index").loc[1]
    assert planted["passes_bound"] and planted["acc_star"] > 0.5
    assert planted["p_perm"] <= 0.05
    assert planted["delta"] == pytest.approx(bounds.delta_g(100, 1))
    noise = df[df["region_index"] != 1]
    assert noise["p_perm"].mean() > 0.2 and (noise["p_perm"] > 0.05).sum() >= 3
    # the max statistic over regions is never smaller than the region's own permutation p
    assert (df["p_fwer"] >= df["p_perm"] - 1e-12).all()
    assert planted["p_fwer"] <= 0.05 and (noise["p_fwer"] > 0.05).all()
    # supported = the bound and the family-wise p agree; noise regions pass the bound (selection
    # inflates it) but are not supported
    assert planted["supported"] and not noise["supported"].any()
    assert noise["passes_bound"].any()
    assert (df["supported"] == (df["passes_bound"] & (df["p_fwer"] <= 0.05))).all()
    small = df.set_index("region_index").loc[5]
    assert small["n_voxels"] == 20 and small["n_selected"] == 20 and small["reason"] == ""
    claims = ag.sam_claims(df.assign(region=[f"R{r}" for r in df["region_index"]]), "CN vs AD", 50)
    assert [c.item for c in claims if c.supported] == ["R1"]
    assert all(c.family == "sam" and c.p == row for c, row in zip(claims, df["p_fwer"]))


def test_sam_in_sample_selection_inflates_noise_accuracy_as_documented():
    # The docstring's caveat: label-driven voxel selection + PLS in sample beats Delta on pure noise.
    X, labels, y = _sam_data(1, shift=0.0)
    df = ag.sam_regions(X, labels, y, [2, 3, 4], n_permutations=0)
    assert (df["accuracy"] > 0.5 + df["delta"]).all() and df["passes_bound"].all()
    # ...which is why the bound alone never supports a region: without the permutation null, nothing is
    assert df["p_perm"].isna().all() and not df["supported"].any()


def test_sam_degenerate_regions_and_labels():
    X, labels, y = _sam_data(2)
    X[:, labels == 3] = 0.5  # a region outside the mask: constant
    df = ag.sam_regions(X, labels, y, [1, 3, 99], n_permutations=5).set_index("region_index")
    assert df.loc[3, "reason"] and math.isnan(df.loc[3, "accuracy"]) and not df.loc[3, "supported"]
    assert df.loc[99, "n_voxels"] == 0 and df.loc[99, "reason"] and math.isnan(df.loc[99, "p_perm"])
    assert df.loc[1, "reason"] == "" and np.isfinite(df.loc[1, "p_perm"])
    one_class = ag.sam_regions(X, labels, np.zeros(len(y)), [1, 2])
    assert one_class["reason"].str.len().gt(0).all() and one_class["accuracy"].isna().all()
    assert not one_class["supported"].any()
    strings = ag.sam_regions(X, labels, np.where(y == 1, "AD", "CN"), [1])
    assert strings.loc[0, "accuracy"] == df.loc[1, "accuracy"]
    with pytest.raises(UsageError):
        ag.sam_regions(X, labels[:-1], y, [1])


# ---------------------------------------------------------------------------------------- SAR
def test_sar_detects_a_planted_linear_relation():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(150, 2))
    y = 0.7 * X[:, 0] + 0.7 * rng.normal(size=150)
    res = ag.sar(X, y, eta=0.05, bound="G", n_resamples=10, random_state=0)
    assert res["n"] == 150 and res["d"] == 2 and res["reason"] == ""
    assert res["delta"] == pytest.approx(bounds.delta_g(150, 2))
    assert res["l_emp"] + res["delta"] < res["gamma"] and res["significant"] is True
    assert res["p_full"] < 0.05 and res["p_mean_subsets"] < 0.05 and res["power"] >= 0.8
    assert "p" not in res  # an average of p over overlapping subsets is not a p-value: not named one
    assert res["n_subsample"] == 120 and res["n_resamples"] == 10


def test_sar_refuses_noise():
    for seed in range(5):
        rng = np.random.default_rng(200 + seed)
        res = ag.sar(rng.normal(size=(100, 1)), rng.normal(size=100), n_resamples=10, random_state=seed)
        assert res["significant"] is False, seed
        assert res["power"] <= 0.1 and res["p_mean_subsets"] > 0.5 and res["p_full"] > 0.05


@pytest.mark.parametrize("bound", ["G", "GZ", "VC"])
def test_sar_p_is_the_inverted_bound(bound):
    # p_full is the eta at which the bound exactly closes the gap: Delta(n, d, p) == gamma - l_emp.
    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 1))
    y = 0.8 * X[:, 0] + 0.6 * rng.normal(size=300)
    res = ag.sar(X, y, bound=bound, n_resamples=0)
    assert 0 < res["p_full"] < 1 and math.isnan(res["power"])
    assert bounds.delta(300, 1, res["p_full"], bound) == pytest.approx(res["gamma"] - res["l_emp"], rel=1e-6)
    assert res["significant"] == (res["p_full"] < 0.05)


def test_sar_vc_p_is_the_inverted_capped_bound_when_features_outnumber_subjects():
    """With d + 1 > n the VC growth function is 2^n: the p must invert the bound actually used (the first
    version inverted the uncapped Sauer form, whose log is negative there, and gave p far below the
    bound's own level)."""
    rng = np.random.default_rng(9)
    X = rng.normal(size=(20, 200))
    y = X[:, 0] + 0.1 * rng.normal(size=20)  # an in-sample SVR with 200 features fits 20 subjects closely
    res = ag.sar(X, y, bound="VC", n_resamples=0)
    gap = res["gamma"] - res["l_emp"]
    assert gap > 0 and res["delta"] == pytest.approx(bounds.delta_vc(20, 200))
    assert res["delta"] > 0.8  # sqrt((20 ln 2 + ln 80) / 20): no claim can pass with 200 features and 20 subjects
    # the uncapped inversion gave p = 4 exp(201 (ln(40/201) + 1) - 20 gap^2) < 1e-50 here
    assert res["significant"] is False and res["p_full"] > 0.05
    expected = min(1.0, 4 * math.exp(20 * math.log(2) - 20 * gap ** 2))
    assert res["p_full"] == pytest.approx(expected)


def test_sar_is_deterministic_and_handles_degenerate_input():
    rng = np.random.default_rng(8)
    X, y = rng.normal(size=(60, 2)), rng.normal(size=60)
    assert ag.sar(X, y, n_resamples=5, random_state=3) == ag.sar(X, y, n_resamples=5, random_state=3)
    for X_bad, y_bad in [(X, np.ones(60)), (np.ones((60, 2)), y), (X[:3], y[:3])]:
        res = ag.sar(X_bad, y_bad, n_resamples=3)
        assert res["reason"] and res["significant"] is False and math.isnan(res["l_emp"])


# ---------------------------------------------------------------------------------------- RUB
def test_gibbs_loss_is_the_dropout_classifiers_loss():
    """Without dropout and with a huge theta the Gibbs classifier is the deterministic one; with METHOD's
    dropout (0.95) most weights are dropped and its loss is near chance even for a perfect separator."""
    rng = np.random.default_rng(12)
    y = _balanced(200)
    X = rng.normal(size=(200, 4))
    X[:, 0] += 6.0 * (y - 0.5)
    theta = np.array([1000.0, 0, 0, 0, 0])
    loss, se = ag.gibbs_loss(X, y, theta, dropout=0.0, n_samples=400)
    assert loss == pytest.approx(np.mean((X[:, 0] > 0) != (y == 1)), abs=0.01) and se < 0.01
    loss95, _ = ag.gibbs_loss(X, y, theta, dropout=0.95, n_samples=4000)
    # 95 % of draws drop the one useful weight: the bias-free predictions are then noise
    assert 0.4 < loss95 < 0.5


def test_rub_permutation_p_small_for_a_strong_effect_not_for_noise():
    rng = np.random.default_rng(9)
    y = _balanced(100)
    X = rng.normal(size=(100, 5))
    X[:, 0] += 2.0 * y
    strong = ag.rub(X, y, n_permutations=50, random_state=0)
    assert strong["p_perm"] == pytest.approx(1 / 51)
    theta_free = bounds.delta_pac_bayes(1 - strong["gibbs_accuracy"], np.zeros(6), 100)
    assert strong["delta"] >= theta_free  # the weights' norm only adds to the bound
    # the bound holds for the Gibbs classifier, whose accuracy is far below the deterministic SVM's
    assert strong["gibbs_accuracy"] < strong["accuracy"] - 0.2
    assert strong["supported"] == (strong["passes_bound"] and strong["p_perm"] <= 0.05)
    for seed in range(3):
        noise = ag.rub(rng.normal(size=(100, 5)), y, n_permutations=50, random_state=seed)
        assert noise["p_perm"] > 0.1 and noise["supported"] is False, seed


@pytest.mark.parametrize("K", [64, 128])
def test_rub_never_supports_noise_at_n400(K):
    """The old RUB (deterministic loss in the bound) called noise significant in 57 % (K = 64) and 100 %
    (K = 128) of datasets at n = 400; on the Gibbs loss the bound does not pass on any of 10."""
    y = _balanced(400)
    for seed in range(10):
        X = np.random.default_rng(500 + seed).normal(size=(400, K))
        res = ag.rub(X, y, n_permutations=0, random_state=seed)
        assert res["accuracy"] > 0.6  # the deterministic SVM overfits noise...
        assert not res["passes_bound"] and not res["supported"], seed  # ...the bound on Q does not pass
        old_rule = res["accuracy"] - bounds.delta_pac_bayes(1 - res["accuracy"], np.zeros(K + 1), 400)
        if K == 128:
            assert old_rule > 0.5  # what the old rule would have called significant


def test_rub_deterministic_labels_and_degenerate():
    rng = np.random.default_rng(10)
    X, y = rng.normal(size=(40, 3)), _balanced(40)
    a = ag.rub(X, y, n_permutations=20, random_state=1)
    assert a == ag.rub(X, y, n_permutations=20, random_state=1)
    assert a == ag.rub(X, np.where(y == 1, "sMCI", "pMCI"), n_permutations=20, random_state=1)  # same class order
    no_null = ag.rub(X, y, n_permutations=0)
    assert math.isnan(no_null["p_perm"]) and no_null["supported"] is False
    for X_bad, y_bad in [(np.ones((40, 3)), y), (X, np.zeros(40)), (X[:2], y[:2])]:
        res = ag.rub(X_bad, y_bad, n_permutations=5)
        assert res["reason"] and math.isnan(res["acc_star"]) and res["supported"] is False


# ------------------------------------------------------------------------------- latent vector
def test_latent_vector_noise_fits_well_in_sample_but_is_not_significant():
    y = _balanced(100)
    for seed in range(3):
        Z = np.random.default_rng(300 + seed).normal(size=(100, 32))
        res = ag.latent_vector_test(Z, y, n_permutations=50, random_state=seed)
        assert res["d"] == 32 and res["delta"] == pytest.approx(bounds.delta_g(100, 32))
        # The cautionary point: an accuracy that one feature would turn into a significant claim...
        assert res["accuracy"] - bounds.delta_g(100, 1) > 0.5
        # ...is not significant for the 32-unit vector, and the permutation null agrees.
        assert res["supported"] is False and res["acc_star"] < 0.5
        assert res["rub"]["p_perm"] > 0.1 and res["rub"]["d"] == 32


def test_latent_vector_cannot_pass_at_n100_even_when_one_unit_separates_perfectly():
    rng = np.random.default_rng(11)
    y = _balanced(100)
    Z = rng.normal(size=(100, 32))
    Z[:, 0] += 4.0 * y
    res = ag.latent_vector_test(Z, y, n_permutations=20, random_state=0)
    assert res["accuracy"] >= 0.98 and res["supported"] is False  # Delta(100, 32) > 0.5
    assert res["rub"]["p_perm"] == pytest.approx(1 / 21)
    assert ag.feature_test(Z[:, 0], y)["significant"] is True  # ...while the single unit passes
    claims = ag.vector_claims({"1": res, "2": res}, "CN vs AD", 0.05)
    assert [c.family for c in claims] == ["vector_bound", "rub", "vector_bound", "rub"]
    assert not any(c.supported for c in claims) and "eta / 2 folds = 0.025" in claims[0].correction


def test_latent_vector_degenerate():
    res = ag.latent_vector_test(np.zeros((30, 8)), _balanced(30), n_permutations=5)
    assert res["reason"] and res["supported"] is False and math.isnan(res["accuracy"])
    assert res["rub"]["reason"] and math.isnan(res["rub"]["p_perm"])
