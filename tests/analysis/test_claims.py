"""The claims list and the verdicts generated from it: nothing unsupported is stated as a finding."""
from __future__ import annotations

import math

import pytest

from latentbids.analysis.claims import Claim, ClaimsList
from latentbids.analysis.headline import headline
from latentbids.analysis.verdicts import cohort_verdicts, contrast_verdicts


def _claim(family, item, supported, contrast="CN vs AD", **kw):
    base = dict(contrast=contrast, family=family, item=item, statistic_name="s", statistic=0.7, p=0.01,
                bound=0.6, correction="max-statistic label permutation over 16 units", supported=supported)
    base.update(kw)
    return Claim(**base)


def test_claim_validation_and_json_round_trip():
    with pytest.raises(ValueError):
        _claim("pc2", "x", False)
    with pytest.raises(ValueError):
        _claim("lrcp", "x", True, exploratory=True)
    claims = ClaimsList([_claim("unit", "z1", True, fold="1"), _claim("pc1", "tiv", False, contrast="",
                                                                     statistic=math.nan, p=math.nan)])
    data = claims.as_json()
    assert data[1]["statistic"] is None and data[0]["fold"] == "1"
    back = ClaimsList.from_json(data)
    assert back.claims[0] == claims.claims[0] and math.isnan(back.claims[1].p)
    assert list(claims.frame()["family"]) == ["unit", "pc1"]


def test_headline_names_only_supported_claims():
    claims = ClaimsList([_claim("unit", "z1", False, fold="1"), _claim("lrcp", "Hippocampus_L", False,
                                                                      exploratory=True),
                         _claim("sam", "Precuneus_L", False), _claim("shap", "pooled", False, contrast="")])
    text = headline(claims, ["CN vs AD"], 40)
    assert text.startswith("No statistical claim is supported at n = 40")
    assert "Hippocampus" not in text and "Precuneus" not in text
    claims.extend([_claim("lrcp", "Amygdala_R", True), _claim("unit", "z2", True, fold="1"),
                   _claim("region", "Amygdala_R", True)])
    # without the gate (the held-out latent-vector test) nothing about the contrast enters the headline
    text = headline(claims, ["CN vs AD"], 40)
    assert "Amygdala_R" not in text and "Per-family findings only" in text and "CN vs AD" in text
    claims.extend([_claim("latent_vector", "32-unit latent vector", True)])
    text = headline(claims, ["CN vs AD"], 40)
    assert "1 LRCP-positive region(s) (Amygdala_R)" in text and "Hippocampus" not in text
    assert "latent vector separates the classes out of sample" in text


def test_headline_splits_eta_over_contrasts():
    """Three contrasts: a claim at p = 0.03 passes its family (eta = 0.05) but not the headline (eta / 3)."""
    names = ["CN vs MCI", "CN vs AD", "MCI vs AD"]
    claims = ClaimsList([_claim("latent_vector", "v", True, contrast=n, p=0.03) for n in names])
    text = headline(claims, names, 60)
    assert "separates the classes out of sample" not in text and "Per-family findings only" in text
    strong = ClaimsList(list(claims) + [_claim("latent_vector", "v", True, contrast="CN vs AD", p=0.004),
                                        _claim("unit", "z1", True, contrast="CN vs AD", fold="1", p=0.005)])
    text = headline(strong, names, 60)
    assert "CN vs AD: the whole latent vector" in text and "1 clinically relevant latent unit(s)" in text
    assert "across 3 contrast(s)" in text
    # past the gate, units and regions share the contrast's level (eta / 6 each): p = 0.01 does not pass
    strong.extend([_claim("region", "Amygdala_R", True, contrast="CN vs AD", p=0.01),
                   _claim("region", "Hippocampus_L", True, contrast="CN vs AD", p=0.008)])
    text = headline(strong, names, 60)
    assert "Hippocampus_L" in text and "Amygdala_R" not in text
    weak_unit = ClaimsList([c for c in strong if c.family != "unit"]
                           + [_claim("unit", "z1", True, contrast="CN vs AD", fold="1", p=0.01)])
    assert "latent unit" not in headline(weak_unit, names, 60)


def test_verdicts_say_exploratory_and_never_call_unsupported_items_findings():
    claims = ClaimsList([_claim("unit", "z1", False, fold="1"), _claim("unit", "z2", False, fold="2"),
                         _claim("lrcp", "Hippocampus_L", False, exploratory=True),
                         _claim("sam", "Precuneus_L", False),
                         _claim("latent_vector", "32-unit latent vector", False),
                         _claim("vector_bound", "32-unit latent vector", False, fold="1"),
                         _claim("vector_bound", "32-unit latent vector", False, fold="2")])
    text = " ".join(contrast_verdicts(claims, "CN vs AD", 40, {"CN": 20, "AD": 20}, 0.05))
    assert "no single latent unit was shown to carry this contrast" in text and "not evidence" in text
    assert "carries no detectable information" not in text and "no information" not in text
    assert "exploratory, not a finding" in text
    assert "Hippocampus_L" not in text and "Precuneus_L" not in text
    assert "0 of 1 regions are supported by SAM" in text
    assert "is not shown to separate the classes out of sample" in text
    assert "does not pass in any fold" in text and "Its silence is not evidence about the latent space" in text
    bound = text[text.index("in-sample bound"):]
    assert "GM loss" in bound and "80 % power" in bound  # its measured power, not a blanket "cannot pass"
    cohort = " ".join(cohort_verdicts(ClaimsList([_claim("shap", "pooled", False, contrast="")])))
    assert "no SHAP claim is made" in cohort
