"""Three-class (CSF, GM, WM) tissue segmentation with Atropos guided by template priors."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from latentbids.anat.ants_context import itk_threads
from latentbids.config import AnatConfig

TISSUES = ("CSF", "GM", "WM")
_ANAT = AnatConfig()


def normalise_priors(priors: list[np.ndarray], mask: np.ndarray, floor: float = 0.001) -> list[np.ndarray]:
    """Make prior probabilities usable inside ``mask``: add ``floor``, renormalise to sum 1.

    Warped template priors are zero where the subject's brain mask reaches beyond the template's
    brain; without a floor Atropos could never label those voxels.  The floor is kept small: a
    large one (0.02) caps every posterior below ~0.94 and fails the ClinicaDL ``max >= 0.95`` check.

    Parameters
    ----------
    priors : list of numpy.ndarray
        CSF, GM and WM prior probabilities, each shape (X, Y, Z) (NaN read as 0, clipped to [0, 1]).
    mask : numpy.ndarray
        Brain mask, shape (X, Y, Z).
    floor : float
        Probability added to every class before renormalising.

    Returns
    -------
    list of numpy.ndarray
        The priors as float32, shape (X, Y, Z) each, summing to 1 inside ``mask`` and 0 outside.
    """
    stack = np.stack([np.clip(np.nan_to_num(p), 0, 1) for p in priors]).astype(np.float32) + floor
    stack /= stack.sum(axis=0, keepdims=True)
    stack *= mask[None].astype(np.float32)
    return [s for s in stack]


def atropos_segment(
    t1_file: str | os.PathLike,
    mask_file: str | os.PathLike,
    prior_files: list[str],
    out_dir: str | os.PathLike,
    prior_weight: float = _ANAT.atropos_prior_weight,
    mrf: float = _ANAT.atropos_mrf,
    iterations: int = _ANAT.atropos_iterations,
    nthreads: int | None = None,
) -> dict[str, str]:
    """Segment a bias-corrected T1w into CSF/GM/WM posteriors with Atropos.

    Parameters
    ----------
    t1_file : path-like
        Bias-corrected T1w, shape (X, Y, Z).
    mask_file : path-like
        Brain mask on the same grid.
    prior_files : list of path-like
        The CSF, GM and WM template priors already resampled onto the subject grid, in that order
        (the posterior classes follow it).
    out_dir : path-like
        Folder for the outputs (created).
    prior_weight : float
        0 uses the priors only to initialise; 0.25 (METHOD.md default) lets them keep pulling.
    mrf : float
        Markov random field smoothing factor (radius 1 voxel).
    iterations : int
        Atropos iterations.
    nthreads : int, optional
        ITK threads for this call.

    Returns
    -------
    dict of str
        ``{"CSF": path, "GM": path, "WM": path, "dseg": path}`` inside ``out_dir``: posteriors are
        float32 in [0, 1] on the T1w grid, zero outside the mask and summing to 1 inside it; ``dseg``
        is uint8 (0 background, 1 CSF, 2 GM, 3 WM).
    """
    import ants

    if len(prior_files) != 3:
        raise ValueError("atropos_segment needs three priors: CSF, GM, WM")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ref = nib.load(str(t1_file))
    mask = np.asarray(nib.load(str(mask_file)).dataobj) > 0
    priors = normalise_priors([np.asarray(nib.load(str(p)).dataobj, dtype=np.float32) for p in prior_files], mask)

    tmp = tempfile.mkdtemp(prefix="atropos_", dir=out_dir)
    old_tmp = tempfile.tempdir
    try:
        tempfile.tempdir = tmp  # antspyx writes the posterior files under tempfile's folder
        with itk_threads(nthreads):
            img = ants.image_read(str(t1_file))
            amask = ants.from_numpy(mask.astype(np.float32), origin=img.origin, spacing=img.spacing,
                                    direction=img.direction)
            apriors = [ants.from_numpy(p, origin=img.origin, spacing=img.spacing, direction=img.direction)
                       for p in priors]
            dim = "x".join(["1"] * img.dimension)
            res = ants.atropos(a=img, x=amask, i=apriors, m=f"[{mrf},{dim}]", c=f"[{int(iterations)},0]",
                               priorweight=float(prior_weight))
        posts = [p.numpy().astype(np.float32) for p in res["probabilityimages"]]
    finally:
        tempfile.tempdir = old_tmp
        shutil.rmtree(tmp, ignore_errors=True)

    stack = np.clip(np.stack(posts), 0, 1) * mask[None]
    total = stack.sum(axis=0)
    inside = total > 0
    stack[:, inside] /= total[inside]
    out: dict[str, str] = {}
    for name, data in zip(TISSUES, stack):
        path = out_dir / f"label-{name}_probseg.nii.gz"
        img = nib.Nifti1Image(data.astype(np.float32), ref.affine)
        img.header.set_xyzt_units("mm")
        nib.save(img, str(path))
        out[name] = str(path)
    dseg = np.where(mask, np.argmax(stack, axis=0) + 1, 0).astype(np.uint8)
    path = out_dir / "dseg.nii.gz"
    nib.save(nib.Nifti1Image(dseg, ref.affine), str(path))
    out["dseg"] = str(path)
    return out
