"""LRCP across folds: the consensus of the per-fold region tables and the stability of their ranking.

In k-fold mode every fold trains its own network, whose latent units are not another fold's units; the
region scores S_j, however, live on the same atlas in every fold.  So the region ranking is what can be
pooled: :func:`consensus` (a region is LRCP-positive when it is positive in any fold; the share of
folds is reported as stability) and
:func:`ranking_stability` (Kendall tau and top-k overlap of the fold scores).
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy import stats as _sps

from latentbids.errors import UsageError


def rank_regions(positive: np.ndarray, score: np.ndarray, region_index: np.ndarray) -> np.ndarray:
    """Ranks (1 = top): positive regions first by score descending, then the rest; ties by region_index.

    One ordering rule for the per-fold tables and the consensus, so that a finding always outranks a
    higher score without one.

    Parameters
    ----------
    positive : array-like of bool, shape (n_regions,)
        LRCP-positive regions.
    score : array-like of float, shape (n_regions,)
        LRCP score ``S_j`` (>= 0); NaN/inf rank last within their group.
    region_index : array-like of int, shape (n_regions,)
        Atlas label of each region (breaks ties, ascending).

    Returns
    -------
    ndarray of int, shape (n_regions,)
        Rank of each region, a permutation of ``1 .. n_regions``.
    """
    s = np.where(np.isfinite(score), score, -np.inf)
    order = np.lexsort((region_index, -s, ~positive.astype(bool)))
    rank = np.empty(len(order), dtype=int)
    rank[order] = np.arange(1, len(order) + 1)
    return rank


def ranking_stability(scores, top_k: int = 10) -> dict:
    """How stable the LRCP ranking is across folds (METHOD.md section 5).

    ``scores`` maps a fold name to a Series of LRCP scores S_j indexed by region_index, e.g. one fold's
    rows of ``LRCP.folds_`` as ``rows.set_index("region_index")["score"]``.  For every pair of folds, over
    the regions that score above 0 in at least one of the two: Kendall's tau-b of the scores (equal scores
    stay tied: a ranking that only exists through tie-breaking is not stability) and the top-k overlap
    ``|top_k(a) & top_k(b)| / k`` with each top-k taken among that fold's regions scoring above 0.
    Returns ``kendall_tau`` and ``top_k_overlap`` (means over pairs), ``n_folds``, ``n_pairs``,
    ``top_k`` (the k used) and ``reason`` (None, or why the values are NaN: fewer than two folds, or
    fewer than 2 regions scoring above 0).  k-fold latent units are not aligned across folds; region
    scores are.

    Parameters
    ----------
    scores : mapping of str to pandas.Series
        Fold name -> LRCP scores ``S_j`` (>= 0) indexed by region_index; NaN counts as 0.  Pairs are
        compared on the regions both folds have.
    top_k : int, default=10
        Size of the top-k sets, at least 1 (reduced per pair to the larger number of regions scoring
        above 0 in either fold).

    Returns
    -------
    dict
        ``kendall_tau`` (mean tau-b over pairs, in [-1, 1], NaN when no pair gives one),
        ``top_k_overlap`` (mean over pairs, in [0, 1]), ``n_folds``, ``n_pairs`` (pairs compared),
        ``top_k`` (the smallest k used, or ``top_k`` when no pair was compared) and ``reason``.
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


def consensus(folds: pd.DataFrame, region_tests: pd.DataFrame | None = None) -> pd.DataFrame:
    """Consensus of the per-fold LRCP tables (``LRCP.folds_``): one row per region, sorted by rank.

    ``mean_score`` is the mean S_j over the folds that had a relevant unit (over every fold, and
    ``exploratory`` True, when none had); ``n_folds_positive`` counts the folds where the region is
    LRCP-positive; ``lrcp_positive`` means at least one of them.  The ranking lists the positive
    regions first by mean score, then the others.  ``region_tests`` (``LRCP.region_tests_``) adds each
    region's own test columns.  In k-fold mode the folds' latent units differ but their region scores
    live on the same atlas, so the region table is what can be pooled.

    Parameters
    ----------
    folds : pandas.DataFrame, or None
        One row per (fold, region) with at least ``fold``, ``region_index``, ``region``, ``score``,
        ``exploratory`` and ``lrcp_positive`` (``LRCP.folds_``).
    region_tests : pandas.DataFrame, optional
        One row per region with ``region_index``, ``region`` and the region test's columns; joined on
        ``region_index`` (its ``region`` column is dropped).

    Returns
    -------
    pandas.DataFrame of shape (n_regions, 8 + extra)
        ``region_index``, ``region``, ``mean_score``, ``exploratory``, ``n_folds_positive``,
        ``fold_agreement`` (the share of folds where the region is positive: stability), ``lrcp_positive``
        (positive in any fold: the family-wise unit test already spans every unit of every fold, so a
        fold-majority rule would add no protection and cost power, METHOD.md section 5), ``rank`` (1 = top),
        then the ``region_tests`` columns; sorted by rank.  Empty (those 8 columns) when ``folds`` is None or
        empty.
    """
    columns = ["region_index", "region", "mean_score", "exploratory", "n_folds_positive", "fold_agreement",
               "lrcp_positive", "rank"]
    if folds is None or not len(folds):
        return pd.DataFrame(columns=columns)
    n_folds = folds["fold"].nunique()
    informative = folds[~folds["exploratory"].astype(bool)]
    exploratory = informative.empty
    basis = folds if exploratory else informative
    grouped = basis.groupby("region_index", sort=True)
    out = pd.DataFrame({"region": grouped["region"].first(), "mean_score": grouped["score"].mean()}).reset_index()
    positive = folds.groupby("region_index", sort=True)["lrcp_positive"].sum().astype(int)
    out["exploratory"] = exploratory
    out["n_folds_positive"] = out["region_index"].map(positive).fillna(0).astype(int)
    out["lrcp_positive"] = out["n_folds_positive"] >= 1  # any fold: the unit test spans every fold already
    out["fold_agreement"] = out["n_folds_positive"] / n_folds  # stability, reported, not a verdict
    out["rank"] = rank_regions(out["lrcp_positive"].to_numpy(), out["mean_score"].to_numpy(float),
                        out["region_index"].to_numpy())
    out = out[columns]
    if region_tests is not None:
        extra = region_tests.drop(columns=["region"]).set_index("region_index")
        out = out.join(extra, on="region_index")
    return out.sort_values("rank", kind="mergesort").reset_index(drop=True)
