"""``--reports-only`` and ``--boilerplate-only`` as the CLI runs them: rebuild documents, nothing else.

The methods boilerplate (``logs/CITATION.*``) is written for every run
(:func:`latentbids.cli.preflight.prepare_outputs`); ``--reports-only`` also rebuilds the
participant reports (:func:`latentbids.workflows.participant.reports.rebuild_participant_reports`).
"""
from __future__ import annotations

import logging
from pathlib import Path

from latentbids.errors import EXIT_OK

LOGGER = logging.getLogger("latentbids")


def run_reports_only(config, run) -> int:
    """The ``--boilerplate-only`` / ``--reports-only`` run of a resolved ``run``; returns the exit code."""
    ex = config.execution
    if ex.boilerplate_only:
        LOGGER.info("Methods boilerplate written: %s", Path(ex.output_dir) / "logs" / "CITATION.md")
        return EXIT_OK
    from latentbids.workflows.participant.reports import rebuild_participant_reports

    written = rebuild_participant_reports(run)
    LOGGER.info("Rebuilt %d participant report(s) in %s", len(written), ex.output_dir)
    return EXIT_OK
