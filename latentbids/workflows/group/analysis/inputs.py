"""The analysis cohort, assembled once from the group level's result: who is tested, on what.

Why one place: every section (projections, LRCP, SAM, SHAP) must use the same subjects, the same labels,
the same regional GM (measured on the very maps the network was trained on) and the same confound
adjustment, and the same rule that **subjects, not maps, are the units of every test** (a second
session would leak through every cross-validation and inflate every n; the latent tables keep all
sessions).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from latentbids.analysis.cohort import (
    clean_labels,
    confound_matrix,
    covariate_table,
    plan_contrasts,
    regional_means,
)
from latentbids.bids.naming import bids_name, latent_columns_in
from latentbids.bids.tables import is_missing
from latentbids.workflows.group.result import GroupLevelResult


@dataclass(frozen=True)
class AnalysisInputs:
    """Everything the analysis sections read; arrays have one row per map (``records`` order).

    ``usable`` marks the rows the statistics may use (complete confounds, first session of each
    subject); ``C`` is the confound matrix (N x c, possibly 0 columns); ``fold_Z`` maps each fold to its
    latent codes of every map and each map's role in that fold (train / validation / test).
    """

    records: pd.DataFrame
    labels: pd.Series
    covariates: pd.DataFrame
    G: np.ndarray
    regions: pd.DataFrame  # index, name of the regions present on the working grid
    fold_Z: dict
    folds: tuple[str, ...]
    reference_fold: str
    mode: str
    usable: np.ndarray
    C: np.ndarray
    confound_names: tuple[str, ...]
    contrasts: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]
    model_name: str
    out_dir: Path
    analysis_dir: Path  # where this run writes the model's group set (its staging folder during a CLI run)
    published_dir: Path  # where the set lies once swapped in: group/<model>/
    space: str
    resolution: float
    res: str
    atlas_bids_name: str
    atlas_image: object
    atlas_box: np.ndarray
    data: object  # (N, X, Y, Z) volumes on the network box (memory-mapped cache)
    latent_table: pd.DataFrame
    curves_png: str
    mask_box: np.ndarray | None = None  # the brain mask on the box (bool)
    grid_fit: object = None  # the box on the working grid (latentbids.model.grid.GridFit)

    def ids(self, rows=None) -> pd.DataFrame:
        ids = self.records[["participant_id", "session_id"]]
        return (ids if rows is None else ids.iloc[rows]).reset_index(drop=True)

    def adjust(self, X: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``X[rows]`` with the confounds regressed out (unchanged without confounds)."""
        from latentbids.analysis.stats import residualize

        return residualize(X[rows], self.C[rows]) if self.C.shape[1] else X[rows]

    def published(self, path) -> Path:
        """Where a file written in :attr:`analysis_dir` lies once the set is swapped in."""
        path = Path(path)
        return self.published_dir / path.relative_to(self.analysis_dir) if path.is_relative_to(self.analysis_dir) \
            else path

    def path(self, suffix: str, ext: str, atlas: bool | str = False, **extra) -> Path:
        """A file of ``group/<model>/`` with the space/res (and atlas) entities of the working grid; ``atlas``
        True names this inputs' atlas, a string another one."""
        ent = {"space": self.space}
        if atlas:
            ent["atlas"] = atlas if isinstance(atlas, str) else self.atlas_bids_name
        ent["res"] = self.res
        ent.update(extra)
        return self.analysis_dir / bids_name(suffix, ext, **ent)


def _read_tiv(records: pd.DataFrame) -> np.ndarray:
    """TIV (ml) from each map's participant-level ``_volumes.json`` (NaN when absent, e.g. ``-d``)."""
    out = []
    for rec in records.itertuples():
        sub = str(rec.participant_id)[4:]
        ses = None if is_missing(rec.session_id) else str(rec.session_id)[4:]
        path = Path(str(rec.gm_path)).parent / bids_name("volumes", ".json", sub=sub, ses=ses)
        try:
            out.append(float(json.loads(path.read_text())["TIV_ml"]))
        except (OSError, KeyError, ValueError, TypeError):
            out.append(np.nan)
    return np.asarray(out)


def _fold_matrices(fold_latents: pd.DataFrame, records: pd.DataFrame, folds) -> dict:
    """``{fold: (Z, role)}`` with rows in ``records`` order."""
    zcols = latent_columns_in(fold_latents.columns)
    keys = list(zip(records["participant_id"], records["session_id"]))
    out = {}
    for fold in folds:
        part = fold_latents[fold_latents["fold"].astype(str) == str(fold)]
        part = part.set_index(["participant_id", "session_id"]).loc[keys]
        out[str(fold)] = (part[zcols].to_numpy(float), part["role"].to_numpy(object))
    return out


def build_inputs(run, group_result: GroupLevelResult, atlas) -> AnalysisInputs:
    """Assemble :class:`AnalysisInputs` from the group level's result and the run's
    :class:`~latentbids.settings.group.GroupSettings` (its ``analysis``: labels, contrasts, confounds).

    The records are the group level's own (``group_result.records``: normalised ids, one row per map
    in the order of ``group_result.data``), so the analysis cannot pair a map with another row.
    """
    settings = run.analysis
    records = group_result.records.reset_index(drop=True)
    labels_all = atlas.labels
    G, gm_mean = regional_means(group_result.data, group_result.atlas_box, labels_all["index"].to_numpy(),
                                group_result.mask_box)
    present = np.isfinite(G).all(axis=0)
    covariates = covariate_table(records, gm_mean, _read_tiv(records))
    col = settings.label_column
    labels = (clean_labels(records[col]) if col in records
              else pd.Series([None] * len(records), dtype=object))
    C, confound_names = confound_matrix(covariates, settings.confounds)
    usable = np.isfinite(C).all(axis=1) if C.shape[1] else np.ones(len(records), bool)
    notes = []
    if (~usable).any():
        notes.append(f"{int((~usable).sum())} map(s) lack a value of the confounds ({', '.join(settings.confounds)}) "
                     "and are left out of the supervised analyses")
    repeated = records["participant_id"].duplicated().to_numpy()
    if repeated.any():
        notes.append(f"{int(records.loc[repeated, 'participant_id'].nunique())} subject(s) have several sessions: "
                     "the statistics use each subject's first session (the latent tables keep every session)")
    usable = usable & ~repeated
    if col not in records.columns:
        contrasts = []
        notes.append(f"participants.tsv has no '{col}' column: no contrast, so PLS, LRCP, SAM and per-class SHAP "
                     "are skipped")
    else:
        contrasts, more = plan_contrasts(labels[usable], settings.contrasts, settings.min_per_class)
        notes += more
    folds = tuple(str(f) for f in group_result.folds)
    out = Path(run.output_dir)
    return AnalysisInputs(
        records=records, labels=labels, covariates=covariates, G=G[:, present],
        regions=labels_all[present].reset_index(drop=True), fold_Z=_fold_matrices(group_result.fold_latents,
                                                                                  records, folds),
        folds=folds, reference_fold=folds[0], mode=group_result.mode,
        usable=usable, C=C, confound_names=tuple(confound_names), contrasts=tuple(contrasts), notes=tuple(notes),
        model_name=group_result.model_name, out_dir=out,
        analysis_dir=Path(group_result.group_dir or out / "group" / group_result.model_name),
        published_dir=out / "group" / group_result.model_name,
        space=group_result.space, resolution=float(group_result.resolution), res=group_result.res,
        atlas_bids_name=atlas.bids_name,
        atlas_image=group_result.atlas_image, atlas_box=group_result.atlas_box, data=group_result.data,
        latent_table=group_result.latent_table, curves_png=str(group_result.curves_png or ""),
        mask_box=np.asarray(group_result.mask_box, dtype=bool), grid_fit=group_result.grid_fit,
    )
