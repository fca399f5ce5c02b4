"""scripts/slurm: a participant array, then the group job after it (afterok), driven through a stub
``sbatch`` on PATH that runs each job here (tests/cluster/sbatch_stub.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import run_cli

REPO = Path(__file__).resolve().parents[2]
SUBMIT = REPO / "scripts" / "slurm" / "submit.sh"


@pytest.fixture()
def slurm(tmp_path):
    """PATH with the stub sbatch, and where it records the jobs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{REPO / "tests" / "cluster" / "sbatch_stub.py"}" "$@"\n')
    sbatch.chmod(0o755)
    state = tmp_path / "sbatch_state.json"
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SBATCH_STUB_STATE=str(state),
               SBATCH_STUB_MAX_CPUS="1", SBATCH_STUB_PARALLEL="2",
               LATENTBIDS=str(Path(sys.executable).parent / "latentbids"),
               LATENTBIDS_DEVICE="cpu", NIPYPE_NO_ET="1")

    def submit(*args, **extra_env):
        proc = subprocess.run(["bash", str(SUBMIT), *map(str, args)], capture_output=True, text=True,
                              env={**env, **extra_env}, timeout=1500)
        jobs = json.loads(state.read_text())["jobs"] if state.is_file() else []
        return proc, jobs

    return submit


@pytest.mark.slow
def test_participant_array_then_group_job(slurm, tmp_path):
    bids = tmp_path / "bids"
    proc = run_cli(bids, "--n-subjects", 4, "--seed", 3, entry="latentbids-simulate")
    assert proc.returncode == 0, proc.stderr
    out, work = bids / "derivatives" / "latentbids", tmp_path / "work"
    proc, jobs = slurm(bids, out, work, "-d", f"truth={bids / 'derivatives' / 'truth'}",
                       "--group", "--sloppy", "--n-folds", 2, "--skip-analysis")
    assert proc.returncode == 0, proc.stderr
    array, group = jobs
    assert array["options"]["array"] == "1-4%20" and array["state"] == "COMPLETED", array
    assert [t["exit"] for t in array["tasks"].values()] == [0, 0, 0, 0]
    assert group["options"]["dependency"] == f"afterok:{array['id']}" and group["state"] == "COMPLETED", group
    assert group["options"]["gres"] == "gpu:1"  # the group job asks for a GPU node
    for task, subject in zip(array["tasks"].values(), ("001", "002", "003", "004"), strict=True):
        log = Path(task["log"]).read_text()
        assert f"sub-{subject}: ok" in log and Path(task["log"]).parent == work / "slurm"
        assert (out / f"sub-{subject}" / "anat").is_dir()
    assert "Group level finished" in Path(group["tasks"]["None"]["log"]).read_text()
    assert next((out / "group").glob("ae-K*/*_latent.tsv")) and next((out / "models").iterdir())
    # sidecars name their sources with BIDS URIs, never with this machine's paths
    leaks = [p for p in out.rglob("*.json") if str(tmp_path) in p.read_text() and "logs" not in p.parts]
    assert not leaks, leaks
    # the memory SLURM granted reached latentbids as --mem-mb (8G -> 8192 MB)
    configs = [p.read_text() for p in (out / "logs").glob("*/config.toml")]
    assert any("mem_gb = 8.192" in c for c in configs) and any("mem_gb = 32.768" in c for c in configs)


def test_a_failed_task_keeps_the_group_job_from_running(slurm, tmp_path, ixi_dir):
    proc, jobs = slurm(ixi_dir, tmp_path / "out", tmp_path / "work", LATENTBIDS="false", SUBJECTS="IXI012 sub-IXI013")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "work" / "slurm" / "subjects.txt").read_text().split() == ["IXI012", "IXI013"]
    array, group = jobs
    assert array["state"] == "FAILED" and group["state"] == "CANCELLED (DependencyNeverSatisfied)"
    assert group["tasks"] == {}  # never ran


def test_submit_refuses_what_no_job_could_run(slurm, tmp_path):
    proc, jobs = slurm(tmp_path, tmp_path / "out", tmp_path / "work")
    assert proc.returncode == 66 and "dataset_description.json" in proc.stderr and jobs == []
    (tmp_path / "dataset_description.json").write_text("{}")
    proc, jobs = slurm(tmp_path, tmp_path / "out", tmp_path / "work")
    assert proc.returncode == 18 and "no subject" in proc.stderr and jobs == []
    proc, _ = slurm(tmp_path)
    assert proc.returncode == 64 and "submit.sh BIDS_DIR OUTPUT_DIR WORK_DIR" in proc.stderr


@pytest.mark.slow
def test_folds_as_an_array_between_participants_and_the_group_job(slurm, tmp_path):
    """FOLD_JOBS=1: participant array -> fold array (one task per fold, side by side on one work dir)
    -> the group job, which merges the trained folds instead of training them."""
    bids = tmp_path / "bids"
    proc = run_cli(bids, "--n-subjects", 4, "--seed", 3, entry="latentbids-simulate")
    assert proc.returncode == 0, proc.stderr
    out, work = bids / "derivatives" / "latentbids", tmp_path / "work"
    proc, jobs = slurm(bids, out, work, "-d", f"truth={bids / 'derivatives' / 'truth'}",
                       "--group", "--sloppy", "--n-folds", 2, "--skip-analysis", FOLD_JOBS="1")
    assert proc.returncode == 0, proc.stderr
    assert "fold array job" in proc.stdout and "(2 folds, one job each)" in proc.stdout
    participants, folds, group = jobs
    assert folds["options"]["array"] == "1-2" and folds["options"]["dependency"] == f"afterok:{participants['id']}"
    assert folds["options"]["gres"] == "gpu:1" and folds["state"] == "COMPLETED", folds
    assert group["options"]["dependency"] == f"afterok:{folds['id']}" and group["state"] == "COMPLETED", group
    for task in ("1", "2"):
        log = Path(folds["tasks"][task]["log"]).read_text()
        assert f"Group level --fold {task} finished" in log, log[-2000:]
    merged = Path(group["tasks"]["None"]["log"]).read_text()
    assert merged.count("trained by a --fold job") == 2 and "Group level finished" in merged
    meta = json.loads((out / "models" / "ae-K32" / "model.json").read_text())
    assert [f["trained_by"] for f in meta["folds"]] == ["--fold job", "--fold job"]
