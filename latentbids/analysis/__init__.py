"""Interpretation of the latent space (METHOD.md sections 4-7, claims of section 9).

Plain functions and scikit-learn-style estimators on arrays and DataFrames; nothing here knows about
BIDS, files or Nipype (``latentbids.workflows.group.analysis.run`` and ``latentbids.workflows.group.analysis`` wire
them and write the outputs):

- ``bounds``: the concentration-inequality bounds (G, GZ, VC, PAC-Bayes) behind the worst-case accuracies;
- ``discriminability``: exact best-threshold statistics and the family-wise (max-statistic permutation or
  Bonferroni) tests of a family of features;
- ``stats``: standardisation, confound residualisation, correlations, multiple-comparison control;
- ``projections`` (with ``projection_methods``, and ``projection_registry`` where each method is declared
  once) and ``pc1``: PCA, t-SNE, UMAP and PLS of the latent codes, and PC1 against global measures;
- ``lrcp`` (with ``lrcp_claims`` and ``rankings``): Latent-Regional Correlation Profiling over every fold;
- ``agnostic``: SAM (per region), SAR (regression), RUB and the full-latent-vector test;
- ``shap_error`` (with ``shap_surrogate``, ``shap_validation``, ``shap_summaries``): SHAP explanations of the
  reconstruction error from regional GM;
- ``cohort``: labels, contrasts, covariates and regional GM; ``maps``: regional values painted into the atlas;
- ``claims`` (with the claim families, each declared once), ``verdicts`` (with each family's rule in
  ``verdict_rules``), ``results``: the claims list, the sentences generated from it, and the typed results
  each section hands on; ``methods_text``: the analysis in the methods boilerplate.

Places to grow: a projection method is one module and one ``register_projection`` call
(:mod:`~latentbids.analysis.projection_registry`); a claim family is one ``register_family`` call
(:mod:`~latentbids.analysis.claims`) with its verdict rule, beside the analysis that makes its claims.

The public API (imported on first use, so ``import latentbids.analysis`` stays light)::

    from latentbids.analysis import LRCP, held_out_test, project_latents, explain_error, sam_regions

Each name's own docstring gives its shapes (``Z``: ``(n_subjects, K)`` latent codes, one matrix per fold
for LRCP; ``G``: ``(n_subjects, n_regions)`` regional mean GM; ``y``: ``(n_subjects,)`` labels).
"""

from __future__ import annotations

from latentbids.utils.lazy import lazy_exports

#: public name -> the module that defines it
_EXPORTS = {
    "LRCP": "latentbids.analysis.lrcp",
    "held_out_test": "latentbids.analysis.latent_vector",
    "project_latents": "latentbids.analysis.projections",
    "pc1_correlations": "latentbids.analysis.pc1",
    "explain_error": "latentbids.analysis.shap_error",
    "ShapResult": "latentbids.analysis.shap_error",
    "heldout_r2_test": "latentbids.analysis.shap_regions",
    "sam_regions": "latentbids.analysis.agnostic",
    "sar": "latentbids.analysis.agnostic",
    "rub": "latentbids.analysis.agnostic",
    "latent_vector_test": "latentbids.analysis.agnostic",
    "feature_test": "latentbids.analysis.agnostic",
    "family_test": "latentbids.analysis.discriminability",
    "required_n": "latentbids.analysis.power",
    "Claim": "latentbids.analysis.claims",
    "ClaimsList": "latentbids.analysis.claims",
    "ClaimFamily": "latentbids.analysis.claims",
    "register_family": "latentbids.analysis.claims",
    "ProjectionMethod": "latentbids.analysis.projection_registry",
    "register_projection": "latentbids.analysis.projection_registry",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
