"""Mean-shift statistics of many features for many label permutations at once: Welch's |t| and |AUC - 0.5|.

Why these: a planted GM loss (and the latent units that encode it) moves the *mean* of a feature between
classes.  The best-threshold balanced accuracy (0.5 + KS / 2) looks for any difference of distributions
and spends its power on shapes a mean shift does not have; at 8 % GM loss, 60 subjects per group, a Welch
|t| max-statistic found 6x more planted regions at the same family-wise error rate (METHOD.md section 5).
Both statistics here are symmetric in the direction of the shift and computed for a whole batch of label
rows ``Y`` (B x n, the observed labels and their permutations) with two matrix products, so a
max-statistic null of 1000 permutations over a few hundred features takes well under a second.

- ``"welch"``: ``|mean_1 - mean_0| / sqrt(var_1 / n_1 + var_0 / n_0)`` (sample variances, ddof 1): robust to
  unequal variances and class sizes.
- ``"auc"``: ``|U / (n_0 n_1) - 0.5|`` with ``U`` the Mann-Whitney statistic of class 1 (average ranks for
  ties): rank-based, robust to outliers.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats as _sps

MEAN_SHIFT_STATISTICS = ("welch", "auc")


def prepare(X: np.ndarray, statistic: str) -> np.ndarray:
    """What the batch statistic reads of ``X``: standardised columns (welch), column ranks (auc).

    Parameters
    ----------
    X : ndarray of shape (n_subjects, n_features)
        Finite feature values.
    statistic : {"welch", "auc"}
        The statistic.

    Returns
    -------
    ndarray of shape (n_subjects, n_features), float64
        Columns centred and scaled to unit sd (constant columns 0) for ``"welch"``; average ranks for ``"auc"``.
    """
    X = np.asarray(X, dtype=float)
    if statistic == "auc":
        return _sps.rankdata(X, axis=0)
    sd = X.std(axis=0)
    return np.where(sd > 0, (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0), 0.0)


def batch_scores(Y: np.ndarray, prepared: np.ndarray, statistic: str) -> np.ndarray:
    """The statistic of every feature for every label row.

    Parameters
    ----------
    Y : ndarray of shape (n_rows, n_subjects)
        0/1 labels, one labelling per row (the same class sizes in every row).
    prepared : ndarray of shape (n_subjects, n_features)
        :func:`prepare` of the features.
    statistic : {"welch", "auc"}
        The statistic.

    Returns
    -------
    ndarray of shape (n_rows, n_features)
        ``|t|`` (>= 0) or ``|AUC - 0.5|`` (in [0, 0.5]); 0 for a constant feature.
    """
    Y = np.asarray(Y, dtype=float)
    n = Y.shape[1]
    n1 = float(Y[0].sum())
    n0 = n - n1
    s1 = Y @ prepared
    if statistic == "auc":
        return np.abs((s1 - n1 * (n1 + 1) / 2.0) / (n0 * n1) - 0.5)
    total = prepared.sum(axis=0)
    sq1 = Y @ (prepared * prepared)
    sq = (prepared * prepared).sum(axis=0)
    m1, m0 = s1 / n1, (total - s1) / n0
    v1 = np.maximum(sq1 - n1 * m1 * m1, 0.0) / max(n1 - 1.0, 1.0)
    v0 = np.maximum((sq - sq1) - n0 * m0 * m0, 0.0) / max(n0 - 1.0, 1.0)
    se = np.sqrt(v1 / n1 + v0 / n0)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.abs(m1 - m0) / se
    return np.where(se > 1e-12, t, 0.0)


def bonferroni_critical(statistic: str, n0: int, n1: int, eta_each: float) -> float:
    """The statistic a feature must exceed at level ``eta_each`` (two-sided), for the Bonferroni rule.

    Welch: Student's t quantile at the smallest Welch-Satterthwaite degrees of freedom any feature can have
    (``min(n_0, n_1) - 1``: conservative for every feature); AUC: the normal approximation of the
    Mann-Whitney statistic without tie correction.

    Parameters
    ----------
    statistic : {"welch", "auc"}
        The statistic.
    n0, n1 : int
        Class sizes (at least 2 each).
    eta_each : float
        Per-feature level (the family-wise eta divided by the family size), in (0, 1).

    Returns
    -------
    float
        The critical value, in the statistic's units.
    """
    q = 1.0 - float(eta_each) / 2.0
    if statistic == "auc":
        return float(_sps.norm.ppf(q) * math.sqrt((n0 + n1 + 1) / (12.0 * n0 * n1)))
    return float(_sps.t.ppf(q, df=max(min(n0, n1) - 1, 1)))
