"""The mean of a map in every atlas region: the one rule behind the regional GM tables, the regional
reconstruction error, the analysis' regional features and the simulator's truth.

Why one place: four copies of this bincount drifted before (how an empty region is reported, which
voxels count); every caller now gets the same means for the same map and labels.
"""

from __future__ import annotations

import numpy as np


def region_sums(values, labels, index) -> tuple[np.ndarray, np.ndarray]:
    """Sum of ``values`` over the voxels of each label in ``index``, and the voxel counts.

    Parameters
    ----------
    values : array_like, shape (X, Y, Z) or (N, X, Y, Z)
        One map, or N maps on the grid of ``labels``; each map is read and summed in float64 on its
        own, so a memory-mapped stack is never copied whole.
    labels : array_like of int, shape (X, Y, Z)
        Atlas labels (0 = background; set a voxel to 0 to leave it out).
    index : array_like of int, shape (J,)
        The labels wanted, in the order of the columns returned.

    Returns
    -------
    sums : ndarray, shape (J,) or (N, J)
        The sum of each region (0 for a label with no voxel).
    counts : ndarray of int, shape (J,)
        The number of voxels of each label.
    """
    labels = np.asarray(labels)
    lab = labels.astype(np.int64).ravel()
    idx = np.asarray(index, dtype=np.int64)
    size = int(max(lab.max(initial=0), idx.max(initial=0)) + 1)
    counts = np.bincount(lab, minlength=size)[idx]
    one = np.ndim(values) == labels.ndim
    maps = [values] if one else values
    sums = np.stack([np.bincount(lab, weights=np.asarray(m, dtype=np.float64).ravel(), minlength=size)[idx]
                     for m in maps])
    return (sums[0] if one else sums), counts


def region_means(values, labels, index) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``values`` over the voxels of each label in ``index`` (:func:`region_sums` / counts).

    Parameters
    ----------
    values, labels, index
        As in :func:`region_sums`.

    Returns
    -------
    means : ndarray, shape (J,) or (N, J)
        The mean of each region; NaN for a label with no voxel.
    counts : ndarray of int, shape (J,)
        The number of voxels of each label.
    """
    sums, counts = region_sums(values, labels, index)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return means, counts
