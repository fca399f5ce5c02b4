"""torch.compile with its eager fallback, batch norm folded for encoding, CUDA graphs kept off CPU,
the resident set in fp16, and how many volumes each data placement holds."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from latentbids.model import acceleration, encoding, memory
from latentbids.model.acceleration import (
    CompiledOrEager,
    compile_wanted,
    cuda_graphs_wanted,
    fold_batchnorm,
    is_compile_error,
)
from latentbids.model.batches import BatchSource
from latentbids.model.encoding import encode_all
from latentbids.model.fast_path import resolve_fast_path
from latentbids.model.network import AutoEncoder3D
from latentbids.model.training import TrainSettings, train_autoencoder

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cohort():
    """10 smooth volumes on a 16^3 box and a ball mask (seconds to train two levels on)."""
    rng = np.random.default_rng(0)
    grid = np.indices((16, 16, 16)).astype(np.float32)
    mask = (((grid - 7.5) / 7.0) ** 2).sum(0) <= 1
    vols = []
    for _ in range(10):
        c = rng.uniform(5, 11, size=(3, 3))
        vol = sum(np.exp(-((grid - ci[:, None, None, None]) ** 2).sum(0) / 12.0) for ci in c)
        vols.append(np.clip(vol, 0, 1) * mask)
    return np.ascontiguousarray(np.stack(vols), dtype=np.float32), mask.astype(np.float32)


def _settings(**kw):
    return TrainSettings(**{**dict(latent_dim=3, channels=(4, 8), batch_size=3, max_epochs=2, patience=10,
                                   learning_rate=5e-3, seed=3, deterministic=True), **kw})


# --- torch.compile ------------------------------------------------------------------------------


def test_compile_choice():
    assert not compile_wanted("auto", "cpu") and compile_wanted("auto", "cuda:1")
    assert compile_wanted("on", "cpu") and not compile_wanted("off", "cuda")
    with pytest.raises(ValueError, match="auto, on, off"):
        compile_wanted("always", "cpu")


def test_a_compile_failure_logs_one_line_and_trains_eagerly(cohort, monkeypatch, caplog):
    """A backend that fails (as Inductor does without a C++ compiler) is wrapped by Dynamo in
    BackendCompilerFailed at the first step: the step is redone eagerly, and the run ends exactly
    where an eager run ends (nothing was updated by the failed attempt)."""
    data, mask = cohort
    eager = train_autoencoder(data, mask, range(8), [8, 9], _settings(), "cpu", compile="off")

    def broken_backend(graph, example_inputs):
        raise RuntimeError("no C++ compiler in this image")

    torch._dynamo.reset()
    monkeypatch.setattr(acceleration, "COMPILE_BACKEND", broken_backend)
    with caplog.at_level(logging.WARNING, logger="latentbids.model"):
        res = train_autoencoder(data, mask, range(8), [8, 9], _settings(), "cpu", compile="on")
    failures = [r.getMessage() for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert len(failures) == 2, failures  # one line for training, one for validation, then eager
    assert "training" in failures[0] and "no C++ compiler in this image" in failures[0]
    assert all("\n" not in line for line in failures)
    assert not res.compiled
    for (name, a), b in zip(eager.model.state_dict().items(), res.model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=name)
    pd_eager, pd_res = eager.history, res.history
    np.testing.assert_array_equal(pd_res.val_loss, pd_eager.val_loss)


@pytest.mark.slow
def test_compiled_training_matches_eager(cohort, monkeypatch):
    """Dynamo's tracing with its plain "aot_eager" backend (no C++ compiler needed): the steps run
    through torch.compile, recompiling for the epoch's last, smaller batch, and learn what eager does."""
    data, mask = cohort
    eager = train_autoencoder(data, mask, range(8), [8, 9], _settings(), "cpu", compile="off")
    torch._dynamo.reset()
    monkeypatch.setattr(acceleration, "COMPILE_BACKEND", "aot_eager")
    res = train_autoencoder(data, mask, range(8), [8, 9], _settings(), "cpu", compile="on")
    assert res.compiled
    np.testing.assert_allclose(res.history.val_loss, eager.history.val_loss, rtol=1e-4)


def test_compile_errors_are_told_from_computation_errors():
    assert is_compile_error(torch._dynamo.exc.BackendCompilerFailed("inductor", RuntimeError("x"), None))
    try:
        raise RuntimeError("outer") from torch._dynamo.exc.Unsupported("graph break")
    except RuntimeError as exc:
        assert is_compile_error(exc)  # found through the cause
    assert not is_compile_error(RuntimeError("shape mismatch"))
    assert not is_compile_error(torch.OutOfMemoryError("CUDA out of memory"))
    wrapper = CompiledOrEager(torch.nn.Identity(), enabled=False)
    assert not wrapper.active and not wrapper.fell_back(RuntimeError("x"))


# --- batch norm folded for encoding ---------------------------------------------------------------


@pytest.mark.parametrize("stem", ["conv", "space_to_depth", "patch"])
def test_folded_batchnorm_encodes_the_same(stem):
    torch.manual_seed(0)
    net = AutoEncoder3D((16, 16, 16), latent_dim=4, channels=(4, 8), stem=stem)
    with torch.no_grad():  # non-trivial running statistics, as after training
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.1, 0.1)
    net.eval()
    before = sum(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules())
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules()) == before >= 3  # left as it was
    x = torch.rand(3, 1, 16, 16, 16)
    with torch.no_grad():
        for a, b in zip(net(x), folded(x)):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    cl = fold_batchnorm(net.to(memory_format=torch.channels_last_3d))
    assert cl.encoder[0].weight.is_contiguous(memory_format=torch.channels_last_3d)


# --- CUDA graphs: GPU only ----------------------------------------------------------------------


def test_cuda_graphs_are_not_used_on_cpu(cohort, monkeypatch):
    data, mask = cohort
    assert not cuda_graphs_wanted("cpu") and cuda_graphs_wanted(torch.device("cuda:0"))

    def no_graph(*args, **kwargs):
        raise AssertionError("a CUDA graph was captured on CPU")

    monkeypatch.setattr(encoding, "GraphedEncoder", no_graph)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", no_graph)
    net = AutoEncoder3D((16, 16, 16), latent_dim=3, channels=(4, 8)).eval()
    z, e = encode_all(net, data, range(10), mask, "cpu", batch_size=4)
    z2, e2 = encode_all(net, data, range(10), mask, "cpu", batch_size=4, graphs=True)  # asked: still not on CPU
    assert z.shape == (10, 3) and np.isfinite(e).all()
    np.testing.assert_array_equal(z2, z)


# --- resident data: fp16 storage and capacity -----------------------------------------------------


def test_resident_fp16_storage_serves_float32_batches_in_half_the_memory(cohort):
    data, _ = cohort
    rows, order = [3, 1, 7, 0, 9], np.array([4, 0, 2, 1, 3])
    f32 = BatchSource(data, rows, torch.device("cpu"), 2.0, resident=True)
    f16 = BatchSource(data, rows, torch.device("cpu"), 2.0, resident=True, storage="fp16")
    assert f16.store.dtype == torch.float16 and f16.placement == "cpu-resident"
    assert f16.store.element_size() * f16.store.nelement() * 2 == f32.store.element_size() * f32.store.nelement()
    for a, b in zip(f32.batches(order, 2), f16.batches(order, 2)):
        assert b.dtype == torch.float32
        torch.testing.assert_close(b, a, rtol=2**-11, atol=0)  # fp16: 11 significant bits
    assert resolve_fast_path("cpu", precision="bf16").storage == "fp16"
    assert resolve_fast_path("cpu").storage == "fp32"
    assert resolve_fast_path("cpu", precision="bf16", storage="fp32").storage == "fp32"


def test_values_beyond_fp16_stay_fp32(cohort, caplog):
    data, _ = cohort
    big = data.copy()
    big[2, 8, 8, 8] = 1e6
    with caplog.at_level(logging.WARNING, logger="latentbids.model"):
        src = BatchSource(big, [1, 2], torch.device("cpu"), 1.0, resident=True, storage="fp16")
    assert src.store.dtype == torch.float32 and src.storage == "fp32"
    assert any("kept in fp32" in r.getMessage() for r in caplog.records)


def test_twin_training_with_fp16_resident_data_learns_as_fp32_storage(cohort):
    data, mask = cohort
    kw = dict(precision="bf16", placement="resident")
    a = train_autoencoder(data, mask, range(8), [8, 9], _settings(), "cpu", storage="fp32", **kw)
    b = train_autoencoder(data, mask, range(8), [8, 9], _settings(), "cpu", storage="fp16", **kw)
    assert b.fast_path["storage"] == "fp16" and a.fast_path["storage"] == "fp32"
    np.testing.assert_allclose(b.history.val_loss, a.history.val_loss, rtol=0.02)


def test_capacity_of_each_placement():
    """The 2 mm box, 96x112x96 = 1,032,192 voxels: 4.13 MB in fp32, 2.06 MB in fp16 per volume."""
    h200 = memory.capacity((96, 112, 96), device_bytes=141 * 10**9, memory_share=0.5, host_bytes=64 * 2**30)
    assert h200.resident_fp32 == int(70.5e9 // (1_032_192 * 4)) == 17_075
    assert h200.resident_fp16 == int(70.5e9 // (1_032_192 * 2)) == 34_150
    assert h200.streamed == 64 * 2**30 // (1_032_192 * 4) == 16_644
    rows = h200.rows()
    assert [r[0] for r in rows] == ["resident fp32", "resident fp16", "streamed (pinned batches)"]
    assert "50% of 131.3 GiB" in rows[0][2] and "not the device" in rows[2][2]
