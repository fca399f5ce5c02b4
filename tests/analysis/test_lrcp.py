"""Ground-truth tests of LRCP (METHOD.md section 5) on simulated cohorts with planted GM loss.

The cohort mirrors METHOD's example: J = 30 regions whose noise is correlated (AR(1), rho = 0.5, 10 %
between-subject CV), 18 % GM loss planted in 4 regions for class 1, and a 16-unit latent code that is a
noisy linear mixing of the standardised regions (the top 16 principal axes, i.e. what a linear
autoencoder learns, plus noise).

Every verdict is family-wise (one family of units, all folds; one family of regions), so the honest
assertions on null cohorts are *rates* over many cohorts (at most eta plus binomial slack), never a
hand-picked seed; the planted cohorts must be found.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from latentbids.analysis import stats
from latentbids.analysis.lrcp import LRCP
from latentbids.analysis.lrcp_claims import lrcp_claims
from latentbids.analysis.rankings import consensus, ranking_stability
from latentbids.errors import UsageError

J, K, N_PER = 30, 16, 40
PLANTED = (3, 10, 18, 25)  # region_index (1-based atlas labels)
FAST = dict(n_permutations=200)


def simulate_cohort(seed, n_per=N_PER, loss=0.18, rho=0.5, cv=0.10, mix_noise=0.5, planted=PLANTED, n1=None):
    """(Z, G, y): correlated regional GM, loss in ``planted`` for class 1, Z = noisy linear mixing of G."""
    rng = np.random.default_rng(seed)
    n0 = n_per
    n1 = n_per if n1 is None else n1
    n = n0 + n1
    y = np.repeat([0, 1], [n0, n1])
    idx = np.arange(J)
    chol = np.linalg.cholesky(rho ** np.abs(idx[:, None] - idx[None, :]))
    base = rng.uniform(0.4, 0.7, J)
    G = base * (1 + cv * (rng.standard_normal((n, J)) @ chol.T))
    for j in planted:
        G[y == 1, j - 1] *= 1 - loss
    Gs = stats.standardize(G)
    axes = np.linalg.svd(Gs, full_matrices=False)[2][:K].T  # J x K mixing
    Z = Gs @ axes
    Z = Z / Z.std(axis=0) + mix_noise * rng.standard_normal((n, K))
    return Z, G, y


def _positives(model):
    return set(model.consensus_.loc[model.consensus_["lrcp_positive"], "region_index"])


# ------------------------------------------------------------------------------------ ground truth
def test_planted_regions_are_lrcp_positive_at_60_per_group():
    Z, G, y = simulate_cohort(0, n_per=60)
    m = LRCP().fit(Z, G, y)
    pos = _positives(m)
    assert set(PLANTED) <= pos and len(pos - set(PLANTED)) <= 1
    s = m.summary_
    assert s["latent_informative"] and s["n_units_relevant"] >= 1
    assert s["n_regions_positive"] == len(pos) and s["unit_family_size"] == K
    assert "are LRCP-positive" in s["statement"]
    # the positive regions lead the consensus ranking, and their own test passes family-wise
    assert set(m.consensus_.nsmallest(len(pos), "rank")["region_index"]) == pos
    planted = m.consensus_.set_index("region_index").loc[list(PLANTED)]
    assert planted["discriminates"].all() and (planted["p_fwer"] <= 0.05).all()
    assert (planted["cohens_d"] < -1.0).all() and (planted["auc"] < 0.25).all()


def test_null_cohorts_false_positive_rates_are_family_wise():
    """Over 40 null cohorts: some unit relevant, some region discriminating, some region LRCP-positive,
    each in at most 10 % of cohorts (eta = 5 % plus binomial slack); METHOD's first, uncorrected rule
    flags a region in most of them."""
    any_unit, any_region, any_lrcp, any_unc = 0, 0, 0, 0
    reps = 40
    for seed in range(reps):
        Z, G, y = simulate_cohort(1000 + seed, loss=0.0)
        m = LRCP(random_state=seed, **FAST).fit(Z, G, y)
        any_unit += m.summary_["n_units_relevant"] > 0
        any_region += m.summary_["n_regions_discriminating"] > 0
        any_lrcp += m.summary_["n_regions_positive"] > 0
        any_unc += m.folds_["lrcp_positive_uncorrected"].any() or m.region_tests_["discriminates_uncorrected"].any()
    assert any_unit / reps <= 0.10 and any_region / reps <= 0.10 and any_lrcp / reps <= 0.10
    assert any_unc / reps >= 0.3  # what the per-item rule would have reported


def test_latent_space_without_the_effect_gives_no_lrcp_positive_region():
    """Partial null: the regions really differ, but the latent code is noise.  The regions' own test
    passes; LRCP-positive needs a relevant unit, so no region is LRCP-positive in (almost) any cohort."""
    reps, hits, regions_found = 40, 0, 0
    for seed in range(reps):
        _, G, y = simulate_cohort(2000 + seed, n_per=60)
        Z = np.random.default_rng(seed).normal(size=(len(y), K))
        m = LRCP(random_state=seed, **FAST).fit(Z, G, y)
        hits += m.summary_["n_regions_positive"] > 0
        regions_found += set(PLANTED) <= set(m.region_tests_.loc[m.region_tests_["discriminates"], "region_index"])
    assert hits / reps <= 0.10 and regions_found / reps >= 0.9


def test_no_relevant_unit_gives_an_exploratory_ranking_and_says_so():
    Z, G, y = simulate_cohort(3, loss=0.0)
    m = LRCP(**FAST).fit(Z, G, y)
    assert not m.units_["relevant"].any()  # precondition of this fixed null cohort
    s = m.summary_
    assert not s["latent_informative"] and s["n_regions_positive"] == 0
    assert "No single latent unit was shown to carry this contrast" in s["statement"]
    assert "not evidence that the latent space lacks the information" in s["statement"]
    assert "no detectable information" not in s["statement"]
    assert m.consensus_["exploratory"].all() and not m.consensus_["lrcp_positive"].any()
    u = m.units_
    expected = np.abs(u["auc"] - 0.5) / np.abs(u["auc"] - 0.5).sum()
    np.testing.assert_allclose(u["weight"], expected)
    claims = [c for c in lrcp_claims(m, "A vs B") if c.family == "lrcp"]
    assert len(claims) == J and all(c.exploratory and not c.supported for c in claims)


def test_weights_scores_and_tables_are_consistent():
    Z, G, y = simulate_cohort(0, n_per=60)
    m = LRCP(**FAST).fit(Z, G, y)
    u = m.units_
    rel = u["relevant"].to_numpy(bool)
    assert rel.any()
    excess = np.where(rel, u["score_star"] - u["chance"], 0.0)
    np.testing.assert_allclose(u["weight"], excess / excess.sum())
    assert (u.loc[rel, "score_star"] > u.loc[rel, "chance"]).all()
    # relevant <=> p_fwer <= eta <=> statistic above the permutation critical value
    assert (rel == (u["p_fwer"] <= 0.05)).all()
    assert (rel == (u["statistic"] > m.summary_["unit_critical"])).all()
    assert ((u["cv_accuracy"] >= 0) & (u["cv_accuracy"] <= 1)).all()

    a = m.association_
    assert list(a.columns[:8]) == ["fold", "region_index", "region", "unit", "r", "p", "p_adj", "significant"]
    assert len(a) == J * K
    r, p = stats.correlate(G, Z)
    np.testing.assert_allclose(a["r"].to_numpy().reshape(J, K), r)
    np.testing.assert_allclose(a["p_adj"], stats.adjust_pvalues(a["p"].to_numpy(), "fdr_bh"))
    np.testing.assert_allclose(a["r_tilde"], np.where(a["significant"], a["r"], 0.0))
    # S_j = sum_k |r~_jk| w_k, recomputed from the long table
    w = u.set_index("unit")["weight"]
    s = (a["r_tilde"].abs() * a["unit"].map(w)).groupby(a["region_index"]).sum()
    reg = m.folds_.set_index("region_index")
    np.testing.assert_allclose(reg["score"].sort_index(), s.sort_index())
    tests = m.region_tests_.set_index("region_index")
    # positive <=> the region discriminates and is tied (family-wise) to a relevant unit
    assert (reg["lrcp_positive"] == (reg["tied_to_relevant_unit"] & tests.loc[reg.index, "discriminates"])).all()
    tied = a[a["tied"]].assign(relevant=lambda d: d["unit"].map(u.set_index("unit")["relevant"]))
    by_region = tied.groupby("region_index")["relevant"].any()
    assert (reg["tied_to_relevant_unit"] == by_region.reindex(reg.index, fill_value=False)).all()
    # the tie is tested for the pairs a verdict can use: discriminating regions x relevant units (one family)
    tested = (a["unit"].map(u.set_index("unit")["relevant"]).astype(bool)
              & a["region_index"].map(tests["discriminates"]).astype(bool))
    assert a.loc[~tested, "p_tie_fwer"].isna().all() and not a.loc[~tested, "tied"].any()
    assert (a.loc[tested, "p_tie_fwer"] >= 1 / (FAST["n_permutations"] + 1)).all()
    # ranking: positives first by score, then the others
    f = m.folds_
    npos = int(f["lrcp_positive"].sum())
    assert f["lrcp_positive"].iloc[:npos].all() and not f["lrcp_positive"].iloc[npos:].any()
    assert f["score"].iloc[:npos].is_monotonic_decreasing and f["score"].iloc[npos:].is_monotonic_decreasing
    assert (f["a_r2"] > 0.3).all()  # every region is encoded (the latents mix all regions)


def test_a_r2_separates_encoded_from_absent_regions():
    rng = np.random.default_rng(3)
    n = 120
    G = rng.normal(size=(n, 8))
    Z = G[:, :4] @ rng.normal(size=(4, 6)) + 0.3 * rng.normal(size=(n, 6))  # regions 5-8 absent from Z
    y = np.repeat([0, 1], n // 2)
    m = LRCP(**FAST).fit(Z, G, y)
    a = m.folds_.set_index("region_index")["a_r2"].sort_index()
    assert (a.loc[1:4] > 0.6).all()
    assert (a.loc[5:8] < 0.1).all()


def test_folds_form_one_unit_family_and_a_region_positive_in_any_fold_is_positive():
    Z, G, y = simulate_cohort(0, n_per=60)
    rng = np.random.default_rng(2)
    folds = {"1": Z, "2": Z[:, rng.permutation(K)] + 0.2 * rng.normal(size=Z.shape), "3": rng.normal(size=Z.shape)}
    m = LRCP(**FAST).fit(folds, G, y)
    s = m.summary_
    assert s["n_folds"] == 3 and s["unit_family_size"] == 3 * K and len(m.units_) == 3 * K
    per_fold = s["units_relevant_per_fold"]
    assert per_fold["1"] >= 1 and per_fold["2"] >= 1 and per_fold["3"] == 0  # fold 3's code is noise
    assert m.folds_.loc[m.folds_["fold"] == "3", "exploratory"].all()
    cons = m.consensus_.set_index("region_index")
    # positive in 2 of 3 folds (fold 3's code is noise): positive, with the share of folds as its stability
    assert (cons.loc[list(PLANTED), "n_folds_positive"] == 2).all() and cons.loc[list(PLANTED), "lrcp_positive"].all()
    assert np.allclose(cons.loc[list(PLANTED), "fold_agreement"], 2 / 3)
    assert not cons["exploratory"].any()
    assert m.stability_ is not None and m.stability_["n_folds"] == 3


def test_bonferroni_option_and_majority_statistic():
    Z, G, y = simulate_cohort(0, n_per=60)
    bonf = LRCP(family_correction="bonferroni").fit(Z, G, y)
    perm = LRCP(**FAST).fit(Z, G, y)
    assert bonf.units_["p_fwer"].isna().all() and bonf.summary_["n_permutations"] == 0
    # the DKW per-class bound is more conservative than the permutation null
    assert bonf.summary_["n_units_relevant"] <= perm.summary_["n_units_relevant"]
    assert _positives(bonf) <= _positives(perm)
    maj = LRCP(statistic="majority", **FAST).fit(Z, G, y)
    assert maj.summary_["chance"] == pytest.approx(0.5) and _positives(maj) & set(PLANTED)


def test_unbalanced_classes_balanced_statistic_keeps_chance_at_half_and_controls_noise():
    """70/30 classes: the best-threshold accuracy of noise is at least 0.7 (call everyone the majority);
    the balanced statistic's chance stays 0.5, the permutation null holds the family-wise rate."""
    hits = 0
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        y = np.array([1] * 30 + [0] * 70)
        Z, G = rng.normal(size=(100, 8)), rng.normal(size=(100, 10))
        m = LRCP(statistic="balanced", random_state=seed, **FAST).fit(Z, G, y)
        assert m.summary_["chance"] == 0.5
        hits += m.summary_["n_units_relevant"] > 0
        maj = LRCP(statistic="majority", random_state=seed, **FAST).fit(Z, G, y)
        assert maj.summary_["chance"] == pytest.approx(0.7) and (maj.units_["statistic"] >= 0.7).all()
    assert hits <= 3


def test_association_corrections_and_spearman():
    Z, G, y = simulate_cohort(0)
    m = LRCP(correction="permutation", n_permutations=99, random_state=5).fit(Z, G, y)
    a = m.association_
    assert (a["p_adj"] >= 1 / 100).all() and (a["p_adj"] >= a["p"] - 1e-12).all()
    m2 = LRCP(correction="permutation", n_permutations=99, random_state=5).fit(Z, G, y)
    pd.testing.assert_frame_equal(m.association_, m2.association_)  # deterministic
    fdr = LRCP(n_permutations=99, random_state=5).fit(Z, G, y)
    assert m.summary_["n_significant"] <= fdr.summary_["n_significant"]
    bonf = LRCP(correction="bonferroni", **FAST).fit(Z, G, y).association_
    np.testing.assert_allclose(bonf["p_adj"], np.minimum(bonf["p"] * J * K, 1))
    sp = LRCP(correlation="spearman", **FAST).fit(Z, G, y).association_
    row = sp[(sp["region_index"] == 3) & (sp["unit"] == "z0")].iloc[0]
    assert row["r"] == pytest.approx(sps.spearmanr(G[:, 2], Z[:, 0]).statistic, abs=1e-12)


def test_names_and_region_index_pass_through():
    Z, G, y = simulate_cohort(0)
    rid = np.arange(2001, 2001 + J)
    names = [f"R{i}" for i in range(J)]
    Zdf = pd.DataFrame(Z, columns=[f"unit{k}" for k in range(K)])
    m = LRCP(**FAST).fit(Zdf, G, y, region_index=rid, region_names=names)
    assert set(m.consensus_["region_index"]) == set(rid)
    assert m.consensus_.set_index("region_index").loc[2001, "region"] == "R0"
    assert list(m.units_["unit"]) == list(Zdf.columns)
    assert m.summary_["n_per_class"] == {0: 40, 1: 40} and m.summary_["K"] == K and m.summary_["J"] == J


def test_usage_errors_and_uncomputable_statistics():
    Z, G, y = simulate_cohort(0)
    with pytest.raises(UsageError):
        LRCP().fit(Z, G, np.where(y == 1, "AD", "CN"))
    with pytest.raises(UsageError):
        LRCP(correction="holm").fit(Z, G, y)
    with pytest.raises(UsageError):
        LRCP(family_correction="none").fit(Z, G, y)
    with pytest.raises(UsageError):
        LRCP().fit(Z[:-1], G, y)
    with pytest.raises(UsageError, match="same number of units"):
        LRCP().fit({"1": Z, "2": Z[:, :3]}, G, y)
    Zn = Z.copy()
    Zn[0, 0] = np.nan
    with pytest.raises(UsageError, match="NaN"):
        LRCP().fit(Zn, G, y)
    # one subject in class 1: no exception, NaN discriminability, the reason said
    keep = np.r_[0:40, 40]
    m = LRCP(**FAST).fit(Z[keep], G[keep], y[keep])
    assert m.units_["statistic"].isna().all() and not m.consensus_["lrcp_positive"].any()
    assert any("per class" in r for r in m.summary_["reasons"])
    assert "could not be assessed" in m.summary_["statement"]
    # a constant latent unit: no association, never relevant; the rest is computed
    Zc = Z.copy()
    Zc[:, 3] = 1.0
    mc = LRCP(**FAST).fit(Zc, G, y)
    assert mc.association_.loc[mc.association_["unit"] == "z3", "r"].isna().all()
    assert not mc.units_.loc[3, "relevant"] and mc.units_.loc[3, "statistic"] == 0.0  # |t| of a constant: no shift
    assert any("constant latent unit" in r and "z3" in r for r in mc.summary_["reasons"])


# ------------------------------------------------------------------------------- across folds
def test_ranking_stability():
    """Scores (higher = better) in; tau of the scores and top-k among regions scoring above 0."""
    idx = np.arange(1, 21)
    base = pd.Series(np.arange(20, 0, -1, dtype=float), index=idx)  # region 1 scores highest
    same = ranking_stability({"f0": base, "f1": base.copy(), "f2": base.copy()}, top_k=5)
    assert same["kendall_tau"] == pytest.approx(1.0) and same["top_k_overlap"] == 1.0
    assert same["n_folds"] == 3 and same["n_pairs"] == 3 and same["reason"] is None
    rev = ranking_stability({"a": base, "b": pd.Series(np.arange(1, 21, dtype=float), index=idx)}, top_k=5)
    assert rev["kendall_tau"] == pytest.approx(-1.0) and rev["top_k_overlap"] == 0.0
    rng = np.random.default_rng(0)
    shuffled = ranking_stability({"a": base, "b": pd.Series(rng.permutation(20) + 1.0, index=idx)}, top_k=5)
    assert shuffled["kendall_tau"] < 0.5 and shuffled["top_k_overlap"] < 1.0
    # a near-identical ranking (two neighbours swapped) stays high
    swapped = base.copy()
    swapped.loc[[3, 4]] = swapped.loc[[4, 3]].to_numpy()
    near = ranking_stability({"a": base, "b": swapped}, top_k=5)
    assert 0.9 < near["kendall_tau"] < 1.0 and near["top_k_overlap"] == 1.0
    one = ranking_stability({"a": base})
    assert np.isnan(one["kendall_tau"]) and "2 folds" in one["reason"]


def test_stability_of_nothing_is_not_reported_as_perfect():
    """All-zero scores in every fold: a ranking made only of tie-breaks is not stable, it is absent."""
    zeros = pd.Series(np.zeros(30), index=np.arange(1, 31))
    st = ranking_stability({"a": zeros, "b": zeros.copy(), "c": zeros.copy()}, top_k=10)
    assert np.isnan(st["kendall_tau"]) and np.isnan(st["top_k_overlap"]) and st["reason"]
    # noise scores on a few regions, zeros elsewhere: the zeros do not make it look stable
    rng = np.random.default_rng(3)
    folds = {}
    for f in range(5):
        s = pd.Series(np.zeros(30), index=np.arange(1, 31))
        s.iloc[rng.choice(30, 6, replace=False)] = rng.random(6)
        folds[f] = s
    st = ranking_stability(folds, top_k=5)
    assert st["kendall_tau"] < 0.5 and st["top_k_overlap"] < 0.6


def test_ranking_stability_of_lrcp_over_bootstrap_folds():
    """Planted regions are found in every fold, so the top-4 sets agree."""
    Z, G, y = simulate_cohort(0, n_per=60)
    rng = np.random.default_rng(1)
    rankings, frames = {}, []
    for f in range(3):
        rows = np.sort(np.r_[rng.choice(60, 48, replace=False), 60 + rng.choice(60, 48, replace=False)])
        m = LRCP(**FAST).fit(Z[rows], G[rows], y[rows])
        rankings[f] = m.folds_.set_index("region_index")["score"]
        frames.append(m.folds_.assign(fold=str(f)))
    st = ranking_stability(rankings, top_k=4)
    assert st["top_k_overlap"] >= 0.75 and st["kendall_tau"] > 0.2
    cons = consensus(pd.concat(frames, ignore_index=True))
    assert set(cons.nsmallest(4, "rank")["region_index"]) == set(PLANTED)
    assert cons.set_index("region_index").loc[list(PLANTED), "lrcp_positive"].all()


def test_consensus_hand_made():
    def frame(fold, scores, positive, exploratory=False):
        return pd.DataFrame({"fold": fold, "region_index": [1, 2, 3, 4], "region": list("ABCD"),
                             "score": scores, "lrcp_positive": positive, "exploratory": exploratory})

    folds = pd.concat([frame("1", [0.1, 0.5, 0.3, 0.0], [True, False, True, False]),
                       frame("2", [0.3, 0.5, 0.1, 0.2], [True, False, False, False]),
                       frame("3", [0.2, 0.5, 0.2, 0.1], [True, True, True, False]),
                       frame("4", [9.0, 9.0, 9.0, 9.0], [False] * 4, exploratory=True)], ignore_index=True)
    c = consensus(folds)
    assert list(c.columns) == ["region_index", "region", "mean_score", "exploratory", "n_folds_positive",
                               "fold_agreement", "lrcp_positive", "rank"]
    c = c.set_index("region_index").sort_index()
    assert list(c["n_folds_positive"]) == [3, 1, 2, 0]
    # positive in any fold is positive; the share of the 4 folds is the stability
    assert list(c["lrcp_positive"]) == [True, True, True, False]
    assert list(c["fold_agreement"]) == [0.75, 0.25, 0.5, 0.0]
    # the exploratory fold's scores do not enter the mean of the informative folds
    assert c.loc[1, "mean_score"] == pytest.approx(0.2) and not c["exploratory"].any()
    # positives first by mean score: B (0.5), then A and C (0.2, ties by index), then D
    assert list(c.sort_values("rank").index) == [2, 1, 3, 4]
    assert consensus(pd.DataFrame()).empty
