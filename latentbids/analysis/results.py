"""What the group-level analysis hands to its writers and to the report: typed, frozen results.

Each section of the analysis (projections, one result per contrast, SHAP) returns a :class:`SectionResult`:
its result (one of the types below), its tables, the claims it makes and its notes; :class:`AnalysisResult`
collects them with the claims list.  The report renders these
objects and decides nothing itself: every verdict it shows comes from a :class:`~latentbids.analysis.
claims.Claim`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from latentbids.analysis.claims import ClaimsList


@dataclass(frozen=True)
class SectionResult:
    """What every analysis section returns (``run_projections``, ``run_contrast``, ``run_shap`` of
    ``latentbids.workflows.group.analysis``): named fields, the same for every section.

    Attributes
    ----------
    result : ProjectionResult, ContrastResult, ShapSection or None
        The section's typed result; None when the section was skipped (``notes`` says why).
    tables : dict of str to pandas.DataFrame, default={}
        Tables the section hands to its writer besides ``result`` (the projections section: ``"projections"``,
        the coordinates of every fold, one row per map and fold).
    claims : tuple of Claim, default=()
        The claims the section makes, in order.
    notes : tuple of str, default=()
        What the user must be told (a skipped contrast, the error SHAP explains in fit-all mode).
    """

    result: object = None
    tables: dict = field(default_factory=dict)
    claims: tuple = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProjectionResult:
    """Latent projections of the reference fold, their metadata, and PC1 against global measures.

    ``table``: one row per map (participant_id, session_id, fold, role, label, pca1.., tsne1, tsne2,
    umap1, umap2, pls1..); ``meta``: per-method parameters, seeds and skip reasons; ``pc1``:
    :func:`latentbids.analysis.pc1.pc1_correlations` on one row per subject, or None.

    Attributes
    ----------
    table : pandas.DataFrame of shape (n_maps, n_columns)
        The reference fold's coordinates (:func:`~latentbids.analysis.projections.project_latents`'s
        ``coords``) with the map's identifiers; NaN where a method or component was skipped.
    meta : dict
        Fold name -> the ``meta`` dict of ``project_latents`` for that fold (parameters, seeds, what was
        clipped or skipped and why).
    pc1 : pandas.DataFrame or None
        PC1 against the global measures (one row per measure), or None when PC1 was not computed.
    pls_contrast : str or None
        The contrast PLS was fitted on, ``"A (0) vs B (1)"``, or None without a contrast.
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

    Attributes
    ----------
    name : str
        ``"A vs B"`` (the claims' ``contrast``).
    desc : str
        BIDS-safe ``desc`` entity of the contrast's files (:func:`~latentbids.analysis.cohort.contrast_name`).
    labels : tuple of (str, str)
        Labels of class 0 and class 1.
    n : int
        Subjects in the contrast.
    n_per_class : dict of str to int
        Label -> number of subjects.
    lrcp : LRCP
        The fitted estimator.
    sam : pandas.DataFrame of shape (n_regions, n_columns)
        :func:`~latentbids.analysis.agnostic.sam_regions`'s table with a ``region`` name column.
    vectors : dict of str to dict
        Fold -> :func:`~latentbids.analysis.agnostic.latent_vector_test` result (the paper's in-sample bound
        with d = K and its RUB, tested at ``eta / n_folds``).
    reference_fold : str
        The fold whose units the heat map shows.
    held_out : dict
        :func:`~latentbids.analysis.latent_vector.held_out_test`: the confirmatory out-of-sample test of the
        whole latent vector (held-out balanced accuracy, permutation p).
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
    held_out: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ShapSection:
    """SHAP on the reconstruction error: the :class:`~latentbids.analysis.shap_error.ShapResult`, the
    regional GM it explained (``features``, columns = region_index) and the region names.

    Attributes
    ----------
    result : ShapResult
        What :func:`~latentbids.analysis.shap_error.explain_error` found.
    features : pandas.DataFrame of shape (n_subjects, n_regions)
        The regional GM that was explained (after any confound adjustment), columns = region_index.
    regions : pandas.DataFrame of shape (n_regions, n_columns)
        The atlas regions (``index`` and ``name`` columns), in the column order of ``features``.
    """

    result: object
    features: pd.DataFrame
    regions: pd.DataFrame


@dataclass(frozen=True)
class AnalysisResult:
    """One group-level analysis: its settings, sections, claims and verdicts, and the files written.

    What ``latentbids.workflows.group.analysis.run`` returns and the report renders; every verdict in it was
    generated from ``claims``.

    Attributes
    ----------
    model_name : str
        Name of the model whose latent space was analysed.
    mode : {"kfold", "fit_all"}
        Training mode of the model.
    folds : tuple of str
        The model's folds.
    reference_fold : str
        The fold of the projections and heat maps.
    label_column : str
        participants.tsv column of the clinical labels.
    n_subjects : int
        Distinct participants analysed.
    settings : AnalysisConfig
        The effective analysis settings (sloppy caps applied).
    confounds : tuple of str
        Confound columns regressed out.
    claims : ClaimsList
        Every claim made.
    headline : str
        The sentence naming only supported claims (:func:`~latentbids.analysis.verdicts.headline`).
    verdicts : tuple of str
        The per-contrast and cohort sentences, then one per failed section.
    contrasts : tuple of ContrastResult, default=()
        One per contrast that ran.
    projections : ProjectionResult or None, default=None
        None when the section did not run or failed.
    shap : ShapSection or None, default=None
        None when skipped or failed.
    notes : tuple of str, default=()
        Decisions the user must be told about (left-out labels, skipped contrasts, ...).
    skipped : dict of str to str
        Section -> why it was skipped.
    failures : dict of str to str
        Section -> why it failed.
    files : dict
        Output key -> path of each file written.
    analysis_json : pathlib.Path or None, default=None
        Path of ``analysis.json``.
    report : pathlib.Path or None, default=None
        Path of the HTML report.
    atlas_agreement : pandas.DataFrame or None, default=None
        With several atlases: one row per supported regional finding x other atlas
        (:func:`~latentbids.analysis.atlas_agreement.agreement_table`); None with one atlas.
    atlas_verdicts : tuple of str, default=()
        One sentence per regional finding across the other atlases ("holds in ...", "only in ...").
    """

    model_name: str
    mode: str  # "kfold" | "fit_all"
    folds: tuple[str, ...]
    reference_fold: str
    label_column: str
    n_subjects: int
    settings: object  # the effective AnalysisConfig, frozen (sloppy caps applied)
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
    atlas_agreement: object = None
    atlas_verdicts: tuple[str, ...] = ()
