"""Measures on GM maps: tissue volumes, regional means on an atlas, QC metrics, Dice.

Pure numpy/nibabel; the workflow writes what these return.
"""
from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pandas as pd


def voxel_ml(img: nib.Nifti1Image) -> float:
    """Volume of one voxel in millilitres."""
    return float(abs(np.linalg.det(img.affine[:3, :3]))) / 1000.0


def _data(img_or_path) -> tuple[np.ndarray, nib.Nifti1Image]:
    img = nib.load(str(img_or_path)) if isinstance(img_or_path, (str, os.PathLike)) else img_or_path
    return np.asarray(img.dataobj, dtype=np.float32), img


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean arrays (1.0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(a, b).sum() / total)


def tissue_volumes(csf, gm, wm, mask=None) -> dict[str, float]:
    """Total CSF/GM/WM volumes (ml, sums of posteriors) and TIV = their sum (or the mask volume).

    Inputs are images or paths on one (native) grid.
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
    """One row per atlas region: ``index``, ``name``, ``mean_gm`` (mean GM probability over the
    region's voxels) and, with a modulated map, ``volume_ml`` (GM volume in the region, ml).

    ``gm``, ``modulated`` and ``atlas_img`` share one grid (the template grid).  A region with no
    voxel on the grid gets ``NaN`` (written ``n/a``).
    """
    g, gimg = _data(gm)
    lab = np.asarray(atlas_img.dataobj).astype(np.int64)
    if lab.shape != g.shape:
        raise ValueError(f"atlas grid {lab.shape} differs from GM grid {g.shape}: resample the atlas first")
    idx = labels["index"].to_numpy(dtype=np.int64)
    n = int(max(lab.max(), idx.max())) + 1
    counts = np.bincount(lab.ravel(), minlength=n).astype(np.float64)
    sums = np.bincount(lab.ravel(), weights=g.ravel().astype(np.float64), minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts[idx] > 0, sums[idx] / counts[idx], np.nan)
    table = pd.DataFrame({"index": idx, "name": labels["name"].to_numpy(), "mean_gm": means})
    if modulated is not None:
        m, mimg = _data(modulated)
        msum = np.bincount(lab.ravel(), weights=m.ravel().astype(np.float64), minlength=n)
        table["volume_ml"] = np.where(counts[idx] > 0, msum[idx] * voxel_ml(mimg), np.nan)
    return table


def correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Pearson correlation of two images (inside ``mask`` if given)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if mask is not None:
        a, b = a[mask], b[mask]
    a, b = a.ravel(), b.ravel()
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def qc_metrics(
    gm_template,
    template_gm_prior,
    template_mask,
    warped_t1w=None,
    template_t1w=None,
    min_max: float = 0.95,
    nonzero_range: tuple[float, float] = (0.15, 0.50),
    min_template_corr: float = 0.5,
) -> dict:
    """ClinicaDL-style quality checks of a template-space GM map, plus registration quality.

    * ``gm_max`` >= ``min_max`` (a GM map whose maximum is low is not a probability map of a brain);
    * ``nonzero_fraction`` (share of grid voxels with GM > 0) within ``nonzero_range``;
    * ``gm_template_corr`` (correlation with the template GM prior inside the template mask)
      >= ``min_template_corr``;
    * ``t1w_template_corr``: correlation of the registered brain with the template T1w inside the
      mask (reported, not gated: intensity contrast differs between scanners).

    ``qc_pass`` is the AND of the gated checks; ``qc_fail_reasons`` names the failed ones.
    """
    g, _ = _data(gm_template)
    prior, _ = _data(template_gm_prior)
    mask = _data(template_mask)[0] > 0
    out: dict = {
        "gm_max": float(g.max()),
        "nonzero_fraction": float(np.count_nonzero(g > 0) / g.size),
        "gm_template_corr": correlation(g, prior, mask),
        "gm_mean_in_mask": float(g[mask].mean()) if mask.any() else float("nan"),
    }
    if warped_t1w is not None and template_t1w is not None:
        out["t1w_template_corr"] = correlation(_data(warped_t1w)[0], _data(template_t1w)[0], mask)
    lo, hi = nonzero_range
    reasons = []
    if not out["gm_max"] >= min_max:
        reasons.append(f"gm_max<{min_max}")
    if not lo <= out["nonzero_fraction"] <= hi:
        reasons.append(f"nonzero_fraction outside [{lo},{hi}]")
    if not out["gm_template_corr"] >= min_template_corr:
        reasons.append(f"gm_template_corr<{min_template_corr}")
    out["qc_pass"] = not reasons
    out["qc_fail_reasons"] = ";".join(reasons)
    return out


def modulate(gm_template, jacobian, out_file: str | os.PathLike) -> str:
    """Jacobian modulation: GM probability on the template grid times the Jacobian determinant."""
    g, img = _data(gm_template)
    j, _ = _data(jacobian)
    out = nib.Nifti1Image((g * j).astype(np.float32), img.affine)
    out.header.set_xyzt_units("mm")
    nib.save(out, str(out_file))
    return str(out_file)


def threshold_mask(in_file, out_file: str | os.PathLike, threshold: float = 0.5) -> str:
    """Binarise a resampled mask (linear interpolation) at ``threshold``, as uint8."""
    d, img = _data(in_file)
    out = nib.Nifti1Image((d > threshold).astype(np.uint8), img.affine)
    out.header.set_xyzt_units("mm")
    nib.save(out, str(out_file))
    return str(out_file)


def clip_probability(in_file, out_file: str | os.PathLike, mask_file=None) -> str:
    """Clip interpolated probabilities to [0, 1] (and zero them outside ``mask_file``)."""
    d, img = _data(in_file)
    d = np.clip(d, 0, 1)
    if mask_file is not None:
        d = d * (_data(mask_file)[0] > 0)
    out = nib.Nifti1Image(d.astype(np.float32), img.affine)
    out.header.set_xyzt_units("mm")
    nib.save(out, str(out_file))
    return str(out_file)
