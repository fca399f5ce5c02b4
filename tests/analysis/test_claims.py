"""The claims list and the verdicts generated from it: nothing unsupported is stated as a finding."""
from __future__ import annotations

import math

import pytest

from latentbids.analysis.claims import Claim, ClaimsList
from latentbids.analysis.verdicts import cohort_verdicts, contrast_verdicts, headline


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
    claims.extend([_claim("lrcp", "Amygdala_R", True), _claim("unit", "z2", True, fold="1")])
    text = headline(claims, ["CN vs AD"], 40)
    assert "1 LRCP-positive region(s) (Amygdala_R)" in text and "Hippocampus" not in text


def test_verdicts_say_exploratory_and_never_call_unsupported_items_findings():
    claims = ClaimsList([_claim("unit", "z1", False, fold="1"), _claim("unit", "z2", False, fold="2"),
                         _claim("lrcp", "Hippocampus_L", False, exploratory=True),
                         _claim("sam", "Precuneus_L", False),
                         _claim("latent_vector", "32-unit latent vector", False, fold="1"),
                         _claim("latent_vector", "32-unit latent vector", False, fold="2")])
    text = " ".join(contrast_verdicts(claims, "CN vs AD", 40, {"CN": 20, "AD": 20}, 0.05))
    assert "no latent unit is clinically relevant" in text and "carries no detectable information" in text
    assert "exploratory, not a finding" in text
    assert "Hippocampus_L" not in text and "Precuneus_L" not in text
    assert "SAM supports 0 of 1 regions" in text
    assert "is not shown to separate the classes in any fold" in text
    cohort = " ".join(cohort_verdicts(ClaimsList([_claim("shap", "pooled", False, contrast="")])))
    assert "no SHAP claim is made" in cohort
