"""Template images (T1w brain, brain mask, CSF/GM/WM priors) on a named grid.

Two providers, both offline:

* **TemplateFlow** (:mod:`latentbids.resources.templateflow_cache`): ``SPACE:res-N`` is TemplateFlow's
  resolution index ``N``, as in fMRIPrep (``MNI152NLin2009cAsym:res-2`` is its 2 mm, 97x115x97 grid).
  Files come from the TemplateFlow cache through TemplateFlow's client; nothing is downloaded.
* **nilearn**: ``MNI152NLin2009aSym`` (ICBM 2009a symmetric) ships inside the nilearn wheel, on
  nilearn's own grid (197x233x189 at 1 mm, resampled to other sizes).  TemplateFlow defines a
  different grid for that template (res-1 only, 193x229x193), so nilearn's grid gets its own label,
  ``res-nilearn<mm>`` (e.g. ``res-nilearn2``), and its ``SpatialReference`` points at a copy of the grid
  written into the output dataset.  It is used for ``MNI152NLin2009aSym:res-nilearn<mm>`` and for
  ``MNI152NLin2009aSym:res-<N>`` when TemplateFlow defines no ``res-<N>`` for it (the default
  ``res-2``), never silently in place of a TemplateFlow grid that exists.
"""
from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from latentbids.bids.naming import NILEARN_RES_PREFIX, res_label, self_uri
from latentbids.errors import MissingInputError, UsageError

LOGGER = logging.getLogger("latentbids")

DEFAULT_SPACE = "MNI152NLin2009aSym"
NILEARN_SPACE = "MNI152NLin2009aSym"
NILEARN_PREFIX = NILEARN_RES_PREFIX
#: The default ``--output-spaces`` entry: nilearn's 2 mm grid (works with no TemplateFlow cache).
DEFAULT_OUTPUT_SPACE = f"{NILEARN_SPACE}:res-{NILEARN_PREFIX}2"


@dataclass(frozen=True)
class Template:
    """A template on one grid: T1w brain, brain mask and tissue probability priors.

    All images share ``shape`` and ``affine``.  Priors are float32 in [0, 1]; CSF, GM and WM sum
    to at most 1 inside the mask.  ``resolution`` is the voxel size in mm; ``res_entity`` the value
    of the ``res-`` entity in file names (a TemplateFlow index, or ``nilearn<mm>``).
    """

    space: str
    resolution: float
    t1w: nib.Nifti1Image
    mask: nib.Nifti1Image
    csf: nib.Nifti1Image
    gm: nib.Nifti1Image
    wm: nib.Nifti1Image
    source: str
    res_entity: str = ""
    spatial_reference: str = ""
    provider: str = "nilearn"

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.t1w.shape[:3])

    @property
    def affine(self) -> np.ndarray:
        return self.t1w.affine

    @property
    def res(self) -> str:
        """The ``res-`` entity value of this grid."""
        return self.res_entity or res_label(self.resolution)

    @property
    def name(self) -> str:
        """BIDS-style name of the grid, e.g. ``MNI152NLin2009aSym_res-nilearn2``."""
        return f"{self.space}_res-{self.res}"

    @property
    def spec(self) -> str:
        """The ``--output-spaces`` entry that selects exactly this grid."""
        return f"{self.space}:res-{self.res}"

    @property
    def reference_file(self) -> str | None:
        """Where a copy of the grid goes in the output dataset (grids with no public URL only)."""
        if self.provider != "nilearn":
            return None
        return f"tpl-{self.space}/tpl-{self.space}_res-{self.res}_T1w.nii.gz"

    @property
    def resolution_text(self) -> str:
        """The ``Resolution`` sidecar value: voxel size, grid shape and where the grid comes from."""
        shape = "x".join(str(s) for s in self.shape)
        return f"{self.resolution:g} mm isotropic grid of {self.space}, {shape} voxels ({self.source})"


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
    import nilearn

    res = f"{NILEARN_PREFIX}{res_label(resolution)}"
    return Template(
        space=NILEARN_SPACE,
        resolution=float(resolution),
        t1w=_float_img(t1_d, affine),
        mask=nib.Nifti1Image(mask_d.astype(np.uint8), affine),
        csf=_float_img(csf_d, affine),
        gm=_float_img(gm_d, affine),
        wm=_float_img(wm_d, affine),
        source=(f"nilearn {nilearn.__version__} ICBM152 2009a symmetric template on nilearn's grid, "
                "not a TemplateFlow grid"),
        res_entity=res,
        spatial_reference=self_uri(f"tpl-{NILEARN_SPACE}/tpl-{NILEARN_SPACE}_res-{res}_T1w.nii.gz"),
        provider="nilearn",
    )


@functools.lru_cache(maxsize=8)
def _templateflow_template(space: str, index: int, home: str) -> Template:
    from latentbids.resources.templateflow_cache import resolve_files, s3_url

    files = resolve_files(space, index, home)
    try:
        imgs = {k: nib.load(str(v)) for k, v in files.items()}
        affine = imgs["t1w"].affine
        mask = (np.asarray(imgs["mask"].dataobj) > 0).astype(np.uint8)
        t1 = np.asarray(imgs["t1w"].get_fdata(), dtype=np.float32) * mask
        priors = {k: np.clip(imgs[k].get_fdata(), 0, 1) for k in ("csf", "gm", "wm")}
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a broken cache, said in one line
        raise MissingInputError(
            f"TemplateFlow files of {space} res-{index} in {home} cannot be read ({type(exc).__name__}: "
            f"{exc}): delete them and prefetch again (python -m latentbids.resources.templates --prefetch "
            f"{space}:res-{index})"
        ) from None
    zooms = imgs["t1w"].header.get_zooms()[:3]
    return Template(
        space=space,
        resolution=float(zooms[0]),
        t1w=_float_img(t1, affine),
        mask=nib.Nifti1Image(mask, affine),
        csf=_float_img(priors["csf"], affine),
        gm=_float_img(priors["gm"], affine),
        wm=_float_img(priors["wm"], affine),
        source=f"TemplateFlow tpl-{space} res-{index}",
        res_entity=str(index),
        spatial_reference=s3_url(files["t1w"], home),
        provider="templateflow",
    )


@functools.lru_cache(maxsize=8)
def _announce_nilearn_fallback(index: int, defined: tuple[int, ...]) -> None:
    listed = ", ".join(f"res-{i}" for i in defined) or "none"
    LOGGER.info("TemplateFlow defines no res-%d for %s (it has %s): using nilearn's %d mm grid, named "
                "res-%s%d", index, NILEARN_SPACE, listed, index, NILEARN_PREFIX, index)


def _split_resolution(resolution) -> tuple[str, float | None]:
    """``(provider hint, number)``: ``nilearn2`` -> ("nilearn", 2.0), ``"2"``/2 -> ("", 2.0)."""
    text = str(resolution).strip()
    provider = ""
    if text.startswith(NILEARN_PREFIX):
        provider, text = NILEARN_PREFIX, text[len(NILEARN_PREFIX):]
    try:
        return provider, float(text.replace("p", "."))
    except ValueError:
        return provider, None


def get_template(
    space: str = DEFAULT_SPACE,
    resolution: float | int | str = 2,
    templateflow_home: str | os.PathLike | None = None,
) -> Template:
    """Return the template ``space`` on the grid ``resolution`` names, offline.

    Parameters
    ----------
    space : str
        A TemplateFlow identifier (e.g. ``MNI152NLin2009cAsym``) or ``MNI152NLin2009aSym``.
    resolution : int, float or str
        The ``res-`` value of ``--output-spaces`` (a string): a TemplateFlow resolution index, or for
        ``MNI152NLin2009aSym`` ``nilearn<mm>`` (nilearn's grid, any voxel size; ``1p5`` = 1.5 mm).
        An index TemplateFlow does not define for ``MNI152NLin2009aSym`` means nilearn's grid at
        that many mm (the old ``res-2`` default; logged).  A *number* for ``MNI152NLin2009aSym`` is
        millimetres on nilearn's grid (what the simulator and tests ask for).
    templateflow_home : path, optional
        TemplateFlow cache; defaults to ``$TEMPLATEFLOW_HOME``, then TemplateFlow's own default.
    """
    from latentbids.resources.templateflow_cache import defined_resolutions
    from latentbids.resources.templateflow_cache import templateflow_home as tf_home

    provider, number = _split_resolution(resolution)
    if number is None or number <= 0 or number > 10:
        raise UsageError(f"Template resolution '{resolution}' of {space} is not valid: use e.g. res-2 or "
                         f"res-{NILEARN_PREFIX}2")
    if provider == NILEARN_PREFIX:
        if space != NILEARN_SPACE:
            raise UsageError(f"res-{NILEARN_PREFIX}* names nilearn's grid, which exists only for {NILEARN_SPACE} "
                             f"(not {space}): use a TemplateFlow resolution index, e.g. {space}:res-2")
        return _nilearn_template(number)
    home = tf_home(templateflow_home)
    defined = defined_resolutions(space, home)
    index = int(number) if float(number).is_integer() else None
    if space == NILEARN_SPACE and not isinstance(resolution, str):
        return _nilearn_template(number)  # a number from code is millimetres on nilearn's grid
    if space == NILEARN_SPACE and (index is None or index not in defined):
        if index is not None:
            _announce_nilearn_fallback(index, tuple(sorted(defined)))
        return _nilearn_template(number)
    if index is None:
        raise UsageError(f"res-{resolution} of {space} is not a TemplateFlow resolution index: use e.g. {space}:res-2")
    if defined and index not in defined:
        listed = ", ".join(f"res-{i} ({v.get('zooms', ['?'])[0]} mm)" for i, v in sorted(defined.items()))
        raise UsageError(f"TemplateFlow defines no res-{index} for {space}; it has {listed}: pick one of those")
    if not defined and not (home / f"tpl-{space}").is_dir():
        raise MissingInputError(
            f"Template space '{space}' is neither a TemplateFlow template nor in the TemplateFlow cache {home}: "
            f"check the name, or use --output-spaces {DEFAULT_OUTPUT_SPACE} (offline)"
        )
    return _templateflow_template(space, index, str(home))


def parse_output_space(spec: str) -> tuple[str, str]:
    """Split an ``--output-spaces`` item into ``(space, res)``: ``MNI152NLin2009cAsym:res-2`` ->
    ``("MNI152NLin2009cAsym", "2")``; no ``res-`` means ``"2"``."""
    space, _, rest = str(spec).partition(":")
    res = "2"
    if rest:
        key, _, value = rest.partition("-")
        if key != "res" or not value:
            raise UsageError(f"--output-spaces '{spec}' is not SPACE[:res-N]: write e.g. {DEFAULT_OUTPUT_SPACE}")
        if not re.fullmatch(r"[A-Za-z0-9]+", value):
            raise UsageError(f"--output-spaces '{spec}': resolution '{value}' must be letters and digits, e.g. res-2")
        res = str(int(value)) if value.isdigit() else value
    if not space or not re.fullmatch(r"[A-Za-z0-9+]+", space):
        raise UsageError(f"--output-spaces '{spec}' names no valid space: write e.g. {DEFAULT_OUTPUT_SPACE}")
    return space, res


def templates_for(specs: list[str], templateflow_home: str | os.PathLike | None = None) -> list[Template]:
    """The templates of every ``--output-spaces`` entry, in order; one grid per template space.

    Two resolutions of one template would write maps, transforms and tables under the same
    ``space-`` names, so they are refused (exit 64).
    """
    templates = [get_template(*parse_output_space(spec), templateflow_home) for spec in specs]
    seen: dict[str, str] = {}
    for spec, tpl in zip(specs, templates, strict=True):
        if tpl.space in seen:
            raise UsageError(f"--output-spaces lists {tpl.space} twice ({seen[tpl.space]} and {spec}): give one "
                             "resolution per template space")
        seen[tpl.space] = spec
    return templates


if __name__ == "__main__":  # pragma: no cover - python -m latentbids.resources.templates --prefetch
    import sys

    from latentbids.resources.prefetch import main

    sys.exit(main())
