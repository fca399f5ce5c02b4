"""Group level: train the autoencoder on every participant's GM map and write what it learned.

:func:`run_group_level` is the contract the CLI calls.  It wires :mod:`latentbids.model`:

1. fit the template grid (plus every atlas voxel) to the network (``--sloppy``: a 4 mm grid);
2. read every GM map once into the memory-mapped cache in the work dir;
3. split subjects (stratified k-fold by ``group``, or fit-all) and train one model per fold,
   checkpointing each epoch in the work dir (an interrupted run resumes); a fold already trained by
   a job of its own (``--fold N``, :mod:`latentbids.model.folds`) is merged instead of trained;
4. encode each subject with the fold that held it out: latent TSV, reconstruction, error map and
   regional error under ``sub-<l>/[ses-<s>/]anat/``;
5. write the group latent table and training curves under ``group/`` and the model folder under
   ``models/<name>/``.

With ``--fold N`` only step 3 runs, for fold N, and the fold is kept in the work dir.  Under
``torchrun`` (:mod:`latentbids.model.distributed`) every process trains (step 3) and process 0 alone
does the rest.  Jobs that share the work dir build the GM cache once, under a lock.

The stages live in :mod:`~latentbids.workflows.group_grid` (1-2),
:mod:`~latentbids.workflows.group_folds` (3) and :mod:`~latentbids.workflows.group_outputs` (4-5);
this module checks the request and runs them in order.
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from latentbids.bids.tables import NA_REP, is_missing
from latentbids.errors import MissingInputError, UsageError
from latentbids.workflows.group_folds import fold_identity, make_folds, train_folds
from latentbids.workflows.group_grid import grid_facts, load_cache, working_grid
from latentbids.workflows.group_result import FoldJobResult, GroupLevelResult
from latentbids.workflows.group_outputs import (
    encode_folds,
    group_table,
    model_meta,
    write_group_tables,
    write_model_folder,
)

LOGGER = logging.getLogger("latentbids.workflows.group")


def _settings(config):
    from latentbids.model.train_settings import TrainSettings

    mc, ex = config.model, config.execution  # checked when set, --sloppy applied (settings.resolve_config)
    return TrainSettings(
        latent_dim=int(mc.latent_dim),
        channels=[int(c) for c in mc.channels],
        learning_rate=float(mc.learning_rate),
        batch_size=int(mc.batch_size),
        max_epochs=int(mc.max_epochs),
        patience=int(mc.patience),
        seed=int(ex.random_seed),
        deterministic=bool(ex.deterministic),
        norm=str(mc.norm),
        stem=str(mc.stem),
    )


def _fold_request(config) -> str | None:
    """The fold ``--fold N`` asks for (``None``: every fold); checked against the run's mode here,
    against the number of folds once they are made."""
    fold = int(config.model.fold or 0)
    if fold < 0:
        raise UsageError(f"--fold {fold}: folds are numbered from 1")
    if fold and config.model.fit_all:
        raise UsageError("--fold trains one fold of the cross-validation, --fit-all one model on every subject: "
                         "drop one of them")
    if fold and config.model.model:
        raise UsageError("--fold trains a fold; --model encodes with a trained model: drop one of them")
    return str(fold) if fold else None


def _check_records(records: pd.DataFrame) -> pd.DataFrame:
    for col in ("participant_id", "gm_path"):
        if col not in records:
            raise UsageError(f"group level: records lack the '{col}' column")
    records = records.copy().reset_index(drop=True)
    records["participant_id"] = [
        p if str(p).startswith("sub-") else f"sub-{p}"
        for p in records["participant_id"].astype(str)
    ]
    if "session_id" not in records:
        records["session_id"] = NA_REP
    records["session_id"] = [
        NA_REP if is_missing(s) else (str(s) if str(s).startswith("ses-") else f"ses-{s}")
        for s in records["session_id"]
    ]
    if "group" not in records:
        records["group"] = NA_REP
    records["group"] = [NA_REP if is_missing(g) else str(g) for g in records["group"]]
    dup = records.duplicated(["participant_id", "session_id"])
    if dup.any():
        first = records[dup].iloc[0]
        raise UsageError(
            f"group level: {first.participant_id} {first.session_id} appears twice in the records"
        )
    missing = [p for p in records["gm_path"] if not Path(str(p)).is_file()]
    if missing:
        raise MissingInputError(
            f"GM map {missing[0]} not found ({len(missing)} missing): rerun the "
            f"participant level for those subjects"
        )
    return records


def run_group_level(config, records: pd.DataFrame, template, atlas) -> GroupLevelResult | FoldJobResult | None:
    """Train the autoencoder (k-fold or fit-all) and write latents, reconstructions, errors, model.

    Parameters
    ----------
    config : :class:`latentbids.config.RunConfig` (uses ``config.model`` and ``config.execution``).
    records : one row per GM map: ``participant_id`` (``sub-XX``), ``session_id`` (or n/a),
        ``gm_path`` (template-space GM map on ``template``'s grid), ``group`` (or n/a; stratifies folds)
        and any other participants.tsv columns.
    template : :class:`latentbids.resources.Template` (the grid the maps lie on).
    atlas : :class:`latentbids.resources.Atlas` (regional errors; all its voxels kept in the box).

    Returns
    -------
    GroupLevelResult
        Every file written and what the analysis reads (:mod:`latentbids.workflows.group_result`).
    FoldJobResult
        With ``--fold N``: the fold trained and kept in the work dir.
    None
        On a ``torchrun`` process other than 0 (process 0 writes everything).
    """
    import torch

    from latentbids.model import distributed

    from latentbids.settings import resolve_config

    resolve_config(config)  # idempotent: work dir, threads, --sloppy, checks (as the CLI resolved them)
    ex = config.execution
    if ex.omp_nthreads and ex.omp_nthreads > 0:
        torch.set_num_threads(int(ex.omp_nthreads))
    dist, device = distributed.setup(ex.device)
    try:
        return _run(config, records, template, atlas, dist, device)
    finally:
        distributed.shutdown(dist)  # idempotent: training's end already left the group


def _run(config, records: pd.DataFrame, template, atlas, dist, device) -> GroupLevelResult | FoldJobResult | None:
    """The body of :func:`run_group_level`; ``None`` on a process other than 0 of several."""
    from latentbids.model import distributed
    from latentbids.model.folds import FoldStore

    ex, mc = config.execution, config.model
    if not ex.output_dir:
        raise UsageError("group level needs an output directory")
    out = Path(ex.output_dir)
    work = Path(ex.work_dir)  # resolved by settings.resolve_config (run_group_level)
    settings = _settings(config)
    only = _fold_request(config)
    distributed.check_batch(settings.batch_size, dist)
    records = _check_records(records)

    grid = working_grid(template, atlas, ex.sloppy, len(settings.channels))  # 1. grid
    LOGGER.info("Group level: %d maps, grid %s -> box %s (factor %d), device %s",
                len(records), grid.shape, grid.fit.size, grid.factor, device)
    cached = load_cache(records, work, template, grid, ex.nprocs)  # 2. the GM cache
    data = cached.data

    splits, role, folds = make_folds(config, records, only)  # 3. splits and training, one model per fold
    model_name = mc.model_name or f"ae-K{settings.latent_dim}"
    store = FoldStore(work, model_name)
    expected, run_key = fold_identity(cached.key, settings, splits, mc.input_map,
                                      grid_facts(template, grid.factor, grid.fit), len(folds), device, dist)
    trained = train_folds(config, records, data, grid.mask_box, role, folds, only, settings, device, dist,
                          store=store, expected=expected, run_key=run_key, cache_key=cached.key, work=work)
    distributed.shutdown(dist)  # the last exchange between processes was training's
    if only is not None:
        return FoldJobResult(fold=only, folds=tuple(folds), fold_record=store.record_path(only),
                             model_name=model_name, device=str(device)) if dist.is_main else None
    if not dist.is_main:
        LOGGER.info("%s: training done; process 0 encodes and writes the outputs", dist.describe())
        return None

    space = template.space
    encoded = encode_folds(trained, folds, records, data, role, grid, atlas, settings, device, out, model_name,
                           space)  # 4. encode
    table = group_table(encoded.latent_rows, records)  # 5. model folder, group table, curves
    meta = model_meta(config, template, atlas, grid, folds, settings, device, model_name)
    model_dir = write_model_folder(out / "models" / model_name, config, trained, meta, splits, grid, atlas)
    written = write_group_tables(out, records, table, encoded.fold_rows, trained, model_name, space,
                                 grid.resolution, settings.latent_dim)
    return GroupLevelResult(
        records=records,
        fold_latents=written.fold_latents,
        data=data,
        mask_box=grid.mask_box > 0,
        atlas_box=grid.fit.crop(grid.atlas_work.astype(np.float32)).astype(np.int64),
        atlas_image=nib.Nifti1Image(grid.atlas_work, grid.affine),
        resolution=float(grid.resolution),
        space=space,
        model_name=model_name,
        folds=tuple(folds),
        latent_table=table,
        latent_tsv=written.latent_tsv,
        curves_tsv=written.curves_tsv,
        curves_png=written.curves_png,
        model_dir=model_dir,
        subjects=encoded.subjects,
        splits=splits,
        device=str(device),
        cache=cached.path,
        cache_reused=cached.reused,
        fold_info={fold: t.info for fold, t in trained.items()},
    )
