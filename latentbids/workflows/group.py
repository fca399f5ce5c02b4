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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from latentbids.bids.naming import bids_name, res_label
from latentbids.errors import MissingInputError, UsageError
from latentbids.utils.atomic import atomic_path, write_json, write_tsv
from latentbids.utils.locks import locked

LOGGER = logging.getLogger("latentbids.workflows.group")

#: ``--sloppy`` settings: a 4 mm grid, tiny channels and a few epochs (seconds on 2 CPU cores).
SLOPPY = {"resolution_mm": 4.0, "channels": [4, 8, 8, 16], "max_epochs": 3, "patience": 2}
SCALE_MAX_VOLUMES = 128


def _na(value) -> bool:
    return (
        value is None
        or (isinstance(value, float) and np.isnan(value))
        or str(value).strip().lower() in ("", "n/a", "nan", "none")
    )


def _settings(config):
    from latentbids.model.acceleration import COMPILE_MODES
    from latentbids.model.network import STEMS
    from latentbids.model.training import TrainSettings

    mc, ex = config.model, config.execution
    channels = list(mc.channels)
    max_epochs, patience = int(mc.max_epochs), int(mc.patience)
    if ex.sloppy:
        channels = list(SLOPPY["channels"][: len(channels)]) if len(channels) <= 4 else channels
        max_epochs = min(max_epochs, SLOPPY["max_epochs"])
        patience = min(patience, SLOPPY["patience"])
    if int(mc.batch_size) < 1 or int(mc.latent_dim) < 1 or float(mc.learning_rate) <= 0:
        raise UsageError("model batch_size, latent_dim and learning_rate must be positive")
    if mc.stem not in STEMS:
        raise UsageError(f"[model] stem = {mc.stem!r} is not valid: use one of {', '.join(STEMS)}")
    if mc.compile not in COMPILE_MODES:
        raise UsageError(f"[model] compile = {mc.compile!r} is not valid: use one of {', '.join(COMPILE_MODES)}")
    return TrainSettings(
        latent_dim=int(mc.latent_dim),
        channels=channels,
        learning_rate=float(mc.learning_rate),
        batch_size=int(mc.batch_size),
        max_epochs=max_epochs,
        patience=patience,
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


@dataclass
class TrainedFold:
    """One fold's network (best epoch, eval mode), its facts for model.json and its training curve."""

    model: object
    info: dict
    history: pd.DataFrame


def _grid_facts(template, factor: int, fit) -> dict:
    """What a fold model's input grid is (a fold trained on another grid is refused)."""
    return {"space": template.space, "resolution": float(template.resolution), "shape": list(template.shape),
            "downsample": int(factor), "box": fit.to_dict()}


def _grid_text(grid: dict) -> str:
    box = "x".join(str(s) for s in grid["box"]["size"])
    res = grid["resolution"] * grid["downsample"]
    return f"{grid['space']} at {res:g} mm (network box {box})"


def _check_record(record: dict, fold: str, expected: dict, store) -> None:
    """Refuse (exit 64) a fold trained by a ``--fold`` job on another grid, or for another model."""
    path = store.record_path(fold)
    if record.get("grid") != expected["grid"]:
        raise UsageError(
            f"Fold {fold} in {path} was trained on {_grid_text(record['grid'])}, but this run fits "
            f"{_grid_text(expected['grid'])}: rerun the --fold jobs with this run's --output-spaces and --sloppy, "
            f"or remove {store.folder} to train the folds here"
        )
    if record.get("model_key") != expected["model_key"]:
        differ = [name for name in ("settings", "subjects", "input_map", "n_folds")
                  if record.get(name) != expected[name]] or ["the GM maps"]
        raise UsageError(
            f"Fold {fold} in {path} was trained for another model ({', '.join(differ)} differ from this run's): "
            f"rerun the --fold jobs with this run's options, or remove {store.folder} to train the folds here"
        )


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
        records["session_id"] = "n/a"
    records["session_id"] = [
        "n/a" if _na(s) else (str(s) if str(s).startswith("ses-") else f"ses-{s}")
        for s in records["session_id"]
    ]
    if "group" not in records:
        records["group"] = "n/a"
    records["group"] = ["n/a" if _na(g) else str(g) for g in records["group"]]
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


def _key(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def train_fold(data, mask_box, rows_of: dict, settings, device, scale: float, config, *, checkpoint_dir,
               cache_key: str, fold: str, dist) -> TrainedFold:
    """Train one fold (resuming from its checkpoint) and gather what model.json says about it."""
    from latentbids.model.training import train_autoencoder

    result = train_autoencoder(
        data,
        mask_box,
        rows_of["train"],
        rows_of["validation"],
        settings,
        device,
        scale,
        checkpoint_dir=checkpoint_dir,
        extra_fingerprint={"cache": cache_key, "fold": fold},
        compile=config.model.compile,
        dist=dist,
    )
    info = {
        "scale": scale,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "n_train": int(len(rows_of["train"])),
        "n_validation": int(len(rows_of["validation"])),
        "n_test": int(len(rows_of["test"])),
        "micro_batch": result.micro_batch,
        "oom_events": result.oom_events,
        "data_placement": result.placement,
        "fast_path": result.fast_path,
        "compiled": result.compiled,
        "processes": dist.world_size,
        "trained_by": "--fold job" if config.model.fold else "this run",
    }
    return TrainedFold(result.model, info, result.history.copy())


def _merged_fold(record: dict, store, fold: str, settings, shape) -> TrainedFold:
    """A fold a ``--fold`` job trained: its network with the recorded weights, facts and curve."""
    from latentbids.model.training import build_model

    import torch

    with torch.random.fork_rng(devices=[]):  # the network's init is overwritten at once
        model = build_model(settings, shape)
    model.load_state_dict(store.weights(fold, record))
    info = {**record["info"], "trained_by": "--fold job", "record_sha256": record["sha256"]}
    return TrainedFold(model.eval(), info, pd.DataFrame(record["history"]))


def _scale(config, data: np.ndarray, rows: np.ndarray, mask: np.ndarray) -> float:
    """1 for probability maps; else one percentile (config.model.scale_percentile) of in-mask training values."""
    if config.model.input_map == "probseg":
        return 1.0
    pick = (
        rows
        if len(rows) <= SCALE_MAX_VOLUMES
        else rows[np.linspace(0, len(rows) - 1, SCALE_MAX_VOLUMES).astype(int)]
    )
    values = np.concatenate([np.asarray(data[r])[mask] for r in np.sort(pick)])
    scale = float(np.percentile(values, float(config.model.scale_percentile)))
    return scale if scale > 0 else 1.0


def _plot_curves(curves: pd.DataFrame, target: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for fold, part in curves.groupby("fold", sort=False):
        (line,) = ax.plot(part["epoch"], part["train_loss"], label=f"fold {fold} train")
        ax.plot(
            part["epoch"],
            part["val_loss"],
            "--",
            color=line.get_color(),
            label=f"fold {fold} validation",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("masked MSE")
    ax.set_yscale("log")
    ax.set_title("Autoencoder training curves")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return target


def run_group_level(config, records: pd.DataFrame, template, atlas) -> dict:
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
    dict with ``latent_table`` (DataFrame), ``latent_tsv``, ``curves_tsv``, ``curves_png``,
    ``model_dir``, ``subjects`` (``{"sub-XX[_ses-YY]": {kind: path}}``), ``splits`` (DataFrame),
    ``device``, ``cache`` (path) and ``cache_reused``; for the analysis: ``fold_latents`` (every map
    encoded by every fold's model: fold, participant_id, session_id, role, z0.., error), ``data`` (the
    cached maps on the network box, in ``records`` order, GM units), ``mask_box``, ``atlas_box``
    (atlas labels on the box), ``atlas_image`` (atlas on the working grid), ``resolution``, ``space``,
    ``records`` (the input records, normalised: ``sub-``/``ses-`` prefixes, ``group`` column),
    ``model_name`` and ``folds``.
    """
    import torch

    from latentbids.model import distributed

    ex = config.execution
    if ex.omp_nthreads and ex.omp_nthreads > 0:
        torch.set_num_threads(int(ex.omp_nthreads))
    dist, device = distributed.setup(ex.device)
    try:
        return _run(config, records, template, atlas, dist, device)
    finally:
        distributed.shutdown(dist)  # idempotent: training's end already left the group


@dataclass(frozen=True, eq=False)
class WorkingGrid:
    """The grid the network works on: the template (or its block-average under ``--sloppy``), its
    mask united with every atlas voxel, and the box fitted to the network's levels."""

    factor: int  # template voxels per working voxel along each axis
    resolution: float  # working voxel size (mm)
    shape: tuple  # working grid shape
    affine: np.ndarray  # working grid affine
    atlas_work: np.ndarray  # atlas labels on the working grid (int16)
    mask_work: np.ndarray  # brain mask on the working grid (template mask | atlas)
    fit: object  # :class:`latentbids.model.grid.GridFit`: working grid <-> network box
    mask_box: np.ndarray  # the mask cropped to the box (float32)


def _working_grid(template, atlas, sloppy, levels: int) -> WorkingGrid:
    """Step 1: the working grid (``sloppy``: a 4 mm block-average of the template), its mask united
    with the atlas (so every region is kept) and the network box fitted to ``levels`` levels."""
    from latentbids.model.grid import block_reduce, downsample_affine, downsample_shape, fit_grid
    from latentbids.resources import resample_atlas

    factor = 1
    if sloppy and template.resolution < SLOPPY["resolution_mm"]:
        factor = max(1, int(round(SLOPPY["resolution_mm"] / template.resolution)))
    work_res = template.resolution * factor
    work_shape = downsample_shape(template.shape, factor)
    work_affine = downsample_affine(template.affine, factor)
    work_ref = nib.Nifti1Image(np.zeros(work_shape, dtype=np.uint8), work_affine)
    atlas_tpl = np.asarray(resample_atlas(atlas, template.mask).dataobj)
    mask_tpl = (np.asarray(template.mask.dataobj) > 0) | (atlas_tpl > 0)
    atlas_work = np.asarray(resample_atlas(atlas, work_ref).dataobj).astype(np.int16)
    mask_work = (block_reduce(mask_tpl.astype(np.uint8), factor, "max") > 0) | (atlas_work > 0)
    fit = fit_grid(mask_work, levels=levels)
    mask_box = fit.crop(mask_work.astype(np.float32))
    return WorkingGrid(factor, work_res, work_shape, work_affine, atlas_work, mask_work, fit, mask_box)


def _load_cache(records: pd.DataFrame, work: Path, template, grid: WorkingGrid, nprocs):
    """Step 2: every map once, into the memory-mapped cache (built once by whichever job or process
    of those sharing the work dir comes first; the others wait, then reuse it)."""
    from latentbids.model.cache import load_volumes

    with locked(work / "model_cache" / ".build.lock"):
        return load_volumes(
            records["gm_path"].tolist(),
            work / "model_cache",
            template.shape,
            template.affine,
            grid.factor,
            grid.fit,
            n_threads=max(1, int(nprocs or 1)),
        )


def _make_folds(config, records: pd.DataFrame, only: str | None):
    """Step 3a: the splits, each (fold, participant) pair's role and the fold names; ``--fold N``
    is checked against the number of folds here."""
    from latentbids.model.splits import make_splits

    ex, mc = config.execution, config.model
    splits = make_splits(
        records, n_folds=int(mc.n_folds), seed=int(ex.random_seed), fit_all=bool(mc.fit_all),
        validation_fraction=float(mc.validation_fraction),
    )
    role = {
        (f, p): r for f, p, r in splits[["fold", "participant_id", "role"]].itertuples(index=False)
    }
    folds = list(dict.fromkeys(splits["fold"]))
    if only is not None and only not in folds:
        raise UsageError(f"--fold {only}: this run has {len(folds)} folds (--n-folds {len(folds)}): "
                         f"pick one of 1-{len(folds)}")
    return splits, role, folds


def _fold_identity(cache_key: str, settings, splits: pd.DataFrame, input_map: str, grid_facts: dict,
                   n_folds: int, device, dist) -> tuple[dict, str]:
    """What a fold's model is (``expected``: a ``--fold`` record must match it) and the key of its
    checkpoint folder (one process keeps the key of earlier versions, so their work dirs resume)."""
    identity = {
        "cache": cache_key,
        "settings": settings.fingerprint(),
        "splits": splits.to_dict("list"),
        "input_map": input_map,
    }
    model_key = _key(identity)
    run_key = _key({**identity, "device": str(device) if not dist.active else f"{device.type}x{dist.world_size}"})
    expected = {"model_key": model_key, "grid": grid_facts,
                "settings": settings.fingerprint(), "input_map": input_map, "n_folds": n_folds,
                "subjects": hashlib.sha256(json.dumps(splits.to_dict("list")).encode()).hexdigest()[:16]}
    return expected, run_key


def _fold_rows(records: pd.DataFrame, role: dict, fold: str) -> dict:
    """The rows of ``records`` (cache rows) in each role of ``fold``."""
    return {
        r: np.array(
            [i for i, p in enumerate(records["participant_id"]) if role[(fold, p)] == r],
            dtype=np.int64,
        )
        for r in ("train", "validation", "test")
    }


def _earlier_record(store, fold: str, expected: dict, only: str | None) -> dict | None:
    """The record a ``--fold`` job left for ``fold``, checked against this run; under ``--fold`` a
    record for another model is trained again (logged), without it the run is refused."""
    record = store.record(fold)
    if record is not None:
        try:
            _check_record(record, fold, expected, store)
        except UsageError:
            if only is None:
                raise
            LOGGER.warning("Fold %s's earlier record in %s is for another model: training it again", fold,
                           store.folder)
            record = None
    return record


def _save_fold_record(store, fold: str, result: TrainedFold, expected: dict, device, dist, n_folds: int) -> None:
    """Under ``--fold N``: keep the trained fold (weights, facts, curve) in the work dir for the
    group run that merges the folds."""
    from latentbids.config import package_versions
    from latentbids.model.device import describe_device

    path = store.save(fold, result.model.state_dict(), {
        **{k: expected[k] for k in ("model_key", "grid", "settings", "input_map", "n_folds", "subjects")},
        "info": result.info,
        "history": result.history.to_dict("records"),
        "device": f"{device} ({describe_device(device)})" + (f" x{dist.world_size}" if dist.active else ""),
        "versions": package_versions(),
    })
    LOGGER.info("Fold %s of %d trained (best epoch %d, validation loss %.6g) and kept in %s: run the group "
                "level without --fold to merge the folds and run the analysis", fold, n_folds,
                result.info["best_epoch"], result.info["best_val_loss"], path)


def _train_folds(config, records: pd.DataFrame, data, mask_box, role: dict, folds: list, only: str | None,
                 settings, device, dist, *, store, expected: dict, run_key: str, cache_key: str,
                 work: Path) -> dict[str, TrainedFold]:
    """Step 3b: one model per fold (only fold ``only`` under ``--fold``): a fold a ``--fold`` job
    already trained is merged from its record, the others are trained here (checkpointed in the
    work dir); under ``--fold`` the trained fold's record is saved."""
    trained: dict[str, TrainedFold] = {}
    for fold in folds:
        if only is not None and fold != only:
            continue
        rows_of = _fold_rows(records, role, fold)
        record = _earlier_record(store, fold, expected, only)
        if record is not None:
            trained[fold] = _merged_fold(record, store, fold, settings, data.shape[1:])
            LOGGER.info("Fold %s: trained by a --fold job (%s, best epoch %s), merged", fold,
                        record.get("device", "?"), record["info"].get("best_epoch"))
            continue
        scale = _scale(config, data, rows_of["train"], mask_box > 0)
        LOGGER.info(
            "Fold %s: %d train, %d validation, %d held-out maps; intensity scale %.4g",
            fold,
            len(rows_of["train"]),
            len(rows_of["validation"]),
            len(rows_of["test"]),
            scale,
        )
        with store.training(fold) if dist.is_main else contextlib.nullcontext():
            result = train_fold(data, mask_box, rows_of, settings, device, scale, config,
                                checkpoint_dir=work / "model_training" / run_key / f"fold-{fold}",
                                cache_key=cache_key, fold=fold, dist=dist)
        trained[fold] = result
        if only is not None and dist.is_main:
            _save_fold_record(store, fold, result, expected, device, dist, len(folds))
    return trained


def _write_subject(out: Path, rec, fold: str, in_training: bool, latent: pd.DataFrame, batch, j: int,
                   scale: float, grid: WorkingGrid, atlas, model_name: str, space: str) -> dict:
    """One subject's derivatives (latent TSV, reconstruction, error map, regional error) under
    ``sub-<l>/[ses-<s>/]anat/``, from item ``j`` of an encoded batch; returns their paths."""
    from latentbids.model.encoding import regional_error
    from latentbids.model.outputs import write_subject_outputs

    recon = grid.fit.restore(batch.recon[j] * scale)
    error_map = grid.fit.restore(batch.error_map[j])
    regions = regional_error(error_map, grid.atlas_work, atlas.labels, grid.mask_work)
    sidecar = {
        "Model": model_name,
        "ModelFold": fold,
        "InTraining": bool(in_training),
        "IntensityScale": scale,
        "Sources": [f"bids::{Path(rec.gm_path).relative_to(out).as_posix()}"
                    if Path(rec.gm_path).is_relative_to(out) else str(rec.gm_path)],
    }
    return write_subject_outputs(
        out,
        rec.participant_id,
        rec.session_id,
        space=space,
        resolution=grid.resolution,
        atlas_name=atlas.bids_name,
        latent_row=latent,
        recon=recon,
        error_map=error_map,
        affine=grid.affine,
        regions=regions,
        sidecar=sidecar,
    )


def _encode_folds(trained: dict[str, TrainedFold], folds: list, records: pd.DataFrame, data, role: dict,
                  grid: WorkingGrid, atlas, settings, device, out: Path, model_name: str,
                  space: str) -> tuple[list, dict, list]:
    """Step 4: encode every map with every fold's model.  The held-out maps (fit-all: every map,
    labelled in_training) give the per-subject derivatives (written here) and the group latent
    table; the others only feed the within-fold analysis (a fold's latent units are its own).
    Returns the latent table's rows, the subjects' output paths and every (fold, map) row."""
    from latentbids.model.encoding import iter_encode
    from latentbids.model.outputs import latent_columns

    K = settings.latent_dim
    latent_rows, subjects, fold_rows = [], {}, []
    for fold in folds:
        scale = float(trained[fold].info["scale"])
        for batch in iter_encode(
            trained[fold].model, data, np.arange(len(records)), grid.mask_box, device, scale,
            batch_size=settings.batch_size,
        ):
            for j, r in enumerate(batch.rows):
                rec = records.iloc[int(r)]
                fold_role = role[(fold, rec.participant_id)]
                fold_rows.append(
                    [fold, rec.participant_id, rec.session_id, fold_role]
                    + batch.z[j].tolist() + [float(batch.error[j])]
                )
                if fold != "all" and fold_role != "test":
                    continue
                in_training = fold_role in ("train", "validation")
                latent = pd.DataFrame(
                    [
                        [rec.participant_id, rec.session_id, fold, in_training]
                        + batch.z[j].tolist()
                        + [float(batch.error[j])]
                    ],
                    columns=["participant_id", "session_id", "fold", "in_training"]
                    + latent_columns(K)
                    + ["error"],
                )
                latent_rows.append(latent)
                label = rec.participant_id + (
                    "" if rec.session_id == "n/a" else f"_{rec.session_id}"
                )
                subjects[label] = _write_subject(out, rec, fold, in_training, latent, batch, j, scale, grid,
                                                 atlas, model_name, space)
    return latent_rows, subjects, fold_rows


def _group_table(latent_rows: list, records: pd.DataFrame) -> pd.DataFrame:
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


def _model_meta(config, template, atlas, grid: WorkingGrid, folds: list, settings, device,
                model_name: str) -> dict:
    """model.json: what the model is and how it was made (grid, atlas, intensity rule, seeds,
    training settings, device, versions), so it can encode new maps the same way."""
    from latentbids.config import package_versions
    from latentbids.model.device import describe_device

    ex, mc = config.execution, config.model
    return {
        "name": model_name,
        "mode": "fit_all" if mc.fit_all else "kfold",
        "n_folds": len(folds),
        "default_fold": folds[0],
        "template": {
            "space": template.space,
            "resolution": float(template.resolution),
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
            "input_map": mc.input_map,
            "rule": "probseg: 1; modulated: percentile %g of in-mask training values"
            % float(mc.scale_percentile),
        },
        "seeds": {
            "random_seed": int(ex.random_seed),
            "model_init": int(ex.random_seed),
            "shuffle": int(ex.random_seed) + 1,
            "splits": int(ex.random_seed),
        },
        "deterministic": bool(ex.deterministic),
        "sloppy": bool(ex.sloppy),
        "training": settings.fingerprint(),
        "device": f"{device} ({describe_device(device)})",
        "versions": package_versions(),
    }


def _write_model_folder(target: Path, config, trained: dict[str, TrainedFold], meta: dict, splits: pd.DataFrame,
                        grid: WorkingGrid, atlas) -> Path:
    """Step 5a: the model folder ``models/<name>/`` (weights, model.json, splits, mask, atlas, the
    run's config as TOML: a config that cannot be serialised is logged, never fatal)."""
    from latentbids.config import dump_toml
    from latentbids.model.bundle import save_bundle

    try:
        config_toml = dump_toml(config.provenance())
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
    )


def _write_group_tables(out: Path, records: pd.DataFrame, table: pd.DataFrame, fold_rows: list,
                        trained: dict[str, TrainedFold], model_name: str, space: str, resolution,
                        K: int) -> dict:
    """Step 5b: under ``group/``, the latent table and every fold's latents (TSV + JSON sidecar)
    and the training curves (TSV + PNG).  Returns ``latent_tsv``, ``fold_latents``, ``curves_tsv``
    and ``curves_png``."""
    from latentbids.model.outputs import latent_columns

    group_dir = out / "group"
    ent = {"space": space, "res": res_label(resolution)}
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
    curves = [t.history.assign(fold=fold)[["fold"] + list(t.history.columns)] for fold, t in trained.items()]
    curves_df = pd.concat(curves, ignore_index=True)
    curves_tsv = write_tsv(
        curves_df, group_dir / bids_name("curves", ".tsv", desc="training", **ent)
    )
    curves_png = _plot_curves(
        curves_df, group_dir / bids_name("curves", ".png", desc="training", **ent)
    )
    return {"latent_tsv": latent_tsv, "fold_latents": fold_latents, "curves_tsv": curves_tsv,
            "curves_png": curves_png}


def _run(config, records: pd.DataFrame, template, atlas, dist, device) -> dict | None:
    """The body of :func:`run_group_level`; ``None`` on a process other than 0 of several."""
    from latentbids.model import distributed
    from latentbids.model.folds import FoldStore

    ex, mc = config.execution, config.model
    if not ex.output_dir:
        raise UsageError("group level needs an output directory")
    out = Path(ex.output_dir)
    work = Path(ex.work_dir) if ex.work_dir else Path(tempfile.gettempdir()) / "latentbids_work"
    settings = _settings(config)
    only = _fold_request(config)
    distributed.check_batch(settings.batch_size, dist)
    records = _check_records(records)

    grid = _working_grid(template, atlas, ex.sloppy, len(settings.channels))  # 1. grid
    LOGGER.info("Group level: %d maps, grid %s -> box %s (factor %d), device %s",
                len(records), grid.shape, grid.fit.size, grid.factor, device)
    cached = _load_cache(records, work, template, grid, ex.nprocs)  # 2. the GM cache
    data = cached.data

    splits, role, folds = _make_folds(config, records, only)  # 3. splits and training, one model per fold
    model_name = mc.model_name or f"ae-K{settings.latent_dim}"
    store = FoldStore(work, model_name)
    expected, run_key = _fold_identity(cached.key, settings, splits, mc.input_map,
                                       _grid_facts(template, grid.factor, grid.fit), len(folds), device, dist)
    trained = _train_folds(config, records, data, grid.mask_box, role, folds, only, settings, device, dist,
                           store=store, expected=expected, run_key=run_key, cache_key=cached.key, work=work)
    distributed.shutdown(dist)  # the last exchange between processes was training's
    if only is not None:
        return {"fold": only, "folds": folds, "fold_record": store.record_path(only), "model_name": model_name,
                "device": str(device)} if dist.is_main else None
    if not dist.is_main:
        LOGGER.info("%s: training done; process 0 encodes and writes the outputs", dist.describe())
        return None

    space = template.space
    latent_rows, subjects, fold_rows = _encode_folds(trained, folds, records, data, role, grid, atlas,
                                                     settings, device, out, model_name, space)  # 4. encode
    table = _group_table(latent_rows, records)  # 5. model folder, group table, curves
    meta = _model_meta(config, template, atlas, grid, folds, settings, device, model_name)
    model_dir = _write_model_folder(out / "models" / model_name, config, trained, meta, splits, grid, atlas)
    written = _write_group_tables(out, records, table, fold_rows, trained, model_name, space, grid.resolution,
                                  settings.latent_dim)
    return {
        "records": records,
        "fold_latents": written["fold_latents"],
        "data": data,
        "mask_box": grid.mask_box > 0,
        "atlas_box": grid.fit.crop(grid.atlas_work.astype(np.float32)).astype(np.int64),
        "atlas_image": nib.Nifti1Image(grid.atlas_work, grid.affine),
        "resolution": float(grid.resolution),
        "space": space,
        "model_name": model_name,
        "folds": folds,
        "latent_table": table,
        "latent_tsv": written["latent_tsv"],
        "curves_tsv": written["curves_tsv"],
        "curves_png": written["curves_png"],
        "model_dir": model_dir,
        "subjects": subjects,
        "splits": splits,
        "device": str(device),
        "cache": cached.path,
        "cache_reused": cached.reused,
        "fold_info": {fold: t.info for fold, t in trained.items()},
    }
