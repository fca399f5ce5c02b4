"""Group report: one self-contained HTML page for a group-level analysis run.

The page opens with the headline and the statistical verdicts, both generated from the claims list,
then shows the data, the training curves, the latent projections (coloured by diagnosis, age and sex),
the LRCP heat map and ranking per contrast, reconstruction error by class, the SHAP explanation of the
error, the statistical agnostic tests and the methods (with the measured false-positive rates of every
claim family).  Figures are embedded as base64 PNG (matplotlib, Agg, no pyplot state), every
user-provided string is HTML-escaped, and whatever was not computed or failed to render is said in words
on the page.

The report renders a typed :class:`~latentbids.reports.group.context.GroupReport` and decides nothing:
every verdict it shows is a claim of :mod:`latentbids.analysis.claims`.

Modules: ``context`` (the input), ``format`` (values, tables, images), ``figure_projections``,
``figure_lrcp`` and ``figures`` (SHAP, errors, curves): one function per figure; ``sections_claims`` and
``sections_data`` (the sections), ``page`` (assembly).
"""
from latentbids.reports.group.context import GroupReport, load_calibration
from latentbids.reports.group.format import SECTIONS
from latentbids.reports.group.page import build_group_report

__all__ = ["SECTIONS", "GroupReport", "build_group_report", "load_calibration"]
