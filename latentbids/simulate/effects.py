"""Planted effects on the template grid: individual GM variation, age atrophy, regional GM loss.

Everything here works on tissue fractions (GM, WM, CSF) of the template grid.  GM that is lost
(atrophy, planted effects) becomes CSF, as in real atrophy; the truth GM map of a subject is the
GM fraction after all changes.  The order is fixed so that a planted effect is an exact factor:

    truth = GM_individual * age_factor * (1 - loss),   loss = percent/100 * severity in a region

which makes ``truth(with effects) / truth(without effects)`` equal ``1 - loss`` voxel by voxel.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from latentbids.resources import get_atlas, resample_atlas
from latentbids.simulate.spec import Effect
from latentbids.utils.regions import region_means


@dataclass(frozen=True)
class AtlasGrid:
    """Atlas labels on the template grid and the index of each region name."""

    name: str
    labels: np.ndarray  # int16, template grid
    index: dict  # name -> label value
    source: str

    @property
    def names(self) -> list[str]:
        return list(self.index)


@functools.lru_cache(maxsize=4)
def atlas_grid(shape: tuple, affine_bytes: bytes, name: str = "AAL") -> AtlasGrid:
    affine = np.frombuffer(affine_bytes, dtype=float).reshape(4, 4)
    atlas = get_atlas(name)
    target = nib.Nifti1Image(np.zeros(shape, dtype=np.uint8), affine)
    labels = np.asarray(resample_atlas(atlas, target).dataobj).astype(np.int16)
    index = {str(n): int(i) for i, n in zip(atlas.labels["index"], atlas.labels["name"])}
    return AtlasGrid(name=name, labels=labels, index=index, source=atlas.source)


def get_atlas_grid(head, name: str = "AAL") -> AtlasGrid:
    """The atlas resampled (nearest neighbour) onto the head model's template grid."""
    affine = np.ascontiguousarray(head.affine, dtype=float).tobytes()
    return atlas_grid(tuple(head.shape), affine, name)


def loss_map(atlas: AtlasGrid, effects: tuple[Effect, ...], severity: float) -> np.ndarray:
    """Fraction of GM lost per voxel: percent/100 * severity inside each planted region (max 1)."""
    loss = np.zeros(atlas.labels.shape, dtype=np.float32)
    if severity <= 0:
        return loss
    for effect in effects:
        frac = min(effect.percent / 100.0 * severity, 1.0)
        for region in effect.regions:
            loss[atlas.labels == atlas.index[region]] = frac
    return loss


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
