"""The group level as the CLI runs it: call the level, turn its outcome into the exit code.

0 when the level finished (a ``--fold N`` job, another ``torchrun`` process, ``--skip-analysis``
included); 1 when a section of the latent-space analysis failed (the others are written).  Usage and
input errors leave earlier, each as a one-line :class:`~latentbids.errors.LatentbidsError` with its own code.
"""
from __future__ import annotations

import logging

from latentbids.errors import EXIT_FAILURE, EXIT_OK

LOGGER = logging.getLogger("latentbids")


def exit_code(outcome, output_dir) -> int:
    """The exit code of a :class:`~latentbids.workflows.group.level.GroupOutcome` (logged)."""
    if outcome.failures:
        LOGGER.error("Group level finished with %d failed analysis section(s): %s (see the log above)",
                     len(outcome.failures), ", ".join(outcome.failures))
        return EXIT_FAILURE
    if outcome.wrote_outputs:
        LOGGER.info("Group level finished; outputs in %s", output_dir)
    return EXIT_OK


def run_group_cli(config, run) -> int:
    """Run the group level of a resolved ``run`` on its first output space; return the exit code per the
    policy above.  The config is read here once, into :class:`~latentbids.settings.group.GroupSettings`."""
    from latentbids.settings.group import group_settings
    from latentbids.workflows.group.level import run_group

    settings = group_settings(config, run)
    outcome = run_group(settings, run.templates[0], run.atlas, run.atlases[1:])
    return exit_code(outcome, settings.output_dir)
