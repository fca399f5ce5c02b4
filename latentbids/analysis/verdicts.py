"""The verdicts in words, generated from the claims list and nothing else.

The headline names only supported claims; every sentence below it is a reading of the claims of one
family (counts, items, the correction used).  ``analysis.json`` and the HTML report print these strings,
so a statement of significance can only appear where a :class:`~latentbids.analysis.claims.Claim` with
``supported = True`` backs it.
"""
from __future__ import annotations

import math

from latentbids.analysis.claims import ClaimsList

#: at most this many item names in one sentence (the tables hold them all)
MAX_NAMES = 8


def _names(items) -> str:
    items = list(items)
    shown = ", ".join(items[:MAX_NAMES])
    return shown + (f" and {len(items) - MAX_NAMES} more" if len(items) > MAX_NAMES else "")


def _p(p: float) -> str:
    """``p = 0.03``, ``p < 0.001`` or ``p n/a``."""
    if not math.isfinite(p):
        return "p n/a"
    return f"p = {p:.2g}" if p >= 0.001 else "p < 0.001"


def contrast_verdicts(claims: ClaimsList, contrast: str, n: int, n_per_class: dict, eta: float) -> list[str]:
    """One sentence per claim family of one contrast.

    A reading of the claims list and nothing else: counts, supported items (at most :data:`MAX_NAMES`
    named) and the correction each family used, so no sentence can say more than the claims support.

    Parameters
    ----------
    claims : ClaimsList
        Every claim of the analysis (only this contrast's are read).
    contrast : str
        The contrast's name, ``"A vs B"``.
    n : int
        Subjects in the contrast.
    n_per_class : dict of str to int
        Label -> number of subjects, in class order.
    eta : float
        Family-wise error rate, in (0, 1), quoted in the unit sentence.

    Returns
    -------
    list of str
        In order, one sentence for each family that has claims: units, regions, LRCP, SAM, latent vector,
        RUB.  Empty when the contrast has no claim.
    """
    counts = ", ".join(f"{v} {k}" for k, v in n_per_class.items())
    head = f"{contrast} (n = {n}; {counts})"
    out = []
    units = claims.select("unit", contrast)
    if units:
        folds = list(dict.fromkeys(c.fold for c in units))
        per_fold = [sum(c.supported for c in units if c.fold == f) for f in folds]
        rel = [c for c in units if c.supported]
        family = units[0].correction
        if rel:
            shown = _names(f"{'fold ' + c.fold + ' ' if len(folds) > 1 else ''}{c.item} "
                           f"({c.statistic:.2f}, {_p(c.p)})" for c in rel)
            out.append(f"{head}: latent units clinically relevant" + (f" per fold: {', '.join(map(str, per_fold))}"
                       if len(folds) > 1 else f": {len(rel)}") + f" ({family}, eta = {eta:g}): {shown}.")
        else:
            out.append(f"{head}: no latent unit is clinically relevant ({family}, eta = {eta:g}): the latent space "
                       "carries no detectable information about this contrast at this n.")
    regions = claims.select("region", contrast)
    if regions:
        hit = [c.item for c in regions if c.supported]
        out.append(f"{contrast}: {len(hit)} of {len(regions)} regions have a mean GM that separates the classes "
                   f"({regions[0].correction})" + (f": {_names(hit)}." if hit else "."))
    lrcp = claims.select("lrcp", contrast)
    if lrcp:
        pos = [c.item for c in lrcp if c.supported]
        if pos:
            out.append(f"{contrast}: {len(pos)} region(s) are LRCP-positive (encoded by a relevant latent unit and "
                       f"separating the classes): {_names(pos)}.")
        elif any(c.exploratory for c in lrcp):
            out.append(f"{contrast}: no region is LRCP-positive, because no latent unit is relevant; the LRCP "
                       "ranking in the tables is exploratory, not a finding.")
        else:
            out.append(f"{contrast}: no region is LRCP-positive (none is both tied to a relevant unit and "
                       "separating the classes under the family-wise test).")
    sam = claims.select("sam", contrast)
    if sam:
        hit = [c.item for c in sam if c.supported]
        out.append(f"{contrast}: SAM supports {len(hit)} of {len(sam)} regions (the bound and the family-wise "
                   "permutation p of the voxel selection agree)" + (f": {_names(hit)}." if hit else "."))
    for family, what in (("latent_vector", "bound with d = K"), ("rub", "RUB, PAC-Bayes bound on the Gibbs "
                                                                  "classifier and permutation p")):
        tests = claims.select(family, contrast)
        if tests:
            hit = [c for c in tests if c.supported]
            if hit:
                verdict = "separates the classes" + (f" in {len(hit)} of {len(tests)} folds" if len(tests) > 1 else "")
            else:
                verdict = "is not shown to separate the classes" + (" in any fold" if len(tests) > 1 else "")
            out.append(f"{contrast}: the whole {tests[0].item} {verdict} ({what}; {tests[0].correction}).")
    return out


def cohort_verdicts(claims: ClaimsList) -> list[str]:
    """Sentences for the claims about the whole cohort: PC1, SHAP surrogates, SAR.

    Parameters
    ----------
    claims : ClaimsList
        Every claim of the analysis (the ``pc1``, ``shap`` and ``sar`` families are read).

    Returns
    -------
    list of str
        One PC1 sentence (when some PC1 correlation was computed), one SHAP sentence (when there are
        surrogate claims), one sentence per SAR claim.
    """
    out = []
    pc1 = claims.select("pc1")
    tested = [c for c in pc1 if math.isfinite(c.statistic)]
    if tested:
        hit = [c for c in tested if c.supported]
        if hit:
            out.append("PC1 of the latent codes tracks " + ", ".join(
                f"{c.item} (r = {c.statistic:.2f}, {_p(c.p)})" for c in hit)
                + f" ({tested[0].correction}): an axis that mostly measures this is a finding about it, not a "
                  "regional biomarker.")
        else:
            out.append(f"PC1 of the latent codes tracks none of {', '.join(c.item for c in tested)} "
                       f"({tested[0].correction}).")
    shap = claims.select("shap")
    if shap:
        hit = [c for c in shap if c.supported]
        if hit:
            out.append("SHAP: the reconstruction error is explained out of sample for " + ", ".join(
                f"{c.item} (CV R^2 = {c.statistic:.2f}, {_p(c.p)})" for c in hit)
                + f" ({shap[0].correction}); only these models' SHAP maps are findings.")
        else:
            out.append(f"SHAP: no surrogate of the reconstruction error is supported ({shap[0].correction}); "
                       "no SHAP claim is made and no SHAP map is a finding.")
    for c in claims.select("sar"):
        out.append(f"SAR: the error on the top SHAP regions ({c.item}) is "
                   + ("predicted" if c.supported else "not shown to be predicted")
                   + f" in subjects that did not choose them ({_p(c.p)}; {c.correction}).")
    return out


def headline(claims: ClaimsList, contrasts: list[str], n_subjects: int) -> str:
    """One sentence that names only supported claims (or says that none is supported).

    The first thing a reader sees, so it never mentions an unsupported or exploratory statement.
    Regions whose GM separates the classes are named only when the contrast has no LRCP-positive region.

    Parameters
    ----------
    claims : ClaimsList
        Every claim of the analysis.
    contrasts : list of str
        Names of the contrasts that ran, in order.
    n_subjects : int
        Distinct participants analysed (quoted when nothing is supported).

    Returns
    -------
    str
        ``"Supported claims (family-wise, eta as configured): ..."``, or a sentence saying that no
        claim is supported at ``n = n_subjects``.
    """
    parts = []
    for name in contrasts:
        bits = []
        lrcp = claims.supported_items("lrcp", name)
        if lrcp:
            bits.append(f"{len(lrcp)} LRCP-positive region(s) ({_names(lrcp)})")
        units = claims.select("unit", name, supported=True)
        if units:
            folds = sorted({c.fold for c in claims.select("unit", name)})
            with_units = sorted({c.fold for c in units})
            bits.append(f"clinically relevant latent units in {len(with_units)} of {len(folds)} fold(s)"
                        if len(folds) > 1 else f"{len(units)} clinically relevant latent unit(s)")
        sam = claims.supported_items("sam", name)
        if sam:
            bits.append(f"{len(sam)} SAM region(s)")
        region = claims.supported_items("region", name)
        if region and not lrcp:
            bits.append(f"{len(region)} region(s) whose GM separates the classes")
        for family, what in (("latent_vector", "the latent vector (bound)"), ("rub", "the latent vector (RUB)")):
            if claims.select(family, name, supported=True):
                bits.append(what)
        if bits:
            parts.append(f"{name}: " + "; ".join(bits))
    cohort = []
    if claims.select("pc1", supported=True):
        cohort.append("PC1 tracks " + ", ".join(claims.supported_items("pc1")))
    if claims.select("shap", supported=True):
        cohort.append("SHAP surrogate supported for " + ", ".join(claims.supported_items("shap")))
    if claims.select("sar", supported=True):
        cohort.append("SAR confirms the top SHAP regions")
    parts += cohort
    if not parts:
        return (f"No statistical claim is supported at n = {n_subjects}: every test below failed to reach "
                "family-wise significance, so nothing in this report is a finding.")
    return "Supported claims (family-wise, eta as configured): " + ". ".join(parts) + "."
