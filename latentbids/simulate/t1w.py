"""T1w intensity synthesis: tissue contrast, a skull/scalp shell, warp, bias field, noise, int16.

The image is built on the padded template grid (brain tissues plus a head shell drawn from the
distance to a smooth hull of the brain), mapped to the scanner grid through the subject's
deformation, then a smooth multiplicative bias field and Rician noise are applied and the result
is stored as int16 with a random scanner gain.  Contrast is T1-like: WM > GM > CSF, fat bright,
bone dark, air black.
"""
from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

from latentbids.simulate.anatomy import (
    Deformation,
    HeadModel,
    cosine_basis,
    eval_series,
    random_coefficients,
)

#: field of view of the simulated scan (mm, x/y/z); the brain centre sits near the isocentre
FOV_MM = (224.0, 256.0, 240.0)


@dataclass
class Contrast:
    """Relative intensities (WM = 1) and head-shell thicknesses (mm) of one scan."""

    gm: float
    csf: float
    bone: float
    diploe: float
    fat: float
    skin: float
    rim_mm: float  # extra-cerebral CSF/dura
    skull_mm: float
    fat_mm: float
    skin_mm: float
    noise: float  # SD of the complex noise, fraction of WM
    bias: float  # SD of the log bias field
    gain: float  # scanner units of WM

    @classmethod
    def draw(cls, rng: np.random.Generator, noise_scale: float = 1.0) -> "Contrast":
        return cls(
            gm=rng.uniform(0.58, 0.70),
            csf=rng.uniform(0.18, 0.32),
            bone=rng.uniform(0.03, 0.08),
            diploe=rng.uniform(0.25, 0.45),
            fat=rng.uniform(0.90, 1.10),
            skin=rng.uniform(0.45, 0.60),
            rim_mm=rng.uniform(1.5, 3.0),
            skull_mm=rng.uniform(5.0, 8.0),
            fat_mm=rng.uniform(3.0, 6.0),
            skin_mm=rng.uniform(1.5, 3.0),
            noise=rng.uniform(0.015, 0.04) * noise_scale,
            bias=rng.uniform(0.05, 0.15),
            gain=rng.uniform(600.0, 1400.0),
        )


def _step(d, edge, width=0.6):
    """Soft step from 0 (d << edge) to 1 (d >> edge)."""
    return 0.5 * (1.0 + np.tanh((d - edge) / width))


def shell_intensity(dist: np.ndarray, c: Contrast) -> np.ndarray:
    """Intensity outside the brain as a function of the distance (mm) beyond the brain hull."""
    e1 = c.rim_mm
    e2 = e1 + c.skull_mm * 0.3  # inner table
    e3 = e1 + c.skull_mm * 0.7  # diploe (marrow) between the tables
    e4 = e1 + c.skull_mm  # outer table
    e5 = e4 + c.fat_mm
    e6 = e5 + c.skin_mm
    out = np.full(dist.shape, c.csf, dtype=np.float32)
    for edge, before, after in (
        (e1, c.csf, c.bone),
        (e2, c.bone, c.diploe),
        (e3, c.diploe, c.bone),
        (e4, c.bone, c.fat),
        (e5, c.fat, c.skin),
        (e6, c.skin, 0.0),
    ):
        out += (after - before) * _step(dist, edge)
    return out


def template_intensity(head: HeadModel, gm, wm, csf, c: Contrast) -> np.ndarray:
    """Noise-free T1 intensity on the padded template grid for the subject's tissue fractions."""
    p = head.pad
    inner = (slice(p, p + head.shape[0]), slice(p, p + head.shape[1]), slice(p, p + head.shape[2]))
    pgm, pwm, pcsf = head.pad_gm.copy(), head.pad_wm.copy(), head.pad_csf.copy()
    pgm[inner], pwm[inner], pcsf[inner] = gm, wm, csf
    brain = np.clip(pgm + pwm + pcsf, 0, 1)
    tissue = pgm * c.gm + pwm * 1.0 + pcsf * c.csf
    return (tissue + (1.0 - brain) * shell_intensity(head.hull_dist, c)).astype(np.float32)


def scanner_grid(voxel_size: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and RAS affine of the scan: an axial-aligned grid centred on the isocentre."""
    shape = tuple(int(np.ceil(f / voxel_size)) for f in FOV_MM)
    affine = np.diag([voxel_size] * 3 + [1.0])
    affine[:3, 3] = -voxel_size * (np.array(shape) - 1) / 2.0
    return shape, affine


def warp_to_scanner(image: np.ndarray, head: HeadModel, deform: Deformation, voxel_size: float,
                    coarse_step: int = 4):
    """Sample the padded-grid ``image`` on the scanner grid through the inverse deformation."""
    shape, affine = scanner_grid(voxel_size)
    # inverse map on a coarse grid (corners included), then linear upsampling
    cshape = tuple(max(2, int(np.ceil((n - 1) / coarse_step)) + 1) for n in shape)
    axes = [np.linspace(0, n - 1, m) for n, m in zip(shape, cshape)]
    ijk = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    tmm = deform.inverse(xyz)
    pad_inv = np.linalg.inv(head.pad_affine)
    coarse_vox = (tmm @ pad_inv[:3, :3].T + pad_inv[:3, 3]).reshape(cshape + (3,))
    zoom = [(n - 1) / (m - 1) if m > 1 else 1.0 for n, m in zip(shape, cshape)]
    coords = np.empty((3,) + shape, dtype=np.float32)
    for a in range(3):
        coords[a] = ndimage.zoom(coarse_vox[..., a], zoom, order=1, output=np.float32,
                                 grid_mode=False)[: shape[0], : shape[1], : shape[2]]
    out = ndimage.map_coordinates(image, coords, order=1, mode="constant", cval=0.0,
                                  output=np.float32)
    return out, affine


def bias_field(rng: np.random.Generator, shape, sd: float, order: int = 3) -> np.ndarray:
    """A smooth multiplicative field exp(f), f a low-order cosine series with SD ``sd``."""
    coef = random_coefficients(rng, order, decay=0.5)
    f = eval_series(coef, *(cosine_basis(n, order) for n in shape))
    f = (f - f.mean()) / (f.std() or 1.0) * sd
    return np.exp(f).astype(np.float32)


def synthesize_t1w(rng: np.random.Generator, head: HeadModel, tissues, deform: Deformation,
                   contrast: Contrast, voxel_size: float) -> nib.Nifti1Image:
    """The subject's T1w image (int16, RAS, scanner coordinates)."""
    image = template_intensity(head, tissues.gm, tissues.wm, tissues.csf, contrast)
    data, affine = warp_to_scanner(image, head, deform, voxel_size)
    data *= bias_field(rng, data.shape, contrast.bias)
    sigma = np.float32(contrast.noise)
    real = data + sigma * rng.standard_normal(data.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(data.shape, dtype=np.float32)
    data = np.sqrt(real * real + imag * imag) * np.float32(contrast.gain)
    data = np.clip(np.rint(data), 0, 32767).astype(np.int16)
    img = nib.Nifti1Image(data, affine)
    img.header.set_data_dtype(np.int16)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)  # scanner anatomical
    img.set_sform(affine, code=1)
    img.header["descrip"] = b"latentbids-simulate T1w"
    return img
