"""Reuse GM maps that another pipeline already computed (``-d/--derivatives NAME=PATH``).

Recognised layouts:

* sMRIPrep / fMRIPrep:
  ``sub-<s>/[ses-<t>/]anat/sub-<s>[_ses-<t>][_...]_space-<tpl>[_res-<r>]_label-GM_probseg.nii[.gz]``
  (template-space GM probability; kind ``smriprep``).  Native-space ``label-GM_probseg`` files
  (no ``space-``) are ignored: they would need our own registration.
* CAT12: ``mri/mwp1<name>.nii`` (modulated, template-space GM; kind ``cat12``), searched anywhere
  under the subject's folder or under ``mri/`` of the derivative root with the subject label in the
  file name.  A ``wp1<name>.nii`` beside it (unmodulated) is used for the probability map.

Template-space maps are resampled onto the analysis grid (linear interpolation) only when they are
in the analysis template's space (another grid of the same template is fine).  A map in another
template (e.g. sMRIPrep's MNI152NLin2009cAsym for an MNI152NLin2009aSym grid) is refused with the
``--output-spaces`` that would use it (:func:`space_mismatch`): "both are MNI" is not a transform.
CAT12 writes no space entity; its maps are taken to be in MNI152NLin2009cAsym, the space of CAT12's
default templates since CAT12.8 (``templates_MNI152NLin2009cAsym``).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np

#: Preferred template spaces when a derivative holds several (closest to ours first).
SPACE_PREFERENCE = ("MNI152NLin2009aSym", "MNI152NLin2009aAsym", "MNI152NLin2009cSym",
                    "MNI152NLin2009cAsym", "MNI152NLin6Asym", "MNI152NLin6Sym", "MNI152Lin")


#: The space of CAT12's mwp1/wp1 maps (CAT12.8 and later: templates_MNI152NLin2009cAsym).
CAT12_SPACE = "MNI152NLin2009cAsym"


def map_space(path: str | os.PathLike, kind: str) -> str | None:
    """The template space a reusable GM map is in.

    Parameters
    ----------
    path : path-like
        The map's file.
    kind : {"smriprep", "cat12"}
        Where it comes from.

    Returns
    -------
    str or None
        Its ``space-`` entity, :data:`CAT12_SPACE` for CAT12, ``None`` when the name has no space.
    """
    if kind == "cat12":
        return CAT12_SPACE
    match = re.search(r"_space-([A-Za-z0-9]+)", Path(path).name)
    return match.group(1) if match else None


def space_mismatch(path: str | os.PathLike, kind: str, target_space: str) -> str | None:
    """Why a reusable map cannot be put on a ``target_space`` grid.

    Resampling between two templates needs a transform between them; latentbids has none, so a
    map in another template is refused rather than treated as if both were the same space.

    Parameters
    ----------
    path : path-like
        The map's file.
    kind : {"smriprep", "cat12"}
        Where it comes from.
    target_space : str
        The output space (a TemplateFlow identifier).

    Returns
    -------
    str or None
        A one-line reason, or ``None`` when the map is in ``target_space``.
    """
    space = map_space(path, kind)
    if space == target_space:
        return None
    return (f"{Path(path).name} is in {space or 'an unknown space'}, not in the output space {target_space}, "
            f"and latentbids has no transform between the two")


def _space_rank(name: str, prefer: str | None = None) -> tuple[int, int]:
    match = re.search(r"_space-([A-Za-z0-9]+)", name)
    space = match.group(1) if match else ""
    order = ((prefer,) if prefer else ()) + SPACE_PREFERENCE
    rank = order.index(space) if space in order else len(order)
    res = re.search(r"_res-([0-9a-z]+)", name)
    return rank, 0 if (res and res.group(1) in ("2", "02")) else 1


def _entity_ok(name: str, key: str, value: str | None) -> bool:
    """``name`` carries ``key-value`` (or no ``key-`` at all when value is None)."""
    found = re.search(rf"(?:^|_){key}-([A-Za-z0-9]+)", name)
    if value is None:
        return found is None
    return found is not None and found.group(1) == value


def _find_smriprep(root: Path, subject: str, session: str | None, prefer: str | None = None) -> Path | None:
    sub_dir = root / f"sub-{subject}"
    if not sub_dir.is_dir():
        return None
    hits = []
    for path in sub_dir.rglob("*_label-GM_probseg.nii*"):
        name = path.name
        if not name.startswith(f"sub-{subject}_") or "_space-" not in name:
            continue
        if not _entity_ok(name, "ses", session):
            continue
        if "_desc-" in name:  # e.g. desc-modulated variants of other tools
            continue
        hits.append(path)
    return sorted(hits, key=lambda p: (_space_rank(p.name, prefer), p.name))[0] if hits else None


def _find_cat12(root: Path, subject: str, session: str | None) -> Path | None:
    candidates = []
    sub_dir = root / f"sub-{subject}"
    if sub_dir.is_dir():
        candidates += list(sub_dir.rglob("mwp1*.nii")) + list(sub_dir.rglob("mwp1*.nii.gz"))
    mri = root / "mri"
    if mri.is_dir():
        candidates += [p for p in list(mri.glob("mwp1*.nii")) + list(mri.glob("mwp1*.nii.gz"))]
    hits = []
    for path in candidates:
        if not re.search(rf"sub-{re.escape(subject)}(?![A-Za-z0-9])", path.as_posix()):
            continue
        rel = path.relative_to(root).as_posix()
        # whole-entity match: ses-1 must not match ses-10
        sessions = set(re.findall(r"(?:^|[/_])ses-([A-Za-z0-9]+)(?=[/_.]|$)", rel))
        if session is not None and session not in sessions:
            continue
        if session is None and sessions:
            continue
        hits.append(path)
    return sorted(hits)[0] if hits else None


def find_existing_gm_map(derivatives: dict[str, str], subject: str, session: str | None = None,
                         space: str | None = None) -> tuple[str, str] | None:
    """Look for an existing GM map of ``subject``/``session`` in the given derivative folders.

    Parameters
    ----------
    derivatives : dict of str
        ``{name: folder}`` (``-d NAME=PATH``), searched in this order.
    subject : str
        Subject label without ``sub-``.
    session : str, optional
        Session label without ``ses-`` (``None``: a map without a session entity).
    space : str, optional
        Prefer a map in this template space (the output space being filled).

    Returns
    -------
    tuple of (str, str) or None
        ``(path, kind)`` with kind ``smriprep`` or ``cat12``, or ``None`` when there is no map.
    """
    for _name, folder in (derivatives or {}).items():
        root = Path(folder)
        if not root.is_dir():
            continue
        hit = _find_smriprep(root, subject, session, prefer=space)
        if hit is not None:
            return str(hit), "smriprep"
        hit = _find_cat12(root, subject, session)
        if hit is not None:
            return str(hit), "cat12"
    return None


def unmodulated_partner(path: str | os.PathLike) -> str | None:
    """The unmodulated ``wp1*`` file beside a CAT12 ``mwp1*`` file.

    Parameters
    ----------
    path : path-like
        A CAT12 ``mwp1*`` file.

    Returns
    -------
    str or None
        The ``wp1*`` partner's path when it exists, else ``None``.
    """
    path = Path(path)
    if not path.name.startswith("mwp1"):
        return None
    partner = path.with_name(path.name[1:])
    return str(partner) if partner.is_file() else None


def resample_to_grid(in_file: str | os.PathLike, reference: nib.Nifti1Image | str, out_file: str | os.PathLike,
                     clip01: bool = True) -> str:
    """Resample a template-space map onto the analysis grid (linear; NaN -> 0).

    Parameters
    ----------
    in_file : path-like
        A template-space map (3-D, or 4-D with the map first), any grid of the same template.
    reference : nibabel.Nifti1Image or path-like
        An image on the analysis grid.
    out_file : path-like
        Where to write the result.
    clip01 : bool
        Clip to [0, 1] (probabilities); otherwise only negatives are clipped (modulated maps).

    Returns
    -------
    str
        ``out_file``: float32 on the reference grid, the input's units.
    """
    from nilearn.image import resample_to_img

    ref = nib.load(str(reference)) if isinstance(reference, (str, os.PathLike)) else reference
    img = nib.load(str(in_file))
    if img.ndim == 4:
        img = img.slicer[..., 0]
    data = np.nan_to_num(np.asarray(img.dataobj, dtype=np.float32))
    img = nib.Nifti1Image(data, img.affine)
    res = resample_to_img(img, ref, interpolation="continuous", force_resample=True, copy_header=True)
    out = np.asarray(res.dataobj, dtype=np.float32)
    out = np.clip(out, 0, 1) if clip01 else np.clip(out, 0, None)
    new = nib.Nifti1Image(out, ref.affine)
    new.header.set_xyzt_units("mm")
    nib.save(new, str(out_file))
    return str(out_file)
