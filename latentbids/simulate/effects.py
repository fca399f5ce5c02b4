"""Planted effects on the template grid: individual GM variation, age atrophy, regional GM loss.

Everything here works on tissue fractions (GM, WM, CSF) of the template grid.  GM that is lost
(atrophy, planted effects) becomes CSF, as in real atrophy; the truth GM map of a subject is the
GM fraction after all changes.  The order is fixed so that a planted effect is an exact factor:

    truth = GM_individual * age_factor * (1 - loss),   loss = percent/100 * severity in a region

which makes ``truth(with effects) / truth(without effects)`` equal ``1 - loss`` voxel by voxel.
An effect's footprint is its regions of the effect atlas (AAL by default; AAL3, HCPEx or a label
NIfTI with ``--effect-atlas``) or, for ``blob:X,Y,Z,RADIUS_MM:PERCENT``, the hard-edged sphere of
template voxels whose centres lie within RADIUS_MM of the MNI point (X, Y, Z); since the loss
multiplies GM, a blob removes GM only where there is GM.  Where footprints overlap (a blob over a
planted region or another blob) the losses multiply, ``1 - loss = (1 - loss_1) (1 - loss_2)``, so
the factor stays exact.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from latentbids.errors import UsageError
from latentbids.resources import get_atlas, resample_atlas
from latentbids.simulate.spec import BLOB_EXAMPLE, Effect
from latentbids.utils.regions import region_means


@dataclass(frozen=True)
class AtlasGrid:
    """Atlas labels on the template grid and the index of each region name."""

    name: str
    labels: np.ndarray  # int16, template grid
    index: dict  # name -> label value
    source: str
    affine: np.ndarray | None = None  # template grid (voxel -> MNI mm), needed by blob effects

    @property
    def names(self) -> list[str]:
        return list(self.index)


@functools.lru_cache(maxsize=8)
def atlas_grid(shape: tuple, affine_bytes: bytes, name: str = "AAL") -> AtlasGrid:
    affine = np.frombuffer(affine_bytes, dtype=float).reshape(4, 4)
    atlas = get_atlas(name)
    target = nib.Nifti1Image(np.zeros(shape, dtype=np.uint8), affine)
    labels = np.asarray(resample_atlas(atlas, target).dataobj).astype(np.int16)
    index = {str(n): int(i) for i, n in zip(atlas.labels["index"], atlas.labels["name"])}
    return AtlasGrid(name=name, labels=labels, index=index, source=atlas.source, affine=affine)


def get_atlas_grid(head, name: str = "AAL") -> AtlasGrid:
    """The atlas resampled (nearest neighbour) onto the head model's template grid."""
    affine = np.ascontiguousarray(head.affine, dtype=float).tobytes()
    return atlas_grid(tuple(head.shape), affine, name)


def sphere_mask(shape: tuple, affine: np.ndarray, center_mm, radius_mm: float) -> np.ndarray:
    """A hard-edged sphere on a grid: voxels whose centres lie within ``radius_mm`` of ``center_mm``.

    Parameters
    ----------
    shape : tuple of int
        The grid's shape (3-D).
    affine : ndarray
        4x4 voxel-to-world (MNI mm) matrix of the grid.
    center_mm : sequence of float
        The sphere's centre (x, y, z) in world mm.
    radius_mm : float
        The radius in mm; a voxel is inside when the distance of its centre is at most this.

    Returns
    -------
    ndarray
        Bool mask of ``shape`` (all False when the sphere misses the grid).
    """
    mask = np.zeros(shape, dtype=bool)
    affine = np.asarray(affine, dtype=float)
    centre_vox = (np.linalg.inv(affine) @ np.r_[np.asarray(center_mm, dtype=float), 1.0])[:3]
    reach = radius_mm / np.linalg.svd(affine[:3, :3], compute_uv=False).min()  # voxels within the radius
    lo = np.clip(np.floor(centre_vox - reach).astype(int), 0, np.asarray(shape))
    hi = np.clip(np.ceil(centre_vox + reach).astype(int) + 1, 0, np.asarray(shape))
    if np.any(hi <= lo):
        return mask
    ijk = np.stack(np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi)), indexing="ij"), axis=-1)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    inside = np.sum((xyz - np.asarray(center_mm, dtype=float)) ** 2, axis=-1) <= radius_mm**2
    mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = inside
    return mask


def effect_footprint(atlas: AtlasGrid, effect: Effect) -> np.ndarray:
    """Where ``effect`` removes GM: its regions of ``atlas``, or its sphere.

    Parameters
    ----------
    atlas : AtlasGrid
        The effect atlas on the template grid (its ``affine`` places a blob).
    effect : Effect
        A region effect (names of ``atlas``) or a blob.

    Returns
    -------
    ndarray
        Bool mask on the template grid.
    """
    if effect.is_blob:
        return sphere_mask(atlas.labels.shape, atlas.affine, effect.center_mm, effect.radius_mm)
    return np.isin(atlas.labels, [atlas.index[region] for region in effect.regions])


def loss_map(atlas: AtlasGrid, effects: tuple[Effect, ...], severity: float) -> np.ndarray:
    """Fraction of GM lost per voxel: percent/100 * severity in each effect's footprint (max 1).

    Overlapping footprints multiply their losses (``1 - loss = prod(1 - loss_i)``); a voxel in one
    footprint only gets ``percent/100 * severity`` exactly.

    Parameters
    ----------
    atlas : AtlasGrid
        The effect atlas on the template grid.
    effects : tuple of Effect
        The planted effects (checked: every region is one of ``atlas``).
    severity : float
        The subject's severity (0 = no loss).

    Returns
    -------
    ndarray
        float32 loss fraction (0-1) on the template grid.
    """
    loss = np.zeros(atlas.labels.shape, dtype=np.float32)
    if severity <= 0:
        return loss
    for effect in effects:
        frac = min(effect.percent / 100.0 * severity, 1.0)
        where = effect_footprint(atlas, effect)
        before = loss[where].astype(np.float64)
        loss[where] = np.where(before > 0, 1.0 - (1.0 - before) * (1.0 - frac), frac)
    return loss


def check_footprints(effects: tuple[Effect, ...], atlas: AtlasGrid, gm: np.ndarray, resolution: float) -> None:
    """Raise a one-line UsageError for an effect that would remove no GM on this grid.

    A region listed by the atlas's table but absent from its image (AAL3's Thalamus_L, for one) or
    too small for the grid covers no voxel; a sphere outside the brain covers no template GM.

    Parameters
    ----------
    effects : tuple of Effect
        The checked effects.
    atlas : AtlasGrid
        The effect atlas on the template grid.
    gm : ndarray
        The template's GM fraction on the same grid.
    resolution : float
        The grid's voxel size in mm, for the message.

    Returns
    -------
    None
        Returns only when every effect removes some GM.
    """
    for effect in effects:
        where = effect_footprint(atlas, effect)
        if effect.is_blob and not float(gm[where].sum()) > 0:
            raise UsageError(
                f"--effect '{effect.to_text()}': the sphere covers no GM of the {resolution:g} mm template "
                f"grid: move its centre (MNI mm) into the brain or enlarge the radius, e.g. {BLOB_EXAMPLE}"
            )
        for region in effect.regions:
            if not (atlas.labels == atlas.index[region]).any():
                raise UsageError(
                    f"--effect '{effect.to_text()}': region {region} of {atlas.name} covers no voxel of the "
                    f"{resolution:g} mm grid: choose another region or a finer --resolution"
                )


def modulate_gm(gm, wm, csf, factor):
    """Scale GM by ``factor`` (> 0) voxelwise, trading with CSF first, then WM; sums are kept."""
    new_gm = gm * factor
    delta = new_gm - gm
    new_csf = csf - delta
    deficit = np.minimum(new_csf, 0)
    new_csf = np.maximum(new_csf, 0)
    new_wm = wm + deficit
    short = np.minimum(new_wm, 0)
    new_wm = np.maximum(new_wm, 0)
    new_gm = new_gm + short
    return new_gm.astype(np.float32), new_wm.astype(np.float32), new_csf.astype(np.float32)


@dataclass
class Tissues:
    """A subject's tissue fractions on the template grid (after every change)."""

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    loss: np.ndarray  # planted loss fraction per voxel


def subject_tissues(head, gm_field, age_factor: float, loss: np.ndarray) -> Tissues:
    """Individual GM modulation (1 + ``gm_field``), global age factor, then the planted loss."""
    gm, wm, csf = modulate_gm(head.gm, head.wm, head.csf, np.clip(1.0 + gm_field, 0.2, 2.0))
    truth = gm * np.float32(age_factor) * (1.0 - loss)
    csf = csf + (gm - truth)
    return Tissues(gm=truth.astype(np.float32), wm=wm, csf=csf.astype(np.float32), loss=loss)


def regional_means(values: np.ndarray, atlas: AtlasGrid) -> dict:
    """Mean of ``values`` in every atlas region (name -> mean)."""
    names = list(atlas.index)
    means, _ = region_means(values, atlas.labels, [atlas.index[n] for n in names])
    return {n: float(m) for n, m in zip(names, means)}
