"""Statistical agnostic tests: SAM, SAR, RUB and the full-latent-vector check (METHOD.md section 6).

The common idea: fit a simple linear model *in sample* (resubstitution), then subtract a
concentration-inequality bound ``Delta`` (:mod:`latentbids.analysis.bounds`) from its accuracy (or add it
to its loss).  What survives holds with probability ``1 - eta`` whatever the data distribution, so a
claim needs no held-out set, only enough subjects for the bound to be small.  The bound grows with the
number of features ``d``, which is the cautionary point of the method: single latent units and single
regions can pass at cohort sizes where the full latent vector (``d = K``) cannot.

Functions
---------
- :func:`single_feature_accuracy`: exact in-sample accuracy of the best one-feature threshold classifier
  (used by LRCP for every latent unit and region).
- :func:`feature_test`: that accuracy against ``Delta(n, d=1)``.
- :func:`sam_regions`: SAM, one row per atlas region (top voxels by t-test, 1 PLS component, linear SVM),
  with an optional permutation p that accounts for the label-driven voxel selection.
- :func:`sar`: SAR, statistical agnostic regression (linear SVR, epsilon-insensitive loss).
- :func:`rub`: RUB, resubstitution accuracy minus the PAC-Bayes dropout bound, plus a permutation p.
- :func:`latent_vector_test`: the linear classifier on the full latent vector, with ``d = K``, and RUB.

Conventions shared by every function
------------------------------------
- **Labels.** ``y`` holds exactly two distinct labels of any type (0/1, booleans, strings such as
  ``"CN"``/``"AD"``).  They are sorted and the first becomes class 0, the second class 1 (so 0/1 input
  keeps its meaning).  Missing labels (``None``/NaN) and subjects with a non-finite feature value are
  dropped before anything else; ``n`` in the results counts the subjects actually used.  More than two
  labels is a usage error (:class:`latentbids.errors.UsageError`): pass one contrast at a time.
- **Degenerate input is not an error.**  Fewer than 4 subjects, a single class, a constant feature or a
  constant target give NaN statistics, ``significant = False`` and a non-empty ``reason``; ``reason`` is
  ``""`` when the statistic was computed.  One weak contrast never stops a group run.
- **Chance level** [ours].  A classifier is declared significant when its worst-case accuracy
  ``acc* = acc - Delta`` exceeds ``chance``.  The default ``chance="majority"`` is the share of the
  larger class, which equals METHOD's 0.5 for balanced classes; with unbalanced classes a rule
  "acc* > 0.5" would pass a classifier that always answers the majority class (70/30 classes at n = 100:
  0.70 - 0.136 > 0.5 for pure noise).  Pass ``chance=0.5`` for the literal rule of the paper.
- **Determinism.**  Every random step (SVM coordinate descent, permutations, subsamples) is driven by
  ``random_state``.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps
from sklearn.cross_decomposition import PLSRegression
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC, LinearSVR

from latentbids.analysis import bounds
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
               chance=chance, significant=False, reason=reason)
    out.update(extra)
    return out


# --------------------------------------------------------------------------- single feature
def _best_threshold_accuracy(x: np.ndarray, y01: np.ndarray) -> float:
    """Exact ERM accuracy of ``1[x > t]`` or ``1[x <= t]`` over all thresholds ``t`` (O(n log n)).

    Candidate cuts lie between distinct sorted values (tied values always fall on the same side), plus
    "everything on one side", so the sweep is exact with ties.
    """
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y01[order]
    n = len(xs)
    n1 = int(ys.sum())
    ones_below = np.concatenate(([0], np.cumsum(ys)))
    cuts = np.concatenate(([0], np.flatnonzero(xs[1:] != xs[:-1]) + 1, [n]))
    c1 = ones_below[cuts]
    # "1 above the cut": zeros below + ones above. The other direction gets the complement.
    correct_up = (cuts - c1) + (n1 - c1)
    best = max(int(correct_up.max()), n - int(correct_up.min()))
    return best / n


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
    return _best_threshold_accuracy(X[:, 0], y01)


def feature_test(x, y, eta: float = 0.05, bound: str = "G", chance="majority") -> dict:
    """SAM-style test of one feature: ``acc* = acc - Delta(n, d=1)``, significant if ``acc* > chance``.

    Returns
    -------
    dict
        ``n``, ``d`` (= 1), ``accuracy`` (:func:`single_feature_accuracy`), ``delta``, ``acc_star``, ``chance``,
        ``significant`` (bool) and ``reason`` (``""`` when computed).
    """
    X, y01, _, reason = _prepare(np.asarray(x, dtype=float).ravel(), y)
    n = len(y01)
    level = _chance_level(y01, chance)
    if not reason and np.ptp(X[:, 0]) == 0:
        reason = "constant feature"
    if reason:
        return _classifier_nan(n, 1, level, reason)
    acc = _best_threshold_accuracy(X[:, 0], y01)
    dlt = bounds.delta(n, 1, eta, bound)
    return dict(n=n, d=1, accuracy=acc, delta=dlt, acc_star=acc - dlt, chance=level,
                significant=bool(acc - dlt > level), reason="")


# ------------------------------------------------------------------------------------------- SAM
_SAM_COLUMNS = ["region_index", "n_voxels", "n_selected", "accuracy", "delta", "acc_star", "chance",
                "significant", "z", "p_z", "p_perm", "p_fwer", "reason"]


def _abs_t(X: np.ndarray, y01: np.ndarray) -> np.ndarray:
    """|Student t| per column between the classes; NaN for columns constant within both classes."""
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        t, _ = sps.ttest_ind(X[y01 == 1], X[y01 == 0], axis=0)
    return np.abs(np.asarray(t, dtype=float))


def _sam_accuracies(X, y01, regions, top_voxels, random_state) -> np.ndarray:
    """SAM accuracy per region (NaN where ``regions[i]`` is empty); ``regions`` index columns of X."""
    score = _abs_t(X, y01)
    acc = np.full(len(regions), math.nan)
    for i, usable in enumerate(regions):
        if len(usable) == 0:
            continue
        ranked = usable[np.argsort(-np.nan_to_num(score[usable], nan=-1.0), kind="stable")]
        Xr = X[:, ranked[: int(top_voxels)]]
        pls = _fit_quietly(PLSRegression(n_components=1, scale=True), Xr, y01)
        s = pls.transform(Xr)
        svm = _fit_quietly(_linear_svm(random_state), s, y01)
        # == svm.score(s, y01) without scikit-learn's per-call validation (this runs B x regions times)
        acc[i] = float(np.mean((s @ svm.coef_.T + svm.intercept_ > 0).ravel() == (y01 == 1)))
    return acc


def sam_regions(X, labels, y, region_ids, top_voxels: int = 50, eta: float = 0.05, bound: str = "G",
                n_permutations: int = 0, random_state: int = 0, chance="majority") -> pd.DataFrame:
    """SAM per atlas region: top voxels by t-test, one PLS component, linear SVM, ``acc - Delta(n, 1)``.

    For each region: the region's voxels are ranked by the absolute two-sample t statistic between the
    classes (Student's t, ``scipy.stats.ttest_ind``) and the ``top_voxels`` best kept (all of them when
    the region has fewer: ``n_selected`` says how many; voxels constant over all subjects are never
    used); ``PLSRegression(n_components=1)`` reduces them to one score, a linear SVM (``LinearSVC``,
    C = 1) classifies that score and its in-sample accuracy minus ``Delta(n, d=1)`` is the worst-case
    accuracy ``acc_star``; ``significant`` is ``acc_star > chance`` (the group's rule).  Across regions,
    ``z`` is the z-score of ``acc_star`` (population sd over the regions with a value) and ``p_z`` its
    one-sided normal p, as in the group's code: it ranks regions against each other, nothing more.

    Caveat (honest, and large): the voxels and the PLS direction are chosen with the labels, which
    inflates the in-sample accuracy far beyond what one pre-specified feature reaches; SAM states its
    bound for ``d = 1`` after this selection, as in the group's method.  On pure noise with independent
    voxels (n = 100, 50 of 80 voxels kept) the accuracy is 0.75-0.9, so ``significant`` is then True for
    every region; with spatially smooth (correlated) voxels, as in real GM maps, the inflation is much
    smaller but not zero.  ``p_perm`` is the honest check [ours]: the whole procedure (t-test, selection,
    PLS, SVM) is rerun on ``n_permutations`` label permutations and
    ``p_perm = (#{perm accuracy >= observed} + 1) / (B + 1)``; it is NaN when ``n_permutations = 0``
    (the default, because it costs B times the run).  Read ``significant`` together with ``p_perm``;
    ``p_fwer`` is the same permutations' max-statistic p over all regions (family-wise error), the one
    to use when asking "which regions".

    Parameters
    ----------
    X : array (N, V)
        Voxel GM values of N subjects.
    labels : array (V,)
        Atlas label of each voxel.
    y : array (N,)
        Two labels of any type.
    region_ids : iterable
        Region labels to test, in output order.
    top_voxels, eta, bound
        Voxels kept per region; the bound's confidence and name (see :mod:`bounds`).
    n_permutations, random_state
        Label permutations for ``p_perm`` (0: skip) and the seed of the permutations and the SVM.

    Returns
    -------
    DataFrame
        One row per region: region_index, n_voxels, n_selected, accuracy, delta, acc_star, chance,
        significant, z, p_z, p_perm, p_fwer, reason.
    """
    X = _as_2d(X)
    labels = np.asarray(labels).ravel()
    if labels.shape[0] != X.shape[1]:
        raise UsageError(f"labels has {labels.shape[0]} entries but X has {X.shape[1]} voxels: "
                         "pass one atlas label per voxel column")
    if int(top_voxels) < 1:
        raise UsageError(f"top_voxels must be at least 1 (got {top_voxels})")
    region_ids = list(region_ids)
    X, y01, _, reason = _prepare(X, y)
    n = len(y01)
    level = _chance_level(y01, chance)
    members = [np.flatnonzero(labels == r) for r in region_ids]
    df = pd.DataFrame({
        "region_index": region_ids,
        "n_voxels": [len(m) for m in members],
        "n_selected": 0,
        "accuracy": math.nan, "delta": math.nan, "acc_star": math.nan, "chance": level,
        "significant": False, "z": math.nan, "p_z": math.nan, "p_perm": math.nan, "p_fwer": math.nan,
        "reason": reason,
    }, columns=_SAM_COLUMNS)
    if reason:
        return _sam_dtypes(df)
    varying = np.ptp(X, axis=0) > 0
    usable = [m[varying[m]] for m in members]
    df["reason"] = ["no voxels in the region" if len(m) == 0 else
                    "all voxels of the region are constant" if len(u) == 0 else ""
                    for m, u in zip(members, usable)]
    # Only the voxels of the requested regions enter the t-tests (permutations re-run them).
    cols = np.unique(np.concatenate(usable)) if any(len(u) for u in usable) else np.array([], dtype=int)
    Xc = X if len(cols) == X.shape[1] else X[:, cols]
    local = [np.searchsorted(cols, u) for u in usable]
    acc = _sam_accuracies(Xc, y01, local, top_voxels, random_state)
    dlt = bounds.delta(n, 1, eta, bound)
    ok = np.isfinite(acc)
    df["n_selected"] = [min(len(u), int(top_voxels)) for u in usable]
    df["accuracy"] = acc
    df.loc[ok, "delta"] = dlt
    df["acc_star"] = acc - np.where(ok, dlt, math.nan)
    df["significant"] = np.asarray(df["acc_star"] > level, dtype=bool)
    a = df["acc_star"].to_numpy(dtype=float)
    if ok.sum() >= 2 and np.std(a[ok]) > 0:
        z = np.full(len(df), math.nan)
        z[ok] = (a[ok] - a[ok].mean()) / a[ok].std()
        df["z"] = z
        df["p_z"] = sps.norm.sf(z)
    if int(n_permutations) > 0 and ok.any():
        rng = np.random.default_rng(random_state)
        hits = np.zeros(len(df))
        hits_max = np.zeros(len(df))
        for _ in range(int(n_permutations)):
            perm = _sam_accuracies(Xc, rng.permutation(y01), local, top_voxels, random_state)
            hits += perm >= acc - 1e-12
            # max statistic over regions: family-wise control for "which regions", at no extra cost
            hits_max += np.nanmax(np.where(ok, perm, -np.inf)) >= acc - 1e-12
        df["p_perm"] = np.where(ok, (hits + 1) / (int(n_permutations) + 1), math.nan)
        df["p_fwer"] = np.where(ok, (hits_max + 1) / (int(n_permutations) + 1), math.nan)
    return _sam_dtypes(df)


def _sam_dtypes(df: pd.DataFrame) -> pd.DataFrame:
    for col in ("accuracy", "delta", "acc_star", "chance", "z", "p_z", "p_perm", "p_fwer"):
        df[col] = df[col].astype(float)
    df["n_voxels"] = df["n_voxels"].astype(int)
    df["n_selected"] = df["n_selected"].astype(int)
    df["significant"] = df["significant"].astype(bool)
    df["reason"] = df["reason"].astype(str)
    return df


# ------------------------------------------------------------------------------------------- SAR
def _bound_p_value(gap: float, n: int, d: int, bound: str) -> float:
    """Smallest ``eta`` at which ``L_emp + Delta(n, d, eta) < gamma`` holds (the bound inverted).

    ``gap = gamma - L_emp``.  For G/GZ, ``Delta^2 = (ln C - ln eta) / (2n)`` gives
    ``eta = C exp(-2 n gap^2)``; for VC, ``n Delta^2 = h (ln(2n/h) + 1) - ln(eta/4)`` gives
    ``eta = 4 exp(h (ln(2n/h) + 1) - n gap^2)``.  Capped at 1; 1 when ``gap <= 0``.
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
        h = d + 1
        log_p = math.log(4.0) + h * (math.log(2 * n / h) + 1) - n * gap ** 2
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
                significant=bool(l_emp + dlt < gamma), p=_bound_p_value(gamma - l_emp, n, d, bound))


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
    significant.  ``p`` is the mean over subsets of the *inverted bound*: the smallest ``eta`` at which
    that subset would be significant (``C(n, d) exp(-2 n (gamma - l_emp)^2)`` for the G bound, 1 when
    ``l_emp >= gamma``).  ``p_full`` is the same on all subjects, so ``significant`` equals
    ``p_full < eta``.  (The group's ``sarlib`` reports ``1 - power`` as its p and averages the loss over
    the subjects outside the tube only; we do neither.)  ``d`` counts every column of ``X``, constant ones
    included (conservative).

    Returns
    -------
    dict
        ``n``, ``d``, ``epsilon``, ``l_emp``, ``delta``, ``gamma``, ``significant``, ``p_full``,
        ``power``, ``p``, ``n_subsample``, ``n_resamples`` (subsets that gave a value), ``reason``.
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
               significant=False, p_full=math.nan, power=math.nan, p=math.nan, n_subsample=n_sub,
               n_resamples=0, reason="")
    if n < MIN_SUBJECTS:
        out["reason"] = f"too few subjects (n={n} < {MIN_SUBJECTS})"
        return out
    full = _sar_once(X, y, eta, bound, random_state)
    if full["reason"]:
        out["reason"] = full["reason"]
        return out
    out.update(epsilon=full["epsilon"], l_emp=full["l_emp"], delta=full["delta"], gamma=full["gamma"],
               significant=full["significant"], p_full=full["p"])
    if n_sub < 3 or int(n_resamples) < 1:
        return out
    rng = np.random.default_rng(random_state)
    sig, ps = [], []
    for _ in range(int(n_resamples)):
        ids = rng.choice(n, size=n_sub, replace=False)
        res = _sar_once(X[ids], y[ids], eta, bound, random_state)
        if not res["reason"]:
            sig.append(res["significant"])
            ps.append(res["p"])
    if sig:
        out.update(power=float(np.mean(sig)), p=float(np.mean(ps)), n_resamples=len(sig))
    return out


# ------------------------------------------------------------------------------------------- RUB
def _rub_from_fit(Xs, y01, svm, accuracy, eta, dropout, n_permutations, random_state, level) -> dict:
    n, d = Xs.shape
    theta = np.concatenate([np.ravel(svm.coef_), np.ravel(svm.intercept_)])
    loss = 1.0 - accuracy
    dlt = bounds.delta_pac_bayes(loss, theta, n, eta, dropout=dropout)
    p_perm = math.nan
    if int(n_permutations) > 0:
        rng = np.random.default_rng(random_state)
        hits = 0
        for _ in range(int(n_permutations)):
            yp = rng.permutation(y01)
            perm = _fit_quietly(_linear_svm(random_state), Xs, yp)
            hits += (1.0 - perm.score(Xs, yp)) <= loss
        p_perm = (hits + 1) / (int(n_permutations) + 1)
    return dict(n=int(n), d=int(d), accuracy=accuracy, delta=dlt, acc_star=accuracy - dlt, chance=level,
                significant=bool(accuracy - dlt > level), p_perm=p_perm, reason="")


def rub(X, y, eta: float = 0.05, dropout: float = 0.95, n_permutations: int = 1000, random_state: int = 0,
        chance="majority") -> dict:
    """RUB: resubstitution accuracy of a linear SVM minus the PAC-Bayes dropout bound.

    ``X`` is standardised, a linear SVM (``LinearSVC``, C = 1) is fitted and scored on the same subjects;
    ``Delta_PB = bounds.delta_pac_bayes(1 - accuracy, theta, n, eta, dropout)`` with ``theta`` the weights
    and the intercept.  ``acc_star = accuracy - Delta_PB``; significant if ``acc_star > chance``.
    ``p_perm`` refits on ``n_permutations`` label permutations: ``(#{perm loss <= observed} + 1) / (B + 1)``
    (NaN when ``n_permutations = 0``).  With many features and few subjects the bound alone can pass an
    over-fitted classifier; read it with ``p_perm``.

    Returns
    -------
    dict
        ``n``, ``d``, ``accuracy``, ``delta``, ``acc_star``, ``chance``, ``significant``, ``p_perm``,
        ``reason``.
    """
    X, y01, _, reason = _prepare(X, y)
    level = _chance_level(y01, chance)
    if not reason and np.all(np.ptp(X, axis=0) == 0):
        reason = "all features constant"
    if reason:
        return _classifier_nan(len(y01), X.shape[1], level, reason, p_perm=math.nan)
    Xs = _standardize(X)
    svm = _fit_quietly(_linear_svm(random_state), Xs, y01)
    return _rub_from_fit(Xs, y01, svm, float(svm.score(Xs, y01)), eta, dropout, n_permutations,
                         random_state, level)


def latent_vector_test(Z, y, eta: float = 0.05, bound: str = "G", n_permutations: int = 1000,
                       random_state: int = 0, dropout: float = 0.95, chance="majority") -> dict:
    """The linear classifier on the full latent vector, judged with ``d = K`` (the cautionary check).

    A linear SVM (``LinearSVC``, C = 1) on the standardised ``Z`` (N x K) reaches a high in-sample
    accuracy even on noise when K is not small against N; its bound ``Delta(n, K)`` is correspondingly
    large (0.37-0.56 for K = 32..128 at n ~ 400), so the multivariate latent classifier usually cannot be
    declared significant while single units can.  The same fit is also judged by RUB.

    Returns
    -------
    dict
        ``n``, ``d`` (= K), ``accuracy``, ``delta`` (= Delta(n, K)), ``acc_star``, ``chance``,
        ``significant``, ``reason`` and ``rub`` (the :func:`rub` dict of the same fit).
    """
    Z, y01, _, reason = _prepare(Z, y)
    n, k = Z.shape
    level = _chance_level(y01, chance)
    if not reason and np.all(np.ptp(Z, axis=0) == 0):
        reason = "all features constant"
    if reason:
        nan_rub = _classifier_nan(n, k, level, reason, p_perm=math.nan)
        return _classifier_nan(n, k, level, reason, rub=nan_rub)
    Zs = _standardize(Z)
    svm = _fit_quietly(_linear_svm(random_state), Zs, y01)
    acc = float(svm.score(Zs, y01))
    dlt = bounds.delta(n, k, eta, bound)
    rub_result = _rub_from_fit(Zs, y01, svm, acc, eta, dropout, n_permutations, random_state, level)
    return dict(n=int(n), d=int(k), accuracy=acc, delta=dlt, acc_star=acc - dlt, chance=level,
                significant=bool(acc - dlt > level), reason="", rub=rub_result)
