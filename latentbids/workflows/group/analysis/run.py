"""Group level, second half: interpret the latent space, write tables, maps, claims and the group report.

:func:`run_group_analysis` runs after :func:`latentbids.workflows.group.training.train_and_encode` has written the
model and the latents.  Order (METHOD.md sections 4-7, claims of section 9):

1. the cohort (:mod:`latentbids.workflows.group.analysis.inputs`): labels and contrasts, covariates, regional
   mean GM of the very maps the network was trained on, confounds, one row per subject for the tests;
2. projections (PCA and PLS in every fold, t-SNE and UMAP on the reference fold) and PC1 claims;
3. per contrast: LRCP over every fold, SAM, the latent vector and RUB, with their claims;
4. SHAP explanations of the held-out reconstruction error, with the SHAP and SAR claims;
5. the further ``--atlas`` parcellations (:mod:`.atlases`): regional claims and SHAP per atlas, the agreement
   table; then each contrast's atlas-free reference map (:mod:`.voxel_reference`);
6. the claims list, the verdicts generated from it, ``analysis.json`` and the HTML report.

Each section is guarded: a failure is logged with its traceback, named in the report, and turns the exit
code to 1, while the other sections and everything written before still stand.
"""
from __future__ import annotations

import dataclasses
import logging
import traceback
from pathlib import Path

from latentbids.analysis.claims import ClaimsList, with_atlas
from latentbids.analysis.headline import headline
from latentbids.analysis.results import AnalysisResult
from latentbids.analysis.verdicts import cohort_verdicts, contrast_verdicts
from latentbids.errors import UsageError
from latentbids.settings.group import GroupSettings
from latentbids.utils.atomic import write_json, write_text
from latentbids.utils.progress import step
from latentbids.workflows.group.analysis.writers import jsonable
from latentbids.workflows.group.result import GroupLevelResult

LOGGER = logging.getLogger("latentbids.workflows.group.analysis.run")

#: SHAP needs at least this many maps
MIN_SHAP_MAPS = 10

_CHOICES = {
    "correction": ("fdr_bh", "bonferroni", "permutation"),
    "family_correction": ("permutation", "bonferroni"),
    "statistic": ("welch", "auc", "balanced", "majority"),
    "correlation": ("pearson", "spearman"),
}


def validate_analysis_request(analysis, records) -> None:
    """Refuse, before any training, an analysis the data cannot support (exit 64 with the fix);
    ``analysis`` is the run's ``[analysis]`` (:attr:`GroupSettings.analysis`)."""
    from latentbids.analysis.cohort import DERIVED_CONFOUNDS, plan_contrasts

    ac = analysis
    if not ac.enabled:
        return
    if str(ac.bound).upper() not in ("G", "GZ", "VC"):
        raise UsageError(f"[analysis] bound = '{ac.bound}': use G, GZ or VC")
    for key, choices in _CHOICES.items():
        if getattr(ac, key) not in choices:
            raise UsageError(f"[analysis] {key} = '{getattr(ac, key)}': use one of {', '.join(choices)}")
    if not 0.0 < float(ac.eta) < 1.0:
        raise UsageError(f"[analysis] eta = {ac.eta}: use a value in (0, 1), e.g. 0.05")
    if ac.family_correction == "permutation" and (int(ac.n_permutations) + 1) * float(ac.eta) < 1:
        raise UsageError(f"[analysis] n_permutations = {ac.n_permutations} cannot give p <= eta = {ac.eta}: use at "
                         f"least {int(1 / float(ac.eta))}")
    column = ac.label_column
    if column not in records.columns:
        if ac.contrasts or column != "group":
            known = ", ".join(c for c in records.columns if c not in ("gm_path", "qc_pass", "qc_fail_reasons"))
            raise UsageError(f"--label-column {column}: participants.tsv has no such column (columns: {known})")
        return
    plan_contrasts(records[column], ac.contrasts, ac.min_per_class)
    lower = {c.lower() for c in records.columns} | set(DERIVED_CONFOUNDS)
    for name in ac.confounds:
        if str(name).lower() not in lower:
            raise UsageError(f"--confounds {name}: not a participants.tsv column nor one of "
                             f"{', '.join(DERIVED_CONFOUNDS)}")


class _Sections:
    """Runs each analysis section; a failure is logged, recorded and does not stop the others."""

    def __init__(self):
        self.failures: dict[str, str] = {}
        self.skipped: dict[str, str] = {}

    def run(self, name: str, func, *args, **kwargs):
        try:
            with step(LOGGER, f"Analysis: {name}"):
                return func(*args, **kwargs)
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported, and the exit code becomes 1
            LOGGER.error("Analysis section '%s' failed: %s\n%s", name, exc, traceback.format_exc())
            self.failures[name] = f"{type(exc).__name__}: {exc}"
            return None


def run_group_analysis(run: GroupSettings, group_result: GroupLevelResult, atlas,
                       sensitivity_atlases=()) -> AnalysisResult | None:
    """Interpret the latent space of a finished group-level training (see the module docstring).

    ``run`` is the group level's settings (its ``analysis`` says what is run and recorded); ``atlas`` the
    primary atlas, ``sensitivity_atlases`` the further ``--atlas`` ones (:mod:`.atlases`).  Returns the
    :class:`~latentbids.analysis.results.AnalysisResult` (``failures`` non-empty when a section failed),
    or None with ``--skip-analysis``.
    """
    if not run.analysis.enabled:
        LOGGER.info("Latent-space analysis skipped (--skip-analysis)")
        return None
    from latentbids.workflows.group.analysis import writers
    from latentbids.workflows.group.analysis.contrast import run_contrast
    from latentbids.workflows.group.analysis.inputs import build_inputs
    from latentbids.workflows.group.analysis.projections import run_projections
    from latentbids.workflows.group.analysis.shap_section import run_shap

    settings, seed = run.analysis, run.seed
    inp = build_inputs(run, group_result, atlas)
    inp.analysis_dir.mkdir(parents=True, exist_ok=True)
    sec, claims, notes, files = _Sections(), ClaimsList(), list(inp.notes), writers.write_cohort(inp)

    projections = None
    got = sec.run("projections", run_projections, inp, settings, seed)
    if got is not None:
        projections = got.result
        claims.extend(got.claims)
        files.update(writers.write_projections(inp, projections, got.tables["projections"], seed))

    contrasts = []
    for a, b in inp.contrasts:
        got = sec.run(f"contrast {a} vs {b}", run_contrast, inp, settings, seed, a, b)
        if got is None:
            continue
        notes.extend(got.notes)
        if got.result is None:  # skipped: the note says why
            continue
        claims.extend(with_atlas(got.claims, inp.atlas_bids_name))
        contrasts.append(got.result)
        files.update(writers.write_contrast(inp, got.result, claims, settings))
    if not inp.contrasts:
        sec.skipped["lrcp"] = "no contrast: " + ("; ".join(inp.notes) or "fewer than two labels")

    shap = None
    if len(inp.records) >= MIN_SHAP_MAPS:
        got = sec.run("shap", run_shap, inp, settings, seed, max(1, run.nprocs))
        if got is not None:
            shap = got.result
            claims.extend(with_atlas(got.claims, inp.atlas_bids_name))
            notes.extend(got.notes)
            files.update(writers.write_shap(inp, shap, claims, settings))
    else:
        sec.skipped["shap"] = f"{len(inp.records)} maps: SHAP needs at least {MIN_SHAP_MAPS}"

    atlas_inputs = {inp.atlas_bids_name: inp}
    atlas_verdicts, agreement, atlas_notes = _atlas_sensitivity(
        sec, inp, sensitivity_atlases, group_result, settings, seed, claims, files, atlas_inputs,
        with_shap=shap is not None and settings.shap_every_atlas, n_jobs=max(1, run.nprocs))
    notes += atlas_notes
    notes += _voxel_references(sec, inp, settings, seed, contrasts, claims, atlas_inputs, files)
    files.update(writers.write_claims(inp, claims))
    verdicts = [v for c in contrasts for v in contrast_verdicts(claims, c.name, c.n, c.n_per_class, settings.eta)]
    verdicts += cohort_verdicts(claims) + atlas_verdicts
    verdicts += [f"The {name} analysis failed ({why}); see the log. Nothing it would have written is presented."
                 for name, why in sec.failures.items()]
    n_subjects = int(inp.records["participant_id"].nunique())
    result = AnalysisResult(
        model_name=inp.model_name, mode=inp.mode, folds=inp.folds, reference_fold=inp.reference_fold,
        label_column=settings.label_column, n_subjects=n_subjects, settings=settings,
        confounds=inp.confound_names, claims=claims, headline=headline(claims, [c.name for c in contrasts], n_subjects,
                                                                       settings.eta),
        verdicts=tuple(verdicts), contrasts=tuple(contrasts), projections=projections, shap=shap, notes=tuple(notes),
        skipped=dict(sec.skipped), failures=dict(sec.failures), files=files,
        analysis_json=inp.analysis_dir / "analysis.json", report=inp.analysis_dir / report_name(inp.model_name),
        atlas_agreement=agreement, atlas_verdicts=tuple(atlas_verdicts))
    _write_summary(result, inp, seed)
    sec.run("report", _write_report, run.run_id, inp, result)
    if sec.failures.get("report"):
        result = dataclasses.replace(result, failures=dict(sec.failures))
    if inp.analysis_dir == inp.published_dir:  # written in place (library use): the root copy too
        publish_report(inp.out_dir, inp.model_name)
    return result


def _voxel_references(sec, inp, settings, seed, contrasts, claims, atlas_inputs, files) -> list[str]:
    """Each contrast's atlas-free reference map (:mod:`.voxel_reference`); its notes."""
    from latentbids.workflows.group.analysis.voxel_reference import run_voxel_reference, write_voxel_reference

    notes = []
    for result in contrasts:
        got = sec.run(f"voxel reference {result.name}", run_voxel_reference, inp, settings, seed, result, claims,
                      atlas_inputs)
        if got is not None:
            notes.extend(got.notes)
            files.update(write_voxel_reference(inp, result, got))
    return notes


def _atlas_sensitivity(sec, inp, atlases, group_result, settings, seed, claims, files, atlas_inputs, *,
                       with_shap: bool, n_jobs: int):
    """The further atlases' claims and the agreement table (:mod:`.atlases`): its verdict sentences, the table
    (None without further atlases) and its notes; ``atlas_inputs`` gains each further atlas's inputs."""
    if not atlases:
        return [], None, []
    if not inp.contrasts and not with_shap:
        sec.skipped["atlases"] = "no contrast and no SHAP: the further atlases have no claim to make"
        return [], None, []
    from latentbids.workflows.group.analysis import writers
    from latentbids.workflows.group.analysis.atlases import run_atlas_sensitivity

    got = sec.run("atlases", run_atlas_sensitivity, inp, atlases, group_result, settings, seed, claims,
                  with_shap=with_shap, n_jobs=n_jobs)
    if got is None:
        return [], None, []
    files.update(got.tables["files"])
    sec.failures.update(got.tables.get("failures") or {})
    atlas_inputs.update(got.tables["inputs"])
    files.update(writers.write_agreement(inp, got.tables["agreement"], got.tables["verdicts"]))
    verdicts = got.tables["verdicts"]["verdict"]
    sentences = [f"Atlas check, {finding}: {verdict}." for finding, verdict in verdicts.items()]
    summary = list(got.tables.get("summary") or [])
    return summary + sentences + list(got.tables["shap_verdicts"]), got.tables["agreement"], list(got.notes)


def report_name(model_name: str) -> str:
    """The group report's file name: ``group_<model>.html`` (in ``group/<model>/`` and at the dataset root)."""
    return f"group_{model_name}.html"


def publish_report(out_dir: Path, model_name: str) -> Path | None:
    """Copy the model's report from its group set to the dataset root (where users open it); remove the root
    copy when the set has none (e.g. ``--skip-analysis``), so the root never shows another set's report."""
    from latentbids.utils.atomic import write_bytes

    source = Path(out_dir) / "group" / model_name / report_name(model_name)
    target = Path(out_dir) / report_name(model_name)
    if source.is_file():
        return write_bytes(target, source.read_bytes())
    target.unlink(missing_ok=True)
    return None


def _write_summary(result: AnalysisResult, inp, seed: int) -> None:
    write_json(result.analysis_json, jsonable({
        "Model": result.model_name, "Mode": result.mode, "Folds": list(result.folds),
        "ReferenceFold": result.reference_fold, "LabelColumn": result.label_column,
        "Contrasts": [f"{a}:{b}" for a, b in inp.contrasts], "Confounds": list(result.confounds),
        "Parameters": dataclasses.asdict(result.settings), "RandomSeed": seed, "Headline": result.headline,
        "Verdicts": list(result.verdicts), "Claims": result.claims.as_json(), "Notes": list(result.notes),
        "Skipped": result.skipped, "Failures": result.failures,
        "Files": {k: _relative(inp.published(v), inp.out_dir) for k, v in result.files.items()},
    }))


def _write_report(run_id: str, inp, result: AnalysisResult) -> None:
    from latentbids import __version__
    from latentbids.reports.group import GroupReport, build_group_report

    participants = inp.records.drop(columns=[c for c in ("gm_path", "qc_fail_reasons") if c in inp.records])
    report = GroupReport(analysis=result, participants=participants, latents=inp.latent_table,
                         curves_png=inp.curves_png, version=__version__, run_id=run_id)
    write_text(result.report, build_group_report(report))


def _relative(path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)
