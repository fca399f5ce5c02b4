"""Batched encoding and reconstruction, with voxelwise, scalar and regional error inside the mask.

All arrays here live on the network's box (see :mod:`latentbids.model.grid`) and in model units
(input divided by the training scale).  Errors are squared differences inside the mask: the scalar
error ``e`` is their mean over the mask (the training loss of that volume); the regional error of an
atlas region is their mean over the region's voxels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from latentbids.errors import LatentbidsError
from latentbids.model.network import AutoEncoder3D
from latentbids.model.training import BatchSource, _autocast, _is_oom

LOGGER = logging.getLogger("latentbids.model")


@dataclass
class EncodedBatch:
    rows: np.ndarray  # rows of the input array, in this batch's order
    z: np.ndarray  # (b, K)
    recon: np.ndarray  # (b, X, Y, Z) reconstruction, 0 outside the mask (model units)
    error_map: np.ndarray  # (b, X, Y, Z) squared error, 0 outside the mask (model units)
    error: np.ndarray  # (b,) mean squared error inside the mask


def iter_encode(
    model: AutoEncoder3D,
    data: np.ndarray,
    rows: Sequence[int],
    mask: np.ndarray,
    device: torch.device | str = "cpu",
    scale: float = 1.0,
    batch_size: int = 8,
    fast: bool = True,
    resident: bool = False,
) -> Iterator[EncodedBatch]:
    """Encode and reconstruct ``data[rows]`` in batches (``data``: ``(N, X, Y, Z)`` on the box,
    original units; divided by ``scale`` here).  A CUDA out-of-memory error halves the batch and
    retries (logged)."""
    device = torch.device(device)
    rows = np.asarray(rows, dtype=np.int64)
    channels_last = device.type == "cuda" and fast
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    mask_np = np.asarray(mask, dtype=np.float32)
    mask_t = torch.as_tensor(mask_np, device=device)[None, None]
    n_mask = float(mask_np.sum())
    source = BatchSource(data, rows, device, scale, resident=resident, channels_last=channels_last)
    pos = 0
    while pos < len(rows):
        try:
            # one generator for all remaining batches, so the prefetch thread overlaps transfers
            for x in source.batches(np.arange(pos, len(rows)), batch_size):
                with torch.no_grad(), _autocast(device, fast):
                    z = model.encode(x)
                    recon = model.decode(z)
                recon = recon.float() * mask_t
                sq = (recon - x.float() * mask_t).pow(2)
                err = sq.flatten(1).sum(1) / n_mask
                chunk = rows[pos : pos + x.shape[0]]
                out = EncodedBatch(
                    rows=chunk,
                    z=z.float().cpu().numpy(),
                    recon=recon[:, 0].contiguous().cpu().numpy(),
                    error_map=sq[:, 0].contiguous().cpu().numpy(),
                    error=err.cpu().numpy(),
                )
                pos += len(chunk)
                yield out
        except Exception as exc:
            if not _is_oom(exc):
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if batch_size <= 1:
                raise LatentbidsError(
                    "Out of memory while encoding one volume: use a smaller grid or --device cpu"
                ) from None
            batch_size = max(1, batch_size // 2)
            LOGGER.warning("Out of memory while encoding: retrying with batches of %d", batch_size)


def encode_all(model, data, rows, mask, device="cpu", scale=1.0, batch_size=8, fast=True):
    """Latent codes and scalar errors of ``data[rows]`` (in ``rows`` order): ``(Z, e)``."""
    rows = np.asarray(rows, dtype=np.int64)
    z_out = np.zeros((len(rows), model.latent_dim), dtype=np.float32)
    e_out = np.zeros(len(rows), dtype=np.float64)
    where = {r: i for i, r in enumerate(rows)}
    for batch in iter_encode(model, data, rows, mask, device, scale, batch_size, fast):
        for j, r in enumerate(batch.rows):
            z_out[where[int(r)]] = batch.z[j]
            e_out[where[int(r)]] = batch.error[j]
    return z_out, e_out


def regional_error(
    error_map: np.ndarray, atlas: np.ndarray, labels: pd.DataFrame, mask: np.ndarray | None = None
) -> pd.DataFrame:
    """Mean squared error per atlas region (inside ``mask`` when given).

    Returns ``index, name, n_voxels, error`` (one row per region in ``labels``; ``error`` is NaN for
    a region with no voxel on this grid).
    """
    lab = np.asarray(atlas).astype(np.int64).ravel()
    err = np.asarray(error_map, dtype=np.float64).ravel()
    if mask is not None:
        keep = np.asarray(mask).ravel() > 0
        lab = np.where(keep, lab, 0)
    size = int(max(lab.max(initial=0), labels["index"].max()) + 1)
    sums = np.bincount(lab, weights=err, minlength=size)
    counts = np.bincount(lab, minlength=size)
    idx = labels["index"].to_numpy(dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts[idx] > 0, sums[idx] / np.maximum(counts[idx], 1), np.nan)
    return pd.DataFrame(
        {"index": idx, "name": labels["name"].to_numpy(), "n_voxels": counts[idx], "error": mean}
    )
