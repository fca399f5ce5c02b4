"""What LRCP says: its verdict in words and its claims (units, regions, LRCP-positive regions).

Both read a fitted :class:`latentbids.analysis.lrcp.LRCP` (its ``summary_`` and tables) and decide
nothing: every verdict was made by the estimator's family-wise tests.
"""
from __future__ import annotations

import math

from latentbids.analysis.claims import Claim


def lrcp_statement(s: dict) -> str:
    """The LRCP verdict of one contrast, in words.

    The sentence ``LRCP.summary_["statement"]`` holds: it says whether any latent unit is clinically
    relevant (and if not, that the latent space carries no detectable information at this n and the
    ranking is exploratory) and which regions are LRCP-positive.

    Parameters
    ----------
    s : dict
        The summary under construction in ``LRCP._summary``: at least ``n``, ``K``, ``J``, ``n_folds``,
        ``family_correction``, ``statistic``, ``eta``, ``best_unit_statistic`` (NaN when the units could
        not be tested), ``reasons``, ``latent_informative``, ``units_relevant_per_fold`` and
        ``positive_regions``.

    Returns
    -------
    str
        One or two sentences (at most 10 region names are listed).
    """
    n, K, J, F = s["n"], s["K"], s["J"], s["n_folds"]
    rule = ("max-statistic label permutation" if s["family_correction"] == "permutation" else "Bonferroni")
    what = "balanced accuracy" if s["statistic"] == "balanced" else "accuracy against the majority share"
    family = f"{K} units" + (f" x {F} folds" if F > 1 else "")
    if not math.isfinite(s["best_unit_statistic"]):
        return (f"The latent units' clinical relevance could not be assessed at n = {n} "
                f"({'; '.join(s['reasons']) or 'too few subjects'}).")
    if not s["latent_informative"]:
        return (f"No latent unit is clinically relevant at n = {n} (best one-unit {what} "
                f"{s['best_unit_statistic']:.2f}; family-wise {rule} over {family}, eta = {s['eta']:g}): the latent "
                "space carries no detectable information about this contrast at this n, so no region is "
                "LRCP-positive; the region ranking shown is exploratory.")
    per_fold = ", ".join(str(v) for v in s["units_relevant_per_fold"].values())
    units = (f"Latent units clinically relevant (family-wise {rule} over {family}, eta = {s['eta']:g}): "
             f"{per_fold}" + (" per fold." if F > 1 else "."))
    names = s["positive_regions"]
    if names:
        shown = ", ".join(str(x) for x in names[:10]) + (", ..." if len(names) > 10 else "")
        regions = (f" {len(names)} of {J} regions are LRCP-positive (tied to a relevant unit and passing their "
                   f"own family-wise test" + (" in most folds" if F > 1 else "") + f"): {shown}.")
    else:
        regions = (f" No region is LRCP-positive: none is both tied to a relevant unit by a significant "
                   f"correlation and discriminative under the family-wise test over the {J} regions.")
    return units + regions


def lrcp_claims(model, contrast: str) -> list:
    """The unit, region and LRCP claims of one fitted :class:`LRCP` (see :mod:`latentbids.analysis.claims`).

    The claims copy the estimator's verdicts (nothing is re-decided here): a ``unit`` claim per row of
    ``units_`` (supported = ``relevant``), a ``region`` claim per row of ``region_tests_`` (supported =
    ``discriminates``) and an ``lrcp`` claim per row of ``consensus_`` (supported = ``lrcp_positive``;
    ``exploratory`` when no unit was relevant).

    Parameters
    ----------
    model : LRCP
        A fitted :class:`latentbids.analysis.lrcp.LRCP`.
    contrast : str
        The contrast's name, ``"A vs B"``.

    Returns
    -------
    list of Claim
        ``n_folds * n_units`` unit claims, then ``n_regions`` region claims, then ``n_regions`` LRCP
        claims.  ``p`` is the unit's or region's family-wise permutation p (for an LRCP claim the region's
        own test; NaN under Bonferroni); ``bound`` is ``score_star`` for units and regions, NaN for LRCP.
    """
    s = model.summary_
    stat_name = "best-threshold balanced accuracy" if s["statistic"] == "balanced" else "best-threshold accuracy"
    rule = ("max-statistic label permutation" if s["family_correction"] == "permutation" else "Bonferroni")
    F, K, J = s["n_folds"], s["K"], s["J"]
    unit_family = f"{rule} over {s['unit_family_size']} units" + (f" ({F} folds x {K})" if F > 1 else "")
    out = []
    for u in model.units_.itertuples():
        out.append(Claim(contrast=contrast, family="unit", item=str(u.unit), fold=str(u.fold),
                         statistic_name=stat_name, statistic=float(u.statistic), p=float(u.p_fwer),
                         bound=float(u.score_star), correction=unit_family, supported=bool(u.relevant)))
    for r in model.region_tests_.itertuples():
        out.append(Claim(contrast=contrast, family="region", item=str(r.region), statistic_name=stat_name,
                         statistic=float(r.statistic), p=float(r.p_fwer), bound=float(r.score_star),
                         correction=f"{rule} over {J} regions", supported=bool(r.discriminates)))
    note = "" if s["latent_informative"] else (
        "no latent unit is relevant: the latent space carries no detectable information about this contrast "
        "at this n; the score ranking is exploratory")
    for r in model.consensus_.itertuples():
        out.append(Claim(
            contrast=contrast, family="lrcp", item=str(r.region), statistic_name="mean LRCP score S_j",
            statistic=float(r.mean_score), p=float(r.p_fwer), bound=math.nan,
            correction=(f"tied to a relevant unit ({unit_family}) by a {s['correction']} significant correlation, "
                        f"and the region's own test ({rule} over {J} regions)"
                        + (f"; positive in {r.n_folds_positive} of {F} folds (needs more than half)" if F > 1 else "")),
            supported=bool(r.lrcp_positive), exploratory=bool(r.exploratory), note=note))
    return out
