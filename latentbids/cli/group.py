"""The group level as the CLI runs it: gather the participant-level GM maps, train/encode, analyse.

The work is the workflows' (:mod:`latentbids.workflows.group_inputs`, :mod:`latentbids.workflows.group`,
:mod:`latentbids.workflows.group_analysis`); this module calls them in order and turns the outcome into an
exit code.
"""
from __future__ import annotations

import logging

from latentbids.errors import EXIT_FAILURE, EXIT_OK

LOGGER = logging.getLogger("latentbids")


def run_group_level_cli(config, templates, atlas) -> int:
    """Train (or encode with ``--model``) and write the group outputs."""
    from latentbids.bids.derivatives import write_run_config
    from latentbids.workflows.group import run_group_level
    from latentbids.workflows.group_analysis import run_group_analysis, validate_analysis_request
    from latentbids.workflows.group_inputs import collect_gm_maps

    template = templates[0]
    records = collect_gm_maps(config, template)
    write_run_config(config.execution.output_dir, config.execution.run_id, config)  # input_map may have changed

    validate_analysis_request(config, records)  # a bad --contrast fails before hours of training
    LOGGER.info("Group level on %d GM map(s) from %d subject(s)", len(records), records["participant_id"].nunique())
    result = run_group_level(config, records, template, atlas)
    if result is None:  # a torchrun process other than 0: it trained, process 0 writes everything
        return EXIT_OK
    if config.model.fold:  # one fold trained and kept in the work dir: no outputs, no analysis yet
        LOGGER.info("Group level --fold %s finished; the fold is kept in %s", config.model.fold, result.fold_record)
        return EXIT_OK
    LOGGER.debug("Latent table %s; model %s; curves %s", result.latent_tsv, result.model_dir, result.curves_tsv)
    analysis = run_group_analysis(config, result, atlas)  # None with --skip-analysis
    if analysis is not None:
        LOGGER.info("Headline: %s", analysis.headline)
        for sentence in analysis.verdicts:
            LOGGER.info("Verdict: %s", sentence)
        LOGGER.info("Group report: %s", analysis.report)
    if analysis is not None and analysis.failures:
        LOGGER.error("Group level finished with %d failed analysis section(s): %s (see the log above)",
                     len(analysis.failures), ", ".join(analysis.failures))
        return EXIT_FAILURE
    LOGGER.info("Group level finished; outputs in %s", config.execution.output_dir)
    return EXIT_OK
