"""``latentbids`` entry point: build the run configuration, resolve it, call a level.

This module only turns arguments into a :class:`~latentbids.config.RunConfig`, has it resolved
(:mod:`latentbids.settings`) and calls the participant or group level; the work lives in
:mod:`latentbids.workflows`.  User errors end as one line on stderr with the exit code documented in
:mod:`latentbids.errors`.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from latentbids import __version__
from latentbids.errors import EXIT_FAILURE, EXIT_INTERRUPTED, LatentbidsError

LOGGER = logging.getLogger("latentbids")


def build_config(args):
    """Defaults < ``--config-file`` < command line, every value checked, then resolved and the paths
    checked (:func:`latentbids.settings.resolve_config`, :func:`latentbids.settings.check_paths`)."""
    from latentbids.bids.layout import load_filter_file, read_labels
    from latentbids.cli.parser import OPTION_TO_CONFIG
    from latentbids.config import RunConfig, load_toml, new_run_id
    from latentbids.settings import check_paths, resolve_config

    config = RunConfig()
    given = vars(args)
    if "config_file" in given:
        file_values = load_toml(given["config_file"])
        # Paths and level always come from the command line, not from a recorded config.
        execution = file_values.get("execution", {})
        for key in ("bids_dir", "output_dir", "analysis_level", "run_id", "resolved_device"):
            execution.pop(key, None)
        file_values.pop("environment", None)
        config.update(file_values, origin=str(given["config_file"]))
    for dest, value in given.items():  # one at a time, so that an error names the option
        if dest in OPTION_TO_CONFIG:
            section, key = OPTION_TO_CONFIG[dest]
            config.update({section: {key: value}}, origin=f"--{dest.replace('_', '-')}")

    ex = config.execution
    ex.bids_dir = str(Path(args.bids_dir).expanduser().absolute())
    ex.output_dir = str(Path(args.output_dir).expanduser().absolute())
    ex.analysis_level = args.analysis_level
    ex.run_id = new_run_id()
    ex.participant_label = read_labels(ex.participant_label, "sub")
    ex.session_label = read_labels(ex.session_label, "ses")
    if "bids_filter_file" in given:
        ex.bids_filters = load_filter_file(given["bids_filter_file"])
    if "derivatives" in given:
        ex.derivatives = {name: str(Path(path).absolute()) for name, path in given["derivatives"]}
    resolve_config(config)
    check_paths(config)
    return config


def start_logging(config) -> None:
    """This run's log file, writable caches (before numba/matplotlib/torch are imported: read-only
    containers) and Nipype's log levels; then the run's first line."""
    from latentbids.cli.logging_setup import add_log_file, quiet_nipype
    from latentbids.utils.caches import use_writable_caches

    ex = config.execution
    add_log_file(Path(ex.output_dir) / "logs" / ex.run_id / "latentbids.log")
    use_writable_caches(ex.work_dir)
    quiet_nipype(ex.verbose)
    LOGGER.info("latentbids %s, %s level, run %s", __version__, ex.analysis_level, ex.run_id)


def run_level(config, run) -> int:
    """Call the level the config asks for with the resolved ``run``; return its exit code."""
    ex = config.execution
    if ex.boilerplate_only or ex.reports_only:
        from latentbids.cli.reports_only import run_reports_only

        return run_reports_only(config, run)
    if ex.analysis_level == "participant":
        from latentbids.cli.participant import run_participant_cli

        return run_participant_cli(config, run)
    from latentbids.cli.group import run_group_cli

    return run_group_cli(config, run)


def main(argv: list[str] | None = None) -> int:
    """Run latentbids; return the exit code (the console script exits with it).

    SIGTERM (``scancel``, ``docker stop``, a SLURM time limit) and SIGINT unwind the run like
    Ctrl-C: files being written are dropped (every output is renamed into place complete), every
    descendant process is ended (:func:`latentbids.utils.processes.terminate_tree`, SIGKILL after a
    few seconds) and the exit code is 130; rerunning with the same work dir resumes.  A Nipype node
    or a library that swallows the ``KeyboardInterrupt`` cannot turn this into a success: the signal
    is remembered.
    """
    import signal

    from latentbids.cli.logging_setup import setup_logging
    from latentbids.cli.parser import parse_args
    from latentbids.utils.processes import install_signal_handlers, interrupted

    setup_logging(0)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    install_signal_handlers()
    config = None
    try:
        args = parse_args(argv)
        setup_logging(getattr(args, "verbose", 0) or 0)
        config = build_config(args)
        if config.execution.clean_workdir:
            from latentbids.cli.workdir import clean_work_dir

            clean_work_dir(config)
        start_logging(config)
        from latentbids.cli.preflight import prepare_outputs
        from latentbids.settings import resolve_run

        run = resolve_run(config)  # device, templates, atlas: once, before anything is written
        prepare_outputs(config, run)
        code = run_level(config, run)
        if interrupted():
            raise KeyboardInterrupt
        return code
    except LatentbidsError as exc:
        if interrupted():  # e.g. a worker killed by the same signal, reported as a failure
            return _interrupted()
        LOGGER.error("%s", exc.message)
        return exc.exit_code
    except OSError as exc:  # a write that did not go through utils/atomic.py (Nipype, torch, a lock)
        error = storage_failure(exc, config)
        if error is None:
            raise  # not the storage: a bug, keep its traceback
        LOGGER.error("%s", error.message)
        return error.exit_code
    except MemoryError:
        LOGGER.error("Out of memory: lower --nprocs, raise --mem / the container's memory limit, or use --batch-size")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return _interrupted()
    finally:
        for sig, handler in previous.items():  # callers that import main (tests) get theirs back
            if handler is not None:
                signal.signal(sig, handler)


def storage_failure(exc: OSError, config=None) -> LatentbidsError | None:
    """The one-line error of an OSError the storage caused (full disk, quota, read-only, permission,
    I/O error), or ``None`` for any other OSError.

    A permission error on a file of the input dataset (outside output_dir and the work dir) is an
    unreadable input (exit 66), not an output that cannot be written (73).
    """
    import errno

    from latentbids.errors import MissingInputError, storage_error

    path = Path(str(exc.filename)) if exc.filename else None
    if config is not None and path is not None and exc.errno in (errno.EACCES, errno.EPERM):
        ex = config.execution
        inside = [Path(d) for d in (ex.output_dir, ex.work_dir) if d]
        if ex.bids_dir and path.is_relative_to(ex.bids_dir) and not any(path.is_relative_to(d) for d in inside):
            return MissingInputError(f"Cannot read {path}: {exc.strerror} ({errno.errorcode[exc.errno]}): "
                                     "give this job read permission on the input dataset and rerun")
    return storage_error(exc)


def _interrupted() -> int:
    """End every process this run started, then report the interruption (exit 130)."""
    from latentbids.utils.processes import terminate_tree

    killed = terminate_tree()
    if killed:
        LOGGER.warning("Interrupted: %d worker process(es) ignored SIGTERM and were killed", len(killed))
    LOGGER.error("Interrupted: files already written are complete; rerun with the same --work-dir to resume")
    return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
