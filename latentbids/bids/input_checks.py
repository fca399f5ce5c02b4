"""Checks on each T1w image before any work is spent on it.

Policy (documented in docs/usage.md): every selected image is checked; a bad image gets one
log line naming the file and the problem; the run goes on with the good images and the exit code
says that inputs were rejected (66), or 66 at once when no image is usable.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentbids.bids.jobs import T1wJob

LOGGER = logging.getLogger("latentbids")


@dataclass(frozen=True)
class InputProblem:
    """Why one input file was rejected."""

    job: T1wJob
    reason: str

    def __str__(self) -> str:
        return f"{self.job.path}: {self.reason}"


def check_t1w(path: str | Path) -> str | None:
    """Return ``None`` if ``path`` is a usable 3-D T1w image, else a one-line reason with the fix."""
    import nibabel as nib

    path = Path(path)
    if not path.exists():
        return "file does not exist (a broken symlink or a git-annex file not fetched? run 'datalad get')"
    if path.stat().st_size == 0:
        return "file is empty (0 bytes): replace it with the real image"
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises ImageFileError, EOFError, OSError, ...
        return f"cannot be read as NIfTI ({type(exc).__name__}: {exc}): re-export or re-download the image"
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        return (f"is {len(shape)}-D with shape {tuple(shape)}: a T1w must be one 3-D volume "
                "(split or average 4-D series first)")
    if min(shape) < 8:
        return f"has shape {tuple(shape)}, too small for a head image: check that this is the T1w"
    affine = img.affine
    if affine is None or not np.all(np.isfinite(affine)):
        return "has a non-finite affine: fix the qform/sform in the header"
    det = abs(np.linalg.det(affine[:3, :3]))
    if det < 1e-6:
        return "has a singular affine (zero voxel size or collapsed axes): fix the qform/sform in the header"
    zooms = np.asarray(img.header.get_zooms()[:3], dtype=float)
    if np.any(zooms <= 0) or np.any(zooms > 20):
        return f"has voxel sizes {tuple(np.round(zooms, 3))} mm: fix pixdim in the header"
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:
        return (f"image data cannot be read ({type(exc).__name__}: {exc}): "
                "the file is truncated or corrupt; re-export it")
    if not np.all(np.isfinite(data)):
        return "contains NaN or infinite values: re-export the image"
    if not np.any(data):
        return "is all zeros: the image holds no data; replace it"
    if np.ptp(data) <= 0:
        return "has a single constant value: the image holds no contrast; replace it"
    return None


def check_jobs(jobs: list[T1wJob]) -> tuple[list[T1wJob], list[InputProblem]]:
    """Split ``jobs`` into the usable ones and the problems found in the others (each logged)."""
    good, bad = [], []
    for job in jobs:
        # A job reusing a GM map from -d/--derivatives is judged by that map, not by its T1w.
        reason = check_t1w(job.gm_map or job.path)
        if reason is None:
            good.append(job)
        else:
            problem = InputProblem(job, reason)
            LOGGER.error("Input rejected: %s", problem)
            bad.append(problem)
    return good, bad

