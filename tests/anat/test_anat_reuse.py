"""Finding and resampling GM maps of other pipelines (-d/--derivatives)."""
from __future__ import annotations

import nibabel as nib
import numpy as np

from latentbids.anat.reuse import find_existing_gm_map, resample_to_grid, unmodulated_partner


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_smriprep_layout_prefers_our_space(tmp_path):
    root = tmp_path / "smriprep"
    anat = root / "sub-01" / "anat"
    touch(anat / "sub-01_label-GM_probseg.nii.gz")  # native: ignored
    touch(anat / "sub-01_space-MNI152NLin6Asym_res-2_label-GM_probseg.nii.gz")
    best = touch(anat / "sub-01_space-MNI152NLin2009aSym_res-2_label-GM_probseg.nii.gz")
    touch(root / "sub-010" / "anat" / "sub-010_space-MNI152NLin2009aSym_label-GM_probseg.nii.gz")
    assert find_existing_gm_map({"smriprep": str(root)}, "01") == (str(best), "smriprep")
    assert find_existing_gm_map({"smriprep": str(root)}, "02") is None
    assert find_existing_gm_map({"smriprep": str(root)}, "01", "1") is None


def test_smriprep_sessions(tmp_path):
    root = tmp_path / "fmriprep"
    one = touch(root / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_space-MNI152NLin2009cAsym_label-GM_probseg.nii.gz")
    two = touch(root / "sub-01" / "ses-2" / "anat" / "sub-01_ses-2_space-MNI152NLin2009cAsym_label-GM_probseg.nii.gz")
    assert find_existing_gm_map({"f": str(root)}, "01", "1") == (str(one), "smriprep")
    assert find_existing_gm_map({"f": str(root)}, "01", "2") == (str(two), "smriprep")


def test_cat12_layouts(tmp_path):
    root = tmp_path / "cat12"
    mwp1 = touch(root / "sub-01" / "anat" / "mri" / "mwp1sub-01_T1w.nii")
    touch(root / "sub-01" / "anat" / "mri" / "wp1sub-01_T1w.nii")
    assert find_existing_gm_map({"cat": str(root), "none": str(tmp_path / "nothing")}, "01") == (str(mwp1), "cat12")
    assert unmodulated_partner(mwp1) == str(mwp1.with_name("wp1sub-01_T1w.nii"))
    flat = tmp_path / "cat12flat"
    hit = touch(flat / "mri" / "mwp1sub-02_T1w.nii")
    touch(flat / "mri" / "mwp1sub-020_T1w.nii")
    assert find_existing_gm_map({"cat": str(flat)}, "02") == (str(hit), "cat12")


def test_first_derivative_wins(tmp_path):
    a = touch(tmp_path / "a" / "sub-01" / "anat" / "sub-01_space-MNI152NLin2009aSym_label-GM_probseg.nii.gz")
    touch(tmp_path / "b" / "sub-01" / "anat" / "mri" / "mwp1sub-01_T1w.nii")
    assert find_existing_gm_map({"a": str(tmp_path / "a"), "b": str(tmp_path / "b")}, "01")[0] == str(a)


def test_resample_to_grid(tmp_path):
    src = np.zeros((30, 30, 30), np.float32)
    src[10:20, 10:20, 10:20] = 1.2
    src[0, 0, 0] = np.nan
    aff = np.diag([1.5, 1.5, 1.5, 1.0])
    aff[:3, 3] = -20
    nib.save(nib.Nifti1Image(src, aff), tmp_path / "in.nii.gz")
    ref_aff = np.diag([2.0, 2.0, 2.0, 1.0])
    ref_aff[:3, 3] = -20
    ref = nib.Nifti1Image(np.zeros((23, 23, 23), np.float32), ref_aff)
    out = nib.load(resample_to_grid(tmp_path / "in.nii.gz", ref, tmp_path / "p.nii.gz"))
    assert out.shape == ref.shape and np.allclose(out.affine, ref_aff)
    assert np.isfinite(out.get_fdata()).all() and out.get_fdata().max() == 1.0
    mod = nib.load(resample_to_grid(tmp_path / "in.nii.gz", ref, tmp_path / "m.nii.gz", clip01=False))
    assert mod.get_fdata().max() > 1.0


def test_cat12_sessions_match_whole_labels(tmp_path):
    """ses-1 must not pick ses-10's map, and a session-less lookup must not pick a session's map."""
    from latentbids.anat.reuse import find_existing_gm_map

    for rel in ("sub-01/ses-10/mri/mwp1sub-01_ses-10_T1w.nii", "sub-01/ses-1/mri/mwp1sub-01_ses-1_T1w.nii",
                "sub-02/ses-2/mri/mwp1T1.nii"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    cat12 = {"cat12": str(tmp_path)}
    assert find_existing_gm_map(cat12, "01", "1")[0].endswith("ses-1/mri/mwp1sub-01_ses-1_T1w.nii")
    assert find_existing_gm_map(cat12, "01", "10")[0].endswith("ses-10/mri/mwp1sub-01_ses-10_T1w.nii")
    assert find_existing_gm_map(cat12, "02", None) is None
    assert find_existing_gm_map(cat12, "02", "2") == (str(tmp_path / "sub-02/ses-2/mri/mwp1T1.nii"), "cat12")
