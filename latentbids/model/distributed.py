"""Data-parallel training over several processes with PyTorch's DistributedDataParallel (DDP).

Launched by ``torchrun`` (one process per GPU on each node; several nodes under SLURM with ``srun
torchrun``, see docs/cluster.md): every process runs the same ``latentbids ... group`` command and
finds its rank in the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``).  Process ``r`` trains on GPU ``LOCAL_RANK``
(``nccl``), or on CPU (``gloo``, what the tests run).

What makes N processes train the network one process would:

* every process draws the same shuffled order (same seed) and takes its contiguous part of each
  global batch of ``--batch-size`` volumes (:func:`latentbids.model.batches.shard_of`); each
  process's loss is its volumes' summed error divided by the global batch size and multiplied by N,
  so DDP's gradient average is the one-process gradient;
* batch norm sees the statistics of the whole global batch on CUDA (``SyncBatchNorm``); on CPU,
  where PyTorch has no SyncBatchNorm, each process normalises with its own part's statistics (the
  documented tolerance of the gloo test); the running statistics of process 0 are sent to all
  before validation, so every process holds the same network;
* validation is split over the processes and summed, and process 0's value is the one every
  process decides early stopping on; checkpoints are written by process 0 only and read back by
  process 0, which sends the state to the others.

Only process 0 encodes and writes outputs after training; the others end when the folds are trained.
An out-of-memory error is not recovered under DDP (cutting the batch on one process alone would
desynchronise the collectives): the run stops with a one-line error saying how to fit.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass

import numpy as np
import torch

from latentbids.errors import UsageError

LOGGER = logging.getLogger("latentbids.model")

#: how long a process waits for the others at a collective (the others may be building the GM
#: cache of a large cohort under its lock meanwhile)
TIMEOUT = datetime.timedelta(minutes=60)


@dataclass(frozen=True)
class Distributed:
    """This process's place among the training processes (one process: rank 0 of 1).

    Attributes
    ----------
    rank : int
        Global rank (``RANK``), ``0 <= rank < world_size``.
    world_size : int
        Number of processes (``WORLD_SIZE``).
    local_rank : int
        Rank on this node (``LOCAL_RANK``): the index of this process's GPU on CUDA.
    local_world_size : int
        Processes on this node (``LOCAL_WORLD_SIZE``).
    backend : str
        ``"nccl"`` (CUDA), ``"gloo"`` (CPU), or ``""`` for one process.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str = ""

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Process 0: reads and writes checkpoints, encodes, writes every output."""
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        return self.rank, self.world_size

    def describe(self) -> str:
        return (f"process {self.rank} of {self.world_size} ({self.backend}, local {self.local_rank} of "
                f"{self.local_world_size})" if self.active else "one process")

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """The sum of ``value`` over all processes (every process gets it)."""
        if self.active:
            torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.SUM)
        return value

    def from_main(self, obj):
        """Process 0's ``obj``, on every process (any picklable object)."""
        if not self.active:
            return obj
        box = [obj if self.is_main else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def prepare(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The module training calls: ``model`` itself, or a DDP wrapper around it (on CUDA with
        batch norm converted to SyncBatchNorm first, in place of ``model``'s own modules)."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None)

    def sync_buffers(self, model: torch.nn.Module) -> None:
        """Send process 0's buffers (batch norm's running statistics) to every process."""
        if self.active:
            for buf in model.buffers():
                torch.distributed.broadcast(buf, src=0)


SINGLE = Distributed()


def convert_batchnorm(model: torch.nn.Module, dist: Distributed, device: torch.device) -> torch.nn.Module:
    """With several CUDA processes, batch norm over the whole global batch (``SyncBatchNorm``); the
    parameter names stay the same, so the weights load into the plain network.

    Parameters
    ----------
    model : torch.nn.Module
        The network.
    dist : Distributed
        This process's place among the training processes.
    device : torch.device
        The training device.

    Returns
    -------
    torch.nn.Module
        ``model`` with its batch norm layers converted to ``SyncBatchNorm`` (several processes on CUDA),
        else ``model`` itself.
    """
    if dist.active and device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def setup(device: str) -> tuple[Distributed, torch.device]:
    """This process's :class:`Distributed` and its device; the process group is joined when torchrun
    started several processes (``WORLD_SIZE`` > 1), else ``(SINGLE, device)``.

    The device was decided once, before (:func:`latentbids.utils.devices.process_device`, called by
    ``settings.resolve_run``: under torchrun GPU ``LOCAL_RANK`` or the CPU); here it is only read, and
    it picks the backend (``nccl`` on CUDA, ``gloo`` on the CPU).

    Parameters
    ----------
    device : str
        A resolved device, ``cpu`` or ``cuda:N``.

    Returns
    -------
    dist : Distributed
        This process's place (:data:`SINGLE` for one process).
    device : torch.device
        Its device.
    """
    from latentbids.utils.devices import parse_device, torchrun_world

    spec = parse_device(device)
    if spec.kind == "auto":
        raise ValueError("distributed.setup takes a resolved device (cpu or cuda:N), not 'auto'")
    torch_device = torch.device(str(spec) if not spec.is_cuda or spec.index is not None else "cuda:0")
    world, rank, local_rank, local_world = torchrun_world()
    if world <= 1:
        return SINGLE, torch_device
    backend = "nccl" if spec.is_cuda else "gloo"
    if spec.is_cuda:
        torch.cuda.set_device(torch_device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=backend, timeout=TIMEOUT)
    dist = Distributed(rank=rank, world_size=world, local_rank=local_rank, local_world_size=local_world,
                       backend=backend)
    LOGGER.info("Data-parallel training: %s on %s", dist.describe(), torch_device)
    return dist, torch_device


def shutdown(dist: Distributed) -> None:
    """Leave the process group (after the last collective: training's end).

    Parameters
    ----------
    dist : Distributed
        This process's place; nothing happens for one process or without a process group.

    Returns
    -------
    None
    """
    if dist.active and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def check_batch(batch_size: int, dist: Distributed) -> None:
    """A global batch must give every process at least one volume.

    Parameters
    ----------
    batch_size : int
        The global batch (``--batch-size``, volumes).
    dist : Distributed
        This process's place among the training processes.

    Returns
    -------
    None

    Raises
    ------
    UsageError
        ``batch_size`` is smaller than the number of processes.
    """
    if dist.active and int(batch_size) < dist.world_size:
        raise UsageError(f"--batch-size {batch_size} cannot be split over {dist.world_size} processes: use "
                         f"--batch-size {dist.world_size} or more (it is the global batch, split between them)")


def local_positions(positions: np.ndarray, dist: Distributed) -> np.ndarray:
    """This process's part of ``positions`` (e.g. the validation set).

    Parameters
    ----------
    positions : array_like of int, shape (n,)
        Positions to split between the processes.
    dist : Distributed
        This process's place among the training processes.

    Returns
    -------
    ndarray of int
        Its contiguous part (:func:`~latentbids.model.batches.shard_of`), or all of ``positions`` for one
        process.
    """
    from latentbids.model.batches import shard_of

    return shard_of(positions, dist.rank, dist.world_size) if dist.active else np.asarray(positions)
