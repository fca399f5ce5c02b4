"""GM cache reuse, training determinism, early stopping, and resume after an interruption."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from model_testdata import make_cohort, toy_template  # noqa: E402

from latentbids.errors import MissingInputError, UsageError  # noqa: E402
from latentbids.model.cache import load_volumes  # noqa: E402
from latentbids.model.grid import fit_grid  # noqa: E402
from latentbids.model.training import TrainSettings, train_autoencoder  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cohort")
    tpl = toy_template()
    rec = make_cohort(tmp / "gm", tpl, n_subjects=6, two_sessions=())
    mask = np.asarray(tpl.mask.dataobj) > 0
    fit = fit_grid(mask, levels=4)
    return tpl, rec, fit, fit.crop(mask.astype(np.float32))


def test_cache_built_once_then_reused(cohort, tmp_path):
    tpl, rec, fit, _ = cohort
    paths = rec.gm_path.tolist()
    first = load_volumes(paths, tmp_path, tpl.shape, tpl.affine, 1, fit)
    assert not first.reused and first.data.shape == (len(paths),) + fit.size
    assert first.data.flags["C_CONTIGUOUS"] and first.data.dtype == np.float32
    ref = fit.crop(nib.load(paths[2]).get_fdata(dtype=np.float32))
    np.testing.assert_array_equal(first.data[2], ref)
    second = load_volumes(paths, tmp_path, tpl.shape, tpl.affine, 1, fit)
    assert second.reused and second.path == first.path
    # another grid (no crop) or a touched file gives another cache
    assert not load_volumes(paths, tmp_path, tpl.shape, tpl.affine, 2, None).reused
    st = os.stat(paths[0])
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = load_volumes(paths, tmp_path, tpl.shape, tpl.affine, 1, fit)
    assert not third.reused and third.key != first.key


def test_cache_refuses_other_grid_and_missing_file(cohort, tmp_path):
    tpl, rec, fit, _ = cohort
    bad = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((10, 12, 10), np.float32), np.diag([8, 8, 8, 1.0])), str(bad))
    with pytest.raises(UsageError, match="not on the template grid"):
        load_volumes([rec.gm_path[0], bad], tmp_path / "c1", tpl.shape, tpl.affine, 1, fit)
    with pytest.raises(MissingInputError, match="not found"):
        load_volumes([tmp_path / "nope.nii.gz"], tmp_path / "c2", tpl.shape, tpl.affine, 1, fit)


def _settings(**kw):
    base = dict(
        latent_dim=3,
        channels=(2, 4, 4, 4),
        batch_size=2,
        max_epochs=4,
        patience=10,
        learning_rate=1e-3,
        seed=5,
        deterministic=True,
    )
    base.update(kw)
    return TrainSettings(**base)


def _data(cohort, tmp):
    tpl, rec, fit, mask_box = cohort
    return load_volumes(rec.gm_path.tolist(), tmp, tpl.shape, tpl.affine, 1, fit).data, mask_box


def test_training_is_deterministic_and_learns(cohort, tmp_path):
    data, mask = _data(cohort, tmp_path)
    a = train_autoencoder(data, mask, [0, 1, 2, 3], [4], _settings(), "cpu")
    b = train_autoencoder(data, mask, [0, 1, 2, 3], [4], _settings(), "cpu")
    assert list(a.history.train_loss) == list(b.history.train_loss)
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(va, vb), k
    assert a.history.train_loss.iloc[-1] < a.history.train_loss.iloc[0]
    assert a.placement == "cpu" and 0 <= a.data_wait_share < 1


def test_early_stopping(cohort, tmp_path):
    data, mask = _data(cohort, tmp_path)
    res = train_autoencoder(
        data,
        mask,
        [0, 1, 2, 3],
        [4],
        _settings(max_epochs=30, patience=1, learning_rate=0.05),
        "cpu",
    )
    assert res.stopped_early and len(res.history) < 30
    assert res.best_val_loss == pytest.approx(res.history.val_loss.min())


class Interrupt(Exception):
    pass


def test_resume_after_interruption_matches_uninterrupted(cohort, tmp_path):
    data, mask = _data(cohort, tmp_path)
    settings = _settings(max_epochs=5)
    full = train_autoencoder(
        data, mask, [0, 1, 2, 3], [4, 5], settings, "cpu", checkpoint_dir=tmp_path / "a"
    )

    def stop_after_two(epoch, row):
        if epoch == 2:
            raise Interrupt()

    with pytest.raises(Interrupt):
        train_autoencoder(
            data,
            mask,
            [0, 1, 2, 3],
            [4, 5],
            settings,
            "cpu",
            checkpoint_dir=tmp_path / "b",
            on_epoch_end=stop_after_two,
        )
    resumed = train_autoencoder(
        data, mask, [0, 1, 2, 3], [4, 5], settings, "cpu", checkpoint_dir=tmp_path / "b"
    )
    assert resumed.resumed_from == 3
    assert list(resumed.history.train_loss) == list(full.history.train_loss)
    assert list(resumed.history.val_loss) == list(full.history.val_loss)
    for (k, va), vb in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(va, vb), k
    # a finished run resumes as "done" without training again
    again = train_autoencoder(
        data, mask, [0, 1, 2, 3], [4, 5], settings, "cpu", checkpoint_dir=tmp_path / "b"
    )
    assert again.resumed_from == 6 and len(again.history) == 5
    # other settings ignore the checkpoint
    other = train_autoencoder(
        data,
        mask,
        [0, 1, 2, 3],
        [4, 5],
        _settings(max_epochs=2),
        "cpu",
        checkpoint_dir=tmp_path / "b",
    )
    assert other.resumed_from is None


def test_encoding_follows_row_order_and_regional_error(cohort, tmp_path):
    import pandas as pd

    from latentbids.model.encoding import encode_all, iter_encode, regional_error

    data, mask = _data(cohort, tmp_path)
    res = train_autoencoder(data, mask, [0, 1, 2], [3], _settings(max_epochs=1), "cpu")
    z_all, e_all = encode_all(res.model, data, [4, 0, 2, 5, 1], mask, batch_size=2)
    for i, r in enumerate([4, 0, 2, 5, 1]):
        z_one, e_one = encode_all(res.model, data, [r], mask, batch_size=1)
        np.testing.assert_allclose(z_all[i], z_one[0], rtol=1e-5, atol=1e-6)
        assert e_all[i] == pytest.approx(e_one[0], rel=1e-5)
    batch = next(iter_encode(res.model, data, [1], mask))
    assert (batch.error_map[0][mask == 0] == 0).all()
    assert batch.error[0] == pytest.approx(batch.error_map[0].sum() / mask.sum(), rel=1e-5)
    atlas = np.zeros(mask.shape, dtype=int)
    atlas[mask > 0] = 1
    atlas[0, 0, 0] = 2  # a region outside the mask has no voxel
    labels = pd.DataFrame({"index": [1, 2, 3], "name": ["a", "b", "c"]})
    table = regional_error(batch.error_map[0], atlas, labels, mask)
    assert table.error[0] == pytest.approx(batch.error[0], rel=1e-5)
    assert table.n_voxels.tolist()[1:] == [0, 0] and table.error[1:].isna().all()


def test_out_of_memory_retries_with_smaller_batches(cohort, tmp_path, monkeypatch):
    """The OOM fallback (written for CUDA) exercised on CPU with an injected torch.OutOfMemoryError."""
    from latentbids.model import encoding, network

    data, mask = _data(cohort, tmp_path)
    original = network.AutoEncoder3D.forward

    def small_batches_only(self, x):
        if x.shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, x)

    monkeypatch.setattr(network.AutoEncoder3D, "forward", small_batches_only)
    res = train_autoencoder(
        data, mask, [0, 1, 2, 3], [4], _settings(max_epochs=2, batch_size=4), "cpu"
    )
    assert res.micro_batch == 1 and len(res.oom_events) == 2  # 4 -> 2 -> 1, reported
    assert "retrying with micro-batches of 1" in res.oom_events[-1]
    assert len(res.history) == 2 and np.isfinite(res.history.train_loss).all()

    original_encode = network.AutoEncoder3D.encode

    def encode_small(self, x):
        if x.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory.")
        return original_encode(self, x)

    monkeypatch.setattr(network.AutoEncoder3D, "encode", encode_small)
    z, _ = encoding.encode_all(res.model, data, [0, 1, 2, 3, 4], mask, batch_size=4)
    assert z.shape == (5, 3) and np.isfinite(z).all()


class _RunsCode:
    """What a hostile checkpoint holds: unpickling it calls a function of the attacker's choice."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_checkpoint_is_refused_without_running_code(cohort, tmp_path, caplog):
    import logging

    data, mask = _data(cohort, tmp_path)
    settings = _settings(max_epochs=1)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    marker = tmp_path / "pwned"
    torch.save({"fingerprint": None, "payload": _RunsCode(marker)}, folder / "last.pt")
    with caplog.at_level(logging.WARNING, logger="latentbids.model"):
        res = train_autoencoder(data, mask, [0, 1, 2, 3], [4, 5], settings, "cpu", checkpoint_dir=folder)
    assert not marker.exists()  # nothing from the file ran
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1 and "\n" not in refused[0]
    assert "system" in refused[0] and str(folder / "last.pt") in refused[0]
    assert res.resumed_from is None and len(res.history) == 1  # trained from scratch
    # the next epoch's checkpoint replaced the file with a plain one that loads safely
    from latentbids.model.checkpoint import load_checkpoint

    assert load_checkpoint(folder / "last.pt")["epoch"] == 1


def test_a_damaged_checkpoint_is_ignored(cohort, tmp_path, caplog):
    data, mask = _data(cohort, tmp_path)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "last.pt").write_bytes(b"PK\x03\x04 truncated")
    res = train_autoencoder(data, mask, [0, 1, 2, 3], [4, 5], _settings(max_epochs=1), "cpu",
                            checkpoint_dir=folder)
    assert res.resumed_from is None
    assert any("unreadable" in r.getMessage() for r in caplog.records)
