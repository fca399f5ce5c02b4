"""Interpretation of the latent space (METHOD.md sections 4-7, claims of section 9).

Plain functions and scikit-learn-style estimators on arrays and DataFrames; nothing here knows about
BIDS, files or Nipype (``latentbids.workflows.group_analysis`` and ``latentbids.workflows.analysis`` wire
them and write the outputs):

- ``bounds``: the concentration-inequality bounds (G, GZ, VC, PAC-Bayes) behind the worst-case accuracies;
- ``discriminability``: exact best-threshold statistics and the family-wise (max-statistic permutation or
  Bonferroni) tests of a family of features;
- ``stats``: standardisation, confound residualisation, correlations, multiple-comparison control;
- ``projections`` (with ``projection_methods``) and ``pc1``: PCA, t-SNE, UMAP and PLS of the latent codes,
  and PC1 against global measures;
- ``lrcp`` (with ``lrcp_claims`` and ``rankings``): Latent-Regional Correlation Profiling over every fold;
- ``agnostic``: SAM (per region), SAR (regression), RUB and the full-latent-vector test;
- ``shap_error`` (with ``shap_surrogate``, ``shap_validation``, ``shap_summaries``): SHAP explanations of the
  reconstruction error from regional GM;
- ``cohort``: labels, contrasts, covariates and regional GM; ``maps``: regional values painted into the atlas;
- ``claims``, ``verdicts``, ``results``: the claims list, the sentences generated from it, and the typed
  results each section hands on.
"""
