"""--device as a torch.device: cpu, auto, and one-line UsageErrors when CUDA is asked for and absent."""

from __future__ import annotations

import pytest
import torch

from latentbids.errors import UsageError
from latentbids.model.device import as_torch_device as resolve_device


def test_cpu_and_auto():
    assert resolve_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "CUDA:1"])
def test_cuda_absent_is_a_usage_error(spec):
    with pytest.raises(UsageError) as info:
        resolve_device(spec)
    assert "CUDA is not available" in info.value.message
    assert "\n" not in info.value.message
    assert info.value.exit_code == 64


def test_cuda_index_out_of_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UsageError, match="only 1 CUDA device"):
        resolve_device("cuda:3")


@pytest.mark.parametrize("spec", ["gpu", "cpu:0", "cuda:x", "mps"])
def test_invalid_device_strings(spec):
    with pytest.raises(UsageError, match="not valid"):
        resolve_device(spec)
