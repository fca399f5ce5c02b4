"""The model folder at group level: encode with a given one, reuse this run's own, never replace another.

Why this module: a trained model is what a lab keeps and reuses on new subjects, so losing it silently is the
worst bug after a false claim (issue 18: ``group --model DIR`` trained a new model and replaced DIR).  The rules:

* ``--model DIR``: DIR is checked whole (:func:`latentbids.model.bundle_checks.verify_bundle`) before any
  map is read; every map is encoded with its folds (no training) and the outputs carry DIR's name; DIR is
  never written.
* Training into ``models/<name>``: a folder already there with this run's configuration (same GM maps,
  splits, settings, grid) *is* this run's model and is reused without training; one with another
  configuration, or without a record of it, is refused with one line (train under ``--model-name``,
  encode with ``--model``, or move it away); the check is repeated under a lock when the folder is
  written, so a concurrent run cannot slip in between.
* Either way the subjects are encoded with the weights in the model folder, by one path.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from latentbids.errors import UsageError
from latentbids.model.names import bundle_name
from latentbids.utils.locks import locked
from latentbids.workflows.group.folds import TrainedFold
from latentbids.workflows.group.grid import WorkingGrid

LOGGER = logging.getLogger("latentbids.workflows.group.training")

#: what makes two trainings the same model (``group_folds.fold_identity``'s ``expected``)
IDENTITY_KEYS = ("model_key", "grid", "settings", "input_map", "n_folds", "subjects")
_WHAT = {"model_key": "GM maps or splits", "grid": "grid", "input_map": "input map", "n_folds": "number of folds",
         "subjects": "subjects"}


def identity_of(expected: dict) -> dict:
    """The JSON form of a training's identity (as recorded in ``model.json`` under ``identity``)."""
    return json.loads(json.dumps({k: expected[k] for k in IDENTITY_KEYS}, default=str))


def _differences(old: dict, new: dict) -> list[str]:
    """What differs between two identities, in words (settings field by field)."""
    out = []
    old_s, new_s = old.get("settings") or {}, new.get("settings") or {}
    for key in sorted(set(old_s) | set(new_s)):
        if old_s.get(key) != new_s.get(key):
            out.append(f"{key} {old_s.get(key)} there, {new_s.get(key)} here")
    for key in IDENTITY_KEYS:
        if key != "settings" and old.get(key) != new.get(key) and _WHAT[key] not in out:
            out.append(_WHAT[key])
    return list(dict.fromkeys(out))


def check_model_folder(target: Path, expected: dict):
    """This run's model if ``target`` already holds it, None if ``target`` does not exist; else refuse.

    Parameters
    ----------
    target : pathlib.Path
        ``models/<name>``, where this run would write its model.
    expected : dict
        This run's training identity (:func:`latentbids.workflows.group.folds.fold_identity`).

    Returns
    -------
    latentbids.model.bundle.ModelBundle or None
        The verified folder when it holds a model of this very configuration (reused, not retrained).

    Raises
    ------
    UsageError
        ``target`` holds another model (or one without a recorded configuration): it is kept, never replaced.
    """
    from latentbids.model.bundle_checks import verify_bundle

    if not target.exists():
        return None
    fix = (f"it is kept, never replaced: train under another name with --model-name NAME, encode with it "
           f"with --model {target}, or move it away")
    try:
        old = json.loads((target / "model.json").read_text(encoding="utf-8")).get("identity")
    except (OSError, ValueError, AttributeError):
        raise UsageError(f"{target} exists but holds no readable model.json; {fix}") from None
    if old is None:
        raise UsageError(f"{target} holds a model with no record of its configuration (an earlier latentbids); {fix}")
    diffs = _differences(old, identity_of(expected))
    if diffs:
        raise UsageError(f"{target} holds a model trained with another configuration ({'; '.join(diffs[:4])}); {fix}")
    LOGGER.info("%s already holds the model of this configuration: encoding with it, no training (move it away to "
                "train again)", target)
    return verify_bundle(target)


def publish_model_folder(target: Path, write, expected: dict):
    """Write this run's model folder with ``write(target)`` unless an equal one appeared meanwhile.

    Under a lock, :func:`check_model_folder` runs again: a concurrent run of the same configuration that
    finished first wins (its folder is reused), one of another configuration makes this run refuse.

    Parameters
    ----------
    target : pathlib.Path
        ``models/<name>``.
    write : callable
        ``write(target)`` writes the folder (:func:`latentbids.workflows.group.outputs.write_model_folder`).
    expected : dict
        This run's training identity.

    Returns
    -------
    latentbids.model.bundle.ModelBundle
        The verified model folder the subjects are encoded with.
    """
    from latentbids.model.bundle_checks import verify_bundle

    with locked(target.parent / f".{target.name}.lock", remove=True):
        bundle = check_model_folder(target, expected)
        if bundle is not None:
            return bundle
        write(target)
    return verify_bundle(target)


def given_model(model_dir: Path, template):
    """``--model DIR`` checked whole against the run's template grid, before any map is read."""
    from latentbids.model.bundle_checks import verify_bundle

    bundle = verify_bundle(model_dir, space=template.space, shape=template.shape, affine=template.affine)
    LOGGER.info("--model %s: %s model %s (%s, %d fold(s), K = %d): every map is encoded with it; no training, "
                "and the folder is not written", bundle.path, bundle.meta.get("mode", "kfold"), bundle_name(bundle),
                bundle.grid_name(), len(bundle.folds), int(bundle.meta.get("latent_dim", 0)))
    return bundle


def bundle_roles(bundle, records: pd.DataFrame) -> tuple[pd.DataFrame, dict, list]:
    """``(splits, role, folds)`` of a model folder for these records: each map's role in each fold
    (``train``, ``validation``, ``test`` = held out, ``new`` = not in the model's cohort)."""
    known = {(f, p): r for f, p, r in bundle.splits[["fold", "participant_id", "role"]].itertuples(index=False)}
    folds = list(bundle.folds)
    role = {(f, p): known.get((f, p), "new") for f in folds for p in records["participant_id"]}
    return bundle.splits, role, folds


def bundle_grid(bundle, atlas) -> WorkingGrid:
    """The working grid of a model folder (its crop box and loss mask), with the run's atlas on it."""
    import nibabel as nib

    from latentbids.resources import resample_atlas

    g = bundle.meta["grid"]
    affine = np.asarray(g["affine"], dtype=float)
    shape = tuple(int(s) for s in g["shape"])
    atlas_work = np.asarray(resample_atlas(atlas, nib.Nifti1Image(np.zeros(shape, np.uint8), affine)).dataobj)
    mask = np.asarray(bundle.mask, dtype=bool)
    fit = bundle.fit
    return WorkingGrid(int(g["downsample"]), float(g["resolution"]), shape, affine, atlas_work.astype(np.int16),
                       mask, fit, fit.crop(mask.astype(np.float32)), bundle.res_entity)


def bundle_folds(bundle, device) -> dict[str, TrainedFold]:
    """Every fold's network of a model folder (checksums verified), as the encoding step takes them."""
    history = pd.DataFrame(columns=["epoch", "train_loss", "val_loss"])
    return {f: TrainedFold(bundle.load_model(f, device), dict(bundle.fold_entry(f)), history) for f in bundle.folds}


def model_curves(bundle) -> pd.DataFrame | None:
    """The model's training curves (``curves.tsv`` of its folder), None when the folder has none."""
    from latentbids.model.files import inside

    if not (bundle.path / "curves.tsv").exists():
        return None
    return pd.read_csv(inside(bundle.path, "curves.tsv", "the training curves"), sep="\t")


def output_folds(role: dict, folds: list, default_fold: str) -> dict[str, str]:
    """The fold whose encoding is each subject's output: the one that held it out; ``all`` in fit-all mode;
    the model's default fold for a subject the model never saw (as participant-level ``--model``)."""
    out: dict[str, str] = {}
    for (fold, pid), r in role.items():
        if r == "test" or fold == "all":
            out[pid] = fold
    for (_, pid) in role:
        out.setdefault(pid, str(default_fold))
    return out
