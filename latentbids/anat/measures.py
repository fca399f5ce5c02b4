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
    floor: float = 0.1,
    min_peak: float = 0.9,
    min_coverage: float = 0.55,
    max_outside: float = 0.08,
    min_template_corr: float = 0.5,
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

    The thresholds depend on where the map came from (``config.anat``, per source).  ``qc_pass`` is
    the AND of the gated checks; ``qc_fail_reasons`` names the failed ones with their values.
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
