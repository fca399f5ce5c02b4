"""Resolve ``--device auto|cpu|cuda|cuda:N`` to a :class:`torch.device`, and set determinism."""

from __future__ import annotations

import logging
import os
import re

from latentbids.errors import UsageError

LOGGER = logging.getLogger("latentbids.model")

_PATTERN = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


def resolve_device(spec: str | None = "auto"):
    """Return the :class:`torch.device` for a ``--device`` value, logging the choice.

    ``auto`` picks ``cuda`` (the current CUDA device) when one is usable, else ``cpu``.  Asking for
    ``cuda`` or ``cuda:N`` where CUDA (or GPU ``N``) is absent raises a one-line
    :class:`~latentbids.errors.UsageError` instead of falling back silently.

    Parameters
    ----------
    spec : str or None, default "auto"
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (case and surrounding spaces ignored); None or an empty
        string means ``auto``.

    Returns
    -------
    torch.device

    Raises
    ------
    UsageError
        An invalid value, or CUDA (or GPU ``N``) asked for but absent.
    """
    import torch

    spec = (str(spec) if spec is not None else "auto").strip().lower() or "auto"
    match = _PATTERN.match(spec)
    if not match or (match.group(2) is not None and match.group(1) != "cuda"):
        raise UsageError(
            f"--device '{spec}' is not valid: use auto, cpu, cuda or cuda:N (e.g. cuda:0)"
        )
    kind, index = match.group(1), match.group(2)
    if kind == "auto":
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        LOGGER.info("--device auto resolved to %s (%s)", device, describe_device(device))
        return device
    if kind == "cpu":
        device = torch.device("cpu")
        LOGGER.info("Using device cpu (%s)", describe_device(device))
        return device
    if not torch.cuda.is_available():
        raise UsageError(
            f"--device {spec} was asked for but CUDA is not available here (torch {torch.__version__}, "
            f"{'CPU-only build' if torch.version.cuda is None else 'no visible GPU'}): "
            f"use --device cpu or auto, or run with a GPU (docker --gpus all, apptainer --nv)"
        )
    count = torch.cuda.device_count()
    if index is not None and int(index) >= count:
        raise UsageError(
            f"--device {spec} was asked for but only {count} CUDA device(s) are visible "
            f"(cuda:0..cuda:{count - 1}): pick one of those"
        )
    device = torch.device(f"cuda:{index}" if index is not None else "cuda")
    LOGGER.info("Using device %s (%s)", device, describe_device(device))
    return device


def describe_device(device) -> str:
    """A short human description (GPU name and memory, or CPU threads) for logs and provenance.

    Parameters
    ----------
    device : torch.device or str
        A CUDA device (without an index: the current one) or any other device.

    Returns
    -------
    str
        ``"<GPU name>, <total memory> GiB"`` on CUDA, else ``"CPU, <n> torch threads"``.
    """
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        return f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
    return f"CPU, {torch.get_num_threads()} torch threads"


def set_determinism(deterministic: bool, device) -> None:
    """Switch PyTorch to deterministic kernels (or to cuDNN autotuning when not deterministic).

    Deterministic runs give identical results from identical inputs *on the same device and
    software*; CUDA additionally needs ``CUBLAS_WORKSPACE_CONFIG``, which is set here.

    Parameters
    ----------
    deterministic : bool
        True: deterministic algorithms (an error for an op without one), and TF32 off on CUDA.  False: cuDNN
        autotuning on CUDA, and TF32 on.
    device : torch.device or str
        The training device.

    Returns
    -------
    None
        The settings are process-wide (torch's global flags and the environment).
    """
    import torch

    device = torch.device(device)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = device.type == "cuda"
    if device.type == "cuda":
        # TF32 changes results between cards; keep it off in deterministic mode only.
        torch.backends.cuda.matmul.allow_tf32 = not deterministic
        torch.backends.cudnn.allow_tf32 = not deterministic
