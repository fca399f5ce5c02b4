"""Resolve ``--device auto|cpu|cuda|cuda:N`` to a :class:`torch.device`, and set determinism."""

from __future__ import annotations

import logging
import os

LOGGER = logging.getLogger("latentbids.model")


def resolve_device(spec: str | None = "auto"):
    """Return the :class:`torch.device` for a ``--device`` value, logging the choice.

    The text is parsed and checked against this host by the one device rule,
    :func:`latentbids.utils.devices.resolve_device` (``auto``: the current CUDA device when one is
    usable, else the CPU; ``cuda`` or ``cuda:N`` where CUDA, or GPU ``N``, is absent: a one-line
    :class:`~latentbids.errors.UsageError`, never a silent CPU run); this wrapper only turns its answer
    into the ``torch.device`` the model code takes.

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

    from latentbids.utils.devices import parse_device
    from latentbids.utils.devices import resolve_device as resolve_spec

    device = torch.device(str(resolve_spec(spec)))
    if parse_device(spec).kind == "auto":
        LOGGER.info("--device auto resolved to %s (%s)", device, describe_device(device))
    else:
        LOGGER.info("Using device %s (%s)", device, describe_device(device))
    return device


def describe_device(device) -> str:
    """A short human description (GPU name and memory, or CPU threads) for logs and provenance.

    The one rule is :func:`latentbids.utils.devices.describe_device`; this accepts a
    :class:`torch.device` too (a CUDA device without an index is the current one).

    Parameters
    ----------
    device : torch.device or str
        A CUDA device or the CPU.

    Returns
    -------
    str
        ``"<GPU name>, <total memory> GiB"`` on CUDA, else ``"CPU, <n> torch threads"``.
    """
    import torch

    from latentbids.utils.devices import describe_device as describe

    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return describe(str(device) if device.type in ("cuda", "cpu") else "cpu")


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
