"""Group level: train the autoencoder on every participant's GM map and write what it learned.

:func:`train_and_encode` is what :func:`latentbids.workflows.group.level.run_group` calls.  It wires
:mod:`latentbids.model`:

1. fit the template grid (plus every atlas voxel) to the network (``--sloppy``: a 4 mm grid);
2. read every GM map once into the memory-mapped cache in the work dir;
3. split subjects (stratified k-fold by ``group``, or fit-all) and train one model per fold,
   checkpointing each epoch in the work dir (an interrupted run resumes); a fold already trained by
   a job of its own (``--fold N``, :mod:`latentbids.model.folds`) is merged instead of trained;
4. write the model folder ``models/<name>/`` (never over another model: :mod:`latentbids.workflows.group.model_folder`),
   then encode each subject with its weights, by the fold that held it out: latent TSV, reconstruction,
   error map and regional error under ``sub-<l>/[ses-<s>/]anat/``, named by the model (``desc-aeK32``);
5. write the group latent tables and training curves into ``group/<name>/`` (staged by the caller and
   swapped in whole with the analysis).

With ``--model DIR`` steps 3 and 4's training are skipped: DIR, checked whole first, encodes every map
and names the outputs; DIR itself is never written.

With ``--fold N`` only step 3 runs, for fold N, and the fold is kept in the work dir.  Under
``torchrun`` (:mod:`latentbids.model.distributed`) every process trains (step 3) and process 0 alone
does the rest.  Jobs that share the work dir build the GM cache once, under a lock.

The stages live in :mod:`~latentbids.workflows.group.grid` (1-2),
:mod:`~latentbids.workflows.group.folds` (3) and :mod:`~latentbids.workflows.group.outputs` (4-5);
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
from latentbids.model.names import bundle_name
from latentbids.settings.group import GroupSettings
from latentbids.workflows.group.folds import fold_identity, make_folds, train_folds
from latentbids.workflows.group.grid import grid_facts, load_cache, working_grid
from latentbids.workflows.group.model_folder import (
    bundle_folds,
    bundle_grid,
    bundle_roles,
    check_model_folder,
    given_model,
    identity_of,
    model_curves,
    publish_model_folder,
)
from latentbids.workflows.group.outputs import (
    encode_folds,
    group_table,
    model_meta,
    write_group_tables,
    write_model_folder,
)
from latentbids.workflows.group.result import FoldJobResult, GroupLevelResult

LOGGER = logging.getLogger("latentbids.workflows.group.training")


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


def train_and_encode(settings: GroupSettings, records: pd.DataFrame, template, atlas, outputs=None,
                    bundle=None) -> GroupLevelResult | FoldJobResult | None:
    """Train the autoencoder (k-fold or fit-all), or take ``--model``'s, and write latents, reconstructions,
    errors and the model folder.

    Parameters
    ----------
    settings : :class:`latentbids.settings.group.GroupSettings` (folders, device, training, folds, model).
    records : one row per GM map: ``participant_id`` (``sub-XX``), ``session_id`` (or n/a),
        ``gm_path`` (template-space GM map on ``template``'s grid), ``group`` (or n/a; stratifies folds)
        and any other participants.tsv columns.
    template : :class:`latentbids.resources.Template` (the grid the maps lie on).
    atlas : :class:`latentbids.resources.Atlas` (regional errors; all its voxels kept in the box).
    outputs : :class:`latentbids.utils.staging.StagedFolder`, optional
        Where the model's group set (``group/<model>/``) is built; without it the files are written in
        place (library use).
    bundle : :class:`latentbids.model.bundle.ModelBundle`, optional
        ``--model``'s folder when the caller already verified it (else it is verified here).

    Returns
    -------
    GroupLevelResult
        Every file written and what the analysis reads (:mod:`latentbids.workflows.group.result`).
    FoldJobResult
        With ``--fold N``: the fold trained and kept in the work dir.
    None
        On a ``torchrun`` process other than 0 (process 0 writes everything).
    """
    import torch

    from latentbids.model import distributed

    if settings.omp_nthreads > 0:
        torch.set_num_threads(settings.omp_nthreads)
    if bundle is None and settings.given_model is not None:
        bundle = given_model(settings.given_model, template)
    dist, device = distributed.setup(settings.device)
    try:
        return _run(settings, records, template, atlas, dist, device, bundle, outputs)
    finally:
        distributed.shutdown(dist)  # idempotent: training's end already left the group


def _train(settings: GroupSettings, records, cached, grid, template, device, dist, model_dir: Path):
    """Step 3: the splits and one model per fold, or this configuration's model already in ``model_dir``.

    Returns ``(splits, role, folds, trained, bundle, identity)``: ``trained`` holds the networks this run
    trained (None when the folder already held them), ``bundle`` the model folder if it exists now.
    """
    from latentbids.model.folds import FoldStore

    only = settings.folds.only
    splits, role, folds = make_folds(settings.folds, records)
    store = FoldStore(settings.work_dir, model_dir.name)
    expected, run_key = fold_identity(cached.key, settings.train, splits, settings.input_map,
                                      grid_facts(template, grid.factor, grid.fit), len(folds), device, dist)
    # another model there: refused before any training; a --fold job writes only the work dir (its merge checks)
    bundle = check_model_folder(model_dir, expected) if only is None else None
    if bundle is not None:
        return splits, role, folds, None, bundle, expected
    trained = train_folds(settings, records, cached.data, grid.mask_box, role, folds, device, dist,
                          store=store, expected=expected, run_key=run_key, cache_key=cached.key)
    return splits, role, folds, trained, None, expected


def _run(settings: GroupSettings, records: pd.DataFrame, template, atlas, dist, device, bundle,
         outputs) -> GroupLevelResult | FoldJobResult | None:
    """The body of :func:`train_and_encode`; ``None`` on a process other than 0 of several."""
    from latentbids.model import distributed
    from latentbids.model.folds import FoldStore

    distributed.check_batch(settings.train.batch_size, dist)
    records = _check_records(records)
    model_name = bundle_name(bundle) if bundle is not None else settings.model_name
    model_dir = bundle.path if bundle is not None else settings.output_dir / "models" / model_name

    grid = (bundle_grid(bundle, atlas) if bundle is not None
            else working_grid(template, atlas, settings.working_grid_mm, len(settings.train.channels)))  # 1. grid
    LOGGER.info("Group level: %d maps, grid %s -> box %s (factor %d), device %s",
                len(records), grid.shape, grid.fit.size, grid.factor, device)
    cached = load_cache(records, settings.work_dir, template, grid, settings.nprocs)  # 2. the GM cache

    trained, identity = None, None
    if bundle is not None:  # 3. the model: --model's, this configuration's own, or trained now
        splits, role, folds = bundle_roles(bundle, records)
    else:
        splits, role, folds, trained, bundle, identity = _train(settings, records, cached, grid, template, device,
                                                                dist, model_dir)
    distributed.shutdown(dist)  # the last exchange between processes was training's
    if settings.folds.only is not None:
        record = FoldStore(settings.work_dir, model_name).record_path(settings.folds.only)
        return FoldJobResult(fold=settings.folds.only, folds=tuple(folds), fold_record=record, model_name=model_name,
                             device=str(device)) if dist.is_main else None
    if not dist.is_main:
        LOGGER.info("%s: training done; process 0 encodes and writes the outputs", dist.describe())
        return None
    if trained is not None:  # 5a. the model folder first: the subjects are encoded with its weights
        meta = model_meta(settings, template, atlas, grid, folds, device, model_name, identity_of(identity))
        bundle = publish_model_folder(
            model_dir, lambda target: write_model_folder(target, settings, trained, meta, splits, grid, atlas),
            identity)
    return _encode_and_write(settings, records, cached, grid, atlas, bundle, splits, role, device, model_name,
                             template.space, trained, outputs)


def _encode_and_write(settings: GroupSettings, records, cached, grid, atlas, bundle, splits, role, device, model_name,
                      space, trained, outputs) -> GroupLevelResult:
    """Steps 4 and 5b: every map encoded with the model folder's weights, the group tables written."""
    out = settings.output_dir
    folds = bundle_folds(bundle, device)
    encoded = encode_folds(folds, records, cached.data, role, grid, atlas, settings.train.batch_size, device, out,
                           model_name, space)  # 4. encode
    table = group_table(encoded.latent_rows, records)
    group_dir = outputs.path if outputs is not None else out / "group" / model_name
    K = int(bundle.meta["latent_dim"])
    written = write_group_tables(out, group_dir, records, table, encoded.fold_rows, model_curves(bundle), model_name,
                                 space, grid.res, K)
    return GroupLevelResult(
        records=records,
        fold_latents=written.fold_latents,
        data=cached.data,
        mask_box=grid.mask_box > 0,
        atlas_box=grid.fit.crop(grid.atlas_work.astype(np.float32)).astype(np.int64),
        grid_fit=grid.fit,
        atlas_image=nib.Nifti1Image(grid.atlas_work, grid.affine),
        resolution=float(grid.resolution),
        res=grid.res,
        space=space,
        model_name=model_name,
        folds=tuple(bundle.folds),
        latent_table=table,
        latent_tsv=written.latent_tsv,
        curves_tsv=written.curves_tsv,
        curves_png=written.curves_png,
        model_dir=bundle.path,
        subjects=encoded.subjects,
        splits=splits,
        device=str(device),
        cache=cached.path,
        cache_reused=cached.reused,
        fold_info={f: dict(bundle.fold_entry(f)) for f in bundle.folds},
        group_dir=group_dir,
        mode=str(bundle.meta.get("mode", "kfold")),
        trained_here=trained is not None,
    )
