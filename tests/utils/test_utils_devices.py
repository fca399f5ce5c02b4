"""One parser of the --device text, one resolution to what the host has."""
from __future__ import annotations

import pytest

from latentbids.errors import UsageError
from latentbids.utils.devices import DeviceSpec, parse_device, resolve_device


def test_parse_device_spellings():
    assert parse_device("auto") == DeviceSpec("auto") and parse_device(None) == DeviceSpec("auto")
    assert parse_device(" CPU ") == DeviceSpec("cpu") and parse_device("") == DeviceSpec("auto")
    assert parse_device("cuda") == DeviceSpec("cuda") and parse_device("cuda:3") == DeviceSpec("cuda", 3)
    assert str(parse_device("Cuda:3")) == "cuda:3" and parse_device("cuda:3").is_cuda
    for bad in ("gpu", "cpu:0", "auto:1", "cuda:", "cuda:x", "mps"):
        with pytest.raises(UsageError, match=f"--device '{bad}' is not valid: use auto, cpu, cuda or cuda:N"):
            parse_device(bad)


def test_resolve_device_never_falls_back_silently():
    import torch

    assert resolve_device("cpu") == DeviceSpec("cpu")
    if torch.cuda.is_available():  # pragma: no cover - a GPU host
        assert resolve_device("auto").is_cuda and resolve_device("auto").index is not None
        with pytest.raises(UsageError, match="only .* CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        assert resolve_device("auto") == DeviceSpec("cpu")
        with pytest.raises(UsageError, match="--device cuda was asked for but CUDA is not available"):
            resolve_device("cuda")
