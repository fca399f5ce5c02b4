"""The model's side of the device: a resolved ``--device`` as a :class:`torch.device`, and determinism."""

from __future__ import annotations

import logging
import os

LOGGER = logging.getLogger("latentbids.model")


def as_torch_device(spec: str | None = "auto"):
    """The :class:`torch.device` of a ``--device`` value, resolved by the one rule
    (:func:`latentbids.utils.devices.resolve_device`: ``cuda`` without a GPU is a one-line usage error,
    never a silent CPU run); a resolved ``cpu`` or ``cuda:N`` passes through unchanged.

    Parameters
    ----------
    spec : str or None, default "auto"
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Returns
    -------
    torch.device
    """
    import torch

    from latentbids.utils.devices import resolve_device

    return torch.device(str(resolve_device(spec)))


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
