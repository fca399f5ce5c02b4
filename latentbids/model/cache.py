"""Every GM map read once into one contiguous float32 array: a memory-mapped ``.npy`` in the work dir.

The cache file is keyed by the maps' absolute paths, modification times and sizes plus the grid
(source shape and affine, downsampling factor, crop box), so a rerun with the same inputs reuses it
(no NIfTI decoding at all) and any changed input makes a new one.  Volumes are stored already
downsampled and cropped to the network's box, so the training loop only slices this array.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from latentbids.errors import MissingInputError, UsageError
from latentbids.model.grid import GridFit, block_reduce
from latentbids.utils.atomic import atomic_path, write_json

LOGGER = logging.getLogger("latentbids.model")
CACHE_VERSION = 1


@dataclass(frozen=True)
class CachedVolumes:
    """The cache: ``data`` is a read-only ``(N, X, Y, Z)`` float32 memmap in ``paths`` order.

    Attributes
    ----------
    data : ndarray of shape (N, X, Y, Z), float32
        The maps in input units, on ``fit``'s box (else on the downsampled grid).
    path : pathlib.Path
        The ``gm-<key[:24]>.npy`` file.
    key : str
        Its :func:`cache_key`.
    reused : bool
        True when an existing cache file was reused.
    """

    data: np.ndarray
    path: Path
    key: str
    reused: bool


def grid_description(shape, affine) -> str:
    """``97x115x97 voxels of 2x2x2 mm (origin -96,-132,-78)``: how errors name a grid.

    Parameters
    ----------
    shape : sequence of int
        The image shape (its first three axes are named).
    affine : array_like of shape (4, 4)
        Voxel-to-world affine (mm); the voxel sizes are its column norms.

    Returns
    -------
    str
    """
    affine = np.asarray(affine, dtype=float)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    vox = "x".join(f"{z:g}" for z in np.round(zooms, 3))
    origin = ",".join(f"{o:g}" for o in np.round(affine[:3, 3], 2))
    return f"{'x'.join(str(int(s)) for s in shape[:3])} voxels of {vox} mm (origin {origin})"


def same_grid(shape_a, affine_a, shape_b, affine_b, atol: float = 1e-3) -> bool:
    """Whether two images lie on the same grid: equal first three axes and affines equal within ``atol``.

    Parameters
    ----------
    shape_a, shape_b : sequence of int
        Image shapes (only the first three axes are compared).
    affine_a, affine_b : array_like of shape (4, 4)
        Voxel-to-world affines (mm).
    atol : float, default 1e-3
        Absolute tolerance per affine element (mm for the origin).

    Returns
    -------
    bool
    """
    return tuple(int(s) for s in shape_a[:3]) == tuple(int(s) for s in shape_b[:3]) and np.allclose(
        np.asarray(affine_a, dtype=float), np.asarray(affine_b, dtype=float), atol=atol
    )


def cache_key(paths: Sequence[str | os.PathLike], grid: dict) -> str:
    """sha256 over (absolute path, mtime_ns, size) of every map plus the grid description.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        The GM maps.
    grid : dict
        JSON-serialisable grid description (source shape and affine, downsampling factor, box).

    Returns
    -------
    str
        The hex digest (64 characters); it also covers :data:`CACHE_VERSION`.

    Raises
    ------
    MissingInputError
        A map does not exist.
    """
    items = []
    for p in paths:
        path = Path(p).resolve()
        try:
            st = path.stat()
        except OSError:
            raise MissingInputError(
                f"GM map {path} not found: rerun the participant level for it"
            ) from None
        items.append([str(path), st.st_mtime_ns, st.st_size])
    blob = json.dumps({"version": CACHE_VERSION, "files": items, "grid": grid}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def read_volume(
    path: str | os.PathLike,
    source_shape,
    source_affine,
    downsample: int = 1,
    fit: GridFit | None = None,
) -> np.ndarray:
    """Read one GM map, check it lies on the source grid, downsample and crop it (float32).

    Parameters
    ----------
    path : str or os.PathLike
        A GM map (NIfTI, 3-D or 4-D with one volume).
    source_shape, source_affine : sequence of int, array_like of shape (4, 4)
        The template grid it must lie on (:func:`same_grid`).
    downsample, fit : int, GridFit or None
        As in :func:`prepare_volume`, which makes the result.

    Returns
    -------
    ndarray of shape (X, Y, Z), float32
        See :func:`prepare_volume`.

    Raises
    ------
    MissingInputError
        The map is missing, unreadable or corrupt.
    UsageError
        The map is on another grid.
    """
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
    except FileNotFoundError:
        raise MissingInputError(
            f"GM map {path} not found: rerun the participant level for it"
        ) from None
    except Exception as exc:
        raise MissingInputError(
            f"GM map {path} cannot be read ({exc}): delete it and rerun the participant level"
        ) from None
    if not same_grid(img.shape, img.affine, source_shape, source_affine):
        raise UsageError(
            f"GM map {path} is on {grid_description(img.shape, img.affine)}, not on the template grid "
            f"{grid_description(source_shape, source_affine)}: resample it to the template grid"
        )
    try:
        data = np.asarray(img.get_fdata(dtype=np.float32), dtype=np.float32)
    except Exception as exc:
        raise MissingInputError(
            f"GM map {path} is corrupt ({exc}): delete it and rerun the participant level"
        ) from None
    return prepare_volume(data, downsample, fit)


def prepare_volume(data: np.ndarray, downsample: int = 1, fit: GridFit | None = None) -> np.ndarray:
    """A GM map on the template grid -> the network's input box: the one rule training, the group
    level's encoding and ``--model`` all use (so a subject encoded alone gets the latents it would
    get in the group).

    Parameters
    ----------
    data : ndarray of shape (X, Y, Z) or (X, Y, Z, 1)
        The map's voxels on the template grid (GM probability, 0..1).
    downsample : int, default 1
        Block-averaging factor (:func:`~latentbids.model.grid.block_reduce` with ``mean``; 1 = none).
    fit : GridFit or None
        Crop/pad box applied after downsampling (None = keep the downsampled grid).

    Returns
    -------
    ndarray of shape (X', Y', Z'), float32
        C-contiguous, input units; NaN and infinite values set to 0.
    """
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    data = block_reduce(data, int(downsample), "mean")
    if fit is not None:
        data = fit.crop(data)
    return np.ascontiguousarray(data, dtype=np.float32)


def load_volumes(
    paths: Sequence[str | os.PathLike],
    cache_dir: str | os.PathLike,
    source_shape,
    source_affine,
    downsample: int = 1,
    fit: GridFit | None = None,
    n_threads: int = 1,
) -> CachedVolumes:
    """Return all maps as one ``(N, X, Y, Z)`` float32 memmap, building the cache when needed.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        GM maps on the source (template) grid, in the order rows should have.
    cache_dir : str or os.PathLike
        Folder in the work dir for the ``.npy`` cache (and its ``.json`` record).
    source_shape, source_affine : sequence of int, array_like of shape (4, 4)
        The template grid every map must lie on.
    downsample : int, default 1
        Integer block-averaging factor (1 = none).
    fit : GridFit or None
        Crop/pad box applied after downsampling (None = keep the downsampled grid).
    n_threads : int, default 1
        Maps decoded in parallel (gzip decoding releases the GIL).

    Returns
    -------
    CachedVolumes
        ``data`` of shape ``(len(paths), X, Y, Z)``, float32, read-only, input units.

    Raises
    ------
    UsageError
        ``paths`` is empty, or a map is on another grid.
    MissingInputError
        A map is missing, unreadable or corrupt.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise UsageError("No GM maps to train on: the group level found no participant outputs")
    grid = {
        "shape": [int(s) for s in source_shape[:3]],
        "affine": np.round(np.asarray(source_affine, dtype=float), 4).tolist(),
        "downsample": int(downsample),
        "fit": fit.to_dict() if fit is not None else None,
    }
    key = cache_key(paths, grid)
    cache_dir = Path(cache_dir)
    target = cache_dir / f"gm-{key[:24]}.npy"
    if target.is_file():
        try:
            data = np.load(target, mmap_mode="r")
            if data.shape[0] == len(paths) and data.dtype == np.float32:
                LOGGER.info("Reusing GM cache %s (%d maps, %s)", target, len(paths), data.shape[1:])
                return CachedVolumes(data=data, path=target, key=key, reused=True)
        except Exception:  # a damaged cache is rebuilt, never trusted
            LOGGER.warning("GM cache %s is unreadable: rebuilding it", target)
    if fit is not None:
        vol_shape = tuple(fit.size)
    else:
        from latentbids.model.grid import downsample_shape

        vol_shape = downsample_shape(source_shape, downsample)
    LOGGER.info("Building GM cache %s: %d maps of %s", target, len(paths), vol_shape)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.float32, shape=(len(paths),) + vol_shape
        )

        def _one(i, out=out):
            out[i] = read_volume(paths[i], source_shape, source_affine, downsample, fit)

        if n_threads > 1:
            pool = ThreadPoolExecutor(max_workers=n_threads)
            try:
                list(pool.map(_one, range(len(paths))))
            finally:  # an interrupt (or a bad map) drops the queued maps instead of reading them all
                pool.shutdown(wait=True, cancel_futures=True)
        else:
            for i in range(len(paths)):
                _one(i)
        out.flush()
        del out
    write_json(
        target.with_suffix(".json"),
        {"key": key, "grid": grid, "files": [str(p.resolve()) for p in paths]},
    )
    data = np.load(target, mmap_mode="r")
    return CachedVolumes(data=data, path=target, key=key, reused=False)
