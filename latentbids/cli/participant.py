"""The participant level as the CLI runs it: call the level, turn its outcome into the exit code.

Exit-code policy for several subjects (docs/usage.md): bad inputs are reported and skipped, the
good ones are processed; the run ends with 0 when every selected image was processed, 1 when a
processing step failed for any subject, else 66 when some inputs were rejected, else 75 when some
subjects were skipped because another job was processing them (a temporary failure: rerun later).
"""
from __future__ import annotations

from latentbids.errors import EXIT_FAILURE, EXIT_MISSING_INPUT, EXIT_OK, EXIT_TEMPORARY


def exit_code(outcome) -> int:
    """The exit code of a :class:`~latentbids.workflows.participant_level.ParticipantOutcome`."""
    if outcome.failed:
        return EXIT_FAILURE
    if outcome.rejected:
        return EXIT_MISSING_INPUT
    if outcome.locked:
        return EXIT_TEMPORARY
    return EXIT_OK


def run_participant_level_cli(config, run) -> int:
    """Run the participant level of a resolved ``run``; return the exit code per the policy above."""
    from latentbids.workflows.participant_level import run_participant_level

    return exit_code(run_participant_level(config, run))
