"""Per-subject model derivatives as BIDS files: latent TSV, reconstruction and error NIfTI, regional error TSV.

Written under ``sub-<l>/[ses-<s>/]anat/`` with names from :mod:`latentbids.bids.naming`, every file
atomically and with a JSON sidecar (``Resolution`` and the model that made it).  The encoding itself is
:mod:`latentbids.model.encoded_subject`'s; this module only names and writes.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from latentbids.bids.naming import clean_session, derivative_path, entity_label, strip_prefix
from latentbids.utils.atomic import save_nifti, write_json, write_tsv


def write_subject_outputs(
    output_dir: str | os.PathLike,
    encoding,
    *,
    space: str,
    res: str,
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
    encoding : latentbids.model.encoded_subject.SubjectEncoding
        The subject's latent row, reconstruction, error map and regional error.
    space : str
        The template space (``space-`` entity).
    res : str
        The ``res-`` entity of the working grid (:func:`latentbids.bids.naming.grid_res_entity`).
    resolution : float
        The working grid's voxel size (mm), for the sidecars.
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
    ent = {"sub": sub, "ses": ses, "space": space, "res": res, "desc": entity_label(model),
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
