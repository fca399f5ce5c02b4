"""T1w preprocessing before segmentation: reorientation and N4 bias correction.

Plain functions on file paths (what Nipype passes around); no Nipype here.  Every function writes
its output to the path it is given and returns that path.  Defaults are the run configuration's
(:class:`latentbids.config.AnatConfig`), so a call from code does what a run does.  Brain extraction
is in :mod:`latentbids.anat.brain_mask`.
"""
from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from latentbids.anat.ants_context import itk_threads
from latentbids.config import AnatConfig
from latentbids.errors import MissingInputError

_ANAT = AnatConfig()


def load_3d(path: str | os.PathLike) -> nib.Nifti1Image:
    """Load a NIfTI image as 3-D (a trailing singleton 4th axis is dropped).

    Parameters
    ----------
    path : path-like
        A NIfTI file.

    Returns
    -------
    nibabel.Nifti1Image
        The image, 3-D, data not yet loaded.

    Raises
    ------
    MissingInputError
        The file is missing, unreadable (truncated, corrupt) or not one 3-D volume; the message
        names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"T1w image {path} not found: check the BIDS dataset")
    try:
        img = nib.load(str(path))
        if img.ndim == 4 and img.shape[3] == 1:
            img = img.slicer[..., 0]
        np.asarray(img.dataobj[..., :1])  # touch the data: a truncated file fails here
    except Exception as exc:
        raise MissingInputError(f"T1w image {path} cannot be read ({exc}): replace the corrupt file") from None
    if img.ndim != 3:
        raise MissingInputError(f"T1w image {path} is {img.ndim}-D: a T1w image must be one 3-D volume")
    return img


def reorient_to_ras(in_file: str | os.PathLike, out_file: str | os.PathLike) -> str:
    """Reorient ``in_file`` to the closest RAS+ voxel order (no resampling), as float32.

    Only the voxel axes are permuted/flipped; world coordinates are unchanged, so transforms
    computed on the result apply to the original image as well.

    Parameters
    ----------
    in_file : path-like
        A 3-D T1w image, any orientation, shape (X, Y, Z), arbitrary scanner units.
    out_file : path-like
        Where to write the result.

    Returns
    -------
    str
        ``out_file``: float32, shape the input's axes permuted, non-finite values set to 0, units mm.
    """
    img = nib.as_closest_canonical(load_3d(in_file))
    data = np.asarray(img.dataobj, dtype=np.float32)
    if not np.isfinite(data).all():
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    out = nib.Nifti1Image(data, img.affine)
    out.header.set_xyzt_units("mm")
    out.header.set_qform(img.affine, code=1)
    out.header.set_sform(img.affine, code=1)
    nib.save(out, str(out_file))
    return str(out_file)


#: N4 estimates the bias field on a grid of about this spacing (mm), whatever the input's voxels.
N4_GRID_MM = 8.0


def n4_shrink_factor(voxel_mm: float) -> int:
    """N4's shrink factor for an input with ``voxel_mm`` voxels: a working grid of ~:data:`N4_GRID_MM`.

    4 for the 2 mm scans the pipeline was validated on (as before), 8 for 1 mm: the bias field is
    smooth on a far larger scale, and N4 on a 4 mm grid took 30 of a 1 mm subject's 86 s
    (BENCHMARKS.md) for the same GM maps.

    Parameters
    ----------
    voxel_mm : float
        The smallest voxel size of the input, in mm.

    Returns
    -------
    int
        The shrink factor, >= 1.
    """
    return max(1, int(round(N4_GRID_MM / max(float(voxel_mm), 1e-3))))


def n4_bias_correct(
    in_file: str | os.PathLike,
    out_file: str | os.PathLike,
    mask_file: str | os.PathLike | None = None,
    shrink_factor: int | None = None,
    iterations: tuple[int, ...] = tuple(_ANAT.n4_iterations),
    nthreads: int | None = None,
) -> str:
    """N4 bias-field correction (antspyx).  Without a mask, N4 runs on an Otsu head mask.

    Intensities are rescaled so that the 99.5th percentile inside the head is 1000 (negative values
    clipped), which makes later steps independent of the scanner's arbitrary units.

    Parameters
    ----------
    in_file : path-like
        T1w image (RAS, see :func:`reorient_to_ras`), shape (X, Y, Z).
    out_file : path-like
        Where to write the corrected image.
    mask_file : path-like, optional
        Binary mask on the same grid where the field is estimated; default an Otsu head mask.
    shrink_factor : int, optional
        N4's working-grid shrink factor; ``None`` or 0: :func:`n4_shrink_factor` of the smallest voxel.
    iterations : tuple of int
        Iterations per fitting level (``[anat] n4_iterations``).
    nthreads : int, optional
        ITK threads for this call.

    Returns
    -------
    str
        ``out_file``: float32, the input's grid and header, 0..~1000 (99.5th percentile in the head = 1000).
    """
    import ants

    if not shrink_factor:
        shrink_factor = n4_shrink_factor(min(nib.load(str(in_file)).header.get_zooms()[:3]))
    with itk_threads(nthreads):
        img = ants.image_read(str(in_file))
        if mask_file is not None:
            mask = ants.image_read(str(mask_file))
        else:
            mask = ants.get_mask(img, low_thresh=float(np.percentile(img.numpy(), 5)) + 1e-3, cleanup=2)
        corrected = ants.n4_bias_field_correction(
            img,
            mask=mask,
            shrink_factor=int(shrink_factor),
            convergence={"iters": list(iterations), "tol": 1e-7},
        )
    data = corrected.numpy()
    inside = data[mask.numpy() > 0]
    scale = np.percentile(inside, 99.5) if inside.size else 1.0
    data = np.clip(data, 0, None) * (1000.0 / max(float(scale), 1e-6))
    ref = nib.load(str(in_file))
    nib.save(nib.Nifti1Image(data.astype(np.float32), ref.affine, ref.header), str(out_file))
    return str(out_file)
