"""NiPreps habits: validation of the selected subjects only, --clean-workdir, --boilerplate-only,
--reports-only, and -d maps from another template refused."""
from __future__ import annotations

import json

import nibabel as nib
import pytest

from latentbids.bids.validation import validate_dataset
from latentbids.errors import EXIT_USAGE, UsageError, ValidationFailed
from latentbids.resources import get_template
from tests.helpers import copy_dataset, run_cli


@pytest.fixture()
def two_subjects(ixi_dir, tmp_path):
    """IXI012 valid, IXI013 with a file the validator rejects (NOT_INCLUDED, an error)."""
    data = copy_dataset(ixi_dir, tmp_path / "ds", subjects=["IXI012", "IXI013"])
    (data / "sub-IXI013" / "anat" / "sub-IXI013_junk.txt").write_text("x")
    return data


def test_validation_covers_only_the_selected_subjects(two_subjects, tmp_path):
    """As fMRIPrep: one broken subject fails its own array task, not the others."""
    validate_dataset(two_subjects, tmp_path / "logs" / "a.json", participant_label=["IXI012"])
    report = json.loads((tmp_path / "logs" / "a.json").read_text())
    assert report["summary"]["subjects"] == ["IXI012"]
    with pytest.raises(ValidationFailed, match=r"subjects IXI013\).*NOT_INCLUDED"):
        validate_dataset(two_subjects, tmp_path / "logs" / "b.json", participant_label=["IXI013"])
    with pytest.raises(ValidationFailed, match="NOT_INCLUDED"):
        validate_dataset(two_subjects, tmp_path / "logs" / "c.json")
    assert not list((tmp_path / "logs").glob("bids-validation_*"))  # the symlink tree is removed


def test_clean_workdir_removes_only_latentbids_folders_and_never_under_a_running_job(ixi_dir, tmp_path):
    from latentbids.cli.parser import parse_args
    from latentbids.cli.run import build_config
    from latentbids.cli.workdir import clean_work_dir
    from latentbids.utils.locks import try_lock

    work = tmp_path / "w"
    for name in ("latentbids_participant_wf/n4", "resources", "bids_db", "model_cache"):
        (work / name).mkdir(parents=True)
    (work / "notes.txt").write_text("mine")
    config = build_config(parse_args([str(ixi_dir), str(tmp_path / "out"), "participant", "-w", str(work),
                                      "--clean-workdir"]))
    held = try_lock(work / "locks" / "single_subject_sub_01_wf.lock")  # another array task at work
    with pytest.raises(UsageError, match="another latentbids job is using"):
        clean_work_dir(config)
    assert (work / "resources").is_dir()
    held.close()
    removed = {p.name for p in clean_work_dir(config)}
    assert removed == {"latentbids_participant_wf", "resources", "bids_db", "model_cache", "locks"}
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt"]


@pytest.mark.slow
def test_boilerplate_only(ixi_dir, tmp_path):
    out = tmp_path / "out"
    proc = run_cli(ixi_dir, out, "participant", "-w", tmp_path / "w", "--boilerplate-only")
    assert proc.returncode == 0, proc.stderr
    text = (out / "logs" / "CITATION.md").read_text()
    page = (out / "logs" / "CITATION.html").read_text()
    from latentbids.utils.environment import package_versions

    versions = package_versions()
    for name in ("latentbids", "nipype", "antspyx", "torch"):
        assert f"{name} {versions[name]}" in text
    assert "HD-BET" in text and "doi.org/10.1002/hbm.24750" in text  # the default brain extraction, cited
    cited = text.split("## References", 1)[1].count("\n1. ") + text.split("## References", 1)[1].count("\n2. ")
    assert cited == 2 and page.count("<li id='ref") == text.split("## References", 1)[1].count(". <http")
    assert not (out / "dataset_description.json").exists() and not list(out.glob("sub-*"))


@pytest.fixture()
def reused(ixi_dir, tmp_path):
    """IXI012 with an sMRIPrep-style GM map in the output space: the cheap -d branch."""
    data = copy_dataset(ixi_dir, tmp_path / "ds", subjects=["IXI012"])
    anat = tmp_path / "smriprep" / "sub-IXI012" / "anat"
    anat.mkdir(parents=True)
    nib.save(get_template(resolution=4).gm, anat / "sub-IXI012_space-MNI152NLin2009aSym_res-4_label-GM_probseg.nii.gz")
    return data, tmp_path / "smriprep"


@pytest.mark.slow
def test_reports_only_rebuilds_from_the_outputs(reused, tmp_path):
    data, smriprep = reused
    out, work = data / "derivatives" / "latentbids", tmp_path / "work"
    common = [data, out, "participant", "-w", work, "-d", f"smriprep={smriprep}", "--output-spaces",
              "MNI152NLin2009aSym:res-nilearn4", "--nprocs", 1, "--skip-bids-validation"]
    proc = run_cli(*common)
    assert proc.returncode == 0, proc.stderr
    report = out / "sub-IXI012.html"
    report.unlink()
    results = {p: p.stat().st_mtime_ns for p in work.rglob("result_*.pklz")}
    proc = run_cli(*common, "--reports-only")
    assert proc.returncode == 0, proc.stderr
    html = report.read_text()
    assert "Rebuilt from the outputs with --reports-only" in html and "data:image/png;base64," in html
    assert all(p.stat().st_mtime_ns == t for p, t in results.items())  # nothing recomputed
    runs = sorted((out / "logs").iterdir())
    proc = run_cli(data, out, "group", "-w", work, "--reports-only", "--output-spaces",
                   "MNI152NLin2009aSym:res-nilearn4")
    assert proc.returncode == EXIT_USAGE and "Traceback" not in proc.stderr
    assert sorted((out / "logs").iterdir()) == runs  # refused before anything was written
    # the reused map is named by a BIDS URI and its dataset linked relatively
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetLinks"]["smriprep"] == "../../../smriprep"
    assert {"URL": "bids:smriprep:"} in desc["SourceDatasets"]


@pytest.mark.slow
def test_reused_map_in_another_template_is_refused(reused, tmp_path):
    data, smriprep = reused
    old = next(smriprep.rglob("*.nii.gz"))
    old.rename(old.with_name(old.name.replace("MNI152NLin2009aSym", "MNI152NLin2009cAsym")))
    proc = run_cli(data, data / "derivatives" / "latentbids", "participant", "-w", tmp_path / "w", "-d",
                   f"smriprep={smriprep}", "--skip-bids-validation")
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "is in MNI152NLin2009cAsym, not in the output space MNI152NLin2009aSym" in proc.stderr
    assert "--output-spaces MNI152NLin2009cAsym:res-N" in proc.stderr and "Traceback" not in proc.stderr
    assert not list((data / "derivatives" / "latentbids").glob("sub-*"))
