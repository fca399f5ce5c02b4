"""Training loop: Adam, masked MSE, early stopping, a checkpoint each epoch, resume, OOM fallback.

Data path (no NIfTI decoding here: the caller passes the cached ``(N, X, Y, Z)`` array):

* CPU: fp32; each batch is gathered from the memory-mapped cache by a prefetch thread while the
  previous step computes.
* CUDA: the training and validation volumes live on the GPU when they fit (``resident``), else each
  batch is gathered into pinned host memory by the prefetch thread and copied asynchronously;
  bf16 autocast and ``channels_last_3d`` (the ``fast`` path; ``fast=False`` is the fp32 baseline).
* A CUDA out-of-memory error during a step is caught: the step is redone with the batch cut in
  micro-batches of half the size (gradients accumulated, so the optimiser step sees the same batch;
  batch-norm statistics are then per micro-batch, so the step is close to, not identical with, the
  full-batch one) and the event is logged and returned in :class:`TrainResult`.

Checkpoints (``<checkpoint_dir>/last.pt``, written atomically each epoch) hold the model, optimizer,
early-stopping state, history and every RNG state, so an interrupted run resumed from its last
checkpoint reaches the same result as an uninterrupted one (bit-identical on CPU with
``deterministic=True``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from latentbids.errors import LatentbidsError
from latentbids.model.device import set_determinism
from latentbids.model.network import AutoEncoder3D, masked_mse
from latentbids.utils.atomic import atomic_path

LOGGER = logging.getLogger("latentbids.model")
CHECKPOINT = "last.pt"


@dataclass
class TrainSettings:
    """Everything that shapes a training run (recorded in the model folder)."""

    latent_dim: int = 32
    channels: Sequence[int] = (16, 32, 64, 128)
    norm: str = "batch"
    learning_rate: float = 1e-4
    batch_size: int = 8
    max_epochs: int = 200
    patience: int = 20
    min_delta: float = 0.0
    seed: int = 42
    deterministic: bool = False
    fast: bool = True  # bf16 autocast + channels_last_3d on CUDA (ignored on CPU)
    resident: bool = True  # keep the training set on the GPU when it fits
    gpu_memory_share: float = 0.5  # at most this share of free GPU memory for resident data

    def fingerprint(self) -> dict:
        data = dataclasses.asdict(self)
        data["channels"] = [int(c) for c in self.channels]
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


def _autocast(device: torch.device, fast: bool):
    if device.type == "cuda" and fast:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def _is_oom(exc: BaseException) -> bool:
    """A CUDA out-of-memory error (``torch.OutOfMemoryError`` or its older RuntimeError form)."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(exc, oom) or (
        isinstance(exc, RuntimeError) and "CUDA out of memory" in str(exc)
    )


class BatchSource:
    """Serve scaled ``(B, 1, X, Y, Z)`` float32 batches of ``data[indices[pos]]`` on ``device``."""

    def __init__(
        self,
        data: np.ndarray,
        indices: Sequence[int],
        device: torch.device,
        scale: float,
        resident: bool = True,
        channels_last: bool = False,
        memory_share: float = 0.5,
    ):
        self.data = data
        self.indices = np.asarray(indices, dtype=np.int64)
        self.device = device
        self.inv_scale = float(1.0 / scale)
        self.channels_last = channels_last
        self.store = None
        self.placement = "cpu" if device.type == "cpu" else "pinned"
        if device.type == "cuda" and resident and len(self.indices):
            need = len(self.indices) * int(np.prod(data.shape[1:])) * 4
            free, _ = torch.cuda.mem_get_info(device)
            if need <= memory_share * free:
                try:
                    self.store = torch.empty(
                        (len(self.indices),) + tuple(data.shape[1:]),
                        dtype=torch.float32,
                        device=device,
                    )
                    for lo in range(0, len(self.indices), 32):
                        part = np.ascontiguousarray(data[self.indices[lo : lo + 32]])
                        self.store[lo : lo + 32].copy_(torch.from_numpy(part))
                    self.placement = "gpu"
                except Exception as exc:  # pragma: no cover - needs a GPU
                    if not _is_oom(exc):
                        raise
                    self.store = None
                    torch.cuda.empty_cache()
                    LOGGER.warning(
                        "Training set did not fit on the GPU: using pinned-memory batches"
                    )
            else:
                LOGGER.info(
                    "Training set (%.1f GiB) exceeds %.0f%% of free GPU memory: pinned batches",
                    need / 2**30,
                    memory_share * 100,
                )

    def __len__(self) -> int:
        return len(self.indices)

    def _host(self, positions: np.ndarray) -> torch.Tensor:
        rows = self.indices[np.sort(positions)]  # same order as the resident path
        arr = self.data[rows]
        tensor = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        if self.device.type == "cuda":
            tensor = tensor.pin_memory()
        return tensor

    def _finish(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.device != self.device:
            tensor = tensor.to(self.device, non_blocking=True)
        tensor = tensor.unsqueeze(1).mul_(self.inv_scale)  # always a fresh tensor here
        if self.channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last_3d)
        return tensor

    def batches(self, order: np.ndarray, batch_size: int, wait: list | None = None):
        """Yield batches in ``order`` (positions into ``indices``); ``wait[0]`` accumulates seconds
        spent blocked on data."""
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if self.store is not None:
            for chunk in chunks:
                t0 = time.perf_counter()
                pos = torch.as_tensor(np.sort(chunk), device=self.device)
                x = self._finish(self.store.index_select(0, pos))
                if wait is not None:
                    wait[0] += time.perf_counter() - t0
                yield x
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(self._host, chunks[0]) if chunks else None
            for i in range(len(chunks)):
                t0 = time.perf_counter()
                host = future.result()
                if i + 1 < len(chunks):
                    future = pool.submit(self._host, chunks[i + 1])
                x = self._finish(host)
                if wait is not None:
                    wait[0] += time.perf_counter() - t0
                yield x


def _rng_state(gen: torch.Generator, device: torch.device) -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "shuffle": gen.get_state(),
        "numpy": np.random.get_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, gen: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["shuffle"])
    np.random.set_state(state["numpy"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def _cpu_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def build_model(settings: TrainSettings, input_shape, output: str = "sigmoid") -> AutoEncoder3D:
    """A freshly initialised network (seeded by ``settings.seed``)."""
    torch.manual_seed(int(settings.seed))
    return AutoEncoder3D(
        input_shape, settings.latent_dim, settings.channels, norm=settings.norm, output=output
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
    """
    device = torch.device(device)
    set_determinism(settings.deterministic, device)
    train_idx = np.asarray(train_idx, dtype=np.int64)
    val_idx = np.asarray(val_idx, dtype=np.int64)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ValueError("training needs at least one training and one validation volume")
    channels_last = device.type == "cuda" and settings.fast
    fingerprint = {
        "settings": settings.fingerprint(),
        "scale": float(scale),
        "shape": list(data.shape[1:]),
        "train": train_idx.tolist(),
        "val": val_idx.tolist(),
        **(extra_fingerprint or {}),
    }

    model = build_model(settings, data.shape[1:]).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    gen = torch.Generator().manual_seed(int(settings.seed) + 1)
    mask_t = torch.as_tensor(np.asarray(mask, dtype=np.float32), device=device)[None, None]

    history: list[dict] = []
    best_val, best_epoch, bad_epochs, start_epoch = float("inf"), 0, 0, 1
    best_state = _cpu_state(model)
    micro = int(settings.batch_size)
    oom_events: list = []
    resumed_from = None
    done = False

    ckpt_path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir else None
    if ckpt_path is not None and ckpt_path.is_file():
        try:
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        except Exception as exc:
            LOGGER.warning(
                "Checkpoint %s is unreadable (%s): training from scratch", ckpt_path, exc
            )
            ckpt = None
        if ckpt is not None and ckpt.get("fingerprint") == fingerprint:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            _set_rng_state(ckpt["rng"], gen, device)
            best_state, best_val = ckpt["best_state"], ckpt["best_val"]
            best_epoch, bad_epochs = ckpt["best_epoch"], ckpt["bad_epochs"]
            history, micro, oom_events = ckpt["history"], ckpt["micro"], ckpt["oom_events"]
            done = ckpt["done"]
            start_epoch = resumed_from = int(ckpt["epoch"]) + 1
            LOGGER.info("Resuming training from %s (epoch %d done)", ckpt_path, ckpt["epoch"])
        elif ckpt is not None:
            LOGGER.warning(
                "Checkpoint %s was made by other settings or data: training from scratch", ckpt_path
            )

    train_src = BatchSource(
        data, train_idx, device, scale, settings.resident, channels_last, settings.gpu_memory_share
    )
    val_src = BatchSource(
        data, val_idx, device, scale, settings.resident, channels_last, settings.gpu_memory_share
    )
    n_mask = float(mask_t.sum())
    if n_mask == 0:
        raise ValueError("the loss mask is empty")

    def step(x: torch.Tensor) -> torch.Tensor:
        nonlocal micro
        while True:
            try:
                optimizer.zero_grad(set_to_none=True)
                total = torch.zeros((), device=device)
                for chunk in x.split(micro):
                    with _autocast(device, settings.fast):
                        recon, _ = model(chunk)
                    loss = masked_mse(recon, chunk, mask_t).sum() / x.shape[0]
                    loss.backward()
                    total += loss.detach()
                optimizer.step()
                return total
            except Exception as exc:
                if not _is_oom(exc):
                    raise
                optimizer.zero_grad(set_to_none=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                if micro <= 1:
                    raise LatentbidsError(
                        "Out of memory even with one volume per step: use a smaller grid, fewer "
                        "channels, or --device cpu"
                    ) from None
                micro = max(1, micro // 2)
                event = f"epoch {epoch}: out of memory on {device}, retrying with micro-batches of {micro}"
                oom_events.append(event)
                LOGGER.warning(event)

    def validate() -> float:
        model.eval()
        total = torch.zeros((), device=device)
        with torch.no_grad():
            for x in val_src.batches(np.arange(len(val_src)), micro):
                with _autocast(device, settings.fast):
                    recon, _ = model(x)
                total += masked_mse(recon, x, mask_t).sum()
        model.train()
        return float(total) / len(val_src)

    epoch = start_epoch
    model.train()
    while not done and epoch <= settings.max_epochs:
        t0 = time.perf_counter()
        wait = [0.0]
        order = torch.randperm(len(train_src), generator=gen).numpy()
        total = torch.zeros((), device=device)
        for x in train_src.batches(order, settings.batch_size, wait):
            total += step(x) * x.shape[0]
        train_loss = float(total) / len(train_src)
        val_loss = validate()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        improved = val_loss < best_val - settings.min_delta
        if improved:
            best_val, best_epoch, bad_epochs = val_loss, epoch, 0
            best_state = _cpu_state(model)
        else:
            bad_epochs += 1
        done = bad_epochs >= settings.patience or epoch >= settings.max_epochs
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "best": improved,
            "seconds": round(seconds, 4),
            "data_wait_s": round(wait[0], 4),
            "micro_batch": micro,
            "volumes_per_s": round(len(train_src) / max(seconds, 1e-9), 3),
        }
        history.append(row)
        LOGGER.info(
            "epoch %d: train %.6f val %.6f%s (%.1fs)",
            epoch,
            train_loss,
            val_loss,
            " *" if improved else "",
            seconds,
        )
        if ckpt_path is not None:
            ckpt = {
                "fingerprint": fingerprint,
                "epoch": epoch,
                "model": _cpu_state(model),
                "optimizer": optimizer.state_dict(),
                "rng": _rng_state(gen, device),
                "best_state": best_state,
                "best_val": best_val,
                "best_epoch": best_epoch,
                "bad_epochs": bad_epochs,
                "history": history,
                "micro": micro,
                "oom_events": oom_events,
                "done": done,
            }
            ckpt_path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(ckpt_path) as tmp:
                torch.save(ckpt, tmp)
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
        epoch += 1

    model.load_state_dict(best_state)
    model.eval()
    hist = pd.DataFrame(history)
    share = (
        float(hist["data_wait_s"].sum() / max(hist["seconds"].sum(), 1e-9)) if len(hist) else 0.0
    )
    stopped = (
        bool(len(hist))
        and bad_epochs >= settings.patience
        and int(hist["epoch"].iloc[-1]) < settings.max_epochs
    )
    return TrainResult(
        model=model,
        history=hist,
        best_epoch=best_epoch,
        best_val_loss=best_val,
        stopped_early=stopped,
        resumed_from=resumed_from,
        micro_batch=micro,
        oom_events=list(oom_events),
        placement=train_src.placement,
        data_wait_share=share,
    )
