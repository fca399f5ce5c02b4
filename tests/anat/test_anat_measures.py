"""Unit tests for latentbids.anat.measures on small synthetic images with known answers."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from latentbids.anat.measures import (
    clip_probability,
    correlation,
    dice,
    modulate,
    qc_metrics,
    regional_table,
    threshold_mask,
    tissue_volumes,
    voxel_ml,
)

AFF2 = np.diag([2.0, 2.0, 2.0, 1.0])


def img(data, affine=AFF2):
    return nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)


def test_dice_known_values():
    a = np.zeros(10, bool)
    b = np.zeros(10, bool)
    a[:4] = True
    b[2:6] = True
    assert dice(a, b) == pytest.approx(2 * 2 / 8)
    assert dice(a, a) == 1.0
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0


def test_voxel_ml():
    assert voxel_ml(img(np.zeros((2, 2, 2)))) == pytest.approx(0.008)


def test_tissue_volumes_sum_of_posteriors():
    shape = (4, 4, 4)
    gm = np.full(shape, 0.5)
    wm = np.full(shape, 0.25)
    csf = np.full(shape, 0.25)
    vols = tissue_volumes(img(csf), img(gm), img(wm), mask=img(np.ones(shape)))
    n = 64 * 0.008
    assert vols["GM_ml"] == pytest.approx(0.5 * n)
    assert vols["TIV_ml"] == pytest.approx(n)
    assert vols["brain_mask_ml"] == pytest.approx(n)
    assert vols["GM_fraction"] == pytest.approx(0.5)


def test_regional_table_means_and_volumes():
    lab = np.zeros((4, 4, 4), np.int16)
    lab[:2] = 1
    lab[2:, :2] = 2
    gm = np.zeros((4, 4, 4))
    gm[:2] = 0.8
    gm[2:, :2] = 0.2
    mod = gm * 2
    labels = pd.DataFrame({"index": [1, 2, 3], "name": ["a", "b", "absent"]})
    table = regional_table(img(gm), nib.Nifti1Image(lab, AFF2), labels, modulated=img(mod))
    assert list(table.columns) == ["index", "name", "mean_gm", "volume_ml"]
    assert table["mean_gm"].tolist()[:2] == pytest.approx([0.8, 0.2])
    assert np.isnan(table["mean_gm"].iloc[2])
    # region 1: 32 voxels * 1.6 * 0.008 ml
    assert table["volume_ml"].iloc[0] == pytest.approx(32 * 1.6 * 0.008)


def test_regional_table_rejects_other_grid():
    with pytest.raises(ValueError, match="resample the atlas"):
        regional_table(img(np.zeros((4, 4, 4))), nib.Nifti1Image(np.zeros((3, 3, 3), np.int16), AFF2),
                       pd.DataFrame({"index": [1], "name": ["a"]}))


def _qc_images(scale=1.0, fill_outside=False):
    shape = (20, 20, 20)
    prior = np.zeros(shape)
    mask = np.zeros(shape)
    mask[3:17, 3:17, 3:17] = 1  # 34 % of the grid
    rng = np.random.default_rng(0)
    prior[mask > 0] = rng.uniform(0, 1, int(mask.sum()))
    gm = np.full(shape, 0.05) if fill_outside else np.zeros(shape)
    gm[mask > 0] = prior[mask > 0] * scale
    return img(gm), img(prior), img(mask)


def test_qc_pass_and_fail_reasons():
    gm, prior, mask = _qc_images()
    good = qc_metrics(gm, prior, mask)
    assert good["qc_pass"] and good["qc_fail_reasons"] == ""
    assert good["gm_template_corr"] == pytest.approx(1.0)
    gm, prior, mask = _qc_images(scale=0.5)  # max 0.5: not a probability map of a brain
    bad = qc_metrics(gm, prior, mask)
    assert not bad["qc_pass"] and "gm_max" in bad["qc_fail_reasons"]
    gm, prior, mask = _qc_images(fill_outside=True)  # GM almost everywhere
    bad = qc_metrics(gm, prior, mask)
    assert not bad["qc_pass"] and "nonzero_fraction" in bad["qc_fail_reasons"]
    rng = np.random.default_rng(1)
    noise = img(np.where(np.asarray(mask.dataobj) > 0, rng.uniform(0, 1, mask.shape), 0))
    bad = qc_metrics(noise, prior, mask, nonzero_range=(0.0, 1.0))
    assert not bad["qc_pass"] and "gm_template_corr" in bad["qc_fail_reasons"]


def test_correlation_constant_is_nan():
    assert np.isnan(correlation(np.ones(5), np.arange(5)))


def test_modulate_threshold_clip(tmp_path):
    gm = img(np.full((3, 3, 3), 0.5))
    jac = img(np.full((3, 3, 3), 3.0))
    out = nib.load(modulate(gm, jac, tmp_path / "m.nii.gz"))
    assert np.allclose(out.get_fdata(), 1.5)
    mask = nib.load(threshold_mask(img(np.linspace(0, 1, 27).reshape(3, 3, 3)), tmp_path / "b.nii.gz"))
    assert np.asarray(mask.dataobj).dtype == np.uint8 and np.asarray(mask.dataobj).sum() == 13
    clipped = nib.load(clip_probability(img(np.linspace(-1, 2, 27).reshape(3, 3, 3)), tmp_path / "c.nii.gz"))
    assert clipped.get_fdata().min() == 0 and clipped.get_fdata().max() == 1
