"""Group level, steps 1 and 2: the grid the network works on, and the GM cache on it.

:func:`working_grid` fits the template grid (``--sloppy``: its 4 mm block-average), with its mask
united with every atlas voxel, to the network's levels (:class:`WorkingGrid`); :func:`load_cache`
reads every GM map once into the memory-mapped cache in the work dir; :func:`grid_facts` is what a
fold's input grid is (recorded with a ``--fold`` job's fold).  Wired by
:mod:`latentbids.workflows.group.training`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from latentbids.utils.locks import locked


@dataclass(frozen=True, eq=False)
class WorkingGrid:
    """The grid the network works on: the template (or its block-average under ``--sloppy``), its
    mask united with every atlas voxel, and the box fitted to the network's levels."""

    factor: int  # template voxels per working voxel along each axis
    resolution: float  # working voxel size (mm)
    shape: tuple  # working grid shape
    affine: np.ndarray  # working grid affine
    atlas_work: np.ndarray  # atlas labels on the working grid (int16)
    mask_work: np.ndarray  # brain mask on the working grid (template mask | atlas)
    fit: object  # :class:`latentbids.model.grid.GridFit`: working grid <-> network box
    mask_box: np.ndarray  # the mask cropped to the box (float32)
    res: str  # the ``res-`` entity of the working grid in file names (bids.naming.grid_res_entity)


def working_grid(template, atlas, grid_mm: float, levels: int) -> WorkingGrid:
    """Step 1: the working grid (``grid_mm`` > 0: a block-average of the template at about that voxel size,
    ``--sloppy``'s :data:`latentbids.config.SLOPPY_GRID_MM`; 0: the template grid), its mask united with the
    atlas (so every region is kept) and the network box fitted to ``levels`` levels."""
    from latentbids.bids.naming import grid_res_entity
    from latentbids.model.grid import block_reduce, downsample_affine, downsample_shape, fit_grid
    from latentbids.resources import resample_atlas

    factor = 1
    if grid_mm and template.resolution < grid_mm:
        factor = max(1, int(round(grid_mm / template.resolution)))
    work_res = template.resolution * factor
    work_shape = downsample_shape(template.shape, factor)
    work_affine = downsample_affine(template.affine, factor)
    work_ref = nib.Nifti1Image(np.zeros(work_shape, dtype=np.uint8), work_affine)
    atlas_tpl = np.asarray(resample_atlas(atlas, template.mask).dataobj)
    mask_tpl = (np.asarray(template.mask.dataobj) > 0) | (atlas_tpl > 0)
    atlas_work = np.asarray(resample_atlas(atlas, work_ref).dataobj).astype(np.int16)
    mask_work = (block_reduce(mask_tpl.astype(np.uint8), factor, "max") > 0) | (atlas_work > 0)
    fit = fit_grid(mask_work, levels=levels)
    mask_box = fit.crop(mask_work.astype(np.float32))
    res = grid_res_entity(template.res, template.resolution, work_res)
    return WorkingGrid(factor, work_res, work_shape, work_affine, atlas_work, mask_work, fit, mask_box, res)


def load_cache(records: pd.DataFrame, work: Path, template, grid: WorkingGrid, nprocs):
    """Step 2: every map once, into the memory-mapped cache (built once by whichever job or process
    of those sharing the work dir comes first; the others wait, then reuse it)."""
    from latentbids.model.cache import load_volumes

    with locked(work / "model_cache" / ".build.lock"):
        return load_volumes(
            records["gm_path"].tolist(),
            work / "model_cache",
            template.shape,
            template.affine,
            grid.factor,
            grid.fit,
            n_threads=max(1, int(nprocs or 1)),
        )


def grid_facts(template, factor: int, fit) -> dict:
    """What a fold model's input grid is (a fold trained on another grid is refused)."""
    return {"space": template.space, "resolution": float(template.resolution), "shape": list(template.shape),
            "downsample": int(factor), "box": fit.to_dict()}
