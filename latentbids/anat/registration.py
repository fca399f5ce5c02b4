"""Nonlinear registration to the template (antspyx SyN family), warping, Jacobian determinants.

Transforms are kept as ANTs composite HDF5 files (``.h5``): the forward file maps template points
to subject points (ANTs convention), so it resamples *subject images onto the template grid*; the
inverse file resamples *template images (priors) onto the subject grid*.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from latentbids.anat.preprocess import itk_threads

#: ``config.anat.registration`` names -> antspyx ``type_of_transform``.
TRANSFORMS = {
    "SyN": "SyN",
    "SyNQuick": "antsRegistrationSyNQuick[s]",
    "SyNAggro": "SyNAggro",
    "SyNRA": "SyNRA",
    "Affine": "Affine",
}


@contextlib.contextmanager
def ants_seed(seed: int | None):
    """Fix antspyx's random seed (used by antsRegistration's random metric sampling) for a block."""
    import ants

    old = ants.config._random_seed
    ants.config._random_seed = None if seed is None else int(seed)
    try:
        yield
    finally:
        ants.config._random_seed = old


def register_to_template(
    moving_file: str | os.PathLike,
    template_file: str | os.PathLike,
    out_dir: str | os.PathLike,
    transform: str = "SyN",
    seed: int | None = 42,
    nthreads: int | None = None,
) -> dict[str, str]:
    """Register a skull-stripped T1w (``moving_file``) to a template brain (``template_file``).

    Returns ``{"forward": .h5, "inverse": .h5, "warped": .nii.gz}`` inside ``out_dir``: the forward
    composite transform (subject -> template resampling), its inverse, and the subject brain
    resampled on the template grid.
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

    ``interpolation``: ``linear`` (probabilities, intensities), ``nearestNeighbor`` (labels),
    ``bSpline``.  Output is float32 with the reference's affine.
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
