"""The written dataset: same seed same bytes, valid BIDS, a plausible T1w, documented tables."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from latentbids.simulate import build_spec, simulate_cohort, simulate_subject
from latentbids.simulate.anatomy import head_model
from latentbids.simulate.t1w import Contrast, template_intensity, warp_to_scanner

pytestmark = pytest.mark.slow  # make check skips this module (see Makefile)

EFFECT = "Hippocampus_L,Hippocampus_R:25"


def _validator() -> str | None:
    exe = Path(sys.executable).with_name("bids-validator-deno")
    return str(exe) if exe.exists() else shutil.which("bids-validator-deno")


def _files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "raw"
    table = simulate_cohort(out, 3, 11, effects=[EFFECT], groups="CN,MCI,AD")
    return out, table


def test_same_seed_same_bytes(raw, tmp_path):
    out, _ = raw
    again = tmp_path / "again"
    simulate_cohort(again, 3, 11, effects=[EFFECT], groups="CN,MCI,AD")
    first, second = _files(out), _files(again)
    assert first.keys() == second.keys()
    assert any(k.endswith("_T1w.nii.gz") for k in first)
    for name in first:
        assert first[name] == second[name], name
    # gzip header: mtime 0 and no file name (nibabel's deterministic writer)
    head = first["sub-001/anat/sub-001_T1w.nii.gz"][:10]
    assert head[:2] == b"\x1f\x8b" and head[4:8] == b"\0\0\0\0" and not head[3] & 0x08


def test_subjects_do_not_depend_on_n_or_mode(raw, tmp_path):
    out, _ = raw
    other = tmp_path / "four"
    simulate_cohort(other, 4, 11, effects=[EFFECT], groups="CN,MCI,AD", gm_only=True)
    rel = "sub-002/anat/sub-002_space-MNI152NLin2009aSym_res-nilearn2_label-GM_probseg.nii.gz"
    assert (other / rel).read_bytes() == (out / "derivatives" / "truth" / rel).read_bytes()
    a = pd.read_csv(out / "participants.tsv", sep="\t")
    b = pd.read_csv(other / "participants.tsv", sep="\t").iloc[:3]
    pd.testing.assert_frame_equal(a, b)


def test_layout_tables_and_provenance(raw):
    out, table = raw
    tsv = pd.read_csv(out / "participants.tsv", sep="\t")
    assert list(tsv.columns) == ["participant_id", "group", "age", "sex", "TIV", "severity"]
    assert list(tsv["group"]) == ["CN", "MCI", "AD"] and list(table["participant_id"]) == list(tsv["participant_id"])
    assert tsv["severity"].iloc[0] == 0 and 0 < tsv["severity"].iloc[1] < tsv["severity"].iloc[2]
    described = json.loads((out / "participants.json").read_text())
    assert set(tsv.columns) <= set(described)
    sim = json.loads((out / "simulation.json").read_text())
    assert sim["Seed"] == 11 and sim["GeneratedBy"]["Version"]
    assert sim["PlantedEffects"] == [
        {"Regions": ["Hippocampus_L", "Hippocampus_R"], "RegionIndices": [37, 38], "Percent": 25.0}
    ]
    assert [g["mean_severity"] for g in sim["Groups"]] == [0.0, 0.5, 1.0]
    truth = out / "derivatives" / "truth"
    assert json.loads((truth / "dataset_description.json").read_text())["DatasetType"] == "derivative"
    for label in ("001", "002", "003"):
        gm = truth / f"sub-{label}/anat/sub-{label}_space-MNI152NLin2009aSym_res-nilearn2_label-GM_probseg.nii.gz"
        img = nib.load(gm)
        assert img.shape == (99, 117, 95) and np.allclose(img.header.get_zooms(), 2)
        side = json.loads(Path(str(gm).replace(".nii.gz", ".json")).read_text())
        assert "Resolution" in side and side["Sources"] == [f"bids:raw:sub-{label}/anat/sub-{label}_T1w.nii.gz"]
        assert (gm.parent / gm.name.replace("label-GM", "label-GM_desc-modulated")).is_file()


def test_t1w_looks_like_a_head_scan(raw):
    out, _ = raw
    img = nib.load(out / "sub-001/anat/sub-001_T1w.nii.gz")
    assert img.get_data_dtype() == np.int16
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
    data = np.asarray(img.dataobj)
    assert 500 < np.percentile(data, 99.5) < 32767 and data.min() >= 0
    assert json.loads((out / "sub-001/anat/sub-001_T1w.json").read_text())["MRAcquisitionType"] == "3D"
    assert data[0].mean() < 0.05 * np.percentile(data, 99)  # air at the edge of the field of view


def test_t1w_contrast_wm_gm_csf():
    """Warp the subject's own tissue maps like its T1w: mean intensity WM > GM > CSF."""
    spec = build_spec(3, 5, effects=[])
    sub = simulate_subject(spec, 1)
    head = head_model(2.0)
    data = np.asarray(sub.t1w.dataobj, dtype=float)
    deform = sub.deformation
    means = {}
    for name, vol in (("wm", head.pad_wm), ("gm", head.pad_gm), ("csf", head.pad_csf)):
        frac, _ = warp_to_scanner(vol, head, deform, 2.0)
        means[name] = data[frac > 0.8].mean()
    assert means["wm"] > means["gm"] * 1.2 > means["csf"] * 1.2
    # a head, not a brain: a dark skull, then bright scalp fat, outside the brain
    c = sub.hidden["contrast"]
    dist, _ = warp_to_scanner(head.hull_dist, head, deform, 2.0)
    skull0 = c["rim_mm"] + 1.0
    fat0 = c["rim_mm"] + c["skull_mm"] + 1.0
    skull = data[(dist > skull0) & (dist < skull0 + 1)].mean()
    fat = data[(dist > fat0) & (dist < fat0 + c["fat_mm"] - 2)].mean()
    assert skull < means["csf"] and fat > means["gm"]
    c = Contrast.draw(np.random.default_rng(0))
    assert template_intensity(head, head.gm, head.wm, head.csf, c).max() < 1.3


@pytest.mark.skipif(_validator() is None, reason="bids-validator-deno not installed")
def test_bids_validator_passes(raw, tmp_path):
    out, _ = raw
    gm_only = tmp_path / "gm"
    simulate_cohort(gm_only, 2, 3, effects=[EFFECT], gm_only=True)
    for root, flags in ((out, ["-r"]), (gm_only, [])):
        res = subprocess.run([_validator(), "--format", "json", *flags, str(root)],
                             capture_output=True, text=True, timeout=300)
        report = json.loads(res.stdout)
        errors = [i for i in report["issues"]["issues"] if i["severity"] == "error"]
        assert errors == [], errors[:3]
        assert res.returncode == 0
