"""One SHAP surrogate: its cross-validated fit, its permutation null, and its SHAP values.

Called by :func:`latentbids.analysis.shap_error.explain_error` for the pooled model and for each class.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import clone
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.model_selection import KFold, cross_val_predict

from latentbids.analysis.shap_validation import permutation_p


def fit_one(Gm, em, gbm, ridge, params) -> dict:
    """CV, permutation null and SHAP values of one model (the pooled one or one class).

    The model is judged before it is explained: out-of-fold R^2 and MAE of the GBM and the ridge baseline
    (against predicting the training-fold mean), then, only when the GBM's CV R^2 exceeds ``min_r2``, its
    permutation p (:func:`~latentbids.analysis.shap_validation.permutation_p`).  Both models are then
    refitted on all the subjects and explained with an interventional SHAP background of at most
    ``background`` seeded subjects.  The family-wise verdict is taken later, over all models together.

    Parameters
    ----------
    Gm : ndarray of shape (n_subjects, n_regions)
        Regional GM of the model's subjects (finite).
    em : ndarray of shape (n_subjects,)
        Their reconstruction error (finite; mean squared error in model units).
    gbm : GradientBoostingRegressor
        Unfitted surrogate (cloned, never fitted in place).
    ridge : Pipeline
        Unfitted ``StandardScaler`` + ``RidgeCV`` baseline.
    params : dict
        The run's parameters; reads ``min_subjects``, ``random_state``, ``cv``, ``min_r2``,
        ``n_permutations``, ``background`` (and what :func:`permutation_p` reads).

    Returns
    -------
    dict
        ``fit``: the model's row of the fits table (``n``, ``cv_r2`` (at most 1), ``cv_mae``,
        ``cv_r2_ridge``, ``cv_mae_ridge``, ``mae_mean_predictor`` (error units), ``p_perm`` in (0, 1] or
        NaN, ``n_permutations_run``, ``supported`` (False here), ``reason``); ``phi``: GBM SHAP values
        ``(n_subjects, n_regions)`` or None when no model was fitted (too few subjects, constant ``e``,
        constant GM: ``reason`` says which).  With ``phi`` also ``phi_ridge`` (ridge SHAP values, same
        shape), ``gbm`` and ``ridge`` (fitted on all subjects), ``background`` (row positions in ``Gm``),
        ``expected`` and ``expected_ridge`` (explainers' expected values).
    """
    n = len(em)
    fit = dict(n=n, cv_r2=np.nan, cv_mae=np.nan, cv_r2_ridge=np.nan, cv_mae_ridge=np.nan,
               mae_mean_predictor=np.nan, p_perm=np.nan, n_permutations_run=0, supported=False, reason="")
    out = dict(fit=fit, phi=None)
    min_n = params["min_subjects"]
    if n < min_n:
        fit["reason"] = f"too few subjects (n = {n} < {min_n}); no surrogate was fitted"
        return out
    if not np.ptp(em) > 1e-12 * max(1.0, float(np.abs(em).max())):
        fit["reason"] = "the reconstruction error is constant, so there is nothing to explain"
        return out
    if not np.any(np.ptp(Gm, axis=0) > 0):
        fit["reason"] = "every regional GM feature is constant"
        return out

    rs = params["random_state"]
    splits = list(KFold(n_splits=params["cv"], shuffle=True, random_state=rs).split(Gm))
    mean_pred = np.empty(n)
    for train, test in splits:
        mean_pred[test] = em[train].mean()
    pred = cross_val_predict(gbm, Gm, em, cv=splits)
    pred_ridge = cross_val_predict(ridge, Gm, em, cv=splits)
    fit.update(
        cv_r2=float(r2_score(em, pred)), cv_mae=float(mean_absolute_error(em, pred)),
        cv_r2_ridge=float(r2_score(em, pred_ridge)),
        cv_mae_ridge=float(mean_absolute_error(em, pred_ridge)),
        mae_mean_predictor=float(mean_absolute_error(em, mean_pred)),
    )

    p, n_run, reasons = np.nan, 0, []
    if not fit["cv_r2"] > params["min_r2"]:
        # the R^2 floor already rules the model out: its null would only cost time (B x cv fits)
        reasons.append(f"CV R^2 = {fit['cv_r2']:.3f} <= {params['min_r2']:g} (no permutation null needed)")
    elif params["n_permutations"] == 0:
        reasons.append("no permutation null was run (n_permutations = 0)")
    else:
        p, n_run = permutation_p(gbm, Gm, em, splits, fit["cv_r2"], params)
    fit.update(p_perm=p, n_permutations_run=n_run)
    fit["reason"] = "; ".join(reasons)  # the family-wise verdict is taken over all models together

    # the explained models: fitted on all of the model's subjects
    import shap  # lazy: heavy import, only needed here

    model = clone(gbm).fit(Gm, em)
    rng = np.random.default_rng(rs)
    bg = np.sort(rng.choice(n, size=min(n, params["background"]), replace=False))
    # an explicit masker: given a bare array, shap silently subsamples the background to 100 rows
    masker = shap.maskers.Independent(Gm[bg], max_samples=len(bg))
    explainer = shap.TreeExplainer(model, data=masker, feature_perturbation="interventional")
    phi = np.asarray(explainer.shap_values(Gm), dtype=float)
    lin = clone(ridge).fit(Gm, em)
    scaler, ridge_model = lin[0], lin[-1]
    Xs = scaler.transform(Gm)
    lin_explainer = shap.LinearExplainer(ridge_model, shap.maskers.Independent(Xs[bg], max_samples=len(bg)))
    phi_ridge = np.asarray(lin_explainer.shap_values(Xs), dtype=float)
    out.update(phi=phi, phi_ridge=phi_ridge, gbm=model, ridge=lin, background=bg,
               expected=float(np.ravel(explainer.expected_value)[0]),
               expected_ridge=float(np.ravel(lin_explainer.expected_value)[0]))
    return out
