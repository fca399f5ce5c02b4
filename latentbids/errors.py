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
73    an output folder (output_dir, work dir, database dir) cannot be created or written (full, read-only)
74    an I/O error (EIO): the disk or the network filesystem failed under a read or a write
75    temporary failure: a selected subject is being processed by another job; rerun later
130   interrupted (SIGINT, SIGTERM): everything written is complete; rerun to resume
====  =============================================================

Every error raised for a *user* mistake is a :class:`LatentbidsError`: the CLI prints its message on
one line (no traceback) and exits with its code.  So is a failure of the storage (:class:`StorageError`:
disk full ENOSPC, quota EDQUOT, read-only EROFS, no permission EACCES/EPERM: 73; EIO: 74), and the CLI
maps a plain OSError with one of those errnos the same way.  Anything else is a bug and keeps its
traceback.
"""
from __future__ import annotations

import errno
import os
import re

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_VALIDATION = 16
EXIT_UNKNOWN_LEVEL = 17
EXIT_NO_DATA = 18
EXIT_USAGE = 64
EXIT_MISSING_INPUT = 66
EXIT_CANNOT_CREATE = 73  # sysexits EX_CANTCREAT
EXIT_IO_ERROR = 74  # sysexits EX_IOERR
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


#: errno -> exit code of an OSError that is the user's storage, not a bug: a full disk or quota, a
#: read-only mount, a folder the job may not write (73), a failing disk or network filesystem (74).
STORAGE_ERRNOS = {errno.ENOSPC: EXIT_CANNOT_CREATE, errno.EDQUOT: EXIT_CANNOT_CREATE,
                  errno.EROFS: EXIT_CANNOT_CREATE, errno.EACCES: EXIT_CANNOT_CREATE,
                  errno.EPERM: EXIT_CANNOT_CREATE, errno.EIO: EXIT_IO_ERROR}

#: What to do about each kind of storage failure (the second half of the one-line error).
_STORAGE_FIXES = {
    errno.ENOSPC: "free disk space (or point -w/--work-dir and output_dir at a larger disk) and rerun",
    errno.EDQUOT: "free space in your quota (or use a folder with more quota) and rerun",
    errno.EROFS: "the folder is on a read-only mount: bind it read-write or choose a writable folder, and rerun",
    errno.EACCES: "give this job write permission on the folder (or choose one it can write) and rerun",
    errno.EPERM: "give this job write permission on the folder (or choose one it can write) and rerun",
    errno.EIO: "the disk or network filesystem failed: check it (dmesg, the cluster's status) and rerun",
}


class StorageError(LatentbidsError, OSError):
    """Writing (or reading) failed because of the storage: full, over quota, read-only, not permitted
    (exit 73) or an I/O error (exit 74).

    Also an :class:`OSError`, so code that already handles a failed write keeps doing so; the message
    names the path and the errno (``No space left on device (ENOSPC)``) and what to do.
    """

    exit_code = EXIT_CANNOT_CREATE

    def __init__(self, message: str, exit_code: int | None = None, errno_name: str = ""):
        super().__init__(message, exit_code)
        self.errno_name = errno_name


def storage_error(exc: OSError, path: str | os.PathLike | None = None, action: str = "write") -> StorageError | None:
    """The one-line :class:`StorageError` for an OSError caused by the storage, or ``None`` for any
    other OSError (a bug, or an input problem reported elsewhere).

    Parameters
    ----------
    exc : OSError
        The error raised by the write (its ``errno`` decides; its ``filename`` is named when
        ``path`` is not given).
    path : path-like, optional
        The file the user knows (the target of an atomic write, not its temporary name).
    action : str
        ``"write"`` or ``"read"``: said in the message.

    Returns
    -------
    StorageError or None
        With exit 73 (ENOSPC, EDQUOT, EROFS, EACCES, EPERM) or 74 (EIO).
    """
    if isinstance(exc, StorageError):
        return exc
    code = STORAGE_ERRNOS.get(getattr(exc, "errno", None))
    if code is None:
        return None
    name = errno.errorcode.get(exc.errno, str(exc.errno))
    where = path if path is not None else (exc.filename or "a file")
    reason = exc.strerror or os.strerror(exc.errno)
    return StorageError(f"Cannot {action} {where}: {reason} ({name}): {_STORAGE_FIXES[exc.errno]}", code, name)


def storage_exit_code(text: str) -> int | None:
    """The exit code of a storage failure described in ``text`` (a crash file's last line, a job's
    result), or ``None`` when it describes something else.

    Recognises a :class:`StorageError` message (``(ENOSPC)``) and Python's own ``[Errno 28]``.
    """
    for match in re.finditer(r"\((E[A-Z]+)\)|\[Errno (\d+)\]", str(text)):
        number = int(match.group(2)) if match.group(2) else getattr(errno, match.group(1), None)
        if number in STORAGE_ERRNOS:
            return STORAGE_ERRNOS[number]
    return None
