"""The two places to grow (issue 20): a projection method and a claim family, each declared once.

A toy method (a seeded random projection) and a toy family are registered by fixtures and removed after;
one registration must be enough for them to reach the projection step, the writers, the report, the
verdicts and the methods boilerplate.  The built-in methods and families must read as they always did.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from latentbids.analysis import claims as claims_mod
from latentbids.analysis.claims import CLAIM_FAMILIES, FAMILIES, FAMILY_MEANING, Claim, ClaimFamily, ClaimsList
from latentbids.analysis.methods_text import analysis_boilerplate
from latentbids.analysis.projection_registry import (
    PROJECTION_METHODS,
    ProjectionMethod,
    register_projection,
    shared_clauses,
    unregister_projection,
)
from latentbids.analysis.projections import project_latents
from latentbids.analysis.results import AnalysisResult, SectionResult
from latentbids.analysis.verdicts import cohort_verdicts, contrast_verdicts
from latentbids.config import AnalysisConfig, RunConfig
from latentbids.errors import UsageError

TOY_TITLE = "Random projection (a toy)"


def _random_projection(data, params):
    """A seeded Gaussian projection of the valid rows (fitted on nothing): the toy method."""
    rng = np.random.default_rng(data.random_state)
    k = int(params["rand_components"])
    scores = data.Zs @ rng.normal(size=(data.Zs.shape[1], k))
    return scores, {"computed": True, "skipped": None, "clipped": None, "fitted_on": 0,
                    "rand_components": k, "warnings": []}


@pytest.fixture
def toy_method():
    method = register_projection(ProjectionMethod(
        name="rand", label="RandProj", run=_random_projection, n_columns=lambda p: p["rand_components"],
        params={"rand_components": 2}, meaning="{names} is a seeded random projection of every row",
        caveat="{names} is a toy: nothing it shows is a finding.", boilerplate=("random",),
        figure_title=TOY_TITLE))
    yield method
    unregister_projection("rand")


def _toy_sentences(tests, ctx):
    return [f"Toy family{' ' + ctx.contrast if ctx.contrast else ''}: {sum(c.supported for c in tests)} of "
            f"{len(tests)} toy claims supported."]


@pytest.fixture
def toy_family():
    cohort = claims_mod.register_family(ClaimFamily(
        "toy", "toy statements about the cohort", "a toy rule, no correction", "cohort", _toy_sentences, 25,
        "projections", ("a toy analysis",)))
    contrast = claims_mod.register_family(ClaimFamily(
        "toy_contrast", "toy statements about a contrast", "a toy rule per contrast", "contrast", _toy_sentences,
        80, "agnostic"))
    yield cohort, contrast
    claims_mod.unregister_family("toy")
    claims_mod.unregister_family("toy_contrast")


# --------------------------------------------------------------------------------------------------
# a small synthetic cohort, two folds, no training


@dataclass
class _Inputs:
    """The fields of ``AnalysisInputs`` that the projections section and its writer read."""

    records: pd.DataFrame
    labels: pd.Series
    covariates: pd.DataFrame
    fold_Z: dict
    folds: tuple
    reference_fold: str
    contrasts: tuple
    out: Path

    def ids(self, rows=None) -> pd.DataFrame:
        ids = self.records[["participant_id", "session_id"]]
        return (ids if rows is None else ids.iloc[rows]).reset_index(drop=True)

    def path(self, suffix, ext, atlas=False, **extra) -> Path:
        return self.out / f"group_{suffix}{ext}"


def _inputs(tmp_path, n=24, k=5) -> _Inputs:
    rng = np.random.default_rng(3)
    records = pd.DataFrame({"participant_id": [f"sub-{i:02d}" for i in range(n)], "session_id": "n/a"})
    labels = pd.Series(np.tile(["CN", "AD"], n // 2), dtype=object)
    covariates = pd.DataFrame({"gm_mean": rng.normal(0.5, 0.05, n), "tiv": rng.normal(1500, 100, n),
                               "age": rng.uniform(50, 80, n)})
    roles = {"1": np.where(np.arange(n) < n // 2, "test", "train"), "2": np.where(np.arange(n) < n // 2, "train",
                                                                                  "test")}
    fold_Z = {f: (rng.normal(size=(n, k)), roles[f].astype(object)) for f in ("1", "2")}
    return _Inputs(records, labels, covariates, fold_Z, ("1", "2"), "1", (("CN", "AD"),), tmp_path)


def _analysis(section: SectionResult, claims: ClaimsList, verdicts=()) -> AnalysisResult:
    return AnalysisResult(model_name="toy", mode="kfold", folds=("1", "2"), reference_fold="1", label_column="group",
                          n_subjects=24, settings=AnalysisConfig(), confounds=(), claims=claims, headline="none",
                          verdicts=tuple(verdicts), projections=section.result)


def _report_html(analysis: AnalysisResult, participants=None, monkeypatch=None) -> tuple[str, list]:
    from latentbids.reports.group import GroupReport, build_group_report, figure_projections

    titles = []
    png = figure_projections._png

    def recording(fig):
        titles.extend(ax.get_title() for ax in fig.axes)
        return png(fig)

    monkeypatch.setattr(figure_projections, "_png", recording)
    report = GroupReport(analysis=analysis, participants=participants, calibration=None)
    return build_group_report(report), titles


# --------------------------------------------------------------------------------------------------
# projection methods


def test_a_registered_method_reaches_projections_writers_report_and_boilerplate(toy_method, tmp_path, monkeypatch):
    from latentbids.bids.boilerplate import build_boilerplate
    from latentbids.workflows.group.analysis import writers
    from latentbids.workflows.group.analysis.projections import run_projections

    inp = _inputs(tmp_path)
    coords, meta = project_latents(inp.fold_Z["1"][0], None, methods=("pca", "rand"), rand_components=3)
    assert ["rand1", "rand2", "rand3"] == [c for c in coords.columns if c.startswith("rand")]
    assert meta["rand"]["computed"] and meta["tsne"]["skipped"] == "not requested in methods"
    with pytest.raises(UsageError, match="unknown projection parameter"):
        project_latents(inp.fold_Z["1"][0], None, rand_componets=3)

    section = run_projections(inp, AnalysisConfig(), 7)
    table = section.tables["projections"]
    assert table.groupby("fold")["rand1"].apply(lambda v: v.notna().all()).all()  # every fold: not transductive
    assert table[table["fold"] == "2"]["tsne1"].isna().all()  # t-SNE stays on the reference fold
    assert section.result.meta["2"]["rand"]["computed"]

    files = writers.write_projections(inp, section.result, table, 7)
    tsv = pd.read_csv(files["projections"], sep="\t")
    sidecar = json.loads(Path(files["projections"]).with_suffix(".json").read_text())
    assert {"rand1", "rand2"} <= set(tsv.columns) and "rand" in sidecar["Methods"]["1"]
    assert sidecar["Description"].startswith("Latent projections per fold: PCA, PLS and RandProj fitted on")

    participants = inp.records.assign(group=inp.labels)
    html, titles = _report_html(_analysis(section, ClaimsList(list(section.claims))), participants, monkeypatch)
    assert TOY_TITLE in titles and "t-SNE (distances are not evidence)" in titles
    assert "RandProj is a seeded random projection of every row" in html
    assert "RandProj is a toy: nothing it shows is a finding." in html

    config = RunConfig()
    config.execution.analysis_level = "group"
    text = build_boilerplate(config, analyses=analysis_boilerplate()).markdown()
    assert re.search(r"UMAP \[\d+\], PLS and random projections \(scikit-learn \[\d+\]\)", text)


def test_registration_refuses_what_would_break_the_guards():
    with pytest.raises(UsageError, match="already registered"):
        register_projection(PROJECTION_METHODS["pca"])
    with pytest.raises(UsageError, match="supervised"):
        register_projection(ProjectionMethod(name="lda", label="LDA", run=None, n_columns=1, supervised=True,
                                             transductive=True))
    with pytest.raises(UsageError, match="belong to another method"):
        register_projection(ProjectionMethod(name="kpca", label="kPCA", run=None, n_columns=2,
                                             params={"pca_components": 2}))
    assert list(PROJECTION_METHODS) == ["pca", "tsne", "umap", "pls"]
    with pytest.raises(ValueError, match="section"):
        claims_mod.register_family(ClaimFamily("toy2", "m", "r", "cohort", None, 1, "appendix"))
    with pytest.raises(ValueError, match="must be new"):
        claims_mod.register_family(CLAIM_FAMILIES["unit"])


def test_the_built_in_methods_read_as_before():
    """The registry's prose for the four built-in methods is the text the report and sidecar always had."""
    from latentbids.bids.boilerplate import DEFAULT_ANALYSES, Boilerplate
    from latentbids.workflows.group.analysis.writers import projections_description

    assert shared_clauses("meaning") == [
        "PCA and PLS are fitted on the model's training subjects and the others are projected",
        "t-SNE and UMAP are fitted on all subjects and their distances are not evidence (no statistics are computed "
        "on them)"]
    assert shared_clauses("caveat") == [
        "t-SNE and UMAP are fitted on all subjects without labels; their distances and clusters are not evidence.",
        "PLS uses the labels: it is fitted on the model's training subjects only and held-out subjects are projected."]
    assert projections_description() == (
        "Latent projections per fold: PCA and PLS fitted on the fold's training subjects (role train/validation) and "
        "applied to its held-out ones; t-SNE and UMAP only for the reference fold, on all its codes. t-SNE/UMAP "
        "distances are not evidence: no statistic is computed on them")

    def render(pieces):
        return Boilerplate(sections=[("g", [list(pieces)])]).markdown()

    # the bids layer cannot import the registries: its default must stay what they say
    assert render(analysis_boilerplate()) == render(DEFAULT_ANALYSES)
    assert "PCA, t-SNE [1], UMAP [2] and PLS projections (scikit-learn [3]), latent-region correspondence (LRCP), " \
           "SHAP explanations of the reconstruction error [4] and statistical agnostic bounds and mapping [5]." \
           in render(DEFAULT_ANALYSES)


# --------------------------------------------------------------------------------------------------
# claim families


def _claim(family, item, supported, contrast=""):
    return Claim(contrast=contrast, family=family, item=item, statistic_name="s", statistic=0.7, p=0.01, bound=0.6,
                 correction="c", supported=supported)


def test_a_registered_family_reaches_claims_verdicts_report_and_boilerplate(toy_family, tmp_path, monkeypatch):
    assert "toy" in FAMILIES and FAMILY_MEANING["toy"] == "toy statements about the cohort"
    claims = ClaimsList([_claim("pc1", "tiv", False), _claim("toy", "a", True), _claim("toy", "b", False),
                         _claim("shap", "pooled", False), _claim("unit", "z1", False, "CN vs AD"),
                         _claim("toy_contrast", "x", True, "CN vs AD"), _claim("rub", "v", False, "CN vs AD")])
    cohort = cohort_verdicts(claims)
    assert cohort[0].startswith("PC1") and cohort[1].startswith("SHAP")  # order 25: after SHAP's 20
    assert cohort[2] == "Toy family: 1 of 2 toy claims supported."
    contrast = contrast_verdicts(claims, "CN vs AD", 40, {"CN": 20, "AD": 20}, 0.05)
    assert contrast[-1] == "Toy family CN vs AD: 1 of 1 toy claims supported."  # order 80: after RUB

    assert ClaimsList.from_json(claims.as_json()).claims == claims.claims
    section = SectionResult()
    html, _ = _report_html(_analysis(section, claims, cohort + contrast), None, monkeypatch)
    projections = html.split("<section id='projections'>", 1)[1].split("</section>", 1)[0]
    assert "toy statements about the cohort (<code>toy</code>)" in projections
    assert "Rule: a toy rule, no correction." in projections
    agnostic = html.split("<section id='agnostic'>", 1)[1].split("</section>", 1)[0]
    assert "toy statements about a contrast" in agnostic and "Toy family: 1 of 2" in html

    pieces = "".join(p for p in analysis_boilerplate() if isinstance(p, str))
    assert "projections (scikit-learn ), a toy analysis, latent-region correspondence (LRCP)" in pieces


def test_an_unregistered_family_is_refused_again(toy_family):
    claims_mod.unregister_family("toy")
    with pytest.raises(ValueError, match="unknown claim family 'toy'"):
        _claim("toy", "a", True)
    claims_mod.register_family(toy_family[0])  # the fixture removes it


def test_the_families_are_the_calibrated_ones_with_the_same_rules():
    """The calibration's rule of each family (latentbids.calibration.RULES) is the family's own ``rule``."""
    from latentbids.calibration import RULES
    from latentbids.reports.group import SECTIONS

    assert tuple(FAMILIES) == ("unit", "region", "lrcp", "sam", "latent_vector", "vector_bound", "rub", "sar",
                               "shap", "pc1", "shap_regions")
    assert RULES == {f.name: f.rule for f in CLAIM_FAMILIES.values()}
    assert tuple(sid for sid, _ in SECTIONS) == claims_mod.REPORT_SECTIONS
    assert [f.name for f in claims_mod.families_in_order("contrast")] == [
        "latent_vector", "unit", "region", "sam", "lrcp", "vector_bound", "rub"]
    assert [f.name for f in claims_mod.families_in_order("cohort")] == ["pc1", "shap", "shap_regions", "sar"]
