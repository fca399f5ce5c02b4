"""What a participant run selects, said before any work: a mistyped label is exit 18 in seconds (before
the BIDS validator, which would blame the dataset), and a selected subject without a T1w is named in a
warning and in the run's summary; the run leaves only what it describes (CITATION.md of the
participant level only, no lock file in the dataset)."""
from __future__ import annotations

import json
import shutil
import time

import nibabel as nib
import numpy as np
import pytest

from tests.helpers import run_cli

SPACE = "MNI152NLin2009aSym:res-nilearn4"


def _errors(proc):
    assert "Traceback" not in proc.stderr
    return [line for line in proc.stderr.splitlines() if "| ERROR" in line]


@pytest.mark.slow
def test_an_unknown_label_exits_18_before_the_validator(ixi_dir, tmp_path):
    """Before: 88 s in the validator, then exit 16 'PARTICIPANT_ID_MISMATCH ... fix the dataset'."""
    work = tmp_path / "w"
    for level in ("participant", "group"):
        start = time.monotonic()
        proc = run_cli(ixi_dir, tmp_path / "out", level, "-w", work, "--participant-label", "99", timeout=300)
        took = time.monotonic() - start
        assert proc.returncode == 18, proc.stderr[-2000:]
        (line,) = _errors(proc)
        assert "sub-99 not found" in line and "(found 10 subjects)" in line and "--participant-label" in line
        assert "validation" not in proc.stderr.lower(), proc.stderr  # the validator never ran
        assert not list(work.glob("logs/bids-validator_*")) and took < 60
    proc = run_cli(ixi_dir, tmp_path / "out", "participant", "-w", work, "--participant-label", "IXI012",
                   "--session-label", "2", timeout=300)
    assert proc.returncode == 18 and "ses-2 not found" in _errors(proc)[0]


@pytest.mark.slow
def test_a_subject_without_t1w_is_named_and_the_run_leaves_only_what_ran(tmp_path):
    from latentbids.cli.simulate import main as simulate

    bids = tmp_path / "ds"
    assert simulate([str(bids), "--n-subjects", "2", "--seed", "1", "--resolution", "4"]) == 0
    shutil.rmtree(bids / "sub-002" / "anat")  # sub-002 has only a BOLD run
    func = bids / "sub-002" / "func"
    func.mkdir()
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 3), np.float32), np.eye(4)), str(func / "sub-002_task-rest_bold.nii.gz"))
    (func / "sub-002_task-rest_bold.json").write_text(json.dumps({"RepetitionTime": 2.0, "TaskName": "rest"}))
    out = bids / "derivatives" / "latentbids"
    proc = run_cli(bids, out, "participant", "-w", tmp_path / "w", "--skip-bids-validation", "--sloppy",
                   "--output-spaces", SPACE, "--nprocs", "1", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if "| WARNING" in line and "sub-002" in line]
    assert warnings and "no T1w image selected (its folder holds func/)" in warnings[0], proc.stderr[-3000:]
    summary = [line for line in proc.stderr.splitlines() if "Participant level finished" in line]
    assert summary and "1 subject(s) without a T1w (sub-002)" in summary[0]
    assert list((out / "sub-001" / "anat").glob("*_label-GM_probseg.nii.gz"))
    citation = (out / "logs" / "CITATION.md").read_text()
    assert "## Participant level" in citation and "## Group level" not in citation
    assert "was trained" not in citation and "latent dimension" not in citation and "PyTorch" not in citation
    assert not list(out.rglob("*.lock")), list(out.rglob("*.lock"))
