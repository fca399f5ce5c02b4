"""Before either level computes anything: validate the input, check bundled weights, create the
output dataset and record the run.

Everything here is the same for both levels and for ``--reports-only``/``--boilerplate-only`` (which
skip the validator and write only what they rebuild).  The templates and atlas come resolved
(:func:`latentbids.settings.resolve_run`); nothing is loaded again.
"""
from __future__ import annotations

import logging
from pathlib import Path

from latentbids.settings import RunSettings

LOGGER = logging.getLogger("latentbids")


def prepare_outputs(config, run: RunSettings) -> None:
    """Check that the selected subjects and sessions exist (exit 18 before the validator runs), validate
    the dataset (unless skipped), check the HD-BET weights a participant run needs, and
    write ``dataset_description.json``, ``.bidsignore``, the label table, grid copies,
    ``logs/<run_id>/config.toml`` and the methods boilerplate.

    Parameters
    ----------
    config : RunConfig
        The resolved configuration (recorded as it is).
    run : RunSettings
        The run's templates and atlas (named in the dataset and the boilerplate).
    """
    from latentbids.bids.boilerplate import write_boilerplate
    from latentbids.bids.derivatives import init_output_dataset, write_run_config
    from latentbids.bids.validation import validate_dataset
    from latentbids.utils.environment import container_kind

    ex = config.execution
    rebuild_only = ex.reports_only or ex.boilerplate_only  # nothing is computed from the inputs
    if not ex.boilerplate_only:
        from latentbids.bids.layout import check_selection

        check_selection(ex.bids_dir, ex.participant_label, ex.session_label)  # exit 18 in a second
    if ex.skip_bids_validation or rebuild_only:
        LOGGER.info("BIDS validation skipped (%s)", "--skip-bids-validation" if ex.skip_bids_validation
                    else "reports/boilerplate only")
    else:
        validate_dataset(ex.bids_dir, Path(ex.work_dir) / "logs" / f"bids-validator_{ex.run_id}.json",
                         participant_label=ex.participant_label)
    if ex.analysis_level == "participant" and config.anat.brain_extraction == "hdbet" and not rebuild_only:
        from latentbids.anat.brain_mask import check_hdbet_weights

        check_hdbet_weights(config.anat.hdbet_mode)  # one line and exit 66 now, not a crash per subject
    if not ex.boilerplate_only:
        init_output_dataset(ex.output_dir, ex.bids_dir, container_kind(), run.atlas, derivatives=ex.derivatives,
                            templates=run.templates)
        write_run_config(ex.output_dir, ex.run_id, config.provenance())
    from latentbids.analysis.methods_text import analysis_boilerplate

    # the analysis sentence from the registries: a registered projection method or claim family is cited too
    write_boilerplate(ex.output_dir, config, run.templates, run.atlas, analyses=analysis_boilerplate())
