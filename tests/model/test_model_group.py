"""Group level end to end on a synthetic cohort: outputs, fold hygiene, model folder, encode_with_model
and its refusals, fit-all labelling, determinism and cache reuse."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from model_testdata import make_cohort, sloppy_config, toy_atlas, toy_template  # noqa: E402

from latentbids.errors import MissingInputError, UsageError  # noqa: E402
from latentbids.model.bundle import load_bundle, sha256_file  # noqa: E402
from latentbids.model.subject_encoding import encode_with_model  # noqa: E402
from latentbids.settings import group_settings
from latentbids.workflows.group.training import train_and_encode  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("group")
    tpl = toy_template()
    atlas = toy_atlas(tpl)
    rec = make_cohort(tmp / "gm", tpl, n_subjects=9)
    config = sloppy_config(tmp)
    result = train_and_encode(group_settings(config), rec, tpl, atlas)
    return tmp, tpl, atlas, rec, config, result


def test_group_outputs(trained):
    tmp, tpl, atlas, rec, config, res = trained
    table = res.latent_table
    assert list(table.columns) == [
        "participant_id",
        "session_id",
        "fold",
        "in_training",
        "z0",
        "z1",
        "z2",
        "z3",
        "error",
    ]
    assert len(table) == len(rec)  # every map once (sub-01 has two sessions)
    assert not table["in_training"].any()
    on_disk = pd.read_csv(res.latent_tsv, sep="\t")
    assert len(on_disk) == len(rec)
    assert res.curves_png.is_file() and res.curves_tsv.is_file()
    assert res.latent_tsv.parent == res.model_dir.parents[1] / "group" / res.model_name  # the model's group set
    # each map's fold is the one that held its subject out; sessions of a subject share it
    held = res.splits[res.splits.role == "test"].set_index("participant_id")["fold"]
    assert (table["fold"] == table["participant_id"].map(held)).all()
    assert table[table.participant_id == "sub-01"].fold.nunique() == 1
    out = Path(config.execution.output_dir)
    ses = out / "sub-01" / "ses-2" / "anat"
    recon = nib.load(str(ses / "sub-01_ses-2_space-MNI152NLin2009aSym_res-4_desc-aeK4_recon.nii.gz"))
    assert recon.shape == tpl.shape and np.allclose(recon.affine, tpl.affine)  # box restored
    err = nib.load(
        str(ses / "sub-01_ses-2_space-MNI152NLin2009aSym_res-4_desc-aeK4_error.nii.gz")
    ).get_fdata()
    mask = np.asarray(tpl.mask.dataobj) > 0
    assert (err[~mask] == 0).all() and err[mask].mean() > 0
    regions = pd.read_csv(
        ses / "sub-01_ses-2_space-MNI152NLin2009aSym_atlas-toy_res-4_desc-aeK4_regionerror.tsv", sep="\t"
    )
    assert list(regions["index"]) == [1, 2, 3, 4] and regions["error"].notna().all()
    side = json.loads((ses / "sub-01_ses-2_space-MNI152NLin2009aSym_res-4_desc-aeK4_recon.json").read_text())
    assert side["Resolution"] and side["InTraining"] is False


def test_model_folder_is_self_describing(trained):
    tmp, tpl, atlas, rec, config, res = trained
    mdir = res.model_dir
    meta = json.loads((mdir / "model.json").read_text())
    assert meta["latent_dim"] == 4 and meta["template"]["space"] == tpl.space
    assert meta["template"]["shape"] == list(tpl.shape) and meta["atlas"]["name"] == "toy"
    assert meta["seeds"]["random_seed"] == 7 and meta["versions"]["torch"]
    assert (mdir / "config.toml").read_text().strip()
    for entry in meta["folds"]:
        assert sha256_file(mdir / entry["weights"]) == entry["sha256"]
        split = pd.read_csv(mdir / entry["split"], sep="\t")
        assert set(split.role) == {"train", "validation", "test"}
        assert split.participant_id.is_unique
    # no participant in two roles, checked again from the files on disk
    bundle = load_bundle(mdir)
    assert not bundle.splits.duplicated(["fold", "participant_id"]).any()


def test_a_model_folder_missing_a_split_file_is_a_one_line_error(trained, tmp_path):
    """A model folder copied without one of its split TSVs (or with a truncated one) must say so and
    how to fix it, not raise pandas' FileNotFoundError from deep inside."""
    tmp, tpl, atlas, rec, config, res = trained
    copy = tmp_path / "model"
    shutil.copytree(res.model_dir, copy)
    split = json.loads((copy / "model.json").read_text())["folds"][1]["split"]
    (copy / split).unlink()
    with pytest.raises(MissingInputError) as info:
        load_bundle(copy)
    assert info.value.exit_code == 66 and "\n" not in str(info.value)
    assert split in info.value.message and "copy the whole model folder" in info.value.message
    assert load_bundle(res.model_dir).splits["fold"].nunique() == 3  # the original still reads


def test_encode_with_model_matches_group_and_writes(trained, tmp_path):
    tmp, tpl, atlas, rec, config, res = trained
    row = rec.iloc[3]
    out = encode_with_model(
        res.model_dir,
        row.gm_path,
        participant_id=row.participant_id,
        session_id=row.session_id,
        output_dir=tmp_path,
        device="cpu",
        space=tpl.space,
    )
    group_row = res.latent_table.query("participant_id == @row.participant_id").iloc[0]
    assert out.fold == group_row.fold and out.in_training is False
    np.testing.assert_allclose(
        out.latent[["z0", "z1", "z2", "z3"]].to_numpy()[0],
        group_row[["z0", "z1", "z2", "z3"]].to_numpy(dtype=float),
        rtol=1e-5,
        atol=1e-6,
    )
    assert all(p.is_file() for p in out.paths.values())
    # a subject the model never saw uses the default fold and is not in training
    new = encode_with_model(res.model_dir, row.gm_path, participant_id="sub-99", device="cpu")
    assert new.role == "new" and not new.in_training
    # forcing a fold where the subject trained labels it, or refuses it on request
    train_fold = (
        res.splits
        .query("participant_id == @row.participant_id and role == 'train'")
        .fold.iloc[0]
    )
    forced = encode_with_model(
        res.model_dir,
        row.gm_path,
        participant_id=row.participant_id,
        fold=train_fold,
        device="cpu",
    )
    assert forced.in_training and bool(forced.latent["in_training"].iloc[0])
    with pytest.raises(UsageError, match="train subject"):
        encode_with_model(
            res.model_dir,
            row.gm_path,
            participant_id=row.participant_id,
            fold=train_fold,
            device="cpu",
            refuse_training=True,
        )


def test_model_refuses_other_grid_and_template(trained, tmp_path):
    tmp, tpl, atlas, rec, config, res = trained
    other = tmp_path / "other.nii.gz"
    nib.save(
        nib.Nifti1Image(np.zeros((24, 28, 24), np.float32), np.diag([3.0, 3, 3, 1])), str(other)
    )
    with pytest.raises(UsageError) as info:
        encode_with_model(res.model_dir, other, participant_id="sub-01", device="cpu")
    msg = info.value.message
    assert "20x24x20" in msg and "24x28x24" in msg  # both grids named
    with pytest.raises(UsageError, match="MNI152NLin2009cAsym"):
        encode_with_model(
            res.model_dir,
            rec.gm_path[0],
            participant_id="sub-01",
            space="MNI152NLin2009cAsym",
            device="cpu",
        )
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA"):
            encode_with_model(
                res.model_dir, rec.gm_path[0], participant_id="sub-01", device="cuda"
            )


def test_rerun_reuses_cache_and_is_deterministic(trained):
    tmp, tpl, atlas, rec, config, res = trained
    # same work dir: cache reused, training resumes from its finished checkpoints
    again = train_and_encode(group_settings(config), rec, tpl, atlas)
    assert again.cache_reused and again.cache == res.cache
    assert not again.trained_here and again.model_dir == res.model_dir  # its own model found, not retrained
    pd.testing.assert_frame_equal(again.latent_table, res.latent_table)
    # fresh work dir: trained again from scratch, identical latents (deterministic, same device)
    config.execution.work_dir = str(tmp / "work2")
    config.execution.output_dir = str(tmp / "out2")
    fresh = train_and_encode(group_settings(config), rec, tpl, atlas)
    assert not fresh.cache_reused
    pd.testing.assert_frame_equal(fresh.latent_table, res.latent_table)
    shutil.rmtree(tmp / "out2")


def test_fit_all_labels_training_subjects_and_modulated_scale(tmp_path):
    tpl = toy_template()
    atlas = toy_atlas(tpl)
    rec = make_cohort(tmp_path / "gm", tpl, n_subjects=5, two_sessions=())
    config = sloppy_config(tmp_path, fit_all=True, input_map="modulated", max_epochs=1)
    res = train_and_encode(group_settings(config), rec, tpl, atlas)
    table = res.latent_table
    assert set(table.fold) == {"all"} and table.in_training.all() and len(table) == 5
    meta = json.loads((res.model_dir / "model.json").read_text())
    assert meta["mode"] == "fit_all" and 0 < meta["folds"][0]["scale"] <= 1
    out = encode_with_model(
        res.model_dir, rec.gm_path[0], participant_id=rec.participant_id[0], device="cpu"
    )
    assert out.in_training


def test_sloppy_downsamples_a_2mm_grid(tmp_path):
    tpl = toy_template(shape=(36, 44, 36), resolution=2.0)
    atlas = toy_atlas(tpl)
    rec = make_cohort(tmp_path / "gm", tpl, n_subjects=5, two_sessions=())
    config = sloppy_config(tmp_path, fit_all=True, max_epochs=1)
    res = train_and_encode(group_settings(config), rec, tpl, atlas)
    meta = json.loads((res.model_dir / "model.json").read_text())
    assert meta["grid"]["downsample"] == 2 and meta["grid"]["resolution"] == 4.0
    assert meta["grid"]["shape"] == [18, 22, 18]
    # a block-average of a grid labelled like TemplateFlow's (the toy: res-2) is named by its voxel size
    assert res.latent_tsv.name == "space-MNI152NLin2009aSym_res-4mm_desc-aeK4_latent.tsv"
    # the model still takes GM maps on the 2 mm template grid
    out = encode_with_model(res.model_dir, rec.gm_path[1], participant_id="sub-50", device="cpu")
    assert out.recon.shape == (18, 22, 18)
