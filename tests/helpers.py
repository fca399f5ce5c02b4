"""Helpers shared by tests: run the CLI in a subprocess, make small BIDS datasets."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=None, timeout=600, entry="latentbids") -> subprocess.CompletedProcess:
    """Run a console script of this package in a subprocess (as a user would)."""
    exe = Path(sys.executable).parent / entry
    cmd = [str(exe), *map(str, args)]
    env = dict(os.environ, NIPYPE_NO_ET="1")
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


def copy_dataset(src: Path, dst: Path, subjects: list[str] | None = None) -> Path:
    """Copy a BIDS dataset (optionally only some subjects) to a writable place."""
    def ignore(folder, names):
        if Path(folder) == src and subjects is not None:
            return [n for n in names if n.startswith("sub-") and n[4:] not in subjects] + ["derivatives"]
        return []

    shutil.copytree(src, dst, ignore=ignore)
    for path in dst.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    dst.chmod(0o755)
    return dst


def write_minimal_dataset(root: Path, images: dict[str, np.ndarray | bytes | None], affine=None) -> Path:
    """A raw BIDS dataset with one T1w per subject: array data, raw bytes, or None for no file."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "test", "BIDSVersion": "1.9.0", "DatasetType": "raw", "License": "CC0"})
    )
    rows = ["participant_id"]
    for subject, content in images.items():
        anat = root / f"sub-{subject}" / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        path = anat / f"sub-{subject}_T1w.nii.gz"
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            img = nib.Nifti1Image(content, np.eye(4) if affine is None else affine)
            nib.save(img, str(path))
        rows.append(f"sub-{subject}")
    (root / "participants.tsv").write_text("\n".join(rows) + "\n")
    return root
