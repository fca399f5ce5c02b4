"""The verdicts in words, generated from the claims list and nothing else.

The headline names only supported claims; every sentence below it is a reading of the claims of one
family (counts, items, the correction used).  ``analysis.json`` and the HTML report print these strings,
so a statement of significance can only appear where a :class:`~latentbids.analysis.claims.Claim` with
``supported = True`` backs it.
"""
from __future__ import annotations

import math

from latentbids.analysis.claims import ClaimsList
from latentbids.analysis.power import power_sentence

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
    named) and the correction each family used, so no sentence can say more than the claims support.  A
    family with no supported claim gets, instead of a reading of its silence, what it could have found at
    this n (:func:`latentbids.analysis.power.power_sentence`): a silent test is never evidence of absence.

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
        In order, one sentence for each family that has claims: the latent vector (held out), units, regions,
        LRCP, SAM, then the paper's in-sample bound and RUB.  Empty when the contrast has no claim.
    """
    counts = ", ".join(f"{v} {k}" for k, v in n_per_class.items())
    smaller = min(n_per_class.values()) if n_per_class else n
    head = f"{contrast} (n = {n}; {counts})"
    out = []
    for c in claims.select("latent_vector", contrast):
        score = f"held-out balanced accuracy {c.statistic:.2f}, {_p(c.p)}" if math.isfinite(c.statistic) else c.note
        verdict = ("separates the classes out of sample" if c.supported else
                   "is not shown to separate the classes out of sample. " + power_sentence("latent_vector", smaller))
        out.append(f"{head}: the whole {c.item} {verdict} ({score}; {c.correction}).")
    out += _unit_sentences(claims, contrast, head, eta, smaller)
    for family, what in (("region", "regions have a mean GM that separates the classes"),
                         ("sam", "regions are supported by SAM (the bound and the family-wise permutation p of "
                                 "the voxel selection agree)")):
        tests = claims.select(family, contrast)
        if tests:
            hit = [c.item for c in tests if c.supported]
            out.append(f"{contrast}: {len(hit)} of {len(tests)} {what} ({tests[0].correction})"
                       + (f": {_names(hit)}." if hit else ". " + power_sentence(family, smaller)))
    lrcp = claims.select("lrcp", contrast)
    if lrcp:
        pos = [c.item for c in lrcp if c.supported]
        if pos:
            out.append(f"{contrast}: {len(pos)} region(s) are LRCP-positive (separating the classes and tied to a "
                       f"relevant latent unit, each family-wise): {_names(pos)}.")
        else:
            why = ("no single latent unit was shown to be relevant, and the LRCP ranking in the tables is "
                   "exploratory, not a finding" if any(c.exploratory for c in lrcp) else
                   "none both separates the classes and is tied to a relevant unit under the family-wise tests")
            out.append(f"{contrast}: no region is LRCP-positive: {why}. " + power_sentence("lrcp", smaller))
    out += _paper_bound_sentences(claims, contrast, smaller)
    return out


def _unit_sentences(claims: ClaimsList, contrast: str, head: str, eta: float, smaller: int) -> list[str]:
    units = claims.select("unit", contrast)
    if not units:
        return []
    folds = list(dict.fromkeys(c.fold for c in units))
    per_fold = [sum(c.supported for c in units if c.fold == f) for f in folds]
    rel = [c for c in units if c.supported]
    family = units[0].correction
    if rel:
        shown = _names(f"{'fold ' + c.fold + ' ' if len(folds) > 1 else ''}{c.item} "
                       f"({c.statistic:.2f}, {_p(c.p)})" for c in rel)
        return [f"{head}: latent units clinically relevant" + (f" per fold: {', '.join(map(str, per_fold))}"
                if len(folds) > 1 else f": {len(rel)}") + f" ({family}, eta = {eta:g}): {shown}."]
    return [f"{head}: no single latent unit was shown to carry this contrast ({family}, eta = {eta:g}); that is a "
            "limit of the test at this n, not evidence that the latent space lacks the information. "
            + power_sentence("unit", smaller)]


def _paper_bound_sentences(claims: ClaimsList, contrast: str, smaller: int) -> list[str]:
    """The paper's in-sample bound (d = K) and RUB: reported as the paper does, never read as absence; a bound
    that does not pass says what it would have found at this n (its measured power: the in-sample bound passes
    at large n or large effects, RUB's Gibbs classifier almost never)."""
    out = []
    for family, what in (("vector_bound", "the paper's in-sample bound with d = K"),
                         ("rub", "RUB, the PAC-Bayes bound on the Gibbs classifier and permutation p")):
        tests = claims.select(family, contrast)
        if not tests:
            continue
        hit = [c for c in tests if c.supported]
        if hit:
            verdict = "passes" + (f" in {len(hit)} of {len(tests)} folds" if len(tests) > 1 else "")
        else:
            verdict = "does not pass" + (" in any fold" if len(tests) > 1 else "")
        out.append(f"{contrast}: {what} ({tests[0].item}) {verdict} ({tests[0].correction})."
                   + ("" if hit else " Its silence is not evidence about the latent space. "
                      + power_sentence(family, smaller)))
    return out


def cohort_verdicts(claims: ClaimsList) -> list[str]:
    """Sentences for the claims about the whole cohort: PC1, SHAP surrogates, the top SHAP regions, SAR.

    A test that did not reject is said as such ("not shown to"), with its measured power where the claim
    carries it, never as absence; a supported surrogate is said to support the model, not its regions.

    Parameters
    ----------
    claims : ClaimsList
        Every claim of the analysis (the ``pc1``, ``shap``, ``shap_regions`` and ``sar`` families are read).

    Returns
    -------
    list of str
        One PC1 sentence (when some PC1 correlation was computed), one SHAP sentence (when there are
        surrogate claims), one sentence per held-out test of the top regions, one per SAR claim.
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
            out.append(f"PC1 of the latent codes is not shown to track any of {', '.join(c.item for c in tested)} "
                       f"({tested[0].correction}).")
    shap = claims.select("shap")
    if shap:
        hit = [c for c in shap if c.supported]
        if hit:
            out.append("SHAP: the reconstruction error is explained out of sample for " + ", ".join(
                f"{c.item} (CV R^2 = {c.statistic:.2f}, {_p(c.p)})" for c in hit)
                + f" ({shap[0].correction}): the error is predictable from regional GM; these models' SHAP maps "
                  "are model-level, and no region is a finding on its own.")
        else:
            out.append(f"SHAP: no surrogate of the reconstruction error is supported ({shap[0].correction}): the "
                       "error was not shown to be predictable from regional GM at this n (not evidence that it is "
                       "not); no SHAP claim is made and no SHAP map is a finding.")
    for c in claims.select("shap_regions"):
        if c.supported:
            out.append(f"Top SHAP regions ({c.item}): as a set they predict the error of subjects that did not "
                       f"choose them (held-out R^2 = {c.statistic:.3f}, {_p(c.p)}; {c.correction}); no single "
                       "region is a finding on its own.")
        else:
            out.append(f"Top SHAP regions ({c.item}): not shown to predict the error of subjects that did not choose "
                       f"them (held-out R^2 = {c.statistic:.3f}, {_p(c.p)}; {c.correction}); a silent test is not "
                       f"evidence of absence ({c.note}).")
    for c in claims.select("sar"):
        verdict = ("rejects" if c.supported else
                   "does not reject; SAR has little power, so this is not evidence that these regions do not "
                   "predict the error")
        out.append(f"SAR, the paper's check on the top SHAP regions ({c.item}) in subjects that did not choose "
                   f"them, {verdict} ({_p(c.p)}; {c.correction}; {c.note}).")
    return out
