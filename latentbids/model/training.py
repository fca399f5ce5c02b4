"""Training loop: Adam, masked MSE, early stopping, a checkpoint each epoch, resume, OOM fallback.

Data path (no NIfTI decoding here: the caller passes the cached ``(N, X, Y, Z)`` array):

* CPU (default): fp32, contiguous; each batch is gathered from the memory-mapped cache by a prefetch
  thread while the previous step computes.
* CUDA: the training and validation volumes live on the GPU when they fit (``resident``; stored in
  fp16 under bf16 autocast, so twice the cohort fits), else each batch is gathered into pinned host
  memory by the prefetch thread and copied asynchronously; bf16 autocast (fp32 on a card without
  native bf16) and ``channels_last_3d`` (the ``fast`` path; ``fast=False`` is the fp32 baseline).
  See :func:`resolve_fast_path` and :mod:`latentbids.model.batches`.
* ``compile`` (``[model] compile``; ``auto`` = CUDA only): the forward pass goes through
  ``torch.compile``; a compilation failure logs one line and the step is redone eagerly
  (:mod:`latentbids.model.acceleration`).
* Several processes (``torchrun``, :mod:`latentbids.model.distributed`): DistributedDataParallel over
  shards of every global batch; the processes together take the step one process would.
* CPU twin of the fast path (tests, benchmarks; never a default): ``precision="bf16"``,
  ``memory_format="channels_last_3d"`` and ``placement="resident"`` passed to
  :func:`train_autoencoder` / :func:`latentbids.model.encoding.iter_encode` force those choices on
  any device, so every device-agnostic piece of the CUDA path (autocast, memory format, the resident
  store and its per-epoch index upload, the OOM fallback) runs on CPU.
* An out-of-memory error during a step is caught: the step is redone with the batch cut in
  micro-batches of half the size (gradients accumulated, so the optimiser step sees the same batch;
  batch-norm statistics are then per micro-batch, so the step is close to, not identical with, the
  full-batch one; the running statistics of the failed attempt's finished micro-batches are not
  rolled back) and the event is logged and returned in :class:`TrainResult`.  At one volume per step
  a resident training set is moved off the GPU before giving up with a one-line
  :class:`~latentbids.errors.LatentbidsError`.  Recovery runs outside the ``except`` block, so the
  failed attempt's activations (held by the traceback) are released before ``empty_cache``.  An
  out-of-memory error inside ``optimizer.step()`` is not retried (Adam may have updated part of its
  state): it is reported as such; nor is one under several processes (see
  :mod:`latentbids.model.distributed`).

Checkpoints (``<checkpoint_dir>/last.pt``, written atomically each epoch) hold the model, optimizer,
early-stopping state, history and every RNG state (on CUDA: the training device's generator only),
so an interrupted run resumed from its last checkpoint reaches the same result as an uninterrupted
one (bit-identical on CPU with ``deterministic=True``).  They are read back with
``weights_only=True`` (:func:`load_checkpoint`): a file in a shared work dir cannot run code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from latentbids.errors import LatentbidsError
from latentbids.model.acceleration import CompiledOrEager, compile_wanted
from latentbids.model.batches import STORAGES, BatchSource
from latentbids.model.device import set_determinism
from latentbids.model.distributed import SINGLE, Distributed, convert_batchnorm, local_positions
from latentbids.model.memory import is_oom as _is_oom
from latentbids.model.memory import release_cuda_memory as _release_cuda_memory
from latentbids.model.network import AutoEncoder3D, masked_mse
from latentbids.utils.atomic import atomic_path
from latentbids.utils.denormals import flush_denormals

LOGGER = logging.getLogger("latentbids.model")
CHECKPOINT = "last.pt"


@dataclass
class TrainSettings:
    """Everything that shapes a training run (recorded in the model folder)."""

    latent_dim: int = 32
    channels: Sequence[int] = (16, 32, 64, 128)
    norm: str = "batch"
    stem: str = "conv"  # network ends: "conv" | "space_to_depth" (latentbids.model.network)
    learning_rate: float = 1e-4
    batch_size: int = 8
    max_epochs: int = 200
    patience: int = 20
    min_delta: float = 0.0
    seed: int = 42
    deterministic: bool = False
    fast: bool = True  # bf16 autocast + channels_last_3d on CUDA (CPU: see train_autoencoder)
    resident: bool = True  # keep the training set on the GPU when it fits (CUDA only by default)
    gpu_memory_share: float = 0.5  # at most this share of free GPU memory for resident data

    def fingerprint(self) -> dict:
        data = dataclasses.asdict(self)
        data["channels"] = [int(c) for c in self.channels]
        if data["stem"] == "conv":
            # the network of latentbids <= 0.1: its work dirs' checkpoints keep resuming
            del data["stem"]
        return data


@dataclass
class TrainResult:
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


PRECISIONS = ("fp32", "bf16")
MEMORY_FORMATS = ("contiguous", "channels_last_3d")
PLACEMENTS = ("resident", "streamed")


@dataclass(frozen=True)
class FastPath:
    """The resolved data path of one training or encoding run (see :func:`resolve_fast_path`)."""

    precision: str = "fp32"  # "fp32" | "bf16" (autocast)
    memory_format: str = "contiguous"  # "contiguous" | "channels_last_3d" (model and inputs)
    placement: str = "streamed"  # "resident" (whole set on the device when it fits) | "streamed"
    forced: bool = False  # an explicit override was given (logged)
    storage: str = "fp32"  # a resident set's type: "fp16" under bf16 autocast, else "fp32"

    @property
    def channels_last(self) -> bool:
        return self.memory_format == "channels_last_3d"

    @property
    def resident(self) -> bool:
        return self.placement == "resident"

    def autocast(self, device: torch.device, cache_enabled: bool = True):
        return _autocast(device, self.precision, cache_enabled)

    def as_dict(self) -> dict:
        return {
            "precision": self.precision,
            "memory_format": self.memory_format,
            "placement": self.placement,
            "storage": self.storage,
        }


def _native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 natively (CUDA compute capability >= 8.0)."""
    try:
        with torch.cuda.device(device):
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # pragma: no cover - torch without the keyword
        return bool(torch.cuda.is_bf16_supported())


def _choice(value, allowed, name):
    if value is None or value == "auto":
        return None
    value = str(value).lower().replace("-", "_")
    if name == "precision" and value in ("fp16", "float16", "half"):
        raise ValueError(
            "precision fp16 is not supported (it needs loss scaling): use bf16 or fp32"
        )
    value = {"bfloat16": "bf16", "float32": "fp32", "channels_last": "channels_last_3d"}.get(
        value, value
    )
    if value not in allowed:
        raise ValueError(f"{name} {value!r} is not one of auto, {', '.join(allowed)}")
    return value


def resolve_fast_path(
    device: torch.device | str,
    fast: bool = True,
    resident: bool = True,
    precision: str | None = None,
    memory_format: str | None = None,
    placement: str | None = None,
    storage: str | None = None,
) -> FastPath:
    """Resolve precision, memory format, data placement and resident storage for ``device``.

    Defaults (``None`` or ``"auto"``): on CUDA with ``fast``, bf16 autocast (fp32 on a card without
    native bf16, e.g. V100/T4, logged) and ``channels_last_3d``; fp32 and contiguous otherwise (CPU
    always).  Placement is ``resident`` on CUDA when ``resident`` is true (the set still falls back
    to pinned batches when it does not fit), ``streamed`` otherwise.  A resident set is stored in
    fp16 under bf16 (the network reads 8 significant bits of it, fp16 keeps 11), in fp32 otherwise.

    An explicit ``precision`` (``fp32``/``bf16``), ``memory_format``
    (``contiguous``/``channels_last_3d``) or ``placement`` (``resident``/``streamed``) is obeyed on
    any device: on CPU this is the *CPU twin* of the CUDA fast path, for tests and benchmarks
    (CPU bf16 autocast is slow without AMX/AVX512-BF16; not a production setting).
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    p = _choice(precision, PRECISIONS, "precision")
    m = _choice(memory_format, MEMORY_FORMATS, "memory_format")
    pl = _choice(placement, PLACEMENTS, "placement")
    st = _choice(storage, STORAGES, "storage")
    forced = any(v is not None for v in (p, m, pl, st))
    if p is None:
        p = "bf16" if cuda and fast else "fp32"
        if p == "bf16" and not _native_bf16(device):
            LOGGER.info("%s has no native bf16 (compute capability < 8): fast path in fp32", device)
            p = "fp32"
    if m is None:
        m = "channels_last_3d" if cuda and fast else "contiguous"
    if pl is None:
        pl = "resident" if cuda and resident else "streamed"
    if st is None:
        st = "fp16" if p == "bf16" else "fp32"
    return FastPath(p, m, pl, forced, st)


def _autocast(device: torch.device, precision: str | bool, cache_enabled: bool = True):
    """The autocast context for ``precision`` (``"bf16"`` on any device type, ``"fp32"``: off).

    A boolean is the older ``fast`` flag: ``True`` means bf16 on CUDA only.  ``cache_enabled=False``
    inside a CUDA graph capture (autocast's weight-cast cache must not outlive it).
    """
    device = torch.device(device)
    if isinstance(precision, bool):
        precision = "bf16" if (precision and device.type == "cuda") else "fp32"
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache_enabled)
    return torch.autocast(device.type, enabled=False)


def _rng_state(gen: torch.Generator, device: torch.device) -> dict:
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


def _set_rng_state(state: dict, gen: torch.Generator, device: torch.device) -> None:
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


def _checkpoint_globals() -> list:
    """What a checkpoint may hold besides tensors and plain containers: numpy's RNG state
    (``np.random.get_state()``: a tuple with a uint32 array), nothing that can run code."""
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return [np.ndarray, np.dtype, type(np.dtype(np.uint32)), _reconstruct]


def load_checkpoint(path: str | Path) -> dict | None:
    """Load a training checkpoint without running code from it, or ``None`` (logged, one line).

    A work dir may be shared (a cluster's scratch): whoever can write it must not get to run code
    as the next user who resumes there, so the file is unpickled with ``weights_only=True`` and
    only the numpy RNG-state types of :func:`_checkpoint_globals` allowed.  A file that asks for
    anything else is refused (and named with what it asked for); a damaged one is ignored.  Either
    way the fold trains from scratch and the next epoch's checkpoint replaces the file.
    """
    import pickle

    try:
        with torch.serialization.safe_globals(_checkpoint_globals()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        try:
            asked = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001 - naming what it asked for is a courtesy
            asked = []
        allowed = {f"{g.__module__}.{g.__qualname__}" for g in _checkpoint_globals()}
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


def _cpu_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def build_model(settings: TrainSettings, input_shape, output: str = "sigmoid") -> AutoEncoder3D:
    """A freshly initialised network (seeded by ``settings.seed``)."""
    torch.manual_seed(int(settings.seed))
    return AutoEncoder3D(
        input_shape, settings.latent_dim, settings.channels, norm=settings.norm, output=output,
        stem=settings.stem,
    )


def _oom_message(device: torch.device, where: str) -> str:
    """The one-line error when even one volume per step does not fit."""
    fix = "use --device cpu or " if device.type == "cuda" else "free memory or use "
    return (
        f"Out of memory on {device} {where} with one volume per step and the data in host memory "
        f"(the batch was already cut automatically, so a lower --batch-size will not help): "
        f"{fix}a coarser grid (e.g. --output-spaces SPACE:res-2)"
    )


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
        and ``settings.fast``/``settings.resident`` (see :func:`resolve_fast_path`); ``None``
        (default) keeps the automatic choice.  ``precision="bf16", memory_format="channels_last_3d",
        placement="resident"`` on CPU is the CPU twin of the CUDA fast path (tests, benchmarks).
    compile : ``auto`` (CUDA only), ``on`` or ``off``: the steps through ``torch.compile``, eager
        after a compilation failure (one log line; see :mod:`latentbids.model.acceleration`).
    dist : this process's place among data-parallel processes (:mod:`latentbids.model.distributed`);
        every process calls this with the same arguments.

    On CPU, denormal floats are flushed to zero in this thread and torch's intra-op threads for the
    whole training (:mod:`latentbids.utils.denormals`): near-zero weights, activations and Adam
    moments would otherwise be computed in microcode on Intel cores.

    The returned model is a plain :class:`AutoEncoder3D` with the best epoch's weights, in eval mode.
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
        device, settings.fast, settings.resident, precision, memory_format, placement, storage
    )
    fingerprint = _fingerprint(settings, scale, data, train_idx, val_idx, extra_fingerprint, path, dist)

    model = convert_batchnorm(build_model(settings, data.shape[1:]), dist, device).to(device)
    if path.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    gen = torch.Generator().manual_seed(int(settings.seed) + 1)
    mask_t = torch.as_tensor(np.asarray(mask, dtype=np.float32), device=device)[None, None]
    progress = _Progress(best_state=_cpu_state(model), micro=int(settings.batch_size))
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir else None
    _resume(ckpt_path, fingerprint, model, optimizer, gen, device, dist, progress)

    train_src = BatchSource(data, train_idx, device, scale, path.resident, path.channels_last,
                            settings.gpu_memory_share, storage=path.storage)
    val_src = BatchSource(data, val_idx, device, scale, path.resident, path.channels_last,
                          settings.gpu_memory_share, storage=path.storage)
    n_mask = float(mask_t.sum())
    if n_mask == 0:
        raise ValueError("the loss mask is empty")
    steps = _Steps(model, optimizer, train_src, val_src, mask_t, path, device, dist, progress,
                   compile_wanted(compile, device))
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
    _run_epochs(steps, progress, settings, gen, fingerprint, ckpt_path, on_epoch_end)
    return _result(steps, progress, settings)


def _fingerprint(settings, scale, data, train_idx, val_idx, extra_fingerprint, path: FastPath,
                 dist: Distributed) -> dict:
    """What a checkpoint must have been made by to be resumed: settings, data, numerics, processes."""
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
class _Progress:
    """A training run's state between epochs (early stopping, history, micro-batch, OOM events):
    what a checkpoint holds besides the model, optimiser and RNG states."""

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
            self.best_state = _cpu_state(model)
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
            "model": _cpu_state(model),
            "optimizer": optimizer.state_dict(),
            "rng": _rng_state(gen, device),
            "best_state": self.best_state,
            "best_val": self.best_val,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "micro": self.micro,
            "oom_events": self.oom_events,
            "done": self.done,
        }


def _resume(ckpt_path: Path | None, fingerprint: dict, model, optimizer, gen: torch.Generator,
            device: torch.device, dist: Distributed, progress: _Progress) -> None:
    """Restore model, optimiser, RNG states and ``progress`` from the last checkpoint when there is
    one made by the same settings and data (process 0 reads it, every process resumes from it)."""
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
    _set_rng_state(ckpt["rng"], gen, device)
    progress.best_state, progress.best_val = ckpt["best_state"], ckpt["best_val"]
    progress.best_epoch, progress.bad_epochs = ckpt["best_epoch"], ckpt["bad_epochs"]
    progress.history, progress.micro, progress.oom_events = ckpt["history"], ckpt["micro"], ckpt["oom_events"]
    progress.done = ckpt["done"]
    progress.start_epoch = progress.resumed_from = int(ckpt["epoch"]) + 1
    LOGGER.info("Resuming training from %s (epoch %d done)", ckpt_path, ckpt["epoch"])


class _Steps:
    """The training steps and validation passes of one run, with the out-of-memory ladder
    (micro-batches, then data off the device, then a one-line error) and the eager fallback of
    ``torch.compile``.  ``epoch`` is the current epoch (named in the OOM events)."""

    def __init__(self, model, optimizer, train_src: BatchSource, val_src: BatchSource, mask_t: torch.Tensor,
                 path: FastPath, device: torch.device, dist: Distributed, progress: _Progress, wanted: bool):
        self.model, self.optimizer = model, optimizer
        self.train_src, self.val_src, self.mask_t = train_src, val_src, mask_t
        self.path, self.device, self.dist, self.progress = path, device, dist, progress
        self.trained = dist.prepare(model, device)  # DDP wrapper, or the model itself
        self.forward = CompiledOrEager(self.trained, wanted, "training")
        self.val_forward = CompiledOrEager(model, wanted, "validation")
        self.epoch = progress.start_epoch

    def recover(self, where: str) -> None:
        """After an out-of-memory error (outside its ``except`` block, so the failed attempt's
        tensors are unreferenced): free memory, then halve the micro-batch, else move the data off
        the device, else give up with a one-line error."""
        device, progress = self.device, self.progress
        _release_cuda_memory(device)
        if progress.micro > 1:
            progress.micro = max(1, progress.micro // 2)
            event = (
                f"epoch {self.epoch}: out of memory on {device} ({where}), "
                f"retrying with micro-batches of {progress.micro}"
            )
        elif self.train_src.release() | self.val_src.release():  # both, no short-circuit
            _release_cuda_memory(device)
            event = (
                f"epoch {self.epoch}: out of memory on {device} ({where}) at one volume per step, "
                f"retrying with the data streamed from host memory ({self.train_src.placement})"
            )
        else:
            raise LatentbidsError(_oom_message(device, f"during {where}"))
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
                summed = masked_mse(recon, chunk, self.mask_t).sum()
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
                    raise LatentbidsError(_ddp_oom_message(device, self.dist)) from None
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
                total += masked_mse(recon, x, self.mask_t).sum()
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


def _run_epochs(steps: _Steps, progress: _Progress, settings: TrainSettings, gen: torch.Generator,
                fingerprint: dict, ckpt_path: Path | None, on_epoch_end) -> None:
    """Train epoch after epoch until early stopping or ``max_epochs``, writing the checkpoint
    (process 0) and calling ``on_epoch_end`` after each."""
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
            ckpt_path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(ckpt_path) as tmp:
                torch.save(ckpt, tmp)
            del ckpt
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
        epoch += 1


def _result(steps: _Steps, progress: _Progress, settings: TrainSettings) -> TrainResult:
    """The final selection: a plain network with the best epoch's weights, in eval mode, and the
    run's facts."""
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


def _ddp_oom_message(device: torch.device, dist: Distributed) -> str:
    """The one-line error for an out-of-memory error under several processes."""
    return (
        f"Out of memory on {device} in a training step of {dist.describe()}: under torchrun the batch "
        f"cannot be cut on one process alone; use a smaller --batch-size (the global batch, split "
        f"between the {dist.world_size} processes), more processes, or a coarser grid"
    )
