"""Folds as jobs of their own: ``group --fold N`` trains one fold into the work dir (several at once,
sharing it), a group run without ``--fold`` merges them and gives what one run gives; the refusals
(a fold that does not exist, one being trained by another job, one trained on another grid)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from latentbids.utils.locks import try_lock
from tests.helpers import run_cli

pytestmark = pytest.mark.slow  # make check skips this module (see Makefile)

SPACE = "MNI152NLin2009aSym:res-nilearn4"
COMMON = ["--skip-bids-validation", "--sloppy", "--n-folds", 2, "--skip-analysis", "--deterministic",
          "--output-spaces", SPACE, "--nprocs", 1, "--omp-nthreads", 1]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Ten simulated subjects' true GM maps where the participant level puts them (4 mm grid)."""
    root = tmp_path_factory.mktemp("folds")
    bids = root / "sim"
    sim = run_cli(bids, "--n-subjects", 10, "--seed", 4, "--gm-only", "--group-ready", "--resolution", 4,
                  entry="latentbids-simulate")
    assert sim.returncode == 0, sim.stderr
    return bids, bids / "derivatives" / "latentbids"


def _group(bids, out, work, *extra) -> list[str]:
    exe = Path(sys.executable).parent / "latentbids"
    return [str(exe), str(bids), str(out), "group", "-w", str(work), *map(str, COMMON), *map(str, extra)]


def _one_line_error(proc, code: int, text: str) -> None:
    assert proc.returncode == code, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and text in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_fold_jobs_side_by_side_then_a_merge_give_the_one_run_model(cohort, tmp_path):
    bids, out = cohort
    work = tmp_path / "work"
    env = dict(os.environ, NIPYPE_NO_ET="1")
    jobs = [subprocess.Popen(_group(bids, out, work, "--fold", k), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env) for k in (1, 2)]  # two jobs, one work dir, at once
    for job in jobs:
        _, err = job.communicate(timeout=600)
        assert job.returncode == 0, err[-3000:]
        assert "and kept in" in err and "run the group level without --fold" in err
    store = work / "model_folds" / "ae-K32"
    records = {k: json.loads((store / f"fold-{k}.json").read_text()) for k in (1, 2)}
    assert {r["fold"] for r in records.values()} == {"1", "2"} and records[1]["model_key"] == records[2]["model_key"]
    assert not (out / "models").exists()  # a fold job writes no outputs: the merge does
    assert len(list((work / "model_cache").glob("gm-*.npy"))) == 1  # one cache, built once for both

    merged = run_cli(bids, out, "group", "-w", work, *COMMON)
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert merged.stderr.count("trained by a --fold job") == 2 and "epoch 1:" not in merged.stderr
    meta = json.loads((out / "models" / "ae-K32" / "model.json").read_text())
    assert [f["trained_by"] for f in meta["folds"]] == ["--fold job", "--fold job"]
    table = next((out / "group" / "ae-K32").glob("*_desc-aeK32_latent.tsv"))
    from_folds = pd.read_csv(table, sep="\t")
    curves = pd.read_csv(next((out / "group" / "ae-K32").glob("*_desc-training_curves.tsv")), sep="\t")
    assert sorted(curves["fold"].unique()) == [1, 2]

    one_run = run_cli(bids, out, "group", "-w", tmp_path / "work-one-run", *COMMON)  # deterministic, same CPU
    assert one_run.returncode == 0, one_run.stderr[-3000:]
    pd.testing.assert_frame_equal(pd.read_csv(table, sep="\t"), from_folds)


def test_a_fold_that_does_not_exist_is_a_usage_error(cohort, tmp_path):
    bids, out = cohort
    proc = run_cli(bids, out, "group", "-w", tmp_path / "work", *COMMON, "--fold", 7)
    _one_line_error(proc, 64, "--fold 7: this run has 2 folds (--n-folds 2): pick one of 1-2")
    proc = run_cli(bids, out, "group", "-w", tmp_path / "work", *COMMON, "--fold", 1, "--fit-all")
    _one_line_error(proc, 64, "--fold trains one fold of the cross-validation, --fit-all one model")
    proc = run_cli(bids, out, "participant", "-w", tmp_path / "work", "--fold", 1)
    _one_line_error(proc, 64, "--fold trains one fold of the group level's cross-validation")


def test_a_fold_another_job_is_training_is_a_temporary_failure(cohort, tmp_path):
    bids, out = cohort
    work = tmp_path / "work"
    held = try_lock(work / "model_folds" / "ae-K32" / "fold-2.lock")  # what a running fold-2 job holds
    try:
        proc = run_cli(bids, out, "group", "-w", work, *COMMON, "--fold", 2)
    finally:
        held.close()
    _one_line_error(proc, 75, "Fold 2 of model ae-K32 is being trained by another job in this work dir")
    assert not (work / "model_folds" / "ae-K32" / "fold-2.json").exists()


def test_a_fold_trained_on_another_grid_is_refused(tmp_path):
    """A fold job run with --sloppy (4 mm grid from 2 mm maps) and a merge without it (2 mm)."""
    bids = tmp_path / "sim2"
    sim = run_cli(bids, "--n-subjects", 6, "--seed", 4, "--gm-only", "--group-ready", "--resolution", 2,
                  entry="latentbids-simulate")
    assert sim.returncode == 0, sim.stderr
    out, work = bids / "derivatives" / "latentbids", tmp_path / "work"
    opts = ["--skip-bids-validation", "--n-folds", 2, "--skip-analysis", "--nprocs", 1, "--omp-nthreads", 1,
            "--output-spaces", "MNI152NLin2009aSym:res-nilearn2"]
    fold = run_cli(bids, out, "group", "-w", work, *opts, "--sloppy", "--fold", 1)
    assert fold.returncode == 0, fold.stderr[-3000:]
    merge = run_cli(bids, out, "group", "-w", work, *opts)
    _one_line_error(merge, 64, "was trained on MNI152NLin2009aSym at 4 mm (network box")
    assert "but this run fits MNI152NLin2009aSym at 2 mm" in merge.stderr
    assert "rerun the --fold jobs with this run's --output-spaces and --sloppy" in merge.stderr
    assert not (out / "models").exists()


INTERRUPTIBLE = '''
"""latentbids with training stuck inside its second epoch (after the first epoch's checkpoint)."""
import glob, os, sys, time
from pathlib import Path

import latentbids.model.training as training

loss = training.masked_mse


def stuck_after_first_checkpoint(*args, **kwargs):
    if glob.glob(os.environ["CHECKPOINTS"]):
        Path(os.environ["BUSY_MARKER"]).write_text(str(os.getpid()))
        while True:
            time.sleep(0.05)
    return loss(*args, **kwargs)


training.masked_mse = stuck_after_first_checkpoint
from latentbids.cli.run import main

sys.exit(main(sys.argv[1:]))
'''


@pytest.mark.slow
def test_an_interrupted_fold_job_leaves_nothing_half_written_and_resumes(cohort, tmp_path):
    import signal
    import time

    bids, out = cohort
    work = tmp_path / "work"
    driver = tmp_path / "driver.py"
    driver.write_text(INTERRUPTIBLE)
    busy = tmp_path / "busy"
    args = [sys.executable, str(driver), *_group(bids, out, work, "--fold", 1)[1:]]
    env = dict(os.environ, NIPYPE_NO_ET="1", BUSY_MARKER=str(busy),
               CHECKPOINTS=str(work / "model_training" / "*" / "fold-1" / "last.pt"))
    job = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 300
        while not busy.exists():
            assert job.poll() is None, job.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "training never reached its second epoch"
            time.sleep(0.2)
        job.send_signal(signal.SIGTERM)
        _, err = job.communicate(timeout=30)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 130, err[-3000:]
    store = work / "model_folds" / "ae-K32"
    # no weights, no record, no temporary file: only the lock file, which the dead job no longer holds
    assert sorted(p.name for p in store.iterdir()) == ["fold-1.lock"]
    held = try_lock(store / "fold-1.lock")
    assert held is not None
    held.close()

    again = run_cli(bids, out, "group", "-w", work, *COMMON, "--fold", 1)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Resuming training from" in again.stderr and "(epoch 1 done)" in again.stderr
    record = json.loads((store / "fold-1.json").read_text())
    from latentbids.model.bundle import sha256_file

    assert sha256_file(store / record["weights"]) == record["sha256"]
    assert [row["epoch"] for row in record["history"]] == [1, 2, 3]  # --sloppy: 3 epochs, none lost
