"""Group report: one self-contained HTML page for a group-level analysis run.

The page opens with the statistical verdicts in words, then shows the data, the training curves, the
latent projections (coloured by diagnosis, age and sex), the LRCP heat map and ranking per
contrast, reconstruction error by class, the SHAP explanation of the error, the statistical
agnostic tests and the methods/provenance.  Figures are embedded as base64 PNG (matplotlib, Agg,
no pyplot state), every user-provided string is HTML-escaped, and whatever was not computed or
failed to render is said in words on the page (never silently left out, never an exception: a
report is written even when half of the analysis was skipped).

The report knows nothing of the analysis modules: it takes plain DataFrames and dicts (the ``ctx``
contract of :func:`build_group_report`), so it can be tested and rendered on its own.

Modules: ``format`` (values, tables, images), ``figures`` (one function per figure), ``page`` (the
sections and :func:`build_group_report`).
"""
from latentbids.reports.group.figures import (
    _r_tilde,
    _region_order,
    error_by_class_figure,
    lrcp_bar_figure,
    lrcp_heatmap_figure,
    projection_figure,
    shap_beeswarm_figure,
)
from latentbids.reports.group.format import SECTIONS, _table
from latentbids.reports.group.page import build_group_report

__all__ = [
    "SECTIONS", "build_group_report", "error_by_class_figure", "lrcp_bar_figure", "lrcp_heatmap_figure",
    "projection_figure", "shap_beeswarm_figure", "_r_tilde", "_region_order", "_table",
]
