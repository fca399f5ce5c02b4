"""Nonlinear registration to the template (antspyx SyN family), warping, Jacobian determinants.

Transforms are kept as ANTs composite HDF5 files (``.h5``): the forward file maps template points
to subject points (ANTs convention), so it resamples *subject images onto the template grid*; the
inverse file resamples *template images (priors) onto the subject grid*.
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

#: ``[anat] registration`` names (:data:`latentbids.config_checks.REGISTRATIONS`) -> antspyx ``type_of_transform``.
TRANSFORMS = {
    "SyN": "SyN",
    "SyNQuick": "antsRegistrationSyNQuick[s]",
    "SyNAggro": "SyNAggro",
    "SyNRA": "SyNRA",
    "Affine": "Affine",
}

_ANAT = AnatConfig()
_SEED = ExecutionConfig().random_seed


def register_to_template(
    moving_file: str | os.PathLike,
    template_file: str | os.PathLike,
    out_dir: str | os.PathLike,
    transform: str = _ANAT.registration,
    seed: int | None = _SEED,
    nthreads: int | None = None,
) -> dict[str, str]:
    """Register a skull-stripped T1w (``moving_file``) to a template brain (``template_file``).

    Parameters
    ----------
    moving_file : path-like
        Skull-stripped, bias-corrected T1w, shape (X, Y, Z).
    template_file : path-like
        Template brain T1w; its grid is the output grid.
    out_dir : path-like
        Folder for the three outputs (created).
    transform : str
        A :data:`TRANSFORMS` name (``[anat] registration``).
    seed : int, optional
        antsRegistration's random seed (``None``: not reproducible).
    nthreads : int, optional
        ITK threads for this call.

    Returns
    -------
    dict of str
        ``{"forward": .h5, "inverse": .h5, "warped": .nii.gz}`` inside ``out_dir``: the forward
        composite transform (resamples subject images onto the template grid), its inverse, and the
        subject brain on the template grid (the template's shape).
    """
    import ants

    if transform not in TRANSFORMS:
        raise ValueError(f"unknown registration '{transform}': use one of {', '.join(TRANSFORMS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="reg_", dir=out_dir))
    try:
        with itk_threads(nthreads), ants_seed(seed):
            fixed = ants.image_read(str(template_file))
            moving = ants.image_read(str(moving_file))
            reg = ants.registration(
                fixed=fixed,
                moving=moving,
                type_of_transform=TRANSFORMS[transform],
                outprefix=str(tmp / "x_"),
                write_composite_transform=True,
            )
            warped = reg["warpedmovout"]
        fwd, inv = reg["fwdtransforms"], reg["invtransforms"]
        fwd = fwd[0] if isinstance(fwd, (list, tuple)) else fwd
        inv = inv[0] if isinstance(inv, (list, tuple)) else inv
        out = {
            "forward": str(out_dir / "from-T1w_to-template_xfm.h5"),
            "inverse": str(out_dir / "from-template_to-T1w_xfm.h5"),
            "warped": str(out_dir / "T1w_brain_space-template.nii.gz"),
        }
        shutil.move(fwd, out["forward"])
        shutil.move(inv, out["inverse"])
        ants.image_write(warped, out["warped"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def apply_transform(
    moving_file: str | os.PathLike,
    reference_file: str | os.PathLike,
    transforms: list[str] | str,
    out_file: str | os.PathLike,
    interpolation: str = "linear",
    nthreads: int | None = None,
) -> str:
    """Resample ``moving_file`` onto the grid of ``reference_file`` through ``transforms``.

    Parameters
    ----------
    moving_file : path-like
        Image to resample.
    reference_file : path-like
        Image whose grid (shape, affine) the output takes.
    transforms : path-like or list of path-like
        ANTs transforms, applied as antspyx's ``transformlist``.
    out_file : path-like
        Where to write the result.
    interpolation : {"linear", "nearestNeighbor", "bSpline"}
        ``linear`` for probabilities and intensities, ``nearestNeighbor`` for labels.
    nthreads : int, optional
        ITK threads for this call.

    Returns
    -------
    str
        ``out_file``: float32 on the reference grid, the moving image's units.
    """
    import ants

    if isinstance(transforms, (str, os.PathLike)):
        transforms = [str(transforms)]
    with itk_threads(nthreads):
        fixed = ants.image_read(str(reference_file))
        moving = ants.image_read(str(moving_file))
        out = ants.apply_transforms(fixed=fixed, moving=moving, transformlist=[str(t) for t in transforms],
                                    interpolator=interpolation)
    data = out.numpy().astype(np.float32)
    ref = nib.load(str(reference_file))
    img = nib.Nifti1Image(data, ref.affine)
    img.header.set_xyzt_units("mm")
    nib.save(img, str(out_file))
    return str(out_file)


def jacobian_determinant(
    forward_transform: str | os.PathLike,
    template_file: str | os.PathLike,
    out_file: str | os.PathLike,
    nthreads: int | None = None,
) -> str:
    """Jacobian determinant of the forward (template -> subject point) mapping on the template grid.

    A value of 1.3 means one template voxel holds 1.3 voxels' worth of subject volume, so a GM map
    warped to the template and multiplied by it (modulated) keeps each subject's GM volume:
    ``sum(modulated) * template_voxel_volume ~= native GM volume``.

    Parameters
    ----------
    forward_transform : path-like
        The forward composite transform of :func:`register_to_template`.
    template_file : path-like
        The template image (defines the grid).
    out_file : path-like
        Where to write the determinant.
    nthreads : int, optional
        ITK threads for this call.

    Returns
    -------
    str
        ``out_file``: float32 on the template grid, unitless volume ratio, clipped at 0.
    """
    import ants

    tmp = Path(tempfile.mkdtemp(prefix="jac_", dir=Path(out_file).parent))
    try:
        with itk_threads(nthreads):
            tpl = ants.image_read(str(template_file))
            field = ants.apply_transforms(fixed=tpl, moving=tpl, transformlist=[str(forward_transform)],
                                          compose=str(tmp / "c_"))
            jac = ants.create_jacobian_determinant_image(tpl, field, do_log=False)
        data = np.clip(jac.numpy().astype(np.float32), 0, None)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ref = nib.load(str(template_file))
    img = nib.Nifti1Image(data, ref.affine)
    img.header.set_xyzt_units("mm")
    nib.save(img, str(out_file))
    return str(out_file)
