"""The verdicts in words, generated from the claims list and nothing else.

The headline names only supported claims; every sentence below it is a reading of the claims of one
family (counts, items, the correction used), by the family's own verdict rule
(:attr:`~latentbids.analysis.claims.ClaimFamily.verdict`, :mod:`latentbids.analysis.verdict_rules`), in the
families' order.  ``analysis.json`` and the HTML report print these strings, so a statement of significance
can only appear where a :class:`~latentbids.analysis.claims.Claim` with ``supported = True`` backs it.
"""
from __future__ import annotations

from latentbids.analysis.claims import ClaimsList, families_in_order
from latentbids.analysis.verdict_rules import VerdictContext


def contrast_verdicts(claims: ClaimsList, contrast: str, n: int, n_per_class: dict, eta: float) -> list[str]:
    """One sentence per claim family of one contrast.

    A reading of the claims list and nothing else: counts, supported items (at most
    :data:`~latentbids.analysis.verdict_rules.MAX_NAMES` named) and the correction each family used, so no
    sentence can say more than the claims support.  A family with no supported claim gets, instead of a
    reading of its silence, what it could have found at this n (:func:`latentbids.analysis.power.power_sentence`):
    a silent test is never evidence of absence.

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
        In the families' order, the sentences of each family that has claims: the latent vector (held out),
        units, regions, SAM, LRCP, then the paper's in-sample bound and RUB.  Empty when the contrast has no
        claim.
    """
    counts = ", ".join(f"{v} {k}" for k, v in n_per_class.items())
    smaller = min(n_per_class.values()) if n_per_class else n
    head = f"{contrast} (n = {n}; {counts})"
    out = []
    for family in families_in_order("contrast"):
        tests = claims.select(family.name, contrast)
        if tests and family.verdict is not None:
            out += family.verdict(tests, VerdictContext(family.name, contrast, head, eta, smaller))
    return out


def cohort_verdicts(claims: ClaimsList) -> list[str]:
    """Sentences for the claims about the whole cohort: PC1, SHAP surrogates, the top SHAP regions, SAR.

    A test that did not reject is said as such ("not shown to"), with its measured power where the claim
    carries it, never as absence; a supported surrogate is said to support the model, not its regions.

    Parameters
    ----------
    claims : ClaimsList
        Every claim of the analysis (the families about the whole cohort are read: ``pc1``, ``shap``,
        ``shap_regions``, ``sar``).

    Returns
    -------
    list of str
        In the families' order: one PC1 sentence (when some PC1 correlation was computed), one SHAP sentence
        (when there are surrogate claims), one sentence per held-out test of the top regions, one per SAR claim.
    """
    out = []
    for family in families_in_order("cohort"):
        tests = claims.select(family.name)
        if tests and family.verdict is not None:
            out += family.verdict(tests, VerdictContext(family.name))
    return out
