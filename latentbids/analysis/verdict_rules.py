"""The verdict rule of each claim family: its claims in words, and nothing more than they support.

One function per family (two families share one where only the words differ), each ``rule(tests, ctx)``:
``tests`` are the family's claims (of one contrast, or of the whole cohort), never empty, and ``ctx`` a
:class:`VerdictContext`.  The families point to these functions in their declaration
(:data:`latentbids.analysis.claims.CLAIM_FAMILIES`); :mod:`latentbids.analysis.verdicts` runs them in the
families' order.  A family with no supported claim says what it could have found at this n
(:func:`latentbids.analysis.power.power_sentence`): a silent test is never evidence of absence.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

from latentbids.analysis.power import power_sentence

#: at most this many item names in one sentence (the tables hold them all)
MAX_NAMES = 8


@dataclass(frozen=True)
class VerdictContext:
    """What a verdict rule knows besides its claims.

    Attributes
    ----------
    family : str
        The family whose claims are read (for its power sentence).
    contrast : str
        ``"A vs B"``, or ``""`` for the claims about the whole cohort.
    head : str
        ``"A vs B (n = 40; 20 A, 20 B)"``: how the contrast's first sentences open (``""`` for the cohort).
    eta : float
        Family-wise error rate, in (0, 1).
    smaller : int
        Subjects in the contrast's smaller class (the power table's row); 0 for the cohort.
    """

    family: str
    contrast: str = ""
    head: str = ""
    eta: float = 0.05
    smaller: int = 0


def _names(items) -> str:
    items = list(items)
    shown = ", ".join(items[:MAX_NAMES])
    return shown + (f" and {len(items) - MAX_NAMES} more" if len(items) > MAX_NAMES else "")


def _p(p: float) -> str:
    """``p = 0.03``, ``p < 0.001`` or ``p n/a``."""
    if not math.isfinite(p):
        return "p n/a"
    return f"p = {p:.2g}" if p >= 0.001 else "p < 0.001"


# --------------------------------------------------------------------------------------------------
# per contrast


def latent_vector_sentences(tests, ctx: VerdictContext) -> list[str]:
    """The held-out test of the whole latent vector: one sentence per claim.

    Parameters
    ----------
    tests : list of Claim
        The contrast's ``latent_vector`` claims.
    ctx : VerdictContext
        The contrast.

    Returns
    -------
    list of str
        ``"<head>: the whole <item> separates the classes out of sample (...)"`` or its silent form.
    """
    out = []
    for c in tests:
        score = f"held-out balanced accuracy {c.statistic:.2f}, {_p(c.p)}" if math.isfinite(c.statistic) else c.note
        verdict = ("separates the classes out of sample" if c.supported else
                   "is not shown to separate the classes out of sample. " + power_sentence(ctx.family, ctx.smaller))
        out.append(f"{ctx.head}: the whole {c.item} {verdict} ({score}; {c.correction}).")
    return out


def unit_sentences(tests, ctx: VerdictContext) -> list[str]:
    """The clinically relevant latent units (per fold in k-fold mode), or that none was shown.

    Parameters
    ----------
    tests : list of Claim
        The contrast's ``unit`` claims (every unit of every fold).
    ctx : VerdictContext
        The contrast.

    Returns
    -------
    list of str
        One sentence.
    """
    folds = list(dict.fromkeys(c.fold for c in tests))
    per_fold = [sum(c.supported for c in tests if c.fold == f) for f in folds]
    rel = [c for c in tests if c.supported]
    family, head, eta = tests[0].correction, ctx.head, ctx.eta
    if rel:
        shown = _names(f"{'fold ' + c.fold + ' ' if len(folds) > 1 else ''}{c.item} "
                       f"({c.statistic:.2f}, {_p(c.p)})" for c in rel)
        return [f"{head}: latent units clinically relevant" + (f" per fold: {', '.join(map(str, per_fold))}"
                if len(folds) > 1 else f": {len(rel)}") + f" ({family}, eta = {eta:g}): {shown}."]
    return [f"{head}: no single latent unit was shown to carry this contrast ({family}, eta = {eta:g}); that is a "
            "limit of the test at this n, not evidence that the latent space lacks the information. "
            + power_sentence(ctx.family, ctx.smaller)]


def counted_sentences(tests, ctx: VerdictContext, what: str) -> list[str]:
    """``"<contrast>: k of J <what> (<correction>): <names>."``, for a family of per-region claims.

    Parameters
    ----------
    tests : list of Claim
        The contrast's claims of the family (``region``, ``sam``).
    ctx : VerdictContext
        The contrast.
    what : str
        The plural noun phrase of the family (``"regions have a mean GM that separates the classes"``).

    Returns
    -------
    list of str
        One sentence.
    """
    hit = [c.item for c in tests if c.supported]
    return [f"{ctx.contrast}: {len(hit)} of {len(tests)} {what} ({tests[0].correction})"
            + (f": {_names(hit)}." if hit else ". " + power_sentence(ctx.family, ctx.smaller))]


def lrcp_sentences(tests, ctx: VerdictContext) -> list[str]:
    """The LRCP-positive regions, or why there is none (no relevant unit: the ranking is exploratory).

    Parameters
    ----------
    tests : list of Claim
        The contrast's ``lrcp`` claims.
    ctx : VerdictContext
        The contrast.

    Returns
    -------
    list of str
        One sentence.
    """
    contrast = ctx.contrast
    pos = [c.item for c in tests if c.supported]
    if pos:
        return [f"{contrast}: {len(pos)} region(s) are LRCP-positive (separating the classes and tied to a "
                f"relevant latent unit, each family-wise): {_names(pos)}."]
    why = ("no single latent unit was shown to be relevant, and the LRCP ranking in the tables is "
           "exploratory, not a finding" if any(c.exploratory for c in tests) else
           "none both separates the classes and is tied to a relevant unit under the family-wise tests")
    return [f"{contrast}: no region is LRCP-positive: {why}. " + power_sentence(ctx.family, ctx.smaller)]


def paper_bound_sentences(tests, ctx: VerdictContext, what: str) -> list[str]:
    """The paper's in-sample bound (d = K) or RUB: reported as the paper does, never read as absence; a bound
    that does not pass says what it would have found at this n (its measured power: the in-sample bound passes
    at large n or large effects, RUB's Gibbs classifier almost never).

    Parameters
    ----------
    tests : list of Claim
        The contrast's claims of the family (one per fold).
    ctx : VerdictContext
        The contrast.
    what : str
        The bound in words.

    Returns
    -------
    list of str
        One sentence.
    """
    hit = [c for c in tests if c.supported]
    if hit:
        verdict = "passes" + (f" in {len(hit)} of {len(tests)} folds" if len(tests) > 1 else "")
    else:
        verdict = "does not pass" + (" in any fold" if len(tests) > 1 else "")
    return [f"{ctx.contrast}: {what} ({tests[0].item}) {verdict} ({tests[0].correction})."
            + ("" if hit else " Its silence is not evidence about the latent space. "
               + power_sentence(ctx.family, ctx.smaller))]


region_sentences = partial(counted_sentences, what="regions have a mean GM that separates the classes")
sam_sentences = partial(counted_sentences, what="regions are supported by SAM (the bound and the family-wise "
                                                "permutation p of the voxel selection agree)")
vector_bound_sentences = partial(paper_bound_sentences, what="the paper's in-sample bound with d = K")
rub_sentences = partial(paper_bound_sentences,
                        what="RUB, the PAC-Bayes bound on the Gibbs classifier and permutation p")


# --------------------------------------------------------------------------------------------------
# about the whole cohort


def pc1_sentences(tests, ctx: VerdictContext) -> list[str]:
    """Whether PC1 of the latent codes tracks a global measure (only when some correlation was computed).

    Parameters
    ----------
    tests : list of Claim
        The ``pc1`` claims.
    ctx : VerdictContext
        Unused (the cohort).

    Returns
    -------
    list of str
        One sentence, or none.
    """
    tested = [c for c in tests if math.isfinite(c.statistic)]
    if not tested:
        return []
    hit = [c for c in tested if c.supported]
    if hit:
        return ["PC1 of the latent codes tracks " + ", ".join(f"{c.item} (r = {c.statistic:.2f}, {_p(c.p)})"
                                                             for c in hit)
                + f" ({tested[0].correction}): an axis that mostly measures this is a finding about it, not a "
                  "regional biomarker."]
    return [f"PC1 of the latent codes is not shown to track any of {', '.join(c.item for c in tested)} "
            f"({tested[0].correction})."]


def shap_sentences(tests, ctx: VerdictContext) -> list[str]:
    """The SHAP surrogates: a supported one supports the model (the error is predictable), not its regions.

    Parameters
    ----------
    tests : list of Claim
        The ``shap`` claims (one per surrogate model).
    ctx : VerdictContext
        Unused (the cohort).

    Returns
    -------
    list of str
        One sentence.
    """
    hit = [c for c in tests if c.supported]
    if hit:
        return ["SHAP: the reconstruction error is explained out of sample for " + ", ".join(
            f"{c.item} (CV R^2 = {c.statistic:.2f}, {_p(c.p)})" for c in hit)
            + f" ({tests[0].correction}): the error is predictable from regional GM; these models' SHAP maps "
              "are model-level, and no region is a finding on its own."]
    return [f"SHAP: no surrogate of the reconstruction error is supported ({tests[0].correction}): the "
            "error was not shown to be predictable from regional GM at this n (not evidence that it is "
            "not); no SHAP claim is made and no SHAP map is a finding."]


def shap_regions_sentences(tests, ctx: VerdictContext) -> list[str]:
    """The held-out test of the top SHAP regions, one sentence per claim.

    Parameters
    ----------
    tests : list of Claim
        The ``shap_regions`` claims.
    ctx : VerdictContext
        Unused (the cohort).

    Returns
    -------
    list of str
        One sentence per claim.
    """
    out = []
    for c in tests:
        if c.supported:
            out.append(f"Top SHAP regions ({c.item}): as a set they predict the error of subjects that did not "
                       f"choose them (held-out R^2 = {c.statistic:.3f}, {_p(c.p)}; {c.correction}); no single "
                       "region is a finding on its own.")
        else:
            out.append(f"Top SHAP regions ({c.item}): not shown to predict the error of subjects that did not choose "
                       f"them (held-out R^2 = {c.statistic:.3f}, {_p(c.p)}; {c.correction}); a silent test is not "
                       f"evidence of absence ({c.note}).")
    return out


def sar_sentences(tests, ctx: VerdictContext) -> list[str]:
    """SAR, the paper's check on the top SHAP regions, one sentence per claim (little power: never absence).

    Parameters
    ----------
    tests : list of Claim
        The ``sar`` claims.
    ctx : VerdictContext
        Unused (the cohort).

    Returns
    -------
    list of str
        One sentence per claim.
    """
    out = []
    for c in tests:
        verdict = ("rejects" if c.supported else
                   "does not reject; SAR has little power, so this is not evidence that these regions do not "
                   "predict the error")
        out.append(f"SAR, the paper's check on the top SHAP regions ({c.item}) in subjects that did not choose "
                   f"them, {verdict} ({_p(c.p)}; {c.correction}; {c.note}).")
    return out
