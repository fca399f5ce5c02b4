"""paint_regions: each region's value lands in exactly that region's voxels."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from latentbids.analysis.maps import paint_regions
from latentbids.errors import UsageError


def _atlas(dtype=np.int16):
    rng = np.random.default_rng(0)
    labels = rng.choice([0, 1, 2, 5, 40, 116], size=(9, 8, 7)).astype(dtype)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-10, -20, -30]
    return nib.Nifti1Image(labels, affine)


def test_each_value_fills_exactly_its_region():
    atlas = _atlas()
    labels = np.asarray(atlas.dataobj)
    values = pd.Series({1: 0.25, 2: -1.5, 5: 3.0, 116: 7.0, 999: 9.0})  # 40 missing, 999 not in atlas
    img = paint_regions(values, atlas)
    out = np.asarray(img.dataobj)
    assert img.get_data_dtype() == np.float32 and out.dtype == np.float32
    assert out.shape == labels.shape
    np.testing.assert_array_equal(img.affine, atlas.affine)
    for lab, val in values.items():
        if lab in (1, 2, 5, 116):
            assert np.all(out[labels == lab] == np.float32(val))
    assert np.all(out[labels == 40] == 0)  # region missing from values
    assert np.all(out[labels == 0] == 0)  # outside the regions
    assert not np.any(out == 9.0)
    expected = np.zeros(labels.shape, np.float32)
    for lab in (1, 2, 5, 116):
        expected[labels == lab] = values[lab]
    np.testing.assert_array_equal(out, expected)


def test_nan_and_background_values_paint_zero():
    atlas = _atlas(dtype=np.float32)  # float-typed labels are fine
    labels = np.asarray(atlas.dataobj)
    img = paint_regions(pd.Series([np.nan, 2.0, 4.0], index=[1, 2, 0]), atlas)
    out = np.asarray(img.dataobj)
    assert np.all(out[labels == 1] == 0)
    assert np.all(out[labels == 2] == 2.0)
    assert np.all(out[labels == 0] == 0)  # label 0 is background, never painted


def test_bad_index_is_a_usage_error():
    with pytest.raises(UsageError):
        paint_regions(pd.Series([1.0], index=["Precentral_L"]), _atlas())
    with pytest.raises(UsageError):
        paint_regions(pd.Series([1.0], index=[1.5]), _atlas())


def test_a_shap_map_is_model_level_or_exploratory_never_a_regional_finding():
    """METHOD.md 7: a supported surrogate supports 'the error is predictable from GM', not any one region."""
    from latentbids.analysis.maps import MODEL_LEVEL_NOTE, shap_map_naming
    from latentbids.bids.naming import bids_name

    desc, side = shap_map_naming("pooled", True)
    assert desc == "pooledmodellevel" and side["Level"] == "model" and side["Exploratory"] is False
    assert side["Note"] == MODEL_LEVEL_NOTE and "not a finding about that region" in side["Note"]
    desc_x, side_x = shap_map_naming("sMCI", False)
    assert desc_x == "sMCIexploratory" and side_x == {"Level": "model", "Exploratory": True}
    # the names stay BIDS-like: entity order space, atlas, res, desc, then the suffix
    name = bids_name("shap", ".nii.gz", space="MNI152NLin2009cAsym", atlas="AAL", res="4", desc=desc)
    assert name == "space-MNI152NLin2009cAsym_atlas-AAL_res-4_desc-pooledmodellevel_shap.nii.gz"
    assert desc.isalnum() and desc_x.isalnum()
