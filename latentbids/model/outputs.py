"""Per-subject model derivatives: latent TSV, reconstruction and error NIfTI, regional error TSV.

Written under ``sub-<l>/[ses-<s>/]anat/`` with names from :mod:`latentbids.bids.naming`, every file
atomically and with a JSON sidecar (``Resolution`` and the model that made it).
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from latentbids.bids.naming import derivative_path, res_label, strip_prefix
from latentbids.utils.atomic import save_nifti, write_json, write_tsv

MISSING = {"", "n/a", "nan", "none"}


def clean_session(session) -> str | None:
    """A session label without its ``ses-`` prefix, or None when there is no session.

    Parameters
    ----------
    session : str, float or None
        E.g. ``"ses-01"`` or ``"01"``; None, NaN and ``""``, ``"n/a"``, ``"nan"``, ``"none"`` (any case)
        mean no session.

    Returns
    -------
    str or None
    """
    if session is None or (isinstance(session, float) and np.isnan(session)):
        return None
    text = strip_prefix(str(session), "ses")
    return None if text.lower() in MISSING else text


def latent_columns(k: int) -> list[str]:
    """The latent columns ``z0`` .. ``z<k-1>`` of the latent TSV.

    Parameters
    ----------
    k : int
        The latent dimension K.

    Returns
    -------
    list of str
    """
    return [f"z{i}" for i in range(int(k))]


def write_subject_outputs(
    output_dir: str | os.PathLike,
    participant_id: str,
    session_id,
    *,
    space: str,
    resolution: float,
    atlas_name: str,
    latent_row: pd.DataFrame,
    recon: np.ndarray,
    error_map: np.ndarray,
    affine: np.ndarray,
    regions: pd.DataFrame,
    sidecar: dict,
) -> dict[str, Path]:
    """Write one subject/session's model outputs; return their paths by kind.

    Parameters
    ----------
    output_dir : str or os.PathLike
        The derivatives root.
    participant_id : str
        With or without ``sub-``.
    session_id : str, float or None
        See :func:`clean_session`.
    space : str
        The template space (``space-`` entity).
    resolution : float
        The template grid's resolution (mm), for the ``res-`` entity and the sidecars.
    atlas_name : str
        The ``atlas-`` entity of the regional error TSV.
    latent_row : pandas.DataFrame
        The latent TSV: ``participant_id, session_id, fold, in_training, z0..zK-1, error``.
    recon : ndarray of shape (X, Y, Z)
        The reconstruction on the working grid, input units (written as float32).
    error_map : ndarray of shape (X, Y, Z)
        The squared error per voxel on the working grid, model units (written as float32).
    affine : ndarray of shape (4, 4)
        The working grid's affine (mm).
    regions : pandas.DataFrame
        The regional error table (:func:`~latentbids.model.encoding.regional_error`).
    sidecar : dict
        More entries of every JSON sidecar (e.g. the model that made the outputs).

    Returns
    -------
    dict of str to pathlib.Path
        Keys ``latent``, ``recon``, ``error``, ``regionerror``.
    """
    sub = strip_prefix(participant_id, "sub")
    ses = clean_session(session_id)
    ent = {"sub": sub, "ses": ses, "space": space, "res": res_label(resolution), "root": output_dir}
    paths = {
        "latent": derivative_path("latent", ".tsv", **ent),
        "recon": derivative_path("recon", ".nii.gz", **ent),
        "error": derivative_path("error", ".nii.gz", **ent),
        "regionerror": derivative_path("regionerror", ".tsv", atlas=atlas_name, **ent),
    }
    resolution_text = f"Template grid at {resolution:g} mm"
    write_tsv(latent_row, paths["latent"])
    for kind, data, desc in (
        (
            "recon",
            recon,
            "Autoencoder reconstruction of the GM map (input units; 0 outside the mask)",
        ),
        (
            "error",
            error_map,
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
    write_tsv(regions, paths["regionerror"])
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
