"""The group level end to end: gather the GM maps, train or encode, interpret, in that order.

:func:`run_group` is what the CLI calls (as :func:`latentbids.workflows.participant.level.run_participant_level`
at participant level): it gathers the participant-level GM maps (:mod:`~latentbids.workflows.group.inputs`),
refuses an analysis the data cannot support before any training, trains and encodes
(:mod:`~latentbids.workflows.group.training`) and reads the latent space
(:mod:`~latentbids.workflows.group.analysis.run`).
It returns a typed :class:`GroupOutcome`; the CLI turns that into the exit code.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from latentbids.settings.group import GroupSettings
from latentbids.workflows.group.result import FoldJobResult, GroupLevelResult

LOGGER = logging.getLogger("latentbids")


@dataclass(frozen=True)
class GroupOutcome:
    """What one group-level process did.

    Attributes
    ----------
    result : GroupLevelResult, FoldJobResult or None
        The training's outputs; a ``--fold N`` job's fold; None on a ``torchrun`` process other than 0
        (it trained; process 0 wrote everything).
    analysis : latentbids.analysis.results.AnalysisResult or None
        The latent-space analysis (None with ``--skip-analysis``, ``--fold`` or on another process).
    """

    result: GroupLevelResult | FoldJobResult | None
    analysis: object = None

    @property
    def wrote_outputs(self) -> bool:
        """Whether this process wrote the group outputs (not a ``--fold`` job, not another process)."""
        return isinstance(self.result, GroupLevelResult)

    @property
    def failures(self) -> dict:
        """Analysis sections that failed (name -> error), empty when none did."""
        return dict(getattr(self.analysis, "failures", None) or {})


def run_group(settings: GroupSettings, template, atlas, sensitivity_atlases=()) -> GroupOutcome:
    """Run the group level with ``settings`` on ``template``'s grid with ``atlas``.

    The model's group set (``group/<model>/``: latent tables, curves, analysis, claims, maps, report) is
    built in a staging folder and swapped in whole at the end (:class:`~latentbids.utils.staging.StagedFolder`),
    so a failed or interrupted run leaves the previous complete set and no report, ``analysis.json`` or map
    of one run ever sits beside another's; ``group_<model>.html`` at the root is the set's report, or absent.

    Parameters
    ----------
    settings : latentbids.settings.group.GroupSettings
        Built once from the config (:func:`latentbids.settings.group.group_settings`); when only unmodulated
        maps exist the run continues with new settings that say so (recorded in the run's config file).
    template : latentbids.resources.Template
        The grid the GM maps lie on.
    atlas : latentbids.resources.Atlas
        The primary atlas: the regional errors, the analysis and its headline.
    sensitivity_atlases : sequence of latentbids.resources.Atlas
        The further ``--atlas`` ones: the same latent space read through them, each with its own regional
        claims, and the agreement table (:mod:`latentbids.workflows.group.analysis.atlases`).

    Returns
    -------
    GroupOutcome
    """
    from latentbids.bids.derivatives import write_run_config
    from latentbids.utils.staging import StagedFolder
    from latentbids.workflows.group.analysis.run import publish_report, run_group_analysis, validate_analysis_request
    from latentbids.workflows.group.inputs import collect_gm_maps
    from latentbids.workflows.group.model_folder import given_model
    from latentbids.workflows.group.training import train_and_encode

    name = settings.model_name  # an unusable name was refused when the settings were built
    bundle = given_model(settings.given_model, template) if settings.given_model else None  # checked whole, first
    records, settings = collect_gm_maps(settings, template)
    write_run_config(settings.output_dir, settings.run_id, settings.provenance())  # input_map may have changed
    validate_analysis_request(settings.analysis, records)  # a bad --contrast fails before hours of training
    LOGGER.info("Group level on %d GM map(s) from %d subject(s)", len(records), records["participant_id"].nunique())
    out = settings.output_dir
    with StagedFolder(out / "group" / name) as staged:
        result = train_and_encode(settings, records, template, atlas, outputs=staged, bundle=bundle)
        if not isinstance(result, GroupLevelResult):  # another torchrun process, or one --fold job
            if isinstance(result, FoldJobResult):
                LOGGER.info("Group level --fold %s finished; the fold is kept in %s", result.fold, result.fold_record)
            return GroupOutcome(result)
        analysis = run_group_analysis(settings, result, atlas, sensitivity_atlases)  # None: --skip-analysis
        staged.commit(before_swap=lambda: (out / f"group_{result.model_name}.html").unlink(missing_ok=True))
    report = publish_report(out, result.model_name)
    result = _published(result, staged)
    LOGGER.info("Group outputs of model %s in %s (model folder %s)", result.model_name, staged.target, result.model_dir)
    if analysis is not None:
        analysis = dataclasses.replace(analysis, report=report, analysis_json=staged.final(analysis.analysis_json),
                                       files={k: staged.final(v) for k, v in analysis.files.items()})
        LOGGER.info("Headline: %s", analysis.headline)
        for sentence in analysis.verdicts:
            LOGGER.info("Verdict: %s", sentence)
        LOGGER.info("Group report: %s", analysis.report)
    return GroupOutcome(result, analysis)


def _published(result: GroupLevelResult, staged) -> GroupLevelResult:
    """The result with its group-set paths where they lie after the swap."""
    return dataclasses.replace(result, latent_tsv=staged.final(result.latent_tsv),
                               curves_tsv=staged.final(result.curves_tsv), curves_png=staged.final(result.curves_png),
                               group_dir=staged.target)
