"""The group level launched by torchrun (two CPU processes, gloo), as docs/cluster.md shows it: both
train, process 0 writes the outputs once; a refusal ends every process with the documented code."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
from test_model_distributed import torchrun  # noqa: E402

from tests.helpers import run_cli  # noqa: E402

pytestmark = pytest.mark.slow  # make check skips this module (see Makefile)

SPACE = "MNI152NLin2009aSym:res-nilearn4"
COMMON = ["--skip-bids-validation", "--sloppy", "--n-folds", 2, "--skip-analysis", "--output-spaces", SPACE,
          "--nprocs", 1, "--omp-nthreads", 1]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("torchrun")
    bids = root / "sim"
    sim = run_cli(bids, "--n-subjects", 8, "--seed", 6, "--gm-only", "--group-ready", "--resolution", 4,
                  entry="latentbids-simulate")
    assert sim.returncode == 0, sim.stderr
    return bids, bids / "derivatives" / "latentbids"


def test_group_level_under_torchrun(cohort, tmp_path):
    bids, out = cohort
    code, log = torchrun(["-m", "latentbids", bids, out, "group", "-w", tmp_path / "work", *COMMON])
    assert code == 0, log[-4000:]
    assert "Data-parallel training: process 0 of 2 (gloo" in log and "process 1 of 2 (gloo" in log
    assert "process 1 of 2 (gloo, local 1 of 2): training done; process 0 encodes and writes the outputs" in log
    assert log.count("Group level finished") == 1 and "Traceback" not in log
    meta = json.loads((out / "models" / "ae-K32" / "model.json").read_text())
    assert [f["processes"] for f in meta["folds"]] == [2, 2]
    table = pd.read_csv(next((out / "group" / "ae-K32").glob("*_desc-aeK32_latent.tsv")), sep="\t")
    assert len(table) == 8 and table["participant_id"].is_unique


def test_a_refusal_ends_every_process_with_its_code(cohort, tmp_path):
    """Each process says the one-line error and exits 64; torchrun itself then exits 1 (with its own
    traceback, ChildFailedError) and lists the exit codes: the first failure's is 64, and a process
    still on its way out when torchrun stops the others may be listed as ended by SIGTERM (-15)."""
    bids, out = cohort
    code, log = torchrun(["-m", "latentbids", bids, out, "group", "-w", tmp_path / "work", *COMMON,
                          "--batch-size", 1])
    assert code == 1
    errors = [line for line in log.splitlines() if "| ERROR" in line]
    assert len(errors) == 2, log[-3000:]  # one line per process, no traceback of latentbids'
    assert all("--batch-size 1 cannot be split over 2 processes: use --batch-size 2 or more" in e for e in errors)
    codes = re.findall(r"exitcode\s*:\s*(-?\d+)", log)
    assert "64" in codes and set(codes) <= {"64", "-15"}, codes
    assert "latentbids/model" not in log
