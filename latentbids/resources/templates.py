"""Template images (T1w brain, brain mask, CSF/GM/WM priors) on a given grid.

``MNI152NLin2009aSym`` (ICBM 2009a symmetric) ships inside the nilearn wheel and is the offline
default.  Any other TemplateFlow space is read straight from a TemplateFlow cache folder
(``templateflow_home`` or ``$TEMPLATEFLOW_HOME``).  We look files up in the cache ourselves instead of
calling ``templateflow.api.get`` because the client downloads what is missing, and a run on a
compute node (or in CI) must never reach the network.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from latentbids.bids.naming import res_label
from latentbids.errors import MissingInputError, UsageError

DEFAULT_SPACE = "MNI152NLin2009aSym"
NILEARN_SPACE = "MNI152NLin2009aSym"


@dataclass(frozen=True)
class Template:
    """A template on one grid: T1w brain, brain mask and tissue probability priors.

    All images share ``shape`` and ``affine``.  Priors are float32 in [0, 1]; CSF, GM and WM sum
    to at most 1 inside the mask.
    """

    space: str
    resolution: float
    t1w: nib.Nifti1Image
    mask: nib.Nifti1Image
    csf: nib.Nifti1Image
    gm: nib.Nifti1Image
    wm: nib.Nifti1Image
    source: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.t1w.shape[:3])

    @property
    def affine(self) -> np.ndarray:
        return self.t1w.affine

    @property
    def name(self) -> str:
        """BIDS-style name of the grid, e.g. ``MNI152NLin2009aSym_res-2``."""
        return f"{self.space}_res-{res_label(self.resolution)}"


def _float_img(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    img.header.set_xyzt_units("mm")
    return img


@functools.lru_cache(maxsize=8)
def _nilearn_template(resolution: float) -> Template:
    from nilearn import datasets, image

    # nilearn takes integer millimetres only; other sizes are resampled from the 1 mm images.
    native = int(resolution) if float(resolution).is_integer() else 1
    t1 = datasets.load_mni152_template(resolution=native)
    mask = datasets.load_mni152_brain_mask(resolution=native)
    gm = datasets.load_mni152_gm_template(resolution=native)
    wm = datasets.load_mni152_wm_template(resolution=native)
    if native != resolution:
        target = np.diag([resolution] * 3 + [1.0])
        target[:3, 3] = t1.affine[:3, 3]
        shape = tuple(int(np.ceil(s / resolution)) for s in t1.shape)
        kw = dict(target_affine=target, target_shape=shape, force_resample=True, copy_header=True)
        t1, gm, wm = (image.resample_img(i, interpolation="continuous", **kw) for i in (t1, gm, wm))
        mask = image.resample_img(mask, interpolation="nearest", **kw)
    affine = t1.affine
    mask_d = (np.asarray(mask.dataobj) > 0).astype(np.float32)
    gm_d = np.clip(np.asarray(gm.get_fdata(), dtype=np.float32), 0, 1)
    wm_d = np.clip(np.asarray(wm.get_fdata(), dtype=np.float32), 0, 1)
    # nilearn ships no CSF prior: CSF is what the mask holds beyond GM and WM.
    csf_d = np.clip(mask_d - gm_d - wm_d, 0, 1) * mask_d
    t1_d = np.asarray(t1.get_fdata(), dtype=np.float32)
    return Template(
        space=NILEARN_SPACE,
        resolution=float(resolution),
        t1w=_float_img(t1_d, affine),
        mask=nib.Nifti1Image(mask_d.astype(np.uint8), affine),
        csf=_float_img(csf_d, affine),
        gm=_float_img(gm_d, affine),
        wm=_float_img(wm_d, affine),
        source=f"nilearn (ICBM152 2009a symmetric, resolution {resolution} mm)",
    )


def _templateflow_home(templateflow_home: str | os.PathLike | None) -> Path:
    if templateflow_home:
        return Path(templateflow_home)
    env = os.environ.get("TEMPLATEFLOW_HOME")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "templateflow"


def _find_one(folder: Path, patterns: list[str]) -> Path | None:
    for pattern in patterns:
        hits = sorted(folder.glob(pattern))
        if hits:
            return hits[0]
    return None


@functools.lru_cache(maxsize=8)
def _templateflow_template(space: str, resolution: float, home: str) -> Template:
    folder = Path(home) / f"tpl-{space}"
    if not folder.is_dir():
        raise MissingInputError(
            f"Template space '{space}' is not in the TemplateFlow cache {home}: prefetch it there "
            f"(python -c \"import templateflow.api as t; t.get('{space}', resolution={int(resolution)})\" "
            f"on a machine with internet) or use --output-spaces {DEFAULT_SPACE}"
        )
    res = f"res-{int(resolution):02d}"
    found = {
        "t1w": _find_one(folder, [f"*{res}_desc-brain_T1w.nii.gz", f"*{res}_T1w.nii.gz"]),
        "mask": _find_one(folder, [f"*{res}_desc-brain_mask.nii.gz"]),
        "gm": _find_one(folder, [f"*{res}_label-GM_probseg.nii.gz"]),
        "wm": _find_one(folder, [f"*{res}_label-WM_probseg.nii.gz"]),
        "csf": _find_one(folder, [f"*{res}_label-CSF_probseg.nii.gz"]),
    }
    missing = [k for k, v in found.items() if v is None]
    if missing:
        raise MissingInputError(
            f"TemplateFlow cache {folder} lacks {', '.join(missing)} at {res} for {space}: prefetch "
            f"the T1w, brain mask and CSF/GM/WM probseg files at that resolution"
        )
    imgs = {k: nib.load(str(v)) for k, v in found.items()}
    affine = imgs["t1w"].affine
    mask = (np.asarray(imgs["mask"].dataobj) > 0).astype(np.uint8)
    t1 = np.asarray(imgs["t1w"].get_fdata(), dtype=np.float32) * mask
    return Template(
        space=space,
        resolution=float(resolution),
        t1w=_float_img(t1, affine),
        mask=nib.Nifti1Image(mask, affine),
        csf=_float_img(np.clip(imgs["csf"].get_fdata(), 0, 1), affine),
        gm=_float_img(np.clip(imgs["gm"].get_fdata(), 0, 1), affine),
        wm=_float_img(np.clip(imgs["wm"].get_fdata(), 0, 1), affine),
        source=f"TemplateFlow cache {folder}",
    )


def get_template(
    space: str = DEFAULT_SPACE,
    resolution: float = 2,
    templateflow_home: str | os.PathLike | None = None,
) -> Template:
    """Return the template ``space`` at ``resolution`` mm, offline.

    Parameters
    ----------
    space : str
        ``MNI152NLin2009aSym`` (shipped by nilearn, default) or any TemplateFlow identifier whose
        files are in the TemplateFlow cache.
    resolution : float
        Voxel size in mm.  nilearn's template is resampled to any size; TemplateFlow spaces need
        the ``res-XX`` files of that size in the cache.
    templateflow_home : path, optional
        TemplateFlow cache folder; defaults to ``$TEMPLATEFLOW_HOME``, then ``~/.cache/templateflow``.
    """
    resolution = float(resolution)
    if resolution <= 0 or resolution > 10:
        raise UsageError(f"Template resolution {resolution} mm is out of range: use e.g. res-2 (2 mm)")
    if space == NILEARN_SPACE:
        return _nilearn_template(resolution)
    return _templateflow_template(space, resolution, str(_templateflow_home(templateflow_home)))


def parse_output_space(spec: str) -> tuple[str, float]:
    """Parse an ``--output-spaces`` item such as ``MNI152NLin2009aSym:res-2`` into (space, mm)."""
    space, _, rest = spec.partition(":")
    resolution = 2.0
    if rest:
        key, _, value = rest.partition("-")
        if key != "res" or not value:
            raise UsageError(f"--output-spaces '{spec}' is not SPACE[:res-N]: write e.g. {DEFAULT_SPACE}:res-2")
        try:
            resolution = float(value.replace("p", "."))
        except ValueError:
            raise UsageError(f"--output-spaces '{spec}': resolution '{value}' is not a number") from None
    if not space:
        raise UsageError(f"--output-spaces '{spec}' names no space: write e.g. {DEFAULT_SPACE}:res-2")
    return space, resolution
