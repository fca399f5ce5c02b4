"""The mean of a map in every atlas region: the one rule behind the regional GM tables, the regional
reconstruction error, the analysis' regional features and the simulator's truth.

Why one place: four copies of this bincount drifted before (how an empty region is reported, which
voxels count); every caller now gets the same means for the same map and labels.
"""

from __future__ import annotations

import numpy as np


def region_means(values, labels, index) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``values`` over the voxels of each label in ``index``.

    Parameters
    ----------
    values : array_like, shape (X, Y, Z) or (N, X, Y, Z)
        One map, or N maps on the grid of ``labels`` (computed in float64).
    labels : array_like of int, shape (X, Y, Z)
        Atlas labels (0 = background; set a voxel to 0 to leave it out).
    index : array_like of int, shape (J,)
        The labels whose means are wanted, in the order of the columns returned.

    Returns
    -------
    means : ndarray, shape (J,) or (N, J)
        The mean of each region; NaN for a label with no voxel.
    counts : ndarray of int, shape (J,)
        The number of voxels of each label.
    """
    lab = np.asarray(labels).astype(np.int64).ravel()
    idx = np.asarray(index, dtype=np.int64)
    size = int(max(lab.max(initial=0), idx.max(initial=0)) + 1)
    counts = np.bincount(lab, minlength=size)[idx]
    data = np.asarray(values, dtype=np.float64)
    flat = data.reshape(-1, lab.size) if data.ndim > np.asarray(labels).ndim else data.reshape(1, -1)
    sums = np.stack([np.bincount(lab, weights=row, minlength=size)[idx] for row in flat])
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return (means if data.ndim > np.asarray(labels).ndim else means[0]), counts
