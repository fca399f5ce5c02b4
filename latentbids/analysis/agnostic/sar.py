"""SAR, statistical agnostic regression (METHOD.md section 6): a linear SVR judged against predicting the mean."""
from __future__ import annotations

import math

import numpy as np
from sklearn.svm import LinearSVR

from latentbids.analysis import bounds
from latentbids.analysis.agnostic.common import _MAX_ITER, MIN_SUBJECTS, _as_2d, _fit_quietly, _standardize
from latentbids.errors import UsageError


def _bound_p_value(gap: float, n: int, d: int, bound: str) -> float:
    """Smallest ``eta`` at which ``L_emp + Delta(n, d, eta) < gamma`` holds (the bound inverted).

    ``gap = gamma - L_emp``.  For G/GZ, ``Delta^2 = (ln C - ln eta) / (2n)`` gives
    ``eta = C exp(-2 n gap^2)``; for VC, ``n Delta^2 = ln Pi(n) - ln(eta/4)`` gives
    ``eta = 4 exp(ln Pi(n) - n gap^2)``, with the same growth function ``ln Pi(n)``
    (:func:`~latentbids.analysis.bounds.log_growth_vc`) as the bound itself, so that the p and the
    bound agree when ``n`` is smaller than ``d + 1`` (the first version inverted the uncapped form).
    Capped at 1; 1 when ``gap <= 0``.
    """
    if not np.isfinite(gap):
        return math.nan
    if gap <= 0:
        return 1.0
    name = str(bound).upper()
    if name == "G":
        log_p = bounds.log_growth_g(n, d) - 2 * n * gap ** 2
    elif name == "GZ":
        log_p = bounds.log_growth_gz(n, d) - 2 * n * gap ** 2
    elif name == "VC":
        log_p = math.log(4.0) + bounds.log_growth_vc(n, d) - n * gap ** 2
    else:
        raise UsageError(f"unknown bound '{bound}': use one of {', '.join(bounds.BOUNDS)}")
    return float(min(1.0, math.exp(min(log_p, 0.0))))


def _sar_once(X: np.ndarray, y: np.ndarray, eta: float, bound: str, random_state) -> dict:
    """One SAR fit on (X, y): standardise both, linear SVR, losses, bound, inverted-bound p."""
    n, d = X.shape
    if np.ptp(y) == 0:
        return dict(reason="constant target")
    Xs = _standardize(X)
    if not np.any(Xs):
        return dict(reason="all features constant")
    ys = (y - y.mean()) / y.std()
    q75, q25 = np.percentile(ys, [75, 25])
    eps = float((q75 - q25) / 13.49)
    svr = LinearSVR(C=1.0, epsilon=eps, loss="epsilon_insensitive", dual=True, tol=1e-5,
                    max_iter=_MAX_ITER, random_state=random_state)
    _fit_quietly(svr, Xs, ys)
    l_emp = float(np.mean(np.maximum(0.0, np.abs(ys - svr.predict(Xs)) - eps)))
    gamma = float(np.mean(np.maximum(0.0, np.abs(ys) - eps)))
    dlt = bounds.delta(n, d, eta, bound)
    return dict(reason="", epsilon=eps, l_emp=l_emp, gamma=gamma, delta=dlt,
                significant=bool(l_emp + dlt < gamma), p_bound=_bound_p_value(gamma - l_emp, n, d, bound))


def sar(X, y, eta: float = 0.05, bound: str = "G", n_resamples: int = 20, random_state: int = 0,
        subsample: float = 0.8) -> dict:
    """SAR, statistical agnostic regression of a continuous ``y`` on ``X`` (METHOD.md section 6).

    Both ``X`` (columns) and ``y`` are standardised; a linear SVR (``LinearSVR``, C = 1,
    ``epsilon = IQR(y) / 13.49``, i.e. a tenth of an sd for normal data) is fitted in sample.
    ``l_emp`` is its mean epsilon-insensitive loss over all subjects and ``gamma`` the same loss of the
    null model ``y_hat = 0``.  The relation is significant if ``l_emp + Delta(n, d) < gamma``: even in
    the worst case the model beats predicting the mean.  As in the group's method the loss is not
    bounded in [0, 1] (it is in units of sd of ``y``), so the bound is a heuristic scale here.

    Resampling [ours]: ``n_resamples`` subsets of ``round(subsample * n)`` subjects drawn without
    replacement (seeded by ``random_state``); the whole procedure (standardisation, epsilon, fit, bound
    at the subset size) is rerun on each.  ``power`` is the share of subsets where the test is
    significant.  ``p_mean_subsets`` is the mean over subsets of the *inverted bound*: the smallest
    ``eta`` at which that subset would be significant (``C(n, d) exp(-2 n (gamma - l_emp)^2)`` for the G
    bound, 1 when ``l_emp >= gamma``).  An average of p over overlapping subsets is not a p-value (its
    distribution under the null is not uniform, and no level is attached to it), so it is named for
    what it is and no verdict reads it: it describes stability, like ``power``.  ``p_full`` is the
    inverted bound on all subjects, the one p-value here, and ``significant`` equals ``p_full < eta``.
    (The group's ``sarlib`` reports ``1 - power`` as its p and averages the loss over the subjects outside
    the tube only; we do neither.)  ``d`` counts every column of ``X``, constant ones
    included (conservative).

    Parameters
    ----------
    X : array-like of shape (n_subjects, n_features)
        Predictors (e.g. the GM of the top SHAP regions); subjects with a non-finite value are dropped.
    y : array-like of shape (n_subjects,)
        Continuous target (e.g. the reconstruction error); non-finite values are dropped.
    eta : float, default=0.05
        Level of the bound, in (0, 1).
    bound : {"G", "GZ", "VC"}, default="G"
        Bound used for ``Delta(n, d)``.
    n_resamples : int, default=20
        Subsets of the resampling (0: no ``power`` and ``p_mean_subsets``).
    random_state : int, default=0
        Seed of the SVR and of the subsets.
    subsample : float, default=0.8
        Share of the subjects in each subset, in (0, 1].

    Returns
    -------
    dict
        ``n``, ``d``, ``epsilon``, ``l_emp``, ``delta``, ``gamma``, ``significant``, ``p_full``,
        ``power``, ``p_mean_subsets`` (a description, not a p-value), ``n_subsample``, ``n_resamples``
        (subsets that gave a value), ``reason``.  ``l_emp``, ``gamma`` and ``delta`` are in sd units of
        ``y``; ``p_full`` and ``p_mean_subsets`` in (0, 1], ``power`` in [0, 1]; the statistics are NaN
        when ``reason`` is set (fewer than 4 subjects, a constant target, constant features) and
        ``power``/``p_mean_subsets`` NaN when no subset was run.
    """
    X = _as_2d(X)
    y = np.asarray(y, dtype=float).ravel()
    if X.shape[0] != y.shape[0]:
        raise UsageError(f"X has {X.shape[0]} rows but y has {y.shape[0]} values: pass one value per subject")
    if not 0.0 < float(subsample) <= 1.0:
        raise UsageError(f"subsample must lie in (0, 1] (got {subsample})")
    keep = np.isfinite(y) & np.all(np.isfinite(X), axis=1)
    X, y = X[keep], y[keep]
    n, d = X.shape
    n_sub = int(round(float(subsample) * n))
    out = dict(n=int(n), d=int(d), epsilon=math.nan, l_emp=math.nan, delta=math.nan, gamma=math.nan,
               significant=False, p_full=math.nan, power=math.nan, p_mean_subsets=math.nan, n_subsample=n_sub,
               n_resamples=0, reason="")
    if n < MIN_SUBJECTS:
        out["reason"] = f"too few subjects (n={n} < {MIN_SUBJECTS})"
        return out
    full = _sar_once(X, y, eta, bound, random_state)
    if full["reason"]:
        out["reason"] = full["reason"]
        return out
    out.update(epsilon=full["epsilon"], l_emp=full["l_emp"], delta=full["delta"], gamma=full["gamma"],
               significant=full["significant"], p_full=full["p_bound"])
    if n_sub < 3 or int(n_resamples) < 1:
        return out
    rng = np.random.default_rng(random_state)
    sig, ps = [], []
    for _ in range(int(n_resamples)):
        ids = rng.choice(n, size=n_sub, replace=False)
        res = _sar_once(X[ids], y[ids], eta, bound, random_state)
        if not res["reason"]:
            sig.append(res["significant"])
            ps.append(res["p_bound"])
    if sig:
        out.update(power=float(np.mean(sig)), p_mean_subsets=float(np.mean(ps)), n_resamples=len(sig))
    return out
