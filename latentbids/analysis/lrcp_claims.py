"""What LRCP says: its verdict in words and its claims (units, regions, LRCP-positive regions).

Both read a fitted :class:`latentbids.analysis.lrcp.LRCP` (its ``summary_`` and tables) and decide
nothing: every verdict was made by the estimator's family-wise tests.
"""
from __future__ import annotations

import math

from latentbids.analysis.claims import LRCP, REGION, UNIT, Claim


def lrcp_statement(s: dict) -> str:
    """The LRCP verdict of one contrast, in words.

    The sentence ``LRCP.summary_["statement"]`` holds: it says whether any latent unit is clinically
    relevant (and if not, that no single unit was shown to carry the contrast at this n, a limit of the test
    and not evidence of absence, and that the ranking is exploratory) and which regions are LRCP-positive.

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
    what = STATISTIC_NAMES.get(s["statistic"], s["statistic"])
    family = f"{K} units" + (f" x {F} folds" if F > 1 else "")
    if not math.isfinite(s["best_unit_statistic"]):
        return (f"The latent units' clinical relevance could not be assessed at n = {n} "
                f"({'; '.join(s['reasons']) or 'too few subjects'}).")
    if not s["latent_informative"]:
        return (f"No single latent unit was shown to carry this contrast at n = {n} (best one-unit {what} "
                f"{s['best_unit_statistic']:.2f}, below the family-wise critical value {s['unit_critical']:.2f}; "
                f"{rule} over {family}, eta = {s['eta']:g}). This is a limit of the test at this n, not evidence "
                "that the latent space lacks the information; no region is LRCP-positive and the region ranking "
                "shown is exploratory.")
    per_fold = ", ".join(str(v) for v in s["units_relevant_per_fold"].values())
    units = (f"Latent units clinically relevant (family-wise {rule} over {family}, eta = {s['eta']:g}): "
             f"{per_fold}" + (" per fold." if F > 1 else "."))
    names = s["positive_regions"]
    if names:
        shown = ", ".join(str(x) for x in names[:10]) + (", ..." if len(names) > 10 else "")
        regions = (f" {len(names)} of {J} regions are LRCP-positive (passing their own family-wise test and tied "
                   "to a relevant unit by a family-wise significant correlation" + (" in at least one fold" if F > 1
                                                                                    else "") + f"): {shown}.")
    else:
        regions = (f" No region is LRCP-positive: none of the {J} regions both passes its own family-wise test and "
                   "is tied to a relevant unit by a family-wise significant correlation.")
    return units + regions


#: the discriminability statistics in words (claims, statements)
STATISTIC_NAMES = {"welch": "Welch |t|", "auc": "|AUC - 0.5|", "balanced": "best-threshold balanced accuracy",
                   "majority": "best-threshold accuracy"}


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
    stat_name = STATISTIC_NAMES.get(s["statistic"], s["statistic"])
    rule = ("max-statistic label permutation" if s["family_correction"] == "permutation" else "Bonferroni")
    F, K, J = model.n_folds_, model.n_units_, model.n_regions_
    unit_family = f"{rule} over {s['unit_family_size']} units" + (f" ({F} folds x {K})" if F > 1 else "")
    out = []
    for u in model.units_.itertuples():
        out.append(Claim(contrast=contrast, family=UNIT, item=str(u.unit), fold=str(u.fold),
                         statistic_name=stat_name, statistic=float(u.statistic), p=float(u.p_fwer),
                         bound=float(u.score_star), correction=unit_family, supported=bool(u.relevant)))
    for r in model.region_tests_.itertuples():
        out.append(Claim(contrast=contrast, family=REGION, item=str(r.region), statistic_name=stat_name,
                         statistic=float(r.statistic), p=float(r.p_fwer), bound=float(r.score_star),
                         correction=f"{rule} over {J} regions", supported=bool(r.discriminates)))
    note = "" if s["latent_informative"] else (
        "no single latent unit was shown to carry this contrast at this n (a limit of the test, not evidence of "
        "absence): the score ranking is exploratory")
    for r in model.consensus_.itertuples():
        out.append(Claim(
            contrast=contrast, family=LRCP, item=str(r.region), statistic_name="mean LRCP score S_j",
            statistic=float(r.mean_score), p=float(r.p_fwer), bound=math.nan,
            correction=(f"tied to a relevant unit ({unit_family}) by a family-wise significant correlation ({rule} "
                        "over every discriminating region x every relevant unit), and the region's own test ({rule} "
                        f"over {J} regions)" + (f"; positive in {r.n_folds_positive} of {F} folds (any fold suffices; "
                                                "the share is stability)" if F > 1 else "")),
            supported=bool(r.lrcp_positive), exploratory=bool(r.exploratory), note=note))
    return out
