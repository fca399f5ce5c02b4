"""Subject-level splits: stratified k-fold, with a validation subset inside each training set.

All sessions of a subject share one role in a fold.  In fold ``k`` the subjects of part ``k`` are
``test`` (held out: their latent codes, reconstructions and errors come from this fold's model),
a stratified share of the rest is ``validation`` (early stopping) and the others are ``train``.
``fit_all`` gives one fold named ``all`` with ``train`` and ``validation`` only.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from latentbids.bids.tables import NA_REP, is_missing
from latentbids.errors import UsageError

LOGGER = logging.getLogger("latentbids.model")
ROLES = ("train", "validation", "test")


def _label(value) -> str:
    return NA_REP if is_missing(value) else str(value).strip()


def subject_table(records: pd.DataFrame, group_col: str = "group") -> pd.DataFrame:
    """One row per subject: ``participant_id`` and ``group`` (first non-missing label of its rows).

    Parameters
    ----------
    records : pandas.DataFrame
        One row per GM map (subject or session), with ``participant_id`` and optionally ``group_col``.
    group_col : str, default "group"
        The grouping column; a missing label (or no such column) gives ``"n/a"``.

    Returns
    -------
    pandas.DataFrame
        ``participant_id, group`` (str), sorted by ``participant_id``.

    Raises
    ------
    UsageError
        ``records`` has no ``participant_id`` column.
    """
    if "participant_id" not in records:
        raise UsageError("records need a participant_id column")
    groups = (
        records[group_col].map(_label)
        if group_col in records
        else pd.Series(NA_REP, index=records.index)
    )
    frame = pd.DataFrame({"participant_id": records["participant_id"].astype(str), "group": groups})
    frame["_known"] = ~frame["group"].map(is_missing).astype(bool)
    frame = frame.sort_values(["participant_id", "_known"], ascending=[True, False], kind="stable")
    return frame.drop_duplicates("participant_id")[["participant_id", "group"]].reset_index(
        drop=True
    )


def _stratified_parts(labels: np.ndarray, n_parts: int, seed: int) -> np.ndarray:
    """Assign each item to one of ``n_parts`` parts, stratified by ``labels`` when possible."""
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(labels)
    part = np.empty(n, dtype=int)
    values, counts = np.unique(labels, return_counts=True)
    use_strata = len(values) > 1 and counts.min() >= n_parts
    if len(values) > 1 and not use_strata:
        LOGGER.warning(
            "Cannot stratify %d parts by group (smallest group has %d subjects): plain shuffled split",
            n_parts,
            counts.min(),
        )
    splitter = (StratifiedKFold if use_strata else KFold)(
        n_splits=n_parts, shuffle=True, random_state=seed
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, (_, idx) in enumerate(splitter.split(np.zeros(n), labels if use_strata else None)):
            part[idx] = k
    return part


def _validation_pick(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean array: which items form the validation set (stratified by label when possible)."""
    from sklearn.model_selection import train_test_split

    n = len(labels)
    n_val = min(n - 1, max(1, int(round(fraction * n))))
    values, counts = np.unique(labels, return_counts=True)
    stratify = labels if len(values) > 1 and counts.min() >= 2 and n_val >= len(values) else None
    _, val = train_test_split(
        np.arange(n), test_size=n_val, random_state=seed, shuffle=True, stratify=stratify
    )
    pick = np.zeros(n, dtype=bool)
    pick[val] = True
    return pick


def min_subjects(n_folds: int, fit_all: bool = False) -> int:
    """Subjects a training needs: k-fold, k + 2 (every fold: held-out, training and validation
    subjects); fit-all, 2 (training and validation).

    Parameters
    ----------
    n_folds : int
        k (counted as at least 2).
    fit_all : bool, default False
        One model trained on all subjects instead of k folds.

    Returns
    -------
    int
    """
    return 2 if fit_all else max(2, int(n_folds)) + 2


def make_splits(
    records: pd.DataFrame,
    n_folds: int = 5,
    seed: int = 42,
    fit_all: bool = False,
    validation_fraction: float = 0.15,
    group_col: str = "group",
) -> pd.DataFrame:
    """Long table ``fold, participant_id, group, role`` (one row per subject per fold).

    Folds are named ``"1".."k"`` (or ``"all"``).  Stratification uses ``group``; subjects with no
    group form their own stratum ``n/a``.

    Parameters
    ----------
    records : pandas.DataFrame
        See :func:`subject_table`.
    n_folds : int, default 5
        k (>= 2); ignored with ``fit_all``.
    seed : int, default 42
        Seeds the fold assignment; fold ``"k"``'s validation pick uses ``seed + k`` (fit-all: ``seed``).
    fit_all : bool, default False
        One fold ``"all"`` with ``train`` and ``validation`` only.
    validation_fraction : float, default 0.15
        Share (0..1) of a fold's non-test subjects used for validation (at least 1, never all).
    group_col : str, default "group"
        The grouping column of ``records``.

    Returns
    -------
    pandas.DataFrame
        ``fold, participant_id, group, role`` (str; role ``train``, ``validation`` or ``test``).

    Raises
    ------
    UsageError
        Too few subjects (:func:`min_subjects`), or ``n_folds`` < 2 without ``fit_all``.
    """
    subjects = subject_table(records, group_col)
    n = len(subjects)
    labels = subjects["group"].to_numpy()
    rng_seed = int(seed)
    rows = []
    if fit_all:
        if n < min_subjects(n_folds, fit_all=True):
            raise UsageError(f"Training needs at least 2 subjects (train + validation); got {n}")
        roles = np.where(
            _validation_pick(labels, validation_fraction, rng_seed), "validation", "train"
        )
        rows += [("all", pid, g, r) for pid, g, r in zip(subjects["participant_id"], labels, roles)]
    else:
        if n_folds < 2:
            raise UsageError(f"--n-folds {n_folds}: k-fold needs k >= 2 (or use fit_all)")
        if n < min_subjects(n_folds):
            raise UsageError(
                f"{n} subjects are too few for {n_folds}-fold training (each fold needs held-out, "
                f"training and validation subjects): use fewer folds or fit_all"
            )
        part = _stratified_parts(labels, n_folds, rng_seed)
        for k in range(n_folds):
            test = part == k
            rest = np.flatnonzero(~test)
            pick = _validation_pick(labels[rest], validation_fraction, rng_seed + k + 1)
            role = np.full(n, "train", dtype=object)
            role[test] = "test"
            role[rest[pick]] = "validation"
            rows += [
                (str(k + 1), pid, g, r)
                for pid, g, r in zip(subjects["participant_id"], labels, role)
            ]
    splits = pd.DataFrame(rows, columns=["fold", "participant_id", "group", "role"])
    check_splits(splits)
    return splits


def check_splits(splits: pd.DataFrame) -> None:
    """Fold hygiene: one role per subject per fold, train/validation non-empty, each subject held out
    exactly once across k folds.  Raises ``RuntimeError`` (a bug, not a user error) otherwise; a real
    exception, unlike ``assert``, also holds under ``python -O``.

    Parameters
    ----------
    splits : pandas.DataFrame
        ``fold, participant_id, group, role``, as made by :func:`make_splits`.

    Returns
    -------
    None
    """

    def require(condition, message: str) -> None:
        if not condition:
            raise RuntimeError(f"fold hygiene violated: {message}")

    dup = splits.duplicated(["fold", "participant_id"])
    require(not dup.any(), f"subjects with two roles in one fold: {splits[dup].participant_id.tolist()}")
    for fold, part in splits.groupby("fold"):
        require({"train", "validation"} <= set(part["role"]), f"fold {fold} lacks train or validation subjects")
    if set(splits["fold"]) != {"all"}:
        held = splits[splits["role"] == "test"]["participant_id"]
        require(held.is_unique, "a subject is held out in two folds")
        require(set(held) == set(splits["participant_id"]), "a subject is never held out")
