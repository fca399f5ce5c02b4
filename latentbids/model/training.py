"""Training loop: Adam, masked MSE, early stopping, a checkpoint each epoch, resume, OOM fallback.

Data path (no NIfTI decoding here: the caller passes the cached ``(N, X, Y, Z)`` array):

* CPU (default): fp32, contiguous; each batch is gathered from the memory-mapped cache by a prefetch thread while the
  previous step computes.
* CUDA: the training and validation volumes live on the GPU when they fit (``resident``; stored in fp16 under bf16
  autocast, so twice the cohort fits), else each batch is gathered into pinned host memory by the prefetch thread and
  copied asynchronously; bf16 autocast (fp32 on a card without native bf16) and ``channels_last_3d`` (the ``fast`` path;
  ``fast=False`` is the fp32 baseline). See :func:`latentbids.model.fast_path.resolve_fast_path` and
  :mod:`latentbids.model.batches`.
* ``compile`` (``[model] compile``; ``auto`` = CUDA only): the forward pass goes through ``torch.compile``; a
  compilation failure logs one line and the step is redone eagerly (:mod:`latentbids.model.acceleration`).
* Several processes (``torchrun``, :mod:`latentbids.model.distributed`): DistributedDataParallel over shards of every
  global batch; the processes together take the step one process would.
* CPU twin of the fast path (tests, benchmarks; never a default): ``precision="bf16"``,
  ``memory_format="channels_last_3d"`` and ``placement="resident"`` passed to :func:`train_autoencoder` /
  :func:`latentbids.model.encoding.iter_encode` force those choices on any device, so every device-agnostic piece of the
  CUDA path (autocast, memory format, the resident store and its per-epoch index upload, the OOM fallback) runs on CPU.
* An out-of-memory error during a step is caught: the step is redone with the batch cut in micro-batches of half the
  size (gradients accumulated, so the optimiser step sees the same batch; batch-norm statistics are then per
  micro-batch, so the step is close to, not identical with, the full-batch one; the running statistics of the failed
  attempt's finished micro-batches are not rolled back) and the event is logged and returned in :class:`TrainResult`.
  At one volume per step a resident training set is moved off the GPU before giving up with a one-line
  :class:`~latentbids.errors.LatentbidsError`.  Recovery runs outside the ``except`` block, so the failed attempt's
  activations (held by the traceback) are released before ``empty_cache``.  An out-of-memory error inside
  ``optimizer.step()`` is not retried (Adam may have updated part of its state): it is reported as such; nor is one
  under several processes (see :mod:`latentbids.model.distributed`).

Checkpoints (``<checkpoint_dir>/last.pt``, written atomically each epoch) hold the model, optimizer, early-stopping
state, history and every RNG state (on CUDA: the training device's generator only), so an interrupted run resumed from
its last checkpoint reaches the same result as an uninterrupted one (bit-identical on CPU with ``deterministic=True``).
They are read back with ``weights_only=True`` (:func:`latentbids.model.checkpoint.load_checkpoint`): a file in a shared
work dir cannot run code.

The checkpoint parts live in :mod:`latentbids.model.checkpoint`, the steps, the OOM ladder and the epoch loop in
:mod:`latentbids.model.training_steps`; this module resolves the data path, builds the network and runs them.
``masked_mse``, ``flush_denormals`` and ``LOGGER`` are looked up here when used (tests and drivers
replace them on this module).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from latentbids.model.acceleration import compile_wanted
from latentbids.model.batches import BatchSource
from latentbids.model.checkpoint import Progress, cpu_state, resume, run_fingerprint
from latentbids.model.device import set_determinism
from latentbids.model.distributed import SINGLE, Distributed, convert_batchnorm
from latentbids.model.fast_path import resolve_fast_path
from latentbids.model.network import AutoEncoder3D, masked_mse
from latentbids.model.train_settings import TrainSettings
from latentbids.model.training_steps import Steps, run_epochs
from latentbids.utils.denormals import flush_denormals

LOGGER = logging.getLogger("latentbids.model")
CHECKPOINT = "last.pt"


@dataclass
class TrainResult:
    """The outcome of :func:`train_autoencoder` (losses: masked MSE, model units).

    Attributes
    ----------
    model, history : AutoEncoder3D, pandas.DataFrame
        A plain network with the best epoch's weights, in eval mode; one row per epoch (``epoch, train_loss,
        val_loss, best, seconds, data_wait_s, micro_batch, volumes_per_s``).
    best_epoch, best_val_loss, stopped_early, resumed_from : int, float, bool, int or None
        The best epoch and its validation loss; stopped by ``patience`` before ``max_epochs``; the first epoch run
        after resuming from a checkpoint (None: not resumed).
    micro_batch, oom_events : int, list of str
        Volumes per forward call at the end (smaller after an out-of-memory error); the OOM events, as logged.
    placement, data_wait_share, fast_path, compiled : str, float, dict, bool
        The training set's placement (:class:`~latentbids.model.batches.BatchSource`); share (0..1) of epoch time
        spent waiting for data; the resolved data path; whether the steps ran through ``torch.compile`` to the end.
    """

    model: AutoEncoder3D
    history: pd.DataFrame
    best_epoch: int
    best_val_loss: float
    stopped_early: bool
    resumed_from: int | None = None
    micro_batch: int = 0
    oom_events: list = field(default_factory=list)
    placement: str = "cpu"
    data_wait_share: float = 0.0
    fast_path: dict = field(default_factory=dict)  # resolved precision / memory format / placement / storage
    compiled: bool = False  # the steps ran through torch.compile (False also after a fallback)


def build_model(settings: TrainSettings, input_shape, output: str = "sigmoid") -> AutoEncoder3D:
    """A freshly initialised network (seeded by ``settings.seed``).

    Parameters
    ----------
    settings : TrainSettings
        ``latent_dim``, ``channels``, ``norm``, ``stem``; ``seed`` reseeds torch's global RNG.
    input_shape : (X, Y, Z) tuple of int
        The network's box, each divisible by ``2**len(settings.channels)``.
    output : {"sigmoid", "linear"}, default "sigmoid"
        The final activation.

    Returns
    -------
    AutoEncoder3D
    """
    torch.manual_seed(int(settings.seed))
    return AutoEncoder3D(
        input_shape, settings.latent_dim, settings.channels, norm=settings.norm, output=output,
        stem=settings.stem,
    )


def _loss(recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """:func:`masked_mse` as this module holds it at each call (a test or driver may replace
    ``training.masked_mse``)."""
    return masked_mse(recon, target, mask)


def train_autoencoder(
    data: np.ndarray,
    mask: np.ndarray,
    train_idx: Sequence[int],
    val_idx: Sequence[int],
    settings: TrainSettings,
    device: torch.device | str = "cpu",
    scale: float = 1.0,
    checkpoint_dir: str | Path | None = None,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    extra_fingerprint: dict | None = None,
    *,
    precision: str | None = None,
    memory_format: str | None = None,
    placement: str | None = None,
    storage: str | None = None,
    compile: str = "auto",
    dist: Distributed = SINGLE,
) -> TrainResult:
    """Train one autoencoder on ``data[train_idx]``, early-stopping on ``data[val_idx]``.

    Parameters
    ----------
    data : ``(N, X, Y, Z)`` float32 (the memory-mapped cache), already on the network's box.
    mask : ``(X, Y, Z)`` brain mask on the same box (loss is computed inside it).
    train_idx, val_idx : rows of ``data``.
    settings : :class:`TrainSettings`.
    device : a resolved device (see :func:`latentbids.model.device.resolve_device`).
    scale : inputs are divided by this one constant (1 for probability maps).
    checkpoint_dir : where ``last.pt`` is written each epoch and resumed from when present and
        made by the same settings and data.
    on_epoch_end : called as ``on_epoch_end(epoch, row)`` after each epoch's checkpoint is written.
    extra_fingerprint : more facts (data cache key, fold) that must match for a resume.
    precision, memory_format, placement, storage : override the data path chosen from ``device``
        and ``settings.fast``/``settings.resident`` (see :func:`~latentbids.model.fast_path.resolve_fast_path`);
        ``None`` (default) keeps the automatic choice.  ``precision="bf16", memory_format="channels_last_3d",
        placement="resident"`` on CPU is the CPU twin of the CUDA fast path (tests, benchmarks).
    compile : ``auto`` (CUDA only), ``on`` or ``off``: the steps through ``torch.compile``, eager
        after a compilation failure (one log line; see :mod:`latentbids.model.acceleration`).
    dist : this process's place among data-parallel processes (:mod:`latentbids.model.distributed`);
        every process calls this with the same arguments.

    On CPU, denormal floats are flushed to zero in this thread and torch's intra-op threads for the whole training
    (:mod:`latentbids.utils.denormals`): near-zero weights, activations and Adam moments would otherwise be computed
    in microcode on Intel cores.

    Returns
    -------
    TrainResult
        Its model is a plain :class:`AutoEncoder3D` with the best epoch's weights, in eval mode.
    """
    device = torch.device(device)
    options = dict(precision=precision, memory_format=memory_format, placement=placement, storage=storage,
                   compile=compile, dist=dist)
    with flush_denormals(device.type == "cpu"):
        return _train(data, mask, train_idx, val_idx, settings, device, scale, checkpoint_dir, on_epoch_end,
                      extra_fingerprint, **options)


def _train(data, mask, train_idx, val_idx, settings, device, scale, checkpoint_dir, on_epoch_end,
           extra_fingerprint, *, precision, memory_format, placement, storage, compile, dist) -> TrainResult:
    """The body of :func:`train_autoencoder` (same arguments, ``device`` a :class:`torch.device`)."""
    from latentbids.model.distributed import check_batch

    device = torch.device(device)
    set_determinism(settings.deterministic, device)
    train_idx = np.asarray(train_idx, dtype=np.int64)
    val_idx = np.asarray(val_idx, dtype=np.int64)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ValueError("training needs at least one training and one validation volume")
    check_batch(settings.batch_size, dist)
    path = resolve_fast_path(
        device, settings.fast, settings.resident, precision, memory_format, placement, storage, stem=settings.stem
    )
    fingerprint = run_fingerprint(settings, scale, data, train_idx, val_idx, extra_fingerprint, path, dist)

    model = convert_batchnorm(build_model(settings, data.shape[1:]), dist, device).to(device)
    if path.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    gen = torch.Generator().manual_seed(int(settings.seed) + 1)
    mask_t = torch.as_tensor(np.asarray(mask, dtype=np.float32), device=device)[None, None]
    progress = Progress(best_state=cpu_state(model), micro=int(settings.batch_size))
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir else None
    resume(ckpt_path, fingerprint, model, optimizer, gen, device, dist, progress)

    train_src = BatchSource(data, train_idx, device, scale, path.resident, path.channels_last,
                            settings.gpu_memory_share, storage=path.storage)
    val_src = BatchSource(data, val_idx, device, scale, path.resident, path.channels_last,
                          settings.gpu_memory_share, storage=path.storage)
    n_mask = float(mask_t.sum())
    if n_mask == 0:
        raise ValueError("the loss mask is empty")
    steps = Steps(model, optimizer, train_src, val_src, mask_t, path, device, dist, progress,
                  compile_wanted(compile, device), loss=_loss)
    LOGGER.info(
        "Training on %s: %s, %s, data %s%s%s%s",
        device,
        path.precision,
        path.memory_format,
        train_src.placement,
        f" ({train_src.storage})" if train_src.store is not None else "",
        " (forced)" if path.forced else "",
        ", torch.compile" if steps.forward.active else "",
    )
    run_epochs(steps, progress, settings, gen, fingerprint, ckpt_path, on_epoch_end)
    return _result(steps, progress, settings)


def _result(steps: Steps, progress: Progress, settings: TrainSettings) -> TrainResult:
    """The final selection: a plain network with the best epoch's weights, in eval mode, and the run's facts."""
    model, device = steps.model, steps.device
    if any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules()):
        with torch.random.fork_rng(devices=[]):  # a plain network for encoding and saving
            model = AutoEncoder3D.from_architecture(model.architecture()).to(device)
    model.load_state_dict(progress.best_state)
    model.eval()
    hist = pd.DataFrame(progress.history)
    share = (
        float(hist["data_wait_s"].sum() / max(hist["seconds"].sum(), 1e-9)) if len(hist) else 0.0
    )
    stopped = (
        bool(len(hist))
        and progress.bad_epochs >= settings.patience
        and int(hist["epoch"].iloc[-1]) < settings.max_epochs
    )
    train_src = steps.train_src
    return TrainResult(
        model=model,
        history=hist,
        best_epoch=progress.best_epoch,
        best_val_loss=progress.best_val,
        stopped_early=stopped,
        resumed_from=progress.resumed_from,
        micro_batch=progress.micro,
        oom_events=list(progress.oom_events),
        placement=train_src.placement,
        data_wait_share=share,
        fast_path={**steps.path.as_dict(), "placement": train_src.placement, "storage": train_src.storage},
        compiled=steps.forward.active,
    )
