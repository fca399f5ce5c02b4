"""Faster forward passes that compute what the eager network computes.

* :class:`CompiledOrEager`: ``torch.compile`` (kernel fusion: a convolution's norm and activation
  become one pass over memory) with a clean fallback.  torch.compile compiles lazily, at the first
  call for each input shape and, for training, at the first backward, so a failure (no C++ compiler,
  an unsupported GPU, a bug of the compiler) can surface in any call or in ``loss.backward()``: the
  caller hands the exception to :meth:`CompiledOrEager.fell_back`, which logs one line, switches to
  eager execution for good and lets the caller redo the step (nothing was updated yet).  ``[model]
  compile = "auto"`` compiles on CUDA only: on CPU the first compilation costs minutes of a small
  machine's time for a gain the CPU benchmark does not show (BENCHMARKS.md).
* :func:`fold_batchnorm`: an inference copy of the network with every batch norm folded into the
  convolution before it (``torch.nn.utils.fusion``): one pass over each feature map fewer when
  encoding.  Batch norm in eval mode is an affine map per channel, so this changes results only by
  float rounding (~1e-6 relative).
* :class:`GraphedEncoder`: on CUDA, the whole encoding step (encode, decode, masked error) captured
  once as a CUDA graph per batch shape and replayed: one launch instead of ~40 kernel launches per
  batch, which is what bounds encoding throughput of a small network on a fast GPU.  It is never
  used on CPU (:func:`cuda_graphs_wanted`); a capture that fails logs one line and encoding stays
  eager.
"""

from __future__ import annotations

import copy
import logging
from typing import Callable

import torch
from torch import nn

LOGGER = logging.getLogger("latentbids.model")

COMPILE_MODES = ("auto", "on", "off")
#: torch.compile's backend ("inductor": generated fused kernels); tests put a failing one here
COMPILE_BACKEND: str | Callable = "inductor"


def compile_wanted(setting: str, device) -> bool:
    """Whether ``[model] compile`` (``auto``, ``on``, ``off``) compiles on ``device``.

    Parameters
    ----------
    setting : {"auto", "on", "off"}
        The ``[model] compile`` value (case and surrounding spaces ignored); ``auto`` compiles on CUDA only.
    device : torch.device or str
        The device the network runs on.

    Returns
    -------
    bool
        True when the forward pass should go through ``torch.compile``.

    Raises
    ------
    ValueError
        ``setting`` is not one of ``auto``, ``on``, ``off``.
    """
    setting = str(setting).strip().lower()
    if setting not in COMPILE_MODES:
        raise ValueError(f"compile {setting!r} is not one of {', '.join(COMPILE_MODES)}")
    return setting == "on" or (setting == "auto" and torch.device(device).type == "cuda")


def is_compile_error(exc: BaseException) -> bool:
    """An error raised by torch.compile's machinery (Dynamo, AOTAutograd, Inductor, a backend), as
    opposed to one of the computation itself (which the eager network would raise too).

    Parameters
    ----------
    exc : BaseException
        The exception caught from a call or its backward; its ``__cause__`` chain is searched too.

    Returns
    -------
    bool
        True when a class of ``exc`` or of one of its causes (or a base class of those) is defined in
        ``torch._dynamo``, ``torch._inductor`` or ``torch._functorch``.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for cls in type(exc).__mro__:
            if cls.__module__.startswith(("torch._dynamo", "torch._inductor", "torch._functorch")):
                return True
        exc = exc.__cause__
    return False


class CompiledOrEager:
    """Call ``module`` through ``torch.compile`` while that works, eagerly after its first failure.

    ``what`` names the pass in the log line (e.g. "training").  The module itself is shared, so its
    parameters and buffers are the same objects either way.

    Parameters
    ----------
    module : torch.nn.Module
        The network (or its DDP wrapper) to call.
    enabled : bool
        Whether to compile at all (see :func:`compile_wanted`); False calls ``module`` eagerly from the start.
    what : str, default "the network"
        Names the pass in the log line.

    Attributes
    ----------
    failure : str or None
        ``"<exception type>: <message, at most 240 characters>"`` of the compilation failure, or None.
    """

    def __init__(self, module: nn.Module, enabled: bool, what: str = "the network"):
        self.module = module
        self.what = what
        self.compiled = None
        self.failure: str | None = None
        if enabled:
            try:
                # one graph per batch shape (the full batch, the epoch's last, the validation's):
                # static shapes keep every kernel specialised
                self.compiled = torch.compile(module, backend=COMPILE_BACKEND, dynamic=False)
            except Exception as exc:  # noqa: BLE001 - torch.compile checks its environment up front
                self._log(exc)

    @property
    def active(self) -> bool:
        """Whether calls still go through the compiled module."""
        return self.compiled is not None

    def __call__(self, *args, **kwargs):
        return (self.module if self.compiled is None else self.compiled)(*args, **kwargs)

    def fell_back(self, exc: BaseException) -> bool:
        """After ``exc`` from a call or its backward: when it is a compilation failure of the
        compiled module, log it (one line), run eagerly from now on and return True (the caller
        redoes the step); False when it is anything else (the caller handles or re-raises it)."""
        if self.compiled is None or not is_compile_error(exc):
            return False
        self._log(exc)
        self.compiled = None
        return True

    def _log(self, exc: BaseException) -> None:
        first = " ".join(str(exc).split())[:240] or "no message"
        self.failure = f"{type(exc).__name__}: {first}"
        LOGGER.warning("torch.compile failed for %s (%s): running it eagerly", self.what, self.failure)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with each BatchNorm3d that directly follows a Conv3d or
    ConvTranspose3d (in any ``nn.Sequential``) folded into that convolution; ``model`` itself is
    left as it is.  Without batch norm the copy computes exactly what ``model`` does.

    Parameters
    ----------
    model : torch.nn.Module
        The network, e.g. an :class:`~latentbids.model.network.AutoEncoder3D`; not modified.

    Returns
    -------
    torch.nn.Module
        A deep copy in eval mode; each folded batch norm is replaced by ``nn.Identity`` and each fused
        convolution keeps its weight's memory format (contiguous or ``channels_last_3d``).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(model).eval()
    for seq in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, (nn.Conv3d, nn.ConvTranspose3d)) and isinstance(bn, nn.BatchNorm3d):
                fmt = (torch.channels_last_3d
                       if conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
                       and not conv.weight.is_contiguous() else torch.contiguous_format)
                fused = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose3d))
                seq[i] = fused.to(memory_format=fmt)
                seq[i + 1] = nn.Identity()
    return folded


def cuda_graphs_wanted(device) -> bool:
    """CUDA graphs for encoding: on a CUDA device only (on CPU there are no kernel launches to save).

    Parameters
    ----------
    device : torch.device or str
        The encoding device.

    Returns
    -------
    bool
        True on a CUDA device.
    """
    return torch.device(device).type == "cuda"


class GraphedEncoder:
    """Replay a CUDA graph of ``step`` (a function of one input batch returning a tuple of tensors,
    entering autocast itself with ``cache_enabled=False`` as CUDA graphs require) for batches shaped
    like the one it was captured with; any other shape runs ``step`` eagerly.

    The returned tensors are the graph's static outputs: the next call overwrites them, so the caller
    copies what it keeps (encoding copies them to the host at once).

    Parameters
    ----------
    step : callable
        ``step(x) -> tuple of torch.Tensor``; run three times on a side stream to warm up, then captured,
        all under ``torch.no_grad``.
    example : torch.Tensor
        A CUDA batch with the shape, dtype, strides and device to capture for (cloned as the static input).
    """

    def __init__(self, step: Callable, example: torch.Tensor):
        self.step = step
        self.static_input = example.clone()
        side = torch.cuda.Stream(example.device)
        side.wait_stream(torch.cuda.current_stream(example.device))
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(3):  # warm-up on a side stream: cuDNN autotuning, allocator, lazy init
                step(self.static_input)
        torch.cuda.current_stream(example.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self.graph):
            self.static_output = step(self.static_input)

    def matches(self, x: torch.Tensor) -> bool:
        return (x.shape == self.static_input.shape and x.dtype == self.static_input.dtype
                and x.stride() == self.static_input.stride() and x.device == self.static_input.device)

    def __call__(self, x: torch.Tensor):
        if not self.matches(x):
            with torch.no_grad():
                return self.step(x)
        self.static_input.copy_(x)
        self.graph.replay()
        return self.static_output
