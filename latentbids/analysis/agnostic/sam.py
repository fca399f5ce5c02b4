"""SAM per atlas region (METHOD.md section 6): top voxels by t-test, one PLS component, a linear SVM,
and the permutation of that whole pipeline that keeps its label-driven selection honest."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from latentbids.analysis import bounds
from latentbids.analysis.agnostic.common import _as_2d, _chance_level, _prepare
from latentbids.errors import UsageError

_SAM_COLUMNS = ["region_index", "n_voxels", "n_selected", "accuracy", "delta", "acc_star", "chance",
                "passes_bound", "p_perm", "p_fwer", "supported", "reason"]


class _Voxels:
    """The voxel matrix prepared once for the t-tests and the PLS of every permutation.

    Centred columns (float32, as the data come) and each voxel's standard deviation (ddof = 1): the
    permutations change only the labels, so everything that depends on ``X`` alone is computed here.
    """

    def __init__(self, X: np.ndarray):
        self.n = X.shape[0]
        self.Xc = (X - X.mean(axis=0, dtype=np.float64)).astype(np.float32)
        self.sq = self.Xc.astype(np.float64) ** 2
        self.ss = self.sq.sum(axis=0)
        with np.errstate(invalid="ignore"):
            self.sd = np.sqrt(self.ss / max(self.n - 1, 1))

    def abs_t(self, y01: np.ndarray) -> np.ndarray:
        """|Student t| (equal variances, as ``scipy.stats.ttest_ind``) of every voxel between the classes."""
        y = y01.astype(np.float64)
        n1 = y.sum()
        n0 = self.n - n1
        s1 = y @ self.Xc
        q1 = y @ self.sq
        m1, m0 = s1 / n1, -s1 / n0  # the columns are centred: the class-0 sum is -s1
        ss1 = q1 - n1 * m1 ** 2
        ss0 = (self.ss - q1) - n0 * m0 ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            pooled = (ss1 + ss0) / (self.n - 2)
            t = (m1 - m0) / np.sqrt(pooled * (1.0 / n1 + 1.0 / n0))
        return np.abs(t)


def _pls1_scores(Xs: np.ndarray, y01: np.ndarray) -> np.ndarray:
    """Scores of the first PLS component of standardised ``Xs`` on ``y`` (``PLSRegression(1, scale=True)``).

    With one target the first x-weight is ``Xs^T y`` normalised (NIPALS converges in one step) and the
    rotation equals the weight, so the score is ``Xs @ w`` (up to the sign, which no classifier sees).
    """
    yc = y01 - y01.mean()
    w = Xs.T @ yc
    norm = np.linalg.norm(w)
    return Xs @ (w / norm) if norm > 0 else np.zeros(len(y01))


def _svm_1d_accuracy(s: np.ndarray, y01: np.ndarray, C: float = 1.0) -> float:
    """In-sample accuracy of scikit-learn's ``LinearSVC(C)`` on one feature, solved exactly.

    The same objective as liblinear's L2-regularised squared-hinge SVM with a penalised intercept
    (``intercept_scaling = 1``): ``0.5 (w^2 + b^2) + C sum max(0, 1 - y_i (w s_i + b))^2``, minimised by a
    damped Newton method (two parameters), which is exact and ~50x faster than a solver call per region
    and permutation.
    """
    yy = np.where(y01 == 1, 1.0, -1.0)
    design = np.column_stack([s, np.ones_like(s)])
    theta = np.zeros(2)

    def objective(th):
        m = np.maximum(0.0, 1.0 - yy * (design @ th))
        return 0.5 * th @ th + C * m @ m

    f = objective(theta)
    for _ in range(50):
        margin = 1.0 - yy * (design @ theta)
        active = margin > 0
        Da = design[active]
        grad = theta - 2.0 * C * (margin[active] * yy[active]) @ Da
        if np.abs(grad).max() < 1e-10:
            break
        hess = np.eye(2) + 2.0 * C * Da.T @ Da
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-8:
            new = objective(theta - t * step)
            if new <= f:
                break
            t /= 2
        theta, f = theta - t * step, new
    return float(np.mean((design @ theta > 0) == (y01 == 1)))


def _sam_accuracies(vox: _Voxels, y01, regions, top_voxels) -> np.ndarray:
    """SAM accuracy per region (NaN where ``regions[i]`` is empty); ``regions`` index columns of X."""
    score = vox.abs_t(y01)
    y = y01.astype(np.float64)
    acc = np.full(len(regions), math.nan)
    for i, usable in enumerate(regions):
        if len(usable) == 0:
            continue
        ranked = usable[np.argsort(-np.nan_to_num(score[usable], nan=-1.0), kind="stable")][: int(top_voxels)]
        Xs = vox.Xc[:, ranked].astype(np.float64) / vox.sd[ranked]
        acc[i] = _svm_1d_accuracy(_pls1_scores(Xs, y), y01)
    return acc


def sam_regions(X, labels, y, region_ids, top_voxels: int = 50, eta: float = 0.05, bound: str = "G",
                n_permutations: int = 100, random_state: int = 0, chance="majority") -> pd.DataFrame:
    """SAM per atlas region: top voxels by t-test, one PLS component, linear SVM, ``acc - Delta(n, 1)``.

    For each region: the region's voxels are ranked by the absolute two-sample t statistic between the
    classes (Student's t, ``scipy.stats.ttest_ind``) and the ``top_voxels`` best kept (all of them when
    the region has fewer: ``n_selected`` says how many; voxels constant over all subjects are never
    used); the first PLS component (``PLSRegression(n_components=1, scale=True)``, computed in closed
    form) reduces them to one score, a linear SVM (``LinearSVC``'s objective, C = 1, solved exactly in
    two parameters) classifies that score and its in-sample accuracy minus ``Delta(n, d=1)`` is the worst-case
    accuracy ``acc_star``; ``passes_bound`` is ``acc_star > chance`` (the group's rule).

    Why the bound alone is not a verdict: the voxels and the PLS direction are chosen with the labels,
    which inflates the in-sample accuracy far beyond what one pre-specified feature reaches, while the
    bound is stated for ``d = 1`` after this selection.  On pure noise the bound alone passes nearly
    every region.  So the whole procedure (t-test, selection, PLS, SVM) is rerun on ``n_permutations``
    label permutations: ``p_perm = (#{perm accuracy >= observed} + 1) / (B + 1)`` is the region's own p
    and ``p_fwer`` the max-statistic p over all regions (family-wise error).  A region is ``supported``
    only when the bound passes *and* ``p_fwer <= eta``; without permutations nothing is supported.
    (The group's z-test of acc* across regions always flags the top few regions: it is not a p-value
    and is not computed here.)

    Parameters
    ----------
    X : ndarray of shape (n_subjects, n_voxels)
        Voxel GM values.
    labels : ndarray of shape (n_voxels,)
        Atlas label of each voxel.
    y : ndarray of shape (n_subjects,)
        Two labels of any type.
    region_ids : iterable of length n_regions
        Region labels to test, in output order.
    top_voxels, eta, bound
        Voxels kept per region; the family-wise level and the bound's name (see :mod:`bounds`).
    n_permutations, random_state
        Label permutations of the whole pipeline (0: skip, and nothing is supported) and the seed of
        the permutations and the SVM.
    chance : "majority" or float, default="majority"
        Level ``acc_star`` must exceed: the larger class's share, or a number in [0, 1).

    Returns
    -------
    pandas.DataFrame of shape (n_regions, 12)
        One row per region: region_index, n_voxels, n_selected, accuracy, delta, acc_star, chance,
        passes_bound, p_perm, p_fwer, supported, reason.
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
        "passes_bound": False, "p_perm": math.nan, "p_fwer": math.nan, "supported": False,
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
    vox = _Voxels(Xc)
    acc = _sam_accuracies(vox, y01, local, top_voxels)
    dlt = bounds.delta(n, 1, eta, bound)
    ok = np.isfinite(acc)
    df["n_selected"] = [min(len(u), int(top_voxels)) for u in usable]
    df["accuracy"] = acc
    df.loc[ok, "delta"] = dlt
    df["acc_star"] = acc - np.where(ok, dlt, math.nan)
    df["passes_bound"] = np.asarray(df["acc_star"] > level, dtype=bool)
    if int(n_permutations) > 0 and ok.any():
        rng = np.random.default_rng(random_state)
        hits = np.zeros(len(df))
        hits_max = np.zeros(len(df))
        for _ in range(int(n_permutations)):
            perm = _sam_accuracies(vox, rng.permutation(y01), local, top_voxels)
            hits += perm >= acc - 1e-12
            # max statistic over regions: family-wise control for "which regions", at no extra cost
            hits_max += np.nanmax(np.where(ok, perm, -np.inf)) >= acc - 1e-12
        df["p_perm"] = np.where(ok, (hits + 1) / (int(n_permutations) + 1), math.nan)
        df["p_fwer"] = np.where(ok, (hits_max + 1) / (int(n_permutations) + 1), math.nan)
    # the bound alone passes nearly every noise region after label-driven selection: a region counts
    # only when the family-wise permutation p of the whole pipeline agrees
    df["supported"] = df["passes_bound"] & (df["p_fwer"].fillna(1.0) <= float(eta) + 1e-12)
    return _sam_dtypes(df)


def _sam_dtypes(df: pd.DataFrame) -> pd.DataFrame:
    for col in ("accuracy", "delta", "acc_star", "chance", "p_perm", "p_fwer"):
        df[col] = df[col].astype(float)
    df["n_voxels"] = df["n_voxels"].astype(int)
    df["n_selected"] = df["n_selected"].astype(int)
    df["passes_bound"] = df["passes_bound"].astype(bool)
    df["supported"] = df["supported"].astype(bool)
    df["reason"] = df["reason"].astype(str)
    return df


def sam_claims(sam: pd.DataFrame, contrast: str, n_permutations: int) -> list:
    """One SAM claim per region: the bound *and* the family-wise permutation p must agree.

    The verdicts were made by :func:`sam_regions`; this records them as ``sam`` claims.

    Parameters
    ----------
    sam : pandas.DataFrame
        :func:`sam_regions`'s table, optionally with a ``region`` name column (else ``region_index``
        names the item).
    contrast : str
        The contrast's name, ``"A vs B"``.
    n_permutations : int
        Permutations SAM ran (quoted in the ``correction``).

    Returns
    -------
    list of Claim
        One per row: ``statistic`` = in-sample accuracy in [0, 1], ``p`` = ``p_fwer`` (NaN without
        permutations), ``bound`` = ``acc_star``, ``note`` = the row's reason.
    """
    from latentbids.analysis.claims import SAM, Claim

    J = int(np.isfinite(sam["accuracy"].to_numpy(float)).sum())
    correction = (f"bound Delta(n, 1) and the max-statistic permutation p of the whole select-PLS-SVM pipeline "
                  f"over {J} regions ({n_permutations} permutations)")
    name = sam["region"] if "region" in sam else sam["region_index"]
    return [Claim(contrast=contrast, family=SAM, item=str(item), statistic_name="SAM in-sample accuracy",
                  statistic=float(row.accuracy), p=float(row.p_fwer), bound=float(row.acc_star),
                  correction=correction, supported=bool(row.supported), note=str(row.reason or ""))
            for item, row in zip(name, sam.itertuples())]
