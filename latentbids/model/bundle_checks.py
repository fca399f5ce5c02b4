"""A model folder checked whole before any work starts (``--model`` at both levels).

Why up front: a user who points ``--model`` at a damaged, tampered or wrong folder must hear it in seconds,
not after hours of participant processing (issue 18: bad weights were found after 165 s, and only the
first subject's error was caught).  :func:`verify_bundle` reads everything :func:`load_bundle` reads and
also checks every file listed in ``SHA256SUMS``, loads every fold's weights as tensors only
(``weights_only``: a pickle never runs) into the recorded architecture, and compares the template grid
with the grid of the run.
"""
from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from latentbids.errors import MissingInputError
from latentbids.model.bundle import ModelBundle, load_bundle
from latentbids.model.files import inside, sha256_file


def _checksums(folder: Path) -> set[str]:
    """Check every file ``SHA256SUMS`` lists (present, inside the folder, same bytes); returns their names.

    Run before anything is parsed, so a symlink to a device or a swapped file is caught before it is read.
    """
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        raise MissingInputError(f"--model {folder} has no SHA256SUMS: copy the whole model folder")
    try:
        lines = [line.split(None, 1) for line in sums.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise MissingInputError(f"--model {folder}: SHA256SUMS unreadable ({exc}): recopy the model "
                                "folder") from None
    listed = set()
    for parts in lines:
        if len(parts) != 2:
            raise MissingInputError(f"--model {folder}: SHA256SUMS has a malformed line: recopy the model folder")
        digest, rel = parts[0], parts[1].strip()
        path = inside(folder, rel, rel)
        if sha256_file(path) != digest:
            raise MissingInputError(f"--model {folder}: {rel} does not match its sha256 in SHA256SUMS (the "
                                    "file was changed or is damaged): recopy the model folder or retrain")
        listed.add(Path(rel).as_posix())
    return listed


def verify_bundle(model_dir: str | os.PathLike, *, space: str | None = None, shape=None,
                  affine=None) -> ModelBundle:
    """Read a model folder and check it whole; raise a one-line error on the first problem.

    Parameters
    ----------
    model_dir : str or os.PathLike
        The model folder (``<output_dir>/models/<name>``).
    space : str, optional
        The run's template space; refused when the model was trained on another.
    shape : tuple of int, optional
        The run's template grid shape (voxels); with ``affine``, refused when the model's grid differs.
    affine : array-like of shape (4, 4), optional
        The run's template grid affine (mm).

    Returns
    -------
    ModelBundle
        The loaded folder (its weights proven loadable).

    Raises
    ------
    MissingInputError
        No folder, no or invalid ``model.json``, a path outside the folder, a missing file, a checksum
        that differs, weights that do not load as tensors of the recorded architecture (exit 66).
    UsageError
        A model of a newer format, or trained on another template or grid (exit 64).
    """
    path = Path(model_dir)
    if not path.is_dir():
        raise MissingInputError(f"--model {path} not found: pass a model folder written by the group level "
                                "(output_dir/models/<name>)")
    listed = _checksums(path)
    bundle = load_bundle(path)
    if not bundle.folds:
        raise MissingInputError(f"--model {path}: model.json lists no fold: recopy the model folder")
    required = {"model.json", "mask.nii.gz", "atlas.nii.gz", "atlas.tsv"}
    required |= {str(e.get(k)) for e in bundle.meta["folds"] for k in ("weights", "split")}
    unlisted = sorted(required - listed)
    if unlisted:
        raise MissingInputError(f"--model {path}: SHA256SUMS does not cover {', '.join(unlisted[:3])}: the folder "
                                "cannot be verified; recopy the whole model folder")
    for fold in bundle.folds:
        bundle.load_model(fold)  # sha256 in model.json, tensors only, the recorded architecture
    if shape is not None and affine is not None:
        probe = nib.Nifti1Image(np.zeros(tuple(int(s) for s in shape), np.uint8), np.asarray(affine, dtype=float))
        bundle.check_input(probe, space=space, name="run's template grid")
    return bundle
