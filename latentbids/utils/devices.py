"""The ``--device`` value: one parser of the text, one resolution to what this host has.

``auto``, ``cpu``, ``cuda`` and ``cuda:N`` are the only spellings (as in NiPreps and torch).  The
parser is pure (the CLI and the config validate with it without importing torch); the resolution
asks torch what is present and never falls back silently: ``cuda`` without a GPU is a usage error.
Both levels take the resolved device from :func:`resolve_device` (HD-BET at participant level, the
autoencoder at group level and with ``--model``).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from latentbids.errors import UsageError

LOGGER = logging.getLogger("latentbids")

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N (e.g. cuda:0)"
_PATTERN = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed ``--device`` value: ``kind`` auto, cpu or cuda, and the GPU ``index`` (cuda:N only)."""

    kind: str
    index: int | None = None

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"


def parse_device(spec: str | None) -> DeviceSpec:
    """Parse a ``--device`` value (case and surrounding spaces ignored; empty or ``None`` = ``auto``).

    Parameters
    ----------
    spec : str or None
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Returns
    -------
    DeviceSpec
        The kind and, for ``cuda:N``, the index ``N``.

    Raises
    ------
    UsageError
        Any other text (exit 64), naming the value and the allowed ones.
    """
    text = (str(spec) if spec is not None else "").strip().lower() or "auto"
    match = _PATTERN.match(text)
    if not match or (match.group(2) is not None and match.group(1) != "cuda"):
        raise UsageError(f"--device '{spec}' is not valid: use {DEVICE_CHOICES}")
    index = match.group(2)
    return DeviceSpec(match.group(1), int(index) if index is not None else None)


def resolve_device(spec: str | None = "auto") -> DeviceSpec:
    """What ``spec`` means on this host: ``cpu``, or ``cuda:N`` with a GPU that is there.

    ``auto`` is the current CUDA device when torch sees one, else the CPU (logged).  ``cuda`` or
    ``cuda:N`` where CUDA (or GPU ``N``) is absent raises a one-line :class:`UsageError` saying how to
    get one, instead of running on the CPU unasked.

    Parameters
    ----------
    spec : str or None
        A ``--device`` value (see :func:`parse_device`).

    Returns
    -------
    DeviceSpec
        ``cpu``, or ``cuda`` with its index.
    """
    import torch

    wanted = parse_device(spec)
    if wanted.kind == "cpu" or (wanted.kind == "auto" and not torch.cuda.is_available()):
        return DeviceSpec("cpu")
    if wanted.kind == "auto":
        return DeviceSpec("cuda", torch.cuda.current_device())
    if not torch.cuda.is_available():
        raise UsageError(
            f"--device {wanted} was asked for but CUDA is not available here (torch {torch.__version__}, "
            f"{'CPU-only build' if torch.version.cuda is None else 'no visible GPU'}): "
            f"use --device cpu or auto, or run with a GPU (docker --gpus all, apptainer --nv)"
        )
    count = torch.cuda.device_count()
    if wanted.index is not None and wanted.index >= count:
        raise UsageError(
            f"--device {wanted} was asked for but only {count} CUDA device(s) are visible "
            f"(cuda:0..cuda:{count - 1}): pick one of those"
        )
    return DeviceSpec("cuda", wanted.index if wanted.index is not None else torch.cuda.current_device())


def describe_device(device: DeviceSpec | str) -> str:
    """A short description for logs and provenance: the GPU's name and memory, or the CPU threads."""
    import torch

    device = parse_device(str(device))
    if device.is_cuda:
        props = torch.cuda.get_device_properties(device.index if device.index is not None else 0)
        return f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
    return f"CPU, {torch.get_num_threads()} torch threads"


def torchrun_world() -> tuple[int, int, int, int]:
    """``(WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE)`` of this process (1, 0, 0, 1 without torchrun)."""
    import os

    env = os.environ
    world = int(env.get("WORLD_SIZE", "1") or 1)
    return world, int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0")), int(env.get("LOCAL_WORLD_SIZE", world))


def process_device(spec: str | None = "auto") -> DeviceSpec:
    """The device of this process: :func:`resolve_device`, or under ``torchrun`` (``WORLD_SIZE`` > 1)
    GPU ``LOCAL_RANK`` when ``spec`` asks for CUDA (``auto`` where CUDA is present), else the CPU.

    The one place a group run's device is decided (``settings.resolve_run``); the training's process
    group (:func:`latentbids.model.distributed.setup`) only reads it.

    Parameters
    ----------
    spec : str or None
        A ``--device`` value (see :func:`parse_device`).

    Returns
    -------
    DeviceSpec
        ``cpu`` or ``cuda:N``.

    Raises
    ------
    UsageError
        What :func:`resolve_device` raises; under torchrun also ``cuda:N`` (one GPU pinned for every
        process) and more processes on this node than visible GPUs.
    """
    import torch

    world, _, local_rank, local_world = torchrun_world()
    if world <= 1:
        return resolve_device(spec)
    wanted = parse_device(spec)
    if wanted.index is not None:
        raise UsageError(f"--device {wanted} pins one GPU, but torchrun started {world} processes: use --device "
                         "cuda (each process takes the GPU of its LOCAL_RANK) and CUDA_VISIBLE_DEVICES to choose GPUs")
    if wanted.kind == "cpu" or (wanted.kind == "auto" and not torch.cuda.is_available()):
        return DeviceSpec("cpu")
    resolve_device("cuda")  # one line when CUDA is absent
    count = torch.cuda.device_count()
    if local_world > count:
        raise UsageError(f"torchrun started {local_world} processes on this node but only {count} GPU(s) are "
                         f"visible: use torchrun --nproc-per-node {count} (one process per GPU), or --device cpu")
    return DeviceSpec("cuda", local_rank)
