"""SHAP explanations of the reconstruction error from regional gray matter (METHOD.md section 7).

A *surrogate* model predicts each subject's (held-out) reconstruction error ``e`` from the regional mean
GM values ``G``; SHAP values of that surrogate say which regions drive the error, i.e. where the
autoencoder reconstructs some subjects worse than others.  Fitted: one pooled model on all subjects and
one per class with enough subjects, each a gradient-boosting regressor (the model that is explained)
plus a ridge baseline (a linear reference, explained with :class:`shap.LinearExplainer`).

The cautionary rule of METHOD.md: *an explanation of a model that does not fit is not an explanation*.
Every model therefore reports its cross-validated R^2 and MAE against a mean predictor and a
permutation null of the CV R^2 (the whole CV refitted on shuffled ``e``).  A model is *supported* only
if ``cv_r2 > min_r2`` and ``p_perm < 0.05``; otherwise its statement says in words that no SHAP claim is
supported, and its SHAP values must not be presented as a finding.  The pooled model's top regions are
also checked with SAR (:func:`latentbids.analysis.agnostic.sar`, ``e ~ top-m regions``).

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
  ``p < 0.05`` impossible with the full ``n_permutations``; the p-value is then ``h / L`` (``L`` null
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

import math
import time
import warnings
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.base import clone
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import RidgeCV
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from latentbids.errors import LatentbidsError, UsageError

POOLED = "pooled"
#: significance level of the permutation null (METHOD.md fixes "p_perm < 0.05").
ALPHA_PERM = 0.05
#: ridge penalties searched by RidgeCV (efficient leave-one-out inside each training fold).
RIDGE_ALPHAS = np.logspace(-3, 4, 15)
#: a model is fitted only with at least this many subjects (and at least ``cv``).
MIN_SUBJECTS = 10

FIT_COLUMNS = [
    "model", "n", "n_excluded", "cv_r2", "cv_mae", "cv_r2_ridge", "cv_mae_ridge", "mae_mean_predictor",
    "p_perm", "n_permutations_run", "supported", "reason", "seconds",
]
IMPORTANCE_COLUMNS = [
    "model", "region_index", "region", "importance", "rank", "importance_ridge", "rank_ridge",
]
COMPARISON_COLUMNS = [
    "class_a", "class_b", "n_a", "n_b", "spearman", "top_k", "top_k_overlap", "largest_changes",
    "both_supported",
]


@dataclass
class ShapResult:
    """What :func:`explain_error` found; all tables are plain pandas objects.

    Attributes
    ----------
    fits : DataFrame
        One row per model (``"pooled"`` first, then one per class, as ``str(label)``): ``n`` subjects
        used, ``n_excluded`` (rows with non-finite ``e`` or ``G``), ``cv_r2``/``cv_mae`` of the GBM,
        ``cv_r2_ridge``/``cv_mae_ridge`` of the ridge baseline, ``mae_mean_predictor`` (CV MAE of
        predicting the training-fold mean), ``p_perm`` (permutation p of the GBM's CV R^2),
        ``n_permutations_run``, ``supported`` (``cv_r2 > min_r2 and p_perm < 0.05``), ``reason`` (why a
        number is NaN or the model unsupported; ``""`` when supported) and ``seconds`` (wall time).
        Classes too small to fit get a row of NaN with the reason.
    values : dict
        model -> DataFrame of GBM SHAP values (subjects of the model x regions); index = row positions
        in the input ``G``, columns = ``region_index``.  Only for fitted models.
    importance : DataFrame
        Long format, one row per (fitted model, region): ``importance`` = mean |phi| of the GBM,
        ``rank`` (1 = most important), and the ridge baseline's ``importance_ridge`` and
        ``rank_ridge`` (mean |phi| from LinearExplainer) in the same row.
    comparison : DataFrame
        One row per pair of fitted class models: Spearman correlation of their importance vectors,
        ``top_k_overlap`` (share of shared regions among each model's top ``top_k``), and
        ``largest_changes`` (text: the 3 regions with the largest |importance difference|, signed as
        b - a), ``both_supported`` (only then is the comparison a finding).
    statement : dict
        model -> one sentence in words (what may and may not be claimed).
    sar : dict or None
        SAR of ``e ~ top-m regions`` of the pooled model (the keys of ``agnostic.sar`` plus
        ``regions``, ``region_names``, ``m``), or None; ``sar_reason`` then says why.
    """

    fits: pd.DataFrame
    values: dict[str, pd.DataFrame]
    importance: pd.DataFrame
    comparison: pd.DataFrame
    statement: dict[str, str]
    sar: dict | None = None
    sar_reason: str = ""
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
    n_permutations: int = 100,
    min_r2: float = 0.1,
    cv: int = 5,
    top_k: int = 10,
    random_state: int = 42,
    sar_top_m: int = 5,
    eta: float = 0.05,
    bound: str = "G",
    sar_resamples: int = 20,
    null_early_stop: bool = True,
    n_iter_no_change: int | None = None,
    n_jobs: int = 1,
) -> ShapResult:
    """Explain the reconstruction error with SHAP values of a cross-validated surrogate.

    Parameters
    ----------
    G : array-like, N x J
        Regional mean GM per subject (the input images', in atlas order).
    e : array-like, N
        Reconstruction error per subject (held out from the autoencoder's training).
    classes : array-like, N, or None
        Class label per subject (any hashable dtype); None fits the pooled model only.
    region_index, region_names : sequence, J
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
        SAR validation of the pooled model's top ``sar_top_m`` regions (``agnostic.sar``).
        Caveat: the regions were selected with ``e`` (they are the surrogate's top regions), so SAR on
        the same subjects is optimistic; its bound counts ``d = m`` features, not the selection.
    null_early_stop : bool
        Stop the null sequentially (Besag-Clifford) once ``p < 0.05`` is impossible; see the module
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
                  top_k, sar_top_m, n_jobs)
    params = dict(
        n_estimators=int(n_estimators), max_depth=int(max_depth), learning_rate=float(learning_rate),
        subsample=float(subsample), background=int(background), n_permutations=int(n_permutations),
        min_r2=float(min_r2), cv=int(cv), top_k=int(top_k), random_state=int(random_state),
        sar_top_m=int(sar_top_m), eta=float(eta), bound=str(bound), sar_resamples=int(sar_resamples),
        null_early_stop=bool(null_early_stop), n_iter_no_change=n_iter_no_change, n_jobs=int(n_jobs),
        alpha_perm=ALPHA_PERM, min_subjects=max(int(cv), MIN_SUBJECTS), ridge_alphas=RIDGE_ALPHAS.tolist(),
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
    # unlabelled subjects (None/NaN class) belong to the pooled model but to no class model
    labelled = finite & pd.notna(classes) if classes is not None else finite
    n_excluded = int((~finite).sum())

    # model name -> row positions (in G) of its subjects
    groups: dict[str, np.ndarray] = {POOLED: np.flatnonzero(finite)}
    one_class_reason = ""
    if classes is not None:
        labels = sorted(pd.unique(classes[labelled]), key=lambda v: str(v))
        if len(labels) < 2:
            one_class_reason = "only one class is present, so there are no class-specific models"
        for lab in labels:
            name = str(lab)
            if name == POOLED:
                raise UsageError("a class label may not be 'pooled' (reserved for the pooled model); "
                                 "rename the label")
            groups[name] = np.flatnonzero(labelled & (classes == lab))

    fits_rows, values, ridge_values, expected, ridge_expected, models, importances = (
        [], {}, {}, {}, {}, {}, [])
    background_rows: dict[str, list[int]] = {}
    for name, rows in groups.items():
        t0 = time.perf_counter()
        out = _fit_one(name, G[rows], e[rows], rows, gbm, ridge, params)
        out["fit"]["n_excluded"] = n_excluded if name == POOLED else int(
            (~finite & (classes == _label_of(classes, name))).sum()) if classes is not None else 0
        out["fit"]["seconds"] = round(time.perf_counter() - t0, 3)
        fits_rows.append(out["fit"])
        if out["phi"] is None:
            continue
        values[name] = pd.DataFrame(out["phi"], index=rows, columns=region_index)
        ridge_values[name] = pd.DataFrame(out["phi_ridge"], index=rows, columns=region_index)
        expected[name] = out["expected"]
        ridge_expected[name] = out["expected_ridge"]
        models[name] = {"gbm": out["gbm"], "ridge": out["ridge"]}
        background_rows[name] = [int(r) for r in rows[out["background"]]]
        importances.append(_importance_table(name, out["phi"], out["phi_ridge"], region_index,
                                             region_names))

    fits = pd.DataFrame(fits_rows, columns=FIT_COLUMNS)
    importance = (pd.concat(importances, ignore_index=True) if importances
                  else pd.DataFrame(columns=IMPORTANCE_COLUMNS))

    pooled_by_class = _pooled_by_class(values.get(POOLED), classes, region_index, region_names)
    comparison = _compare_classes(importance, fits, [m for m in groups if m != POOLED], top_k)
    sar, sar_reason = _sar_top_regions(G, e, values.get(POOLED), importance, fits, region_index,
                                       region_names, params)
    statement = {name: _statement(fits.set_index("model").loc[name], importance, sar, sar_reason,
                                  min_r2, name == POOLED, one_class_reason)
                 for name in groups}
    return ShapResult(
        fits=fits, values=values, importance=importance, comparison=comparison, statement=statement,
        sar=sar, sar_reason=sar_reason, ridge_values=ridge_values, expected_values=expected,
        ridge_expected_values=ridge_expected, pooled_by_class=pooled_by_class, models=models,
        background_rows=background_rows, params=params,
    )


# --------------------------------------------------------------------------------------------------
# one model


def _fit_one(name, Gm, em, rows, gbm, ridge, params) -> dict:
    """CV, permutation null and SHAP values of one model (the pooled one or one class)."""
    n = len(em)
    fit = dict(model=name, n=n, cv_r2=np.nan, cv_mae=np.nan, cv_r2_ridge=np.nan, cv_mae_ridge=np.nan,
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
        p, n_run = _permutation_p(gbm, Gm, em, splits, fit["cv_r2"], params)
        if 1 / (params["n_permutations"] + 1) >= ALPHA_PERM:
            reasons.append(f"n_permutations = {params['n_permutations']} < 20 cannot give p < {ALPHA_PERM:g}")
        elif not p < ALPHA_PERM:
            reasons.append(f"permutation p = {p:.3f} >= {ALPHA_PERM:g}")
    fit.update(p_perm=p, n_permutations_run=n_run)
    fit["supported"] = not reasons
    fit["reason"] = "; ".join(reasons)

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


def _null_r2(gbm, Gm, em, splits, seed) -> float:
    perm = np.random.default_rng(seed).permutation(len(em))
    ep = em[perm]
    return float(r2_score(ep, cross_val_predict(gbm, Gm, ep, cv=splits)))


def _permutation_p(gbm, Gm, em, splits, observed, params) -> tuple[float, int]:
    """p of the observed CV R^2 under the null of shuffled ``e`` (same splits, same model).

    Full null: ``p = (#{null >= observed} + 1) / (B + 1)``.  With ``null_early_stop``: stop once the
    count reaches ``h``, the smallest count for which the full-null p cannot fall below 0.05, and
    return Besag & Clifford's sequential ``p = h / L`` (``L`` refits done).
    """
    B = params["n_permutations"]
    if B == 0 or not np.isfinite(observed):
        return float("nan"), 0
    h = math.ceil(ALPHA_PERM * (B + 1) - 1)  # count with (h + 1) / (B + 1) >= alpha
    h = max(h, 1)
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
                return h / done, done
    return (count + 1) / (B + 1), B


# --------------------------------------------------------------------------------------------------
# summaries


def _importance_table(name, phi, phi_ridge, region_index, region_names) -> pd.DataFrame:
    imp = np.abs(phi).mean(axis=0)
    imp_r = np.abs(phi_ridge).mean(axis=0)
    return pd.DataFrame({
        "model": name, "region_index": region_index, "region": region_names, "importance": imp,
        "rank": _rank(imp), "importance_ridge": imp_r, "rank_ridge": _rank(imp_r),
    })


def _rank(x) -> np.ndarray:
    """1 = largest; ties broken by column order (stable)."""
    order = np.argsort(-np.asarray(x), kind="stable")
    rank = np.empty(len(order), dtype=int)
    rank[order] = np.arange(1, len(order) + 1)
    return rank


def _pooled_by_class(vals, classes, region_index, region_names) -> pd.DataFrame:
    cols = ["class", "region_index", "region", "importance", "rank"]
    if vals is None or classes is None:
        return pd.DataFrame(columns=cols)
    labs = classes[vals.index.to_numpy()]
    frames = []
    for lab in sorted(pd.unique(labs[pd.notna(labs)]), key=lambda v: str(v)):
        imp = np.abs(vals.to_numpy()[labs == lab]).mean(axis=0)
        frames.append(pd.DataFrame({"class": str(lab), "region_index": region_index,
                                    "region": region_names, "importance": imp, "rank": _rank(imp)}))
    return pd.concat(frames, ignore_index=True)[cols]


def _compare_classes(importance, fits, class_models, top_k) -> pd.DataFrame:
    fitted = [m for m in class_models if m in set(importance["model"])]
    f = fits.set_index("model")
    rows = []
    for a, b in combinations(fitted, 2):
        ia = importance[importance["model"] == a].set_index("region_index")
        ib = importance[importance["model"] == b].set_index("region_index").loc[ia.index]
        k = min(int(top_k), len(ia))
        top_a = set(ia.index[ia["rank"].to_numpy() <= k])
        top_b = set(ib.index[ib["rank"].to_numpy() <= k])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant importances -> NaN, said by the value
            rho = spearmanr(ia["importance"].to_numpy(), ib["importance"].to_numpy()).statistic
        diff = ib["importance"].to_numpy() - ia["importance"].to_numpy()
        big = np.argsort(-np.abs(diff), kind="stable")[:3]
        changes = "; ".join(f"{ia['region'].iloc[i]} ({diff[i]:+.3g})" for i in big)
        rows.append(dict(
            class_a=a, class_b=b, n_a=int(f.loc[a, "n"]), n_b=int(f.loc[b, "n"]),
            spearman=float(rho), top_k=k, top_k_overlap=len(top_a & top_b) / k if k else np.nan,
            largest_changes=changes,
            both_supported=bool(f.loc[a, "supported"] and f.loc[b, "supported"]),
        ))
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def _sar_top_regions(G, e, pooled_values, importance, fits, region_index, region_names, params):
    """SAR of ``e ~ G[:, top-m regions of the pooled model]`` (METHOD.md section 7)."""
    if pooled_values is None:
        reason = fits.set_index("model").loc[POOLED, "reason"]
        return None, f"not run: the pooled surrogate was not fitted ({reason})"
    try:
        from latentbids.analysis.agnostic import sar
    except ImportError as exc:  # the module is written concurrently; never fail the SHAP step on it
        return None, f"not run: latentbids.analysis.agnostic.sar is not importable ({exc})"
    imp = importance[importance["model"] == POOLED].sort_values("rank")
    m = min(int(params["sar_top_m"]), len(imp))
    top = imp["region_index"].to_numpy()[:m]
    cols = [list(region_index).index(r) for r in top]
    rows = pooled_values.index.to_numpy()
    try:
        res = sar(G[np.ix_(rows, cols)], e[rows], eta=params["eta"], bound=params["bound"],
                  n_resamples=params["sar_resamples"], random_state=params["random_state"])
    except (LatentbidsError, ValueError, ArithmeticError) as exc:
        return None, f"not computed: {type(exc).__name__}: {exc}"
    res = dict(res)
    res.update(regions=[_py(r) for r in top], region_names=[str(region_names[c]) for c in cols], m=m,
               note="regions selected with e (the surrogate's top regions): optimistic on the same "
                    "subjects; the bound counts d = m features, not the selection among all regions")
    return res, ""


def _statement(fit, importance, sar, sar_reason, min_r2, pooled, one_class_reason) -> str:
    who = "the pooled surrogate" if pooled else f"the surrogate of class {fit.name}"
    extra = f" ({one_class_reason})" if pooled and one_class_reason else ""
    if not np.isfinite(fit["cv_r2"]):
        return (f"No SHAP claim is supported for {who}: {fit['reason']}{extra}.")
    null = (f"permutation p = {_fmt_p(fit['p_perm'])} after {int(fit['n_permutations_run'])} refits on "
            "shuffled errors" if int(fit["n_permutations_run"]) else "no permutation null run")
    nums = (f"CV R^2 = {fit['cv_r2']:.2f}, MAE {fit['cv_mae']:.3g} vs {fit['mae_mean_predictor']:.3g} "
            f"for the mean predictor; ridge baseline CV R^2 = {fit['cv_r2_ridge']:.2f}; {null}")
    sar_text = ""
    if pooled:
        if sar is not None and sar.get("significant") in (True, False) and not sar.get("reason"):
            verdict = "significant" if sar["significant"] else "not significant"
            sar_text = (f" SAR of the error on the top {sar['m']} regions is {verdict} (optimistic: the "
                        f"regions were chosen with the same errors).")
        elif sar is not None:
            sar_text = f" SAR validation not computed: {sar.get('reason') or 'no verdict'}."
        elif sar_reason:
            sar_text = f" SAR validation {sar_reason}."
    if not fit["supported"]:
        if fit["cv_r2"] > min_r2:
            # it fits, but its fit could not be shown to beat the null (or no null could be run)
            return (f"No SHAP claim is supported for {who}: its out-of-sample fit is not established "
                    f"against the permutation null ({fit['reason']}), so its SHAP values are not a "
                    f"finding{extra} ({nums}).{sar_text}")
        return (f"No SHAP claim is supported for {who}: it does not predict the reconstruction error "
                f"reliably out of sample ({fit['reason']}). Its SHAP values explain a model that does "
                f"not fit and are not a finding{extra} ({nums}).{sar_text}")
    imp = importance[importance["model"] == fit.name].sort_values("rank")
    top = ", ".join(imp["region"].astype(str).head(3))
    return (f"For {who} the reconstruction error is predicted out of sample ({nums}); the regions "
            f"with the largest mean |SHAP| are {top}{extra}.{sar_text}")


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
    region_index = [_py(r) for r in np.asarray(region_index).ravel()]
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
                  top_k, sar_top_m, n_jobs):
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
    ]
    for ok, msg in checks:
        if not ok:
            raise UsageError(msg)


def _label_of(classes, name):
    for lab in pd.unique(classes[pd.notna(classes)]):
        if str(lab) == name:
            return lab
    return name


def _py(v):
    """numpy scalar -> plain Python (ints stay ints) for tables and JSON."""
    return v.item() if isinstance(v, np.generic) else v


def _fmt_p(p) -> str:
    return "not computed" if not np.isfinite(p) else f"{p:.3g}"


def _versions() -> dict:
    import sklearn

    try:
        import shap

        shap_version = shap.__version__
    except ImportError:  # pragma: no cover - shap is a hard dependency of the group level
        shap_version = None
    return {"shap": shap_version, "scikit-learn": sklearn.__version__}
