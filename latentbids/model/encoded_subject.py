"""One map encoded by one fold's model, as its per-subject derivatives hold it (latent row, reconstruction,
error map, regional error): :class:`SubjectEncoding`, built by :func:`encoded_subject`, the one rule the
group level and ``--model`` share.  Writing them as BIDS files is :mod:`latentbids.bids.model_outputs`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from latentbids.bids.naming import clean_session, latent_columns
from latentbids.bids.tables import NA_REP


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
        See :func:`latentbids.bids.naming.clean_session`.
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
