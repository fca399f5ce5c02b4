"""What the group-level analysis hands to its writers and to the report: typed, frozen results.

Each section of the analysis (projections, one result per contrast, SHAP) returns one of these, with the
claims it makes; :class:`AnalysisResult` collects them with the claims list.  The report renders these
objects and decides nothing itself: every verdict it shows comes from a :class:`~latentbids.analysis.
claims.Claim`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from latentbids.analysis.claims import ClaimsList


@dataclass(frozen=True)
class ProjectionResult:
    """Latent projections of the reference fold, their metadata, and PC1 against global measures.

    ``table``: one row per map (participant_id, session_id, fold, role, label, pca1.., tsne1, tsne2,
    umap1, umap2, pls1..); ``meta``: per-method parameters, seeds and skip reasons; ``pc1``:
    :func:`latentbids.analysis.projections.pc1_correlations` on one row per subject, or None.
    """

    table: pd.DataFrame
    meta: dict
    pc1: pd.DataFrame | None
    pls_contrast: str | None


@dataclass(frozen=True)
class ContrastResult:
    """Everything tested for one contrast ``labels[0]`` (class 0) vs ``labels[1]`` (class 1).

    ``lrcp`` is the fitted :class:`latentbids.analysis.lrcp.LRCP` (its ``units_``, ``region_tests_``,
    ``association_``, ``folds_``, ``consensus_``, ``stability_``, ``summary_``); ``sam`` the SAM table
    (one row per region, with ``region``); ``vectors`` maps each fold to its latent-vector test (with
    ``rub``); ``reference_fold`` is the fold whose units the heat map shows.
    """

    name: str
    desc: str
    labels: tuple[str, str]
    n: int
    n_per_class: dict
    lrcp: object
    sam: pd.DataFrame
    vectors: dict
    reference_fold: str


@dataclass(frozen=True)
class ShapSection:
    """SHAP on the reconstruction error: the :class:`~latentbids.analysis.shap_error.ShapResult`, the
    regional GM it explained (``features``, columns = region_index) and the region names."""

    result: object
    features: pd.DataFrame
    regions: pd.DataFrame


@dataclass(frozen=True)
class AnalysisResult:
    """One group-level analysis: its settings, sections, claims and verdicts, and the files written."""

    model_name: str
    mode: str  # "kfold" | "fit_all"
    folds: tuple[str, ...]
    reference_fold: str
    label_column: str
    n_subjects: int
    settings: object  # the effective AnalysisConfig (sloppy caps applied)
    confounds: tuple[str, ...]
    claims: ClaimsList
    headline: str
    verdicts: tuple[str, ...]
    contrasts: tuple[ContrastResult, ...] = ()
    projections: ProjectionResult | None = None
    shap: ShapSection | None = None
    notes: tuple[str, ...] = ()
    skipped: dict = field(default_factory=dict)
    failures: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    analysis_json: Path | None = None
    report: Path | None = None
