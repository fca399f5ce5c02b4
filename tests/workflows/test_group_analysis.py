"""The group-level analysis on a trained synthetic cohort with a planted regional GM loss.

Ground truth: 40 subjects, 20 CN and 20 AD, AD with 30 % less GM in region 1 of an 8-region atlas
and nothing else.  The analysis must find region 1 (SAM, the regional accuracy behind LRCP), must not
call the whole latent vector significant at this n (the cautionary bound), must find nothing with
labels that carry no effect, and must survive a failing section with exit-worthy failures recorded.
"""
from __future__ import annotations

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

from latentbids.resources import Atlas  # noqa: E402
from latentbids.workflows.group import run_group_level  # noqa: E402
from latentbids.workflows.group_analysis import run_group_analysis, validate_analysis_request  # noqa: E402

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
    result = run_group_level(config, rec, tpl, atlas)
    return tmp, tpl, atlas, rec, config, result


def _analyse(trained, **analysis):
    tmp, tpl, atlas, rec, config, result = trained
    for key, value in analysis.items():
        setattr(config.analysis, key, value)
    try:
        validate_analysis_request(config, rec)
        return run_group_analysis(config, rec, result, atlas)
    finally:
        config.analysis = type(config.analysis)()


def _read(path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t")


def test_planted_region_found_and_latent_vector_not_overclaimed(trained):
    tmp, tpl, atlas, rec, config, result = trained
    res = _analyse(trained)
    assert res["failures"] == {}
    files = res["files"]
    out = Path(config.execution.output_dir)
    # SAM: region 1 is confirmed on its voxels (bound and family-wise permutation p); at family-wise
    # alpha 0.05 another region may pass by chance in one cohort, never several
    sam = _read(files["CNvsAD_sam"]).set_index("region_index")
    confirmed = set(sam.index[sam["confirmed"].astype(bool)])
    assert 1 in confirmed and len(confirmed - {1}) <= 1, sam
    assert sam["acc_star"].idxmax() == 1
    # LRCP: only the planted region can be LRCP-positive, because only it separates the classes
    cons = _read(files["CNvsAD_lrcp_consensus"])
    positive = set(cons.loc[cons["positive_majority"].astype(bool), "region_index"])
    assert positive <= {1}
    regions = _read(files["CNvsAD_lrcp_regions"])
    best = regions.groupby("region_index")["acc_star"].mean()
    assert best.idxmax() == 1 and best[1] > 0.5 and (best.drop(1) <= 0.5).all()
    # the long LRCP table has the documented columns, for every fold
    lrcp = _read(files["CNvsAD_lrcp"])
    assert {"fold", "region_index", "region", "unit", "r", "p", "p_adj", "score"} <= set(lrcp.columns)
    assert set(lrcp["fold"].astype(str)) == {"1", "2", "3"}
    # the 8-unit latent vector is not significant at n = 40, whatever its in-sample accuracy
    tests = _read(files["CNvsAD_tests"])
    vector = tests[tests["test"].str.startswith("latent vector (d")]
    assert len(vector) == 3 and not vector["significant"].astype(bool).any()
    assert (vector["delta"] > 0.4).all()
    assert any("8-unit latent vector" in v and "in 0 of 3 fold(s)" in v for v in res["verdicts"])
    # the LRCP map is painted on the working grid
    img = nib.load(files["CNvsAD_lrcp_map"])
    assert img.shape == tpl.shape
    summary = json.loads((out / "group" / "ae-K8" / "analysis.json").read_text())
    assert summary["Contrasts"] == ["CN:AD"] and summary["Failures"] == {}
    html = res["report"].read_text()
    assert "CN vs AD" in html and "data:image/png;base64" in html


def test_projections_fit_on_training_rows_only(trained):
    tmp, tpl, atlas, rec, config, result = trained
    res = _analyse(trained, contrasts=["CN:AD"])
    proj = _read(res["files"]["projections"])
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


def test_labels_without_effect_give_no_finding(trained):
    res = _analyse(trained, label_column="sham")
    assert res["failures"] == {}
    sam = _read(res["files"]["AvsB_sam"])
    assert not sam["confirmed"].astype(bool).any()  # family-wise controlled
    # METHOD's region rule is uncorrected (about eta * J = 0.35 chance positives here) and says so
    cons = _read(res["files"]["AvsB_lrcp_consensus"])
    assert cons["positive_majority"].astype(bool).sum() <= 1
    positives = cons["positive_majority"].astype(bool).sum()
    assert positives == 0 or any("of 7 regions pass by chance" in v for v in res["verdicts"])
    # with the Bonferroni option nothing survives
    res = _analyse(trained, label_column="sham", region_correction="bonferroni")
    cons = _read(res["files"]["AvsB_lrcp_consensus"])
    assert not cons["positive_majority"].astype(bool).any()
    assert any("no region is LRCP-positive" in v for v in res["verdicts"])


def test_one_label_skips_the_supervised_parts(trained):
    res = _analyse(trained, label_column="site")
    assert res["failures"] == {}
    assert not any(k.endswith("_lrcp") for k in res["files"])
    assert "projections" in res["files"] and "shap_fits" in res["files"]
    html = res["report"].read_text()
    assert "not computed" in html.lower() or "skipped" in html.lower()


def test_bad_requests_fail_before_training(trained):
    from latentbids.errors import UsageError

    tmp, tpl, atlas, rec, config, result = trained
    config.analysis.contrasts = ["CN:XX"]
    with pytest.raises(UsageError, match="no subject has the label 'XX'"):
        validate_analysis_request(config, rec)
    config.analysis = type(config.analysis)(label_column="diagnosis")
    with pytest.raises(UsageError, match="no such column"):
        validate_analysis_request(config, rec)
    config.analysis = type(config.analysis)(confounds=["weight"])
    with pytest.raises(UsageError, match="weight"):
        validate_analysis_request(config, rec)
    config.analysis = type(config.analysis)()


def test_a_failing_section_is_reported_and_the_rest_is_written(trained, monkeypatch):
    import latentbids.analysis.shap_error as shap_error

    def broken(*args, **kwargs):
        raise RuntimeError("surrogate exploded")

    monkeypatch.setattr(shap_error, "explain_error", broken)
    res = _analyse(trained)
    assert set(res["failures"]) == {"shap"}
    assert "CNvsAD_sam" in res["files"] and Path(res["files"]["projections"]).is_file()
    assert any("shap analysis failed" in v for v in res["verdicts"])
    assert res["report"].is_file()


def test_confounds_are_regressed_out(trained):
    res = _analyse(trained, confounds=["age", "gm_mean"])
    assert res["failures"] == {}
    lrcp = json.loads(Path(res["files"]["CNvsAD_lrcp"]).with_suffix(".json").read_text())
    assert lrcp["Confounds"] == ["age", "gm_mean"]


def test_subjects_not_sessions_are_the_units_of_the_tests(tmp_path):
    """Two sessions of one subject must not count twice (they would leak through every CV and inflate n)."""
    tpl = toy_template()
    atlas = octant_atlas(tpl)
    rec = make_cohort(tmp_path / "gm", tpl, n_subjects=12, seed=1, two_sessions=("sub-01", "sub-02"))
    config = sloppy_config(tmp_path, latent_dim=4)
    result = run_group_level(config, rec, tpl, atlas)
    res = run_group_analysis(config, rec, result, atlas)
    assert res["failures"] == {}
    summary = json.loads(Path(res["analysis_json"]).read_text())
    assert any("2 subject(s) have several sessions" in note for note in summary["Notes"])
    lrcp = json.loads(Path(res["files"]["CNvsAD_lrcp"]).with_suffix(".json").read_text())
    assert len(rec) == 14 and lrcp["n"] == 12
    assert len(pd.read_csv(result["latent_tsv"], sep="\t")) == 14  # the latent table keeps every session
