"""The template grid and the atlas as files in the work dir: what the participant nodes read.

Nipype passes file names between nodes, so each grid's images (T1w brain, brain mask, CSF/GM/WM
priors) and the atlas resampled onto it are written once into ``<work dir>/resources/``, from the
:class:`~latentbids.resources.Template` and :class:`~latentbids.resources.Atlas` the run resolved
(:func:`latentbids.settings.resolve_run`); nothing here loads a template or an atlas again.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class TemplateFiles:
    """One grid and the atlas on it, as files (see :func:`write_template_files`)."""

    space: str
    resolution: float  # mm
    res_entity: str  # the res- entity value of file names
    t1w: str
    mask: str
    csf: str
    gm: str
    wm: str
    atlas: str  # labels resampled onto the grid
    atlas_labels: str  # index/name TSV
    atlas_name: str  # the atlas- entity value
    resolution_text: str  # the Resolution sidecar value
    spatial_reference: str  # the SpatialReference sidecar value (the grid's reference image)


def write_template_files(template, atlas, work_dir: str | Path) -> TemplateFiles:
    """Write ``template``'s images and ``atlas`` on its grid once into ``<work_dir>/resources``.

    Parameters
    ----------
    template : latentbids.resources.Template
        One output space's grid.
    atlas : latentbids.resources.Atlas
        The run's atlas (resampled here onto the grid, nearest neighbour).
    work_dir : path-like
        The run's work dir.

    Returns
    -------
    TemplateFiles
        The files' paths and the grid's names.  The folder is keyed by the atlas content, so another
        atlas with the same name never reuses it; existing files are kept (their timestamps are part
        of Nipype's cache keys, so rewriting them would rerun every subject), and concurrent jobs on
        one work dir write them once under a lock.
    """
    from latentbids.resources import resample_atlas
    from latentbids.utils.atomic import save_nifti, write_tsv
    from latentbids.utils.locks import locked

    space, res = template.space, template.res
    digest = hashlib.sha256(np.ascontiguousarray(atlas.img.dataobj).tobytes())
    digest.update(atlas.label_table().to_csv(sep="\t", index=False).encode())
    folder = Path(work_dir) / "resources" / f"tpl-{space}_res-{res}_atlas-{atlas.bids_name}-{digest.hexdigest()[:8]}"
    paths = {key: folder / f"tpl-{space}_res-{res}_{key}.nii.gz" for key in ("t1w", "mask", "csf", "gm", "wm")}
    atlas_path = folder / f"atlas-{atlas.bids_name}_res-{res}_dseg.nii.gz"
    labels_path = folder / f"atlas-{atlas.bids_name}_dseg.tsv"
    with locked(folder.parent / f".{folder.name}.lock"):
        for key, path in paths.items():
            if not path.is_file():
                save_nifti(getattr(template, key), path)
        if not atlas_path.is_file():
            save_nifti(resample_atlas(atlas, template.t1w), atlas_path)
        if not labels_path.is_file():
            write_tsv(atlas.label_table(), labels_path)
    return TemplateFiles(
        space=space, resolution=template.resolution, res_entity=res, atlas=str(atlas_path),
        atlas_labels=str(labels_path), atlas_name=atlas.bids_name, resolution_text=template.resolution_text,
        spatial_reference=template.spatial_reference, **{key: str(path) for key, path in paths.items()},
    )
