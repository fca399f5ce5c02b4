"""Checkpoints of a training run: what one must have been made by, what it holds, how it is read.

:func:`run_fingerprint` is what a checkpoint must have been made by to be resumed (settings, data,
numerics, processes); :class:`Progress` is a run's state between epochs (early stopping, history,
micro-batch, OOM events) and builds the checkpoint dict with the model, optimiser and every RNG state
(:func:`rng_state`); :func:`save_checkpoint` writes it atomically; :func:`load_checkpoint` reads one
back with ``weights_only=True`` (a file in a shared work dir cannot run code) and :func:`resume`
restores a run from it.  Used by :func:`latentbids.model.training.train_autoencoder`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from latentbids.model.distributed import Distributed
from latentbids.utils.atomic import atomic_path

if TYPE_CHECKING:
    from latentbids.model.fast_path import FastPath
    from latentbids.model.train_settings import TrainSettings

LOGGER = logging.getLogger("latentbids.model")


def rng_state(gen: torch.Generator, device: torch.device) -> dict:
    """Every RNG state a resumed run needs to continue as if never stopped.

    Parameters
    ----------
    gen : torch.Generator
        The generator that shuffles the training order.
    device : torch.device
        The training device.

    Returns
    -------
    dict
        ``torch`` (the CPU generator), ``shuffle`` (``gen``), ``numpy`` (the global RandomState) and, on
        CUDA, ``cuda`` (the training device's generator only).
    """
    state = {
        "torch": torch.get_rng_state(),
        "shuffle": gen.get_state(),
        "numpy": np.random.get_state(),
    }
    if device.type == "cuda":
        # the training device's generator only: get_rng_state_all() would create a CUDA context
        # on every visible GPU, and could not be restored on a machine with fewer GPUs
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, gen: torch.Generator, device: torch.device) -> None:
    """Restore the RNG states saved by :func:`rng_state` (the CUDA one only on a CUDA device).

    Parameters
    ----------
    state : dict
        As returned by :func:`rng_state`; in older checkpoints ``cuda`` is a list with one state per visible
        GPU, of which this device's is used (none when that GPU index is beyond the list).
    gen : torch.Generator
        The shuffling generator, restored in place.
    device : torch.device
        The training device.

    Returns
    -------
    None
    """
    torch.set_rng_state(state["torch"])
    gen.set_state(state["shuffle"])
    np.random.set_state(state["numpy"])
    cuda_state = state.get("cuda")
    if device.type == "cuda" and cuda_state is not None:
        if isinstance(cuda_state, (list, tuple)):  # older checkpoints: one state per visible GPU
            idx = device.index if device.index is not None else torch.cuda.current_device()
            cuda_state = cuda_state[idx] if idx < len(cuda_state) else None
        if cuda_state is not None:
            torch.cuda.set_rng_state(cuda_state, device)


def checkpoint_globals() -> list:
    """What a checkpoint may hold besides tensors and plain containers: numpy's RNG state
    (``np.random.get_state()``: a tuple with a uint32 array), nothing that can run code.

    Parameters
    ----------
    None

    Returns
    -------
    list
        ``numpy.ndarray``, ``numpy.dtype``, the dtype class of uint32 and numpy's ``_reconstruct``: the
        globals allowed by ``torch.serialization.safe_globals``.
    """
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return [np.ndarray, np.dtype, type(np.dtype(np.uint32)), _reconstruct]


def load_checkpoint(path: str | Path) -> dict | None:
    """Load a training checkpoint without running code from it, or ``None`` (logged, one line).

    A work dir may be shared (a cluster's scratch): whoever can write it must not get to run code
    as the next user who resumes there, so the file is unpickled with ``weights_only=True`` and
    only the numpy RNG-state types of :func:`checkpoint_globals` allowed.  A file that asks for
    anything else is refused (and named with what it asked for); a damaged one is ignored.  Either
    way the fold trains from scratch and the next epoch's checkpoint replaces the file.

    Parameters
    ----------
    path : str or pathlib.Path
        The checkpoint file (``last.pt``).

    Returns
    -------
    dict or None
        The checkpoint (tensors on the CPU), or None when it was refused, unreadable or not a dict.
    """
    import pickle

    try:
        with torch.serialization.safe_globals(checkpoint_globals()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        try:
            asked = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001 - naming what it asked for is a courtesy
            asked = []
        allowed = {f"{g.__module__}.{g.__qualname__}" for g in checkpoint_globals()}
        asked = [name for name in asked if name not in allowed] or ["objects outside tensors and plain data"]
        LOGGER.warning(
            "Checkpoint %s refused: it asks to load %s, which no latentbids checkpoint holds (loading it "
            "could run code; was the work dir written by someone else?): training this fold from scratch",
            path, ", ".join(asked[:3]),
        )
        return None
    except Exception as exc:  # noqa: BLE001 - truncated, empty, not a torch file
        LOGGER.warning("Checkpoint %s is unreadable (%s): training from scratch", path,
                       " ".join(str(exc).split())[:200])
        return None
    if not isinstance(ckpt, dict):
        LOGGER.warning("Checkpoint %s is not a latentbids checkpoint: training from scratch", path)
        return None
    return ckpt


def cpu_state(model: torch.nn.Module) -> dict:
    """A detached copy of ``model``'s state dict on the CPU (e.g. the best epoch's weights).

    Parameters
    ----------
    model : torch.nn.Module
        The network (on any device).

    Returns
    -------
    dict of str to torch.Tensor
        Parameters and buffers, copied (later updates of ``model`` do not change them).
    """
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def run_fingerprint(settings, scale, data, train_idx, val_idx, extra_fingerprint, path: FastPath,
                 dist: Distributed) -> dict:
    """What a checkpoint must have been made by to be resumed: settings, data, numerics, processes.

    Parameters
    ----------
    settings : TrainSettings
        Recorded through ``settings.fingerprint()``.
    scale : float
        The constant the inputs are divided by.
    data : ndarray of shape (N, X, Y, Z)
        The GM cache; only its volume shape ``(X, Y, Z)`` is recorded.
    train_idx, val_idx : ndarray of int
        Rows of ``data`` trained and validated on.
    extra_fingerprint : dict or None
        More facts that must match (data cache key, fold).
    path : FastPath
        The resolved data path; precision and memory format are recorded unless fp32 and contiguous.
    dist : Distributed
        Under several processes their number is recorded.

    Returns
    -------
    dict
        A checkpoint is resumed only when its ``fingerprint`` equals this.
    """
    fingerprint = {
        "settings": settings.fingerprint(),
        "scale": float(scale),
        "shape": list(data.shape[1:]),
        "train": train_idx.tolist(),
        "val": val_idx.tolist(),
        **(extra_fingerprint or {}),
    }
    numerics = {"precision": path.precision, "memory_format": path.memory_format}
    if numerics != {"precision": "fp32", "memory_format": "contiguous"}:
        # a bf16 / channels_last run (CUDA default, or forced) resumes only the same numerics; the
        # fp32 default keeps its old key, so existing checkpoints still resume; placement and the
        # resident storage do not change what the bf16 network reads and are left out
        fingerprint["numerics"] = numerics
    if dist.active:
        fingerprint["processes"] = dist.world_size  # batch norm statistics per process on CPU
    return fingerprint


@dataclass
class Progress:
    """A training run's state between epochs (early stopping, history, micro-batch, OOM events):
    what a checkpoint holds besides the model, optimiser and RNG states.

    Attributes
    ----------
    best_state : dict of str to torch.Tensor
        The best epoch's weights, on the CPU (:func:`cpu_state`).
    micro : int
        Volumes per forward call: the batch size until an out-of-memory error halves it.
    history : list of dict
        One row per epoch (see :meth:`end_epoch`).
    best_val, best_epoch, bad_epochs : float, int, int
        The lowest validation loss (masked MSE, model units), its epoch, and epochs since without improvement.
    oom_events : list of str
        The out-of-memory events, as logged.
    done : bool
        Early stopping or ``max_epochs`` was reached.
    start_epoch, resumed_from : int, int or None
        The next epoch to train (1-based); after a resume, the same number, else None.
    """

    best_state: dict
    micro: int
    history: list = field(default_factory=list)
    best_val: float = float("inf")
    best_epoch: int = 0
    bad_epochs: int = 0
    oom_events: list = field(default_factory=list)
    done: bool = False
    start_epoch: int = 1
    resumed_from: int | None = None

    def end_epoch(self, epoch: int, train_loss: float, val_loss: float, seconds: float, wait: float,
                  n_train: int, model: torch.nn.Module, settings: TrainSettings) -> dict:
        """Early-stopping bookkeeping after an epoch (keeps the best weights); logs the epoch and
        returns its history row."""
        improved = val_loss < self.best_val - settings.min_delta
        if improved:
            self.best_val, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
            self.best_state = cpu_state(model)
        else:
            self.bad_epochs += 1
        self.done = self.bad_epochs >= settings.patience or epoch >= settings.max_epochs
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "best": improved,
            "seconds": round(seconds, 4),
            "data_wait_s": round(wait, 4),
            "micro_batch": self.micro,
            "volumes_per_s": round(n_train / max(seconds, 1e-9), 3),
        }
        self.history.append(row)
        LOGGER.info(
            "epoch %d: train %.6f val %.6f%s (%.1fs)",
            epoch,
            train_loss,
            val_loss,
            " *" if improved else "",
            seconds,
        )
        return row

    def checkpoint(self, fingerprint: dict, epoch: int, model: torch.nn.Module, optimizer,
                   gen: torch.Generator, device: torch.device) -> dict:
        """Everything an interrupted run needs to resume after ``epoch`` as if never stopped."""
        return {
            "fingerprint": fingerprint,
            "epoch": epoch,
            "model": cpu_state(model),
            "optimizer": optimizer.state_dict(),
            "rng": rng_state(gen, device),
            "best_state": self.best_state,
            "best_val": self.best_val,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "micro": self.micro,
            "oom_events": self.oom_events,
            "done": self.done,
        }


def save_checkpoint(ckpt: dict, path: Path) -> None:
    """Write ``ckpt`` to ``path`` atomically (a temporary name, then a rename).

    Parameters
    ----------
    ckpt : dict
        As built by :meth:`Progress.checkpoint`.
    path : pathlib.Path
        The checkpoint file; its folder is created when missing.

    Returns
    -------
    None
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def resume(ckpt_path: Path | None, fingerprint: dict, model, optimizer, gen: torch.Generator,
           device: torch.device, dist: Distributed, progress: Progress) -> None:
    """Restore model, optimiser, RNG states and ``progress`` from the last checkpoint when there is
    one made by the same settings and data (process 0 reads it, every process resumes from it).

    Parameters
    ----------
    ckpt_path : pathlib.Path or None
        The checkpoint file; None or a missing file means training from scratch.
    fingerprint : dict
        This run's :func:`run_fingerprint`; a checkpoint with another one is ignored (logged).
    model : torch.nn.Module
        Receives the checkpoint's weights.
    optimizer : torch.optim.Optimizer
        Receives its state.
    gen : torch.Generator
        The shuffling generator (see :func:`set_rng_state`).
    device : torch.device
        The training device.
    dist : Distributed
        Process 0 reads the file and sends its content to the others.
    progress : Progress
        Updated in place: best weights, early stopping, history, micro-batch, OOM events, start epoch.

    Returns
    -------
    None
    """
    ckpt = None
    if ckpt_path is not None and dist.is_main and ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path)
        if ckpt is not None and ckpt.get("fingerprint") != fingerprint:
            LOGGER.warning(
                "Checkpoint %s was made by other settings or data: training from scratch", ckpt_path
            )
            ckpt = None
    ckpt = dist.from_main(ckpt)
    if ckpt is None:
        return
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"], gen, device)
    progress.best_state, progress.best_val = ckpt["best_state"], ckpt["best_val"]
    progress.best_epoch, progress.bad_epochs = ckpt["best_epoch"], ckpt["bad_epochs"]
    progress.history, progress.micro, progress.oom_events = ckpt["history"], ckpt["micro"], ckpt["oom_events"]
    progress.done = ckpt["done"]
    progress.start_epoch = progress.resumed_from = int(ckpt["epoch"]) + 1
    LOGGER.info("Resuming training from %s (epoch %d done)", ckpt_path, ckpt["epoch"])
