"""Group level, step 3: the splits and one model per fold.

:func:`make_folds` splits the subjects (stratified k-fold by ``group``, or fit-all);
:func:`fold_identity` says what a fold's model is (a ``--fold`` job's record must match it) and
keys its checkpoint folder; :func:`train_folds` trains each fold (:func:`train_fold`, resuming
from its checkpoint in the work dir) or merges the one a ``--fold`` job already trained
(:mod:`latentbids.model.folds`), and under ``--fold N`` keeps the trained fold's record.  Wired
by :mod:`latentbids.workflows.group.training`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from latentbids.errors import UsageError

LOGGER = logging.getLogger("latentbids.workflows.group.training")

SCALE_MAX_VOLUMES = 128


@dataclass(frozen=True)
class TrainedFold:
    """One fold's network (best epoch, eval mode), its facts for model.json and its training curve.

    Attributes
    ----------
    model : latentbids.model.network.AutoEncoder3D
        The best epoch's network, in eval mode.
    info : dict
        Its entry of ``model.json``'s ``folds`` (epochs, best validation loss, intensity scale, data path ...).
    history : pandas.DataFrame
        One row per epoch (``epoch, train_loss, val_loss`` ..., masked MSE in model units).
    """

    model: object
    info: dict
    history: pd.DataFrame


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


def _key(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def train_fold(data, mask_box, rows_of: dict, settings, device, scale: float, *, checkpoint_dir,
               cache_key: str, fold: str, dist) -> TrainedFold:
    """Train one fold (resuming from its checkpoint) and gather what model.json says about it."""
    from latentbids.model.training import train_autoencoder

    result = train_autoencoder(
        data,
        mask_box,
        rows_of["train"],
        rows_of["validation"],
        settings.train,
        device,
        scale,
        checkpoint_dir=checkpoint_dir,
        extra_fingerprint={"cache": cache_key, "fold": fold},
        compile=settings.compile,
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
        "trained_by": "--fold job" if settings.folds.only is not None else "this run",
    }
    return TrainedFold(result.model, info, result.history.copy())


def _merged_fold(record: dict, store, fold: str, settings, shape) -> TrainedFold:
    """A fold a ``--fold`` job trained: its network with the recorded weights, facts and curve."""
    import torch

    from latentbids.model.training import build_model

    with torch.random.fork_rng(devices=[]):  # the network's init is overwritten at once
        model = build_model(settings, shape)
    model.load_state_dict(store.weights(fold, record))
    info = {**record["info"], "trained_by": "--fold job", "record_sha256": record["sha256"]}
    return TrainedFold(model.eval(), info, pd.DataFrame(record["history"]))


def _scale(settings, data: np.ndarray, rows: np.ndarray, mask: np.ndarray) -> float:
    """1 for probability maps; else one percentile (``settings.scale_percentile``) of in-mask training values."""
    if settings.input_map == "probseg":
        return 1.0
    pick = (
        rows
        if len(rows) <= SCALE_MAX_VOLUMES
        else rows[np.linspace(0, len(rows) - 1, SCALE_MAX_VOLUMES).astype(int)]
    )
    values = np.concatenate([np.asarray(data[r])[mask] for r in np.sort(pick)])
    scale = float(np.percentile(values, settings.scale_percentile))
    return scale if scale > 0 else 1.0


def make_folds(plan, records: pd.DataFrame):
    """Step 3a: the splits of :class:`~latentbids.settings.group.FoldPlan` ``plan``, each (fold, participant)
    pair's role and the fold names; ``--fold N`` is checked against the number of folds here."""
    from latentbids.model.splits import make_splits

    only = plan.only
    splits = make_splits(records, n_folds=plan.n_folds, seed=plan.seed, fit_all=plan.fit_all,
                         validation_fraction=plan.validation_fraction)
    role = {
        (f, p): r for f, p, r in splits[["fold", "participant_id", "role"]].itertuples(index=False)
    }
    folds = list(dict.fromkeys(splits["fold"]))
    if only is not None and only not in folds:
        raise UsageError(f"--fold {only}: this run has {len(folds)} folds (--n-folds {len(folds)}): "
                         f"pick one of 1-{len(folds)}")
    return splits, role, folds


def fold_identity(cache_key: str, settings, splits: pd.DataFrame, input_map: str, grid_facts: dict,
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
    from latentbids.utils.devices import describe_device
    from latentbids.utils.environment import package_versions

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


def train_folds(settings, records: pd.DataFrame, data, mask_box, role: dict, folds: list, device, dist, *, store,
                expected: dict, run_key: str, cache_key: str) -> dict[str, TrainedFold]:
    """Step 3b: one model per fold (only fold ``only`` under ``--fold``): a fold a ``--fold`` job
    already trained is merged from its record, the others are trained here (checkpointed in the
    work dir); under ``--fold`` the trained fold's record is saved.  ``settings`` is the run's
    :class:`~latentbids.settings.group.GroupSettings`."""
    trained: dict[str, TrainedFold] = {}
    only = settings.folds.only
    for fold in folds:
        if only is not None and fold != only:
            continue
        rows_of = _fold_rows(records, role, fold)
        record = _earlier_record(store, fold, expected, only)
        if record is not None:
            trained[fold] = _merged_fold(record, store, fold, settings.train, data.shape[1:])
            LOGGER.info("Fold %s: trained by a --fold job (%s, best epoch %s), merged", fold,
                        record.get("device", "?"), record["info"].get("best_epoch"))
            continue
        scale = _scale(settings, data, rows_of["train"], mask_box > 0)
        LOGGER.info(
            "Fold %s: %d train, %d validation, %d held-out maps; intensity scale %.4g",
            fold,
            len(rows_of["train"]),
            len(rows_of["validation"]),
            len(rows_of["test"]),
            scale,
        )
        with store.training(fold) if dist.is_main else contextlib.nullcontext():
            result = train_fold(data, mask_box, rows_of, settings, device, scale,
                                checkpoint_dir=settings.work_dir / "model_training" / run_key / f"fold-{fold}",
                                cache_key=cache_key, fold=fold, dist=dist)
        trained[fold] = result
        if only is not None and dist.is_main:
            _save_fold_record(store, fold, result, expected, device, dist, len(folds))
    return trained
