"""The analysis in the methods boilerplate: one sentence from the projection methods and the claim families.

``latentbids.bids.boilerplate`` writes ``logs/CITATION.md``; it sits below the analysis layer and cannot
read the registries itself, so its caller passes :func:`analysis_boilerplate` (and its built-in default is
kept equal to it by a test).
"""
from __future__ import annotations

from latentbids.analysis.claims import CLAIM_FAMILIES, REPORT_SECTIONS
from latentbids.analysis.projection_registry import boilerplate_pieces


def analysis_boilerplate() -> list:
    """``" The latent space was read with PCA, t-SNE [n], UMAP [n] and PLS projections (scikit-learn [n]),
    latent-region correspondence (LRCP), SHAP explanations of the reconstruction error [n] and statistical
    agnostic bounds and mapping [n]."``: every registered projection method, then the phrase of every claim
    family that has one, in the order of the report's sections.

    Parameters
    ----------
    None

    Returns
    -------
    list
        Text and ``("cite", key)`` pieces for :func:`latentbids.bids.boilerplate.build_boilerplate`'s
        ``analyses``.
    """
    families = sorted((f for f in CLAIM_FAMILIES.values() if f.boilerplate),
                      key=lambda f: REPORT_SECTIONS.index(f.section))
    phrases = [boilerplate_pieces()] + [list(f.boilerplate) for f in families]
    pieces: list = [" The latent space was read with "]
    for i, phrase in enumerate(phrases):
        if i:
            pieces.append(" and " if i == len(phrases) - 1 else ", ")
        pieces += phrase
    return pieces + ["."]
