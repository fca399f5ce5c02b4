"""Fit a template grid to the network: crop/pad to a shape divisible by ``2**levels``.

The box is the bounding box of the mask (brain mask united with every atlas voxel), grown to the
next multiple of ``2**levels`` around its centre.  Where the grown box leaves the volume it is
padded with zeros, so no mask or atlas voxel is ever cut.  :meth:`GridFit.restore` puts a fitted
array back on the original grid (zeros outside the box).

Also here: integer block downsampling (``--sloppy`` uses a 4 mm grid built from a 2 mm template),
which keeps a voxel's centre where the block's centre is, so the new affine is exact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class GridFit:
    """Where the network's box lies on the original grid.

    ``start[i]`` may be negative and ``start[i] + size[i]`` may exceed ``shape[i]``: those parts of the
    box are zero padding.

    Attributes
    ----------
    shape : tuple of 3 int
        The original grid's shape (voxels).
    start : tuple of 3 int
        The box's first voxel on the original grid.
    size : tuple of 3 int
        The box's shape: the network's input shape (voxels).
    """

    shape: tuple[int, int, int]  # original grid
    start: tuple[int, int, int]
    size: tuple[int, int, int]  # network input shape (divisible by 2**levels)

    def _slices(self):
        src, dst = [], []
        for n, s, k in zip(self.shape, self.start, self.size):
            lo, hi = max(s, 0), min(s + k, n)
            src.append(slice(lo, hi))
            dst.append(slice(lo - s, hi - s))
        return tuple(src), tuple(dst)

    def crop(self, array: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Original grid -> network box; works on ``(..., X, Y, Z)`` arrays."""
        array = np.asarray(array)
        if tuple(array.shape[-3:]) != tuple(self.shape):
            raise ValueError(f"array shape {array.shape[-3:]} is not the grid shape {self.shape}")
        src, dst = self._slices()
        if out is None:
            out = np.zeros(array.shape[:-3] + tuple(self.size), dtype=array.dtype)
        else:
            out[...] = 0
        out[(Ellipsis,) + dst] = array[(Ellipsis,) + src]
        return out

    def restore(self, array: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Network box -> original grid (``fill`` outside the box); works on ``(..., X, Y, Z)``."""
        array = np.asarray(array)
        if tuple(array.shape[-3:]) != tuple(self.size):
            raise ValueError(f"array shape {array.shape[-3:]} is not the box shape {self.size}")
        src, dst = self._slices()
        out = np.full(array.shape[:-3] + tuple(self.shape), fill, dtype=array.dtype)
        out[(Ellipsis,) + src] = array[(Ellipsis,) + dst]
        return out

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "GridFit":
        return cls(*(tuple(int(x) for x in data[k]) for k in ("shape", "start", "size")))


def fit_grid(mask: np.ndarray, levels: int, min_size: int | None = None) -> GridFit:
    """The smallest box divisible by ``2**levels`` that holds every non-zero voxel of ``mask``.

    ``min_size`` (default ``2**levels``) keeps at least that many voxels per axis.

    Parameters
    ----------
    mask : ndarray of shape (X, Y, Z)
        Its non-zero voxels must lie inside the box.
    levels : int
        Halvings of the grid in the network (``len(channels)``).
    min_size : int or None
        Smallest box side (voxels); never less than ``2**levels``.

    Returns
    -------
    GridFit
        Centred on the mask's bounding box, and moved inside the volume on an axis where it fits there.

    Raises
    ------
    ValueError
        ``mask`` is not 3-D, or is empty.
    """
    mask = np.asarray(mask) != 0
    if mask.ndim != 3:
        raise ValueError(f"mask must be 3-D, got shape {mask.shape}")
    if not mask.any():
        raise ValueError("mask is empty: cannot fit a grid around it")
    step = 2 ** int(levels)
    min_size = max(step, int(min_size or step))
    start, size = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        extent = hi - lo
        k = max(min_size, int(np.ceil(extent / step)) * step)
        extra = k - extent
        s = lo - extra // 2
        # Prefer a box inside the volume (less padding) when it fits there.
        n = mask.shape[axis]
        if k <= n:
            s = min(max(s, 0), n - k)
        start.append(s)
        size.append(k)
    return GridFit(shape=tuple(int(s) for s in mask.shape), start=tuple(start), size=tuple(size))


def downsample_shape(shape, factor: int) -> tuple[int, int, int]:
    """The shape of the block-downsampled grid: ``ceil(n / factor)`` voxels per axis.

    Parameters
    ----------
    shape : sequence of int
        A shape whose last three axes are the grid.
    factor : int
        Block side (voxels).

    Returns
    -------
    tuple of 3 int
    """
    return tuple(int(np.ceil(s / factor)) for s in shape[-3:])


def downsample_affine(affine: np.ndarray, factor: int) -> np.ndarray:
    """Affine of the block-downsampled grid: voxel ``i`` is the centre of block ``[f i, f i + f)``.

    Parameters
    ----------
    affine : array_like of shape (4, 4)
        Voxel-to-world affine of the original grid (mm).
    factor : int
        Block side ``f`` (voxels).

    Returns
    -------
    ndarray of shape (4, 4), float64
    """
    factor = int(factor)
    scale = np.diag([factor, factor, factor, 1.0])
    scale[:3, 3] = (factor - 1) / 2.0
    return np.asarray(affine, dtype=float) @ scale


def block_reduce(array: np.ndarray, factor: int, how: str = "mean") -> np.ndarray:
    """Downsample the last three axes by an integer ``factor`` (zero-padded at the far edges).

    ``how``: ``mean`` for intensities (GM maps), ``max`` for masks (keeps every mask voxel).

    Parameters
    ----------
    array : ndarray of shape (..., X, Y, Z)
        The volume(s).
    factor : int
        Block side (voxels); 1 returns ``array`` as it is.
    how : {"mean", "max"}, default "mean"
        The reduction over each block; a block cut by the far edge is filled with zeros (counted by ``mean``).

    Returns
    -------
    ndarray of shape (..., ceil(X/factor), ceil(Y/factor), ceil(Z/factor))
        float32 for ``mean`` (summed in float64), ``array``'s dtype for ``max``.

    Raises
    ------
    ValueError
        ``how`` is neither ``mean`` nor ``max`` (checked when ``factor`` > 1).
    """
    factor = int(factor)
    array = np.asarray(array)
    if factor == 1:
        return array
    lead = array.shape[:-3]
    shape = array.shape[-3:]
    new = downsample_shape(shape, factor)
    pad = [(0, 0)] * len(lead) + [(0, n * factor - s) for n, s in zip(new, shape)]
    if any(p[1] for p in pad):
        array = np.pad(array, pad)
    blocks = array.reshape(lead + (new[0], factor, new[1], factor, new[2], factor))
    axes = tuple(len(lead) + a for a in (1, 3, 5))
    if how == "mean":
        return blocks.mean(axis=axes, dtype=np.float64).astype(np.float32)
    if how == "max":
        return blocks.max(axis=axes)
    raise ValueError(f"unknown reduction {how!r}")
