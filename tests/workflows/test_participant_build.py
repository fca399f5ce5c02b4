"""Participant workflow construction, the -d reuse branch and failure isolation (fast tests)."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from latentbids.anat.reuse import find_existing_gm_map
from latentbids.bids.jobs import T1wJob
from latentbids.config import RunConfig
from latentbids.resources import get_atlas, get_template
from latentbids.settings import anat_settings, participant_settings, resolve_config
from latentbids.workflows.participant.run import run_participant_wf
from latentbids.workflows.participant.template_files import write_template_files
from latentbids.workflows.participant.workflow import init_participant_wf, subject_wf_name

TPL = "MNI152NLin2009aSym"


def config_for(tmp_path: Path, **execution) -> RunConfig:
    cfg = RunConfig()
    cfg.execution.output_dir = str(tmp_path / "out")
    cfg.execution.work_dir = str(tmp_path / "work")
    cfg.execution.run_id = "r1"
    cfg.execution.nprocs = 1
    cfg.execution.omp_nthreads = 1
    for key, value in execution.items():
        setattr(cfg.execution, key, value)
    return cfg


def job_for(ixi_dir: Path, sub: str, **kw) -> T1wJob:
    rel = f"sub-{sub}/anat/sub-{sub}_T1w.nii.gz"
    return T1wJob(subject=sub, session=kw.pop("session", None), path=ixi_dir / rel, relpath=rel, **kw)


def test_one_subworkflow_per_job_one_node_per_step(tmp_path, ixi_dir):
    cfg = config_for(tmp_path)
    cfg.anat.atropos_mrf = 0.15  # a non-default value, to see it reach the node
    jobs = [job_for(ixi_dir, "IXI012"), job_for(ixi_dir, "IXI013", session="1")]
    settings = participant_settings(cfg)
    grids = [write_template_files(t, settings.run.atlas, settings.run.work_dir) for t in settings.run.templates]
    wf = init_participant_wf(jobs=jobs, grids=grids, settings=settings)
    assert wf.base_dir == str(tmp_path / "work")
    names = sorted(n.name for n in wf._graph.nodes())
    assert names == sorted(subject_wf_name(j) for j in jobs) == [
        "single_subject_sub_IXI012_wf", "single_subject_sub_IXI013_ses_1_wf"]
    sub_wf = wf.get_node("single_subject_sub_IXI012_wf")
    steps = {n.name for n in sub_wf.get_node("anat_wf")._graph.nodes()}
    assert {"reorient", "n4", "brain_extraction", "register", "warp_priors", "atropos", "to_template",
            "regional_stats", "volumes", "qc"} <= steps
    # parameters walk config -> node inputs
    anat = sub_wf.get_node("anat_wf")
    assert anat.get_node("atropos").inputs.prior_weight == 0.25
    assert anat.get_node("atropos").inputs.mrf == 0.15
    assert anat.get_node("register").inputs.transform == "SyN"
    assert anat.get_node("register").n_procs == 1
    # N4 on a ~8 mm grid: shrink 4 for these 2 mm scans (the value the node always had, so existing
    # work dirs keep their cache), 8 for 1 mm
    assert anat.get_node("n4").inputs.shrink_factor == 4
    assert anat.get_node("qc").inputs.qc_source == "own" and anat.get_node("qc").inputs.qc_min_peak == 0.9
    from latentbids.anat.preprocess import n4_shrink_factor

    assert [n4_shrink_factor(v) for v in (0.8, 1.0, 2.0, 3.0)] == [10, 8, 4, 3]
    # crash files go to sub-<l>/log/<run_id>/
    crash = anat.get_node("n4").config["execution"]["crashdump_dir"]
    assert crash == str(tmp_path / "out" / "sub-IXI012" / "log" / "r1")
    # template files written once into the work dir
    folders = list((tmp_path / "work" / "resources").glob(f"tpl-{TPL}_res-nilearn2_atlas-AAL-*"))
    assert len(folders) == 1 and len(list(folders[0].glob("*.nii.gz"))) == 6  # 5 template images + atlas


def test_resources_keyed_by_atlas_content(tmp_path, ixi_dir):
    """Two different atlases with the same file name never share the work dir's resampled copy."""
    tpl = get_template(TPL, "nilearn2")
    folders = []
    for value in (1, 2):
        src = tmp_path / f"a{value}" / "atlas-mine_dseg.nii.gz"
        src.parent.mkdir()
        data = np.zeros(tpl.shape, np.int16)
        data[40:60, 40:60, 40:60] = value
        nib.save(nib.Nifti1Image(data, tpl.affine), str(src))
        (src.parent / "atlas-mine_dseg.tsv").write_text(f"index\tname\n{value}\tbox\n")
        folders.append(Path(write_template_files(tpl, get_atlas(str(src)), tmp_path / "work").atlas).parent)
    assert folders[0] != folders[1]


def test_sloppy_settings(tmp_path):
    cfg = config_for(tmp_path, sloppy=True, random_seed=7)
    resolve_config(cfg)
    s = anat_settings(cfg, "cpu")
    assert s.registration == "SyN" and s.seed == 7 and s.atropos_iterations < 5
    assert s.brain_extraction == "template" and s.n4_iterations == (50, 50, 30)
    # what ran is what the run's config.toml records
    assert cfg.anat.brain_extraction == "template" and cfg.anat.atropos_iterations == s.atropos_iterations
    full = config_for(tmp_path)
    resolve_config(full)
    full = anat_settings(full, "cpu")
    assert full.brain_extraction == "hdbet" and full.atropos_iterations == 5 and full.n4_iterations == (50,) * 4


def test_sloppy_never_silently_replaces_an_explicit_setting(tmp_path, caplog):
    """--sloppy takes its fast settings only for keys the user left alone; a key the user set is
    kept, and one log line says which and what --sloppy would have used."""
    cfg = config_for(tmp_path, sloppy=True)
    cfg.update({"anat": {"brain_extraction": "hdbet", "atropos_iterations": 7}}, origin="test")
    with caplog.at_level("WARNING", logger="latentbids"):
        resolve_config(cfg)
    s = anat_settings(cfg, "cpu")
    assert s.brain_extraction == "hdbet" and s.atropos_iterations == 7  # the user's choices
    assert s.n4_iterations == (50, 50, 30)  # not set by the user: --sloppy's
    kept = [r.getMessage() for r in caplog.records if "--sloppy" in r.getMessage()]
    assert len(kept) == 1, kept
    assert "brain_extraction = 'hdbet'" in kept[0] and "'template'" in kept[0] and "atropos_iterations = 7" in kept[0]
    # the same choice as --sloppy's needs no line
    caplog.clear()
    same = config_for(tmp_path, sloppy=True)
    same.update({"anat": {"brain_extraction": "template"}}, origin="test")
    with caplog.at_level("WARNING", logger="latentbids"):
        resolve_config(same)
    assert not [r for r in caplog.records if "--sloppy" in r.getMessage()]


@pytest.fixture()
def smriprep_derivative(tmp_path):
    """A fake sMRIPrep derivative: the 3 mm template GM prior as sub-IXI012's template-space map."""
    root = tmp_path / "smriprep"
    anat = root / "sub-IXI012" / "anat"
    anat.mkdir(parents=True)
    gm = get_template(TPL, 3).gm
    path = anat / f"sub-IXI012_space-{TPL}_res-3_label-GM_probseg.nii.gz"
    nib.save(gm, path)
    return root, path


@pytest.mark.slow
def test_reuse_branch_and_failed_subject_isolated(tmp_path, ixi_dir, smriprep_derivative):
    root, gm_path = smriprep_derivative
    hit = find_existing_gm_map({"smriprep": str(root)}, "IXI012", None)
    assert hit == (str(gm_path), "smriprep")
    bad_dir = tmp_path / "bad" / "sub-BAD" / "anat"
    bad_dir.mkdir(parents=True)
    (bad_dir / "sub-BAD_T1w.nii.gz").write_bytes(b"\x1f\x8b truncated")
    jobs = [
        job_for(ixi_dir, "IXI012", gm_map=Path(hit[0]), gm_map_kind=hit[1]),
        T1wJob("BAD", None, bad_dir / "sub-BAD_T1w.nii.gz", "sub-BAD/anat/sub-BAD_T1w.nii.gz"),
    ]
    cfg = config_for(tmp_path, derivatives={"smriprep": str(root)})
    status = run_participant_wf(jobs=jobs, settings=participant_settings(cfg))
    assert status["sub-IXI012"] == "ok"
    assert status["sub-BAD"].startswith("failed: ") and "reorient" in status["sub-BAD"], status
    crashes = list((tmp_path / "out" / "sub-BAD" / "log" / "r1").glob("crash-*.txt"))
    assert crashes and "sub-BAD_T1w.nii.gz" in crashes[0].read_text()

    out = tmp_path / "out" / "sub-IXI012" / "anat"
    probseg = out / f"sub-IXI012_space-{TPL}_res-nilearn2_label-GM_probseg.nii.gz"
    tpl2 = get_template(TPL, 2)
    img = nib.load(probseg)
    assert img.shape == tpl2.shape and np.allclose(img.affine, tpl2.affine)
    # the reused map is the template prior: its correlation with the 2 mm prior is high
    a, b = np.asarray(img.dataobj).ravel(), np.asarray(tpl2.gm.dataobj).ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.95
    meta = json.loads(probseg.with_name(probseg.name.replace(".nii.gz", ".json")).read_text())
    # the reused map is named by a BIDS URI into the -d dataset (DatasetLinks resolves it), not a host path
    uri = f"bids:smriprep:sub-IXI012/anat/{gm_path.name}"
    assert meta["ReusedFrom"] == uri and meta["Sources"] == [uri] and "Resolution" in meta
    assert meta["SpatialReference"] == f"bids::tpl-{TPL}/tpl-{TPL}_res-nilearn2_T1w.nii.gz"
    table = pd.read_csv(out / f"sub-IXI012_space-{TPL}_atlas-AAL_desc-gm_stats.tsv", sep="\t")
    assert len(table) == 116 and table["mean_gm"].notna().all()
    qc = pd.read_csv(out / "sub-IXI012_qc.tsv", sep="\t")
    assert "qc_pass" in qc.columns
    assert not (out / "sub-IXI012_label-GM_probseg.nii.gz").exists()  # no segmentation was run
    assert (tmp_path / "out" / "sub-IXI012.html").is_file()


def test_a_subject_already_being_processed_is_skipped(tmp_path, ixi_dir):
    """Overlapping array tasks: a job whose subject is locked by another process is not run twice."""
    from latentbids.utils.locks import try_lock

    cfg = config_for(tmp_path)
    job = job_for(ixi_dir, "IXI012")
    handle = try_lock(tmp_path / "work" / "locks" / f"{subject_wf_name(job)}.lock")
    try:
        assert run_participant_wf(jobs=[job], settings=participant_settings(cfg)) == {
            "sub-IXI012": "failed: another latentbids job is processing it right now; rerun when it ends"}
    finally:
        handle.close()
    assert not (tmp_path / "work" / "latentbids_participant_wf").exists()


def test_crash_files_are_attributed_to_their_session(tmp_path):
    import time

    from latentbids.workflows.participant.run import crash_reason

    folder = tmp_path / "log"
    folder.mkdir()
    (folder / "crash-20260101-000000-root-n4-0123abcd-1111.txt").write_text(
        "Node: latentbids_participant_wf.single_subject_sub_01_ses_1_wf.anat_wf.n4\n\nValueError: bad\n")
    since = time.time()
    assert crash_reason(folder, since, "single_subject_sub_01_ses_2_wf") is None
    assert "ValueError: bad" in crash_reason(folder, since, "single_subject_sub_01_ses_1_wf")


@pytest.mark.slow
def test_reused_maps_with_smooth_tails_pass_qc(tmp_path, ixi_dir):
    """An sMRIPrep-style map as smoothing/interpolating tools write it (tiny values everywhere, a
    peak of 0.92) fails the old box-wide checks (non-zero fraction 100 %, maximum < 0.95) and passes
    the QC that looks inside the brain mask above the floor, with the sMRIPrep thresholds."""
    from scipy import ndimage

    tpl3 = get_template(TPL, 3)
    crisp = np.clip((np.asarray(tpl3.gm.dataobj, np.float32) - 0.2) / 0.5, 0, 1)
    smooth = ndimage.gaussian_filter(crisp, 6.0 / 2.355 / 3.0)
    tails = smooth * 0.92 / smooth.max() + 1e-4 + 1e-3 * np.exp(-ndimage.distance_transform_edt(smooth < 0.05) / 7)
    root = tmp_path / "smriprep"
    path = root / "sub-IXI012" / "anat" / f"sub-IXI012_space-{TPL}_res-3_label-GM_probseg.nii.gz"
    path.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(tails.astype(np.float32), tpl3.affine), path)
    cfg = config_for(tmp_path, derivatives={"smriprep": str(root)})
    job = job_for(ixi_dir, "IXI012", gm_map=path, gm_map_kind="smriprep")
    assert run_participant_wf(jobs=[job], settings=participant_settings(cfg)) == {
        "sub-IXI012": "ok"}
    anat = tmp_path / "out" / "sub-IXI012" / "anat"
    gm = np.asarray(nib.load(next(anat.glob("*_label-GM_probseg.nii.gz"))).dataobj)
    assert (gm > 0).mean() > 0.99 and gm.max() < 0.95  # what the old checks refused
    qc = pd.read_csv(anat / "sub-IXI012_qc.tsv", sep="\t")
    assert qc["qc_source"].tolist() == ["smriprep"]
    assert bool(qc["qc_pass"].iloc[0]), qc.to_dict("records")
    assert 0.7 <= qc["gm_peak"].iloc[0] < 0.95 and qc["gm_outside"].iloc[0] < 0.15
    columns = json.loads((anat / "sub-IXI012_qc.json").read_text())
    assert {"gm_peak", "gm_coverage", "gm_outside", "qc_source"} <= set(columns)  # every column described
