"""SHAP explanations of the reconstruction error from regional gray matter (METHOD.md section 7).

A *surrogate* model predicts each subject's (held-out) reconstruction error ``e`` from the regional mean
GM values ``G``; SHAP values of that surrogate say which regions drive the error, i.e. where the
autoencoder reconstructs some subjects worse than others.  Fitted: one pooled model on all subjects and
one per class with enough subjects, each a gradient-boosting regressor (the model that is explained)
plus a ridge baseline (a linear reference, explained with :class:`shap.LinearExplainer`).

The cautionary rule of METHOD.md: *an explanation of a model that does not fit is not an explanation*.
Every model therefore reports its cross-validated R^2 and MAE against a mean predictor and a
permutation null of the CV R^2 (the whole CV refitted on shuffled ``e``).  The pooled and per-class
models form one family of claims: a model is *supported* only if ``cv_r2 > min_r2`` and its
Holm-adjusted permutation p is at most ``eta``; otherwise its statement says in words that no SHAP claim
is supported, and its SHAP values must not be presented as a finding.  A supported model supports "the
error is predictable from regional GM", not any one region (its SHAP map is model-level).  The top
regions are a second claim, tested on subjects that did not choose them: held-out R^2 against a
permutation null, with SAR beside it as the paper's check (:mod:`latentbids.analysis.shap_regions`).
The claims themselves are made by :func:`~latentbids.analysis.shap_claims.shap_claims`.

Compute cost
------------
The permutation null dominates: each permutation refits the GBM ``cv`` times, so one model costs
``(1 + n_permutations) * cv + 1`` GBM fits.  With METHOD's defaults (500 trees, depth 3, 116 regions,
one core) a fit takes about 0.6 s at 80 training subjects and 2 s at 320.  Measured (2-core shared
machine, pooled + 2 classes, defaults): n = 100 with a fitting surrogate (all 100 permutations run)
460 s CPU; n = 400 with a non-fitting one (sequential null stopped after 6-15) 250 s; n = 400 with a
fitting surrogate is ~2000 s CPU by extrapolation (not run).  Three things keep it down:

- ``null_early_stop`` (default on): Besag & Clifford's sequential permutation test.  The null stops as
  soon as ``h`` null R^2 values reach the observed one, where ``h`` is the smallest count that makes
  ``p <= eta`` impossible with the full ``n_permutations``; the p-value is then ``h / L`` (``L`` null
  refits done), a valid p-value, and the supported/not-supported decision is exactly that of the full
  run.  A surrogate that does not fit (the common case, METHOD.md section 7) costs ~5-15 refits
  instead of ``n_permutations``; one that fits still runs them all.
- ``n_iter_no_change`` (default ``None`` = METHOD's fixed number of trees): boosting early stopping on
  an internal 10 % validation split, applied identically to the observed and the null fits (so the null
  stays valid).  Shuffled targets stop after a few dozen trees, which makes the whole run 10-40x
  cheaper (measured: n = 100 in 11 s, n = 400 in 46 s), but the surrogate under-fits with the noisy
  10 % validation split (CV R^2 0.34 vs 0.62 at n = 100), so it is an option, not the default.
- ``n_jobs``: permutations run in parallel with joblib (the GBM itself is single-threaded).

The null refits reuse the observed CV splits, so observed and null R^2 differ only in the targets.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from latentbids.analysis import shap_summaries as summaries
from latentbids.analysis.shap_claims import shap_claims  # noqa: F401  (re-exported: the claims of this section)
from latentbids.analysis.shap_regions import confirm_top_regions
from latentbids.analysis.shap_summaries import IMPORTANCE_COLUMNS, POOLED, py_scalar
from latentbids.analysis.shap_surrogate import fit_one
from latentbids.analysis.shap_validation import family_verdicts
from latentbids.errors import UsageError

LOGGER = logging.getLogger("latentbids.analysis")

#: ridge penalties searched by RidgeCV (efficient leave-one-out inside each training fold).
RIDGE_ALPHAS = np.logspace(-3, 4, 15)
#: a model is fitted only with at least this many subjects (and at least ``cv``).
MIN_SUBJECTS = 10

FIT_COLUMNS = [
    "model", "n", "n_excluded", "cv_r2", "cv_mae", "cv_r2_ridge", "cv_mae_ridge", "mae_mean_predictor",
    "p_perm", "n_permutations_run", "p_holm", "supported", "reason", "seconds",
]
@dataclass
class ShapResult:
    """What :func:`explain_error` found; all tables are plain pandas objects.

    Attributes
    ----------
    fits : pandas.DataFrame of shape (n_models, n_columns)
        One row per model (``"pooled"`` first, then one per class, as ``str(label)``): ``n`` subjects
        used, ``n_excluded`` (rows with non-finite ``e`` or ``G``), ``cv_r2``/``cv_mae`` of the GBM,
        ``cv_r2_ridge``/``cv_mae_ridge`` of the ridge baseline, ``mae_mean_predictor`` (CV MAE of
        predicting the training-fold mean), ``p_perm`` (permutation p of the GBM's CV R^2),
        ``n_permutations_run``, ``p_holm`` (Holm-adjusted over the fitted models), ``supported``
        (``cv_r2 > min_r2 and p_holm <= eta``), ``reason`` (why a
        number is NaN or the model unsupported; ``""`` when supported) and ``seconds`` (wall time).
        Classes too small to fit get a row of NaN with the reason.
    values : dict of str to pandas.DataFrame of shape (n_subjects_of_model, n_regions)
        model -> GBM SHAP values of the model's subjects; index = row positions
        in the input ``G``, columns = ``region_index``.  Only for fitted models.
    importance : pandas.DataFrame of shape (n_models * n_regions, n_columns)
        Long format, one row per (fitted model, region): ``importance`` = mean |phi| of the GBM,
        ``rank`` (1 = most important), and the ridge baseline's ``importance_ridge`` and
        ``rank_ridge`` (mean |phi| from LinearExplainer) in the same row.
    comparison : pandas.DataFrame of shape (n_class_pairs, n_columns)
        One row per pair of fitted class models: Spearman correlation of their importance vectors,
        ``top_k_overlap`` (share of shared regions among each model's top ``top_k``), and
        ``largest_changes`` (text: the 3 regions with the largest |importance difference|, signed as
        b - a), ``both_surrogates_supported`` and ``exploratory`` (always True: no test compares the
        classes' importances, so the comparison is never a finding).
    statement : dict
        model -> one sentence in words (what may and may not be claimed).
    sar : dict or None
        SAR of ``e ~ top-m regions`` of the pooled model on the test half (the keys of ``agnostic.sar``
        plus ``regions``, ``region_names``, ``m``, ``n_select``, ``n_test``, ``supported``), the paper's
        check beside the held-out test; or None, and ``sar_reason`` says why.
    regions : dict or None
        The held-out test of the top regions (:func:`~latentbids.analysis.shap_regions.confirm_top_regions`):
        ``r2``, ``p``, ``supported``, the regions and the halves; or None, and ``regions_reason`` says why.
    """

    fits: pd.DataFrame
    values: dict[str, pd.DataFrame]
    importance: pd.DataFrame
    comparison: pd.DataFrame
    statement: dict[str, str]
    sar: dict | None = None
    sar_reason: str = ""
    regions: dict | None = None
    regions_reason: str = ""
    #: model -> DataFrame of the ridge baseline's SHAP values (same layout as ``values``).
    ridge_values: dict[str, pd.DataFrame] = field(default_factory=dict)
    #: model -> expected value of the GBM explainer (phi sums to prediction - expected value).
    expected_values: dict[str, float] = field(default_factory=dict)
    #: model -> expected value of the ridge explainer.
    ridge_expected_values: dict[str, float] = field(default_factory=dict)
    #: the pooled model's importance summarised within each class (class, region_index, region,
    #: importance, rank): METHOD's "pooled model with class-stratified summaries".
    pooled_by_class: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: model -> {"gbm": fitted GradientBoostingRegressor, "ridge": fitted scaler+ridge pipeline}, both
    #: fitted on all of the model's subjects (what the SHAP values explain).
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: model -> row positions (in G) of the SHAP background subjects (up to ``background``, seeded).
    background_rows: dict[str, list[int]] = field(default_factory=dict)
    #: every parameter, seed and library version (provenance).
    params: dict[str, Any] = field(default_factory=dict)


def explain_error(
    G,
    e,
    classes,
    region_index,
    region_names=None,
    *,
    n_estimators: int = 500,
    max_depth: int = 3,
    learning_rate: float = 0.05,
    subsample: float = 0.8,
    background: int = 200,
    n_permutations: int = 99,
    min_r2: float = 0.1,
    cv: int = 5,
    top_k: int = 10,
    random_state: int = 42,
    sar_top_m: int = 5,
    eta: float = 0.05,
    bound: str = "G",
    sar_resamples: int = 20,
    region_permutations: int = 999,
    null_early_stop: bool = True,
    n_iter_no_change: int | None = None,
    n_jobs: int = 1,
) -> ShapResult:
    """Explain the reconstruction error with SHAP values of a cross-validated surrogate.

    Parameters
    ----------
    G : array-like of shape (n_subjects, n_regions)
        Regional mean GM per subject (the input images', in atlas order).
    e : array-like of shape (n_subjects,)
        Reconstruction error per subject (held out from the autoencoder's training).
    classes : array-like of shape (n_subjects,), or None
        Class label per subject (any hashable dtype); None fits the pooled model only.
    region_index, region_names : sequence of length n_regions
        Atlas label of each column of ``G`` and its name (names default to the index).
    n_estimators, max_depth, learning_rate, subsample
        The gradient-boosting surrogate (METHOD: 500, 3, 0.05, 0.8).
    background : int
        At most this many subjects of the model's class (pooled: all subjects), drawn with
        ``random_state``, form the interventional SHAP background.
    n_permutations : int
        Size of the permutation null of the CV R^2 (0 skips it: ``p_perm`` NaN, never supported).
    min_r2 : float
        CV R^2 a surrogate needs before its SHAP values are a claim.
    cv : int
        Folds of the shuffled K-fold CV (seeded with ``random_state``; reused by every null refit).
    top_k : int
        Regions compared between classes.
    random_state : int
        Seed of the CV splits, the GBM, the permutations, the background and SAR.
    sar_top_m, eta, bound, sar_resamples
        The top ``sar_top_m`` regions, chosen by a surrogate fitted on half of the subjects, are tested
        on the other half (held-out R^2 against a permutation null, and SAR beside it with ``bound``
        and ``sar_resamples``); ``eta`` is the level of both and of the family of surrogate models (Holm).
    region_permutations : int
        Permutations of the test half's errors in the held-out test of the top regions (0: no p, no
        claim); cheap (no refit), hence 999.
    null_early_stop : bool
        Stop the null sequentially (Besag-Clifford) once ``p <= eta`` is impossible; see the module
        docstring.  Same decision as the full null, far fewer refits when the surrogate does not fit.
    n_iter_no_change : int or None
        Boosting early stopping (GBM's ``n_iter_no_change``, 10 % validation split); None keeps the
        fixed number of trees of METHOD.md.
    n_jobs : int
        Parallel permutations (joblib).

    Returns
    -------
    ShapResult

    Notes
    -----
    Rows with a non-finite ``e`` or ``G`` are excluded (counted in ``fits.n_excluded``).  Statistics
    that cannot be computed (too few subjects, constant ``e``, a single class) are NaN with a reason;
    they never raise.  ``cv_r2`` is :func:`sklearn.metrics.r2_score` of the out-of-fold predictions.
    """
    G, e, classes, region_index, region_names = _check_inputs(G, e, classes, region_index, region_names)
    _check_params(n_estimators, max_depth, learning_rate, subsample, background, n_permutations, cv,
                  top_k, sar_top_m, n_jobs, region_permutations)
    params = dict(
        n_estimators=int(n_estimators), max_depth=int(max_depth), learning_rate=float(learning_rate),
        subsample=float(subsample), background=int(background), n_permutations=int(n_permutations),
        min_r2=float(min_r2), cv=int(cv), top_k=int(top_k), random_state=int(random_state),
        sar_top_m=int(sar_top_m), eta=float(eta), bound=str(bound), sar_resamples=int(sar_resamples),
        region_permutations=int(region_permutations),
        null_early_stop=bool(null_early_stop), n_iter_no_change=n_iter_no_change, n_jobs=int(n_jobs),
        min_subjects=max(int(cv), MIN_SUBJECTS), ridge_alphas=RIDGE_ALPHAS.tolist(),
        cv_scheme="KFold(shuffle=True)", null="CV R^2 of the GBM refitted on shuffled e, same CV splits",
        versions=_versions(),
    )
    gbm = GradientBoostingRegressor(
        n_estimators=int(n_estimators), max_depth=int(max_depth), learning_rate=float(learning_rate),
        subsample=float(subsample), random_state=int(random_state), n_iter_no_change=n_iter_no_change,
        validation_fraction=0.1,
    )
    ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))
    finite = np.isfinite(e) & np.all(np.isfinite(G), axis=1)
    groups, one_class_reason = _model_groups(classes, finite)
    fitted = _fit_models(groups, G, e, classes, finite, gbm, ridge, params, region_index, region_names)
    fits = family_verdicts(pd.DataFrame(fitted["fits"], columns=FIT_COLUMNS), params)
    importance = (pd.concat(fitted["importances"], ignore_index=True) if fitted["importances"]
                  else pd.DataFrame(columns=IMPORTANCE_COLUMNS))
    values = fitted["values"]
    held, held_reason, sar, sar_reason = confirm_top_regions(G, e, groups[POOLED], fits, region_index,
                                                             region_names, params)
    statement = {name: summaries.statement(fits.set_index("model").loc[name], importance, (held, held_reason),
                                           (sar, sar_reason), min_r2, name == POOLED, one_class_reason)
                 for name in groups}
    return ShapResult(
        fits=fits, values=values, importance=importance,
        comparison=summaries.compare_classes(importance, fits, [m for m in groups if m != POOLED], top_k),
        statement=statement, sar=sar, sar_reason=sar_reason, regions=held, regions_reason=held_reason,
        ridge_values=fitted["ridge_values"],
        expected_values=fitted["expected"], ridge_expected_values=fitted["ridge_expected"],
        pooled_by_class=summaries.pooled_by_class(values.get(POOLED), classes, region_index, region_names),
        models=fitted["models"], background_rows=fitted["background_rows"], params=params,
    )


def _model_groups(classes, finite: np.ndarray) -> tuple[dict[str, np.ndarray], str]:
    """Model name -> row positions of its subjects: the pooled model, then one model per class.

    Unlabelled subjects (None/NaN class) belong to the pooled model but to no class model.
    """
    labelled = finite & pd.notna(classes) if classes is not None else finite
    groups: dict[str, np.ndarray] = {POOLED: np.flatnonzero(finite)}
    one_class_reason = ""
    if classes is not None:
        labels = sorted(pd.unique(classes[labelled]), key=lambda v: str(v))
        if len(labels) < 2:
            one_class_reason = "only one class is present, so there are no class-specific models"
        for lab in labels:
            if str(lab) == POOLED:
                raise UsageError("a class label may not be 'pooled' (reserved for the pooled model); "
                                 "rename the label")
            groups[str(lab)] = np.flatnonzero(labelled & (classes == lab))
    return groups, one_class_reason


def _fit_models(groups, G, e, classes, finite, gbm, ridge, params, region_index, region_names) -> dict:
    """Fit, test and explain every model of ``groups``; the per-model results gathered by kind."""
    out = {"fits": [], "values": {}, "ridge_values": {}, "expected": {}, "ridge_expected": {}, "models": {},
           "importances": [], "background_rows": {}}
    n_excluded = int((~finite).sum())
    for name, rows in groups.items():
        t0 = time.perf_counter()
        one = fit_one(G[rows], e[rows], gbm, ridge, params)
        one["fit"]["model"] = name
        one["fit"]["n_excluded"] = n_excluded if name == POOLED else int(
            (~finite & (classes == _label_of(classes, name))).sum()) if classes is not None else 0
        one["fit"]["seconds"] = round(time.perf_counter() - t0, 3)
        LOGGER.info("SHAP surrogate %s (%d subjects): fitted, tested and explained in %.1f s", name, len(rows),
                    one["fit"]["seconds"])
        out["fits"].append(one["fit"])
        if one["phi"] is None:
            continue
        out["values"][name] = pd.DataFrame(one["phi"], index=rows, columns=region_index)
        out["ridge_values"][name] = pd.DataFrame(one["phi_ridge"], index=rows, columns=region_index)
        out["expected"][name] = one["expected"]
        out["ridge_expected"][name] = one["expected_ridge"]
        out["models"][name] = {"gbm": one["gbm"], "ridge": one["ridge"]}
        out["background_rows"][name] = [int(r) for r in rows[one["background"]]]
        out["importances"].append(summaries.importance_table(name, one["phi"], one["phi_ridge"], region_index,
                                                             region_names))
    return out


# --------------------------------------------------------------------------------------------------
# input checks


def _check_inputs(G, e, classes, region_index, region_names):
    G = np.asarray(G.to_numpy() if isinstance(G, pd.DataFrame) else G, dtype=float)
    if G.ndim != 2:
        raise UsageError(f"G must be a 2-D array (subjects x regions), got shape {G.shape}")
    n, j = G.shape
    e = np.asarray(e, dtype=float).ravel()
    if len(e) != n:
        raise UsageError(f"e has {len(e)} values but G has {n} rows; pass one error per subject")
    if classes is not None:
        classes = np.asarray(classes, dtype=object).ravel()
        if len(classes) != n:
            raise UsageError(f"classes has {len(classes)} labels but G has {n} rows")
    region_index = [py_scalar(r) for r in np.asarray(region_index).ravel()]
    if len(region_index) != j:
        raise UsageError(f"region_index has {len(region_index)} entries but G has {j} columns")
    if len(set(region_index)) != j:
        raise UsageError("region_index has duplicates; pass one atlas label per column of G")
    if region_names is None:
        region_names = [str(r) for r in region_index]
    region_names = [str(r) for r in region_names]
    if len(region_names) != j:
        raise UsageError(f"region_names has {len(region_names)} entries but G has {j} columns")
    return G, e, classes, region_index, region_names


def _check_params(n_estimators, max_depth, learning_rate, subsample, background, n_permutations, cv,
                  top_k, sar_top_m, n_jobs, region_permutations):
    checks = [
        (int(n_estimators) >= 1, f"n_estimators must be >= 1 (got {n_estimators})"),
        (int(max_depth) >= 1, f"max_depth must be >= 1 (got {max_depth})"),
        (float(learning_rate) > 0, f"learning_rate must be > 0 (got {learning_rate})"),
        (0 < float(subsample) <= 1, f"subsample must lie in (0, 1] (got {subsample})"),
        (int(background) >= 1, f"background must be >= 1 (got {background})"),
        (int(n_permutations) >= 0, f"n_permutations must be >= 0 (got {n_permutations})"),
        (int(cv) >= 2, f"cv must be >= 2 folds (got {cv})"),
        (int(top_k) >= 1, f"top_k must be >= 1 (got {top_k})"),
        (int(sar_top_m) >= 1, f"sar_top_m must be >= 1 (got {sar_top_m})"),
        (int(n_jobs) >= 1, f"n_jobs must be >= 1 (got {n_jobs})"),
        (int(region_permutations) >= 0, f"region_permutations must be >= 0 (got {region_permutations})"),
    ]
    for ok, msg in checks:
        if not ok:
            raise UsageError(msg)


def _label_of(classes, name):
    for lab in pd.unique(classes[pd.notna(classes)]):
        if str(lab) == name:
            return lab
    return name


def _versions() -> dict:
    import shap
    import sklearn

    return {"shap": shap.__version__, "scikit-learn": sklearn.__version__}
