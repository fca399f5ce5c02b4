"""Logging for a run: one line per event on stderr and in ``logs/<run_id>/latentbids.log``."""
from __future__ import annotations

import logging
from pathlib import Path

LOGGER = logging.getLogger("latentbids")
_FORMAT = "%(asctime)s | %(levelname)-7s | %(message)s"
_DATEFMT = "%y%m%d-%H:%M:%S"


def setup_logging(verbose: int = 0) -> logging.Logger:
    """Configure the ``latentbids`` logger for the console (idempotent)."""
    level = logging.DEBUG if verbose >= 2 else logging.INFO
    LOGGER.setLevel(level)
    LOGGER.propagate = False
    if not any(getattr(h, "_latentbids_console", False) for h in LOGGER.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_FORMAT, _DATEFMT))
        handler._latentbids_console = True  # type: ignore[attr-defined]
        LOGGER.addHandler(handler)
    for handler in LOGGER.handlers:
        handler.setLevel(level)
    return LOGGER


def quiet_nipype(verbose: int = 0) -> None:
    """Nipype logs every node at INFO; latentbids logs one line per finished step instead.

    Nipype re-reads its own config when it runs, so the levels are set through that config.
    """
    from nipype import config as nipype_config
    from nipype import logging as nipype_logging

    level = "DEBUG" if verbose >= 2 else ("INFO" if verbose else "WARNING")
    nipype_config.set("logging", "workflow_level", level)
    nipype_config.set("logging", "interface_level", "WARNING" if verbose < 2 else "DEBUG")
    nipype_config.set("logging", "utils_level", "WARNING" if verbose < 2 else "DEBUG")
    nipype_config.set("execution", "check_version", "false")
    nipype_logging.update_logging(nipype_config)


class _LogFile(logging.FileHandler):
    """The run's log file; when it can no longer be written (the disk filled up, the mount went
    read-only) the run goes on logging to the console only, said once in one line, instead of
    logging's "--- Logging error ---" traceback on every later message."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's API
        import sys

        exc = sys.exc_info()[1]
        LOGGER.removeHandler(self)
        for handler in LOGGER.handlers:  # the console still works: say it there, once
            if getattr(handler, "_latentbids_console", False):
                handler.handle(logging.makeLogRecord({
                    "name": LOGGER.name, "levelno": logging.ERROR, "levelname": "ERROR",
                    "msg": "Cannot write the log file %s (%s): logging to the console only",
                    "args": (self.baseFilename, exc)}))
        try:
            self.close()
        except OSError:
            pass


def add_log_file(path: str | Path) -> logging.Handler:
    """Also log to ``path`` (appending)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _LogFile(path)
    handler.setFormatter(logging.Formatter(_FORMAT, _DATEFMT))
    LOGGER.addHandler(handler)
    return handler
