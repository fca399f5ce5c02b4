"""Cross-validated accuracy of one-feature logistic regressions, and LRCP's cross-validated R^2 of each region
on the latents: descriptions, never verdicts.

LRCP shows it next to the in-sample family-wise statistics of :mod:`latentbids.analysis.discriminability`
so a reader sees how well one unit or region predicts held-out subjects.  It is column-vectorised (one
damped Newton fit per fold for all features at once) because LRCP asks it of hundreds of features;
scikit-learn's solver, called once per feature and fold, took most of LRCP's time.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

#: Ridge penalties searched (by efficient leave-one-out) when regressing each region on the latents.
RIDGE_ALPHAS = np.logspace(-3, 3, 13)


def cv_ridge_r2(Z: np.ndarray, G: np.ndarray, cv: int, random_state: int):
    """Cross-validated R^2 of each column of ``G`` regressed on all of ``Z`` (``A_j`` of METHOD.md).

    One multi-output ``RidgeCV`` (penalty chosen per region by efficient leave-one-out inside each
    training fold) under ``KFold(shuffle=True, random_state)``; predictions pooled with
    ``cross_val_predict`` and scored with ``r2_score`` per region.  Constant regions are NaN.

    Parameters
    ----------
    Z : ndarray of shape (n_subjects, n_units)
        Standardised latent codes (the predictors).
    G : ndarray of shape (n_subjects, n_regions)
        Standardised regional GM (one regression per column).
    cv : int
        Folds requested (clipped to ``n_subjects // 2``).
    random_state : int
        Seed of the folds.

    Returns
    -------
    r2 : ndarray of shape (n_regions,)
        Cross-validated R^2 per region (at most 1; NaN for a constant region, or all NaN below 4 subjects).
    reason : str or None
        Why every value is NaN, or None.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_predict

    n = Z.shape[0]
    n_splits = min(int(cv), n // 2)
    if n_splits < 2:
        return np.full(G.shape[1], np.nan), f"A_j needs at least 4 subjects for 2 folds (got {n})"
    model = RidgeCV(alphas=RIDGE_ALPHAS, alpha_per_target=True)
    folds = KFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    pred = cross_val_predict(model, Z, G, cv=folds)
    if pred.ndim == 1:
        pred = pred[:, None]
    r2 = r2_score(G, pred, multioutput="raw_values")
    r2 = np.asarray(r2, dtype=float)
    r2[~np.any(G != 0.0, axis=0)] = np.nan  # standardised constant columns
    return r2, None


def cv_logistic_accuracy(X: np.ndarray, y: np.ndarray, cv: int, random_state: int, C: float = 1.0):
    """Cross-validated accuracy of a one-feature logistic regression, for every column of ``X`` at once.

    The model is scikit-learn's default ``LogisticRegression(C=1.0)`` (L2 penalty on the slope, free
    intercept) fitted by a column-vectorised Newton method, so 150 columns x 5 folds cost a handful of
    matrix operations instead of 750 solver calls.  Folds come from ``StratifiedKFold(shuffle=True,
    random_state)``; the accuracy is the share of correct held-out predictions pooled over folds.
    Returns ``(accuracy per column, n_splits used, reason or None)``.  A description shown next to the
    in-sample statistics (no verdict uses it).

    Parameters
    ----------
    X : ndarray of shape (n_subjects, n_features)
        Features, finite; each column is one single-feature model.
    y : ndarray of shape (n_subjects,)
        0/1 labels.
    cv : int
        Requested folds; clipped to the size of the smaller class.
    random_state : int
        Seed of the stratified fold split.
    C : float, default=1.0
        Inverse L2 penalty of the slope (scikit-learn's ``C``).

    Returns
    -------
    accuracy : ndarray of shape (n_features,)
        Held-out accuracy pooled over folds, in [0, 1]; NaN (all columns) when fewer than 2 subjects
        in a class.
    n_splits : int
        Folds used (below 2 when not computed).
    reason : str or None
        Why the accuracies are NaN, or None.
    """
    from sklearn.model_selection import StratifiedKFold

    n_min = int(min(np.sum(y == 0), np.sum(y == 1)))
    n_splits = min(int(cv), n_min)
    if n_splits < 2:
        return np.full(X.shape[1], np.nan), n_splits, (
            f"cross-validated accuracy needs at least 2 subjects per class (smallest class has {n_min})"
        )
    correct = np.zeros(X.shape[1])
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    for train, test in splitter.split(X, y):
        w, b = _fit_logistic_1d(X[train], y[train].astype(float), C)
        pred = (X[test] * w + b) > 0
        correct += np.sum(pred == (y[test] == 1)[:, None], axis=0)
    return correct / len(y), n_splits, None


def _fit_logistic_1d(X: np.ndarray, y: np.ndarray, C: float, max_iter: int = 100, tol: float = 1e-10):
    """L2-penalised logistic regression of ``y`` on each column of ``X`` separately (Newton, damped).

    Minimises ``0.5 w^2 + C sum_i log(1 + exp(-s_i (w x_i + b)))`` per column, as scikit-learn's
    ``LogisticRegression`` does with its default ``lbfgs`` solver (intercept not penalised).
    """
    P = X.shape[1]
    w, b = np.zeros(P), np.zeros(P)
    yc = y[:, None]

    def objective(w_, b_):
        eta = X * w_ + b_
        return 0.5 * w_**2 + C * np.sum(np.logaddexp(0.0, eta) - yc * eta, axis=0)

    obj = objective(w, b)
    for _ in range(max_iter):
        p = expit(X * w + b)
        r = p - yc
        s = p * (1.0 - p)
        gw = w + C * np.sum(r * X, axis=0)
        gb = C * np.sum(r, axis=0)
        hww = 1.0 + C * np.sum(s * X * X, axis=0)
        hwb = C * np.sum(s * X, axis=0)
        hbb = C * np.sum(s, axis=0) + 1e-12
        det = hww * hbb - hwb**2
        det = np.where(det > 0, det, np.inf)
        dw = (hbb * gw - hwb * gb) / det
        db = (hww * gb - hwb * gw) / det
        step = np.ones(P)
        for _half in range(30):  # backtracking: never let the objective rise
            new = objective(w - step * dw, b - step * db)
            worse = new > obj + 1e-12 * np.abs(obj)
            if not worse.any():
                break
            step = np.where(worse, step / 2.0, step)
        w, b = w - step * dw, b - step * db
        obj = objective(w, b)
        if np.max(np.abs(step * dw)) < tol and np.max(np.abs(step * db)) < tol:
            break
    return w, b
