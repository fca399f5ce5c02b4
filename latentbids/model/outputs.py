"""Per-subject model derivatives: latent TSV, reconstruction and error NIfTI, regional error TSV.

Written under ``sub-<l>/[ses-<s>/]anat/`` with names from :mod:`latentbids.bids.naming`, every file
atomically and with a JSON sidecar (``Resolution`` and the model that made it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from latentbids.bids.naming import derivative_path, entity_label, latent_columns, res_label, strip_prefix
from latentbids.bids.tables import NA_REP, is_missing
from latentbids.utils.atomic import save_nifti, write_json, write_tsv


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


@dataclass(frozen=True)
class SubjectEncoding:
    """One map encoded by one fold's model: what its per-subject files hold.

    Attributes
    ----------
    participant_id, session_id : str
        ``sub-XX`` and ``ses-YY`` (``n/a`` without a session).
    latent : pandas.DataFrame
        One row: ``participant_id, session_id, fold, in_training, z0..zK-1, error``.
    recon : ndarray of shape (X, Y, Z), float32
        The reconstruction on the working grid, input units (GM probability).
    error_map : ndarray of shape (X, Y, Z), float32
        The squared error per voxel on the working grid, model units.
    regions : pandas.DataFrame
        The regional error table (:func:`~latentbids.model.encoding.regional_error`).
    """

    participant_id: str
    session_id: str
    latent: pd.DataFrame
    recon: np.ndarray
    error_map: np.ndarray
    regions: pd.DataFrame


def encoded_subject(batch, j: int, *, participant_id: str, session_id, fold: str, in_training: bool, scale: float,
                    fit, atlas: np.ndarray, atlas_labels: pd.DataFrame, mask: np.ndarray) -> SubjectEncoding:
    """Item ``j`` of an encoded batch -> its latent row, reconstruction, error map and regional error.

    The one rule the group level (every held-out map) and ``--model`` (one subject) share, so a subject
    encoded alone gets the files it would get in the group.

    Parameters
    ----------
    batch : latentbids.model.encoding.EncodedBatch
        The encoded batch (network box, model units).
    j : int
        The item of the batch.
    participant_id : str
        With or without ``sub-``.
    session_id : str, float or None
        See :func:`clean_session`.
    fold : str
        The fold whose model encoded the map.
    in_training : bool
        Whether the subject trained or validated that model (its error is then not held-out).
    scale : float
        The fold's intensity scale (model units = input units / scale).
    fit : latentbids.model.grid.GridFit
        The network box on the working grid (restores the box to the grid).
    atlas : ndarray of int, shape (X, Y, Z)
        Atlas labels on the working grid.
    atlas_labels : pandas.DataFrame
        ``index, name`` of the atlas regions.
    mask : ndarray of shape (X, Y, Z)
        The brain mask on the working grid.

    Returns
    -------
    SubjectEncoding
    """
    from latentbids.model.encoding import regional_error

    pid = participant_id if str(participant_id).startswith("sub-") else f"sub-{participant_id}"
    ses = clean_session(session_id)
    ses = f"ses-{ses}" if ses else NA_REP
    latent = pd.DataFrame(
        [[pid, ses, str(fold), bool(in_training)] + batch.z[j].tolist() + [float(batch.error[j])]],
        columns=["participant_id", "session_id", "fold", "in_training"] + latent_columns(batch.z.shape[1])
        + ["error"],
    )
    recon = fit.restore(batch.recon[j] * scale)
    error_map = fit.restore(batch.error_map[j])
    regions = regional_error(error_map, atlas, atlas_labels, mask)
    return SubjectEncoding(pid, ses, latent, recon, error_map, regions)


def write_subject_outputs(
    output_dir: str | os.PathLike,
    encoding: SubjectEncoding,
    *,
    space: str,
    resolution: float,
    atlas_name: str,
    affine: np.ndarray,
    sidecar: dict,
    model: str,
) -> dict[str, Path]:
    """Write one subject/session's model outputs; return their paths by kind.

    Every file names its model (``desc-<model>``, e.g. ``desc-aeK32``), so the outputs of two models of
    the same subject sit side by side and a run with another model never overwrites them.

    Parameters
    ----------
    output_dir : str or os.PathLike
        The derivatives root.
    encoding : SubjectEncoding
        The subject's latent row, reconstruction, error map and regional error (:func:`encoded_subject`).
    space : str
        The template space (``space-`` entity).
    resolution : float
        The template grid's resolution (mm), for the ``res-`` entity and the sidecars.
    atlas_name : str
        The ``atlas-`` entity of the regional error TSV.
    affine : ndarray of shape (4, 4)
        The working grid's affine (mm).
    sidecar : dict
        More entries of every JSON sidecar (e.g. the model that made the outputs).
    model : str
        The model's name (``ae-K32``); its alphanumerics are the ``desc-`` entity.

    Returns
    -------
    dict of str to pathlib.Path
        Keys ``latent``, ``recon``, ``error``, ``regionerror``.
    """
    sub = strip_prefix(encoding.participant_id, "sub")
    ses = clean_session(encoding.session_id)
    ent = {"sub": sub, "ses": ses, "space": space, "res": res_label(resolution), "desc": entity_label(model),
           "root": output_dir}
    paths = {
        "latent": derivative_path("latent", ".tsv", **ent),
        "recon": derivative_path("recon", ".nii.gz", **ent),
        "error": derivative_path("error", ".nii.gz", **ent),
        "regionerror": derivative_path("regionerror", ".tsv", atlas=atlas_name, **ent),
    }
    resolution_text = f"Template grid at {resolution:g} mm"
    write_tsv(encoding.latent, paths["latent"])
    for kind, data, desc in (
        (
            "recon",
            encoding.recon,
            "Autoencoder reconstruction of the GM map (input units; 0 outside the mask)",
        ),
        (
            "error",
            encoding.error_map,
            "Squared reconstruction error per voxel (model units: input divided by "
            "IntensityScale; 0 outside the mask)",
        ),
    ):
        img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
        img.header.set_xyzt_units("mm")
        save_nifti(img, paths[kind])
        write_json(
            Path(str(paths[kind])[: -len(".nii.gz")] + ".json"),
            {"Description": desc, "Resolution": resolution_text, **sidecar},
        )
    write_tsv(encoding.regions, paths["regionerror"])
    for kind, desc in (
        (
            "latent",
            "Latent code z0..zK-1 and scalar reconstruction error (mean squared "
            "error inside the mask, model units)",
        ),
        ("regionerror", "Mean squared reconstruction error per atlas region (model units)"),
    ):
        write_json(
            paths[kind].with_suffix(".json"),
            {"Description": desc, "Resolution": resolution_text, **sidecar},
        )
    return paths
