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


@pytest.fixture(scope="module")
def brain():
    """The 2 mm template: its brain mask, its GM prior, and a crisp GM map (the prior sharpened, as
    a segmentation would give it), on the real 99x117x95 grid."""
    from latentbids.resources import get_template

    tpl = get_template("MNI152NLin2009aSym", 2)
    prior = np.asarray(tpl.gm.dataobj, dtype=np.float32)
    crisp = np.clip((prior - 0.2) / 0.5, 0, 1).astype(np.float32)
    return tpl, prior, crisp


def _qc(gm, brain, **thresholds):
    tpl, prior, _ = brain
    return qc_metrics(img(gm, tpl.affine), img(prior, tpl.affine), tpl.mask, **thresholds)


def test_qc_passes_a_crisp_map_and_names_each_failure(brain):
    from scipy import ndimage

    tpl, prior, crisp = brain
    good = _qc(crisp, brain)
    assert good["qc_pass"] and good["qc_fail_reasons"] == ""
    assert good["gm_peak"] == pytest.approx(1.0) and good["gm_outside"] < 0.03 and good["gm_template_corr"] > 0.9
    cases = {
        "gm_peak": crisp * 0.5,  # never near 1: wrong scale or not a probability map
        "gm_outside": ndimage.shift(crisp, (0, 10, 0), order=1),  # 20 mm off: GM outside the brain
        "gm_coverage": np.where(np.arange(crisp.shape[2]) < crisp.shape[2] // 2, crisp, 0),  # half the field of view
        "gm_template_corr": np.where(np.asarray(tpl.mask.dataobj) > 0, 1.0 - crisp, 0),  # WM labelled as GM
    }
    for check, gm in cases.items():
        result = _qc(gm.astype(np.float32), brain)
        assert not result["qc_pass"] and check in result["qc_fail_reasons"], (check, result)
    empty = _qc(np.zeros_like(crisp), brain)
    assert not empty["qc_pass"] and "gm_peak" in empty["qc_fail_reasons"] and "gm_outside" in empty["qc_fail_reasons"]


def test_qc_ignores_the_box_and_numerical_tails(brain):
    """Reused maps as smoothing/interpolating tools write them: tiny positive values everywhere and a
    peak of 0.92.  The old ClinicaDL-style checks (values > 0 over the whole box in 15-50 %, maximum
    >= 0.95) failed them; the measures inside the brain mask above the floor do not move."""
    from scipy import ndimage

    tpl, prior, crisp = brain
    smooth = ndimage.gaussian_filter(crisp, 6.0 / 2.355 / 2.0)  # 6 mm FWHM
    tails = (smooth * 0.92 / smooth.max() + 1e-4 + 1e-3 * np.exp(-ndimage.distance_transform_edt(smooth < 0.05) / 10))
    tails = tails.astype(np.float32)
    assert (tails > 0).mean() == 1.0 and tails.max() == pytest.approx(0.92, abs=3e-3)  # the old checks' failures
    reused = {"min_peak": 0.7, "max_outside": 0.15}  # the sMRIPrep/CAT12 thresholds (config.anat)
    result = _qc(tails, brain, **reused)
    assert result["qc_pass"], result
    # a bigger box (more empty space around the same brain) changes nothing
    pad = [(0, 0), (0, 0), (10, 10)]
    affine = tpl.affine.copy()
    affine[2, 3] -= 10 * affine[2, 2]
    boxed = qc_metrics(img(np.pad(tails, pad, constant_values=1e-4), affine), img(np.pad(prior, pad), affine),
                       img(np.pad(np.asarray(tpl.mask.dataobj), pad), affine), **reused)
    for key in ("gm_peak", "gm_coverage", "gm_outside", "gm_template_corr"):
        assert boxed[key] == pytest.approx(result[key], rel=1e-6), key


def test_qc_thresholds_per_source_from_the_config():
    from latentbids.config import RunConfig
    from latentbids.errors import UsageError
    from latentbids.settings import qc_thresholds

    cfg = RunConfig()
    default = qc_thresholds(cfg.anat)
    assert default["own"]["qc_min_peak"] == 0.9 and default["smriprep"]["qc_min_peak"] == 0.7
    assert default["cat12"]["qc_max_outside"] == 0.15 and default["own"]["qc_max_outside"] == 0.08
    cfg.update({"anat": {"qc_min_peak": {"cat12": 0.6}, "qc_min_template_corr": 0.4}})
    changed = qc_thresholds(cfg.anat)
    assert changed["cat12"]["qc_min_peak"] == 0.6 and changed["own"]["qc_min_peak"] == 0.9  # others keep theirs
    assert {changed[s]["qc_min_template_corr"] for s in ("own", "smriprep", "cat12")} == {0.4}
    with pytest.raises(UsageError, match=r"qc_min_peak = \{'fsl': 0.5\} is not valid: unknown source"):
        cfg.update({"anat": {"qc_min_peak": {"fsl": 0.5}}})  # refused when set, before any run


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
