"""Grid fitting (crop/pad/restore), block downsampling, and the network's shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentbids.model.grid import GridFit, block_reduce, downsample_affine, fit_grid
from latentbids.model.network import AutoEncoder3D, masked_mse


def test_fit_grid_keeps_every_mask_voxel_and_is_divisible():
    mask = np.zeros((45, 54, 45), dtype=bool)
    mask[3:40, 0:54, 10:44] = True  # touches the y edges: the box must pad
    fit = fit_grid(mask, levels=4)
    assert all(s % 16 == 0 for s in fit.size)
    box = fit.crop(mask.astype(np.float32))
    assert box.sum() == mask.sum()
    back = fit.restore(box)
    assert back.shape == mask.shape
    np.testing.assert_array_equal(back > 0, mask)


def test_crop_restore_roundtrip_on_batches():
    rng = np.random.default_rng(0)
    vol = rng.random((2, 21, 23, 19)).astype(np.float32)
    mask = np.zeros((21, 23, 19), dtype=bool)
    mask[2:19, 1:22, 3:17] = True
    fit = fit_grid(mask, levels=3)
    restored = fit.restore(fit.crop(vol))
    np.testing.assert_array_equal(restored[:, mask], vol[:, mask])
    assert GridFit.from_dict(fit.to_dict()) == fit


def test_block_reduce_and_affine_keep_world_coordinates():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-90, -126, -72]
    vol = np.zeros((10, 12, 10), dtype=np.float32)
    vol[4:6, 6:8, 2:4] = 1.0  # exactly one 2x2x2 block
    small = block_reduce(vol, 2, "mean")
    assert small.shape == (5, 6, 5)
    i = np.argwhere(small == 1.0)[0]
    centre_small = downsample_affine(affine, 2) @ np.r_[i, 1]
    centre_big = affine @ np.r_[4.5, 6.5, 2.5, 1]
    np.testing.assert_allclose(centre_small, centre_big)
    assert block_reduce(np.ones((5, 5, 5)), 2, "max").shape == (3, 3, 3)


def test_network_shapes_and_rebuild():
    torch.manual_seed(0)
    net = AutoEncoder3D((16, 32, 16), latent_dim=5, channels=(2, 4, 4, 8))
    x = torch.rand(3, 1, 16, 32, 16)
    recon, z = net(x)
    assert recon.shape == x.shape and z.shape == (3, 5)
    assert float(recon.detach().min()) >= 0 and float(recon.detach().max()) <= 1  # sigmoid
    twin = AutoEncoder3D.from_architecture(net.architecture())
    twin.load_state_dict(net.state_dict())
    net.eval()
    twin.eval()
    torch.testing.assert_close(twin(x)[1], net(x)[1])


def test_network_refuses_indivisible_shape():
    with pytest.raises(ValueError, match="divisible"):
        AutoEncoder3D((20, 32, 16), channels=(2, 4, 4, 8))


def test_masked_mse_ignores_voxels_outside_mask():
    x = torch.zeros(1, 1, 4, 4, 4)
    r = torch.ones(1, 1, 4, 4, 4)
    mask = torch.zeros(1, 1, 4, 4, 4)
    mask[..., :2] = 1
    r[..., 2:] = 100
    assert float(masked_mse(r, x, mask)) == pytest.approx(1.0)
