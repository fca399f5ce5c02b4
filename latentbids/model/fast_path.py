"""The data path of a training or encoding run: precision, memory format, placement, storage.

One place resolves it for both (:func:`resolve_fast_path`), so encoding reads volumes exactly as
training did: on CUDA, bf16 autocast, ``channels_last_3d`` and the data resident on the device; on CPU,
fp32 and contiguous, streamed from the memory-mapped cache.  Explicit choices give the *CPU twin* of the
CUDA path that CI tests.  ``_native_bf16`` is looked up here at each call (tests replace it).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from latentbids.model.batches import STORAGES

LOGGER = logging.getLogger("latentbids.model")

PRECISIONS = ("fp32", "bf16")
MEMORY_FORMATS = ("contiguous", "channels_last_3d")
PLACEMENTS = ("resident", "streamed")


@dataclass(frozen=True)
class FastPath:
    """The resolved data path of one training or encoding run (see :func:`resolve_fast_path`).

    Attributes
    ----------
    precision, memory_format, placement, storage : str
        ``fp32``/``bf16`` (autocast); ``contiguous``/``channels_last_3d``; ``resident``/``streamed``; ``fp32``/``fp16``.
    forced : bool
        An explicit override was given (logged).
    """

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
    stem: str | None = None,
) -> FastPath:
    """Resolve precision, memory format, data placement and resident storage for ``device``.

    Defaults (``None`` or ``"auto"``): on CUDA with ``fast``, bf16 autocast (fp32 on a card without native bf16, e.g.
    V100/T4, logged) and ``channels_last_3d``; fp32 otherwise (CPU always), ``channels_last_3d`` on a CPU for the
    networks whose ends run at half resolution (``stem`` ``patch`` or ``space_to_depth``, see
    :attr:`latentbids.model.network.Ends.channels_last_on_cpu`; the same fp32 arithmetic, laid out for oneDNN),
    contiguous otherwise.  Placement is ``resident``
    on CUDA when ``resident`` is true (the set still falls back to pinned batches when it does not fit), ``streamed``
    otherwise.  A resident set is stored in fp16 under bf16 (the network reads 8 significant bits of it, fp16 keeps
    11), in fp32 otherwise.

    An explicit ``precision`` (``fp32``/``bf16``), ``memory_format`` (``contiguous``/``channels_last_3d``) or
    ``placement`` (``resident``/``streamed``) is obeyed on any device: on CPU this is the *CPU twin* of the CUDA fast
    path, for tests and benchmarks (CPU bf16 autocast is slow without AMX/AVX512-BF16; not a production setting).

    Parameters
    ----------
    device, fast, resident : torch.device or str, bool, bool
        The device, and ``settings.fast`` and ``settings.resident``.
    stem : str or None
        The network's ends (``settings.stem``) when training: decides the CPU memory format; None
        (encoding) keeps a CPU contiguous.
    precision, memory_format, placement, storage : str or None
        Explicit choices (``storage``: ``fp32``/``fp16``); None or ``"auto"``: the defaults above.

    Returns
    -------
    FastPath

    Raises
    ------
    ValueError
        An unknown choice, or ``precision="fp16"`` (it would need loss scaling).
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
        from latentbids.model.network import STEM_ENDS

        cpu_cl = device.type == "cpu" and stem is not None and STEM_ENDS[stem].channels_last_on_cpu
        m = "channels_last_3d" if fast and (cuda or cpu_cl) else "contiguous"
    if pl is None:
        pl = "resident" if cuda and resident else "streamed"
    if st is None:
        st = "fp16" if p == "bf16" else "fp32"
    return FastPath(p, m, pl, forced, st)


def _autocast(device: torch.device, precision: str, cache_enabled: bool = True):
    """The autocast context for ``precision`` (``"bf16"`` on any device type, ``"fp32"``: off).

    ``cache_enabled=False`` inside a CUDA graph capture (autocast's weight-cast cache must not outlive it).
    """
    device = torch.device(device)
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache_enabled)
    return torch.autocast(device.type, enabled=False)
