"""The steps of a training run: optimiser steps, validation passes and the epoch loop.

:class:`Steps` takes the training steps (micro-batches with accumulated gradients, one gradient
exchange per step under DDP) and validation passes of one run, with the out-of-memory ladder
(:func:`latentbids.model.memory.step_down_after_oom`, the one encoding uses too) and the
eager fallback of ``torch.compile``; :func:`run_epochs` trains epoch after epoch until early stopping,
writing a checkpoint after each (:mod:`latentbids.model.checkpoint`).  The loss is the one
:func:`latentbids.model.training.train_autoencoder` passes (``training.masked_mse``, looked up there
at each call).
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from latentbids.errors import LatentbidsError
from latentbids.model.acceleration import CompiledOrEager
from latentbids.model.batches import BatchSource
from latentbids.model.checkpoint import Progress, save_checkpoint
from latentbids.model.distributed import Distributed, local_positions
from latentbids.model.memory import is_oom as _is_oom
from latentbids.model.memory import release_cuda_memory as _release_cuda_memory
from latentbids.model.memory import step_down_after_oom

if TYPE_CHECKING:
    from latentbids.model.fast_path import FastPath
    from latentbids.model.train_settings import TrainSettings

LOGGER = logging.getLogger("latentbids.model")


def ddp_oom_message(device: torch.device, dist: Distributed) -> str:
    """The one-line error for an out-of-memory error under several processes.

    Parameters
    ----------
    device : torch.device
        Where the error happened.
    dist : Distributed
        This process's place among the training processes.

    Returns
    -------
    str
    """
    return (
        f"Out of memory on {device} in a training step of {dist.describe()}: under torchrun the batch "
        f"cannot be cut on one process alone; use a smaller --batch-size (the global batch, split "
        f"between the {dist.world_size} processes), more processes, or a coarser grid"
    )


class Steps:
    """The training steps and validation passes of one run, with the out-of-memory ladder
    (micro-batches, then data off the device, then a one-line error) and the eager fallback of
    ``torch.compile``.  ``epoch`` is the current epoch (named in the OOM events).

    Parameters
    ----------
    model : torch.nn.Module
        The network being trained (validation calls it directly).
    optimizer : torch.optim.Optimizer
        Its optimiser (Adam).
    train_src, val_src : BatchSource
        The training and validation volumes.
    mask_t : torch.Tensor of shape (1, 1, X, Y, Z), float32
        The loss mask on ``device``.
    path : FastPath
        The resolved data path (autocast precision).
    device : torch.device
        The training device.
    dist : Distributed
        Training steps call ``dist.prepare(model, device)``: a DDP wrapper under several processes.
    progress : Progress
        Holds the micro-batch size and the OOM events; ``progress.start_epoch`` is the first ``epoch``.
    wanted : bool
        Go through ``torch.compile`` (:class:`~latentbids.model.acceleration.CompiledOrEager`).
    loss : callable
        ``loss(recon, target, mask)`` -> per-volume loss of shape ``(B,)`` (``training.masked_mse``).
    """

    def __init__(self, model, optimizer, train_src: BatchSource, val_src: BatchSource, mask_t: torch.Tensor,
                 path: FastPath, device: torch.device, dist: Distributed, progress: Progress, wanted: bool,
                 loss: Callable):
        self.model, self.optimizer = model, optimizer
        self.train_src, self.val_src, self.mask_t = train_src, val_src, mask_t
        self.path, self.device, self.dist, self.progress = path, device, dist, progress
        self.trained = dist.prepare(model, device)  # DDP wrapper, or the model itself
        self.forward = CompiledOrEager(self.trained, wanted, "training")
        self.val_forward = CompiledOrEager(model, wanted, "validation")
        self.epoch = progress.start_epoch
        self.loss = loss  # masked_mse, looked up in latentbids.model.training at each call

    def recover(self, where: str) -> None:
        """After an out-of-memory error (outside its ``except`` block, so the failed attempt's
        tensors are unreferenced): free memory, then halve the micro-batch, else move the data off
        the device, else give up with a one-line error."""
        device, progress = self.device, self.progress
        progress.micro, retry = step_down_after_oom(
            device, progress.micro, lambda: self.train_src.release() | self.val_src.release(),  # both
            f"during {where}", unit="micro-batches")
        event = f"epoch {self.epoch}: out of memory on {device} ({where}), {retry}"
        progress.oom_events.append(event)
        LOGGER.warning(event)

    def accumulate(self, x: torch.Tensor, n_batch: int) -> torch.Tensor:
        """Gradients of this process's part ``x`` of a global batch of ``n_batch`` volumes (in
        micro-batches); returns its summed (unweighted) loss.  The factor ``world_size /
        n_batch`` makes DDP's average over the processes the mean over the global batch."""
        dist = self.dist
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        # an empty part (the last batch of an epoch, more processes than volumes) still takes part
        # in the gradient exchange, with zero gradients
        chunks = x.split(self.progress.micro) if x.shape[0] else (x,)
        for i, chunk in enumerate(chunks):
            # one gradient exchange per step: DDP synchronises on the last micro-batch only
            sync = contextlib.nullcontext() if i == len(chunks) - 1 or not dist.active else self.trained.no_sync()
            with sync:
                with self.path.autocast(self.device):
                    recon, _ = self.forward(chunk)
                # loss in fp32 outside autocast (masked_mse casts); bf16 needs no GradScaler
                summed = self.loss(recon, chunk, self.mask_t).sum()
                (summed * dist.world_size / n_batch).backward()
            total += summed.detach()
        return total

    def step(self, x: torch.Tensor, n_batch: int) -> torch.Tensor:
        """One optimiser step on a global batch (redone in smaller micro-batches after an OOM
        error); returns this process's summed loss."""
        optimizer, device = self.optimizer, self.device
        while True:
            try:
                total = self.accumulate(x, n_batch)
                break
            except Exception as exc:
                if self.forward.fell_back(exc):  # torch.compile failed: redo the step eagerly
                    optimizer.zero_grad(set_to_none=True)
                    continue
                if not _is_oom(exc):
                    raise
                if self.dist.active:  # the other processes are inside the same step's exchange
                    raise LatentbidsError(ddp_oom_message(device, self.dist)) from None
            # here the exception and its traceback (holding the activations) are gone
            optimizer.zero_grad(set_to_none=True)  # no stale partial gradients in the retry
            self.recover("training step")
        try:
            optimizer.step()
            return total
        except Exception as exc:
            if not _is_oom(exc):
                raise
        # Adam may have updated part of its state: redoing the step would apply it twice
        optimizer.zero_grad(set_to_none=True)
        _release_cuda_memory(device)
        raise LatentbidsError(
            f"GPU out of memory on {device} in the optimiser step (the model and its Adam state do "
            f"not fit next to the data): use --device cpu or a coarser grid "
            f"(e.g. --output-spaces SPACE:res-2)"
            if device.type == "cuda"
            else f"Out of memory on {device} in the optimiser step: free memory or use a coarser "
            f"grid"
        )

    def train_epoch(self, gen: torch.Generator, batch_size: int) -> tuple[float, float]:
        """One pass over the training set in a shuffled order; returns the mean training loss (over
        every process) and the seconds spent waiting for data."""
        dist, train_src = self.dist, self.train_src
        wait = [0.0]
        order = torch.randperm(len(train_src), generator=gen).numpy()
        sizes = [len(order[i : i + batch_size]) for i in range(0, len(order), batch_size)]
        total = torch.zeros((), device=self.device)
        for x, n_batch in zip(train_src.batches(order, batch_size, wait, shard=dist.shard), sizes,
                              strict=True):
            total += self.step(x, n_batch)
        return float(dist.sum(total)) / len(train_src), wait[0]

    def validation_pass(self) -> float:
        """The mean validation loss (each process its part of the set, summed over all)."""
        dist, val_src = self.dist, self.val_src
        total = torch.zeros((), device=self.device)
        with torch.no_grad():
            # every process its part of the validation set; no exchange until the sum below
            for x in val_src.batches(local_positions(np.arange(len(val_src)), dist), self.progress.micro):
                with self.path.autocast(self.device):
                    recon, _ = self.val_forward(x)
                total += self.loss(recon, x, self.mask_t).sum()
        return float(dist.sum(total)) / len(val_src)

    def validate(self) -> float:
        """The validation loss in eval mode (redone eagerly or in smaller batches on failure)."""
        self.model.eval()
        try:
            while True:
                try:
                    return self.validation_pass()
                except Exception as exc:
                    if self.val_forward.fell_back(exc):
                        continue
                    if not _is_oom(exc):
                        raise
                self.recover("validation")
        finally:
            self.model.train()


def run_epochs(steps: Steps, progress: Progress, settings: TrainSettings, gen: torch.Generator,
               fingerprint: dict, ckpt_path: Path | None, on_epoch_end) -> None:
    """Train epoch after epoch until early stopping or ``max_epochs``, writing the checkpoint
    (process 0) and calling ``on_epoch_end`` after each.

    Parameters
    ----------
    steps : Steps
        The run's steps.
    progress : Progress
        Updated each epoch; training starts at ``progress.start_epoch`` and ends when ``progress.done``.
    settings : TrainSettings
        ``batch_size``, ``max_epochs``, ``patience`` and ``min_delta`` are used.
    gen : torch.Generator
        Shuffles each epoch's training order.
    fingerprint : dict
        Stored in every checkpoint (:func:`~latentbids.model.checkpoint.run_fingerprint`).
    ckpt_path : pathlib.Path or None
        Where process 0 writes the checkpoint after each epoch; None: no checkpoints.
    on_epoch_end : callable or None
        Called as ``on_epoch_end(epoch, row)`` with the epoch's history row.

    Returns
    -------
    None
    """
    model, device, dist = steps.model, steps.device, steps.dist
    epoch = progress.start_epoch
    model.train()
    while not progress.done and epoch <= settings.max_epochs:
        steps.epoch = epoch
        t0 = time.perf_counter()
        train_loss, wait = steps.train_epoch(gen, settings.batch_size)
        dist.sync_buffers(model)  # process 0's running statistics: one network everywhere
        val_loss = dist.from_main(steps.validate())  # bitwise the same early-stopping decision everywhere
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        row = progress.end_epoch(epoch, train_loss, val_loss, seconds, wait, len(steps.train_src), model,
                                 settings)
        if ckpt_path is not None and dist.is_main:
            ckpt = progress.checkpoint(fingerprint, epoch, model, steps.optimizer, gen, device)
            save_checkpoint(ckpt, ckpt_path)
            del ckpt
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
        epoch += 1
