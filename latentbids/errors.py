"""User-facing errors and the exit codes they map to.

Exit codes follow the BIDS Apps execution-spec draft (see docs/usage.md):

====  =============================================================
0     success
1     failure (a crash, or some participants failed their processing)
16    the input dataset failed BIDS validation
17    unknown analysis level
18    the filters matched no data
64    usage error (bad option, bad path, bad combination of options)
66    a required input is missing, unreadable or corrupt
73    an output folder (output_dir, work dir, database dir) cannot be created or written
75    temporary failure: a selected subject is being processed by another job; rerun later
130   interrupted (SIGINT, SIGTERM): everything written is complete; rerun to resume
====  =============================================================

Every error raised for a *user* mistake is a :class:`LatentbidsError`: the CLI prints its message on
one line (no traceback) and exits with its code.  Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_VALIDATION = 16
EXIT_UNKNOWN_LEVEL = 17
EXIT_NO_DATA = 18
EXIT_USAGE = 64
EXIT_MISSING_INPUT = 66
EXIT_CANNOT_CREATE = 73  # sysexits EX_CANTCREAT
EXIT_TEMPORARY = 75  # sysexits EX_TEMPFAIL: the same command later may succeed
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


class LatentbidsError(Exception):
    """An error caused by the user's input or options, with the exit code it deserves.

    The message should name the file or option at fault and say how to fix it.
    """

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        """The one-line message (newlines folded so the log stays one line per error)."""
        return " ".join(str(self).split())


class UsageError(LatentbidsError):
    """A bad option, bad path or bad combination of options (exit 64)."""

    exit_code = EXIT_USAGE


class UnknownAnalysisLevel(LatentbidsError):
    """The positional analysis level is neither ``participant`` nor ``group`` (exit 17)."""

    exit_code = EXIT_UNKNOWN_LEVEL


class ValidationFailed(LatentbidsError):
    """The BIDS validator reported errors for the input dataset (exit 16)."""

    exit_code = EXIT_VALIDATION


class NoDataError(LatentbidsError):
    """The participant/session/filter selection matched no T1w image (exit 18)."""

    exit_code = EXIT_NO_DATA


class MissingInputError(LatentbidsError):
    """A required input (file, resource, cache) is missing, unreadable or corrupt (exit 66)."""

    exit_code = EXIT_MISSING_INPUT


class CannotCreateError(LatentbidsError):
    """An output folder cannot be created or written (exit 73, ``EX_CANTCREAT``)."""

    exit_code = EXIT_CANNOT_CREATE


class TemporaryFailure(LatentbidsError):
    """Another job holds what this one needs; the same command later may succeed (exit 75)."""

    exit_code = EXIT_TEMPORARY
