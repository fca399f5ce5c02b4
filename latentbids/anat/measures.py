"""Measures on GM maps: tissue volumes, regional means on an atlas, QC metrics, Dice.

Pure numpy/nibabel; the workflow writes what these return.  "Image" parameters accept a nibabel
image or a path to one.
"""
from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pandas as pd

from latentbids.config import AnatConfig
from latentbids.utils.regions import region_means, region_sums

_ANAT = AnatConfig()


def voxel_ml(img: nib.Nifti1Image) -> float:
    """Volume of one voxel.

    Parameters
    ----------
    img : nibabel.Nifti1Image
        Any image (its affine gives the voxel size).

    Returns
    -------
    float
        Voxel volume in millilitres.
    """
    return float(abs(np.linalg.det(img.affine[:3, :3]))) / 1000.0


def _data(img_or_path) -> tuple[np.ndarray, nib.Nifti1Image]:
    img = nib.load(str(img_or_path)) if isinstance(img_or_path, (str, os.PathLike)) else img_or_path
    return np.asarray(img.dataobj, dtype=np.float32), img


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean arrays.

    Parameters
    ----------
    a, b : numpy.ndarray
        Masks of one shape (non-zero = in).

    Returns
    -------
    float
        2|a & b| / (|a| + |b|) in [0, 1]; 1.0 when both are empty.
    """
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(a, b).sum() / total)


def tissue_volumes(csf, gm, wm, mask=None) -> dict[str, float]:
    """Total CSF/GM/WM volumes (sums of posteriors) and TIV = their sum.

    Parameters
    ----------
    csf, gm, wm : image
        Posterior probabilities on one (native) grid, shape (X, Y, Z).
    mask : image, optional
        Brain mask on the same grid (adds ``brain_mask_ml``).

    Returns
    -------
    dict of float
        ``CSF_ml``, ``GM_ml``, ``WM_ml``, ``TIV_ml`` (millilitres), ``GM_fraction`` (GM / TIV, unitless;
        NaN when TIV is 0) and, with a mask, ``brain_mask_ml``.
    """
    c, img = _data(csf)
    g, _ = _data(gm)
    w, _ = _data(wm)
    vml = voxel_ml(img)
    out = {
        "CSF_ml": float(c.sum() * vml),
        "GM_ml": float(g.sum() * vml),
        "WM_ml": float(w.sum() * vml),
    }
    out["TIV_ml"] = out["CSF_ml"] + out["GM_ml"] + out["WM_ml"]
    if mask is not None:
        m, _ = _data(mask)
        out["brain_mask_ml"] = float((m > 0).sum() * vml)
    out["GM_fraction"] = out["GM_ml"] / out["TIV_ml"] if out["TIV_ml"] > 0 else float("nan")
    return out


def regional_table(gm, atlas_img: nib.Nifti1Image, labels: pd.DataFrame, modulated=None) -> pd.DataFrame:
    """Mean GM probability (and GM volume) in every region of an atlas.

    Parameters
    ----------
    gm : image
        GM probability on the template grid, shape (X, Y, Z).
    atlas_img : nibabel.Nifti1Image
        Integer labels on the same grid (0 = background).
    labels : pandas.DataFrame
        Columns ``index`` (label value) and ``name``, one row per region.
    modulated : image, optional
        Jacobian-modulated GM on the same grid (adds ``volume_ml``).

    Returns
    -------
    pandas.DataFrame
        One row per ``labels`` row: ``index``, ``name``, ``mean_gm`` (unitless, 0-1) and, with a
        modulated map, ``volume_ml`` (native-space millilitres).  A region with no voxel on the grid
        gets NaN (written ``n/a``).

    Raises
    ------
    ValueError
        The atlas and the GM map are on different grids.
    """
    g, gimg = _data(gm)
    lab = np.asarray(atlas_img.dataobj).astype(np.int64)
    if lab.shape != g.shape:
        raise ValueError(f"atlas grid {lab.shape} differs from GM grid {g.shape}: resample the atlas first")
    idx = labels["index"].to_numpy(dtype=np.int64)
    means, counts = region_means(g, lab, idx)
    table = pd.DataFrame({"index": idx, "name": labels["name"].to_numpy(), "mean_gm": means})
    if modulated is not None:
        m, mimg = _data(modulated)
        table["volume_ml"] = np.where(counts > 0, region_sums(m, lab, idx)[0] * voxel_ml(mimg), np.nan)
    return table


def correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Pearson correlation of two arrays of one shape (inside ``mask`` if given).

    Parameters
    ----------
    a, b : numpy.ndarray
        Arrays of one shape, e.g. (X, Y, Z).
    mask : numpy.ndarray of bool, optional
        Voxels to use.

    Returns
    -------
    float
        Pearson's r in [-1, 1]; NaN with fewer than 2 values or a constant array.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if mask is not None:
        a, b = a[mask], b[mask]
    a, b = a.ravel(), b.ravel()
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


#: Descriptions of the QC table's measure columns (BIDS column sidecar entries).
QC_MEASURE_COLUMNS: dict[str, dict] = {
    "qc_source": {"Description": "Where the GM map came from, which picks the QC thresholds: own (latentbids' "
                                 "segmentation), smriprep or cat12 (reused with -d)"},
    "gm_peak": {"Description": "99th percentile of the template-space GM probability inside the template brain "
                               "mask (a sharp probability map comes close to 1)", "Units": "1"},
    "gm_coverage": {"Description": "Smallest share, over the eight octants of the template brain mask, of voxels "
                                   "with GM at or above the QC floor (a missing part of the brain lowers it)",
                    "Units": "1"},
    "gm_coverage_brain": {"Description": "Share of the template brain mask's voxels with GM at or above the QC "
                                         "floor (reported, not gated)", "Units": "1"},
    "gm_outside": {"Description": "Share of the GM mass at or above the QC floor that lies outside the template "
                                  "brain mask (a misregistered or mislabelled map puts GM outside the brain)",
                   "Units": "1"},
}


def _octants(mask: np.ndarray) -> np.ndarray:
    """Octant number (0-7) of every voxel, split at the mask's centre of mass."""
    centre = np.argwhere(mask).mean(axis=0)
    grid = np.indices(mask.shape, sparse=True)
    return sum((grid[axis] > centre[axis]).astype(np.int8) << axis for axis in range(3))


def qc_metrics(
    gm_template,
    template_gm_prior,
    template_mask,
    warped_t1w=None,
    template_t1w=None,
    floor: float = _ANAT.qc_floor,
    min_peak: float = _ANAT.qc_min_peak["own"],
    min_coverage: float = _ANAT.qc_min_coverage["own"],
    max_outside: float = _ANAT.qc_max_outside["own"],
    min_template_corr: float = _ANAT.qc_min_template_corr["own"],
) -> dict:
    """Quality checks of a template-space GM map that judge the brain, not the grid or the tails.

    Every measure is taken against the template brain mask, on GM values at or above ``floor``:
    the grid's bounding box and the tiny values that smoothed or interpolated maps carry everywhere
    (what broke ClinicaDL's ``nonzero_fraction`` over the whole box) change none of them.

    * ``gm_peak``: 99th percentile of GM inside the mask >= ``min_peak`` (a map that never comes near
      1 is not a GM probability map, or is scaled wrong); robust to one hot voxel, unlike the maximum;
    * ``gm_coverage``: in each of the mask's eight octants, the share of voxels with GM >= ``floor``;
      the smallest >= ``min_coverage`` (a cut field of view or a half-empty map fails);
    * ``gm_outside``: share of the GM mass (>= ``floor``) outside the mask <= ``max_outside``
      (GM shifted, flipped or scaled off the brain by a failed registration);
    * ``gm_template_corr``: correlation with the template GM prior inside the mask >=
      ``min_template_corr``;
    * reported only: ``gm_max``, ``gm_coverage_brain``, ``gm_mean_in_mask`` and, with the registered
      T1w, ``t1w_template_corr`` (intensity contrast differs between scanners).

    Parameters
    ----------
    gm_template : image
        The subject's GM probability on the template grid, shape (X, Y, Z).
    template_gm_prior, template_mask : image
        The template's GM prior and brain mask on that grid.
    warped_t1w, template_t1w : image, optional
        The registered T1w brain and the template T1w (adds ``t1w_template_corr``).
    floor, min_peak, min_coverage, max_outside, min_template_corr : float
        The thresholds (``[anat] qc_*``; they depend on where the map came from, defaults: own maps).

    Returns
    -------
    dict
        The measures above (unitless floats; NaN where undefined), ``qc_pass`` (the AND of the gated
        checks) and ``qc_fail_reasons`` (the failed ones with their values, ``;``-separated).
    """
    g, _ = _data(gm_template)
    g = np.nan_to_num(g, nan=0.0)
    prior, _ = _data(template_gm_prior)
    mask = _data(template_mask)[0] > 0
    present = g >= floor
    mass = np.where(present, g, 0.0)
    octant = _octants(mask)
    coverage = [float(present[mask & (octant == k)].mean()) for k in range(8) if (mask & (octant == k)).any()]
    total = float(mass.sum(dtype=np.float64))
    out: dict = {
        "gm_peak": float(np.percentile(g[mask], 99)) if mask.any() else float("nan"),
        "gm_coverage": min(coverage) if coverage else float("nan"),
        "gm_coverage_brain": float(present[mask].mean()) if mask.any() else float("nan"),
        "gm_outside": float(mass[~mask].sum(dtype=np.float64) / total) if total > 0 else float("nan"),
        "gm_template_corr": correlation(g, prior, mask),
        "gm_max": float(g.max()),
        "gm_mean_in_mask": float(g[mask].mean()) if mask.any() else float("nan"),
    }
    if warped_t1w is not None and template_t1w is not None:
        out["t1w_template_corr"] = correlation(_data(warped_t1w)[0], _data(template_t1w)[0], mask)
    reasons = []
    if not out["gm_peak"] >= min_peak:
        reasons.append(f"gm_peak {out['gm_peak']:.3g} < {min_peak:g}")
    if not out["gm_coverage"] >= min_coverage:
        reasons.append(f"gm_coverage {out['gm_coverage']:.3g} < {min_coverage:g}")
    if not out["gm_outside"] <= max_outside:
        reasons.append(f"gm_outside {out['gm_outside']:.3g} > {max_outside:g}")
    if not out["gm_template_corr"] >= min_template_corr:
        reasons.append(f"gm_template_corr {out['gm_template_corr']:.3g} < {min_template_corr:g}")
    out["qc_pass"] = not reasons
    out["qc_fail_reasons"] = ";".join(reasons)
    return out


def modulate(gm_template, jacobian, out_file: str | os.PathLike) -> str:
    """Jacobian modulation: GM probability on the template grid times the Jacobian determinant.

    Parameters
    ----------
    gm_template, jacobian : image
        GM probability and the forward mapping's Jacobian determinant on one grid.
    out_file : path-like
        Where to write the result.

    Returns
    -------
    str
        ``out_file``: float32, GM volume per template voxel in subject voxels (may exceed 1).
    """
    g, img = _data(gm_template)
    j, _ = _data(jacobian)
    out = nib.Nifti1Image((g * j).astype(np.float32), img.affine)
    out.header.set_xyzt_units("mm")
    nib.save(out, str(out_file))
    return str(out_file)


def threshold_mask(in_file, out_file: str | os.PathLike, threshold: float = 0.5) -> str:
    """Binarise a resampled mask (linear interpolation blurs its edge) at ``threshold``.

    Parameters
    ----------
    in_file : image
        Interpolated mask, values 0-1.
    out_file : path-like
        Where to write the mask.
    threshold : float
        Values above it are in.

    Returns
    -------
    str
        ``out_file``: uint8 mask on the input's grid.
    """
    d, img = _data(in_file)
    out = nib.Nifti1Image((d > threshold).astype(np.uint8), img.affine)
    out.header.set_xyzt_units("mm")
    nib.save(out, str(out_file))
    return str(out_file)


def clip_probability(in_file, out_file: str | os.PathLike, mask_file=None) -> str:
    """Clip interpolated probabilities to [0, 1] (and zero them outside ``mask_file``).

    Parameters
    ----------
    in_file : image
        Interpolated probability map.
    out_file : path-like
        Where to write the result.
    mask_file : image, optional
        Mask on the same grid; outside it the result is 0.

    Returns
    -------
    str
        ``out_file``: float32 probabilities in [0, 1] on the input's grid.
    """
    d, img = _data(in_file)
    d = np.clip(d, 0, 1)
    if mask_file is not None:
        d = d * (_data(mask_file)[0] > 0)
    out = nib.Nifti1Image(d.astype(np.float32), img.affine)
    out.header.set_xyzt_units("mm")
    nib.save(out, str(out_file))
    return str(out_file)
