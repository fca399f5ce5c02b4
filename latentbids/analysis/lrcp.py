"""Latent-Regional Correlation Profiling (LRCP, METHOD.md section 5).

LRCP asks which atlas regions the latent space "talks about" *and* which of them separate the two classes
of a contrast.  It combines three parts:

A. Association: the correlation ``r_jk`` of every region's mean GM (``G_j``) with every latent unit
   (``Z_k``), corrected over all ``J x K`` tests (Benjamini-Hochberg FDR, Bonferroni, or a max-statistic
   permutation null that shuffles the subject order of ``Z``), plus ``A_j``, the cross-validated R^2 of
   predicting ``G_j`` from all latent units.
B. Discriminability: for every latent unit and every region, the in-sample accuracy of the best
   one-feature threshold classifier minus the concentration bound ``Delta(n, d=1, eta)`` of METHOD.md
   section 6, i.e. the worst-case accuracy ``acc*``.  A unit (region) is clinically relevant if
   ``acc* > 0.5``.  AUC, Cohen's d and a cross-validated logistic-regression accuracy are reported beside.
C. Profile and score: ``r~_jk = r_jk`` where significant, else 0; unit weights ``w_k = max(0, acc*_k -
   0.5)`` normalised to sum 1 (when no unit passes the bound, ``w_k`` is proportional to ``|AUC_k - 0.5|``
   and the summary says so); region score ``S_j = sum_k |r~_jk| w_k``.  Region ``j`` is LRCP-positive if
   ``S_j > 0`` *and* ``acc*_j > 0.5``.  The ranking lists LRCP-positive regions first (by ``S_j``), then the
   others (by ``S_j``).

Why the combined criterion: on simulated cohorts the score alone ranks noise regions that correlate with
a weakly weighted unit, while the worst-case accuracy alone ignores whether the latent space encodes the
region at all.  "No latent unit is clinically relevant at this sample size" is itself a result, and
``summary_["statement"]`` says it in words.

The caller maps the contrast's two labels to 0/1 and, if wanted, residualises confounds first with
:func:`latentbids.analysis.stats.residualize`.  Everything is vectorised: J = 116, K = 32, N = 1000 fits
in a fraction of a second without permutations.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats as _sps
from scipy.special import expit
from sklearn.base import BaseEstimator

from latentbids.analysis import bounds, stats
from latentbids.errors import UsageError

CORRECTIONS = ("fdr_bh", "bonferroni", "permutation")

#: Ridge penalties searched (by efficient leave-one-out) when regressing each region on the latents.
RIDGE_ALPHAS = np.logspace(-3, 3, 13)


# --------------------------------------------------------------------------------------------------
# Per-feature discriminability helpers


def _single_feature_accuracies(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """In-sample accuracy of the best threshold (either direction) of every column of ``X``."""
    from latentbids.analysis.agnostic import single_feature_accuracy

    return np.array([single_feature_accuracy(X[:, c], y) for c in range(X.shape[1])], dtype=float)


def _cv_logistic_accuracy(X: np.ndarray, y: np.ndarray, cv: int, random_state: int, C: float = 1.0):
    """Cross-validated accuracy of a one-feature logistic regression, for every column of ``X`` at once.

    The model is scikit-learn's default ``LogisticRegression(C=1.0)`` (L2 penalty on the slope, free
    intercept) fitted by a column-vectorised Newton method, so 150 columns x 5 folds cost a handful of
    matrix operations instead of 750 solver calls.  Folds come from ``StratifiedKFold(shuffle=True,
    random_state)``; the accuracy is the share of correct held-out predictions pooled over folds.
    Returns ``(accuracy per column, n_splits used, reason or None)``.
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


def _discriminability(X: np.ndarray, y: np.ndarray, eta: float, bound: str, cv: int, random_state: int):
    """Accuracy, Delta, acc*, AUC, Cohen's d and CV accuracy of every column; plus reasons for NaN."""
    n = len(y)
    P = X.shape[1]
    n1 = int(np.sum(y == 1))
    n0 = n - n1
    reasons = []
    if min(n0, n1) < 2:
        reasons.append(f"discriminability needs at least 2 subjects per class (got {n0} and {n1})")
        nan = np.full(P, np.nan)
        return dict(accuracy=nan, delta=nan.copy(), acc_star=nan.copy(), auc=nan.copy(),
                    cohens_d=nan.copy(), cv_accuracy=nan.copy()), float("nan"), reasons
    delta = bounds.delta(n, 1, eta, bound)
    acc = _single_feature_accuracies(X, y)
    cv_acc, _, reason = _cv_logistic_accuracy(X, y, cv, random_state)
    if reason:
        reasons.append(reason)
    out = dict(
        accuracy=acc,
        delta=np.full(P, delta),
        acc_star=acc - delta,
        auc=stats.auc_columns(X, y),
        cohens_d=stats.cohens_d_columns(X, y),
        cv_accuracy=cv_acc,
    )
    return out, delta, reasons


def _cv_r2(Z: np.ndarray, G: np.ndarray, cv: int, random_state: int):
    """Cross-validated R^2 of each column of ``G`` regressed on all of ``Z`` (A_j of METHOD.md).

    One multi-output ``RidgeCV`` (penalty chosen per region by efficient leave-one-out inside each
    training fold) under ``KFold(shuffle=True, random_state)``; predictions pooled with
    ``cross_val_predict`` and scored with ``r2_score`` per region.  Constant regions are NaN.
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


def _rank(positive: np.ndarray, score: np.ndarray, region_index: np.ndarray) -> np.ndarray:
    """Ranks (1 = top): positive first by score descending, then the rest; ties by region_index."""
    s = np.where(np.isfinite(score), score, -np.inf)
    order = np.lexsort((region_index, -s, ~positive.astype(bool)))
    rank = np.empty(len(order), dtype=int)
    rank[order] = np.arange(1, len(order) + 1)
    return rank


def _names(values, n: int, default) -> list:
    if values is None:
        return [default(i) for i in range(n)]
    values = list(values)
    if len(values) != n:
        raise UsageError(f"expected {n} names but got {len(values)}: pass one name per column")
    return values


class LRCP(BaseEstimator):
    """Latent-Regional Correlation Profiling of one binary contrast (METHOD.md section 5).

    Parameters
    ----------
    correlation : {"pearson", "spearman"}
        Correlation of regional GM with latent units (Spearman = Pearson on ranks).
    correction : {"fdr_bh", "bonferroni", "permutation"}
        Control over all ``J x K`` tests; ``"permutation"`` is the max-statistic null with the subject
        order of ``Z`` shuffled (family-wise error).
    alpha : float
        A region-unit pair is significant when its adjusted p-value is below ``alpha``.
    eta : float
        The bounds hold with probability ``1 - eta``.
    bound : {"G", "GZ", "VC"}
        The concentration bound used for the worst-case accuracies (d = 1).
    n_permutations : int
        Permutations for ``correction="permutation"``.
    region_correction : {"none", "bonferroni"}
        ``"none"`` (METHOD.md): each region's worst-case accuracy uses ``eta`` on its own, so about
        ``eta * J`` regions pass by chance; ``"bonferroni"`` uses ``eta / J`` (family-wise control over
        the regions, at the price of power).
    cv : int
        Folds for ``A_j`` (KFold) and for the cross-validated accuracies (StratifiedKFold); reduced
        to what the data allow.
    random_state : int
        Seed of the folds and of the permutations.

    Attributes (after ``fit``; all DataFrames except ``summary_``)
    ----------
    association_ : one row per (region, unit): region_index, region, unit, r, p, p_adj, significant,
        r_tilde (r where significant, else 0: the profile).
    units_ : unit, accuracy, delta, acc_star, relevant, auc, cohens_d, cv_accuracy, weight,
        relevant_fwer (the unit passes at eta / K: Bonferroni over the units).
    regions_ : region_index, region, score, a_r2, accuracy, delta, acc_star, auc, cohens_d,
        lrcp_positive, rank, cv_accuracy, lrcp_positive_fwer (the region test at eta / J); sorted by
        rank (1 = top).  METHOD's rule (``relevant``, ``lrcp_positive``) tests each unit and region at
        eta on its own: about eta*K units and eta*J regions pass by chance.  The ``_fwer`` columns are
        the family-wise reading, reported beside it.
    summary_ : dict n, n_per_class, K, J, delta, weights_rule ("bound" | "auc_fallback"),
        n_units_relevant, n_regions_positive, statement, plus correlation, correction, alpha, eta,
        bound, n_significant, best_unit_acc_star, positive_regions, reasons.
    """

    def __init__(
        self,
        correlation: str = "pearson",
        correction: str = "fdr_bh",
        alpha: float = 0.05,
        eta: float = 0.05,
        bound: str = "G",
        n_permutations: int = 1000,
        cv: int = 5,
        random_state: int = 0,
        region_correction: str = "none",
    ):
        self.region_correction = region_correction
        self.correlation = correlation
        self.correction = correction
        self.alpha = alpha
        self.eta = eta
        self.bound = bound
        self.n_permutations = n_permutations
        self.cv = cv
        self.random_state = random_state

    # ----------------------------------------------------------------------------------------------
    def _validate(self, Z, G, y):
        correction = str(self.correction).lower()
        if correction not in CORRECTIONS:
            raise UsageError(f"unknown correction '{self.correction}': use one of {', '.join(CORRECTIONS)}")
        correlation = str(self.correlation).lower()
        if correlation not in stats.CORRELATIONS:
            raise UsageError(
                f"unknown correlation '{self.correlation}': use one of {', '.join(stats.CORRELATIONS)}"
            )
        if not 0.0 < float(self.alpha) < 1.0:
            raise UsageError(f"alpha must lie in (0, 1) (got {self.alpha})")
        if int(self.cv) < 2:
            raise UsageError(f"cv must be at least 2 folds (got {self.cv})")
        Z = np.asarray(Z, dtype=float)
        G = np.asarray(G, dtype=float)
        if Z.ndim == 1:
            Z = Z[:, None]
        if G.ndim == 1:
            G = G[:, None]
        if Z.ndim != 2 or G.ndim != 2:
            raise UsageError("Z and G must be 2-D arrays (subjects x latent units, subjects x regions)")
        y = np.asarray(y)
        if y.ndim != 1 or not (len(y) == Z.shape[0] == G.shape[0]):
            raise UsageError(
                f"Z ({Z.shape[0]} rows), G ({G.shape[0]} rows) and y ({y.size} labels) must have one row "
                "per subject"
            )
        if not np.all(np.isin(y, (0, 1))):
            raise UsageError("y must hold 0/1 class labels: map the contrast's two labels to 0 and 1 first")
        if not (np.all(np.isfinite(Z)) and np.all(np.isfinite(G))):
            raise UsageError("Z or G contain NaN or infinite values: drop or impute those subjects first")
        return Z, G, y.astype(int), correction, correlation

    def fit(self, Z, G, y, region_index=None, region_names=None, unit_names=None, n_confounds=0):
        """Profile the latent codes ``Z`` (N x K) against regional GM ``G`` (N x J) for labels ``y`` (0/1).

        ``n_confounds``: confounds the caller regressed out of ``Z`` and ``G`` (each costs one degree of
        freedom of the correlation tests).
        ``region_index`` are the atlas label values of the columns of ``G`` (default 1..J);
        ``region_names`` default to the DataFrame columns of ``G`` or ``"region<index>"``;
        ``unit_names`` default to the DataFrame columns of ``Z`` or ``"z0".."zK-1"``.
        """
        if unit_names is None and isinstance(Z, pd.DataFrame):
            unit_names = [str(c) for c in Z.columns]
        if region_names is None and isinstance(G, pd.DataFrame):
            region_names = [str(c) for c in G.columns]
        Z, G, y, correction, correlation = self._validate(Z, G, y)
        n, K = Z.shape
        J = G.shape[1]
        rid = np.arange(1, J + 1) if region_index is None else np.asarray(region_index)
        if rid.shape != (J,):
            raise UsageError(f"region_index has {rid.size} entries but G has {J} columns")
        rnames = _names(region_names, J, lambda i: f"region{rid[i]}")
        unames = _names(unit_names, K, lambda i: f"z{i}")
        reasons: list[str] = []
        seed = int(self.random_state)

        # Standardised columns (METHOD: standardise before everything)
        Zs, Gs = stats.standardize(Z), stats.standardize(G)
        for name, arr, labels in (("latent unit", Zs, unames), ("region", Gs, rnames)):
            const = [str(labels[i]) for i in np.flatnonzero(~np.any(arr != 0.0, axis=0))]
            if const:
                reasons.append(f"constant {name}(s) with no statistics: {', '.join(const)}")

        # A. Association
        r, p = stats.correlate(Gs, Zs, correlation, n_confounds=int(n_confounds))
        if n < 3:
            reasons.append(f"correlations need at least 3 subjects (got {n})")
        if correction == "permutation":
            p_adj = stats.max_stat_permutation(Gs, Zs, int(self.n_permutations), seed, correlation)
        else:
            p_adj = stats.adjust_pvalues(p, correction)
        significant = np.nan_to_num(p_adj, nan=1.0) < float(self.alpha)
        r_tilde = np.where(significant, np.nan_to_num(r), 0.0)
        a_r2, reason = _cv_r2(Zs, Gs, int(self.cv), seed)
        if reason:
            reasons.append(reason)

        # B. Discriminability of units and regions
        unit_b, delta, unit_reasons = _discriminability(Zs, y, self.eta, self.bound, int(self.cv), seed)
        if str(self.region_correction).lower() not in ("none", "bonferroni"):
            raise UsageError(f"unknown region_correction '{self.region_correction}': use none or bonferroni")
        region_eta = self.eta / max(1, Gs.shape[1]) if self.region_correction == "bonferroni" else self.eta
        reg_b, _, _ = _discriminability(Gs, y, region_eta, self.bound, int(self.cv), seed)
        reasons.extend(unit_reasons)

        # C. Weights, scores, positivity, ranking
        # Chance is the larger class's share, not 0.5: with unbalanced classes the best threshold is
        # never worse than "everyone is the majority class", so acc* > 0.5 would pass pure noise.
        chance = max(float(np.mean(y == 1)), float(np.mean(y == 0)))
        excess = np.nan_to_num(np.maximum(0.0, unit_b["acc_star"] - chance), nan=0.0)
        relevant = np.nan_to_num(unit_b["acc_star"], nan=-np.inf) > chance
        if excess.sum() > 0:
            weights_rule = "bound"
            raw = excess
        else:
            weights_rule = "auc_fallback"
            raw = np.nan_to_num(np.abs(unit_b["auc"] - 0.5), nan=0.0)
        weights = raw / raw.sum() if raw.sum() > 0 else np.zeros(K)
        if raw.sum() == 0:
            reasons.append("no latent unit carries any class information (all weights 0): every score is 0")
        score = np.abs(r_tilde) @ weights
        positive = (score > 0) & (np.nan_to_num(reg_b["acc_star"], nan=-np.inf) > chance)
        rank = _rank(positive, score, rid)
        # Family-wise versions (Bonferroni over the K units / J regions), reported beside METHOD's rule.
        fw_unit = bounds.delta(n, 1, self.eta / K, self.bound) if n >= 2 else np.nan
        fw_region = bounds.delta(n, 1, self.eta / J, self.bound) if n >= 2 else np.nan
        relevant_fwer = np.nan_to_num(unit_b["accuracy"] - fw_unit, nan=-np.inf) > chance
        positive_fwer = (score > 0) & (np.nan_to_num(reg_b["accuracy"] - fw_region, nan=-np.inf) > chance)

        # Tables
        self.association_ = pd.DataFrame(
            {
                "region_index": np.repeat(rid, K),
                "region": np.repeat(np.asarray(rnames, dtype=object), K),
                "unit": np.tile(np.asarray(unames, dtype=object), J),
                "r": r.ravel(),
                "p": p.ravel(),
                "p_adj": p_adj.ravel(),
                "significant": significant.ravel(),
                "r_tilde": r_tilde.ravel(),
            }
        )
        self.units_ = pd.DataFrame(
            {
                "unit": unames,
                "accuracy": unit_b["accuracy"],
                "delta": unit_b["delta"],
                "acc_star": unit_b["acc_star"],
                "relevant": relevant,
                "auc": unit_b["auc"],
                "cohens_d": unit_b["cohens_d"],
                "cv_accuracy": unit_b["cv_accuracy"],
                "weight": weights,
                "relevant_fwer": relevant_fwer,
            }
        )
        regions = pd.DataFrame(
            {
                "region_index": rid,
                "region": rnames,
                "score": score,
                "a_r2": a_r2,
                "accuracy": reg_b["accuracy"],
                "delta": reg_b["delta"],
                "acc_star": reg_b["acc_star"],
                "auc": reg_b["auc"],
                "cohens_d": reg_b["cohens_d"],
                "lrcp_positive": positive,
                "rank": rank,
                "cv_accuracy": reg_b["cv_accuracy"],
                "lrcp_positive_fwer": positive_fwer,
            }
        )
        self.regions_ = regions.sort_values("rank", kind="mergesort").reset_index(drop=True)

        n1 = int(y.sum())
        best = float(np.nanmax(unit_b["acc_star"])) if np.any(np.isfinite(unit_b["acc_star"])) else float("nan")
        positive_names = list(self.regions_.loc[self.regions_["lrcp_positive"], "region"])
        self.summary_ = {
            "n": int(n),
            "n_per_class": {0: int(n - n1), 1: n1},
            "K": int(K),
            "J": int(J),
            "delta": float(delta),
            "weights_rule": weights_rule,
            "n_units_relevant": int(relevant.sum()),
            "n_units_relevant_fwer": int(relevant_fwer.sum()),
            "n_regions_positive": int(positive.sum()),
            "n_regions_positive_fwer": int(positive_fwer.sum()),
            "statement": "",
            "correlation": correlation,
            "correction": correction,
            "alpha": float(self.alpha),
            "eta": float(self.eta),
            "region_correction": str(self.region_correction),
            "bound": str(self.bound).upper(),
            "n_significant": int(significant.sum()),
            "best_unit_acc_star": best,
            "chance": chance,
            "positive_regions": positive_names,
            "reasons": reasons,
        }
        self.summary_["statement"] = self._statement()
        return self

    def _statement(self) -> str:
        s = self.summary_
        n, K, J = s["n"], s["K"], s["J"]
        best, delta, bound = s["best_unit_acc_star"], s["delta"], s["bound"]
        if not math.isfinite(best):
            units = (
                f"The latent units' clinical relevance could not be assessed at n = {n} "
                f"({'; '.join(s['reasons']) or 'too few subjects'})."
            )
        elif s["n_units_relevant"]:
            units = (
                f"{s['n_units_relevant']} of {K} latent units are clinically relevant at n = {n} "
                f"(best worst-case accuracy {best:.2f} > chance {s['chance']:.2f} with Delta_{bound} = {delta:.3f}); "
                "unit weights follow the bound."
            )
        else:
            units = (
                f"No latent unit is clinically relevant at n = {n} (best worst-case accuracy {best:.2f} "
                f"<= chance {s['chance']:.2f} with Delta_{bound} = {delta:.3f}); weights fall back to |AUC-0.5|."
            )
        corr = {"fdr_bh": "Benjamini-Hochberg FDR", "bonferroni": "Bonferroni",
                "permutation": "max-statistic permutation"}[s["correction"]]
        assoc = (
            f" {s['n_significant']} of {J * K} region-unit {s['correlation'].capitalize()} correlations are "
            f"significant ({corr}, alpha = {s['alpha']:g})."
        )
        names = s["positive_regions"]
        if names:
            shown = ", ".join(str(x) for x in names[:10]) + (", ..." if len(names) > 10 else "")
            regions = f" {len(names)} of {J} regions are LRCP-positive: {shown}."
        else:
            regions = (
                f" No region is LRCP-positive (none of the {J} regions combines a significant association "
                "with weighted latent units and a worst-case accuracy above chance)."
            )
        caveat = ""
        if s.get("region_correction") == "bonferroni":
            caveat = f" Region tests are Bonferroni-corrected over the {J} regions (eta / {J})."
        elif math.isfinite(best):
            caveat = (
                f" Each region's worst-case-accuracy test holds at level eta = {s['eta']:g} on its own, "
                f"uncorrected over the {J} regions (up to {s['eta'] * J:.1f} false positives expected by "
                "chance)."
            )
        return units + assoc + regions + caveat


# --------------------------------------------------------------------------------------------------
# Across folds


def ranking_stability(scores, top_k: int = 10) -> dict:
    """How stable the LRCP ranking is across folds (METHOD.md section 5).

    ``scores`` maps a fold name to a Series of LRCP scores S_j indexed by region_index, e.g.
    ``lrcp.regions_.set_index("region_index")["score"]``.  For every pair of folds, over the regions
    that score above 0 in at least one of the two: Kendall's tau-b of the scores (equal scores stay tied:
    a ranking that only exists through tie-breaking is not stability) and the top-k overlap
    ``|top_k(a) & top_k(b)| / k`` with each top-k taken among that fold's regions scoring above 0.
    Returns ``kendall_tau`` and ``top_k_overlap`` (means over pairs), ``n_folds``, ``n_pairs``,
    ``top_k`` (the k used) and ``reason`` (None, or why the values are NaN: fewer than two folds, or
    fewer than 2 regions scoring above 0).  k-fold latent units are not aligned across folds; region
    scores are.
    """
    if int(top_k) < 1:
        raise UsageError(f"top_k must be at least 1 (got {top_k})")
    names = list(scores)
    series = {f: pd.Series(scores[f], dtype=float).fillna(0.0) for f in names}
    taus, overlaps, ks = [], [], []
    for a, b in itertools.combinations(names, 2):
        common = series[a].index.intersection(series[b].index)
        sa, sb = series[a].loc[common], series[b].loc[common]
        scored = (sa > 0) | (sb > 0)
        if scored.sum() < 2:
            continue
        sa, sb = sa[scored], sb[scored]
        tau = _sps.kendalltau(sa.to_numpy(), sb.to_numpy()).statistic
        pos_a, pos_b = sa[sa > 0], sb[sb > 0]
        k = min(int(top_k), max(len(pos_a), len(pos_b)))
        top_a = set(pos_a.sort_values(ascending=False, kind="mergesort").index[:k])
        top_b = set(pos_b.sort_values(ascending=False, kind="mergesort").index[:k])
        if np.isfinite(tau):
            taus.append(float(tau))
        overlaps.append(len(top_a & top_b) / k)
        ks.append(k)
    reason = None
    if len(names) < 2:
        reason = f"stability needs at least 2 folds (got {len(names)})"
    elif not overlaps:
        reason = "no pair of folds has at least 2 regions scoring above 0"
    return {
        "kendall_tau": float(np.mean(taus)) if taus else float("nan"),
        "top_k_overlap": float(np.mean(overlaps)) if overlaps else float("nan"),
        "n_folds": len(names),
        "n_pairs": len(overlaps),
        "top_k": int(min(ks)) if ks else int(top_k),
        "reason": reason,
    }


def consensus(frames) -> pd.DataFrame:
    """Consensus ranking of regions over folds from a list of ``LRCP.regions_`` frames.

    Per region: ``mean_score`` (mean S_j over the folds that have it), ``n_positive`` (folds where it is
    LRCP-positive), ``positive_majority`` (positive in more than half of the frames), ``rank``
    (1 = top: majority-positive regions first by mean score, then the others; ties by region_index),
    ``n_positive_fwer`` and ``positive_fwer_majority`` (the same for the family-wise rule).  Sorted by
    rank.  The region half of the rule (acc*_j from G and y) is the same in every fold, so a majority
    over folds is no replication of it: read the family-wise columns for "which regions".
    """
    frames = [f for f in frames if f is not None and len(f)]
    columns = ["region_index", "region", "mean_score", "n_positive", "positive_majority", "rank", "n_positive_fwer",
               "positive_fwer_majority"]
    if not frames:
        return pd.DataFrame(columns=columns)
    frames = [f if "lrcp_positive_fwer" in f else f.assign(lrcp_positive_fwer=False) for f in frames]
    allf = pd.concat([f[["region_index", "region", "score", "lrcp_positive", "lrcp_positive_fwer"]] for f in frames],
                     ignore_index=True)
    grouped = allf.groupby("region_index", sort=True)
    out = pd.DataFrame(
        {
            "region": grouped["region"].first(),
            "mean_score": grouped["score"].mean(),
            "n_positive": grouped["lrcp_positive"].sum().astype(int),
            "n_positive_fwer": grouped["lrcp_positive_fwer"].sum().astype(int),
        }
    ).reset_index()
    out["positive_majority"] = out["n_positive"] > len(frames) / 2.0
    out["positive_fwer_majority"] = out["n_positive_fwer"] > len(frames) / 2.0
    out["rank"] = _rank(out["positive_majority"].to_numpy(), out["mean_score"].to_numpy(float),
                        out["region_index"].to_numpy())
    return out[columns].sort_values("rank", kind="mergesort").reset_index(drop=True)
