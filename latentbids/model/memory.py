"""Device memory: out-of-memory errors, what is still free, and how many volumes fit where.

:func:`is_oom` recognises a GPU out-of-memory error in its several forms; :func:`free_cuda_memory`
and :func:`release_cuda_memory` serve the OOM fallback of training and encoding.  :func:`capacity`
answers the question a cohort of thousands asks first: how many maps of this grid can stay resident
on the device (in fp32 or fp16), and how many can be streamed from host memory instead.
"""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass
from typing import Callable

import torch

from latentbids.errors import LatentbidsError

_OOM_TEXT = (
    "CUDA out of memory",
    "CUDNN_STATUS_NOT_ENOUGH_MEMORY",
    "CUBLAS_STATUS_ALLOC_FAILED",
)

#: bytes per voxel of each storage type of a resident training set
STORAGE_BYTES = {"fp32": 4, "fp16": 2}


def is_oom(exc: BaseException) -> bool:
    """A GPU out-of-memory error: ``torch.OutOfMemoryError`` (``torch.cuda.OutOfMemoryError`` is
    the same class), or the RuntimeError forms of older torch and of cuDNN/cuBLAS allocation
    failures.

    Parameters
    ----------
    exc : BaseException
        The exception caught.

    Returns
    -------
    bool
    """
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(exc, oom) or (
        isinstance(exc, RuntimeError) and any(t in str(exc) for t in _OOM_TEXT)
    )


def free_cuda_memory(device: torch.device) -> int:
    """Bytes this process can still get on ``device``: the driver's free memory plus what PyTorch's
    caching allocator holds reserved but unused (e.g. the previous fold's training set).

    Parameters
    ----------
    device : torch.device
        A CUDA device.

    Returns
    -------
    int
        Bytes.
    """
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(free) + max(0, int(cached))


def release_cuda_memory(device: torch.device) -> None:
    """After an out-of-memory error (called outside the ``except`` block): collect the failed
    attempt's tensors and give the allocator's cached blocks back.

    Parameters
    ----------
    device : torch.device or str
        The device of the failed attempt (the allocator's cache is emptied on CUDA only).

    Returns
    -------
    None
    """
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def oom_message(device: torch.device, where: str) -> str:
    """The one-line error when even one volume per step does not fit.

    Parameters
    ----------
    device : torch.device
        Where the error happened (the advice differs for CUDA).
    where : str
        Named in the message, e.g. ``"while encoding"``.

    Returns
    -------
    str
    """
    fix = "use --device cpu or " if device.type == "cuda" else "free memory or use "
    return (
        f"Out of memory on {device} {where} with one volume per step and the data in host memory "
        f"(the batch was already cut automatically, so a lower --batch-size will not help): "
        f"{fix}a coarser grid (e.g. --output-spaces SPACE:res-2)"
    )


def step_down_after_oom(device: torch.device, batch: int, release_data: Callable[[], bool], where: str,
                        unit: str = "batches") -> tuple[int, str]:
    """The one out-of-memory ladder of training and encoding: one rung down after an OOM error.

    Called outside the ``except`` block (so the failed attempt's tensors are unreferenced): frees
    memory, then halves ``batch`` (volumes per forward call), else, at one volume, calls
    ``release_data`` (moves a resident copy of the data off the device; ``False`` when there is
    none), else raises the one-line :class:`~latentbids.errors.LatentbidsError` of
    :func:`oom_message`.

    Parameters
    ----------
    device : torch.device
        Where the error happened.
    batch : int
        Volumes per forward call in the failed attempt (>= 1).
    release_data : callable returning bool
        Moves the data off the device; returns whether anything was moved.
    where : str
        Named in the error ("during training step", "while encoding").
    unit : str
        What ``batch`` counts, named in the returned retry message ("micro-batches", "batches").

    Returns
    -------
    batch : int
        Volumes per forward call for the retry.
    retry : str
        What the retry changes, for the warning and the run's OOM events.
    """
    release_cuda_memory(device)
    if batch > 1:
        batch = max(1, batch // 2)
        return batch, f"retrying with {unit} of {batch}"
    if release_data():
        release_cuda_memory(device)
        return 1, "retrying at one volume per step with the data streamed from host memory"
    raise LatentbidsError(oom_message(device, where))


@dataclass(frozen=True)
class Capacity:
    """The largest cohort (volumes) each data placement holds, for one grid and one memory size.

    Attributes
    ----------
    volume_shape : tuple of int
        One volume's shape (voxels), e.g. the network box ``(X, Y, Z)``.
    device_bytes : int
        Device memory the estimate is for (bytes).
    memory_share : float
        Share (0..1) of it a resident set may take.
    resident_fp32, resident_fp16 : int
        Volumes a resident set holds in fp32 (4 bytes per voxel) or fp16 (2 bytes per voxel).
    host_bytes : int
        Host memory (bytes) the streamed set is read through.
    streamed : int
        Volumes whose fp32 cache fits in ``host_bytes``.
    """

    volume_shape: tuple
    device_bytes: int  # memory the estimate is for (free device memory, or a size given)
    memory_share: float  # share of it a resident set may take (the rest is for the network)
    resident_fp32: int
    resident_fp16: int
    host_bytes: int  # host memory (page cache) the streamed set is read through
    streamed: int  # volumes whose fp32 cache fits in host memory (beyond it: read from disk)

    def rows(self) -> list[tuple[str, int, str]]:
        """``(placement, volumes, what bounds it)`` for a report."""
        gib = self.device_bytes / 2**30
        return [
            ("resident fp32", self.resident_fp32, f"{self.memory_share:.0%} of {gib:.1f} GiB device memory"),
            ("resident fp16", self.resident_fp16, f"{self.memory_share:.0%} of {gib:.1f} GiB device memory"),
            ("streamed (pinned batches)", self.streamed,
             f"not the device: {self.host_bytes / 2**30:.1f} GiB host memory caches the maps (more are read "
             "from disk)"),
        ]


def capacity(volume_shape, device_bytes: int, memory_share: float = 0.5, host_bytes: int = 0) -> Capacity:
    """How many volumes of ``volume_shape`` each placement holds (see :class:`Capacity`).

    A resident set may take ``memory_share`` of ``device_bytes`` (training's ``gpu_memory_share``,
    the rest is left for weights, Adam's moments and activations); a streamed set is bounded by the
    disk, and served from host memory as long as its fp32 cache fits in ``host_bytes``.

    Parameters
    ----------
    volume_shape : sequence of int
        One volume's shape (voxels).
    device_bytes : int
        Device memory the estimate is for (bytes), e.g. :func:`free_cuda_memory`.
    memory_share : float, default 0.5
        Share (0..1) of ``device_bytes`` a resident set may take.
    host_bytes : int, default 0
        Host memory (bytes) that caches a streamed set.

    Returns
    -------
    Capacity
    """
    voxels = math.prod(int(s) for s in volume_shape)
    budget = float(memory_share) * int(device_bytes)
    return Capacity(
        volume_shape=tuple(int(s) for s in volume_shape),
        device_bytes=int(device_bytes),
        memory_share=float(memory_share),
        resident_fp32=int(budget // (voxels * STORAGE_BYTES["fp32"])),
        resident_fp16=int(budget // (voxels * STORAGE_BYTES["fp16"])),
        host_bytes=int(host_bytes),
        streamed=int(int(host_bytes) // (voxels * STORAGE_BYTES["fp32"])),
    )
