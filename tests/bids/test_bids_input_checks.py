"""Per-file T1w checks: each bad input gets its own clear reason."""
from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from latentbids.bids.input_checks import check_jobs, check_t1w
from latentbids.bids.jobs import T1wJob


def _save_singular(path):
    """An image whose header affine collapses an axis (nibabel refuses to write one directly)."""
    img = nib.Nifti1Image(np.random.rand(16, 16, 16).astype(np.float32), None)
    hdr = img.header
    hdr["sform_code"], hdr["qform_code"] = 1, 0
    hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]
    img.to_filename(str(path))
    return path


def _save(path, data, affine=None):
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def test_real_scans_pass(ixi_dir):
    for path in sorted(ixi_dir.glob("sub-*/anat/*_T1w.nii.gz")):
        assert check_t1w(path) is None, path


def test_placeholder_images_are_rejected(bids_examples):
    reason = check_t1w(bids_examples / "pet002/sub-01/ses-baseline/anat/sub-01_ses-baseline_T1w.nii")
    assert reason and "cannot be read" in reason


@pytest.mark.parametrize(
    "name, make, needle",
    [
        ("empty", lambda p: p.write_bytes(b""), "empty (0 bytes)"),
        ("garbage", lambda p: p.write_bytes(gzip.compress(b"not a nifti" * 100)), "cannot be read"),
        ("2d", lambda p: _save(p, np.ones((32, 32), np.float32)), "2-D"),
        ("4d", lambda p: _save(p, np.ones((16, 16, 16, 3), np.float32)), "4-D"),
        ("zeros", lambda p: _save(p, np.zeros((16, 16, 16), np.float32)), "all zeros"),
        ("nan", lambda p: _save(p, np.full((16, 16, 16), np.nan, np.float32)), "NaN"),
        ("singular", _save_singular, "singular affine"),
        ("tiny", lambda p: _save(p, np.ones((4, 4, 4), np.float32)), "too small"),
    ],
)
def test_bad_inputs_named_with_reason(tmp_path, name, make, needle):
    path = tmp_path / f"{name}_T1w.nii.gz"
    make(path)
    reason = check_t1w(path)
    assert reason is not None and needle in reason


def test_truncated_gzip_is_rejected(tmp_path, ixi_dir):
    src = (ixi_dir / "sub-IXI012/anat/sub-IXI012_T1w.nii.gz").read_bytes()
    path = tmp_path / "trunc_T1w.nii.gz"
    path.write_bytes(src[: len(src) // 2])
    reason = check_t1w(path)
    assert reason is not None and ("truncated" in reason or "cannot be read" in reason)


def test_4d_with_one_volume_is_accepted(tmp_path):
    path = _save(tmp_path / "one_T1w.nii.gz", np.random.rand(16, 16, 16, 1).astype(np.float32))
    assert check_t1w(path) is None


def test_check_jobs_splits_good_and_bad(tmp_path, ixi_dir):
    good_path = ixi_dir / "sub-IXI012/anat/sub-IXI012_T1w.nii.gz"
    bad_path = tmp_path / "sub-bad_T1w.nii.gz"
    bad_path.write_bytes(b"")
    jobs = [T1wJob("IXI012", None, good_path, "x"), T1wJob("bad", None, bad_path, "y")]
    good, bad = check_jobs(jobs)
    assert good == jobs[:1]
    assert len(bad) == 1 and bad[0].job.subject == "bad" and str(bad_path) in str(bad[0])
