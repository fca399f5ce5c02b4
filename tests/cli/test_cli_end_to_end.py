"""The app end to end through its console scripts, as a user runs it.

* A simulated cohort: ``latentbids-simulate`` -> participant level reusing the truth GM maps
  (``-d``) from two concurrent jobs -> group level -> participant-level ``--model`` encoding.
* Real IXI scans: a good and a corrupt T1w in one run (exit 66, the good one processed), a
  rerun on the same work dir (exit 0, cached), and a processing failure (exit 1, crash file).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from latentbids.bids.validation import errors_of, run_validator
from tests.helpers import copy_dataset, run_cli, write_minimal_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    bids = root / "bids"
    proc = run_cli(bids, "--n-subjects", 8, "--seed", 11, "--effect", "Hippocampus_L,Hippocampus_R:25",
                   entry="latentbids-simulate")
    assert proc.returncode == 0, proc.stderr
    return bids, bids / "derivatives" / "latentbids", root / "work"


def test_concurrent_participant_jobs_then_group_then_model(simulated, tmp_path):
    bids, out, work = simulated
    common = ["-w", work, "-d", f"truth={bids / 'derivatives' / 'truth'}", "--nprocs", 1, "--omp-nthreads", 1]
    # Two array-style jobs at once: same output, work and database dirs, different subjects.
    subjects = sorted(p.name[4:] for p in bids.glob("sub-*"))
    halves = [subjects[: len(subjects) // 2], subjects[len(subjects) // 2 :]]
    exe = str(Path(sys.executable).parent / "latentbids")
    jobs = [
        subprocess.Popen([exe, str(bids), str(out), "participant", *map(str, common), "--participant-label", *half],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for half in halves
    ]
    for job in jobs:
        _, err = job.communicate(timeout=900)
        assert job.returncode == 0, err
    stats = sorted(out.glob("sub-*/anat/*_desc-gm_stats.tsv"))
    assert len(stats) == len(subjects)

    proc = run_cli(bids, out, "group", "-w", work, "--sloppy", "--n-folds", 2)
    assert proc.returncode == 0, proc.stderr
    latents = pd.read_csv(next((out / "group" / "ae-K32").glob("*_desc-aeK32_latent.tsv")), sep="\t")
    assert sorted(latents["participant_id"]) == [f"sub-{s}" for s in subjects]
    assert not latents["in_training"].any()  # every code comes from the fold that held it out
    assert {f"z{k}" for k in range(32)} <= set(latents.columns)
    model_dir = next((out / "models").iterdir())
    assert (model_dir / "model.json").is_file()
    # the latent-space analysis ran on the simulated labels and wrote its report and verdicts
    summary = json.loads((out / "group" / "ae-K32" / "analysis.json").read_text())
    assert summary["Contrasts"] == ["CN:AD"] and summary["Failures"] == {}
    assert summary["Verdicts"] and (out / "group_ae-K32.html").is_file()
    assert "Verdict:" in proc.stderr
    # a contrast naming an absent label is refused before any training
    proc = run_cli(bids, out, "group", "-w", work, "--sloppy", "--n-folds", 2, "--contrast", "CN:XX",
                   "--skip-bids-validation")
    assert proc.returncode == 64 and "no subject has the label 'XX'" in proc.stderr
    assert "Traceback" not in proc.stderr and "Fold 1" not in proc.stderr

    report = run_validator(out, tmp_path / "report.json")
    assert errors_of(report) == []

    # participant-level --model: encodes one subject with the fold that held it out
    subject = subjects[0]
    proc = run_cli(bids, out, "participant", *common, "--participant-label", subject, "--model", model_dir,
                   "--skip-bids-validation")
    assert proc.returncode == 0, proc.stderr
    assert "in_training=False" in proc.stderr
    # a model trained on another grid is refused before any work
    proc = run_cli(bids, out, "participant", *common, "--participant-label", subject, "--model", model_dir,
                   "--output-spaces", "MNI152NLin2009aSym:res-3", "--skip-bids-validation")
    assert proc.returncode == 64
    assert "was trained on grid" in proc.stderr and "Traceback" not in proc.stderr


def test_group_refuses_cuda_without_gpu(simulated):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    bids, out, work = simulated
    proc = run_cli(bids, out, "group", "-w", work, "--sloppy", "--device", "cuda", "--skip-bids-validation")
    assert proc.returncode == 64


def test_good_and_corrupt_inputs_then_rerun(ixi_dir, tmp_path):
    data = copy_dataset(ixi_dir, tmp_path / "ds", subjects=["IXI012"])
    bad = data / "sub-bad" / "anat"
    bad.mkdir(parents=True)
    source = (data / "sub-IXI012/anat/sub-IXI012_T1w.nii.gz").read_bytes()
    (bad / "sub-bad_T1w.nii.gz").write_bytes(source[: len(source) // 3])  # truncated download
    out, work = data / "derivatives" / "latentbids", tmp_path / "work"
    args = [data, out, "participant", "-w", work, "--sloppy", "--nprocs", 1, "--omp-nthreads", 2,
            "--skip-bids-validation"]
    proc = run_cli(*args)
    assert proc.returncode == 66, proc.stderr
    assert "sub-bad_T1w.nii.gz" in proc.stderr and "Traceback" not in proc.stderr
    gm = out / "sub-IXI012/anat/sub-IXI012_space-MNI152NLin2009aSym_res-nilearn2_label-GM_probseg.nii.gz"
    assert gm.is_file() and not list(out.glob("sub-bad*"))
    before = gm.stat().st_mtime_ns
    results = {p: p.stat().st_mtime_ns for p in work.rglob("result_*.pklz")}
    assert len(results) > 5

    proc = run_cli(*args, "--participant-label", "IXI012")
    assert proc.returncode == 0, proc.stderr
    # the work dir is reused: no processing node ran again (only the output sinks may rerun)
    rerun = [p for p, t in results.items() if p.stat().st_mtime_ns != t and not p.parent.name.startswith("ds_")]
    assert not rerun, rerun
    assert gm.is_file() and nib.load(str(gm)).shape == (99, 117, 95)
    assert gm.stat().st_mtime_ns >= before
    assert not list(out.rglob(".*.tmp*"))  # no temporary file left behind
    assert errors_of(run_validator(out, tmp_path / "r.json")) == []


def test_processing_failure_exits_1_with_crash_file(tmp_path):
    """A step that cannot write its output (a folder squats on the file name) fails the subject."""
    rng = np.random.default_rng(0)
    data = write_minimal_dataset(tmp_path / "ds", {"noise": rng.random((12, 12, 12)).astype(np.float32)})
    out = tmp_path / "out"
    blocker = out / "sub-noise" / "anat" / "sub-noise_label-GM_probseg.nii.gz"
    blocker.mkdir(parents=True)
    proc = run_cli(data, out, "participant", "-w", tmp_path / "w", "--sloppy", "--nprocs", 1,
                   "--skip-bids-validation")
    assert proc.returncode == 1, proc.stderr
    assert "sub-noise: failed: ds_gm" in proc.stderr
    crashes = list(out.glob("sub-noise/log/*/crash-*"))
    assert crashes, "crash file expected under sub-<label>/log/<run_id>/"
    assert not list(blocker.parent.glob(".*.tmp*"))  # the failed write left no temporary file
    assert json.loads((out / "dataset_description.json").read_text())["DatasetType"] == "derivative"
