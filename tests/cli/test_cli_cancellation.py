"""SIGTERM/SIGINT while a step is busy: the whole process tree ends within 10 s, nothing
half-written stays in the output, and a rerun with the same work dir resumes.

The runs go through ``latentbids.cli.run.main`` in a subprocess (a small driver script), with one
step replaced by a stand-in that is busy when the signal comes:

* participant level: the Atropos node's worker ignores SIGTERM and SIGINT and computes forever
  (what a worker deep in HD-BET's or ITK's C++ code looks like from outside: no Python signal
  handler runs there), so only SIGKILL can end it; the rerun reuses every step finished before;
* group level: training is interrupted in the middle of its second epoch, after the first epoch's
  checkpoint was written; the rerun resumes from it and ends with the same model as a run that was
  never interrupted.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nibabel as nib
import pandas as pd
import pytest

from latentbids.utils.processes import descendants, is_alive
from tests.helpers import copy_dataset, run_cli

pytestmark = pytest.mark.slow

DRIVER = textwrap.dedent('''
    """Run latentbids with one step replaced by a busy stand-in (env SLOW_STEP names it)."""
    import glob, os, signal, sys, time
    from pathlib import Path

    marker = os.environ.get("BUSY_MARKER")
    step = os.environ.get("SLOW_STEP")

    if step == "atropos":
        import latentbids.anat.segmentation as segmentation

        def stuck(*args, **kwargs):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the worker of the issue: deaf to SIGTERM
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            Path(marker).write_text(str(os.getpid()))
            while True:  # busy in a long step, deaf to SIGTERM
                sum(i * i for i in range(100000))

        segmentation.atropos_segment = stuck

    if step == "training":
        import latentbids.model.training as training

        loss = training.masked_mse

        def slow_loss(*args, **kwargs):
            if glob.glob(os.environ["CHECKPOINTS"]):  # epoch 1 is saved: we are inside epoch 2
                Path(marker).write_text(str(os.getpid()))
                while True:
                    time.sleep(0.05)
            return loss(*args, **kwargs)

        training.masked_mse = slow_loss

    from latentbids.cli.run import main

    sys.exit(main(sys.argv[1:]))
''')


def _start(tmp_path: Path, args: list, **env) -> subprocess.Popen:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    return subprocess.Popen([sys.executable, str(driver), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, NIPYPE_NO_ET="1", **{k: str(v) for k, v in env.items()}))


def _wait_for(path: Path, job: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if job.poll() is not None:
            raise AssertionError(f"the run ended before the busy step: {job.communicate()[1][-3000:]}")
        assert time.time() < deadline, "the busy step was never reached"
        time.sleep(0.1)
    time.sleep(0.5)


def _interrupt(job: subprocess.Popen, signum: int) -> tuple[float, str, list[int]]:
    """Signal the main process only (what docker stop does); seconds until it exited, its log, and
    the processes it had started."""
    tree = descendants(job.pid)
    t0 = time.monotonic()
    job.send_signal(signum)
    _, err = job.communicate(timeout=60)
    seconds = time.monotonic() - t0
    print(f"\n{signal.Signals(signum).name}: the run ended {seconds:.1f} s later")
    return seconds, err, tree


def _no_partial_files(*folders: Path) -> None:
    for folder in folders:
        leftovers = [p for p in folder.rglob("*") if ".tmp" in p.name or p.name.startswith(".tpl_mask_")]
        assert not leftovers, leftovers


def test_sigterm_ends_a_busy_participant_worker_and_the_rerun_resumes(ixi_dir, tmp_path):
    """``scancel``/``docker stop`` in the middle of a long step (replaces the older test that sent
    SIGTERM between steps)."""
    data = copy_dataset(ixi_dir, tmp_path / "ds", subjects=["IXI013"])
    out, work = data / "derivatives" / "latentbids", tmp_path / "work"
    args = [data, out, "participant", "-w", work, "--sloppy", "--nprocs", 1, "--omp-nthreads", 2,
            "--skip-bids-validation"]
    busy = tmp_path / "busy"
    job = _start(tmp_path, args, SLOW_STEP="atropos", BUSY_MARKER=busy)
    _wait_for(busy, job, timeout=300)
    worker = int(busy.read_text())
    assert worker != job.pid  # the step runs in a MultiProc worker, not in the main process
    seconds, err, tree = _interrupt(job, signal.SIGTERM)

    assert job.returncode == 130, err
    assert seconds < 10, f"exit took {seconds:.1f} s"
    assert worker in tree
    time.sleep(0.5)
    assert not [pid for pid in tree if is_alive(pid)], "a process of the run outlived it"
    assert "Interrupted" in err and "Traceback" not in err
    assert "ignored SIGTERM and were killed" in err
    _no_partial_files(out, work)
    # what was published before the signal (the transforms) is complete; no GM map was published
    published = sorted(out.glob("sub-IXI013/anat/*"))
    assert not [p for p in published if "probseg" in p.name]
    for path in published:
        if path.suffix == ".h5":  # a complete copy of one of the registration node's results
            assert any(path.read_bytes() == w.read_bytes() for w in work.rglob("register/*_xfm.h5")), path
        elif path.suffix == ".json":
            json.loads(path.read_text())
    finished = {p: p.stat().st_mtime_ns for step in ("n4", "brain_extraction", "register")
                for p in work.rglob(f"result_{step}.pklz")}
    assert len(finished) == 3  # these steps had finished before the signal

    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "register finished (cached)" in proc.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())  # reused, not recomputed
    gm = next(out.glob("sub-IXI013/anat/sub-IXI013_space-MNI152NLin2009aSym_*label-GM_probseg.nii.gz"))
    assert nib.load(str(gm)).shape == (99, 117, 95)
    _no_partial_files(out, work)


@pytest.fixture(scope="module")
def gm_maps_cohort(tmp_path_factory):
    """Eight simulated subjects (``--gm-only``: a dataset of true GM maps with participants.tsv)
    whose maps are copied into an output folder as if the participant level had written them."""
    import shutil

    root = tmp_path_factory.mktemp("cohort")
    bids = root / "bids"
    proc = run_cli(bids, "--n-subjects", 8, "--seed", 5, "--gm-only", entry="latentbids-simulate")
    assert proc.returncode == 0, proc.stderr
    maps = sorted(bids.glob("sub-*/anat/*_space-*_probseg.nii.gz"))  # plain and modulated GM
    assert len(maps) == 16
    return bids, maps, shutil


def _group_output(root: Path, cohort) -> Path:
    """The maps under the names the participant level gives them (``bids.naming.gm_map_name``)."""
    from latentbids.bids.naming import gm_map_name
    from latentbids.resources import get_template

    bids, maps, shutil = cohort
    template = get_template("MNI152NLin2009aSym", 2)
    out = root / "out"
    for path in maps:
        subject = path.name.split("_")[0][4:]
        target = out / f"sub-{subject}" / "anat" / gm_map_name(subject, None, template.space, template.res,
                                                               "desc-modulated" in path.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    return out


def test_sigint_mid_epoch_then_training_resumes_from_its_checkpoint(gm_maps_cohort, tmp_path):
    bids = gm_maps_cohort[0]
    common = ["group", "--sloppy", "--n-folds", 2, "--skip-analysis", "--skip-bids-validation",
              "--nprocs", 1, "--omp-nthreads", 1]
    out, work = _group_output(tmp_path / "a", gm_maps_cohort), tmp_path / "a" / "work"
    busy = tmp_path / "busy"
    job = _start(tmp_path, [bids, out, *common, "-w", work], SLOW_STEP="training", BUSY_MARKER=busy,
                 CHECKPOINTS=work / "model_training" / "*" / "fold-1" / "last.pt")
    _wait_for(busy, job, timeout=180)
    seconds, err, _ = _interrupt(job, signal.SIGINT)
    assert job.returncode == 130, err
    assert seconds < 10, f"exit took {seconds:.1f} s"
    assert "Interrupted" in err and "Traceback" not in err
    _no_partial_files(out, work)
    assert not (out / "models").exists() and not list(out.glob("group/**/*_latent.tsv"))
    assert not list(out.glob("group/.*staging*")), "the staged group set must not outlive an interrupted run"

    resumed = run_cli(bids, out, *common, "-w", work)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming training from" in resumed.stderr and "(epoch 1 done)" in resumed.stderr
    _no_partial_files(out, work)

    # the same run never interrupted gives the same latent codes
    out_b, work_b = _group_output(tmp_path / "b", gm_maps_cohort), tmp_path / "b" / "work"
    straight = run_cli(bids, out_b, *common, "-w", work_b)
    assert straight.returncode == 0, straight.stderr
    table = next(out.glob("group/ae-K32/*_desc-aeK32_latent.tsv")).name
    a = pd.read_csv(out / "group" / "ae-K32" / table, sep="\t")
    b = pd.read_csv(out_b / "group" / "ae-K32" / table, sep="\t")
    pd.testing.assert_frame_equal(a, b)
