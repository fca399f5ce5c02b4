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

from latentbids.model.acceleration import GraphedEncoder, cuda_graphs_wanted, fold_batchnorm
from latentbids.model.batches import BatchSource
from latentbids.model.fast_path import FastPath, resolve_fast_path
from latentbids.model.memory import is_oom, step_down_after_oom
from latentbids.model.network import AutoEncoder3D
from latentbids.utils.denormals import flush_denormals
from latentbids.utils.regions import region_means

LOGGER = logging.getLogger("latentbids.model")


@dataclass
class EncodedBatch:
    """One encoded batch, on the host.

    Attributes
    ----------
    rows : ndarray of shape (b,), int64
        Rows of the input array, in this batch's order.
    z : ndarray of shape (b, K), float32
        Latent codes.
    recon : ndarray of shape (b, X, Y, Z), float32
        Reconstruction on the network's box, 0 outside the mask (model units).
    error_map : ndarray of shape (b, X, Y, Z), float32
        Squared error per voxel, 0 outside the mask (model units).
    error : ndarray of shape (b,), float32
        Mean squared error inside the mask (the scalar error ``e``).
    """

    rows: np.ndarray  # rows of the input array, in this batch's order
    z: np.ndarray  # (b, K)
    recon: np.ndarray  # (b, X, Y, Z) reconstruction, 0 outside the mask (model units)
    error_map: np.ndarray  # (b, X, Y, Z) squared error, 0 outside the mask (model units)
    error: np.ndarray  # (b,) mean squared error inside the mask


def _encode_step(net: AutoEncoder3D, mask_t: torch.Tensor, n_mask: float, path: FastPath,
                 device: torch.device, cache_enabled: bool = True):
    """The device-side encoding of one batch: ``x -> (z, reconstruction, squared error, error)``,
    masked, in float32 (what a CUDA graph captures whole)."""

    def step(x: torch.Tensor):
        with path.autocast(device, cache_enabled):
            z = net.encode(x)
            recon = net.decode(z)
        recon = recon.float() * mask_t
        sq = (recon - x.float() * mask_t).pow(2)
        return z.float(), recon[:, 0], sq[:, 0], sq.flatten(1).sum(1) / n_mask

    return step


def _to_host(rows: np.ndarray, out) -> EncodedBatch:
    z, recon, sq, err = out
    return EncodedBatch(
        rows=rows,
        z=z.cpu().numpy(),
        recon=recon.contiguous().cpu().numpy(),
        error_map=sq.contiguous().cpu().numpy(),
        error=err.cpu().numpy(),
    )


class _Forward:
    """Eager encoding steps, or on CUDA their CUDA graphs (one per batch shape, captured at first
    use; a capture that fails, or an out-of-memory error, turns the graphs off for this run)."""

    def __init__(self, net, mask_t, n_mask, path, device, graphs: bool):
        self.eager = _encode_step(net, mask_t, n_mask, path, device)
        self.graphable = _encode_step(net, mask_t, n_mask, path, device, cache_enabled=False)
        self.graphs: dict | None = {} if graphs else None

    def __call__(self, x: torch.Tensor):
        if self.graphs is None:
            return self.eager(x)
        key = (tuple(x.shape), x.stride())
        if key not in self.graphs:
            try:
                self.graphs[key] = GraphedEncoder(self.graphable, x)
            except Exception as exc:  # noqa: BLE001 - pragma: no cover (needs a GPU)
                if is_oom(exc):
                    raise
                LOGGER.warning("CUDA graph capture failed for encoding (%s: %s): encoding eagerly",
                               type(exc).__name__, " ".join(str(exc).split())[:200])
                self.graphs = None
                return self.eager(x)
        return self.graphs[key](x)

    def drop_graphs(self) -> None:
        """After an out-of-memory error: free the graphs' memory pools and stay eager."""
        self.graphs = None


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
    *,
    precision: str | None = None,
    memory_format: str | None = None,
    placement: str | None = None,
    storage: str | None = None,
    graphs: bool | None = None,
) -> Iterator[EncodedBatch]:
    """Encode and reconstruct ``data[rows]`` in batches of ``batch_size`` volumes per forward call
    (``data``: ``(N, X, Y, Z)`` on the box, original units; divided by ``scale`` here).

    ``fast``/``resident`` and the explicit ``precision``, ``memory_format``, ``placement`` and
    ``storage`` overrides resolve as in :func:`latentbids.model.fast_path.resolve_fast_path` (the
    overrides give the CPU twin of the CUDA fast path).  The model is moved to ``device`` and to the
    resolved memory format in place; the forward passes run on an inference copy with batch norm
    folded into the convolutions (:func:`latentbids.model.acceleration.fold_batchnorm`).
    ``graphs`` (default: on CUDA only) replays CUDA graphs of the encoding step
    (:class:`latentbids.model.acceleration.GraphedEncoder`).  An out-of-memory error halves the
    batch and retries (logged); at one volume a resident copy is dropped first, then a one-line
    :class:`~latentbids.errors.LatentbidsError` is raised.  On CPU each forward pass runs with
    denormals flushed to zero (:mod:`latentbids.utils.denormals`).

    Parameters
    ----------
    model : AutoEncoder3D
        The trained network; moved to ``device`` and the resolved memory format in place, in eval mode.
    data : ndarray of shape (N, X, Y, Z), float32
        Volumes on the network's box in input units (e.g. the GM cache memmap).
    rows : sequence of int
        Rows of ``data`` to encode, in output order.
    mask : ndarray of shape (X, Y, Z)
        The loss mask on the box (1 inside, 0 outside; bool or float).
    device : torch.device or str, default "cpu"
        Where the forward passes run.
    scale : float, default 1.0
        Inputs are divided by it (model units).
    batch_size : int, default 8
        Volumes per forward call (halved after an out-of-memory error).
    fast, resident : bool
        As in :func:`~latentbids.model.fast_path.resolve_fast_path` (defaults True and False).
    precision, memory_format, placement, storage : str or None
        Overrides of the data path (None: the automatic choice).
    graphs : bool or None
        Replay CUDA graphs of the encoding step; None: on CUDA only (never off CUDA).

    Yields
    ------
    EncodedBatch
        The batches in ``rows`` order, each produced by one forward call.
    """
    device = torch.device(device)
    rows = np.asarray(rows, dtype=np.int64)
    path = resolve_fast_path(device, fast, resident, precision, memory_format, placement, storage)
    model = model.to(device).eval()
    model = model.to(
        memory_format=torch.channels_last_3d if path.channels_last else torch.contiguous_format
    )
    net = fold_batchnorm(model)
    mask_np = np.asarray(mask, dtype=np.float32)
    mask_t = torch.as_tensor(mask_np, device=device)[None, None]
    n_mask = float(mask_np.sum())
    source = BatchSource(
        data, rows, device, scale, resident=path.resident, channels_last=path.channels_last,
        storage=path.storage,
    )
    use_graphs = cuda_graphs_wanted(device) if graphs is None else bool(graphs and cuda_graphs_wanted(device))
    forward = _Forward(net, mask_t, n_mask, path, device, use_graphs)
    batch_size = max(1, int(batch_size))
    cpu = device.type == "cpu"
    pos = 0
    while pos < len(rows):
        try:
            # one generator for all remaining batches, so the prefetch thread overlaps transfers
            for x in source.batches(np.arange(pos, len(rows)), batch_size):
                with flush_denormals(cpu), torch.no_grad():  # per batch: the caller's code keeps IEEE
                    out = _to_host(rows[pos : pos + x.shape[0]], forward(x))
                x = None
                pos += len(out.rows)
                yield out
            out = None
            continue
        except Exception as exc:
            if not is_oom(exc):
                raise
        # recovery outside the except block: the failed batch's tensors are unreferenced now
        x = out = None
        forward.drop_graphs()
        batch_size, retry = step_down_after_oom(device, batch_size, source.release, "while encoding")
        LOGGER.warning("Out of memory on %s while encoding: %s", device, retry)


def encode_all(
    model, data, rows, mask, device="cpu", scale=1.0, batch_size=8, fast=True, **fast_path
):
    """Latent codes and scalar errors of ``data[rows]`` (in ``rows`` order): ``(Z, e)``.

    Parameters
    ----------
    model, data, rows, mask, device, scale, batch_size, fast
        As in :func:`iter_encode`.
    **fast_path
        ``resident``, ``precision``, ``memory_format``, ``placement``, ``storage``, ``graphs`` (see
        :func:`iter_encode`).

    Returns
    -------
    Z : ndarray of shape (len(rows), K), float32
        Latent codes.
    e : ndarray of shape (len(rows),), float64
        Mean squared error inside the mask per volume (model units).
    """
    rows = np.asarray(rows, dtype=np.int64)
    z_out = np.zeros((len(rows), model.latent_dim), dtype=np.float32)
    e_out = np.zeros(len(rows), dtype=np.float64)
    where = {r: i for i, r in enumerate(rows)}
    for batch in iter_encode(
        model, data, rows, mask, device, scale, batch_size, fast, **fast_path
    ):
        for j, r in enumerate(batch.rows):
            z_out[where[int(r)]] = batch.z[j]
            e_out[where[int(r)]] = batch.error[j]
    return z_out, e_out


def regional_error(
    error_map: np.ndarray, atlas: np.ndarray, labels: pd.DataFrame, mask: np.ndarray | None = None
) -> pd.DataFrame:
    """Mean squared error per atlas region (inside ``mask`` when given).

    Parameters
    ----------
    error_map : ndarray of shape (X, Y, Z)
        Squared error per voxel (model units).
    atlas : ndarray of shape (X, Y, Z), int
        Region index per voxel (0: background; no negative labels), on the same grid.
    labels : pandas.DataFrame
        The regions to report: ``index`` (int) and ``name``.
    mask : ndarray of shape (X, Y, Z) or None
        Voxels where it is 0 count as background (label 0).

    Returns
    -------
    pandas.DataFrame
        ``index, name, n_voxels, error``: one row per region in ``labels`` order; ``error`` is NaN for
        a region with no voxel on this grid.
    """
    lab = np.asarray(atlas).astype(np.int64)
    if mask is not None:
        lab = np.where(np.asarray(mask).reshape(lab.shape) > 0, lab, 0)
    idx = labels["index"].to_numpy(dtype=np.int64)
    mean, counts = region_means(np.asarray(error_map, dtype=np.float64).reshape(lab.shape), lab, idx)
    return pd.DataFrame(
        {"index": idx, "name": labels["name"].to_numpy(), "n_voxels": counts, "error": mean}
    )
