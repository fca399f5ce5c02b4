"""Measured false-positive rates of every claim family (the fast version of benchmarks/calibration.py).

Null cohorts come from :mod:`latentbids.simulate.analysis_cohort` with the regional GM correlation
estimated from the IXI scans; each family's default rule must call noise significant in at most 10 % of
40 replications (eta = 5 % plus binomial slack).  These are rates over fresh cohorts, not hand-picked
seeds: a rule that is not family-wise (METHOD.md's first text) fails them.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from latentbids import calibration as cal
from latentbids.config import AnalysisConfig
from latentbids.simulate.analysis_cohort import RegionalGMModel, draw_cohort

REPS = 40
MAX_RATE = 0.10


@pytest.fixture(scope="module")
def model():
    return RegionalGMModel.ixi()


@pytest.fixture(scope="module")
def settings():
    return dataclasses.replace(AnalysisConfig(), n_permutations=200, sam_permutations=20, shap_n_estimators=50,
                               shap_permutations=39)


def _small(model, J=30):
    """The first J regions of the IXI model (SAM and SHAP cost grows with the regions)."""
    return RegionalGMModel(model.index[:J], model.names[:J], model.mean[:J], model.cv[:J], model.corr[:J, :J],
                           model.source)


_OUTCOMES: dict = {}


def _rate(outcome, model, settings, family, n=60, K=16, balance=0.5, voxels=0, folds=3):
    """Share of REPS null cohorts in which ``family`` called noise significant.  One outcome holds
    every family of its step, so the cohorts of a step are drawn and analysed once per module."""
    key = (outcome.__name__, len(model.index), n, K, balance, voxels, folds)
    if key not in _OUTCOMES:
        rows = []
        for r in range(REPS):
            rng = np.random.default_rng([17, r, n, int(balance * 10)])
            n1 = int(round(n * balance))
            c = draw_cohort(model, n - n1, n1, K, rng=rng, n_folds=folds, voxels_per_region=voxels)
            rows.append(outcome(c, settings, r))
        _OUTCOMES[key] = rows
    return sum(bool(row[family]) for row in _OUTCOMES[key]) / REPS


def test_the_shipped_regional_gm_model_is_a_correlation_from_ixi(model):
    assert len(model.index) == 116 and "IXI" in model.source
    np.testing.assert_allclose(np.diag(model.corr), 1.0, atol=1e-5)
    assert np.all(np.linalg.eigvalsh(model.corr) > 0)
    off = model.corr[~np.eye(116, dtype=bool)]
    assert 0.05 < off.mean() < 0.6  # real GM regions co-vary (a global factor), unlike independent noise
    assert 0.03 < np.median(model.cv) < 0.3


@pytest.mark.slow
@pytest.mark.parametrize("family", ["unit", "region", "lrcp"])
@pytest.mark.parametrize("balance", [0.5, 0.3])
def test_lrcp_families_on_null_cohorts(model, settings, family, balance):
    assert _rate(cal.lrcp_outcome, model, settings, family, balance=balance) <= MAX_RATE


@pytest.mark.slow
@pytest.mark.parametrize("family", ["latent_vector", "vector_bound", "rub"])
def test_latent_vector_families_on_null_cohorts(model, settings, family):
    assert _rate(cal.vector_outcome, model, settings, family, n=100, K=64) <= MAX_RATE


@pytest.mark.slow
def test_sam_on_null_cohorts(model, settings):
    assert _rate(cal.sam_outcome, _small(model), settings, "sam", n=60, voxels=20) <= MAX_RATE


@pytest.mark.slow
@pytest.mark.parametrize("family", ["shap", "sar", "shap_regions"])
def test_shap_and_sar_on_null_errors(model, settings, family):
    assert _rate(cal.shap_outcome, _small(model), settings, family, n=60) <= MAX_RATE


def test_pc1_on_shuffled_global_measures(model, settings):
    assert _rate(cal.pc1_outcome, model, settings, "pc1", n=60) <= MAX_RATE


def _planted(model, settings, loss: float, seed: int, reps: int = 10) -> tuple[int, int, int]:
    """LRCP on ``reps`` cohorts with ``loss`` planted in 4 regions, 60 per group, K = 32, 5 folds: cohorts with
    all 4 found, planted regions found in all, other regions called positive in all."""
    planted = tuple(int(model.index[list(model.names).index(n)]) for n in cal.PLANTED_NAMES)
    every, found, other = 0, 0, 0
    for r in range(reps):
        c = draw_cohort(model, 60, 60, 32, rng=np.random.default_rng([seed, r]), loss=loss, planted=planted,
                        n_folds=5)
        out = cal.lrcp_outcome(c, settings, r)
        every, found, other = every + out["all_planted"], found + out["lrcp_planted"], other + out["lrcp_other"]
    return every, found, other


@pytest.mark.slow
def test_planted_loss_at_60_per_group_is_found(model, settings):
    """Power check (the benchmark's target, on fewer replications): 18 % GM loss in 4 regions at 60 per
    group, with the default 5 folds, makes all 4 LRCP-positive in most cohorts, with rarely a false region."""
    every, _, other = _planted(model, settings, 0.18, 5)
    assert every >= 8 and other <= 3


def test_the_shipped_calibration_holds_every_family_at_its_level():
    """latentbids/data/calibration.json (benchmarks/calibration.py, BENCHMARKS.md "Calibration"), which
    every group report quotes: each claim family measured, each pooled false-positive rate consistent
    with eta (its 95 % interval starts at or below eta), and the report's table says so per family."""
    from types import SimpleNamespace

    from latentbids.reports.group import load_calibration
    from latentbids.reports.group.sections_claims import calibration_table

    shipped = load_calibration()
    assert shipped is not None and set(shipped["families"]) == set(cal.FAMILIES)
    for family, r in shipped["families"].items():
        assert r["replications"] >= 20, family
        assert r["pooled_lo"] <= shipped["eta"], (family, r)
        assert r["false_positives"] == round(r["pooled_fpr"] * r["replications"])
    html = calibration_table(SimpleNamespace(calibration=shipped))
    assert "pooled rate" in html and all(f">{family}<" in html for family in shipped["families"])


def test_the_shipped_power_table_and_end_to_end_rates_are_complete_and_at_their_level():
    """The power table every silent verdict quotes covers every family it names, states how it was measured, and
    shows the power this issue asked for (the region family finds 8 % loss at 60 per group); the rates measured
    through ``latentbids group`` are consistent with eta for every family, the headline included."""
    from latentbids.analysis.power import detectable_loss
    from latentbids.reports.group import load_calibration

    shipped = load_calibration()
    power = shipped["power"]
    assert set(power["families"]) == set(cal.POWER_FAMILIES) and power["command"].startswith("python benchmarks/")
    for family, grid in power["families"].items():
        assert np.shape(grid) == (len(power["n_per_group"]), len(power["losses"])), family
        assert power["replications_by_family"][family] >= 10, family
    assert detectable_loss("region", 60, power)[0] <= 8 and detectable_loss("lrcp", 100, power)[0] <= 8
    e2e = shipped["end_to_end"]
    assert e2e["runs"] >= 30 and set(e2e["families"]) >= {"unit", "region", "lrcp", "headline"}
    for family, r in e2e["families"].items():
        if family != "any_family":  # several families at eta each: not a claim of its own
            assert r["lo"] <= e2e["eta"] and r["false_positives"] == round(r["rate"] * r["replications"]), family


@pytest.mark.slow
def test_planted_loss_of_8_percent_is_found_where_the_old_rule_found_almost_nothing(model, settings):
    """The issue-17 target at the estimator level: 8 % loss in 4 regions, 60 per group (K = 32, 5 folds).
    The balanced-accuracy statistic with the fold-majority rule found 0.20 of the 4 planted regions on average;
    Welch |t| with the any-fold rule and the family-wise tie must find clearly more, and no other region."""
    _, found, other = _planted(model, settings, 0.08, 8)
    assert found / 10 >= 0.8 and other <= 1
