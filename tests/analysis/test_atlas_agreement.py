"""Regional claims across atlases (issue 21): GM-weighted overlaps and the agreement verdicts.

The toy grid is a row of 12 voxel columns (x = 0..11, two voxels each).  "AAL" has 2 regions (Left:
x < 6, Right: x >= 6); "AAL3" has 3 (L1: x < 4, Mid: 4 <= x < 8, R3: x >= 8), so Mid straddles AAL's
boundary; "HCPEx" has 2 regions cut at x = 3 and leaves x >= 10 unlabelled (background).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from latentbids.analysis import atlas_agreement as aa
from latentbids.analysis import atlas_verdicts as av
from latentbids.errors import UsageError

X = np.arange(12)[:, None, None] * np.ones((1, 2, 1), dtype=int)
AAL = np.where(X < 6, 1, 2)
AAL3 = np.select([X < 4, X < 8], [1, 2], 3)
HCP = np.select([X < 3, X < 10], [1, 2], 0)
NAMES = {"AAL": {1: "Left", 2: "Right"}, "AAL3": {1: "L1", 2: "Mid", 3: "R3"}, "HCPEx": {1: "H1", 2: "H2"}}
ATLASES = {"AAL": AAL, "AAL3": AAL3, "HCPEx": HCP}


def _claims(supported: dict, contrast="CN vs AD", family="lrcp", atlases=("AAL", "AAL3")) -> pd.DataFrame:
    """Every region of every atlas tested; ``supported``: atlas -> the region indices supported."""
    return pd.DataFrame([{"atlas": a, "contrast": contrast, "family": family, "region_index": i, "region": name,
                          "supported": i in supported.get(a, ())}
                         for a in atlases for i, name in NAMES[a].items()])


def _row(table, atlas, region, other):
    hit = table[(table["atlas"] == atlas) & (table["region"] == region) & (table["other_atlas"] == other)]
    assert len(hit) == 1, table
    return hit.iloc[0]


def test_overlap_rows_are_the_shares_of_each_region():
    m = aa.overlap_matrix(AAL, AAL3)
    expected = pd.DataFrame([[4 / 6, 2 / 6, 0.0], [0.0, 2 / 6, 4 / 6]], index=[1, 2], columns=[1, 2, 3])
    np.testing.assert_allclose(m.to_numpy(), expected.to_numpy())
    assert list(m.index) == [1, 2] and list(m.columns) == [1, 2, 3]
    np.testing.assert_allclose(m.sum(axis=1), 1.0)
    # HCPEx leaves x >= 10 unlabelled: 2 of Right's 6 columns lie in its background, so the row sums to 4/6
    h = aa.overlap_matrix(AAL, HCP)
    np.testing.assert_allclose(h.loc[2].to_numpy(), [0.0, 4 / 6])
    np.testing.assert_allclose(h.sum(axis=1).to_numpy(), [1.0, 4 / 6])
    # the reverse reading: Mid lies half in Left, half in Right
    np.testing.assert_allclose(aa.overlap_matrix(AAL3, AAL).loc[2].to_numpy(), [0.5, 0.5])


def test_gm_weights_discount_a_boundary_through_csf():
    w = np.ones(X.shape)
    w[(X == 4) | (X == 5)] = 0.05  # AAL3's Mid reaches into AAL's Left only through CSF
    m = aa.overlap_matrix(AAL3, AAL, weights=w)
    np.testing.assert_allclose(m.loc[2].to_numpy(), [0.1 / 2.1, 2 / 2.1])
    np.testing.assert_allclose(m.sum(axis=1), 1.0)
    w[X < 4] = 0.0  # L1 has no GM at all: it drops out of the rows; non-finite weights count 0
    w[X == 11] = np.nan
    m = aa.overlap_matrix(AAL3, AAL, weights=w)
    assert list(m.index) == [2, 3]
    np.testing.assert_allclose(m.loc[3].to_numpy(), [0.0, 1.0])


def test_an_effect_inside_one_region_of_both_atlases_holds_both_ways():
    table = aa.agreement_table({"AAL": AAL, "AAL3": AAL3}, _claims({"AAL": {1}, "AAL3": {1}}))
    assert len(table) == 2  # one row per supported finding and other atlas
    fwd, back = _row(table, "AAL", "Left", "AAL3"), _row(table, "AAL3", "L1", "AAL")
    assert fwd["holds"] and back["holds"]
    assert fwd["overlaps"] == "L1 (0.67); Mid (0.33)" and fwd["n_overlaps"] == 2
    assert fwd["supported_overlaps"] == "L1 (0.67)"
    assert fwd["supported_share"] == pytest.approx(4 / 6) and back["supported_share"] == pytest.approx(1.0)
    assert fwd["verdict"] == "holds in AAL3: L1 (0.67) supported"
    verdicts = av.finding_verdicts(table)
    assert verdicts.loc["lrcp Left (AAL, CN vs AD)", "verdict"] == "holds in AAL3"
    assert verdicts["n_holds"].tolist() == [1, 1] and verdicts["n_compared"].tolist() == [1, 1]
    matrix = av.agreement_matrix(table)
    assert list(matrix.columns) == ["AAL", "AAL3"] and matrix.to_numpy().tolist() == [[True, True], [True, True]]


def test_an_effect_straddling_a_boundary_is_only_in_the_atlas_whose_region_follows_it():
    table = aa.agreement_table({"AAL": AAL, "AAL3": AAL3}, _claims({"AAL3": {2}}))
    assert len(table) == 1  # AAL has no supported claim, so nothing is read the other way
    row = _row(table, "AAL3", "Mid", "AAL")
    assert pd.notna(row["holds"]) and not row["holds"]
    assert row["overlaps"] == "Left (0.50); Right (0.50)" and row["supported_share"] == 0.0
    assert row["verdict"] == "not in AAL: Left (0.50); Right (0.50), none supported"
    sentence = av.finding_verdicts(table).loc["lrcp Mid (AAL3, CN vs AD)", "verdict"]
    assert sentence == ("only in AAL3: the effect straddles a boundary of AAL "
                        "(AAL: Left (0.50); Right (0.50), none supported)")
    assert av.agreement_matrix(table).loc["lrcp Mid (AAL3, CN vs AD)"].tolist() == [False, True]


def test_a_claim_without_counterpart_is_its_own_row_in_each_direction():
    # AAL supports Right; AAL3 supports L1: neither has a supported counterpart in the other atlas
    table = aa.agreement_table({"AAL": AAL, "AAL3": AAL3}, _claims({"AAL": {2}, "AAL3": {1}}))
    assert sorted(zip(table["atlas"], table["region"], table["other_atlas"])) == [
        ("AAL", "Right", "AAL3"), ("AAL3", "L1", "AAL")]
    assert not table["holds"].any()
    right = _row(table, "AAL", "Right", "AAL3")
    assert right["overlaps"] == "R3 (0.67); Mid (0.33)"
    l1 = _row(table, "AAL3", "L1", "AAL")
    assert l1["verdict"] == "not in AAL: Left (1.00), not supported"
    verdicts = av.finding_verdicts(table)
    assert verdicts.loc["lrcp L1 (AAL3, CN vs AD)", "verdict"] == "only in AAL3 (AAL: Left (1.00), not supported)"
    assert (verdicts["n_holds"] == 0).all()


def test_three_atlases_partly_and_the_primary_comes_first():
    claims = _claims({"AAL": {1}, "AAL3": {1}, "HCPEx": {2}}, atlases=("AAL", "AAL3", "HCPEx"))
    table = aa.agreement_table(ATLASES, claims)
    # Left (x < 6) in HCPEx: H1 covers 3/6, H2 3/6; only H2 is supported, so it holds there too
    assert _row(table, "AAL", "Left", "HCPEx")["holds"]
    # L1 (x < 4) in HCPEx: H1 3/4 (not supported), H2 1/4 (supported)
    assert _row(table, "AAL3", "L1", "HCPEx")["supported_share"] == pytest.approx(0.25)
    claims = _claims({"AAL": {1}, "AAL3": {1}, "HCPEx": set()}, atlases=("AAL", "AAL3", "HCPEx"))
    table = aa.agreement_table(ATLASES, claims)
    sentence = av.finding_verdicts(table).loc["lrcp Left (AAL, CN vs AD)", "verdict"]
    assert sentence == ("partly: holds in AAL3, not in HCPEx "
                        "(HCPEx: H1 (0.50); H2 (0.50), none supported)")
    matrix = av.agreement_matrix(table)
    assert list(matrix.columns) == ["AAL", "AAL3", "HCPEx"]
    assert matrix.loc["lrcp Left (AAL, CN vs AD)"].tolist() == [True, True, False]


def test_an_atlas_that_cannot_answer_gives_na_not_false():
    claims = pd.concat([_claims({"AAL": {2}}, atlases=("AAL", "AAL3")),
                        _claims({}, atlases=("HCPEx",), family="sam")])
    table = aa.agreement_table(ATLASES, claims)
    hcp = _row(table, "AAL", "Right", "HCPEx")
    assert pd.isna(hcp["holds"]) and hcp["verdict"] == "not tested in HCPEx: no lrcp claims for CN vs AD"
    assert hcp["overlaps"] == "H2 (0.67)" and hcp["outside_share"] == pytest.approx(2 / 6)
    v = av.finding_verdicts(table).loc["lrcp Right (AAL, CN vs AD)"]
    assert v["n_compared"] == 1 and v["verdict"].endswith("; not tested in HCPEx: no lrcp claims for CN vs AD")
    assert pd.isna(av.agreement_matrix(table).loc["lrcp Right (AAL, CN vs AD)", "HCPEx"])
    # a region of the other atlas that is absent from the grid: not comparable either
    only_bg = {"AAL": AAL, "Cortex": np.where(X < 6, 1, 0)}
    names = {"atlas": "Cortex", "contrast": "CN vs AD", "family": "lrcp", "region_index": 1, "region": "C1",
             "supported": False}
    claims = pd.concat([_claims({"AAL": {2}}, atlases=("AAL",)), pd.DataFrame([names])])
    row = _row(aa.agreement_table(only_bg, claims), "AAL", "Right", "Cortex")
    assert pd.isna(row["holds"]) and row["verdict"].startswith("not comparable: no region of Cortex covers Right")


def test_families_contrasts_and_folds_are_kept_apart():
    lrcp = _claims({"AAL": {1}, "AAL3": {1}})
    sam = _claims({"AAL3": {1}}, family="sam")
    other = _claims({"AAL3": {1}}, contrast="CN vs MCI")
    fold2 = _claims({"AAL": {2}})  # a second fold of the same claims: Right is supported in one fold
    unit = pd.DataFrame([{"atlas": "", "contrast": "CN vs AD", "family": "unit", "region_index": np.nan,
                          "region": "", "supported": True}])  # not regional: ignored
    table = aa.agreement_table({"AAL": AAL, "AAL3": AAL3}, pd.concat([lrcp, sam, other, fold2, unit]))
    found = set(zip(table["family"], table["contrast"], table["atlas"], table["region"]))
    assert found == {("lrcp", "CN vs AD", "AAL", "Left"), ("lrcp", "CN vs AD", "AAL3", "L1"),
                     ("lrcp", "CN vs AD", "AAL", "Right"), ("sam", "CN vs AD", "AAL3", "L1"),
                     ("lrcp", "CN vs MCI", "AAL3", "L1")}
    sam_row = _row(table[table["family"] == "sam"], "AAL3", "L1", "AAL")
    assert pd.notna(sam_row["holds"]) and not sam_row["holds"]  # AAL's Left is supported for lrcp, not sam


def test_min_overlap_and_the_inside_rule_pick_the_counterparts():
    # Left (x < 6) vs AAL3: Mid covers 1/3 of it, so min_overlap = 0.4 leaves only L1 ...
    table = aa.agreement_table({"AAL": AAL, "AAL3": AAL3}, _claims({"AAL": {1}, "AAL3": {2}}), min_overlap=0.4)
    left = _row(table, "AAL", "Left", "AAL3")
    assert left["overlaps"] == "L1 (0.67)" and pd.notna(left["holds"]) and not left["holds"]
    assert left["supported_share"] == pytest.approx(1 / 3)  # ... though Mid's overlap still counts here
    # ... but a fine region lying wholly inside a coarse one is its counterpart however small
    fine = np.where(X == 0, 1, np.where(X < 12, 2, 0))
    claims = pd.DataFrame([
        {"atlas": "Coarse", "contrast": "c", "family": "sam", "region_index": 1, "region": "All", "supported": True},
        {"atlas": "Fine", "contrast": "c", "family": "sam", "region_index": 1, "region": "Tip", "supported": True},
        {"atlas": "Fine", "contrast": "c", "family": "sam", "region_index": 2, "region": "Rest", "supported": False}])
    table = aa.agreement_table({"Coarse": np.ones_like(X), "Fine": fine}, claims, min_overlap=0.2)
    row = _row(table, "Coarse", "All", "Fine")
    assert row["holds"] and row["overlaps"] == "Rest (0.92); Tip (0.08)"


def test_bad_inputs_are_usage_errors():
    with pytest.raises(UsageError, match="common grid"):
        aa.agreement_table({"AAL": AAL, "AAL3": AAL3[:6]}, _claims({}))
    with pytest.raises(UsageError, match="supported"):
        aa.agreement_table({"AAL": AAL}, _claims({}).drop(columns="supported"))
    with pytest.raises(UsageError, match="AAL3"):
        aa.agreement_table({"AAL": AAL}, _claims({"AAL3": {1}}))
    with pytest.raises(UsageError, match="integer"):
        aa.overlap_matrix(AAL + 0.5, AAL3)
    with pytest.raises(UsageError, match="GM weights"):
        aa.overlap_matrix(AAL, AAL3, weights=np.ones(3))
    empty = aa.agreement_table({"AAL": AAL}, _claims({"AAL": {1}}, atlases=("AAL",)))
    assert empty.empty and list(empty.columns) == list(aa.TABLE_COLUMNS)
    assert av.finding_verdicts(empty).empty and av.agreement_matrix(empty).empty


def _shap(atlas, family, item, supported, statistic=0.2):
    from latentbids.analysis.claims import Claim

    return Claim("", family, item, "stat", statistic, 0.01, np.nan, "test", supported, atlas=atlas)


def test_shap_statements_are_compared_by_model_not_by_overlap():
    """A SHAP claim is about the cohort: the same model made from each atlas's regions; the primary's model
    claims carry no atlas; a statement supported nowhere says nothing."""
    claims = [_shap("", "shap", "pooled", True, 0.21), _shap("", "shap", "CN", False),
              _shap("AAL3", "shap", "pooled", True, 0.18), _shap("AAL3", "shap", "CN", False),
              _shap("HCPEx", "shap", "pooled", False, float("nan")), _shap("HCPEx", "shap", "CN", False),
              _shap("AAL", "shap_regions", "Left, Right", True), _shap("AAL3", "shap_regions", "L1, R3", False)]
    lines = av.shap_atlas_verdicts(claims, ["AAL", "AAL3", "HCPEx"])
    assert lines == [
        "Atlas check, SHAP surrogate pooled: supported in AAL (CV R^2 0.21) and AAL3 (CV R^2 0.18); "
        "not in HCPEx (not fitted).",
        "Atlas check, top SHAP regions, held out: supported in AAL (Left, Right); not in AAL3 (L1, R3); "
        "not made in HCPEx."]
    assert av.shap_atlas_verdicts([c for c in claims if not c.supported], ["AAL", "AAL3", "HCPEx"]) == []


def test_the_agreement_figure_codes_each_cell_and_draws():
    from latentbids.reports.group.figure_atlases import atlas_agreement_codes, atlas_agreement_figure

    claims = _claims({"AAL": {1}, "AAL3": {1}, "HCPEx": set()}, atlases=("AAL", "AAL3", "HCPEx"))
    table = aa.agreement_table(ATLASES, claims)
    codes = atlas_agreement_codes(table)
    # own atlas 3, holds 2, does not hold 1
    assert codes.loc["lrcp Left (AAL, CN vs AD)"].tolist() == [3, 2, 1]
    assert codes.loc["lrcp L1 (AAL3, CN vs AD)"].tolist() == [2, 3, 1]
    assert isinstance(atlas_agreement_figure(table), str) and atlas_agreement_figure(table.iloc[:0]) is None


def test_nearly_the_same_region_unsupported_is_a_difference_of_the_test_not_of_the_boundary():
    """AALb's Left2 (x < 5) is 5/6 of AAL's Left and lies wholly inside it: nearly the same region.  A finding in
    Left that Left2 does not carry says the two tests differ (power at eta/n, chance), not the boundary; a region
    split in two (AAL3's Mid across Left/Right) still says it straddles a boundary."""
    aalb = np.where(X < 5, 1, 2)
    names = {**NAMES, "AALb": {1: "Left2", 2: "Right2"}}
    claims = pd.DataFrame([{"atlas": a, "contrast": "CN vs AD", "family": "lrcp", "region_index": i, "region": n,
                            "supported": (a, i) in {("AAL", 1), ("AAL3", 2)}}
                           for a in ("AAL", "AALb", "AAL3") for i, n in names[a].items()])
    table = aa.agreement_table({"AAL": AAL, "AALb": aalb, "AAL3": AAL3}, claims)
    row = _row(table, "AAL", "Left", "AALb")
    assert row["same_region"] == "Left2" and not row["holds"]
    assert row["verdict"] == ("not in AALb: Left2 (0.83) is nearly the same region and not supported (a difference "
                              "of the test, its power or chance, not of the boundary)")
    assert _row(table, "AAL", "Left", "AAL3")["same_region"] == ""  # L1 is 4/6 of Left: not the same region
    verdicts = av.finding_verdicts(table)
    assert verdicts.loc["lrcp Left (AAL, CN vs AD)", "depends_on_atlas"] == "partly"  # holds in AAL3 (L1, Mid)
    assert verdicts.loc["lrcp Left (AAL, CN vs AD)", "verdict"].endswith(
        "none supported: nearly the same region, so a difference of the test, not of the boundary)")
    assert verdicts.loc["lrcp Mid (AAL3, CN vs AD)", "depends_on_atlas"] == "partly"  # AAL's Left holds it
    only_b = aa.agreement_table({"AAL": AAL, "AALb": aalb}, claims[claims["atlas"] != "AAL3"])
    v = av.finding_verdicts(only_b).loc["lrcp Left (AAL, CN vs AD)"]
    assert v["depends_on_atlas"] == "not replicated"
    assert v["verdict"].startswith("not replicated in AALb, where nearly the same region is not supported")
    split = av.finding_verdicts(aa.agreement_table({"AAL": AAL, "AAL3": AAL3}, _claims({"AAL3": {2}})))
    assert split.loc["lrcp Mid (AAL3, CN vs AD)", "depends_on_atlas"] == "yes"
    held = av.finding_verdicts(aa.agreement_table({"AAL": AAL, "AAL3": AAL3}, _claims({"AAL": {1}, "AAL3": {1}})))
    assert set(held["depends_on_atlas"]) == {"no"}


def test_the_primary_findings_are_counted_by_their_dependence_on_the_atlas():
    claims = _claims({"AAL": {1, 2}, "AAL3": {1}}, atlases=("AAL", "AAL3"))
    verdicts = av.finding_verdicts(aa.agreement_table({"AAL": AAL, "AAL3": AAL3}, claims))
    # Left holds (L1); Right's counterparts R3 and Mid are not supported: Right depends on AAL
    assert av.dependence_summary(verdicts, "AAL") == ("Atlas check, AAL's 2 regional findings: 1 holds in every "
                                                      "other atlas, 1 in AAL only (the finding depends on the atlas).")
    assert av.dependence_summary(verdicts, "HCPEx") is None and av.dependence_summary(verdicts.iloc[:0], "AAL") is None
