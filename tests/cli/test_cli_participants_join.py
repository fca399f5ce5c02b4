"""The group level joins participants.tsv to the GM maps as BIDS reads it: a bad table is one line and
exit 66 before any training, a cohort without labels still trains, encodes and runs the label-free
analysis (saying why no contrast ran), and labels that differ only in case are named."""
from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from latentbids.errors import MissingInputError
from latentbids.workflows.group.inputs import join_participants
from tests.helpers import run_cli

SPACE = "MNI152NLin2009aSym:res-nilearn4"
GROUP = ["--sloppy", "--skip-bids-validation", "--output-spaces", SPACE, "--nprocs", "1", "--n-folds", "2"]


def _records(*subjects):
    return pd.DataFrame({"participant_id": [f"sub-{s}" for s in subjects], "session_id": "n/a", "gm_path": "x"})


def _table(folder, text: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "participants.tsv").write_text(text)
    return folder


def test_ids_without_sub_still_give_the_labels(tmp_path):
    bids = _table(tmp_path, "participant_id\tgroup\tage\n01\tCN\t61\n02\tAD\tn/a\n")
    joined = join_participants(_records("01", "02", "03"), bids)
    assert joined["group"].tolist()[:2] == ["CN", "AD"] and pd.isna(joined["group"].iloc[2])
    assert joined["age"].iloc[0] == 61


def test_a_table_that_matches_no_subject_is_one_error(tmp_path):
    bids = _table(tmp_path, "participant_id\tgroup\nsub-S1\tCN\nsub-S2\tAD\n")
    with pytest.raises(MissingInputError) as info:
        join_participants(_records("01", "02"), bids)
    message = info.value.message
    assert message.startswith(f"participants.tsv {bids / 'participants.tsv'}: none of its 2 participant_id")
    assert "'sub-S1'" in message and "sub-01" in message and "sub-<label>" in message


def test_case_variants_and_unlisted_subjects_are_warned_about(tmp_path, caplog):
    bids = _table(tmp_path, "participant_id\tgroup\nsub-01\tCN\nsub-02\tcn\nsub-03\tCn\nsub-04\tAD\n")
    with caplog.at_level(logging.WARNING, logger="latentbids"):
        joined = join_participants(_records("01", "02", "03", "04", "05"), bids)
    assert joined["group"].tolist()[:4] == ["CN", "cn", "Cn", "AD"]
    lines = [r.getMessage() for r in caplog.records]
    assert any("'CN' (1), 'Cn' (1), 'cn' (1) differ only in case" in line for line in lines), lines
    assert any("1 subject(s) have no row in" in line and "sub-05" in line for line in lines), lines


def test_without_participants_tsv_the_cohort_has_no_labels_and_says_why(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="latentbids"):
        joined = join_participants(_records("01", "02"), tmp_path)
    assert joined["group"].tolist() == ["n/a", "n/a"]
    assert any("No participants.tsv" in r.getMessage() and "no contrast" in r.getMessage() for r in caplog.records)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """12 simulated subjects whose GM maps sit where the participant level writes them."""
    from latentbids.cli.simulate import main as simulate

    folder = tmp_path_factory.mktemp("cohort") / "ds"
    assert simulate([str(folder), "--n-subjects", "12", "--seed", "1", "--gm-only", "--group-ready",
                     "--resolution", "4"]) == 0
    return folder


def _copy(cohort, tmp_path):
    import shutil

    return shutil.copytree(cohort, tmp_path / "ds")


@pytest.mark.slow
def test_a_latin1_participants_tsv_exits_66_before_training(cohort, tmp_path):
    bids = _copy(cohort, tmp_path)
    table = bids / "participants.tsv"
    table.write_bytes(table.read_bytes().replace(b"\tCN\t", "\tcontr\xf4le\t".encode("latin-1")))
    proc = run_cli(bids, bids / "derivatives" / "latentbids", "group", "-w", tmp_path / "w", *GROUP, timeout=300)
    assert proc.returncode == 66, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "| ERROR" in ln]
    assert len(errors) == 1 and f"participants.tsv {table} is not UTF-8 (byte 0xf4 on line 2)" in errors[0]
    assert not (bids / "derivatives" / "latentbids" / "models").exists()


@pytest.mark.slow
def test_a_cohort_without_participants_tsv_runs_the_label_free_analysis(cohort, tmp_path):
    """Before: the SHAP section died on pd.concat([]) (exit 1)."""
    bids = _copy(cohort, tmp_path)
    (bids / "participants.tsv").unlink()
    (bids / "participants.json").unlink()
    out = bids / "derivatives" / "latentbids"
    proc = run_cli(bids, out, "group", "-w", tmp_path / "w", *GROUP, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "| ERROR" not in proc.stderr
    assert "No participants.tsv in" in proc.stderr and "no contrast" in proc.stderr
    analysis = json.loads(next(out.glob("group/**/*analysis.json")).read_text())
    assert analysis["Failures"] == {} and analysis["Contrasts"] == [], analysis["Failures"]
    assert list(out.glob("sub-001/**/*latent*.tsv")), "subjects were not encoded"
