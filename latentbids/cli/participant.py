"""The participant level as the CLI runs it: call the level, turn its outcome into the exit code.

Exit-code policy for several subjects (docs/usage.md): bad inputs are reported and skipped, the
good ones are processed; the run ends with 0 when every selected image was processed, 1 when a
processing step failed for any subject, else 66 when some inputs were rejected, else 75 when some
subjects were skipped because another job was processing them (a temporary failure: rerun later).
When every failed subject failed because its outputs could not be written (disk full, quota,
read-only, no permission), the code is the storage's: 73, or 74 for an I/O error; the other
subjects were still processed.
"""
from __future__ import annotations

import logging

from latentbids.errors import EXIT_FAILURE, EXIT_MISSING_INPUT, EXIT_OK, EXIT_TEMPORARY, storage_exit_code

LOGGER = logging.getLogger("latentbids")


def exit_code(outcome) -> int:
    """The exit code of a :class:`~latentbids.workflows.participant.level.ParticipantOutcome`."""
    if outcome.failed:
        codes = {storage_exit_code(status) for status in outcome.failed.values()}
        return max(codes) if None not in codes else EXIT_FAILURE
    if outcome.rejected:
        return EXIT_MISSING_INPUT
    if outcome.locked:
        return EXIT_TEMPORARY
    return EXIT_OK


def run_participant_cli(config, run) -> int:
    """Run the participant level of a resolved ``run``; return the exit code per the policy above.

    A run that ends on a storage failure says so in one error line (the first subject, the path and
    the errno, and how many subjects it hit), so the log's last error is the reason for the exit code.
    """
    from latentbids.settings import participant_settings
    from latentbids.workflows.participant.level import run_participant_level

    outcome = run_participant_level(participant_settings(config, run))
    code = exit_code(outcome)
    if code != EXIT_FAILURE and outcome.failed:
        label, status = sorted(outcome.failed.items())[0]
        others = len(outcome.failed) - 1
        LOGGER.error("%s could not be written%s: %s", label, f" (and {others} more subject(s))" if others else "",
                     status.removeprefix("failed: "))
    return code
