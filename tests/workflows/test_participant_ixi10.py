"""End-to-end participant level on real IXI T1w scans (ds-ixi10), run once per session.

The run uses the real pipeline (N4, HD-BET fast mode on CPU, SyN, prior-guided Atropos) with
2 processes x 1 thread, as CI has 2 cores.  Several tests assert on that one run.  It processes the
five scans that carry an independent reference segmentation (DLMUSE, derivatives/dlmuse): the other
five add 6 min of CI time and no reference; BENCHMARKS.md has the run over all ten.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from latentbids.anat.measures import dice
from latentbids.bids.derivatives import init_output_dataset
from latentbids.bids.jobs import T1wJob
from latentbids.config import RunConfig
from latentbids.resources import get_atlas
from latentbids.settings import participant_settings
from latentbids.workflows.participant.run import run_participant_wf

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EXPECTED_TREE = REPO / "tests" / "data" / "participant_outputs.txt"
TPL = "MNI152NLin2009aSym"

#: Floor for native GM Dice (prob > 0.5) against DLMUSE gray matter.  METHOD.md measured 0.83 for
#: this method on one IXI scan and 0.76 for plain k-means Atropos without priors; our run gives
#: 0.80-0.83 (printed below).  0.78 sits between the two: it fails if the priors stop working
#: (prior weight 0 gives 0.73 on sub-IXI012) or the registration/brain mask breaks, and leaves
#: room for scanner-to-scanner spread and antspyx/torch version noise.
DICE_FLOOR = 0.78
MEAN_DICE_FLOOR = 0.80


def reference_subjects(ixi_dir: Path) -> list[str]:
    """The subjects with a DLMUSE segmentation (the independent reference)."""
    return sorted(p.name[4:] for p in (ixi_dir / "derivatives" / "dlmuse").glob("sub-*"))


def ixi_jobs(ixi_dir: Path, subjects=None) -> list[T1wJob]:
    jobs = []
    for path in sorted(ixi_dir.glob("sub-*/anat/sub-*_T1w.nii.gz")):
        sub = path.name.split("_")[0][4:]
        if subjects is not None and sub not in subjects:
            continue
        jobs.append(T1wJob(subject=sub, session=None, path=path, relpath=path.relative_to(ixi_dir).as_posix()))
    return jobs


def make_config(out: Path, work: Path, run_id: str = "test") -> RunConfig:
    cfg = RunConfig()
    cfg.execution.output_dir = str(out)
    cfg.execution.work_dir = str(work)
    cfg.execution.nprocs = 2
    cfg.execution.omp_nthreads = 1
    cfg.execution.run_id = run_id
    cfg.execution.device = "cpu"
    return cfg


def run_logged(cfg, jobs) -> tuple[dict, float, list[str]]:
    """Run the participant level and keep the 'latentbids' log lines it wrote."""
    records: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = _Keep(level=logging.INFO)
    logger = logging.getLogger("latentbids")
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        t0 = time.time()
        status = run_participant_wf(jobs=jobs, settings=participant_settings(cfg))
        seconds = time.time() - t0
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    return status, seconds, records


@pytest.fixture(scope="session")
def ixi10_run(tmp_path_factory, ixi_dir):
    """Run the participant level on the reference subjects once; return paths, statuses and timings."""
    base = tmp_path_factory.mktemp("ixi10")
    out = base / "derivatives" / "latentbids"
    work = base / "work"
    jobs = ixi_jobs(ixi_dir, reference_subjects(ixi_dir))
    assert len(jobs) == 5
    cfg = make_config(out, work)
    init_output_dataset(out, ixi_dir, atlas=get_atlas(cfg.spatial.atlas[0]))
    status, seconds, records = run_logged(cfg, jobs)
    print(f"\nparticipant level, {len(jobs)} subjects, 2 procs x 1 thread: {seconds:.0f} s "
          f"({seconds / len(jobs) * 2:.0f} s per subject per process)")
    return dict(out=out, work=work, jobs=jobs, status=status, seconds=seconds, config=cfg, log=records)


def test_all_subjects_ok(ixi10_run):
    assert ixi10_run["status"] == {j.label: "ok" for j in ixi10_run["jobs"]}
    # progress: one log line per finished subject and per step
    log = ixi10_run["log"]
    for job in ixi10_run["jobs"]:
        assert any(m.startswith(f"{job.label}: participant level finished") for m in log), job.label
        for step in ("n4", "brain_extraction", "register", "atropos", "to_template"):
            assert any(m.startswith(f"{job.label}: {step} finished") for m in log), (job.label, step)


def test_output_tree_matches_committed_list(ixi10_run):
    out = ixi10_run["out"]
    found = sorted(
        p.relative_to(out).as_posix() for p in out.rglob("*")
        if p.is_file() and "/log/" not in p.relative_to(out).as_posix() and not p.name.startswith(".")
    )
    ran = {job.label for job in ixi10_run["jobs"]}
    # the committed list covers all ten subjects: keep the dataset-level files and the subjects run
    expected = [ln.strip() for ln in EXPECTED_TREE.read_text().splitlines() if ln.strip() and not ln.startswith("#")
                and (not ln.startswith("sub-") or ln.strip().split("/")[0].split(".")[0] in ran)]
    assert len(expected) > 50
    assert found == sorted(expected), (
        f"missing: {sorted(set(expected) - set(found))}; unexpected: {sorted(set(found) - set(expected))}"
    )


def _dlmuse_gm(ixi_dir: Path, sub: str, ref: nib.Nifti1Image) -> np.ndarray:
    desc = json.loads((ixi_dir / "derivatives" / "dlmuse" / "dataset_description.json").read_text())
    anat = ixi_dir / "derivatives" / "dlmuse" / f"sub-{sub}" / "anat"
    img = nib.load(str(anat / f"sub-{sub}_desc-dlmuse_dseg.nii.gz"))
    img = nib.as_closest_canonical(img)
    assert img.shape == ref.shape and np.allclose(img.affine, ref.affine, atol=1e-3)
    return np.isin(np.asarray(img.dataobj), desc["GrayMatterLabels"])


def test_native_gm_dice_vs_dlmuse(ixi10_run, ixi_dir):
    out = ixi10_run["out"]
    subs = reference_subjects(ixi_dir)
    assert len(subs) == 5 and {f"sub-{s}" for s in subs} <= {job.label for job in ixi10_run["jobs"]}
    scores = {}
    for sub in subs:
        img = nib.load(str(out / f"sub-{sub}" / "anat" / f"sub-{sub}_label-GM_probseg.nii.gz"))
        gm = np.asarray(img.dataobj) > 0.5
        scores[sub] = dice(gm, _dlmuse_gm(ixi_dir, sub, img))
    print("\nGM Dice vs DLMUSE:", {k: round(v, 3) for k, v in scores.items()},
          "mean", round(float(np.mean(list(scores.values()))), 3))
    assert min(scores.values()) >= DICE_FLOOR, scores
    assert np.mean(list(scores.values())) >= MEAN_DICE_FLOOR, scores


def _anat(out: Path, sub: str, name: str) -> Path:
    return out / f"sub-{sub}" / "anat" / f"sub-{sub}_{name}"


def test_maps_values_and_volume_conservation(ixi10_run):
    out = ixi10_run["out"]
    for job in ixi10_run["jobs"]:
        sub = job.subject
        native = nib.load(str(_anat(out, sub, "label-GM_probseg.nii.gz")))
        tpl = nib.load(str(_anat(out, sub, f"space-{TPL}_res-nilearn2_label-GM_probseg.nii.gz")))
        mod = nib.load(str(_anat(out, sub, f"space-{TPL}_res-nilearn2_label-GM_desc-modulated_probseg.nii.gz")))
        mask = nib.load(str(_anat(out, sub, f"space-{TPL}_res-nilearn2_desc-brain_mask.nii.gz")))
        assert nib.aff2axcodes(native.affine) == ("R", "A", "S")
        assert tpl.shape == mod.shape == mask.shape
        t = np.asarray(tpl.dataobj)
        assert 0 <= t.min() and t.max() <= 1
        assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}
        m = np.asarray(mod.dataobj)
        assert m.max() > 1.0  # modulation lets values exceed 1 where the subject is larger
        vols = json.loads(_anat(out, sub, "volumes.json").read_text())
        native_ml = float(np.asarray(native.dataobj).sum()) * 8 / 1000
        assert vols["GM_ml"] == pytest.approx(native_ml, rel=1e-3)
        mod_ml = float(m.sum()) * float(np.prod(mod.header.get_zooms()[:3])) / 1000
        # Jacobian modulation keeps the GM volume (interpolation costs a little)
        assert mod_ml == pytest.approx(native_ml, rel=0.03), (sub, mod_ml, native_ml)
        assert 400 < vols["GM_ml"] < 1000 and 1000 < vols["TIV_ml"] < 2200


def test_sidecars(ixi10_run):
    out = ixi10_run["out"]
    for job in ixi10_run["jobs"]:
        for nii in (out / f"sub-{job.subject}" / "anat").glob("*.nii.gz"):
            meta = json.loads(nii.with_name(nii.name[: -len(".nii.gz")] + ".json").read_text())
            assert meta["Sources"] == [f"bids:raw:{job.relpath}"]
            assert "antspyx" in meta["SoftwareEnvironment"]
            if "_res-" in nii.name:
                assert "2 mm" in meta["Resolution"]


def test_regional_table_and_qc(ixi10_run):
    out = ixi10_run["out"]
    qcs = []
    for job in ixi10_run["jobs"]:
        sub = job.subject
        table = pd.read_csv(_anat(out, sub, f"space-{TPL}_atlas-AAL_desc-gm_stats.tsv"), sep="\t")
        assert list(table.columns) == ["index", "name", "mean_gm", "volume_ml"]
        assert len(table) == 116 and table["index"].is_unique
        assert table["mean_gm"].between(0, 1).all()
        # cortex holds more GM than white-matter-rich regions, e.g. precentral vs. pallidum is noisy;
        # use the hippocampus (GM) against the global mean inside the AAL regions
        hippo = table[table["name"].str.startswith("Hippocampus")]["mean_gm"].mean()
        assert hippo > 0.4
        qc = pd.read_csv(_anat(out, sub, "qc.tsv"), sep="\t")
        assert {"qc_pass", "qc_source", "gm_peak", "gm_coverage", "gm_outside", "gm_template_corr",
                "t1w_template_corr"} <= set(qc.columns)
        qcs.append(qc)
        html = (out / f"{job.label}.html").read_text()
        assert "data:image/png;base64," in html and "Quality control" in html
    qc = pd.concat(qcs)
    print("\n" + qc[["participant_id", "gm_peak", "gm_coverage", "gm_outside", "gm_template_corr",
                     "t1w_template_corr", "qc_pass", "qc_fail_reasons"]].to_string(index=False))
    from latentbids.settings import qc_thresholds

    th = qc_thresholds(ixi10_run["config"].anat)["own"]
    # the verdict is exactly the AND of the configured checks, and a failure names its reason
    expected = ((qc["gm_peak"] >= th["qc_min_peak"]) & (qc["gm_coverage"] >= th["qc_min_coverage"])
                & (qc["gm_outside"] <= th["qc_max_outside"]) & (qc["gm_template_corr"] >= th["qc_min_template_corr"]))
    assert (qc["qc_pass"] == expected).all()
    assert (qc["qc_fail_reasons"].astype(object).fillna("").astype(str).str.len().gt(0) == ~qc["qc_pass"]).all()
    # healthy adults: every map is a sharp, brain-shaped GM map registered to the template, so every
    # one passes with margin (BENCHMARKS.md: peak 0.96-0.98, coverage 0.67-0.70, outside <= 0.023)
    assert (qc["qc_source"] == "own").all()
    assert qc["qc_pass"].all(), qc[~qc["qc_pass"]]
    assert qc["gm_outside"].max() < th["qc_max_outside"] / 2
    assert qc["gm_template_corr"].min() > 0.6


def test_bids_validator_no_errors(ixi10_run, tmp_path):
    from latentbids.bids.validation import errors_of, run_validator

    report = run_validator(ixi10_run["out"], report_path=tmp_path / "report.json")
    errors = errors_of(report)
    assert not errors, json.dumps(errors[:5], indent=1)[:3000]


def test_rerun_reuses_cached_nodes(ixi10_run):
    """Same work dir, same inputs: every node comes from Nipype's cache (no recomputation)."""
    cfg = ixi10_run["config"]
    jobs = ixi10_run["jobs"][:3]
    status, seconds, records = run_logged(cfg, jobs)
    assert status == {j.label: "ok" for j in jobs}
    steps = [m for m in records if " finished (" in m and "participant level" not in m]
    assert steps and all(m.endswith("(cached)") for m in steps), steps
    assert seconds < 60
