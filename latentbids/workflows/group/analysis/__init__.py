"""The group-level analysis, section by section (METHOD.md sections 4-7, claims of section 9).

``inputs`` assembles the cohort once (labels, covariates, regional GM, every fold's latent codes, the
rows each test may use); ``projections``, ``contrast`` and ``shap_section`` each run one section and
return a typed result with its claims; ``writers`` writes their tables and maps (a map is a finding only
where its claim is supported).  :func:`latentbids.workflows.group.analysis.run.run_group_analysis` drives
them and renders the report.
"""
