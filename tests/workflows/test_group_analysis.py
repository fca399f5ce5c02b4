"""The group-level analysis on a trained synthetic cohort with a planted regional GM loss.

Ground truth: 40 subjects, 20 CN and 20 AD, AD with 30 % less GM in region 1 of an 8-region atlas
and nothing else.  The analysis must find region 1 (SAM, the region test behind LRCP), must not call the
whole latent vector significant at this n (the cautionary bound), must support no claim about labels that
carry no effect (and present no map as a finding), and must survive a failing section with its failure
recorded.  Every assertion on verdicts reads the claims list of ``analysis.json``.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
from model_testdata import make_cohort, sloppy_config, toy_template  # noqa: E402

from latentbids.analysis.claims import ClaimsList  # noqa: E402
from latentbids.resources import Atlas  # noqa: E402
from latentbids.settings import group_settings
from latentbids.utils.staging import StagedFolder  # noqa: E402
from latentbids.workflows.group.analysis.run import run_group_analysis, validate_analysis_request  # noqa: E402
from latentbids.workflows.group.result import GroupLevelResult  # noqa: E402
from latentbids.workflows.group.training import train_and_encode  # noqa: E402

torch.set_num_threads(1)


def octant_atlas(template) -> Atlas:
    """8 regions: the brain split in octants; region 1 is the one make_cohort shrinks in AD."""
    mask = np.asarray(template.mask.dataobj) > 0
    x, y, z = np.indices(mask.shape)
    hx, hy, hz = (s // 2 for s in mask.shape)
    lab = np.zeros(mask.shape, dtype=np.int16)
    # region 1 = make_cohort's planted region (x < half, y < half: both z halves)
    lab[mask & (x < hx) & (y < hy)] = 1
    k = 2
    for xs in (x < hx, x >= hx):
        for ys in (y < hy, y >= hy):
            for zs in (z < hz, z >= hz):
                sel = mask & xs & ys & zs & (lab == 0)
                if sel.any():
                    lab[sel] = k
                    k += 1
    names = [f"Region{i}" for i in range(1, k)]
    labels = pd.DataFrame({"index": list(range(1, k)), "name": names})
    return Atlas(name="octants", img=nib.Nifti1Image(lab, template.affine), labels=labels, source="synthetic")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("analysis")
    tpl = toy_template()
    atlas = octant_atlas(tpl)
    rec = make_cohort(tmp / "gm", tpl, n_subjects=40, seed=3, two_sessions=())
    rng = np.random.default_rng(5)
    rec["sham"] = rng.permutation(["A"] * 20 + ["B"] * 20)  # labels with no effect behind them
    rec["site"] = "one"
    config = sloppy_config(tmp, latent_dim=8)
    result = train_and_encode(group_settings(config), rec, tpl, atlas)
    return tmp, tpl, atlas, rec, config, result


def _analyse(trained, **analysis):
    tmp, tpl, atlas, rec, config, result = trained
    for key, value in analysis.items():
        setattr(config.analysis, key, value)
    try:
        validate_analysis_request(config.analysis, rec)
        return run_group_analysis(group_settings(config), result, atlas)
    finally:
        config.analysis = type(config.analysis)()


def _read(path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t")


def _claims(res) -> ClaimsList:
    """The claims as written to analysis.json (what a reviewer reads)."""
    return ClaimsList.from_json(json.loads(Path(res.analysis_json).read_text())["Claims"])


def _region_voxels(atlas, region) -> np.ndarray:
    return np.asarray(atlas.img.dataobj) == region


@pytest.mark.slow
def test_planted_region_found_and_latent_vector_not_overclaimed(trained):
    tmp, tpl, atlas, rec, config, result = trained
    res = _analyse(trained)
    assert res.failures == {}
    claims = _claims(res)
    files = res.files
    # SAM: region 1 is supported (bound and family-wise permutation p agree), no other region
    assert claims.supported_items("sam", "CN vs AD") == ["Region1"]
    sam = _read(files["CNvsAD_sam"]).set_index("region_index")
    assert sam.loc[1, "supported"] and sam["accuracy"].idxmax() == 1
    assert "p_z" not in sam.columns and "z" not in sam.columns  # the z-test across regions is no p-value
    # the region family: only region 1's GM separates the classes
    assert claims.supported_items("region", "CN vs AD") == ["Region1"]
    # LRCP: only the planted region can be LRCP-positive, and only through a relevant unit
    lrcp = claims.supported_items("lrcp", "CN vs AD")
    assert set(lrcp) <= {"Region1"}
    if lrcp:
        assert claims.select("unit", "CN vs AD", supported=True)
    # the paper's in-sample bound on the 8-unit latent vector cannot pass at n = 40, whatever its accuracy ...
    bound = claims.select("vector_bound", "CN vs AD")
    assert len(bound) == 3 and not any(c.supported for c in bound)
    assert all(c.bound < 0.5 for c in bound)  # acc - Delta(40, 8, eta/3) is below chance
    # ... while the out-of-sample test over the folds finds the planted effect the latent space carries
    [vector] = claims.select("latent_vector", "CN vs AD")
    assert vector.supported and vector.statistic >= 0.7 and vector.p <= 0.05 and vector.fold == ""
    tests = _read(files["CNvsAD_tests"])
    assert (tests.loc[tests["test"].str.startswith("latent vector (d"), "delta"] > 0.4).all()
    # every supported claim is in the headline, nothing else is
    for c in claims.select(supported=True):
        if c.family in ("lrcp", "pc1", "shap"):
            assert c.item in res.headline
    assert "Region2" not in res.headline
    # the finding map paints the supported LRCP regions only; the full ranking is an exploratory map
    if lrcp:
        data = np.asarray(nib.load(files["CNvsAD_lrcp_map"]).dataobj)
        assert data.shape == tpl.shape and (data[~_region_voxels(atlas, 1)] == 0).all() and data.max() > 0
    else:
        assert "CNvsAD_lrcp_map" not in files
    side = json.loads(Path(files["CNvsAD_lrcp_map_exploratory"].replace(".nii.gz", ".json")).read_text())
    assert side["Exploratory"] is True and "not a finding" in side["Note"]
    assert "exploratory" in Path(files["CNvsAD_lrcp_map_exploratory"]).name
    summary = json.loads(Path(res.analysis_json).read_text())
    assert summary["Contrasts"] == ["CN:AD"] and summary["Failures"] == {} and summary["Headline"] == res.headline
    claims_tsv = _read(files["claims"])
    assert len(claims_tsv) == len(claims) and claims_tsv["supported"].sum() == len(claims.select(supported=True))
    html = res.report.read_text()
    assert "CN vs AD" in html and "data:image/png;base64" in html and res.headline in html


@pytest.mark.slow
def test_projections_fit_on_training_rows_only(trained):
    tmp, tpl, atlas, rec, config, result = trained
    res = _analyse(trained, contrasts=["CN:AD"])
    proj = _read(res.files["projections"])
    assert set(proj["fold"].astype(str)) == {"1", "2", "3"}
    assert len(proj) == 3 * len(rec)
    ref = proj[proj["fold"].astype(str) == "1"]
    for col in ("pca1", "pca2", "tsne1", "umap1", "pls1"):
        assert ref[col].notna().all(), col
    # t-SNE/UMAP only for the reference fold
    assert proj[proj["fold"].astype(str) != "1"]["tsne1"].isna().all()
    # held-out rows of each fold are transformed, not fitted: every subject is held out exactly once
    held = proj[proj["role"] == "test"]
    assert sorted(held["participant_id"]) == sorted(rec["participant_id"])


@pytest.mark.slow
def test_labels_without_effect_support_no_claim_and_no_finding_map(trained):
    res = _analyse(trained, label_column="sham")
    assert res.failures == {}
    claims = _claims(res)
    tested = claims.select(contrast="A vs B")
    assert {c.family for c in tested} == {"unit", "region", "lrcp", "sam", "latent_vector", "vector_bound", "rub"}
    assert not [c for c in tested if c.supported]
    assert not any(k.startswith("AvsB_lrcp_map") and "exploratory" not in k for k in res.files)
    assert "A vs B" not in res.headline
    sam = _read(res.files["AvsB_sam"])
    assert not sam["supported"].any()
    # with no relevant unit the LRCP ranking is exploratory, and the verdict says why
    if not claims.select("unit", "A vs B", supported=True):
        assert all(c.exploratory for c in claims.select("lrcp", "A vs B"))
        assert any("no single latent unit was shown to carry this contrast" in v for v in res.verdicts)
    assert not any("no detectable information" in v or "no information" in v for v in res.verdicts)


@pytest.mark.slow
def test_one_label_skips_the_supervised_parts(trained):
    res = _analyse(trained, label_column="site")
    assert res.failures == {}
    assert not any("_lrcp" in k for k in res.files)
    assert res.skipped["lrcp"].startswith("no contrast")
    assert not _claims(res).select("unit") and "projections" in res.files and "shap_fits" in res.files
    html = res.report.read_text()
    assert "LRCP not computed: no contrast" in html


def test_bad_requests_fail_before_training(trained):
    from latentbids.errors import UsageError

    tmp, tpl, atlas, rec, config, result = trained
    config.analysis.contrasts = ["CN:XX"]
    with pytest.raises(UsageError, match="no subject has the label 'XX'"):
        validate_analysis_request(config.analysis, rec)
    for bad, match in ((dict(label_column="diagnosis"), "no such column"), (dict(confounds=["weight"]), "weight"),
                       (dict(family_correction="none"), "family_correction"),
                       (dict(n_permutations=10), "cannot give p <= eta")):
        with pytest.raises(UsageError, match=match):  # a bad choice is refused when it is set (config checks)
            config.analysis = type(config.analysis)(**bad)
            validate_analysis_request(config.analysis, rec)
    config.analysis = type(config.analysis)()


@pytest.mark.slow
def test_a_failing_section_is_reported_and_the_rest_is_written(trained, monkeypatch):
    import latentbids.workflows.group.analysis.shap_section as shap_section

    def broken(*args, **kwargs):
        raise RuntimeError("surrogate exploded")

    monkeypatch.setattr(shap_section, "explain_error", broken)
    res = _analyse(trained)
    assert set(res.failures) == {"shap"}
    assert "CNvsAD_sam" in res.files and Path(res.files["projections"]).is_file()
    assert any("shap analysis failed" in v for v in res.verdicts)
    assert not _claims(res).select("shap") and res.report.is_file()


@pytest.mark.slow
def test_confounds_are_regressed_out_of_the_tests(trained):
    """A confound equal to region 1's own mean GM removes region 1's group difference from G."""
    tmp, tpl, atlas, rec, config, result = trained
    from latentbids.analysis.cohort import regional_means

    G, _ = regional_means(result.data, result.atlas_box, [1], result.mask_box)
    rec = rec.assign(r1=G[:, 0])
    result = dataclasses.replace(result, records=result.records.assign(r1=G[:,
                                                                            0]))  # as participants.tsv would carry it
    plain = _analyse((tmp, tpl, atlas, rec, config, result))
    adjusted = _analyse((tmp, tpl, atlas, rec, config, result), confounds=["r1"])
    assert adjusted.failures == {}
    before = plain.contrasts[0].lrcp.region_tests_.set_index("region_index").loc[1]
    after = adjusted.contrasts[0].lrcp.region_tests_.set_index("region_index").loc[1]
    assert before["discriminates"] and not after["discriminates"]
    assert after["statistic"] < 0.6 < before["statistic"]
    assert "Region1" not in _claims(adjusted).supported_items("sam", "CN vs AD")
    sidecar = json.loads(Path(adjusted.files["CNvsAD_lrcp_association"]).with_suffix(".json").read_text())
    assert sidecar["Confounds"] == ["r1"]


@pytest.mark.slow
def test_a_rerun_replaces_the_earlier_analysis_as_a_whole(trained):
    """The group set is swapped in whole (as ``run_group`` does it): no file of the earlier analysis survives
    beside the new one, and the earlier set stands untouched until the swap."""
    tmp, tpl, atlas, rec, config, result = trained
    first = _analyse(trained)
    stale = Path(first.files["CNvsAD_sam"])
    assert stale.is_file()
    with StagedFolder(stale.parent) as staged:
        staged_result = dataclasses.replace(result, group_dir=staged.path)
        second = _analyse((tmp, tpl, atlas, rec, config, staged_result), label_column="sham")
        assert stale.is_file() and not Path(second.files["AvsB_sam"]).is_relative_to(stale.parent)
        staged.commit()
    assert not stale.is_file() and not list(stale.parent.glob("*CNvsAD*"))
    assert staged.final(second.files["AvsB_sam"]).is_file()
    files = json.loads((stale.parent / "analysis.json").read_text())["Files"]
    assert all(not str(v).startswith("group/.") for v in files.values())  # final paths, not the staging folder


@pytest.mark.slow
def test_subjects_not_sessions_are_the_units_of_the_tests(tmp_path):
    """Two sessions of one subject must not count twice (they would leak through every CV and inflate n)."""
    tpl = toy_template()
    atlas = octant_atlas(tpl)
    rec = make_cohort(tmp_path / "gm", tpl, n_subjects=12, seed=1, two_sessions=("sub-01", "sub-02"))
    config = sloppy_config(tmp_path, latent_dim=4)
    result = train_and_encode(group_settings(config), rec, tpl, atlas)
    res = run_group_analysis(group_settings(config), result, atlas)
    assert res.failures == {}
    summary = json.loads(Path(res.analysis_json).read_text())
    assert any("2 subject(s) have several sessions" in note for note in summary["Notes"])
    lrcp = json.loads(Path(res.files["CNvsAD_lrcp_association"]).with_suffix(".json").read_text())
    assert len(rec) == 14 and lrcp["n"] == 12
    assert len(pd.read_csv(result.latent_tsv, sep="\t")) == 14  # the latent table keeps every session


def _duplicated(result: GroupLevelResult) -> GroupLevelResult:
    """The group result with every map duplicated as a second session (same latent codes, same map)."""
    def twice(table: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([table.assign(session_id="ses-1"), table.assign(session_id="ses-2")], ignore_index=True)

    return dataclasses.replace(result, records=twice(result.records), fold_latents=twice(result.fold_latents),
                               latent_table=twice(result.latent_table),
                               data=np.concatenate([np.asarray(result.data)] * 2))


@pytest.mark.slow
def test_pc1_is_unchanged_when_every_subject_has_a_duplicate_second_session(trained, tmp_path):
    tmp, tpl, atlas, rec, config, result = trained
    from latentbids.settings import group_settings
    from latentbids.workflows.group.analysis.inputs import build_inputs
    from latentbids.workflows.group.analysis.projections import run_projections

    run = group_settings(config)
    settings = run.analysis
    single = run_projections(build_inputs(run, result, atlas), settings, 7).result.pc1
    doubled = _duplicated(result)
    double = run_projections(build_inputs(run, doubled, atlas), settings, 7).result.pc1
    pd.testing.assert_frame_equal(single, double, check_exact=False, atol=1e-6)
    assert (single["n"].max() == 40)


def quadrant_atlas(template) -> Atlas:
    """A second parcellation: 4 quadrants (LeftFront = the planted region), a coarser cut of the same brain."""
    mask = np.asarray(template.mask.dataobj) > 0
    x, y = np.indices(mask.shape)[:2]
    hx, hy = mask.shape[0] // 2, mask.shape[1] // 2
    lab = np.zeros(mask.shape, dtype=np.int16)
    for k, sel in enumerate(((x < hx) & (y < hy), (x >= hx) & (y < hy), (x < hx) & (y >= hy), (x >= hx) & (y >= hy))):
        lab[mask & sel] = k + 1
    labels = pd.DataFrame({"index": [1, 2, 3, 4], "name": ["LeftFront", "RightFront", "LeftBack", "RightBack"]})
    return Atlas(name="quadrants", img=nib.Nifti1Image(lab, template.affine), labels=labels, source="synthetic")


@pytest.mark.slow
def test_a_second_atlas_reads_the_same_latents_and_says_what_survives(trained):
    """The planted region is found in the primary atlas (octants) and in the sensitivity atlas (quadrants:
    LeftFront is the same voxels); the agreement table says it holds; the sensitivity claims are written
    under the atlas's own name at eta / 1 and never enter the primary's claims; the sham labels add none."""
    tmp, tpl, atlas, rec, config, result = trained
    res = run_group_analysis(group_settings(config), result, atlas, [quadrant_atlas(tpl)])
    assert not res.failures, res.failures
    primary = res.claims.frame()
    assert set(primary.loc[primary["family"].isin(["region", "lrcp", "sam"]), "atlas"]) == {"octants"}
    assert "quadrants" not in set(primary["atlas"])  # sensitivity claims stay out of the primary's verdicts
    found = primary[primary["supported"] & (primary["family"] == "region")]["item"].tolist()
    assert found == ["Region1"]
    sens = pd.read_csv(res.files["atlas-quadrants_claims"], sep="\t")
    assert "atlas-quadrants" in Path(res.files["atlas-quadrants_claims"]).name
    assert set(sens["atlas"]) == {"quadrants"}
    assert set(sens["family"]) == {"region", "lrcp", "sam", "shap", "shap_regions", "sar"}  # SHAP per atlas too
    supported = sens[sens["supported"].astype(bool) & (sens["contrast"].fillna("") != "")]
    assert set(supported["item"]) == {"LeftFront"} and set(supported["contrast"]) == {"CN vs AD"}
    sens_files = {k for k in res.files if k.startswith("atlas-quadrants_")}
    assert {"atlas-quadrants_shap_fits", "atlas-quadrants_CNvsAD_lrcp_consensus"} <= sens_files
    assert all("atlas-quadrants" in Path(res.files[k]).name for k in sens_files)
    # the latent vector's tests do not depend on the atlas: made once, in the primary
    assert not any(k.endswith("_tests") for k in sens_files) and "CNvsAD_tests" in res.files
    assert set(sens["family"]).isdisjoint({"latent_vector", "unit", "rub"})
    shap_fits = pd.read_csv(res.files["atlas-quadrants_shap_fits"], sep="\t")
    primary_fits = pd.read_csv(res.files["shap_fits"], sep="\t")
    assert len(shap_fits) and shap_fits["model"].tolist() == primary_fits["model"].tolist()
    table = pd.read_csv(res.files["atlas_agreement"], sep="\t")
    region = table[(table["family"] == "region") & (table["atlas"] == "octants")]
    assert region["holds"].astype(bool).all() and set(region["other_atlas"]) == {"quadrants"}
    assert any(v.startswith("Atlas check, region Region1") and "holds in quadrants" in v for v in res.verdicts)
    summary = [v for v in res.verdicts if v.startswith("Atlas check, octants's")]
    assert len(summary) == 1 and summary[0].endswith("hold in every other atlas.")  # the planted region's findings
    verdict_table = pd.read_csv(res.files["atlas_verdicts"], sep="\t")
    assert set(verdict_table.loc[verdict_table["atlas"] == "octants", "depends_on_atlas"]) == {"no"}
    assert res.atlas_agreement is not None and len(res.atlas_agreement) and res.atlas_verdicts
    html = Path(res.report).read_text()
    assert "<h3>Across atlases</h3>" in html and "holds in quadrants" in html
    assert 'alt="Atlas agreement: where each regional finding holds"' in html and "failed to render" not in html
    # no unit is supported in the reference fold of this small sloppy model: no reference map, and it says why
    assert not any("voxel" in k for k in res.files)
    assert any("no latent unit supported in fold 1, so no atlas-free reference map" in n for n in res.notes)

    config.analysis.label_column = "sham"  # labels with no effect behind them: no atlas adds a claim
    config.analysis.shap_every_atlas = False  # and SHAP from the primary's regions only
    try:
        null = run_group_analysis(group_settings(config), result, atlas, [quadrant_atlas(tpl)])
    finally:
        config.analysis = type(config.analysis)()
    sens = pd.read_csv(null.files["atlas-quadrants_claims"], sep="\t")
    about_labels = sens["contrast"].fillna("") != ""
    assert about_labels.sum() and not sens.loc[about_labels, "supported"].astype(bool).any()
    assert not any(v.startswith("Atlas check") and " vs " in v for v in null.verdicts)
    # SHAP per atlas: the planted region drives the error through either atlas's regions; turned off, none
    top = [v for v in res.verdicts if v.startswith("Atlas check, top SHAP regions")]
    assert top and "quadrants (LeftFront" in top[0]  # the planted region's GM drives the error in both atlases
    assert not any(v.startswith("Atlas check, top SHAP") for v in null.verdicts)
    assert not set(sens["family"]) & {"shap", "shap_regions", "sar"} and "shap_fits" in null.files
    assert not any(k.startswith("atlas-quadrants_shap") for k in null.files)


@pytest.mark.slow
def test_the_atlas_free_reference_maps_the_voxels_a_relevant_unit_tracks(trained, tmp_path):
    """Given a relevant unit (the one whose code tracks the planted region's GM most), the reference map is
    family-wise over voxels and units, lands in the planted region, and each atlas's regions are summarised."""
    from latentbids.analysis.claims import Claim
    from latentbids.workflows.group.analysis.atlases import inputs_for_atlas
    from latentbids.workflows.group.analysis.contrast import contrast_rows
    from latentbids.workflows.group.analysis.inputs import build_inputs
    from latentbids.workflows.group.analysis.voxel_reference import run_voxel_reference, write_voxel_reference

    tmp, tpl, atlas, rec, config, result = trained
    run = group_settings(config)
    inp = dataclasses.replace(build_inputs(run, result, atlas), analysis_dir=tmp_path)
    rows, _ = contrast_rows(inp, "CN", "AD")
    Z = inp.fold_Z[inp.reference_fold][0][rows]
    region1 = inp.G[rows][:, list(inp.regions["name"]).index("Region1")]
    unit = int(np.argmax([abs(np.corrcoef(Z[:, k], region1)[0, 1]) for k in range(Z.shape[1])]))
    claims = ClaimsList([Claim("CN vs AD", "unit", f"z{unit}", "Welch |t|", 1.0, 0.01, np.nan, "test", True,
                               fold=inp.reference_fold)])
    contrast = type("C", (), {"labels": ("CN", "AD"), "name": "CN vs AD", "desc": "CNvsAD"})()
    inputs = {"octants": inp, "quadrants": inputs_for_atlas(inp, quadrant_atlas(tpl), result)}
    section = run_voxel_reference(inp, run.analysis, 3, contrast, claims, inputs)
    assoc = section.result
    assert assoc is not None and assoc.n_units == 1 and assoc.supported.any()
    quadrants = section.tables["quadrants"].set_index("region")
    assert quadrants["fraction_supported"].idxmax() == "LeftFront"  # the planted quadrant
    files = write_voxel_reference(inp, contrast, section)
    stat = nib.load(files["CNvsAD_voxel_association"]).get_fdata()
    assert stat.shape == tpl.shape and int((stat > 0).sum()) == int(assoc.supported.sum())
    assert "atlas-quadrants" in Path(files["CNvsAD_voxel_regions_quadrants"]).name


def test_a_sensitivity_atlas_can_reject_wherever_the_primary_could():
    """eta / n per sensitivity atlas, and every permutation count raised until its smallest p reaches it as
    far as the primary's reached eta; a count the primary could not use either is not inflated beyond that."""
    from latentbids.config import AnalysisConfig
    from latentbids.workflows.group.analysis.atlases import PERMUTATION_TESTS, sensitivity_settings

    primary = AnalysisConfig(sam_permutations=20, shap_permutations=5)  # --sloppy's counts
    for n in (1, 2, 3):
        s, notes = sensitivity_settings(primary, n)
        assert s.eta == pytest.approx(primary.eta / n)
        for key, tests in PERMUTATION_TESTS.items():
            b, b_s = getattr(primary, key), getattr(s, key)
            if tests / (b + 1) <= primary.eta:  # the primary can reject: so can the sensitivity atlas
                assert tests / (b_s + 1) <= s.eta + 1e-12, (key, n, b_s)
            else:  # it cannot: the sensitivity atlas is as far from it, no further
                assert tests / (b_s + 1) <= tests / (b + 1) / n + 1e-12
        assert (n == 1) == (not notes)
    s, notes = sensitivity_settings(primary, 2)
    assert (s.sam_permutations, s.shap_permutations, s.n_permutations) == (39, 11, primary.n_permutations)
    assert notes == ["sam_permutations 20 -> 39 (eta / 2 = 0.025)", "shap_permutations 5 -> 11 (eta / 2 = 0.025)"]


@pytest.mark.slow
def test_a_sensitivity_atlas_whose_shap_fails_keeps_its_regional_claims_and_the_agreement(trained, monkeypatch):
    from latentbids.workflows.group.analysis import shap_section

    tmp, tpl, atlas, rec, config, result = trained
    real = shap_section.run_shap

    def flaky(inp, *args, **kwargs):
        if inp.atlas_bids_name == "quadrants":
            raise MemoryError("simulated")
        return real(inp, *args, **kwargs)

    monkeypatch.setattr(shap_section, "run_shap", flaky)
    res = run_group_analysis(group_settings(config), result, atlas, [quadrant_atlas(tpl)])
    assert res.failures == {"shap atlas-quadrants": "MemoryError: simulated"}
    assert any("The shap atlas-quadrants analysis failed" in v for v in res.verdicts)
    sens = pd.read_csv(res.files["atlas-quadrants_claims"], sep="\t")
    assert set(sens["family"]) == {"region", "lrcp", "sam"} and "shap_fits" in res.files
    assert any(v.startswith("Atlas check, region Region1") for v in res.verdicts)
