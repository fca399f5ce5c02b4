"""Group level, steps 4 and 5: encode every map and write what the model learned.

:func:`encode_folds` encodes every map with every fold's model and writes each subject's derivatives
(latent TSV, reconstruction, error map, regional error; named by the model); :func:`group_table` orders
the group latent table; :func:`model_meta` and :func:`write_model_folder` make the model folder
``models/<name>/``; :func:`write_group_tables` writes the latent tables and training curves (TSV and
figure) into the model's group folder ``group/<name>/`` (staged, swapped in whole at the end of the run:
:class:`latentbids.utils.staging.StagedFolder`).  Process 0 alone runs these.  Wired by
:mod:`latentbids.workflows.group.training`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from latentbids.bids.naming import bids_name, latent_columns
from latentbids.bids.tables import is_missing
from latentbids.reports.training_curves import training_curves_png
from latentbids.utils.atomic import write_bytes, write_json, write_tsv
from latentbids.workflows.group.folds import TrainedFold
from latentbids.workflows.group.grid import WorkingGrid

LOGGER = logging.getLogger("latentbids.workflows.group.training")


@dataclass(frozen=True)
class EncodedCohort:
    """Step 4's hand-off: every map encoded by every fold's model, the held-out subjects' files written.

    Attributes
    ----------
    latent_rows : list of pandas.DataFrame
        One one-row latent table per held-out map (fit-all: per map), in encoding order.
    subjects : dict
        ``{"sub-XX[_ses-YY]": {kind: path}}`` of the per-subject files written.
    fold_rows : list of list
        ``[fold, participant_id, session_id, role, z0.., error]`` for every (fold, map).
    """

    latent_rows: list
    subjects: dict
    fold_rows: list


@dataclass(frozen=True)
class GroupTables:
    """Step 5b's files under ``group/`` (paths) and the every-fold latent table it wrote.

    Attributes
    ----------
    latent_tsv : pathlib.Path
        The group latent table.
    curves_tsv, curves_png : pathlib.Path or None
        The training curves and their figure (None when this run did not train the model).
    fold_latents : pandas.DataFrame
        Every map encoded by every fold's model (``fold, participant_id, session_id, role, z0.., error``).
    """

    latent_tsv: Path
    fold_latents: pd.DataFrame
    curves_tsv: Path | None
    curves_png: Path | None


def _write_subject(out: Path, rec, encoding, fold: TrainedFold, name: str, in_training: bool, scale: float,
                   grid: WorkingGrid, model_name: str, space: str, atlas) -> dict:
    """One subject's derivatives under ``sub-<l>/[ses-<s>/]anat/`` (named by the model); returns their paths."""
    from latentbids.bids.model_outputs import write_subject_outputs

    sidecar = {
        "Model": model_name,
        "ModelFold": name,
        "ModelWeightsSHA256": fold.info.get("sha256"),
        "InTraining": bool(in_training),
        "IntensityScale": scale,
        "Sources": [f"bids::{Path(rec.gm_path).relative_to(out).as_posix()}"
                    if Path(rec.gm_path).is_relative_to(out) else str(rec.gm_path)],
    }
    return write_subject_outputs(out, encoding, space=space, res=grid.res, resolution=grid.resolution,
                                 atlas_name=atlas.bids_name, affine=grid.affine, sidecar=sidecar, model=model_name)


def encode_folds(trained: dict[str, TrainedFold], records: pd.DataFrame, data, role: dict, grid: WorkingGrid,
                 atlas, batch_size: int, device, out: Path, model_name: str, space: str) -> EncodedCohort:
    """Step 4: encode every map with every fold's model.

    Each map's output fold (the fold that held it out; fit-all: ``all``; a map the model never saw: the
    model's default fold, :func:`latentbids.workflows.group.model_folder.output_folds`) gives its per-subject
    derivatives (written here) and its row of the group latent table; the other folds' codes only feed
    the within-fold analysis (a fold's latent units are its own).  Returns the latent table's rows, the
    subjects' output paths and every (fold, map) row.
    """
    from latentbids.model.encoded_subject import encoded_subject
    from latentbids.model.encoding import iter_encode
    from latentbids.workflows.group.model_folder import output_folds

    folds = list(trained)
    output_of = output_folds(role, folds, folds[0])
    latent_rows, subjects, fold_rows = [], {}, []
    for fold in folds:
        scale = float(trained[fold].info["scale"])
        for batch in iter_encode(trained[fold].model, data, np.arange(len(records)), grid.mask_box, device, scale,
                                 batch_size=batch_size):
            for j, r in enumerate(batch.rows):
                rec = records.iloc[int(r)]
                fold_role = role[(fold, rec.participant_id)]
                fold_rows.append([fold, rec.participant_id, rec.session_id, fold_role]
                                 + batch.z[j].tolist() + [float(batch.error[j])])
                if output_of[rec.participant_id] != fold:
                    continue
                in_training = fold_role in ("train", "validation")
                encoding = encoded_subject(batch, j, participant_id=rec.participant_id, session_id=rec.session_id,
                                           fold=fold, in_training=in_training, scale=scale, fit=grid.fit,
                                           atlas=grid.atlas_work, atlas_labels=atlas.labels, mask=grid.mask_work)
                latent_rows.append(encoding.latent)
                label = rec.participant_id + ("" if is_missing(rec.session_id) else f"_{rec.session_id}")
                subjects[label] = _write_subject(out, rec, encoding, trained[fold], fold, in_training, scale, grid,
                                                 model_name, space, atlas)
    return EncodedCohort(latent_rows, subjects, fold_rows)


def group_table(latent_rows: list, records: pd.DataFrame) -> pd.DataFrame:
    """The group latent table: one row per map, in ``records`` order."""
    table = pd.concat(latent_rows, ignore_index=True)
    order = {
        (p, s): i for i, (p, s) in enumerate(zip(records["participant_id"], records["session_id"]))
    }
    return table.iloc[
        np.argsort(
            [order[(p, s)] for p, s in zip(table.participant_id, table.session_id)], kind="stable"
        )
    ].reset_index(drop=True)


def model_meta(settings, template, atlas, grid: WorkingGrid, folds: list, device, model_name: str,
               identity: dict) -> dict:
    """model.json: what the model is and how it was made (grid, atlas, intensity rule, seeds,
    training settings, device, versions), so it can encode new maps the same way; ``identity`` (GM maps,
    splits, settings, grid) tells a later run whether the folder holds the model it would train."""
    from latentbids.utils.devices import describe_device
    from latentbids.utils.environment import package_versions

    seed = settings.seed
    return {
        "name": model_name,
        "identity": identity,
        "mode": settings.folds.mode,
        "n_folds": len(folds),
        "default_fold": folds[0],
        "template": {
            "space": template.space,
            "resolution": float(template.resolution),
            "res": template.res,
            "shape": list(template.shape),
            "affine": np.asarray(template.affine).tolist(),
            "source": template.source,
        },
        "grid": {
            "downsample": grid.factor,
            "resolution": float(grid.resolution),
            "shape": list(grid.shape),
            "affine": grid.affine.tolist(),
            "fit": grid.fit.to_dict(),
        },
        "atlas": {
            "name": atlas.name,
            "bids_name": atlas.bids_name,
            "n_regions": atlas.n_regions,
            "source": atlas.source,
        },
        "intensity": {
            "input_map": settings.input_map,
            "rule": "probseg: 1; modulated: percentile %g of in-mask training values" % settings.scale_percentile,
        },
        "seeds": {
            "random_seed": seed,
            "model_init": seed,
            "shuffle": seed + 1,
            "splits": seed,
        },
        "deterministic": settings.deterministic,
        "sloppy": settings.sloppy,
        "training": settings.train.fingerprint(),
        "device": f"{device} ({describe_device(device)})",
        "versions": package_versions(),
    }


def write_model_folder(target: Path, settings, trained: dict[str, TrainedFold], meta: dict, splits: pd.DataFrame,
                       grid: WorkingGrid, atlas) -> Path:
    """Step 5a: the model folder ``models/<name>/`` (weights, model.json, splits, mask, atlas, the
    run's config as TOML: a config that cannot be serialised is logged, never fatal)."""
    from latentbids.config import dump_toml
    from latentbids.model.bundle import save_bundle

    try:
        config_toml = dump_toml(settings.provenance())
    except Exception as exc:  # provenance must not stop a finished training
        LOGGER.warning("Could not serialise the run config to TOML (%s)", exc)
        config_toml = ""
    return save_bundle(
        target,
        models={fold: t.model for fold, t in trained.items()},
        meta=meta,
        fold_info={fold: t.info for fold, t in trained.items()},
        splits=splits,
        mask=nib.Nifti1Image(grid.mask_work.astype(np.uint8), grid.affine),
        atlas=nib.Nifti1Image(grid.atlas_work, grid.affine),
        atlas_labels=atlas.labels,
        config_toml=config_toml,
        curves=training_curves({fold: t.history for fold, t in trained.items()}),
    )


def training_curves(histories: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every fold's training history as one table: ``fold`` then the history's columns (epoch, losses ...)."""
    return pd.concat([h.assign(fold=fold)[["fold"] + [c for c in h.columns if c != "fold"]]
                      for fold, h in histories.items()], ignore_index=True)


def write_group_tables(out: Path, group_dir: Path, records: pd.DataFrame, table: pd.DataFrame, fold_rows: list,
                       curves: pd.DataFrame | None, model_name: str, space: str, res: str,
                       K: int) -> GroupTables:
    """Step 5b: in the model's group folder ``group_dir`` (``group/<model>/``, staged), the latent table and
    every fold's latents (TSV + JSON sidecar) and the model's training curves (TSV + PNG; from the model
    folder's ``curves.tsv``, None for a model folder written before it had one)."""

    ent = {"space": space, "res": res}
    latent_tsv = write_tsv(
        table, group_dir / bids_name("latent", ".tsv", desc=model_name.replace("-", ""), **ent)
    )
    write_json(latent_tsv.with_suffix(".json"), {
        "Description": "Latent code of every subject/session, each from the model that held it out",
        "participant_id": {"Description": "subject"},
        "session_id": {"Description": "session or n/a"},
        "fold": {"Description": "the cross-validation fold whose model encoded this subject (held out there)"},
        "in_training": {"Description": "true only when the encoding model saw this subject in training"},
        "z0": {"Description": (
            "latent units z0..zK-1. In k-fold mode each fold is its own network and its units are not "
            "aligned with other folds' units: compare or pool latent coordinates only within one fold "
            "(fit on its training subjects, project its held-out ones), or train with --fit-all")},
        "error": {"Description": (
            "mean squared reconstruction error inside the brain mask, in the model's input units (the GM "
            "map divided by the fold's intensity scale, see models/<name>/model.json); multiply by the "
            "scale squared for GM units")},
        "Sources": [f"bids::{Path(p).relative_to(out).as_posix()}" if Path(p).is_relative_to(out) else str(p)
                    for p in records["gm_path"]],
    })
    fold_latents = pd.DataFrame(
        fold_rows,
        columns=["fold", "participant_id", "session_id", "role"] + latent_columns(K) + ["error"],
    )
    folds_tsv = write_tsv(fold_latents, group_dir / bids_name(
        "latent", ".tsv", desc=model_name.replace("-", "") + "allfolds", **ent))
    write_json(folds_tsv.with_suffix(".json"), {
        "Description": (
            "Every map encoded by every fold's model, with its role in that fold (train, validation or "
            "test = held out; fit-all: all). The latent analysis works within one fold on these rows: "
            "a fold's units are not aligned with another fold's"),
        "role": {"Description": "train | validation | test (held out in this fold); fit-all: train | validation"},
    })
    if curves is None or curves.empty:
        return GroupTables(latent_tsv=latent_tsv, fold_latents=fold_latents, curves_tsv=None, curves_png=None)
    curves_df = curves
    curves_tsv = write_tsv(
        curves_df, group_dir / bids_name("curves", ".tsv", desc="training", **ent)
    )
    curves_png = write_bytes(group_dir / bids_name("curves", ".png", desc="training", **ent),
                             training_curves_png(curves_df))
    return GroupTables(latent_tsv=latent_tsv, fold_latents=fold_latents, curves_tsv=curves_tsv,
                       curves_png=curves_png)
