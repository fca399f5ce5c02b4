"""Batches for training and encoding: from the memory-mapped cache, or from a copy resident on the device.

:class:`BatchSource` serves scaled ``(B, 1, X, Y, Z)`` float32 batches of chosen rows of the cache:

* **resident**: the whole set in one device tensor (on CUDA when it needs at most ``memory_share``
  of the memory still available; on CPU only when asked, as the twin of the CUDA path), each batch
  gathered by ``index_select``.  It is stored in fp16 when asked (``storage="fp16"``, the bf16 fast
  path's choice): half the memory, so twice the cohort, and no loss that matters: fp16 keeps 11
  significant bits where the bf16 network reads 8, and GM values (probabilities, modulated maps of a
  few units) lie far inside its range; a set with a value beyond it is stored in fp32 instead (logged).
* **streamed**: a prefetch thread gathers the next batch from the memmap (into pinned host memory
  when the target is a GPU, copied asynchronously) while the current step computes.

:meth:`BatchSource.release` drops the resident copy (the OOM fallback); batches already being served
switch to the streamed path at the next batch.  Under data-parallel training
(:mod:`latentbids.model.distributed`) every process walks the same global batches and serves its
own contiguous part of each (``shard``), so the processes together see exactly the batches one
process would.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import torch

from latentbids.model.memory import STORAGE_BYTES, free_cuda_memory, is_oom, release_cuda_memory

LOGGER = logging.getLogger("latentbids.model")

STORAGES = tuple(STORAGE_BYTES)
FP16_MAX = 65504.0  # the largest finite fp16 value
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def shard_of(positions: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Process ``rank``'s contiguous part of one global batch (the first processes take one more
    when it does not split evenly; a process may get none at the end of an epoch).

    Parameters
    ----------
    positions : array_like of int, shape (B,)
        The global batch: positions into a :class:`BatchSource`'s ``indices``.
    rank : int
        This process's rank, ``0 <= rank < world_size``.
    world_size : int
        Number of processes.

    Returns
    -------
    ndarray of shape (b,)
        Part ``rank`` of ``np.array_split(positions, world_size)`` (``b`` may be 0).
    """
    return np.array_split(np.asarray(positions), int(world_size))[int(rank)]


class BatchSource:
    """Serve scaled ``(B, 1, X, Y, Z)`` float32 batches of ``data[indices[pos]]`` on ``device``
    (see the module docstring for ``resident``, ``storage`` and ``memory_share``).

    Parameters
    ----------
    data : ndarray of shape (N, X, Y, Z), float32
        The volumes on the network's box in input units, usually the read-only GM cache memmap.
    indices : sequence of int
        Rows of ``data`` this source serves; batch positions index into it.
    device : torch.device
        Where batches are delivered.
    scale : float
        Batches are ``data / scale`` (model units).
    resident : bool, default True
        Keep ``data[indices]`` on the device (CUDA: when it fits in ``memory_share``; CPU: a host copy, the
        CPU twin); False streams every batch from ``data``.
    channels_last : bool, default False
        Deliver batches in ``torch.channels_last_3d`` memory format.
    memory_share : float, default 0.5
        Largest share (0..1) of the available CUDA memory (bytes,
        :func:`~latentbids.model.memory.free_cuda_memory`) the resident copy may take.
    storage : {"fp32", "fp16"}, default "fp32"
        The resident copy's type (fp32 is kept when a value lies beyond fp16's range).

    Attributes
    ----------
    placement : str
        Where batches come from: ``"gpu"`` or ``"<device type>-resident"`` (resident), ``"pinned"`` (CUDA,
        streamed) or the device type (streamed).
    store : torch.Tensor or None
        The resident copy, shape ``(len(indices), X, Y, Z)``, or None when batches are streamed.

    Raises
    ------
    ValueError
        ``storage`` is not ``fp32`` or ``fp16``.
    """

    def __init__(
        self,
        data: np.ndarray,
        indices: Sequence[int],
        device: torch.device,
        scale: float,
        resident: bool = True,
        channels_last: bool = False,
        memory_share: float = 0.5,
        storage: str = "fp32",
    ):
        if storage not in STORAGES:
            raise ValueError(f"storage {storage!r} is not one of {', '.join(STORAGES)}")
        self.data = data
        self.indices = np.asarray(indices, dtype=np.int64)
        self.device = torch.device(device)
        self.inv_scale = float(1.0 / scale)
        self.channels_last = channels_last
        self.store = None
        self.storage = storage
        self.placement = self._streamed_name()
        if not (resident and len(self.indices)):
            return
        if self.device.type == "cuda":
            self._upload(memory_share)
        else:
            # same row layout as the GPU store: row i is data[indices[i]]
            rows = np.ascontiguousarray(data[self.indices], dtype=np.float32)
            if self.storage == "fp16" and not _fits_fp16(rows):
                self._keep_fp32()
            self.store = torch.from_numpy(rows).to(_DTYPES[self.storage])
            self.placement = f"{self.device.type}-resident"

    def _streamed_name(self) -> str:
        return "pinned" if self.device.type == "cuda" else self.device.type

    def _keep_fp32(self) -> None:
        LOGGER.warning("A GM map holds values beyond fp16's range (|x| > %g): the resident data set is "
                       "kept in fp32", FP16_MAX)
        self.storage = "fp32"

    def _upload(self, memory_share: float) -> None:
        need = len(self.indices) * int(np.prod(self.data.shape[1:])) * STORAGE_BYTES[self.storage]
        available = free_cuda_memory(self.device)
        if need > memory_share * available:
            LOGGER.info(
                "Data set (%.2f GiB in %s) exceeds %.0f%% of available GPU memory (%.2f GiB): "
                "pinned batches",
                need / 2**30,
                self.storage,
                memory_share * 100,
                available / 2**30,
            )
            return
        failed = False
        try:
            self.store = torch.empty(
                (len(self.indices),) + tuple(self.data.shape[1:]),
                dtype=_DTYPES[self.storage],
                device=self.device,
            )
            for lo in range(0, len(self.indices), 32):
                part = np.ascontiguousarray(self.data[self.indices[lo : lo + 32]], dtype=np.float32)
                if self.storage == "fp16" and not _fits_fp16(part):  # pragma: no cover - needs a GPU
                    self.store = None
                    self._keep_fp32()
                    return self._upload(memory_share)
                self.store[lo : lo + 32].copy_(torch.from_numpy(part))
            self.placement = "gpu"
        except Exception as exc:  # pragma: no cover - needs a GPU
            if not is_oom(exc):
                raise
            failed = True
        if failed:  # pragma: no cover - needs a GPU
            self.store = None
            release_cuda_memory(self.device)
            LOGGER.warning("Data set did not fit on the GPU: using pinned-memory batches")

    def release(self) -> bool:
        """Drop the resident copy (True when there was one); later batches are streamed."""
        if self.store is None:
            return False
        self.store = None
        self.placement = self._streamed_name()
        return True

    def __len__(self) -> int:
        return len(self.indices)

    def _host(self, positions: np.ndarray) -> torch.Tensor:
        rows = self.indices[np.sort(positions)]  # same order as the resident path
        arr = self.data[rows]
        tensor = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        if self.device.type == "cuda":
            tensor = tensor.pin_memory()  # pinned only for a CUDA target (async copy in _finish)
        return tensor

    def _finish(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.device != self.device:
            tensor = tensor.to(self.device, non_blocking=True)
        # a fresh float32 tensor either way (index_select / the host copy, or the fp16 cast)
        tensor = tensor.unsqueeze(1).to(torch.float32).mul_(self.inv_scale)
        if self.channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last_3d)
        return tensor

    def _store_rows(self, chunks: list) -> torch.Tensor:
        """Rows of the resident store for ``chunks`` (concatenated), uploaded in one copy per pass:
        a per-batch ``as_tensor(..., device=cuda)`` is a blocking copy that stalls the host on
        every step (and showed up as data wait)."""
        return torch.as_tensor(np.concatenate(chunks), dtype=torch.int64, device=self.store.device)

    def batches(self, order: np.ndarray, batch_size: int, wait: list | None = None,
                shard: tuple[int, int] = (0, 1)):
        """Yield batches in ``order`` (positions into ``indices``; each batch's positions sorted);
        ``wait[0]`` accumulates seconds spent blocked on data.  ``shard=(rank, world_size)`` yields
        this process's part of every global batch of ``batch_size`` (possibly empty: the processes
        must all take part in every step)."""
        order = np.asarray(order, dtype=np.int64)
        batch_size = max(1, int(batch_size))
        chunks = [np.sort(order[i : i + batch_size]) for i in range(0, len(order), batch_size)]
        if shard[1] > 1:
            chunks = [shard_of(chunk, *shard) for chunk in chunks]
        rows = self._store_rows(chunks) if (self.store is not None and chunks) else None
        pool, future, start = None, None, 0
        try:
            for i, chunk in enumerate(chunks):
                t0 = time.perf_counter()
                if self.store is not None and rows is not None:
                    x = self._finish(self.store.index_select(0, rows[start : start + len(chunk)]))
                else:  # streamed (or the resident copy was released by the OOM fallback)
                    if pool is None:
                        pool = ThreadPoolExecutor(max_workers=1)
                    host = future.result() if future is not None else self._host(chunk)
                    future = pool.submit(self._host, chunks[i + 1]) if i + 1 < len(chunks) else None
                    x = self._finish(host)
                start += len(chunk)
                if wait is not None:
                    wait[0] += time.perf_counter() - t0
                yield x
        finally:
            if pool is not None:
                if future is not None:
                    future.cancel()
                pool.shutdown(wait=True)


def _fits_fp16(values: np.ndarray) -> bool:
    return values.size == 0 or float(np.abs(values).max()) <= FP16_MAX
