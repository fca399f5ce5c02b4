"""The CUDA fast path's device-agnostic pieces, run on CPU through its explicit "CPU twin".

``precision="bf16"``, ``memory_format="channels_last_3d"`` and ``placement="resident"`` force on CPU
what CUDA gets by default (bf16 autocast, channels_last_3d model and inputs, the whole set in one
device tensor served by ``index_select``), so the training loop, batching, OOM fallback and encoding
of the fast path are exercised here.  What only a GPU can show (kernel speed, real OOM, pinned
memory and async copies, cuDNN/cuBLAS determinism) is listed in BENCHMARKS.md / the issue.

Tiny cohort: 12 smooth volumes on an 18x17x19 grid fitted to a 16^3 box; the whole file runs in a
few seconds on 2 cores.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentbids.errors import LatentbidsError
from latentbids.model import checkpoint, fast_path, memory, network, training
from latentbids.model.encoding import encode_all, iter_encode
from latentbids.model.fast_path import resolve_fast_path
from latentbids.model.grid import fit_grid
from latentbids.model.training import (
    BatchSource,
    TrainSettings,
    train_autoencoder,
)

torch.set_num_threads(1)

TWIN = dict(precision="bf16", memory_format="channels_last_3d", placement="resident")
TRAIN, VAL = list(range(10)), [10, 11]


def _smooth(shape, rng, n_blobs=4, sigma=2.5):
    grid = np.indices(shape).astype(np.float32)
    out = np.zeros(shape, dtype=np.float32)
    for _ in range(n_blobs):
        c = rng.uniform(0.3, 0.7, size=3) * np.asarray(shape)
        out += rng.uniform(0.3, 1.0) * np.exp(
            -sum((grid[i] - c[i]) ** 2 for i in range(3)) / (2 * sigma**2)
        )
    return out


@pytest.fixture(scope="module")
def cohort():
    """12 volumes on an 18x17x19 grid, the mask an ellipsoid that fits a 16^3 box (2 levels)."""
    shape = (18, 17, 19)
    rng = np.random.default_rng(0)
    grid = np.indices(shape).astype(np.float32)
    centre = (np.asarray(shape, dtype=np.float32) - 1)[:, None, None, None] / 2
    mask = (((grid - centre) / 7.5) ** 2).sum(0) <= 1
    vols = np.stack([np.clip(_smooth(shape, rng), 0, 1) * mask for _ in range(12)])
    fit = fit_grid(mask, levels=2)
    assert fit.size == (16, 16, 16)
    data = fit.crop(vols.astype(np.float32))
    return fit, np.ascontiguousarray(data), fit.crop(mask.astype(np.float32))


def _settings(**kw):
    base = dict(
        latent_dim=4,
        channels=(4, 8),
        batch_size=4,
        max_epochs=6,
        patience=50,
        learning_rate=5e-3,
        seed=3,
        deterministic=True,
    )
    base.update(kw)
    return TrainSettings(**base)


class OOMInjector:
    """Wrap ``AutoEncoder3D.<method>``: raise ``torch.OutOfMemoryError`` for batches above ``limit``
    (and once more at the call numbers in ``once``); record every batch size."""

    def __init__(self, monkeypatch, method="forward", limit=None, once=(), when=None):
        self.sizes, self.calls, self.limit, self.once, self.when = [], 0, limit, set(once), when
        original = getattr(network.AutoEncoder3D, method)
        injector = self

        def wrapped(model, x, *args, **kwargs):
            injector.calls += 1
            active = injector.when is None or injector.when(model)
            if active and (
                (injector.limit is not None and x.shape[0] > injector.limit)
                or injector.calls in injector.once
            ):
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            injector.sizes.append(int(x.shape[0]))
            return original(model, x, *args, **kwargs)

        monkeypatch.setattr(network.AutoEncoder3D, method, wrapped)


# --- resolution of the data path --------------------------------------------------------------


def test_defaults_cpu_fp32_cuda_fast(monkeypatch):
    cpu = resolve_fast_path("cpu")
    assert (cpu.precision, cpu.memory_format, cpu.placement, cpu.forced) == (
        "fp32",
        "contiguous",
        "streamed",
        False,
    )
    monkeypatch.setattr(fast_path, "_native_bf16", lambda device: True)
    gpu = resolve_fast_path(torch.device("cuda:1"))
    assert (gpu.precision, gpu.memory_format, gpu.placement) == (
        "bf16",
        "channels_last_3d",
        "resident",
    )
    base = resolve_fast_path("cuda", fast=False, resident=False)
    assert (base.precision, base.memory_format) == ("fp32", "contiguous")
    assert base.placement == "streamed"
    monkeypatch.setattr(fast_path, "_native_bf16", lambda device: False)  # V100, T4: no native bf16
    assert resolve_fast_path("cuda").precision == "fp32"
    assert resolve_fast_path("cuda", precision="bf16").precision == "bf16"  # explicit wins
    twin = resolve_fast_path("cpu", **TWIN)
    assert (twin.precision, twin.memory_format, twin.placement, twin.forced) == (
        "bf16",
        "channels_last_3d",
        "resident",
        True,
    )
    with pytest.raises(ValueError, match="fp16 is not supported"):
        resolve_fast_path("cpu", precision="fp16")
    with pytest.raises(ValueError, match="memory_format"):
        resolve_fast_path("cpu", memory_format="nhwc")


def test_resident_batches_equal_streamed_and_survive_release(cohort):
    _, data, _ = cohort
    rows = [7, 2, 9, 0, 5, 11, 3]
    order = np.array([4, 0, 6, 2, 1, 5, 3])
    streamed = BatchSource(data, rows, torch.device("cpu"), 2.0, resident=False)
    resident = BatchSource(data, rows, torch.device("cpu"), 2.0, resident=True, channels_last=True)
    assert streamed.placement == "cpu" and resident.placement == "cpu-resident"
    a = list(streamed.batches(order, 3))
    b = []
    for i, x in enumerate(resident.batches(order, 3)):
        assert x.is_contiguous(memory_format=torch.channels_last_3d)
        b.append(x)
        if i == 0:
            assert resident.release()  # the OOM fallback drops the store mid-epoch
    assert resident.placement == "cpu" and not resident.release()
    assert [x.shape[0] for x in a] == [3, 3, 1]
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    first = np.sort(order[:3])
    np.testing.assert_array_equal(a[0][:, 0].numpy(), data[np.asarray(rows)[first]] / 2.0)


# --- training through the twin ------------------------------------------------------------------


def test_twin_training_learns_in_bf16_channels_last_resident(cohort, monkeypatch):
    _, data, mask = cohort
    seen = []
    original = network.AutoEncoder3D.forward

    def spy(model, x):
        recon, z = original(model, x)
        seen.append(
            (
                torch.is_autocast_enabled("cpu"),
                x.is_contiguous(memory_format=torch.channels_last_3d),
                model.encoder[0].weight.is_contiguous(memory_format=torch.channels_last_3d),
                recon.dtype,
            )
        )
        return recon, z

    monkeypatch.setattr(network.AutoEncoder3D, "forward", spy)
    res = train_autoencoder(data, mask, TRAIN, VAL, _settings(), "cpu", **TWIN)
    assert res.placement == "cpu-resident"
    assert res.fast_path == {
        "precision": "bf16",
        "memory_format": "channels_last_3d",
        "placement": "cpu-resident",
        "storage": "fp16",  # the resident set in half the memory under bf16
    }
    assert seen and all(s == (True, True, True, torch.bfloat16) for s in seen)
    loss = res.history.train_loss.to_numpy()
    assert np.isfinite(loss).all() and np.isfinite(res.history.val_loss).all()
    assert loss[-1] < 0.7 * loss[0], loss
    assert not res.oom_events and res.micro_batch == 4


def test_default_cpu_training_stays_fp32_contiguous(cohort, monkeypatch):
    _, data, mask = cohort
    seen = []
    original = network.AutoEncoder3D.forward

    def spy(model, x):
        seen.append((torch.is_autocast_enabled("cpu"), x.is_contiguous()))
        recon, z = original(model, x)
        seen[-1] += (recon.dtype,)
        return recon, z

    monkeypatch.setattr(network.AutoEncoder3D, "forward", spy)
    res = train_autoencoder(data, mask, TRAIN, VAL, _settings(max_epochs=1), "cpu")
    assert res.placement == "cpu" and res.fast_path["precision"] == "fp32"
    assert seen and all(s == (False, True, torch.float32) for s in seen)


def test_numerics_are_part_of_the_resume_fingerprint(cohort, tmp_path):
    _, data, mask = cohort
    kw = dict(checkpoint_dir=tmp_path)
    first = train_autoencoder(data, mask, TRAIN, VAL, _settings(max_epochs=1), "cpu", **kw)
    again = train_autoencoder(data, mask, TRAIN, VAL, _settings(max_epochs=1), "cpu", **kw)
    assert first.resumed_from is None and again.resumed_from == 2  # default path: unchanged key
    resident = train_autoencoder(
        data, mask, TRAIN, VAL, _settings(max_epochs=1), "cpu", placement="resident", **kw
    )
    assert resident.resumed_from == 2  # placement does not change the batches: same run
    twin = train_autoencoder(data, mask, TRAIN, VAL, _settings(max_epochs=1), "cpu", **kw, **TWIN)
    assert twin.resumed_from is None  # a bf16 run does not continue an fp32 checkpoint
    twin = train_autoencoder(data, mask, TRAIN, VAL, _settings(max_epochs=1), "cpu", **kw, **TWIN)
    assert twin.resumed_from == 2  # ... but continues its own


# --- encoding -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(cohort):
    _, data, mask = cohort
    return train_autoencoder(data, mask, TRAIN, VAL, _settings(max_epochs=4), "cpu").model


def test_encoding_is_batched_and_shapes_restored(cohort, trained, monkeypatch):
    fit, data, mask = cohort
    spy = OOMInjector(monkeypatch, "encode")
    rows = [11, 0, 5, 3, 8, 1, 9, 2, 7, 4, 6]
    batches = list(iter_encode(trained, data, rows, mask, "cpu", 1.0, batch_size=4, **TWIN))
    assert spy.sizes == [4, 4, 3]  # one forward per batch, never one volume per call
    assert np.concatenate([b.rows for b in batches]).tolist() == rows
    for b in batches:
        n = len(b.rows)
        assert b.z.shape == (n, 4) and b.z.dtype == np.float32
        assert b.recon.shape == b.error_map.shape == (n, 16, 16, 16) and b.error.shape == (n,)
        assert np.isfinite(b.recon).all() and (b.recon[:, mask == 0] == 0).all()
        assert fit.restore(b.recon[0]).shape == fit.shape == (18, 17, 19)
        assert fit.restore(b.error_map).shape == (n, 18, 17, 19)


def test_bf16_latents_agree_with_fp32(cohort, trained):
    """bf16 (8-bit mantissa) through 2 conv levels and the bottleneck: latents within 2 % of the
    fp32 latents' scale (max |z|; absolute, per component) and errors within 2 % (relative); seen:
    0.3-0.4 % and 0.04-0.4 %.  Layouts alone (fp32 contiguous vs channels_last_3d) agree to 1e-5."""
    _, data, mask = cohort
    rows = list(range(12))
    z32, e32 = encode_all(trained, data, rows, mask, batch_size=4, precision="fp32")
    z_cl, e_cl = encode_all(
        trained, data, rows, mask, batch_size=4, precision="fp32", memory_format="channels_last_3d"
    )
    z16, e16 = encode_all(trained, data, rows, mask, batch_size=4, **TWIN)
    scale = np.abs(z32).max()
    np.testing.assert_allclose(z_cl, z32, rtol=0, atol=1e-5 * max(1.0, scale))
    np.testing.assert_allclose(e_cl, e32, rtol=1e-5)
    assert np.abs(z16 - z32).max() <= 0.02 * scale, (np.abs(z16 - z32).max(), scale)
    np.testing.assert_allclose(e16, e32, rtol=0.02)
    # ranking of subjects by error is what the analysis uses: the same under bf16 here
    assert np.corrcoef(e16, e32)[0, 1] > 0.99


# --- out-of-memory fallback ---------------------------------------------------------------------


def test_oom_halves_micro_batch_and_reports(cohort, monkeypatch):
    _, data, mask = cohort
    spy = OOMInjector(monkeypatch, "forward", limit=2)
    settings = _settings(max_epochs=3, batch_size=8)
    res = train_autoencoder(data, mask, TRAIN, VAL, settings, "cpu", **TWIN)
    assert res.micro_batch == 2 and len(res.oom_events) == 2  # 8 -> 4 -> 2
    assert "retrying with micro-batches of 4" in res.oom_events[0]
    assert "retrying with micro-batches of 2" in res.oom_events[1]
    assert max(spy.sizes) == 2 and res.history.micro_batch.tolist() == [2, 2, 2]
    assert np.isfinite(res.history.train_loss).all() and np.isfinite(res.best_val_loss)
    assert res.placement == "cpu-resident"  # residency kept while smaller batches suffice


def test_oom_retry_redoes_the_same_step(cohort, monkeypatch):
    """Without batch norm, micro-batches with accumulated gradients give the full-batch step: a run
    hit by OOMs (one of them after a micro-batch's backward, leaving partial gradients behind)
    ends where an undisturbed run does, so no stale gradient and no doubled optimiser step."""
    _, data, mask = cohort
    settings = _settings(max_epochs=2, batch_size=4, norm="none")
    ref = train_autoencoder(data, mask, TRAIN, VAL, settings, "cpu", placement="resident")
    # call 1 (batch 4) fails -> micro 2; call 5 is the 2nd micro-batch of the 2nd step -> micro 1
    spy = OOMInjector(monkeypatch, "forward", limit=2, once={5})
    hit = train_autoencoder(data, mask, TRAIN, VAL, settings, "cpu", placement="resident")
    assert hit.micro_batch == 1 and len(hit.oom_events) == 2 and 4 not in spy.sizes
    for (k, a), b in zip(ref.model.state_dict().items(), hit.model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=k)


def test_oom_in_validation_is_retried(cohort, monkeypatch):
    _, data, mask = cohort
    OOMInjector(monkeypatch, "forward", limit=1, when=lambda model: not model.training)
    res = train_autoencoder(data, mask, TRAIN, VAL, _settings(max_epochs=2), "cpu", **TWIN)
    assert res.micro_batch == 1 and "validation" in res.oom_events[0]
    assert np.isfinite(res.history.val_loss).all()


def test_oom_at_one_volume_is_a_one_line_error(cohort, monkeypatch):
    _, data, mask = cohort
    OOMInjector(monkeypatch, "forward", limit=0)
    events = []
    monkeypatch.setattr(training.LOGGER, "warning", lambda msg, *a: events.append(msg % a))
    with pytest.raises(LatentbidsError) as info:
        train_autoencoder(data, mask, TRAIN, VAL, _settings(batch_size=2), "cpu", **TWIN)
    msg = info.value.message
    assert "\n" not in str(info.value) and info.value.exit_code == 1
    assert msg.startswith("Out of memory on cpu during training step with one volume per step")
    assert "--batch-size will not help" in msg
    # 2 -> 1, then the resident copy is dropped, then the error
    assert len(events) == 2 and "streamed from host memory" in events[1]
    gpu = memory.oom_message(torch.device("cuda:0"), "while encoding")
    assert "use --device cpu" in gpu and "\n" not in gpu


def test_oom_in_optimizer_step_is_not_retried(cohort, monkeypatch):
    _, data, mask = cohort

    def boom(self, *a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(torch.optim.Adam, "step", boom)
    with pytest.raises(LatentbidsError, match="optimiser step"):
        train_autoencoder(data, mask, TRAIN, VAL, _settings(max_epochs=1), "cpu")


def test_encoding_oom_halves_batch_then_fails_cleanly(cohort, trained, monkeypatch):
    _, data, mask = cohort
    rows = list(range(12))
    z_ref, e_ref = encode_all(trained, data, rows, mask, batch_size=8, **TWIN)
    with monkeypatch.context() as m:
        spy = OOMInjector(m, "encode", limit=2)
        z, e = encode_all(trained, data, rows, mask, batch_size=8, **TWIN)
    assert max(spy.sizes) == 2 and len(spy.sizes) == 6  # 8 -> 4 -> 2, then 6 batches of 2
    np.testing.assert_allclose(z, z_ref, rtol=0.02, atol=0.02 * np.abs(z_ref).max())
    np.testing.assert_allclose(e, e_ref, rtol=0.05)
    OOMInjector(monkeypatch, "encode", limit=0)
    with pytest.raises(LatentbidsError, match="while encoding with one volume per step"):
        encode_all(trained, data, rows, mask, batch_size=2, **TWIN)


# --- CUDA bookkeeping that needs no GPU to check ------------------------------------------------


def test_cuda_rng_state_is_the_training_device_only(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("touches every GPU"))
    monkeypatch.setattr(
        torch.cuda, "get_rng_state", lambda d: calls.append(("get", d)) or torch.ones(4)
    )
    monkeypatch.setattr(
        torch.cuda, "set_rng_state", lambda s, d: calls.append(("set", d, s.sum().item()))
    )
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    dev = torch.device("cuda:1")
    gen = torch.Generator().manual_seed(0)
    state = checkpoint.rng_state(gen, dev)
    checkpoint.set_rng_state(state, gen, dev)
    assert calls == [("get", dev), ("set", dev, 4.0)]
    # a checkpoint from the older format (one state per visible GPU) restores GPU 1's
    state["cuda"] = [torch.zeros(4), torch.full((4,), 2.0)]
    checkpoint.set_rng_state(state, gen, dev)
    assert calls[-1] == ("set", dev, 8.0)


def test_free_gpu_memory_counts_the_allocator_cache(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda d: (1_000, 80_000))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda d: 5_000)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda d: 3_000)
    assert memory.free_cuda_memory(torch.device("cuda:0")) == 3_000


def test_oom_detection():
    assert memory.is_oom(torch.OutOfMemoryError("x"))
    assert memory.is_oom(torch.cuda.OutOfMemoryError("x"))
    assert memory.is_oom(RuntimeError("CUDA out of memory. Tried to allocate"))
    assert memory.is_oom(RuntimeError("cuDNN error: CUDNN_STATUS_NOT_ENOUGH_MEMORY"))
    assert not memory.is_oom(RuntimeError("shape mismatch"))
    assert not memory.is_oom(MemoryError())
