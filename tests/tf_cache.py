"""A TemplateFlow cache laid out by the tests (the real archive cannot be reached from here).

Files follow TemplateFlow's layout and its ``template_description.json`` (copied from the skeleton in
the templateflow wheel); the images are nilearn's ICBM 2009a template, shipped in the nilearn wheel,
resampled onto the grid TemplateFlow defines for that resolution.  Good enough to exercise the
lookup, the grid and the naming; not a substitute for the real MNI152NLin2009cAsym images.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np

from latentbids.resources.templateflow_cache import _skeleton_zip
from latentbids.resources.templates import get_template

SUFFIXES = {"t1w": "T1w", "mask": "desc-brain_mask", "gm": "label-GM_probseg", "wm": "label-WM_probseg",
            "csf": "label-CSF_probseg"}


def description(space: str) -> dict:
    with zipfile.ZipFile(_skeleton_zip()) as zf:
        return json.loads(zf.read(f"tpl-{space}/template_description.json"))


def write_space(home: Path, space: str, index: int, placeholders: tuple[str, ...] = ()) -> dict[str, Path]:
    """Write ``space`` at TemplateFlow's ``res-<index>`` into ``home``; ``placeholders``: keys left 0-byte."""
    from nilearn.image import resample_img

    desc = description(space)
    key = next(k for k in desc["res"] if int(k) == index)
    grid = desc["res"][key]
    zoom = float(grid["zooms"][0])
    affine = np.diag([zoom, zoom, zoom, 1.0])
    affine[:3, 3] = grid["origin"]
    shape = tuple(int(s) for s in grid["shape"])
    folder = home / f"tpl-{space}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "template_description.json").write_text(json.dumps(desc))
    source = get_template(resolution=zoom)
    written = {}
    for name, suffix in SUFFIXES.items():
        path = folder / f"tpl-{space}_res-{key}_{suffix}.nii.gz"
        if name in placeholders:
            path.write_bytes(b"")
        else:
            interpolation = "nearest" if name == "mask" else "continuous"
            img = resample_img(getattr(source, name), target_affine=affine, target_shape=shape,
                               interpolation=interpolation, force_resample=True, copy_header=True)
            nib.save(nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32 if name != "mask" else np.uint8),
                                     affine), str(path))
        written[name] = path
    return written
