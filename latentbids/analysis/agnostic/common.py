"""Shared conventions of the statistical agnostic tests: labels, degenerate input, chance, the linear SVM."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from latentbids.analysis import bounds
from latentbids.analysis.discriminability import threshold_scores
from latentbids.errors import UsageError

#: Fewest subjects any test here runs on.
MIN_SUBJECTS = 4

_MAX_ITER = 20000


# --------------------------------------------------------------------------------------- helpers
def _missing_mask(y: np.ndarray) -> np.ndarray:
    return np.asarray(pd.isna(y), dtype=bool)


def _as_2d(X) -> np.ndarray:
    """A 2-D float array; float32 input stays float32 (voxel matrices are large), no copy if possible."""
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(float)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise UsageError(f"features must be a 1-D or 2-D array (got {X.ndim} dimensions)")
    return X


def _prepare(X, y):
    """Drop subjects with a missing label or a non-finite feature; map ``y`` to 0/1.

    Returns ``(X, y01, classes, reason)``; ``reason`` is ``""`` when two classes and at least
    ``MIN_SUBJECTS`` subjects remain.
    """
    X = _as_2d(X)
    y = np.asarray(y).ravel()
    if X.shape[0] != y.shape[0]:
        raise UsageError(f"features have {X.shape[0]} rows but y has {y.shape[0]} labels: pass one label per subject")
    keep = ~_missing_mask(y) & np.isfinite(X).all(axis=1)
    if not keep.all():
        X, y = X[keep], y[keep]
    try:
        classes = sorted(pd.unique(pd.Series(y, dtype=object)))
    except TypeError:
        raise UsageError("y mixes label types that cannot be ordered: pass labels of one type") from None
    if len(classes) > 2:
        raise UsageError(
            f"y has {len(classes)} distinct labels ({', '.join(map(str, classes[:5]))}); "
            "the agnostic tests take one contrast: pass the subjects of two classes only"
        )
    y01 = np.zeros(len(y), dtype=int)
    if len(classes) == 2:
        y01 = np.asarray(y == classes[1], dtype=int)
    reason = ""
    if len(y01) < MIN_SUBJECTS:
        reason = f"too few subjects (n={len(y01)} < {MIN_SUBJECTS})"
    elif len(classes) < 2:
        reason = "only one class present"
    return X, y01, classes, reason


def _chance_level(y01: np.ndarray, chance) -> float:
    if isinstance(chance, str):
        if chance != "majority":
            raise UsageError(f"chance must be 'majority' or a number in [0, 1) (got '{chance}')")
        if len(y01) == 0:
            return math.nan
        share = float(np.mean(y01))
        return max(share, 1.0 - share)
    chance = float(chance)
    if not 0.0 <= chance < 1.0:
        raise UsageError(f"chance must be 'majority' or a number in [0, 1) (got {chance})")
    return chance


def _standardize(X: np.ndarray) -> np.ndarray:
    """Column z-scores (population sd, as scikit-learn); constant columns become 0."""
    return StandardScaler().fit_transform(X)


def _linear_svm(random_state) -> LinearSVC:
    return LinearSVC(C=1.0, dual="auto", max_iter=_MAX_ITER, random_state=random_state)


def _fit_quietly(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


def _classifier_nan(n, d, chance, reason, **extra) -> dict:
    out = dict(n=int(n), d=int(d), accuracy=math.nan, delta=math.nan, acc_star=math.nan,
               chance=chance, reason=reason)
    out.update(extra)
    return out


# ----------------------------------------------------------------------------- single feature
def single_feature_accuracy(x, y) -> float:
    """In-sample accuracy of the best one-feature linear classifier (a threshold, either direction).

    This is the empirical-risk minimiser over all classifiers ``sign(w x + b)`` on one feature, found by
    an exact sweep over the sorted values (ties handled: tied values never straddle a threshold), so it
    is deterministic and needs no solver.  It is what the bound ``Delta(n, d=1)`` is stated for.

    Parameters
    ----------
    x : array (N,)
        One feature (a latent unit, a regional GM value).
    y : array (N,)
        Two labels of any type (see the module docstring).

    Returns
    -------
    float
        Accuracy in [0.5, 1]; NaN if fewer than 4 subjects, one class only or a constant feature.
    """
    X, y01, _, reason = _prepare(np.asarray(x, dtype=float).ravel(), y)
    if reason or np.ptp(X[:, 0]) == 0:
        return math.nan
    return float(threshold_scores(X, y01, "majority")[0])


def feature_test(x, y, eta: float = 0.05, bound: str = "G", chance="majority") -> dict:
    """SAM-style test of one feature: ``acc* = acc - Delta(n, d=1)``, significant if ``acc* > chance``.

    The single-feature check of METHOD.md section 6 on its own (no family-wise control: one feature
    tested at ``eta``).  Missing labels and non-finite values are dropped first (module conventions).

    Parameters
    ----------
    x : array-like of shape (n_subjects,)
        One feature (a latent unit, a regional GM value).
    y : array-like of shape (n_subjects,)
        Two labels of any type (sorted: the first is class 0).
    eta : float, default=0.05
        Confidence level of the bound, in (0, 1).
    bound : {"G", "GZ", "VC"}, default="G"
        Bound used for ``Delta`` (:func:`latentbids.analysis.bounds.delta`).
    chance : "majority" or float, default="majority"
        Level ``acc*`` must exceed: the larger class's share, or a number in [0, 1) (0.5: the paper's rule).

    Returns
    -------
    dict
        ``n``, ``d`` (= 1), ``accuracy`` (:func:`single_feature_accuracy`), ``delta``, ``acc_star``, ``chance``,
        ``significant`` (bool) and ``reason`` (``""`` when computed).  ``accuracy`` is in [0.5, 1],
        ``delta`` and ``acc_star`` in accuracy units; the three are NaN (and ``significant`` False) when
        ``reason`` is set (fewer than 4 subjects, one class, a constant feature).
    """
    X, y01, _, reason = _prepare(np.asarray(x, dtype=float).ravel(), y)
    n = len(y01)
    level = _chance_level(y01, chance)
    if not reason and np.ptp(X[:, 0]) == 0:
        reason = "constant feature"
    if reason:
        return _classifier_nan(n, 1, level, reason, significant=False)
    acc = float(threshold_scores(X, y01, "majority")[0])
    dlt = bounds.delta(n, 1, eta, bound)
    return dict(n=n, d=1, accuracy=acc, delta=dlt, acc_star=acc - dlt, chance=level,
                significant=bool(acc - dlt > level), reason="")
