"""The one regional-mean rule (latentbids.utils.regions.region_means), against a direct computation."""

from __future__ import annotations

import numpy as np

from latentbids.utils.regions import region_means, region_sums


def test_means_counts_empty_labels_and_stacks_of_maps():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=(6, 7, 5))
    maps = rng.random((3, 6, 7, 5))
    index = [4, 1, 9]  # 9 has no voxel: NaN, count 0
    means, counts = region_means(maps, labels, index)
    assert means.shape == (3, 3) and counts.tolist() == [(labels == 4).sum(), (labels == 1).sum(), 0]
    for i in range(3):
        np.testing.assert_allclose(means[i, :2], [maps[i][labels == 4].mean(), maps[i][labels == 1].mean()])
    assert np.isnan(means[:, 2]).all()
    one, _ = region_means(maps[1], labels, index)  # one map: a row
    np.testing.assert_allclose(one, means[1])
    # background (0) is never a region unless asked for, and masking a voxel is setting it to 0
    masked = np.where(maps[0] > 0.5, labels, 0)
    np.testing.assert_allclose(region_means(maps[0], masked, [1])[0], [maps[0][(labels == 1) & (maps[0] > 0.5)].mean()])
    # the sums behind the means: 0 for an empty label
    sums, sum_counts = region_sums(maps, labels, index)
    np.testing.assert_allclose(sums[:, :2], means[:, :2] * counts[:2])
    assert (sums[:, 2] == 0).all() and sum_counts.tolist() == counts.tolist()
