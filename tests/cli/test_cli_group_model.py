"""A trained model is never lost or mixed (issue 18): ``group --model`` encodes with it and leaves it alone, a
run with another configuration refuses to replace it, a damaged folder is refused before any work, and a
rerun replaces the model's group set as a whole."""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import run_cli, write_minimal_dataset  # noqa: E402

pytestmark = pytest.mark.slow  # make check skips this module (see Makefile)

SPACE = "MNI152NLin2009aSym:res-nilearn4"
COMMON = ["--skip-bids-validation", "--sloppy", "--n-folds", 2, "--output-spaces", SPACE, "--nprocs", 1,
          "--omp-nthreads", 1]


def _sums(folder: Path) -> dict:
    """Every file of a folder and its sha256 (what "left alone" means)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _simulate(root: Path, n: int, seed: int) -> Path:
    sim = run_cli(root, "--n-subjects", n, "--seed", seed, "--gm-only", "--group-ready", "--resolution", 4,
                  entry="latentbids-simulate")
    assert sim.returncode == 0, sim.stderr
    return root


def _renamed(root: Path, old: str, new: str) -> Path:
    """The simulated dataset with its participant ids renamed (``sub-001`` -> ``sub-901``), GM maps included:
    ids the model's splits do not know, so the model meets them as new subjects."""
    for path in sorted(root.rglob(f"{old}*"), key=lambda p: -len(p.parts)):  # files before their folders
        path.rename(path.with_name(path.name.replace(old, new)))
    table = pd.read_csv(root / "participants.tsv", sep="\t")
    table["participant_id"] = table["participant_id"].str.replace(old, new)
    table.to_csv(root / "participants.tsv", sep="\t", index=False)
    return root


def _group(bids: Path, out: Path, work: Path, *extra):
    return run_cli(bids, out, "group", "-w", work, *COMMON, *extra)


def _one_line(proc, code: int) -> str:
    assert proc.returncode == code, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return proc.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One cohort with a trained 2-fold model (``models/ae-K32``) and its full group set."""
    root = tmp_path_factory.mktemp("model")
    bids = _simulate(root / "a", 24, 11)
    out = bids / "derivatives" / "latentbids"
    proc = _group(bids, out, root / "work")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, bids, out


def test_group_model_encodes_a_new_cohort_and_never_writes_the_model(trained, tmp_path):
    root, _, out = trained
    model = out / "models" / "ae-K32"
    before = _sums(model)
    other = _renamed(_simulate(tmp_path / "b", 16, 12), "sub-0", "sub-9")  # subjects the model never saw
    out_b = other / "derivatives" / "latentbids"
    proc = _group(other, out_b, tmp_path / "work", "--model", model)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"--model {model}" in proc.stderr and "no training" in proc.stderr
    assert "epoch 1" not in proc.stderr  # nothing was trained
    assert _sums(model) == before  # the model folder is left alone, byte for byte
    assert not (out_b / "models").exists()
    latents = pd.read_csv(next((out_b / "group" / "ae-K32").glob("*_desc-aeK32_latent.tsv")), sep="\t")
    assert len(latents) == 16 and set(latents["fold"].astype(str)) == {"1"}  # new subjects: the default fold
    assert not latents["in_training"].any()
    subject = sorted((out_b / "sub-901" / "anat").glob("*_desc-aeK32_latent.json"))
    side = json.loads(subject[0].read_text())
    weights = json.loads((model / "model.json").read_text())["folds"][0]["sha256"]
    assert side["Model"] == "ae-K32" and side["ModelWeightsSHA256"] == weights
    analysis = json.loads((out_b / "group" / "ae-K32" / "analysis.json").read_text())
    assert analysis["Model"] == "ae-K32" and (out_b / "group_ae-K32.html").is_file()


def test_another_configuration_never_replaces_a_model(trained, tmp_path):
    root, bids, out = trained
    model = out / "models" / "ae-K32"
    before, group_before = _sums(model), _sums(out / "group" / "ae-K32")
    config = tmp_path / "k8.toml"
    config.write_text('[model]\nlatent_dim = 8\nmodel_name = "ae-K32"\n')
    start = time.monotonic()
    proc = _group(bids, out, root / "work", "--config-file", config)
    line = _one_line(proc, 64)
    assert "models/ae-K32 holds a model trained with another configuration" in line
    assert "latent_dim 32 there, 8 here" in line and "--model-name" in line and "never replaced" in line
    assert time.monotonic() - start < 60 and "epoch 1" not in proc.stderr  # refused before any training
    assert _sums(model) == before and _sums(out / "group" / "ae-K32") == group_before
    # a model of another size trains under its own name, beside it; each subject keeps both models' files
    proc = _group(bids, out, root / "work", "--latent-dim", 8)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _sums(model) == before and _sums(out / "group" / "ae-K32") == group_before
    anat = out / "sub-001" / "anat"
    for desc in ("aeK32", "aeK8"):
        assert (anat / f"sub-001_space-MNI152NLin2009aSym_res-nilearn4_desc-{desc}_latent.tsv").is_file()
    assert (out / "group_ae-K8.html").is_file() and (out / "group_ae-K32.html").is_file()


def test_a_rerun_reuses_its_own_model_and_replaces_the_group_set_whole(trained, tmp_path):
    root, bids, out = trained
    model = out / "models" / "ae-K32"
    before = _sums(model)
    stale = out / "group" / "ae-K32" / "from-an-older-run.tsv"
    stale.write_text("x\n1\n")
    proc = _group(bids, out, root / "work", "--skip-analysis")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "already holds the model of this configuration" in proc.stderr and "epoch 1" not in proc.stderr
    assert _sums(model) == before
    names = {p.name for p in (out / "group" / "ae-K32").iterdir()}
    # the set is this run's: latent tables and curves, no analysis or report of the earlier run, no stray file
    assert "analysis.json" not in names and stale.name not in names
    assert any(n.endswith("_desc-aeK32_latent.tsv") for n in names)
    assert any(n.endswith("_desc-training_curves.tsv") for n in names)
    assert not (out / "group_ae-K32.html").exists()
    assert not list((out / "group").glob(".ae-K32.*staging*")) and not list((out / "group").glob(".ae-K32.old-*"))


@pytest.mark.parametrize("damage", ["pickle", "split_outside", "missing_weights", "no_checksums"])
def test_a_damaged_model_folder_is_refused_before_any_work(trained, tmp_path, damage):
    root, bids, out = trained
    copy = tmp_path / "model"
    shutil.copytree(out / "models" / "ae-K32", copy)
    if damage == "pickle":  # a pickle in place of the weights, checksums recomputed by whoever swapped it
        import pickle

        weights = copy / "weights" / "fold-1.pt"
        weights.write_bytes(pickle.dumps({"not": "tensors"}))
        meta = json.loads((copy / "model.json").read_text())
        meta["folds"][0]["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
        (copy / "model.json").write_text(json.dumps(meta))
        _rewrite_sums(copy)
    elif damage == "split_outside":
        meta = json.loads((copy / "model.json").read_text())
        meta["folds"][0]["split"] = "/dev/zero"
        (copy / "model.json").write_text(json.dumps(meta))
        _rewrite_sums(copy)
    elif damage == "missing_weights":
        (copy / "weights" / "fold-2.pt").unlink()
    else:
        (copy / "SHA256SUMS").unlink()
    start = time.monotonic()
    proc = _group(bids, tmp_path / "out", tmp_path / "work", "--model", copy)
    line = _one_line(proc, 66)
    assert time.monotonic() - start < 60
    expected = {"pickle": "fold 1's weights (fold-1.pt) cannot be loaded",
                "split_outside": "not a path inside the folder",
                "missing_weights": "weights/fold-2.pt", "no_checksums": "no SHA256SUMS"}[damage]
    assert expected in line and str(copy) in line
    assert not (tmp_path / "out" / "group").exists()  # nothing was written


def _rewrite_sums(folder: Path) -> None:
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(folder).as_posix()}"
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "SHA256SUMS"]
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def test_participant_model_is_verified_before_any_subject(trained, tmp_path):
    """Participant level: a tampered model folder is refused in seconds, before any T1w is processed
    (issue 18: bad weights were found after 165 s, and the subjects after the first were not encoded)."""
    import numpy as np

    root, bids, out = trained
    copy = tmp_path / "model"
    shutil.copytree(out / "models" / "ae-K32", copy)
    (copy / "weights" / "fold-2.pt").write_bytes(b"garbage")
    raw = write_minimal_dataset(tmp_path / "raw", {"01": np.random.default_rng(0).random((20, 24, 20)).astype("f4")})
    start = time.monotonic()
    proc = run_cli(raw, tmp_path / "deriv", "participant", "-w", tmp_path / "work", "--skip-bids-validation",
                   "--model", copy, "--nprocs", 1)
    line = _one_line(proc, 66)
    assert "weights/fold-2.pt does not match its sha256" in line and time.monotonic() - start < 60
    assert not list((tmp_path / "deriv").glob("sub-01/anat/*probseg*"))  # no subject was processed
