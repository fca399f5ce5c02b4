"""Latent-Regional Correlation Profiling (LRCP, METHOD.md section 5).

LRCP asks which atlas regions the latent space "talks about" *and* which of them separate the two classes
of a contrast, with every verdict family-wise (a "positive" on noise is the worst bug this tool can ship):

A. Association: the correlation ``r_jk`` of every region's mean GM (``G_j``) with every latent unit
   (``Z_k``), corrected over all ``J x K`` tests of a fold (Benjamini-Hochberg FDR by default), plus
   ``A_j``, the cross-validated R^2 of predicting ``G_j`` from all latent units.
B. Discriminability (:mod:`latentbids.analysis.discriminability`): a mean-shift statistic (Welch's |t| by
   default) of every unit and every region, judged family-wise: one family for the units (every unit of
   every fold of the contrast), one for the regions; max-statistic label permutation by default, Bonferroni
   as the fast option.  A unit that passes is *clinically relevant*; a region that passes *discriminates*
   the classes (a statement about GM, not about the latent space).
C. Profile and score, per fold: ``r~_jk = r_jk`` where significant (FDR), else 0; weights ``w_k = max(0,
   score*_k - chance)`` over the relevant units of the fold, normalised; ``S_j = sum_k |r~_jk| w_k`` (the
   ranking).  Region ``j`` is **LRCP-positive** in a fold when it discriminates *and* is tied to a relevant
   unit of the fold by a correlation that is family-wise significant over every (discriminating region,
   relevant unit) pair of every fold.  Across folds it is LRCP-positive when it is positive in **any** fold
   (the unit family already spans every fold, so a majority rule adds no protection and costs power); the
   share of folds is reported as stability (:func:`latentbids.analysis.rankings.consensus`).

Under the null of labels unrelated to the data, "some region is LRCP-positive" needs "some unit is
relevant" and "some region discriminates", each of probability at most ``eta``.  When no unit is relevant
the statement says that no single unit was shown to carry the contrast at this n (the smallest effect the
test would have found is the report's, METHOD.md section 10), never that the latent space carries no
information; the ranking (weights from ``|AUC_k - 0.5|``) is then exploratory.  METHOD's first, per-item
rule survives only in the columns ending in ``_uncorrected``.  The caller maps the contrast's labels to 0/1
and may residualise confounds first (:func:`latentbids.analysis.stats.residualize`).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from latentbids.analysis import effect_sizes, stats
from latentbids.analysis.cv_accuracy import cv_logistic_accuracy, cv_ridge_r2
from latentbids.analysis.discriminability import FamilyTest, family_test
from latentbids.analysis.lrcp_claims import lrcp_statement
from latentbids.analysis.rankings import consensus, rank_regions, ranking_stability
from latentbids.errors import UsageError

CORRECTIONS = ("fdr_bh", "bonferroni", "permutation")


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
        Control of the ``J x K`` association tests of each fold (METHOD: Benjamini-Hochberg FDR);
        ``"permutation"`` is the max-statistic null with the subject order of ``Z`` shuffled.
    alpha : float
        A region-unit pair is significant when its adjusted p-value is below ``alpha``.
    eta : float
        Family-wise error rate of the unit and region tests (and confidence ``1 - eta`` of the bounds).
    statistic : {"welch", "auc", "balanced", "majority"}
        The discriminability statistic of units and regions: Welch's |t| (default: measured the most powerful
        for a GM loss at the same error rate), |AUC - 0.5|, or the best-threshold balanced accuracy (chance 0.5)
        or accuracy (chance = the larger class's share); see :mod:`latentbids.analysis.discriminability`.
    family_correction : {"permutation", "bonferroni"}
        Family-wise rule for the units (every unit of every fold: one family) and for the regions
        (one family): max-statistic label permutation, or Bonferroni with a bound (fast).
    bound : {"G", "GZ", "VC"}
        Bound of the Bonferroni rule ("majority") and of the ``_uncorrected`` columns.
    n_permutations : int
        Label permutations of the family-wise null (also the association null when
        ``correction="permutation"``).
    cv : int
        Folds for ``A_j`` (KFold) and for the cross-validated accuracies (StratifiedKFold).
    random_state : int
        Seed of the CV folds and the permutations.
    top_k : int, default=10
        ``k`` of the top-k overlap in ``stability_`` (:func:`ranking_stability`).

    Attributes
    ----------
    region_tests_ : pandas.DataFrame of shape (n_regions, n_columns)
        One row per region: region_index, region, the family test's columns (statistic, chance, score_star,
        p_fwer, p_uncorrected, discriminates, score_star_uncorrected, discriminates_uncorrected) and auc,
        cohens_d, cv_accuracy.
    units_ : pandas.DataFrame of shape (n_folds * n_units, n_columns)
        One row per (fold, unit): the same test columns (``relevant`` is the family-wise verdict over every
        unit of every fold), auc, cohens_d, cv_accuracy and the LRCP ``weight``.
    association_ : pandas.DataFrame of shape (n_folds * n_regions * n_units, n_columns)
        One row per (fold, region, unit): r, p, p_adj, significant, r_tilde, p_tie_fwer, tied, score.
    folds_ : pandas.DataFrame of shape (n_folds * n_regions, n_columns)
        One row per (fold, region): a_r2 (cross-validated R^2 of the region on the fold's units), score,
        exploratory (the fold had no relevant unit, so its score uses |AUC - 0.5| weights and is a ranking,
        not a finding), tied_to_relevant_unit, lrcp_positive, lrcp_positive_uncorrected (METHOD's first,
        per-item rule), rank within the fold.
    consensus_ : pandas.DataFrame of shape (n_regions, n_columns)
        One row per region, sorted by rank: mean_score, exploratory, n_folds_positive, fold_agreement,
        lrcp_positive (positive in any fold), rank, and the region's test columns.
    stability_ : dict or None
        :func:`ranking_stability` of the fold scores (None with one fold).
    summary_ : dict
        Counts, settings, the reasons for NaN values and ``statement`` (in words).
    n_units_ : int
        Latent units per fold (``n_units``).
    n_regions_ : int
        Regions (``n_regions``, the columns of ``G``).
    n_folds_ : int
        Folds (latent matrices) profiled.
    """

    def __init__(self, correlation: str = "pearson", correction: str = "fdr_bh", alpha: float = 0.05,
                 eta: float = 0.05, statistic: str = "welch", family_correction: str = "permutation",
                 bound: str = "G", n_permutations: int = 1000, cv: int = 5, random_state: int = 0,
                 top_k: int = 10):
        self.correlation = correlation
        self.correction = correction
        self.alpha = alpha
        self.eta = eta
        self.statistic = statistic
        self.family_correction = family_correction
        self.bound = bound
        self.n_permutations = n_permutations
        self.cv = cv
        self.random_state = random_state
        self.top_k = top_k

    # ----------------------------------------------------------------------------------------------
    def _validate(self, Z, G, y):
        correction = str(self.correction).lower()
        if correction not in CORRECTIONS:
            raise UsageError(f"unknown correction '{self.correction}': use one of {', '.join(CORRECTIONS)}")
        correlation = str(self.correlation).lower()
        if correlation not in stats.CORRELATIONS:
            raise UsageError(
                f"unknown correlation '{self.correlation}': use one of {', '.join(stats.CORRELATIONS)}")
        if not 0.0 < float(self.alpha) < 1.0:
            raise UsageError(f"alpha must lie in (0, 1) (got {self.alpha})")
        if int(self.cv) < 2:
            raise UsageError(f"cv must be at least 2 folds (got {self.cv})")
        G = _as_matrix(G, "G")
        y = np.asarray(y)
        folds = {str(k): _as_matrix(v, "Z") for k, v in (Z.items() if isinstance(Z, Mapping) else [("1", Z)])}
        if not folds:
            raise UsageError("Z is empty: pass one latent matrix, or one per fold")
        for fold, Zf in folds.items():
            if y.ndim != 1 or not (len(y) == Zf.shape[0] == G.shape[0]):
                raise UsageError(f"Z (fold {fold}: {Zf.shape[0]} rows), G ({G.shape[0]} rows) and y ({y.size} "
                                 "labels) must have one row per subject")
        if len({Zf.shape[1] for Zf in folds.values()}) != 1:
            raise UsageError("every fold's latent matrix must have the same number of units")
        if not np.all(np.isin(y, (0, 1))):
            raise UsageError("y must hold 0/1 class labels: map the contrast's two labels to 0 and 1 first")
        return folds, G, y.astype(int), correction, correlation

    def fit(self, Z, G, y, region_index=None, region_names=None, unit_names=None, n_confounds=0):
        """Profile latent codes against regional GM ``G`` (N x J) for the 0/1 labels ``y``.

        ``Z`` is one latent matrix (N x K) or a mapping fold -> latent matrix (k-fold: every subject
        encoded by every fold's network); the units of different folds are different features.
        ``n_confounds``: confounds regressed out of ``Z`` and ``G`` (each costs one degree of freedom of
        the correlation tests).  ``region_index`` are the atlas labels of the columns of ``G`` (default
        1..J); names default to DataFrame columns, ``"region<index>"`` and ``"z0".."zK-1"``.

        Parameters
        ----------
        Z : array-like of shape (n_subjects, n_units), or mapping of str to such arrays
            Latent codes (one matrix, or one per fold with the same ``n_units``); finite values only.
        G : array-like of shape (n_subjects, n_regions)
            Regional mean GM (in [0, 1] before any residualisation); finite values only.
        y : array-like of shape (n_subjects,)
            0/1 class labels of the contrast.
        region_index : array-like of shape (n_regions,), optional
            Atlas label of each column of ``G``; default ``1 .. n_regions``.
        region_names, unit_names : sequence of str, optional
            One name per region / per latent unit.
        n_confounds : int, default=0
            Number of confounds already regressed out of ``Z`` and ``G``.

        Returns
        -------
        self : LRCP
            The fitted estimator (tables in the attributes ending in ``_``).
        """
        first = next(iter(Z.values())) if isinstance(Z, Mapping) and Z else Z
        if unit_names is None and isinstance(first, pd.DataFrame):
            unit_names = [str(c) for c in first.columns]
        if region_names is None and isinstance(G, pd.DataFrame):
            region_names = [str(c) for c in G.columns]
        folds, G, y, correction, correlation = self._validate(Z, G, y)
        n, J = G.shape
        K = next(iter(folds.values())).shape[1]
        rid = np.arange(1, J + 1) if region_index is None else np.asarray(region_index)
        if rid.shape != (J,):
            raise UsageError(f"region_index has {rid.size} entries but G has {J} columns")
        rnames = _names(region_names, J, lambda i: f"region{rid[i]}")
        unames = _names(unit_names, K, lambda i: f"z{i}")
        self._reasons: list[str] = []
        self._majority = max(float(np.mean(y)), 1.0 - float(np.mean(y)))
        Gs = stats.standardize(G)
        Zs = {f: stats.standardize(Zf) for f, Zf in folds.items()}
        self._note_constant(Gs, rnames, "region")
        for f, Zf in Zs.items():
            self._note_constant(Zf, unames, f"latent unit (fold {f})")
        if n < 3:
            self._reasons.append(f"correlations need at least 3 subjects (got {n})")

        regions = self._family(Gs, y, "region")
        Z_all = np.column_stack(list(Zs.values()))
        units = self._family(Z_all, y, "unit")
        tie_p = self._tie_pvalues(Gs, Z_all, regions.passes, units.passes, correlation, int(n_confounds))
        self.region_tests_ = pd.concat([pd.DataFrame({"region_index": rid, "region": rnames}),
                                        _test_columns(regions, "discriminates"),
                                        self._descriptives(Gs, y)], axis=1)
        unit_frames, assoc_frames, fold_frames = [], [], []
        for i, (fold, Zf) in enumerate(Zs.items()):
            cols = slice(i * K, (i + 1) * K)
            u = pd.concat([pd.DataFrame({"fold": fold, "unit": unames}),
                           _test_columns(units, "relevant", cols), self._descriptives(Zf, y)], axis=1)
            assoc, per_fold = self._profile(fold, Zf, Gs, u, regions, rid, rnames, unames, correction,
                                            correlation, int(n_confounds), tie_p[:, cols])
            unit_frames.append(u)
            assoc_frames.append(assoc)
            fold_frames.append(per_fold)
        self.units_ = pd.concat(unit_frames, ignore_index=True)
        self.association_ = pd.concat(assoc_frames, ignore_index=True)
        self.folds_ = pd.concat(fold_frames, ignore_index=True)
        self.consensus_ = consensus(self.folds_, self.region_tests_)
        self.stability_ = (ranking_stability({f: d.set_index("region_index")["score"]
                                              for f, d in self.folds_.groupby("fold", sort=False)},
                                             top_k=int(self.top_k)) if len(Zs) > 1 else None)
        self.n_units_, self.n_regions_, self.n_folds_ = int(K), int(J), len(Zs)
        self.summary_ = self._summary(n, y, K, J, regions, units, correlation, correction)
        return self

    # ----------------------------------------------------------------------------------------------
    def _note_constant(self, arr, labels, what):
        const = [str(labels[i]) for i in np.flatnonzero(~np.any(arr != 0.0, axis=0))]
        if const:
            self._reasons.append(f"constant {what}(s) with no statistics: {', '.join(const)}")

    def _family(self, X, y, what) -> FamilyTest:
        seed = int(self.random_state) + (0 if what == "region" else 1)
        test = family_test(X, y, statistic=self.statistic, method=self.family_correction, eta=float(self.eta),
                           n_permutations=int(self.n_permutations), random_state=seed, bound=self.bound)
        if test.reason:
            self._reasons.append(f"{what} test: {test.reason}")
        return test

    def _tie_pvalues(self, Gs, Z_all, discriminates, relevant, correlation, n_confounds) -> np.ndarray:
        """Family-wise p of the correlation of every discriminating region with every relevant unit (NaN elsewhere).

        One family over the pairs a verdict can use (regions passing their own test x relevant units of every
        fold; max-statistic, codes' subject order shuffled, or Bonferroni): over every region it tied 0.4 of 4
        planted regions at 8 % loss, 60 per group (20 cohorts); over these pairs 1.7."""
        out = np.full((Gs.shape[1], Z_all.shape[1]), np.nan)
        rows, cols = np.flatnonzero(discriminates), np.flatnonzero(relevant)
        if not len(rows) or not len(cols) or Gs.shape[0] < 3:
            return out
        if self.family_correction == "permutation":
            p = stats.max_stat_permutation(Gs[:, rows], Z_all[:, cols], int(self.n_permutations),
                                           int(self.random_state) + 2, correlation)
        else:
            _, p = stats.correlate(Gs[:, rows], Z_all[:, cols], correlation, n_confounds=n_confounds)
            p = np.minimum(1.0, np.nan_to_num(p, nan=1.0) * p.size)
        out[np.ix_(rows, cols)] = p
        return out

    def _descriptives(self, X, y) -> pd.DataFrame:
        """AUC, Cohen's d and cross-validated one-feature logistic accuracy (description, no verdict)."""
        if min(np.sum(y == 0), np.sum(y == 1)) < 2:
            nan = np.full(X.shape[1], np.nan)
            return pd.DataFrame({"auc": nan, "cohens_d": nan, "cv_accuracy": nan})
        cv_acc, _, reason = cv_logistic_accuracy(X, y, int(self.cv), int(self.random_state))
        if reason and reason not in self._reasons:
            self._reasons.append(reason)
        return pd.DataFrame({"auc": effect_sizes.auc_columns(X, y), "cohens_d": effect_sizes.cohens_d_columns(X, y),
                             "cv_accuracy": cv_acc})

    def _profile(self, fold, Zs, Gs, units, regions, rid, rnames, unames, correction, correlation, n_conf, tie_p):
        """One fold: association, weights, scores, LRCP-positivity (family-wise and uncorrected).

        A region is LRCP-positive in the fold when it passes its own family-wise test and is tied, by a
        family-wise significant correlation (``tie_p``, J x K), to a relevant unit of the fold."""
        J, K = Gs.shape[1], Zs.shape[1]
        seed = int(self.random_state)
        r, p = stats.correlate(Gs, Zs, correlation, n_confounds=n_conf)
        if correction == "permutation":
            p_adj = stats.max_stat_permutation(Gs, Zs, int(self.n_permutations), seed, correlation)
        else:
            p_adj = stats.adjust_pvalues(p, correction)
        significant = np.nan_to_num(p_adj, nan=1.0) < float(self.alpha)
        r_tilde = np.where(significant, np.nan_to_num(r), 0.0)
        a_r2, reason = cv_ridge_r2(Zs, Gs, int(self.cv), seed)
        if reason and reason not in self._reasons:
            self._reasons.append(reason)
        relevant = units["relevant"].to_numpy(bool)
        chance = float(units["chance"].iloc[0])
        excess = np.where(relevant, np.nan_to_num(units["score_star"].to_numpy(float) - chance), 0.0)
        exploratory = not relevant.any()
        if exploratory:  # no finding: an ordering by |AUC - 0.5|, labelled exploratory
            excess = np.nan_to_num(np.abs(units["auc"].to_numpy(float) - 0.5))
        weights = excess / excess.sum() if excess.sum() > 0 else np.zeros(K)
        units["weight"] = weights
        score = np.abs(r_tilde) @ weights
        tied = np.nan_to_num(tie_p, nan=1.0) <= float(self.eta) + 1e-12
        tied_relevant = (tied & relevant[None, :]).any(axis=1)
        positive = (not exploratory) & tied_relevant & regions.passes
        # METHOD's first rule, for transparency only: every unit and region at eta on its own
        unc = np.where(units["relevant_uncorrected"].to_numpy(bool),
                       np.nan_to_num(units["score_star_uncorrected"].to_numpy(float)
                                     - self._majority), 0.0)
        score_unc = np.abs(r_tilde) @ (unc / unc.sum() if unc.sum() > 0 else np.zeros(K))
        positive_unc = (score_unc > 0) & regions.passes_uncorrected
        assoc = pd.DataFrame({
            "fold": fold, "region_index": np.repeat(rid, K), "region": np.repeat(np.asarray(rnames, object), K),
            "unit": np.tile(np.asarray(unames, dtype=object), J), "r": r.ravel(), "p": p.ravel(),
            "p_adj": p_adj.ravel(), "significant": significant.ravel(), "r_tilde": r_tilde.ravel(),
            "p_tie_fwer": np.asarray(tie_p, dtype=float).ravel(), "tied": tied.ravel(),
        })
        assoc["score"] = np.repeat(score, K)
        per_fold = pd.DataFrame({
            "fold": fold, "region_index": rid, "region": rnames, "a_r2": a_r2, "score": score,
            "exploratory": exploratory, "tied_to_relevant_unit": tied_relevant, "lrcp_positive": positive,
            "lrcp_positive_uncorrected": positive_unc,
            "rank": rank_regions(positive, score, rid),
        })
        return assoc, per_fold.sort_values("rank", kind="mergesort")

    def _summary(self, n, y, K, J, regions, units, correlation, correction) -> dict:
        n1 = int(y.sum())
        per_fold = self.units_.groupby("fold", sort=False)["relevant"].sum().astype(int).to_dict()
        cons = self.consensus_
        positive_names = list(cons.loc[cons["lrcp_positive"], "region"])
        s = {
            "n": int(n), "n_per_class": {0: int(n - n1), 1: n1}, "K": int(K), "J": int(J),
            "n_folds": len(per_fold), "statistic": self.statistic, "chance": float(units.chance),
            "family_correction": self.family_correction, "eta": float(self.eta),
            "n_permutations": int(units.n_permutations), "unit_family_size": int(units.family_size),
            "unit_critical": float(units.critical), "region_critical": float(regions.critical),
            "units_relevant_per_fold": per_fold, "n_units_relevant": int(sum(per_fold.values())),
            "n_regions_discriminating": int(regions.passes.sum()),
            "n_regions_positive": len(positive_names), "positive_regions": positive_names,
            "latent_informative": bool(sum(per_fold.values()) > 0),
            "n_units_relevant_uncorrected": int(self.units_["relevant_uncorrected"].sum()),
            "correlation": correlation, "correction": correction, "alpha": float(self.alpha),
            "bound": str(self.bound).upper(), "n_significant": int(self.association_["significant"].sum()),
            "best_unit_statistic": _nanmax(units.statistic), "reasons": list(self._reasons),
        }
        s["statement"] = lrcp_statement(s)
        return s


def _nanmax(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.nanmax(values)) if np.isfinite(values).any() else float("nan")


def _as_matrix(X, name) -> np.ndarray:
    arr = np.asarray(X.to_numpy() if isinstance(X, pd.DataFrame) else X, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise UsageError(f"{name} must be a 2-D array (subjects x features)")
    if not np.all(np.isfinite(arr)):
        raise UsageError(f"{name} contains NaN or infinite values: drop or impute those subjects first")
    return arr


def _test_columns(test: FamilyTest, verdict: str, cols=slice(None)) -> pd.DataFrame:
    """A family test's per-feature columns, the verdict named for the family (relevant, discriminates)."""
    table = test.table().iloc[cols].reset_index(drop=True)
    return table.rename(columns={"passes": verdict, "passes_uncorrected": f"{verdict}_uncorrected"})
