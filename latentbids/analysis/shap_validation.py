"""How a SHAP surrogate earns a claim: its permutation null and Holm over the models.

An explanation of a model that does not fit is not an explanation (METHOD.md section 7), so the SHAP
values of a surrogate become a claim only through tests that can fail:

- :func:`permutation_p`: the surrogate's cross-validated R^2 against refits on shuffled errors (same CV
  splits), stopped sequentially (Besag & Clifford) once ``p <= eta`` is out of reach;
- :func:`family_verdicts`: Holm's step-down over the pooled and per-class models together (one family).

Which regions carry the error is a second claim, tested on subjects that did not choose them
(:mod:`latentbids.analysis.shap_regions`).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.metrics import r2_score
from sklearn.model_selection import cross_val_predict


def _null_r2(gbm, Gm, em, splits, seed) -> float:
    perm = np.random.default_rng(seed).permutation(len(em))
    ep = em[perm]
    return float(r2_score(ep, cross_val_predict(gbm, Gm, ep, cv=splits)))


def permutation_p(gbm, Gm, em, splits, observed, params) -> tuple[float, int]:
    """p of the observed CV R^2 under the null of shuffled ``e`` (same splits, same model).

    Full null: ``p = (#{null >= observed} + 1) / (B + 1)``.  With ``null_early_stop``: stop once the
    count reaches ``h = max(1, ceil(eta (B + 1) - 1))``, meant as the smallest count for which the
    full-null p cannot reach ``eta``, and return Besag & Clifford's sequential ``p = h / L`` (``L``
    refits done).  A surrogate that does not fit thus costs a handful of refits instead of ``B``.
    The null draws are seeded from ``random_state`` and consumed in order, so the result does not
    depend on ``n_jobs``.

    Parameters
    ----------
    gbm : GradientBoostingRegressor
        Unfitted surrogate (refitted on each shuffled target).
    Gm : ndarray of shape (n_subjects, n_regions)
        Regional GM of the model's subjects.
    em : ndarray of shape (n_subjects,)
        Their reconstruction error.
    splits : list of (train, test) index arrays
        The CV splits of the observed fit (reused by every refit).
    observed : float
        Observed CV R^2 of the GBM (at most 1).
    params : dict
        Reads ``n_permutations`` (``B``), ``eta``, ``random_state``, ``n_jobs`` and ``null_early_stop``.

    Returns
    -------
    p : float
        Permutation p in (0, 1]; NaN when ``B = 0`` or ``observed`` is not finite.
    n_run : int
        Null refits done (``B`` unless stopped early; 0 when not run).
    """
    B = params["n_permutations"]
    if B == 0 or not np.isfinite(observed):
        return float("nan"), 0
    # the full null fails (p = (count + 1) / (B + 1) > eta) as soon as count reaches h: the smallest count
    # with (h + 1) / (B + 1) > eta
    h = max(1, int(math.floor(params["eta"] * (B + 1) + 1e-9)))
    seeds = np.random.SeedSequence(params["random_state"]).generate_state(B)
    n_jobs = params["n_jobs"]
    count, done = 0, 0
    step = max(1, n_jobs)
    while done < B:
        batch = seeds[done:done + step]
        if n_jobs == 1:
            null = [_null_r2(gbm, Gm, em, splits, int(s)) for s in batch]
        else:
            from joblib import Parallel, delayed

            null = Parallel(n_jobs=n_jobs)(
                delayed(_null_r2)(gbm, Gm, em, splits, int(s)) for s in batch)
        for r in null:  # consume in order so the result does not depend on n_jobs
            done += 1
            count += r >= observed
            if params["null_early_stop"] and count >= h and done < B:
                # Besag-Clifford's h / L, never below what the full null would give at least, so that the
                # reported p and the decision agree with the full run (p > eta)
                return max(h / done, (h + 1) / (B + 1)), done
    return (count + 1) / (B + 1), B


def family_verdicts(fits: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Holm's step-down over every fitted surrogate (pooled and per class): one family of SHAP claims.

    A model is ``supported`` when its CV R^2 exceeds the floor and its Holm-adjusted permutation p is at
    most ``eta``.  Fitted models without a null (below the R^2 floor) count in the family with p = 1.
    Pooled and class models are tested on overlapping subjects, so they form one family.

    Parameters
    ----------
    fits : pandas.DataFrame
        One row per model (:data:`~latentbids.analysis.shap_error.FIT_COLUMNS`); a model was fitted when
        its ``cv_r2`` is not NaN.
    params : dict
        Reads ``eta``, ``n_permutations`` and ``min_r2``.

    Returns
    -------
    pandas.DataFrame
        A copy of ``fits`` with ``p_holm`` (in (0, 1]; NaN for models not fitted), ``supported`` and
        ``reason`` (extended with the Holm verdict and, when ``B`` permutations cannot reach
        ``eta / m``, how many are needed) set.
    """
    fits = fits.copy()
    eta, B = params["eta"], params["n_permutations"]
    fitted = fits["cv_r2"].notna().to_numpy()
    m = int(fitted.sum())
    p = np.where(fitted, fits["p_perm"].fillna(1.0).to_numpy(float), np.nan)
    p_holm = np.full(len(fits), np.nan)
    if m:
        idx = np.flatnonzero(fitted)
        order = idx[np.argsort(p[idx], kind="stable")]
        running = 0.0
        for i, row in enumerate(order):
            running = max(running, min(1.0, (m - i) * p[row]))
            p_holm[row] = running
    fits["p_holm"] = p_holm
    fits["supported"] = fitted & (fits["cv_r2"].to_numpy(float) > params["min_r2"]) & (p_holm <= eta + 1e-12)
    reasons = []
    for row in fits.itertuples():
        why = [row.reason] if row.reason else []
        if np.isfinite(row.p_perm) and not row.supported:
            why.append(f"permutation p = {row.p_perm:.3g}, Holm-adjusted over {m} model(s) = {row.p_holm:.3g} "
                       f"> {eta:g}")
            if B and 1.0 / (B + 1) > eta / m:
                why.append(f"{B} permutations cannot reach p <= {eta:g}/{m}: use at least {math.ceil(m / eta) - 1}")
        reasons.append("; ".join(why))
    fits["reason"] = reasons
    return fits
