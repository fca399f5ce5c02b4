"""The group level end to end: gather the GM maps, train or encode, interpret, in that order.

:func:`run_group` is what the CLI calls (as :func:`latentbids.workflows.participant_level.run_participant_level`
at participant level): it gathers the participant-level GM maps (:mod:`~latentbids.workflows.group_inputs`),
refuses an analysis the data cannot support before any training, trains and encodes
(:mod:`~latentbids.workflows.group`) and reads the latent space (:mod:`~latentbids.workflows.group_analysis`).
It returns a typed :class:`GroupOutcome`; the CLI turns that into the exit code.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from latentbids.workflows.group_result import FoldJobResult, GroupLevelResult

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


def run_group(config, template, atlas) -> GroupOutcome:
    """Run the group level of a resolved config on ``template``'s grid with ``atlas``.

    Parameters
    ----------
    config : latentbids.config.RunConfig
        Resolved (:func:`latentbids.settings.resolve_config`); ``config.model.input_map`` may change here
        when only unmodulated maps exist (recorded in the run's config file).
    template : latentbids.resources.Template
        The grid the GM maps lie on.
    atlas : latentbids.resources.Atlas
        The atlas of the regional errors and of the analysis.

    Returns
    -------
    GroupOutcome
    """
    from latentbids.bids.derivatives import write_run_config
    from latentbids.workflows.group import run_group_level
    from latentbids.workflows.group_analysis import run_group_analysis, validate_analysis_request
    from latentbids.workflows.group_inputs import collect_gm_maps

    records = collect_gm_maps(config, template)
    write_run_config(config.execution.output_dir, config.execution.run_id, config)  # input_map may have changed
    validate_analysis_request(config, records)  # a bad --contrast fails before hours of training
    LOGGER.info("Group level on %d GM map(s) from %d subject(s)", len(records), records["participant_id"].nunique())
    result = run_group_level(config, records, template, atlas)
    if not isinstance(result, GroupLevelResult):  # another torchrun process, or one --fold job
        if isinstance(result, FoldJobResult):
            LOGGER.info("Group level --fold %s finished; the fold is kept in %s", result.fold, result.fold_record)
        return GroupOutcome(result)
    LOGGER.debug("Latent table %s; model %s; curves %s", result.latent_tsv, result.model_dir, result.curves_tsv)
    analysis = run_group_analysis(config, result, atlas)  # None with --skip-analysis
    if analysis is not None:
        LOGGER.info("Headline: %s", analysis.headline)
        for sentence in analysis.verdicts:
            LOGGER.info("Verdict: %s", sentence)
        LOGGER.info("Group report: %s", analysis.report)
    return GroupOutcome(result, analysis)
