"""The self-describing model folder ``<output_dir>/models/<name>/`` (encoding one subject with it:
:mod:`latentbids.model.subject_encoding`).

Layout::

    model.json              architecture (K, channels, norm, stem), template space/resolution/grid,
                            working grid and crop
                            box, atlas, intensity scale, seeds, folds (weights + sha256), versions
    config.toml             the whole run configuration that trained it
    weights/fold-<k>.pt     one state dict per fold (``fold-all.pt`` in fit-all mode)
    splits/fold-<k>_split.tsv   participant_id, group, role (train | validation | test)
    mask.nii.gz             loss mask on the working grid
    atlas.nii.gz, atlas.tsv atlas on the working grid and its labels (regional errors)
    curves.tsv              training and validation loss per fold and epoch
    SHA256SUMS              checksums of every file above but itself

A model refuses an input on another grid or template (:class:`~latentbids.errors.UsageError` naming
both).  A subject the model has seen in training is labelled ``in_training`` (or refused with
``refuse_training=True``); in k-fold mode a subject of the training cohort is encoded by the fold
that held it out, so it is *not* in training for that model.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch

from latentbids.errors import MissingInputError, UsageError
from latentbids.model.cache import grid_description, prepare_volume, same_grid
from latentbids.model.files import inside, sha256_file
from latentbids.model.grid import GridFit
from latentbids.model.network import AutoEncoder3D
from latentbids.utils.atomic import pending

LOGGER = logging.getLogger("latentbids.model")
FORMAT = "latentbids-model"
#: the newest model folder this version reads.  2: ``architecture.stem`` may be ``space_to_depth``
#: (version 1 readers would build the conv network and fail on its weights); 3: it may be ``patch``.
#: A folder is written with the lowest version that describes it (:data:`STEM_FORMAT_VERSION`), so
#: conv models stay readable by latentbids 0.1 and an older reader refuses a stem it cannot build
#: with one line instead of a traceback
FORMAT_VERSION = 3
STEM_FORMAT_VERSION = {"conv": 1, "space_to_depth": 2, "patch": 3}


def save_bundle(
    model_dir: str | os.PathLike,
    *,
    models: dict[str, AutoEncoder3D],
    meta: dict,
    fold_info: dict[str, dict],
    splits: pd.DataFrame,
    mask: nib.Nifti1Image,
    atlas: nib.Nifti1Image,
    atlas_labels: pd.DataFrame,
    config_toml: str = "",
    curves: pd.DataFrame | None = None,
) -> Path:
    """Write the model folder atomically (built beside it, then renamed into place).

    ``meta`` must hold ``name, template, grid, atlas, intensity, seeds, training`` (see
    :mod:`latentbids.workflows.group.training`); ``fold_info[fold]`` holds per-fold facts (scale, best
    epoch, losses, counts) and gets the weights path and sha256 added.

    Parameters
    ----------
    model_dir : str or os.PathLike
        The folder to write (``<output_dir>/models/<name>``); it must not exist: a model folder is never
        replaced (:func:`latentbids.workflows.group.model_folder.write_model_folder` decides, under a lock, what a
        run does when one is there).
    models : dict of str to AutoEncoder3D
        The trained network of each fold (``"1"``..``"k"``, or ``"all"``); the first one's architecture
        and ``latent_dim`` are recorded.
    meta : dict
        Top-level entries of ``model.json`` (see above); ``default_fold`` defaults to the first fold.
    fold_info : dict of str to dict
        Per-fold facts by fold name.
    splits : pandas.DataFrame
        ``fold`` (str), ``participant_id``, ``group``, ``role`` (:func:`~latentbids.model.splits.make_splits`).
    mask : nibabel.Nifti1Image
        The loss mask on the working grid.
    atlas : nibabel.Nifti1Image
        The atlas labels on the working grid.
    atlas_labels : pandas.DataFrame
        The atlas regions; its ``index`` and ``name`` columns are written.
    config_toml : str, default ""
        The run configuration, written as ``config.toml``.
    curves : pandas.DataFrame, optional
        The training curves (``fold, epoch, train_loss, val_loss`` ...), written as ``curves.tsv``: they
        belong to the model, so a run that encodes with it shows them too.

    Returns
    -------
    pathlib.Path
        ``model_dir``.

    Raises
    ------
    FileExistsError
        ``model_dir`` exists (before or during the write); nothing is changed then.
    """
    model_dir = Path(model_dir)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.", suffix=".tmp", dir=model_dir.parent))
    with pending(tmp):  # the cancellation watchdog removes it if the process must end meanwhile
        try:
            (tmp / "weights").mkdir()
            (tmp / "splits").mkdir()
            folds = []
            for fold, model in models.items():
                rel = f"weights/fold-{fold}.pt"
                state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
                torch.save(state, tmp / rel)
                split_rel = f"splits/fold-{fold}_split.tsv"
                part = splits[splits["fold"] == str(fold)][["participant_id", "group", "role"]]
                part.to_csv(tmp / split_rel, sep="\t", index=False, na_rep="n/a")
                folds.append(
                    {
                        "fold": str(fold),
                        "weights": rel,
                        "sha256": sha256_file(tmp / rel),
                        "split": split_rel,
                        **fold_info.get(str(fold), {}),
                    }
                )
            first = next(iter(models.values()))
            doc = {
                "format": FORMAT,
                "format_version": STEM_FORMAT_VERSION[first.stem],
                **meta,
                "architecture": first.architecture(),
                "latent_dim": first.latent_dim,
                "folds": folds,
            }
            doc.setdefault("default_fold", folds[0]["fold"])
            nib.save(mask, str(tmp / "mask.nii.gz"))
            nib.save(atlas, str(tmp / "atlas.nii.gz"))
            atlas_labels[["index", "name"]].to_csv(tmp / "atlas.tsv", sep="\t", index=False)
            (tmp / "config.toml").write_text(config_toml, encoding="utf-8")
            if curves is not None:
                curves.to_csv(tmp / "curves.tsv", sep="\t", index=False, na_rep="n/a")
            (tmp / "model.json").write_text(
                json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8"
            )
            sums = [
                f"{sha256_file(p)}  {p.relative_to(tmp).as_posix()}"
                for p in sorted(tmp.rglob("*"))
                if p.is_file()
            ]
            (tmp / "SHA256SUMS").write_text("\n".join(sums) + "\n", encoding="utf-8")
            for p in tmp.rglob("*"):
                os.chmod(p, 0o755 if p.is_dir() else 0o644)
            os.chmod(tmp, 0o755)
            if model_dir.exists():  # a model folder is never replaced (the caller decides what to do)
                raise FileExistsError(errno.EEXIST, "model folder exists", str(model_dir))
            os.rename(tmp, model_dir)  # fails (ENOTEMPTY) if another process made it meanwhile
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return model_dir


@dataclass
class ModelBundle:
    """A loaded model folder (weights are loaded per fold on demand).

    Attributes
    ----------
    path : pathlib.Path
        The model folder.
    meta : dict
        The parsed ``model.json``.
    splits : pandas.DataFrame
        ``fold, participant_id, group, role`` of every fold (strings).
    mask : ndarray of shape (X, Y, Z), bool
        The loss mask on the working grid.
    atlas : ndarray of shape (X, Y, Z), int32
        The atlas labels on the working grid.
    atlas_labels : pandas.DataFrame
        ``atlas.tsv``: ``index, name`` of every region.
    """

    path: Path
    meta: dict
    splits: pd.DataFrame
    mask: np.ndarray  # working grid
    atlas: np.ndarray  # working grid
    atlas_labels: pd.DataFrame

    @property
    def fit(self) -> GridFit:
        return GridFit.from_dict(self.meta["grid"]["fit"])

    @property
    def folds(self) -> list[str]:
        return [f["fold"] for f in self.meta["folds"]]

    def fold_entry(self, fold: str) -> dict:
        for entry in self.meta["folds"]:
            if entry["fold"] == str(fold):
                return entry
        raise UsageError(f"Model {self.path} has no fold '{fold}': it has {', '.join(self.folds)}")

    def load_model(self, fold: str, device="cpu") -> AutoEncoder3D:
        """The network of ``fold`` with its weights (checksum verified, tensors only: no pickle runs).

        A damaged or tampered folder (missing file, other checksum, a pickle, weights of another
        architecture) is a one-line :class:`~latentbids.errors.MissingInputError` naming the file.
        """
        entry = self.fold_entry(fold)
        wpath = inside(self.path, entry.get("weights"), f"fold {fold}'s weights")
        if sha256_file(wpath) != entry.get("sha256"):
            raise MissingInputError(
                f"Model weights {wpath} do not match their sha256 in model.json: "
                f"the file is corrupt or was changed; retrain or recopy the model"
            )
        try:
            model = AutoEncoder3D.from_architecture(self.meta["architecture"])
            model.load_state_dict(torch.load(wpath, map_location="cpu", weights_only=True))
        except Exception as exc:  # an unpicklable file, a pickle, weights of another network
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise MissingInputError(
                f"--model {self.path}: fold {fold}'s weights ({wpath.name}) cannot be loaded as this model's "
                f"tensors ({type(exc).__name__}: {first}): recopy the model folder or retrain"
            ) from None
        return model.to(device).eval()

    def template_grid(self) -> tuple[tuple, np.ndarray]:
        tpl = self.meta["template"]
        return tuple(tpl["shape"]), np.asarray(tpl["affine"], dtype=float)

    def grid_name(self) -> str:
        tpl = self.meta["template"]
        shape, affine = self.template_grid()
        return f"{tpl['space']} at {tpl['resolution']:g} mm ({grid_description(shape, affine)})"

    @property
    def res_entity(self) -> str:
        """The ``res-`` entity of the model's working grid (:func:`latentbids.bids.naming.grid_res_entity`);
        folders written before the template's label was recorded are read by their template's source."""
        from latentbids.bids.naming import NILEARN_RES_PREFIX, grid_res_entity, res_label

        tpl = self.meta["template"]
        nilearn = "nilearn" in str(tpl.get("source", "")).lower()
        res = tpl.get("res") or (NILEARN_RES_PREFIX if nilearn else "") + res_label(tpl["resolution"])
        return grid_res_entity(res, tpl["resolution"], self.meta["grid"]["resolution"])

    def check_input(
        self, img: nib.Nifti1Image, space: str | None = None, name: str = "input"
    ) -> None:
        """Refuse an input on another template or grid than the one the model was trained on."""
        tpl = self.meta["template"]
        if space is not None and str(space) != tpl["space"]:
            raise UsageError(
                f"Model {self.path} was trained on template {self.grid_name()}; the {name} is in "
                f"template space {space}: use a model trained on {space} or GM maps in {tpl['space']}"
            )
        shape, affine = self.template_grid()
        if not same_grid(img.shape, img.affine, shape, affine):
            raise UsageError(
                f"Model {self.path} was trained on grid {self.grid_name()}; the {name} is on "
                f"{grid_description(img.shape, img.affine)}: resample the GM map to the model's grid "
                f"or use a model trained on this grid"
            )

    def role_of(self, participant_id: str) -> tuple[str, bool, str]:
        """``(fold, in_training, role)`` to encode ``participant_id`` with.

        k-fold: a cohort subject uses the fold that held it out (``in_training`` False); a new
        subject uses ``default_fold``.  Fit-all: a cohort subject is ``in_training`` True.
        """
        rows = self.splits[self.splits["participant_id"] == str(participant_id)]
        if rows.empty:
            return str(self.meta.get("default_fold", self.folds[0])), False, "new"
        held = rows[rows["role"] == "test"]
        if not held.empty:
            return str(held["fold"].iloc[0]), False, "test"
        row = rows.iloc[0]
        return str(row["fold"]), True, str(row["role"])

    def prepare(self, img: nib.Nifti1Image) -> np.ndarray:
        """A template-grid image -> the network's box (downsampled and cropped), float32, by the rule
        the cache of the group level used (:func:`latentbids.model.cache.prepare_volume`)."""
        return prepare_volume(img.get_fdata(dtype=np.float32), int(self.meta["grid"]["downsample"]), self.fit)


def load_bundle(model_dir: str | os.PathLike) -> ModelBundle:
    """Read a model folder (one-line errors when it is missing or not a latentbids model).

    Parameters
    ----------
    model_dir : str or os.PathLike
        A folder written by :func:`save_bundle`.

    Returns
    -------
    ModelBundle
        Its description, splits, mask and atlas; :meth:`ModelBundle.load_model` reads a fold's weights.

    Raises
    ------
    MissingInputError
        No or invalid ``model.json``, or an unreadable mask or atlas.
    UsageError
        A format version newer than this latentbids reads.
    """
    path = Path(model_dir)
    meta_path = path / "model.json"
    if not meta_path.is_file():
        raise MissingInputError(
            f"--model {path} is not a latentbids model folder (no model.json): "
            f"pass <output_dir>/models/<name> from a group-level run"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MissingInputError(
            f"--model {meta_path} is not valid JSON ({exc}): recopy the model"
        ) from None
    if meta.get("format") != FORMAT:
        raise MissingInputError(f"--model {path}: model.json is not a {FORMAT} description")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise UsageError(
            f"--model {path} has format version {meta['format_version']}; this latentbids "
            f"reads up to {FORMAT_VERSION}: upgrade latentbids"
        )
    frames = []
    try:
        for entry in meta["folds"]:
            split = pd.read_csv(inside(path, entry.get("split"), f"fold {entry.get('fold')}'s split"), sep="\t",
                                dtype=str, keep_default_na=False)
            split.insert(0, "fold", entry["fold"])
            frames.append(split)
        splits = pd.concat(frames, ignore_index=True)
    except MissingInputError:
        raise
    except Exception as exc:  # a missing or truncated split file, a model.json without its folds
        raise MissingInputError(
            f"--model {path}: fold splits unreadable ({type(exc).__name__}: {exc}): recopy the model folder"
        ) from None
    try:
        mask = np.asarray(nib.load(str(path / "mask.nii.gz")).dataobj) > 0
        atlas = np.asarray(nib.load(str(path / "atlas.nii.gz")).dataobj).astype(np.int32)
        labels = pd.read_csv(path / "atlas.tsv", sep="\t")
    except Exception as exc:
        raise MissingInputError(
            f"--model {path}: mask/atlas files unreadable ({exc}): recopy the model"
        ) from None
    return ModelBundle(
        path=path, meta=meta, splits=splits, mask=mask, atlas=atlas, atlas_labels=labels
    )
