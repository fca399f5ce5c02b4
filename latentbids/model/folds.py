"""Folds trained as jobs of their own (``--fold N``), kept in the work dir until a group run merges them.

A cohort of thousands trains each cross-validation fold for hours; on a cluster the folds run side by
side, one job per fold (a SLURM array), and one group run started after them (``afterok``) merges
them and runs the analysis (docs/cluster.md).  The work dir is what those jobs share::

    WORK/model_folds/<model name>/
        fold-<k>.pt     the fold's best weights (a state dict, read back with weights_only=True)
        fold-<k>.json   its record: the model key (GM cache, settings, subjects and splits), the grid,
                        the sha256 of the weights, the fold's facts and its training curve
        fold-<k>.lock   held by whichever run trains fold k

Both files are written under a temporary name and renamed into place, the weights before the record
that holds their checksum, so an interrupted job leaves either no record or a complete one (and its
checkpoint, from which the next attempt resumes).  Any run that trains fold k holds ``fold-<k>.lock``:
a second job for the same fold, or a merging run that would train it meanwhile, stops with exit 75
instead of training it twice into the same checkpoint folder.  ``flock`` locks are released by the
kernel when a job dies (which shared filesystems pass them between nodes: docs/cluster.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Iterator

import torch

from latentbids.errors import MissingInputError, TemporaryFailure
from latentbids.utils.atomic import atomic_path, write_json
from latentbids.utils.locks import try_lock

LOGGER = logging.getLogger("latentbids.model")

RECORD_FORMAT = "latentbids-fold"
RECORD_VERSION = 1


class FoldStore:
    """The trained folds of one model name in one work dir.

    Parameters
    ----------
    work_dir : str or os.PathLike
        The work dir the fold jobs share.
    model_name : str
        The model's name.

    Attributes
    ----------
    folder : pathlib.Path
        ``<work_dir>/model_folds/<model_name>``, holding the folds' weights, records and locks.
    """

    def __init__(self, work_dir: str | os.PathLike, model_name: str):
        self.folder = Path(work_dir) / "model_folds" / model_name
        self.model_name = model_name

    def _path(self, fold: str, suffix: str) -> Path:
        return self.folder / f"fold-{fold}{suffix}"

    def record_path(self, fold: str) -> Path:
        return self._path(fold, ".json")

    @contextlib.contextmanager
    def training(self, fold: str) -> Iterator[None]:
        """Hold fold ``fold``'s lock while training it; exit 75 when another job holds it."""
        lock = self._path(fold, ".lock")
        handle = try_lock(lock)
        if handle is None:
            raise TemporaryFailure(
                f"Fold {fold} of model {self.model_name} is being trained by another job in this work dir "
                f"({lock} is locked): rerun this one when that job has ended (it will find the fold trained)"
            )
        try:
            yield
        finally:
            handle.close()

    def save(self, fold: str, state: dict, record: dict) -> Path:
        """Write fold ``fold``'s weights, then its record (with their sha256 and this store's format)."""
        from latentbids.model.files import sha256_file

        self.folder.mkdir(parents=True, exist_ok=True)
        weights = self._path(fold, ".pt")
        with atomic_path(weights) as tmp:
            torch.save({k: v.detach().cpu() for k, v in state.items()}, tmp)
        doc = {"format": RECORD_FORMAT, "format_version": RECORD_VERSION, "fold": str(fold),
               "weights": weights.name, "sha256": sha256_file(weights), **record}
        return write_json(self.record_path(fold), doc)

    def record(self, fold: str) -> dict | None:
        """Fold ``fold``'s record, or ``None`` when no job has finished it (or the record is not one)."""
        path = self.record_path(fold)
        if not path.is_file():
            return None
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            LOGGER.warning("Fold record %s is unreadable (%s): the fold is trained again", path, exc)
            return None
        if doc.get("format") != RECORD_FORMAT or int(doc.get("format_version", 0)) > RECORD_VERSION:
            LOGGER.warning("%s is not a fold record this latentbids reads: the fold is trained again", path)
            return None
        return doc

    def weights(self, fold: str, record: dict) -> dict:
        """The state dict a record names, its checksum verified (exit 66 when it does not match)."""
        from latentbids.model.files import sha256_file

        path = self.folder / record["weights"]
        if not path.is_file() or sha256_file(path) != record["sha256"]:
            raise MissingInputError(
                f"Fold {fold}'s weights {path} are missing or do not match the sha256 in {self.record_path(fold)}: "
                f"rerun its --fold job, or remove {self.record_path(fold)} to train the fold in this run"
            )
        return torch.load(path, map_location="cpu", weights_only=True)
