"""The headline: the first sentence a reader sees, with an error rate that holds across contrasts.

Why a hierarchy: each family is controlled family-wise per contrast, so with three labels (three contrasts)
and several families the chance that *some* headline claim is false on a global null was 22 % (METHOD.md
section 9).  The headline therefore names a claim about contrast ``c`` only through a fixed sequence tested at
``eta / C`` (``C`` contrasts, Bonferroni):

1. the whole latent vector separates the classes out of sample (``latent_vector``, one test: the gate);
2. then latent units (``unit``, the family's max-statistic p at ``eta / (2 C)``);
3. then regions (``region``) and LRCP-positive regions (``lrcp``: supported, and its region's own p at
   ``eta / (2 C)``).

On a global null every headline claim about any contrast needs some contrast's gate to reject, which happens
with probability at most ``C x eta / C = eta``: the report-wide rate the headline states, and the one
``benchmarks/calibration.py --end-to-end`` measures on 3-label null cohorts.  Past a gate that rightly
rejects, units and regions may still hold true nulls; each family is family-wise at half the contrast's
level, so a false unit or region claim has probability at most ``eta / C`` there too (strong control, not
only on the global null).  A contrast with per-family
findings that do not reach the headline is named as such.  Claims about the whole cohort (PC1, SHAP) involve
no label; they follow, each family at ``eta``, labelled so.
"""
from __future__ import annotations

from latentbids.analysis.claims import LATENT_VECTOR, LRCP, PC1, REGION, SHAP, SHAP_REGIONS, UNIT, ClaimsList

#: at most this many region names in the headline (the tables hold them all)
MAX_NAMES = 8


def _names(items) -> str:
    items = list(items)
    return ", ".join(items[:MAX_NAMES]) + (f" and {len(items) - MAX_NAMES} more" if len(items) > MAX_NAMES else "")


def _passes(claim, level: float, eta: float) -> bool:
    """Supported at ``level``; a claim decided by a bound (no p: the Bonferroni option) only when ``level`` is
    its own ``eta`` (one contrast)."""
    if not claim.supported:
        return False
    if claim.p != claim.p:  # NaN
        return level >= eta - 1e-12
    return claim.p <= level + 1e-12


def contrast_headline(claims: ClaimsList, contrast: str, level: float, eta: float) -> list[str]:
    """The headline claims of one contrast at ``level`` (``eta / C``), in the order of the hierarchy.

    Parameters
    ----------
    claims : ClaimsList
        Every claim of the analysis.
    contrast : str
        The contrast's name, ``"A vs B"``.
    level : float
        The contrast's share of the headline's error rate, in (0, 1).
    eta : float
        The families' own level (a claim without a p-value passes only when ``level`` equals it).

    Returns
    -------
    list of str
        Empty when the gate (the held-out latent-vector test) does not reject at ``level``.
    """
    gate = [c for c in claims.select(LATENT_VECTOR, contrast) if _passes(c, level, eta)]
    if not gate:
        return []
    bits = [f"the whole latent vector separates the classes out of sample (held-out balanced accuracy "
            f"{gate[0].statistic:.2f})"]
    half = level / 2  # units and regions share the contrast's level once the gate has rejected
    units = [c for c in claims.select(UNIT, contrast) if _passes(c, half, eta)]
    if not units:
        return bits
    folds = sorted({c.fold for c in claims.select(UNIT, contrast)})
    with_units = sorted({c.fold for c in units})
    bits.append(f"clinically relevant latent units in {len(with_units)} of {len(folds)} fold(s)" if len(folds) > 1
                else f"{len(units)} clinically relevant latent unit(s)")
    lrcp = [c.item for c in claims.select(LRCP, contrast) if _passes(c, half, eta)]  # p: the region's own test
    if lrcp:
        bits.append(f"{len(lrcp)} LRCP-positive region(s) ({_names(lrcp)})")
    regions = [c.item for c in claims.select(REGION, contrast) if _passes(c, half, eta) and c.item not in lrcp]
    if regions:
        bits.append(f"{len(regions)} {'other ' if lrcp else ''}region(s) whose GM separates the classes "
                    f"({_names(regions)})")
    return bits


def headline(claims: ClaimsList, contrasts: list[str], n_subjects: int, eta: float = 0.05) -> str:
    """One sentence that names only claims passing the hierarchy (or says that none does).

    Parameters
    ----------
    claims : ClaimsList
        Every claim of the analysis.
    contrasts : list of str
        Names of the contrasts that ran, in order.
    n_subjects : int
        Distinct participants analysed (quoted when nothing is supported).
    eta : float, default=0.05
        The report-wide error rate of the claims about contrasts, in (0, 1).

    Returns
    -------
    str
        The contrasts' headline claims (report-wide error rate at most ``eta``), the contrasts whose
        findings stay per family, and the cohort-wide claims; or a sentence saying that nothing is supported.
    """
    level = float(eta) / max(len(contrasts), 1)
    parts, per_family = [], []
    for name in contrasts:
        bits = contrast_headline(claims, name, level, float(eta))
        if bits:
            parts.append(f"{name}: " + "; ".join(bits))
        elif claims.select(contrast=name, supported=True):
            per_family.append(name)
    cohort = []
    if claims.select(PC1, supported=True):
        cohort.append("PC1 tracks " + ", ".join(claims.supported_items(PC1)))
    if claims.select(SHAP, supported=True):
        cohort.append("the reconstruction error is predictable from regional GM (SHAP surrogate: "
                      + ", ".join(claims.supported_items(SHAP)) + ")")
    if claims.select(SHAP_REGIONS, supported=True):
        cohort.append("the top SHAP regions predict the error of held-out subjects")
    out = []
    if parts:
        out.append(f"Supported claims (error rate at most eta = {eta:g} across {len(contrasts)} contrast(s): latent "
                   "vector, then units, then regions): " + ". ".join(parts) + ".")
    if per_family:
        out.append("Per-family findings only, below the headline's bar (see the verdicts): " + ", ".join(per_family)
                   + ".")
    if cohort:
        out.append("About the whole cohort (no labels involved; each family at eta): " + "; ".join(cohort) + ".")
    if not out:
        return (f"No statistical claim is supported at n = {n_subjects}: no test below reached family-wise "
                "significance, so nothing in this report is a finding; each verdict says how large an effect its "
                "test could have found at this n.")
    return " ".join(out)
