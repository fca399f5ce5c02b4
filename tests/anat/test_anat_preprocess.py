"""Preprocessing and segmentation functions on one real IXI scan (2 mm) and small arrays."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from latentbids.anat.ants_context import itk_threads
from latentbids.anat.brain_mask import apply_mask
from latentbids.anat.preprocess import load_3d, n4_bias_correct, reorient_to_ras
from latentbids.anat.segmentation import normalise_priors
from latentbids.errors import MissingInputError


@pytest.fixture(scope="module")
def t1w(ixi_dir):
    return ixi_dir / "sub-IXI012" / "anat" / "sub-IXI012_T1w.nii.gz"


def test_reorient_keeps_world_coordinates(t1w, tmp_path):
    src = nib.load(str(t1w))
    assert nib.aff2axcodes(src.affine) != ("R", "A", "S")
    out = nib.load(reorient_to_ras(t1w, tmp_path / "ras.nii.gz"))
    assert nib.aff2axcodes(out.affine) == ("R", "A", "S")
    assert out.get_data_dtype() == np.float32
    # the same world point holds the same intensity in both images
    ijk_src = np.array([40, 70, 30, 1])
    world = src.affine @ ijk_src
    ijk_out = np.round(np.linalg.inv(out.affine) @ world).astype(int)
    assert np.asarray(src.dataobj)[tuple(ijk_src[:3])] == np.asarray(out.dataobj)[tuple(ijk_out[:3])]


def test_load_3d_errors_name_the_file(tmp_path):
    with pytest.raises(MissingInputError, match="not found"):
        load_3d(tmp_path / "missing.nii.gz")
    bad = tmp_path / "bad_T1w.nii.gz"
    bad.write_bytes(b"not a nifti")
    with pytest.raises(MissingInputError, match="bad_T1w.nii.gz"):
        load_3d(bad)
    four = tmp_path / "four.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 2), np.float32), np.eye(4)), four)
    with pytest.raises(MissingInputError, match="4-D"):
        load_3d(four)
    one = tmp_path / "one.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 1), np.float32), np.eye(4)), one)
    assert load_3d(one).shape == (3, 3, 3)


@pytest.mark.slow
def test_n4_flattens_a_planted_bias(t1w, tmp_path):
    ras = nib.load(reorient_to_ras(t1w, tmp_path / "ras.nii.gz"))
    data = ras.get_fdata(dtype=np.float32)
    ramp = np.linspace(0.6, 1.4, data.shape[0], dtype=np.float32)[:, None, None]
    biased = tmp_path / "biased.nii.gz"
    nib.save(nib.Nifti1Image(data * ramp, ras.affine), biased)
    out = nib.load(n4_bias_correct(biased, tmp_path / "n4.nii.gz", iterations=(50, 50, 30), nthreads=1))
    ref = nib.load(n4_bias_correct(tmp_path / "ras.nii.gz", tmp_path / "n4ref.nii.gz", iterations=(50, 50, 30),
                                   nthreads=1)).get_fdata()
    corr = out.get_fdata()
    head = data > np.percentile(data, 60)
    half = data.shape[0] // 2
    left, right = head.copy(), head.copy()
    left[half:] = False
    right[:half] = False
    # gain relative to the same scan without the planted ramp (both through N4): the ramp makes
    # the right half ~1.3x the left one; after N4 the halves agree within 15 % (a linear ramp is
    # partly confounded with anatomy, so N4 leaves some of it)
    before = (data * ramp) / np.maximum(data, 1e-3)
    after = corr / np.maximum(ref, 1e-3)
    assert before[right].mean() / before[left].mean() > 1.25
    assert 0.87 < np.median(after[right]) / np.median(after[left]) < 1.15
    assert 900 < np.percentile(corr[head], 99.5) < 1100  # rescaled to ~1000


def test_apply_mask(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((3, 3, 3), np.float32) * 5, np.eye(4)), tmp_path / "i.nii.gz")
    m = np.zeros((3, 3, 3), np.uint8)
    m[1, 1, 1] = 1
    nib.save(nib.Nifti1Image(m, np.eye(4)), tmp_path / "m.nii.gz")
    out = nib.load(apply_mask(tmp_path / "i.nii.gz", tmp_path / "m.nii.gz", tmp_path / "o.nii.gz"))
    assert out.get_fdata().sum() == 5


def test_normalise_priors_floor_and_sum():
    mask = np.zeros((2, 2, 2), bool)
    mask[0] = True
    zeros = np.zeros((2, 2, 2))
    gm = np.full((2, 2, 2), 0.9)
    out = normalise_priors([zeros, gm, zeros], mask)
    total = sum(out)
    assert np.allclose(total[mask], 1) and np.allclose(total[~mask], 0)
    # where all priors were zero the floor makes every class possible
    out = normalise_priors([zeros, zeros, zeros], mask)
    assert np.allclose(out[1][mask], 1 / 3)


def test_itk_threads_restores_environment(monkeypatch):
    import os

    monkeypatch.delenv("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", raising=False)
    with itk_threads(3):
        assert os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] == "3"
    assert "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS" not in os.environ


@pytest.mark.slow
def test_template_brain_mask_matches_dlmuse_brain(t1w, ixi_dir, tmp_path, monkeypatch):
    """The cheap (--brain-extraction template) mask covers the DLMUSE brain of the same scan, and
    leaves no transform file behind (antspyx's default outprefix is a /tmp name it never removes)."""
    import tempfile

    from latentbids.anat.brain_mask import template_brain_mask
    from latentbids.anat.measures import dice
    from latentbids.resources import get_template

    system_tmp = tmp_path / "system_tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))

    tpl = get_template("MNI152NLin2009aSym", 2)
    nib.save(tpl.t1w, tmp_path / "tpl.nii.gz")
    nib.save(tpl.mask, tmp_path / "tpl_mask.nii.gz")
    ras = reorient_to_ras(t1w, tmp_path / "ras.nii.gz")
    n4 = n4_bias_correct(ras, tmp_path / "n4.nii.gz", iterations=(50, 50, 30), nthreads=1)
    mask = nib.load(template_brain_mask(n4, tmp_path / "mask.nii.gz", tmp_path / "tpl.nii.gz",
                                        tmp_path / "tpl_mask.nii.gz", nthreads=1))
    dl = nib.as_closest_canonical(nib.load(str(
        ixi_dir / "derivatives" / "dlmuse" / "sub-IXI012" / "anat" / "sub-IXI012_desc-dlmuse_dseg.nii.gz")))
    brain = np.asarray(dl.dataobj) > 0
    m = np.asarray(mask.dataobj) > 0
    score = dice(m, brain)
    ml = (m.sum() * 8 / 1000, brain.sum() * 8 / 1000)
    print(f"template-mask Dice vs DLMUSE brain: {score:.3f} ({ml[0]:.0f} ml vs {ml[1]:.0f} ml)")
    assert score > 0.88
    assert not list(system_tmp.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mask.nii.gz", "n4.nii.gz", "ras.nii.gz", "system_tmp", "tpl.nii.gz", "tpl_mask.nii.gz"]
