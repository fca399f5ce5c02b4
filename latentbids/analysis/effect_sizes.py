"""Two descriptive effect sizes of a 0/1 contrast: Cohen's d and ROC AUC (METHOD.md section 5).

Shown next to LRCP's family-wise tests so a reader sees how large a difference is, not only whether it
passes; no verdict uses them.  The ``*_columns`` forms are vectorised over features (LRCP's hundreds of
units and regions); the scalar forms are the public API for one feature.
"""
from __future__ import annotations

import numpy as np
from scipy import stats as _sps

from latentbids.analysis.stats import as_2d
from latentbids.errors import UsageError


def _check_binary(y01) -> np.ndarray:
    y = np.asarray(y01)
    if y.ndim != 1:
        raise UsageError("class labels must be a 1-D array of 0/1")
    if y.size and not np.all(np.isin(y, (0, 1))):
        raise UsageError("class labels must be 0/1: map the two labels of the contrast to 0 and 1 first")
    return y.astype(int)


def cohens_d_columns(X, y01) -> np.ndarray:
    """Cohen's d of every column of ``X``: (mean of class 1 - mean of class 0) / pooled SD (ddof=1).

    NaN where a class has fewer than two subjects or the pooled SD is 0.  A descriptive effect size
    shown next to LRCP's tests (no verdict uses it).

    Parameters
    ----------
    X : array-like of shape (n_samples,) or (n_samples, n_features)
        Features.
    y01 : array-like of shape (n_samples,)
        0/1 class labels.

    Returns
    -------
    ndarray of shape (n_features,)
        d in pooled-SD units (positive: class 1 higher).
    """
    x = as_2d(X, "X")
    y = _check_binary(y01)
    if y.size != x.shape[0]:
        raise UsageError(f"X has {x.shape[0]} rows but y has {y.size}: pass one label per subject")
    g1, g0 = x[y == 1], x[y == 0]
    n1, n0 = len(g1), len(g0)
    if n1 < 2 or n0 < 2:
        return np.full(x.shape[1], np.nan)
    pooled = np.sqrt(((n1 - 1) * g1.var(axis=0, ddof=1) + (n0 - 1) * g0.var(axis=0, ddof=1)) / (n1 + n0 - 2))
    diff = g1.mean(axis=0) - g0.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(pooled > 0, diff / np.where(pooled > 0, pooled, 1.0), np.nan)
    return d


def auc_columns(X, y01) -> np.ndarray:
    """ROC AUC of every column of ``X`` as a score for class 1 (Mann-Whitney U / (n1 n0)).

    Equal to ``sklearn.metrics.roc_auc_score(y01, X[:, c])`` (ties count one half); 0.5 is chance and
    values below 0.5 mean class 1 has the lower values.  NaN if a class is empty or the column has NaN.
    A descriptive effect size; LRCP also uses ``|AUC - 0.5|`` to order units in an exploratory ranking.

    Parameters
    ----------
    X : array-like of shape (n_samples,) or (n_samples, n_features)
        Features (scores; higher = more class-1-like).
    y01 : array-like of shape (n_samples,)
        0/1 class labels.

    Returns
    -------
    ndarray of shape (n_features,)
        AUC in [0, 1].
    """
    x = as_2d(X, "X")
    y = _check_binary(y01)
    if y.size != x.shape[0]:
        raise UsageError(f"X has {x.shape[0]} rows but y has {y.size}: pass one label per subject")
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        return np.full(x.shape[1], np.nan)
    ranks = _sps.rankdata(x, axis=0)
    u = ranks[y == 1].sum(axis=0) - n1 * (n1 + 1) / 2.0
    out = u / (n1 * n0)
    out[~np.all(np.isfinite(x), axis=0)] = np.nan
    return out


def cohens_d(x, y01) -> float:
    """Cohen's d of ``x`` between class 1 and class 0 (class 1 minus class 0, pooled SD, ddof=1).

    NaN when a class has fewer than two subjects or ``x`` does not vary within classes.

    Parameters
    ----------
    x : array-like of shape (n_samples,)
        One feature.
    y01 : array-like of shape (n_samples,)
        0/1 class labels.

    Returns
    -------
    float
        d in pooled-SD units (positive: class 1 higher), or NaN.
    """
    return float(cohens_d_columns(np.asarray(x, dtype=float).reshape(-1, 1), y01)[0])


def auc(x, y01) -> float:
    """ROC AUC of ``x`` as a score for class 1 (``sklearn.metrics.roc_auc_score``).

    Not symmetrised: 0.3 means class 1 tends to have *lower* values; use ``abs(auc - 0.5)`` for a
    direction-free strength.  NaN when only one class is present or ``x`` has NaN.

    Parameters
    ----------
    x : array-like of shape (n_samples,)
        One feature, used as a score for class 1.
    y01 : array-like of shape (n_samples,)
        0/1 class labels.

    Returns
    -------
    float
        AUC in [0, 1], or NaN.
    """
    from sklearn.metrics import roc_auc_score

    x = np.asarray(x, dtype=float).ravel()
    y = _check_binary(y01)
    if y.size != x.size:
        raise UsageError(f"x has {x.size} values but y has {y.size}: pass one label per subject")
    if len(np.unique(y)) < 2 or not np.all(np.isfinite(x)):
        return float("nan")
    return float(roc_auc_score(y, x))
