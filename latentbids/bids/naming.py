"""Derivative file names: the one place that decides how latentbids names what it writes.

Entity order follows CONVENTIONS.md: sub, ses, (from, to, mode), space, atlas, res, label, desc, then
the suffix.  Every function returns a path relative to the derivatives root unless ``root`` is given.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from latentbids.bids.tables import is_missing

ENTITY_ORDER = ("sub", "ses", "from", "to", "mode", "space", "atlas", "res", "label", "desc")

#: Custom suffixes latentbids writes that the BIDS schema does not know; listed in .bidsignore.
CUSTOM_PATTERNS = (
    "*_latent.tsv",
    "*_latent.json",
    "*_recon.nii.gz",
    "*_recon.json",
    "*_error.nii.gz",
    "*_error.json",
    "*_regionerror.tsv",
    "*_regionerror.json",
    "*_qc.tsv",
    "*_qc.json",
    "*_volumes.json",
    "*_stats.tsv",
    "*_stats.json",
    "*.html",
    "*_xfm.h5",  # ANTs composite transforms: named as fMRIPrep does, not yet in the BIDS schema
    "*_figures",
    # Folders are listed without a trailing slash: bids-validator-deno only matches them that way.
    "logs",
    "models",
    "group",
    "log",
    "atlas-*_dseg.tsv",
    "atlas-*_dseg.json",
    "tpl-*",  # copies of grids that have no public URL (SpatialReference of nilearn's grid)
)

#: the ``res-`` prefix of nilearn's grids (``res-nilearn2``): never mistaken for a TemplateFlow index
NILEARN_RES_PREFIX = "nilearn"


def strip_prefix(label: str, prefix: str) -> str:
    """``sub-01`` -> ``01`` (labels may be given with or without the prefix)."""
    label = str(label).strip()
    return label[len(prefix) + 1 :] if label.startswith(prefix + "-") else label


def bids_name(suffix: str, extension: str, **entities) -> str:
    """Build a BIDS file name from entities (``None`` values are dropped) in the canonical order.

    >>> bids_name("probseg", ".nii.gz", sub="01", space="MNI152NLin2009aSym", res=2, label="GM")
    'sub-01_space-MNI152NLin2009aSym_res-2_label-GM_probseg.nii.gz'
    """
    unknown = set(entities) - set(ENTITY_ORDER)
    if unknown:
        raise ValueError(f"unknown BIDS entities {sorted(unknown)}")
    parts = [f"{key}-{entities[key]}" for key in ENTITY_ORDER if entities.get(key) not in (None, "")]
    if not extension.startswith(".") and extension:
        extension = "." + extension
    return "_".join(parts + [suffix]) + extension


def subject_dir(subject: str, session: str | None = None, datatype: str = "anat") -> Path:
    """``sub-<s>[/ses-<t>]/<datatype>`` relative to the dataset root."""
    path = Path(f"sub-{subject}")
    if session:
        path = path / f"ses-{session}"
    return path / datatype if datatype else path


def derivative_path(
    suffix: str,
    extension: str,
    *,
    sub: str,
    ses: str | None = None,
    datatype: str = "anat",
    root: str | os.PathLike | None = None,
    **entities,
) -> Path:
    """Path of a per-subject derivative, e.g. ``sub-01/anat/sub-01_label-GM_probseg.nii.gz``."""
    rel = subject_dir(sub, ses, datatype) / bids_name(suffix, extension, sub=sub, ses=ses, **entities)
    return Path(root) / rel if root is not None else rel


def gm_map_name(subject: str, session: str | None, space: str, res: str, modulated: bool) -> str:
    """File name of a template-space GM map the participant level writes (the group level's input).

    >>> gm_map_name("01", None, "MNI152NLin2009aSym", "nilearn2", modulated=True)
    'sub-01_space-MNI152NLin2009aSym_res-nilearn2_label-GM_desc-modulated_probseg.nii.gz'
    """
    return bids_name("probseg", ".nii.gz", sub=subject, ses=session, space=space, res=res, label="GM",
                     desc="modulated" if modulated else None)


def latent_columns(k: int) -> list[str]:
    """The latent-code columns of every latent table: ``z0`` .. ``z{k-1}``."""
    return [f"z{i}" for i in range(int(k))]


def latent_columns_in(columns) -> list[str]:
    """The latent-code columns among ``columns`` (a table read back), in unit order: ``z0``, ``z1`` ..."""
    found = [str(c) for c in columns if re.fullmatch(r"z\d+", str(c))]
    return sorted(found, key=lambda c: int(c[1:]))


def raw_uri(relpath: str | os.PathLike) -> str:
    """A BIDS URI into the raw dataset (``bids:raw:sub-01/anat/sub-01_T1w.nii.gz``)."""
    return f"bids:raw:{Path(relpath).as_posix()}"


def self_uri(relpath: str | os.PathLike) -> str:
    """A BIDS URI into this derivative dataset itself (``bids::sub-01/anat/...``)."""
    return f"bids::{Path(relpath).as_posix()}"


def dataset_name(name: str) -> str:
    """A ``-d NAME`` made a dataset name usable in ``bids:<name>:`` URIs (no colon, never empty)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "", str(name)) or "derivatives"


def derivative_uri(path: str | os.PathLike, derivatives: dict[str, str]) -> str:
    """The BIDS URI of a file of a ``-d NAME=PATH`` dataset: ``bids:<NAME>:sub-01/anat/...``.

    The matching ``DatasetLinks`` entry is written by :func:`dataset_links`.  A file outside every
    given dataset keeps its plain path (it cannot be named portably).
    """
    target = Path(path).absolute()
    for name, root in (derivatives or {}).items():
        try:
            rel = target.relative_to(Path(root).absolute())
        except ValueError:
            continue
        return f"bids:{dataset_name(name)}:{rel.as_posix()}"
    return str(path)


def relative_link(from_dir: str | os.PathLike, to_dir: str | os.PathLike) -> str:
    """``to_dir`` relative to ``from_dir`` (posix), e.g. ``../..`` for a dataset's derivatives folder.

    Relative, so the link survives moving the dataset or mounting it elsewhere in a container.
    """
    return Path(os.path.relpath(Path(to_dir).absolute(), Path(from_dir).absolute())).as_posix()


def dataset_links(output_dir: str | os.PathLike, bids_dir: str | os.PathLike,
                  derivatives: dict[str, str] | None = None) -> dict[str, str]:
    """``DatasetLinks``: ``raw`` and every ``-d`` dataset, as paths relative to ``output_dir``."""
    links = {"raw": relative_link(output_dir, bids_dir)}
    for name, root in (derivatives or {}).items():
        links[dataset_name(name)] = relative_link(output_dir, root)
    return links


def entity_label(text: str) -> str:
    """A free text made a valid entity value (alphanumerics only): ``s-MCI`` -> ``sMCI``; empty -> ``x``."""
    return re.sub(r"[^A-Za-z0-9]", "", str(text)) or "x"


def res_label(resolution: float) -> str:
    """Resolution entity value: 2 -> ``2``, 1.5 -> ``1p5``."""
    resolution = float(resolution)
    return str(int(resolution)) if resolution.is_integer() else str(resolution).replace(".", "p")


def clean_session(session) -> str | None:
    """A session label without its ``ses-`` prefix, or None when there is no session.

    Parameters
    ----------
    session : str, float or None
        E.g. ``"ses-01"`` or ``"01"``; a missing value (:func:`latentbids.bids.tables.is_missing`:
        None, NaN, ``""``, ``n/a``, ``na``, ``nan``, ``none``) means no session.

    Returns
    -------
    str or None
    """
    if is_missing(session):
        return None
    text = strip_prefix(str(session).strip(), "ses")
    return None if is_missing(text) else text


def grid_res_entity(template_res: str, template_resolution: float, resolution: float) -> str:
    """The ``res-`` entity of a grid derived from a template grid, the one rule for every level.

    The template's own label when the grid is the template's (``nilearn2``, or TemplateFlow's index ``2``);
    a block-average of nilearn's grid keeps nilearn's form (``nilearn4``), so no name suggests a TemplateFlow
    grid it is not; a block-average of a TemplateFlow grid has no TemplateFlow index and is named by its
    voxel size (``4mm``).

    Parameters
    ----------
    template_res : str
        The template grid's ``res-`` value (:attr:`latentbids.resources.Template.res`).
    template_resolution : float
        Its voxel size (mm).
    resolution : float
        The derived grid's voxel size (mm).

    Returns
    -------
    str
    """
    if abs(float(resolution) - float(template_resolution)) < 1e-6:
        return str(template_res)
    if str(template_res).startswith(NILEARN_RES_PREFIX):
        return f"{NILEARN_RES_PREFIX}{res_label(resolution)}"
    return f"{res_label(resolution)}mm"
