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

from latentbids.errors import UsageError

MISSING = {"", "n/a", "na", "nan", "none"}
#: labels put first in default contrasts (the reference class), in this order of preference
CONTROL_LABELS = ("cn", "hc", "nc", "control", "controls", "ctrl", "healthy")
#: confound names that are not participants.tsv columns but computed here
DERIVED_CONFOUNDS = ("gm_mean", "tiv")


def clean_labels(values) -> pd.Series:
    """Labels as strings; missing values (``n/a``, empty, NaN) become ``None``."""
    out = []
    for v in values:
        text = "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip()
        out.append(None if text.lower() in MISSING else text)
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
    """A BIDS-safe ``desc`` value for a contrast: ``CN``, ``AD`` -> ``CNvsAD``."""
    from latentbids.bids.naming import entity_label

    return f"{entity_label(a)}vs{entity_label(b)}"


def regional_means(
    volumes, atlas: np.ndarray, region_index, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Regional mean GM ``G`` (N x J, NaN for a region with no voxel) and global mean GM (N,).

    ``volumes`` is any ``(N, X, Y, Z)`` array (the memory-mapped cache works: one volume is read at a
    time); ``atlas`` holds integer labels on the same grid; the global mean is taken inside ``mask``
    (default: every atlas voxel).
    """
    lab = np.asarray(atlas).astype(np.int64).ravel()
    keep = (lab > 0) if mask is None else (np.asarray(mask).ravel() > 0)
    idx = np.asarray(region_index, dtype=np.int64)
    size = int(max(lab.max(initial=0), idx.max(initial=0)) + 1)
    counts = np.bincount(lab, minlength=size)[idx]
    G = np.full((len(volumes), len(idx)), np.nan)
    gm_mean = np.zeros(len(volumes))
    for i in range(len(volumes)):
        v = np.asarray(volumes[i], dtype=np.float64).ravel()
        sums = np.bincount(lab, weights=v, minlength=size)[idx]
        with np.errstate(invalid="ignore", divide="ignore"):
            G[i] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        gm_mean[i] = float(v[keep].mean()) if keep.any() else np.nan
    return G, gm_mean


def _numeric(values) -> np.ndarray:
    return pd.to_numeric(pd.Series(values).replace({"n/a": np.nan, "": np.nan}), errors="coerce").to_numpy(float)


def sex_as_number(values) -> np.ndarray:
    """``M``/``male``/``1`` -> 1, ``F``/``female``/``0``/``2`` -> 0; anything else NaN."""
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
    """One row per map: participants.tsv columns plus ``gm_mean`` and ``tiv`` (ml; NaN if unknown)."""
    table = records.drop(columns=[c for c in ("gm_path", "qc_pass", "qc_fail_reasons") if c in records])
    table = table.reset_index(drop=True).copy()
    table["gm_mean"] = np.asarray(gm_mean, dtype=float)
    tiv = np.asarray(tiv, dtype=float).copy()
    for alt in ("tiv", "TIV", "tiv_ml", "TIV_ml"):  # participants.tsv fills what the volumes JSON lacks
        if alt in records.columns:
            tiv = np.where(np.isfinite(tiv), tiv, _numeric(records[alt]))
    table["tiv"] = tiv
    return table
