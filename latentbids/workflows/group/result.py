"""What the group level hands the analysis: one typed, frozen record per run (no 22-key dict).

Why a dataclass: the analysis (:func:`latentbids.workflows.group.analysis.inputs.build_inputs`), the CLI and
the tests read the same fields; a misspelt field fails at once instead of returning ``None`` from a
``dict.get``, and a reader sees in one place what training produced and in which units.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class GroupLevelResult:
    """A finished group level (every fold trained, every map encoded, every file written).

    Attributes
    ----------
    records : DataFrame
        The input records, normalised: ``sub-``/``ses-`` prefixes, a ``group`` column (``n/a`` when
        absent); one row per GM map, in the order of ``data``.
    fold_latents : DataFrame
        Every map encoded by every fold's model: ``fold``, ``participant_id``, ``session_id``, ``role``
        (train / validation / test in that fold), ``z0``.. ``z{K-1}``, ``error``.
    data : ndarray, shape (N, X, Y, Z), float32
        The cached GM maps on the network box (memory-mapped; GM probability, 0..1).
    mask_box : ndarray of bool, shape (X, Y, Z)
        The brain mask on the box.
    atlas_box : ndarray of int64, shape (X, Y, Z)
        Atlas labels on the box (0 = background).
    atlas_image : nibabel.Nifti1Image
        The atlas on the working grid (for figures).
    grid_fit : latentbids.model.grid.GridFit
        The network box on the working grid (crops another atlas to the box the data lie in).
    resolution : float
        Voxel size of the working grid, mm.
    res : str
        The working grid's ``res-`` entity in file names (``nilearn4``; :func:`latentbids.bids.naming.grid_res_entity`).
    space : str
        The template space of the grid (``MNI152NLin2009aSym`` ...).
    model_name : str
        The model folder's name under ``models/`` and ``group/``.
    folds : tuple of str
        The fold names (``"1"``.. or ``"all"`` with ``--fit-all``).
    latent_table : DataFrame
        The group latent table written to ``latent_tsv`` (one row per map, its held-out fold's code).
    latent_tsv : Path
        The group latent table (in ``group_dir``).
    curves_tsv, curves_png : Path or None
        The model's training curves and their figure (from its folder's ``curves.tsv``); None for a model
        folder written before latentbids kept them.
    model_dir : Path
        The model folder that encoded every map (``models/<model_name>/``, or ``--model``'s): weights,
        splits and ``model.json``.
    subjects : dict
        ``{"sub-XX[_ses-YY]": {kind: path}}`` of the per-subject files written.
    splits : DataFrame
        The fold assignment (``participant_id``, ``fold``, ``role``).
    device : str
        The device training ran on (``cpu``, ``cuda:0``).
    cache : Path
        The memory-mapped GM cache in the work dir; ``cache_reused`` says whether it was built now.
    fold_info : dict
        Per-fold facts of the model folder (weights and their sha256, epochs run, best validation loss,
        intensity scale, ...).
    group_dir : Path or None
        Where the model's group set is being written (``group/<model_name>/``, or its staging folder
        until the run swaps it in); the analysis writes there too.
    mode : str
        ``"kfold"`` or ``"fit_all"``: how the model was trained.
    trained_here : bool
        Whether this run trained the model (False with ``--model`` or when the folder already held it).
    """

    records: pd.DataFrame
    fold_latents: pd.DataFrame
    data: np.ndarray
    mask_box: np.ndarray
    atlas_box: np.ndarray
    atlas_image: object
    grid_fit: object
    resolution: float
    res: str
    space: str
    model_name: str
    folds: tuple
    latent_table: pd.DataFrame
    latent_tsv: Path
    curves_tsv: Path | None
    curves_png: Path | None
    model_dir: Path
    subjects: dict
    splits: pd.DataFrame
    device: str
    cache: Path
    cache_reused: bool
    fold_info: dict = field(default_factory=dict)
    group_dir: Path | None = None
    mode: str = "kfold"
    trained_here: bool = True


@dataclass(frozen=True)
class FoldJobResult:
    """A ``--fold N`` job: one fold trained and kept in the work dir; no outputs, no analysis yet.

    ``fold_record`` is the fold's record in the work dir that the final run (without ``--fold``)
    merges; ``folds`` are every fold of the cross-validation.
    """

    fold: str
    folds: tuple
    fold_record: Path
    model_name: str
    device: str
