"""How a SHAP surrogate earns a claim: its permutation null, Holm over the models, SAR on held-out subjects.

An explanation of a model that does not fit is not an explanation (METHOD.md section 7), so the SHAP
values of a surrogate become a claim only through tests that can fail:

- :func:`permutation_p`: the surrogate's cross-validated R^2 against refits on shuffled errors (same CV
  splits), stopped sequentially (Besag & Clifford) once ``p <= eta`` is out of reach;
- :func:`family_verdicts`: Holm's step-down over the pooled and per-class models together (one family);
- :func:`sar_top_regions`: SAR of the error on the top regions, chosen on one half of the subjects and
  tested on the other.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.metrics import r2_score
from sklearn.model_selection import cross_val_predict

from latentbids.analysis.shap_summaries import POOLED, py_scalar
from latentbids.errors import LatentbidsError


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


def sar_top_regions(G, e, rows, fits, region_index, region_names, params):
    """SAR of ``e ~ G[:, top-m regions]`` on subjects that did not choose the regions (METHOD.md 6-7).

    The pooled subjects are split in two halves (seeded): a GBM surrogate fitted on the first half
    ranks the regions by mean |SHAP| (the selection), and SAR tests ``e`` on those ``m`` regions in the
    second half only, where ``p_full <= eta`` is the verdict (``supported``).  Choosing the regions with
    the same errors that test them would make the test optimistic.  ``power`` (share of significant
    subsamples of the test half) is reported as a description, never as a p-value.

    Parameters
    ----------
    G : ndarray of shape (n_rows, n_regions)
        Regional GM of every input row.
    e : ndarray of shape (n_rows,)
        Reconstruction error of every input row.
    rows : ndarray of int
        Row positions of the pooled model's subjects (finite ``e`` and ``G``).
    fits : pandas.DataFrame
        The fits table; SAR runs only when the pooled model was fitted.
    region_index : sequence of shape (n_regions,)
        Atlas label of each column of ``G``.
    region_names : sequence of str, shape (n_regions,)
        Name of each column of ``G``.
    params : dict
        Reads ``random_state``, ``sar_top_m``, ``eta``, ``bound``, ``sar_resamples`` and the GBM's
        settings (``n_estimators``, ``max_depth``, ``learning_rate``, ``subsample``, ``background``).

    Returns
    -------
    sar : dict or None
        :func:`~latentbids.analysis.agnostic.sar`'s dict plus ``regions`` (atlas labels), ``region_names``,
        ``m``, ``n_select``, ``n_test``, ``supported`` and ``note``; None when not run or not computed.
    reason : str
        Why ``sar`` is None (``"not run: ..."`` or ``"not computed: ..."``), else ``""``.
    """
    pooled = fits.set_index("model").loc[POOLED]
    if not np.isfinite(pooled["cv_r2"]):
        return None, f"not run: the pooled surrogate was not fitted ({pooled['reason']})"
    from latentbids.analysis.agnostic import MIN_SUBJECTS as SAR_MIN, sar

    rng = np.random.default_rng(params["random_state"] + 1)
    shuffled = rng.permutation(rows)
    select, test = np.sort(shuffled[: len(rows) // 2]), np.sort(shuffled[len(rows) // 2:])
    if min(len(select), len(test)) < max(SAR_MIN, 2 * params["sar_top_m"]):
        return None, f"not run: {len(rows)} subjects are too few to split into a selection and a test half"
    top = _top_regions_by_shap(G[select], e[select], params)
    names = [str(region_names[c]) for c in top]
    try:
        res = sar(G[np.ix_(test, top)], e[test], eta=params["eta"], bound=params["bound"],
                  n_resamples=params["sar_resamples"], random_state=params["random_state"])
    except (LatentbidsError, ValueError, ArithmeticError) as exc:
        return None, f"not computed: {type(exc).__name__}: {exc}"
    res = dict(res)
    res.update(regions=[py_scalar(region_index[c]) for c in top], region_names=names, m=len(top),
               n_select=int(len(select)), n_test=int(len(test)),
               supported=bool(np.isfinite(res["p_full"]) and res["p_full"] <= params["eta"] + 1e-12),
               note="regions chosen by a surrogate fitted on one half of the subjects, tested on the other half")
    return res, ""


def _top_regions_by_shap(Gs, es, params) -> list[int]:
    """Column positions of the ``sar_top_m`` regions with the largest mean |SHAP| of a GBM on (Gs, es)."""
    import shap

    gbm = GradientBoostingRegressor(
        n_estimators=params["n_estimators"], max_depth=params["max_depth"],
        learning_rate=params["learning_rate"], subsample=params["subsample"],
        random_state=params["random_state"]).fit(Gs, es)
    rng = np.random.default_rng(params["random_state"])
    bg = Gs[np.sort(rng.choice(len(Gs), size=min(len(Gs), params["background"]), replace=False))]
    phi = shap.TreeExplainer(gbm, data=shap.maskers.Independent(bg, max_samples=len(bg)),
                             feature_perturbation="interventional").shap_values(Gs)
    imp = np.abs(np.asarray(phi, dtype=float)).mean(axis=0)
    return [int(c) for c in np.argsort(-imp, kind="stable")[: min(params["sar_top_m"], Gs.shape[1])]]
