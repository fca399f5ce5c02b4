"""Encode one subject's template-space GM map with a trained model folder (participant-level
``--model PATH``): the fold that held the subject out, the same encoding and per-subject files as the
group level (:func:`latentbids.model.encoding.iter_encode`,
:func:`latentbids.model.encoded_subject.encoded_subject`,
:func:`latentbids.bids.model_outputs.write_subject_outputs`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import nibabel as nib
import numpy as np

from latentbids.bids.model_outputs import write_subject_outputs
from latentbids.errors import MissingInputError, UsageError
from latentbids.model.bundle import ModelBundle, load_bundle
from latentbids.model.encoded_subject import SubjectEncoding, encoded_subject


def _read_gm_map(gm_img) -> tuple:
    """``(image, name for messages)`` from a path or an image; a missing or unreadable file is a
    one-line :class:`MissingInputError`."""
    if isinstance(gm_img, nib.spatialimages.SpatialImage):
        return gm_img, "input GM map"
    path = Path(gm_img)
    if not path.is_file():
        raise MissingInputError(f"GM map {path} not found: run the participant level first")
    try:
        return nib.load(str(path)), str(gm_img)
    except Exception as exc:
        raise MissingInputError(f"GM map {path} cannot be read ({exc})") from None


def _encoding_fold(bundle: ModelBundle, pid: str, fold: str | None, refuse_training: bool) -> tuple:
    """``(fold, in_training, role)`` of ``pid`` for encoding: the fold that held it out (see
    :meth:`ModelBundle.role_of`) or the forced ``fold``; a training subject is refused when asked,
    since its reconstruction error would not be held-out."""
    auto_fold, in_training, role = bundle.role_of(pid)
    if fold is not None:
        fold = str(fold)
        rows = bundle.splits[(bundle.splits["fold"] == fold) & (bundle.splits["participant_id"] == pid)]
        role = str(rows["role"].iloc[0]) if len(rows) else "new"
        in_training = role in ("train", "validation")
    else:
        fold = auto_fold
    if in_training and refuse_training:
        raise UsageError(
            f"{pid} was a {role} subject of model {bundle.path} (fold {fold}): its "
            f"reconstruction error would not be held-out; use a model that did not train on it"
        )
    return fold, in_training, role


@dataclass(frozen=True)
class ModelEncoding(SubjectEncoding):
    """One subject encoded with a trained model folder (:func:`encode_with_model`): the
    :class:`~latentbids.model.encoded_subject.SubjectEncoding` the group level would write for it, plus where it
    lies and which fold made it.

    Attributes
    ----------
    participant_id, session_id, latent, regions, recon, error_map
        As in :class:`~latentbids.model.encoded_subject.SubjectEncoding`.
    affine : ndarray of shape (4, 4)
        The working grid's affine (mm).
    fold : str
        The fold whose model encoded the subject.
    in_training : bool
        The subject trained or validated that model (its error is then not held-out).
    role : str
        ``train``, ``validation``, ``test`` (held out) or ``new`` (not in the model's cohort).
    paths : dict of str to pathlib.Path or None
        The files written (``latent``, ``recon``, ``error``, ``regionerror``), None without ``output_dir``.
    """

    affine: np.ndarray
    fold: str
    in_training: bool
    role: str
    paths: dict | None = None


def encode_with_model(
    model_dir: str | os.PathLike,
    gm_img,
    *,
    participant_id: str,
    session_id: str | None = None,
    output_dir: str | os.PathLike | None = None,
    space: str | None = None,
    device="auto",
    fold: str | None = None,
    refuse_training: bool = False,
    source: str | None = None,
) -> ModelEncoding:
    """Encode one template-space GM map with a trained model (participant-level ``--model PATH``).

    Parameters
    ----------
    model_dir : the model folder (``<output_dir>/models/<name>``).
    gm_img : path or nibabel image of the GM map on the model's template grid.
    participant_id : ``sub-XX`` (decides the fold and the ``in_training`` label).
    session_id : ``ses-YY``/``YY`` or None.
    output_dir : when given, the latent TSV, reconstruction, error map and regional error TSV are
        written under ``sub-<l>/[ses-<s>/]anat/`` there (each job writes only its own files).
    space : the template space of ``gm_img``; refused when it differs from the model's.
    device : ``auto|cpu|cuda|cuda:N``.
    fold : force a fold's model (default: see :meth:`ModelBundle.role_of`).
    refuse_training : raise :class:`UsageError` instead of labelling a training subject.
    source : recorded in the sidecars (e.g. the GM map's path relative to the dataset).

    Returns
    -------
    ModelEncoding
        The latent row, regional error, reconstruction and error map, the fold and role, and the files
        written (``paths``, when ``output_dir`` was given).
    """
    from latentbids.model.device import as_torch_device
    from latentbids.model.encoding import iter_encode

    bundle = load_bundle(model_dir)
    gm_img, name = _read_gm_map(gm_img)
    bundle.check_input(gm_img, space=space, name=f"GM map {name}")
    pid = participant_id if str(participant_id).startswith("sub-") else f"sub-{participant_id}"
    fold, in_training, role = _encoding_fold(bundle, pid, fold, refuse_training)
    entry = bundle.fold_entry(fold)
    dev = as_torch_device(device)
    model = bundle.load_model(fold, dev)
    vol = bundle.prepare(gm_img)[None]
    scale = float(entry.get("scale", 1.0))
    mask_box = bundle.fit.crop(bundle.mask.astype(np.float32))
    batch = next(iter_encode(model, vol, [0], mask_box, dev, scale, batch_size=1))
    encoding = encoded_subject(batch, 0, participant_id=pid, session_id=session_id, fold=fold,
                               in_training=in_training, scale=scale, fit=bundle.fit, atlas=bundle.atlas,
                               atlas_labels=bundle.atlas_labels, mask=bundle.mask)
    affine = np.asarray(bundle.meta["grid"]["affine"], dtype=float)
    paths = None
    if output_dir is not None:
        sidecar = {
            "Model": bundle.meta.get("name", bundle.path.name),
            "ModelFold": fold,
            "ModelWeightsSHA256": entry["sha256"],
            "InTraining": bool(in_training),
            "IntensityScale": scale,
            "Sources": [source or name],
        }
        paths = write_subject_outputs(
            output_dir, encoding, space=bundle.meta["template"]["space"],
            res=bundle.res_entity, resolution=float(bundle.meta["grid"]["resolution"]),
            atlas_name=bundle.meta["atlas"]["bids_name"],
            affine=affine, sidecar=sidecar, model=sidecar["Model"])
    return ModelEncoding(**{f.name: getattr(encoding, f.name) for f in fields(encoding)}, affine=affine, fold=fold,
                         in_training=bool(in_training), role=role, paths=paths)
