"""The analysis cohort: labels, contrasts, covariates and regional GM, assembled from plain tables.

Everything downstream (projections, LRCP, SHAP, the bounds) needs the same few things per subject:
its clinical label, the covariates a latent axis might merely track (global mean GM, TIV, age, sex),
and its regional mean GM ``G`` (N x J).  They are assembled here once, with the decisions a user must
be told about (a label with too few subjects, a subject without a confound value) returned as notes.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from latentbids.bids.tables import is_missing
from latentbids.errors import UsageError
from latentbids.utils.regions import region_means

#: labels put first in default contrasts (the reference class), in this order of preference
CONTROL_LABELS = ("cn", "hc", "nc", "control", "controls", "ctrl", "healthy")
#: confound names that are not participants.tsv columns but computed here
DERIVED_CONFOUNDS = ("gm_mean", "tiv")


def clean_labels(values) -> pd.Series:
    """Labels as strings; missing values (``n/a``, empty, NaN) become ``None``.

    participants.tsv writes a missing label as ``n/a`` and pandas reads some as NaN: every consumer
    (contrasts, class models, covariates) needs one spelling of "no label", and the same label however it
    was typed (surrounding whitespace is stripped; a numeric label ``1`` stays ``"1"`` when a missing value
    in its column made the column float, never ``"1.0"``).

    Parameters
    ----------
    values : iterable of shape (n_subjects,)
        Raw labels of any type; what :func:`latentbids.bids.tables.is_missing` calls missing (``None``,
        NaN, ``""``, ``n/a``, ``na``, ``nan``, ``none`` in any case) is missing.

    Returns
    -------
    pandas.Series of shape (n_subjects,), dtype object
        The stripped labels as ``str``, ``None`` where missing; default RangeIndex.
    """
    out = []
    for v in values:
        if is_missing(v):
            out.append(None)
        elif isinstance(v, float) and v.is_integer():  # a numeric column with a gap is read as floats
            out.append(str(int(v)))
        else:
            out.append(str(v).strip())
    return pd.Series(out, dtype=object)


def _label_order(labels: list[str]) -> list[str]:
    def key(label: str):
        low = label.lower()
        return (CONTROL_LABELS.index(low) if low in CONTROL_LABELS else len(CONTROL_LABELS), label)

    return sorted(labels, key=key)


def plan_contrasts(labels, requested=(), min_per_class: int = 3) -> tuple[list[tuple[str, str]], list[str]]:
    """The label pairs to compare, and notes on what was left out and why.

    ``requested`` holds ``"A:B"`` strings (``--contrast``); a label that does not occur raises
    :class:`UsageError` (the user asked for it by name).  Empty ``requested`` means every pair of
    labels with at least ``min_per_class`` subjects, the control-like label (CN, HC, ...) first.
    A requested pair with a label below ``min_per_class`` is skipped with a note, not an error.

    Parameters
    ----------
    labels : iterable of shape (n_subjects,)
        Clinical label per map (cleaned with :func:`clean_labels`; missing labels are not counted).
    requested : sequence of str, default=()
        ``"A:B"`` contrasts asked for by name, in the order to run them.
    min_per_class : int, default=3
        Fewest subjects a label needs to enter a contrast.

    Returns
    -------
    pairs : list of (str, str)
        The contrasts to run, ``(class 0, class 1)``.
    notes : list of str
        What was left out and why (a small label, a skipped pair, fewer than two labels), for the log
        and the report.
    """
    labels = clean_labels(labels)
    counts = labels.dropna().value_counts()
    notes = []
    if requested:
        pairs = []
        for text in requested:
            a, _, b = str(text).partition(":")
            for lab in (a, b):
                if lab not in counts.index:
                    known = ", ".join(sorted(counts.index)) or "none"
                    raise UsageError(f"--contrast {text}: no subject has the label '{lab}' (labels: {known})")
            pairs.append((a, b))
    else:
        usable = [lab for lab in counts.index if counts[lab] >= int(min_per_class)]
        for lab in counts.index:
            if lab not in usable:
                notes.append(f"label '{lab}' has {counts[lab]} subject(s), fewer than {min_per_class}: "
                             "left out of the contrasts")
        pairs = list(itertools.combinations(_label_order(usable), 2))
    kept = []
    for a, b in pairs:
        small = [lab for lab in (a, b) if counts.get(lab, 0) < int(min_per_class)]
        if small:
            notes.append(f"contrast {a} vs {b} skipped: fewer than {min_per_class} subjects labelled "
                         + " and ".join(small))
        else:
            kept.append((a, b))
    if not kept and not notes:
        notes.append("fewer than two labels: no contrast (supervised analyses skipped)")
    return kept, notes


def contrast_name(a: str, b: str) -> str:
    """A BIDS-safe ``desc`` value for a contrast: ``CN``, ``AD`` -> ``CNvsAD``.

    File names of a contrast's outputs carry it in the ``desc`` entity, which allows alphanumerics only.

    Parameters
    ----------
    a, b : str
        Labels of class 0 and class 1.

    Returns
    -------
    str
        ``<a>vs<b>`` with every non-alphanumeric character removed from each label (an empty one
        becomes ``x``).
    """
    from latentbids.bids.naming import entity_label

    return f"{entity_label(a)}vs{entity_label(b)}"


def regional_means(
    volumes, atlas: np.ndarray, region_index, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Regional mean GM ``G`` (N x J, NaN for a region with no voxel) and global mean GM (N,).

    ``volumes`` is any ``(N, X, Y, Z)`` array (the memory-mapped cache works: one volume is read at a
    time); ``atlas`` holds integer labels on the same grid; the global mean is taken inside ``mask``
    (default: every atlas voxel).  ``G`` is the regional table every group analysis (LRCP, SHAP, the
    region tests) works on, and the global mean is the confound a latent axis may merely track.

    Parameters
    ----------
    volumes : array-like of shape (n_subjects, X, Y, Z)
        GM maps on the atlas grid (GM probability in [0, 1] for latentbids' maps); anything indexable
        by subject that yields one volume.
    atlas : ndarray of shape (X, Y, Z)
        Integer region labels (0 = background); non-negative.
    region_index : array-like of int, shape (n_regions,)
        Atlas labels of the regions to average, in output column order.
    mask : ndarray of shape (X, Y, Z), optional
        Voxels (> 0) of the global mean; default: every voxel with an atlas label > 0.  It does not
        restrict the regional means.

    Returns
    -------
    G : ndarray of shape (n_subjects, n_regions)
        Mean value of each region's voxels, in the units of the maps (GM in [0, 1]); NaN for a region
        with no voxel in the atlas.
    gm_mean : ndarray of shape (n_subjects,)
        Mean over the mask; NaN when the mask is empty.
    """
    lab = np.asarray(atlas).astype(np.int64)
    keep = (lab.ravel() > 0) if mask is None else (np.asarray(mask).ravel() > 0)
    idx = np.asarray(region_index, dtype=np.int64)
    G = np.full((len(volumes), len(idx)), np.nan)
    gm_mean = np.zeros(len(volumes))
    for i in range(len(volumes)):  # one map at a time: the maps may be a memory-mapped cache
        v = np.asarray(volumes[i], dtype=np.float64)
        G[i] = region_means(v, lab, idx)[0]
        gm_mean[i] = float(v.ravel()[keep].mean()) if keep.any() else np.nan
    return G, gm_mean


def _numeric(values) -> np.ndarray:
    return pd.to_numeric(pd.Series(values).replace({"n/a": np.nan, "": np.nan}), errors="coerce").to_numpy(float)


def sex_as_number(values) -> np.ndarray:
    """``M``/``male``/``1`` -> 1, ``F``/``female``/``0``/``2`` -> 0; anything else NaN.

    Sex enters the confound matrix as one numeric column, whatever the spelling in participants.tsv.
    Note that ``2`` is read as female (the 1 = male, 2 = female coding); a table coded the other way
    round must be recoded first.

    Parameters
    ----------
    values : iterable of shape (n_subjects,)
        Raw sex values (case-insensitive; missing values as in :func:`clean_labels`).

    Returns
    -------
    ndarray of shape (n_subjects,), dtype float
        1.0 (male), 0.0 (female) or NaN (missing or unrecognised).
    """
    out = []
    for v in clean_labels(values):
        low = (v or "").lower()
        out.append(1.0 if low in ("m", "male", "1") else 0.0 if low in ("f", "female", "0", "2") else np.nan)
    return np.asarray(out)


def confound_matrix(covariates: pd.DataFrame, names) -> tuple[np.ndarray, list[str]]:
    """The confounds named in ``[analysis] confounds`` as an N x c float matrix.

    ``covariates`` has one row per subject (``gm_mean``, ``tiv`` and participants.tsv columns); a name
    that is not a column raises :class:`UsageError`; ``sex`` is coded 1/0; other text columns are
    one-hot coded (first level dropped).  Rows with a missing value stay NaN (the caller drops them).
    A column counts as numeric when at least as many of its values parse as numbers as are present.
    The matrix is what :func:`latentbids.analysis.stats.residualize` regresses out of the latent codes
    and regional GM, so that an association is not just "both track head size".

    Parameters
    ----------
    covariates : pandas.DataFrame of shape (n_subjects, n_columns)
        One row per subject, e.g. from :func:`covariate_table`.
    names : iterable of str
        Confound names (case-insensitive column names).

    Returns
    -------
    C : ndarray of shape (n_subjects, n_confounds), dtype float
        One column per numeric confound, per non-reference level of a text confound; shape
        ``(n_subjects, 0)`` when ``names`` is empty.  NaN where a value is missing.
    columns : list of str
        Name of each column of ``C`` (``"<column>=<level>"`` for a one-hot level).
    """
    cols, names_out = [], []
    lower = {c.lower(): c for c in covariates.columns}
    for name in names:
        col = lower.get(str(name).lower())
        if col is None:
            known = ", ".join(sorted(covariates.columns))
            raise UsageError(f"confound '{name}' is not a participants.tsv column nor one of "
                             f"{', '.join(DERIVED_CONFOUNDS)} (columns: {known})")
        if col.lower() == "sex":
            cols.append(sex_as_number(covariates[col]))
            names_out.append(col)
            continue
        num = _numeric(covariates[col])
        text = clean_labels(covariates[col])
        if np.isfinite(num).sum() >= text.notna().sum():
            cols.append(num)
            names_out.append(col)
        else:
            levels = sorted(text.dropna().unique())
            for level in levels[1:]:
                cols.append(np.where(text.isna(), np.nan, (text == level).astype(float)))
                names_out.append(f"{col}={level}")
    if not cols:
        return np.zeros((len(covariates), 0)), []
    return np.column_stack(cols), names_out


def covariate_table(records: pd.DataFrame, gm_mean, tiv) -> pd.DataFrame:
    """One row per map: participants.tsv columns plus ``gm_mean`` and ``tiv`` (ml; NaN if unknown).

    The table the confounds (:func:`confound_matrix`) and the PC1 global measures are read from.  A TIV
    missing from ``tiv`` is taken from a ``tiv``/``TIV``/``tiv_ml``/``TIV_ml`` column of ``records``.

    Parameters
    ----------
    records : pandas.DataFrame of shape (n_maps, n_columns)
        One row per GM map (participants.tsv columns and the map's bookkeeping); the columns
        ``gm_path``, ``qc_pass`` and ``qc_fail_reasons`` are dropped.
    gm_mean : array-like of shape (n_maps,)
        Global mean GM per map, in [0, 1] (from :func:`regional_means`).
    tiv : array-like of shape (n_maps,)
        Total intracranial volume per map in ml; NaN where unknown.

    Returns
    -------
    pandas.DataFrame with n_maps rows
        ``records`` without the bookkeeping columns (index reset), with the columns ``gm_mean`` and
        ``tiv`` added (or replaced when ``records`` has them).
    """
    table = records.drop(columns=[c for c in ("gm_path", "qc_pass", "qc_fail_reasons") if c in records])
    table = table.reset_index(drop=True).copy()
    table["gm_mean"] = np.asarray(gm_mean, dtype=float)
    tiv = np.asarray(tiv, dtype=float).copy()
    for alt in ("tiv", "TIV", "tiv_ml", "TIV_ml"):  # participants.tsv fills what the volumes JSON lacks
        if alt in records.columns:
            tiv = np.where(np.isfinite(tiv), tiv, _numeric(records[alt]))
    table["tiv"] = tiv
    return table
