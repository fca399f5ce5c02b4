"""PC1 of the latent codes against global measures (METHOD.md section 4).

An autoencoder's main latent axis often tracks head size or global atrophy: a PC1 that is "only brain
size" is a finding about that measure, not a regional biomarker, and the report says so.  The claim
"PC1 tracks X" is tested on one row per subject, family-wise over the measures.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import pearsonr

from latentbids.errors import UsageError


def pc1_correlations(pc1, covariates: pd.DataFrame, eta: float = 0.05, min_abs_r: float = 0.5) -> pd.DataFrame:
    """Pearson correlation of PC1 with each covariate (global mean GM, TIV, age, ...).

    METHOD.md section 4 asks for it because an autoencoder's main latent axis often tracks head size or
    global atrophy: a PC1 that is "only brain size" is a finding, not a biomarker.  The claim "PC1
    tracks X" is ``supported`` when the Bonferroni-adjusted p (over the covariates that could be
    correlated) is at most ``eta`` *and* ``|r| >= min_abs_r`` (a weak correlation is not "tracking").
    Pass one row per subject: a second session of the same subject is not a new observation.

    Parameters
    ----------
    pc1 : array-like, shape (N,)
        PC1 scores (e.g. ``coords["pca1"]``), matched to the covariates by position.
    covariates : DataFrame, N rows
        One column per covariate.  Boolean columns count as 0/1; other non-numeric columns are not
        correlated (code them as numbers first).
    eta : float, default=0.05
        Family-wise level of the Bonferroni-adjusted p, in (0, 1).
    min_abs_r : float, default=0.5
        Smallest ``|r|`` that counts as "tracking", in [0, 1].

    Returns
    -------
    DataFrame
        One row per covariate: ``covariate``, ``n`` (complete pairs: rows where PC1 or the covariate is
        NaN are dropped per covariate), ``r``, ``p`` (two-sided, ``scipy.stats.pearsonr``),
        ``p_bonferroni``, ``supported`` and ``reason`` (None, or why ``r`` and ``p`` are NaN: fewer
        than 3 pairs, a constant variable, a non-numeric column).
    """
    if isinstance(covariates, pd.Series):
        covariates = covariates.to_frame()
    if not isinstance(covariates, pd.DataFrame):
        raise UsageError("pc1_correlations needs the covariates as a pandas DataFrame (one column each)")
    x = np.asarray(pc1, dtype=float).ravel()
    if len(x) != len(covariates):
        raise UsageError(
            f"pc1 has {len(x)} values but the covariate table has {len(covariates)} rows; "
            "pass them in the same order"
        )
    rows = []
    for name in covariates.columns:
        col = covariates[name]
        r = p = np.nan
        reason = None
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            c = col.to_numpy(dtype=float, na_value=np.nan)
            ok = np.isfinite(x) & np.isfinite(c)
            m = int(ok.sum())
            if m < 3:
                reason = f"fewer than 3 complete pairs (n={m})"
            elif np.ptp(x[ok]) == 0 or np.ptp(c[ok]) == 0:
                reason = "PC1 is constant" if np.ptp(x[ok]) == 0 else f"{name} is constant"
            else:
                res = pearsonr(x[ok], c[ok])
                r, p = float(res.statistic), float(res.pvalue)
        else:
            m = 0
            reason = f"{name} is not numeric (code it as numbers to correlate it)"
        rows.append({"covariate": str(name), "n": m, "r": r, "p": p, "reason": reason})
    table = pd.DataFrame(rows, columns=["covariate", "n", "r", "p", "reason"])
    tested = int(table["p"].notna().sum())
    table["p_bonferroni"] = np.minimum(1.0, table["p"] * max(tested, 1))
    table["supported"] = (table["p_bonferroni"].fillna(1.0) <= float(eta) + 1e-12) & (
        table["r"].abs().fillna(0.0) >= float(min_abs_r))
    return table[["covariate", "n", "r", "p", "p_bonferroni", "supported", "reason"]]


def pc1_claims(table: pd.DataFrame, min_abs_r: float = 0.5) -> list:
    """One claim "PC1 tracks <covariate>" per row of :func:`pc1_correlations`.

    The verdicts were made by :func:`pc1_correlations`; this turns each row into a ``pc1``
    :class:`~latentbids.analysis.claims.Claim` about the whole cohort (``contrast=""``).

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`pc1_correlations` (one row per covariate).
    min_abs_r : float, default=0.5
        The ``|r|`` floor used there, in [0, 1] (quoted in the claim's ``correction``).

    Returns
    -------
    list of Claim
        One per row: ``statistic`` = Pearson r in [-1, 1] (NaN when not computed), ``p`` = the
        Bonferroni-adjusted p in (0, 1] (NaN when not computed), ``supported`` copied, ``note`` = the
        row's reason or ``""``.
    """
    from latentbids.analysis.claims import Claim

    tested = int(table["p"].notna().sum())
    return [Claim(contrast="", family="pc1", item=str(row.covariate), statistic_name="Pearson r",
                  statistic=float(row.r), p=float(row.p_bonferroni), bound=math.nan,
                  correction=f"Bonferroni over {tested} global measure(s), and |r| >= {min_abs_r:g}",
                  supported=bool(row.supported), note=str(row.reason or ""))
            for row in table.itertuples()]
