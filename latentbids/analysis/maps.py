"""Regional values painted into the atlas (METHOD.md section 7, "voxel maps"), and what a SHAP map is called.

One number per atlas region (a SHAP importance, an LRCP score) becomes a NIfTI image on the atlas grid,
so that it can be overlaid on the template with any viewer.  Nothing here reads or writes files.
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd

from latentbids.errors import UsageError


def paint_regions(values, atlas_img: nib.Nifti1Image) -> nib.Nifti1Image:
    """Paint each region's value into its voxels of a label atlas.

    Parameters
    ----------
    values : pandas.Series (or mapping)
        One value per region, indexed by the atlas label (``region_index``).  Labels absent from the
        atlas are ignored; label 0 is background and never painted.
    atlas_img : nibabel.Nifti1Image
        3-D integer label image (e.g. AAL, labels 1..116).  Float-typed labels are rounded.

    Returns
    -------
    nibabel.Nifti1Image
        float32 image on the atlas grid (same shape and affine): each region's voxels hold its value;
        0 outside the regions, for regions missing from ``values`` and for NaN/inf values (a map shows
        where there is a number, and 0 is the neutral value of an importance or a score).
    """
    if not isinstance(values, pd.Series):
        values = pd.Series(values, dtype=float)
    try:
        index = np.asarray(values.index, dtype=float)
        labels_in = np.rint(index).astype(np.int64)
    except (TypeError, ValueError):
        raise UsageError("paint_regions needs values indexed by integer atlas labels "
                         f"(got index {list(values.index)[:5]}...)") from None
    if np.any(labels_in != index):
        raise UsageError("paint_regions needs integer atlas labels as the index of values")
    if len(np.unique(labels_in)) != len(labels_in):
        raise UsageError("paint_regions got duplicate atlas labels in the index of values")
    vals = np.array(values.to_numpy(), dtype=float)  # a copy: NaN -> 0 below
    vals[~np.isfinite(vals)] = 0.0

    data = np.asanyarray(atlas_img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise UsageError(f"the atlas must be a 3-D label image (got shape {data.shape})")
    atlas = np.rint(data).astype(np.int64)

    # lookup table from atlas label to value (vectorised painting of all regions at once)
    present, inverse = np.unique(atlas, return_inverse=True)
    lut = np.zeros(len(present), dtype=np.float32)
    pos = np.searchsorted(present, labels_in)
    hit = (pos < len(present)) & (present[np.minimum(pos, len(present) - 1)] == labels_in)
    hit &= labels_in != 0
    lut[pos[hit]] = vals[hit]
    out = lut[inverse.reshape(atlas.shape)]

    header = atlas_img.header.copy()
    header.set_data_dtype(np.float32)
    img = nib.Nifti1Image(out.astype(np.float32), atlas_img.affine, header)
    img.header.set_slope_inter(1.0, 0.0)
    img.header["cal_min"], img.header["cal_max"] = float(out.min()), float(out.max())
    return img


#: sidecar note of a SHAP map whose surrogate is supported: what the map may and may not be read as
MODEL_LEVEL_NOTE = ("Model-level: the surrogate of the reconstruction error is supported (see analysis.json, Claims), "
                    "which supports 'the error is predictable from regional GM'. No region was tested on its own: a "
                    "region's importance here is not a finding about that region.")


def shap_map_naming(model_label: str, surrogate_supported: bool) -> tuple[str, dict]:
    """The ``desc`` value and sidecar fields of one model's SHAP importance map (METHOD.md section 7).

    A supported surrogate supports "the error is predictable from regional GM", not any one region, so
    without a per-region test a SHAP map is at best *model-level*, and says so in its name
    (``desc-<model>modellevel``) and sidecar (``"Level": "model"``, ``"Exploratory": false``); the map of
    a surrogate that is not supported is exploratory (``desc-<model>exploratory``, ``"Exploratory":
    true``).  No SHAP map is named as a regional finding.

    Parameters
    ----------
    model_label : str
        The model's name as a valid entity value (alphanumerics only, e.g. ``pooled``, ``sMCI``).
    surrogate_supported : bool
        Whether the model's ``shap`` claim is supported.

    Returns
    -------
    desc : str
        Value of the ``desc`` entity.
    sidecar : dict
        ``Level`` (``"model"``), ``Exploratory`` (bool) and, for a supported surrogate, ``Note``
        (:data:`MODEL_LEVEL_NOTE`); the writer adds the exploratory note itself.
    """
    if surrogate_supported:
        return f"{model_label}modellevel", {"Level": "model", "Exploratory": False, "Note": MODEL_LEVEL_NOTE}
    return f"{model_label}exploratory", {"Level": "model", "Exploratory": True}
