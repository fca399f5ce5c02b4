"""Interpretation of the latent space (METHOD.md sections 4-7).

Plain functions and scikit-learn-style estimators on arrays and DataFrames; nothing here knows about
BIDS or files (``latentbids.workflows.group_analysis`` wires them and writes the outputs):

- ``bounds``: the concentration-inequality bounds (G, GZ, VC, PAC-Bayes) behind every verdict;
- ``agnostic``: SAM (per region), SAR (regression), RUB and the full-latent-vector test;
- ``stats``: standardisation, confound residualisation, correlations, multiple-comparison control;
- ``projections``: PCA, t-SNE, UMAP and PLS of the latent codes;
- ``lrcp``: Latent-Regional Correlation Profiling;
- ``shap_error``: SHAP explanations of the reconstruction error from regional GM;
- ``maps``: regional values painted into the atlas.
"""
