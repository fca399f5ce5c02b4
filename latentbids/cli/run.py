"""``latentbids`` entry point: build the run configuration, check inputs, dispatch a level.

This module only turns arguments into a :class:`~latentbids.config.RunConfig` and calls the
participant or group level; the science lives elsewhere.  User errors end as one line on stderr
with the exit code documented in :mod:`latentbids.errors`.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from latentbids import __version__
from latentbids.errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    CannotCreateError,
    LatentbidsError,
    MissingInputError,
    UsageError,
)

LOGGER = logging.getLogger("latentbids")


def build_config(args):
    """Defaults < ``--config-file`` < command line, then paths resolved and checked."""
    from latentbids.bids.layout import load_filter_file, read_labels
    from latentbids.cli.parser import OPTION_TO_CONFIG
    from latentbids.config import RunConfig, load_toml, new_run_id

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
    updates: dict = {}
    for dest, value in given.items():
        if dest in OPTION_TO_CONFIG:
            section, key = OPTION_TO_CONFIG[dest]
            updates.setdefault(section, {})[key] = value
    config.update(updates, origin="command line")

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
    ex.work_dir = str(Path(ex.work_dir or "work").expanduser().absolute())
    if not ex.bids_database_dir:
        ex.bids_database_dir = str(Path(ex.work_dir) / "bids_db")
    ex.nprocs = ex.nprocs or available_cpus()
    ex.omp_nthreads = ex.omp_nthreads or min(8, ex.nprocs)
    ex.verbose = ex.verbose or 0
    check_paths(config)
    return config


def available_cpus() -> int:
    """CPUs this job may use: the SLURM allocation, else the affinity mask (cgroups), else all."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def check_paths(config) -> None:
    """Refuse paths that would lose data or mix inputs and outputs."""
    ex = config.execution
    bids_dir, output_dir, work_dir = Path(ex.bids_dir), Path(ex.output_dir), Path(ex.work_dir)
    if not bids_dir.exists():
        raise MissingInputError(f"bids_dir {bids_dir} does not exist: check the path (and the -B/-v mounts in a container)")
    if not bids_dir.is_dir():
        raise UsageError(f"bids_dir {bids_dir} is not a folder: pass the root of a BIDS dataset")
    if not (bids_dir / "dataset_description.json").is_file():
        raise MissingInputError(
            f"{bids_dir} has no dataset_description.json: pass the root of a BIDS dataset (the folder holding sub-*/)"
        )
    if output_dir.resolve() == bids_dir.resolve():
        raise UsageError(f"output_dir is bids_dir ({bids_dir}): write to {bids_dir / 'derivatives' / 'latentbids'}")
    if _inside(bids_dir, output_dir):
        raise UsageError(f"output_dir {output_dir} contains bids_dir: write to {bids_dir / 'derivatives' / 'latentbids'}")
    if _inside(output_dir, bids_dir) and not _inside(output_dir, bids_dir / "derivatives"):
        raise UsageError(f"output_dir {output_dir} is inside bids_dir but not under derivatives/: use {bids_dir / 'derivatives' / 'latentbids'}")
    if _inside(work_dir, bids_dir):
        raise UsageError(f"--work-dir {work_dir} is inside bids_dir: put it outside the dataset (e.g. /tmp/work)")
    if _inside(Path(ex.bids_database_dir), bids_dir):
        raise UsageError(f"--bids-database-dir {ex.bids_database_dir} is inside bids_dir: put it outside the dataset")
    if _inside(work_dir, output_dir):
        raise UsageError(f"--work-dir {work_dir} is inside output_dir: put it outside the derivatives (e.g. /tmp/work)")
    if config.execution.use_plugin and not Path(config.execution.use_plugin).is_file():
        raise MissingInputError(f"--use-plugin {config.execution.use_plugin} not found: pass a Nipype plugin YAML file")
    if config.model.model and not Path(config.model.model).is_dir():
        raise MissingInputError(f"--model {config.model.model} not found: pass a model folder written by the group level (output_dir/models/...)")
    for name, path in config.execution.derivatives.items():
        if not Path(path).is_dir():
            raise MissingInputError(f"--derivatives {name}={path}: folder not found; check the path")
    folders = ((output_dir, "output_dir"), (work_dir, "--work-dir"),
               (Path(ex.bids_database_dir), "--bids-database-dir"))
    for folder, option in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CannotCreateError(
                f"{option} {folder} cannot be created ({exc.strerror or exc}): choose a writable folder"
            ) from None
        if not (os.access(folder, os.W_OK | os.X_OK) and folder.is_dir()):
            raise CannotCreateError(f"{option} {folder} is not a writable folder: choose a writable folder")


def load_plugin(config) -> tuple[str, dict]:
    """Nipype plugin name and arguments: ``--use-plugin`` YAML or MultiProc with ``--nprocs``.

    ``--nprocs 1`` is MultiProc with one worker too, not Linear: a node running in the main process
    (C++ code holding the interpreter) would delay a cancellation until it returns.
    """
    from latentbids.workflows.participant import multiproc_args

    ex = config.execution
    if not ex.use_plugin:
        return "MultiProc", multiproc_args(config)
    import yaml

    try:
        data = yaml.safe_load(Path(ex.use_plugin).read_text()) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"--use-plugin {ex.use_plugin} is not valid YAML ({exc}): fix it") from None
    if not isinstance(data, dict) or "plugin" not in data:
        raise UsageError(f"--use-plugin {ex.use_plugin} must contain 'plugin: NAME' (e.g. MultiProc, SLURM)")
    args = data.get("plugin_args") or {}
    if data["plugin"] in ("MultiProc", "LegacyMultiProc"):
        args = {**multiproc_args(config), **args}
    return str(data["plugin"]), args


def prepare_run(config):
    """Resources, validation and the output dataset skeleton shared by both levels."""
    from latentbids.bids.boilerplate import write_boilerplate
    from latentbids.bids.derivatives import init_output_dataset, write_run_config
    from latentbids.bids.validation import validate_dataset
    from latentbids.cli.logging_setup import add_log_file, quiet_nipype
    from latentbids.config import container_kind
    from latentbids.resources import get_atlas, templates_for
    from latentbids.utils.caches import use_writable_caches

    from latentbids.model.device import describe_device, resolve_device

    ex = config.execution
    add_log_file(Path(ex.output_dir) / "logs" / ex.run_id / "latentbids.log")
    use_writable_caches(ex.work_dir)  # before numba/matplotlib are imported: read-only containers
    quiet_nipype(ex.verbose)
    LOGGER.info("latentbids %s, %s level, run %s", __version__, ex.analysis_level, ex.run_id)
    # Resolve the device before any work, so '--device cuda' without a GPU fails in one line at once.
    device = resolve_device(ex.device)
    ex.resolved_device = f"{device} ({describe_device(device)})"
    if ex.templateflow_home:
        os.environ["TEMPLATEFLOW_HOME"] = ex.templateflow_home
    templates = templates_for(config.spatial.output_spaces, ex.templateflow_home or None)
    atlas = get_atlas(config.spatial.atlas, config.spatial.atlas_labels or None, ex.nilearn_data or None)
    for template in templates:
        LOGGER.info("Template %s (%s)", template.name, template.source)
    LOGGER.info("Atlas %s with %d regions (%s)", atlas.name, atlas.n_regions, atlas.source)
    rebuild_only = ex.reports_only or ex.boilerplate_only  # nothing is computed from the inputs
    if ex.skip_bids_validation or rebuild_only:
        LOGGER.info("BIDS validation skipped (%s)", "--skip-bids-validation" if ex.skip_bids_validation
                    else "reports/boilerplate only")
    else:
        validate_dataset(ex.bids_dir, Path(ex.work_dir) / "logs" / f"bids-validator_{ex.run_id}.json",
                         participant_label=ex.participant_label)
    if (ex.analysis_level == "participant" and config.anat.brain_extraction == "hdbet" and not ex.sloppy
            and not rebuild_only):
        from latentbids.anat.preprocess import check_hdbet_weights

        check_hdbet_weights(config.anat.hdbet_mode)  # one line and exit 66 now, not a crash per subject
    if not ex.boilerplate_only:
        init_output_dataset(ex.output_dir, ex.bids_dir, container_kind(), atlas, derivatives=ex.derivatives,
                            templates=templates)
        write_run_config(ex.output_dir, ex.run_id, config)
    write_boilerplate(ex.output_dir, config, templates, atlas)
    return templates, atlas


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
    try:
        args = parse_args(argv)
        setup_logging(getattr(args, "verbose", 0) or 0)
        config = build_config(args)
        if config.execution.clean_workdir:
            from latentbids.cli.workdir import clean_work_dir

            clean_work_dir(config)
        templates, atlas = prepare_run(config)
        if config.execution.boilerplate_only or config.execution.reports_only:
            from latentbids.cli.reports_only import run_reports_only

            code = run_reports_only(config, templates, atlas)
        elif config.execution.analysis_level == "participant":
            from latentbids.cli.participant import run_participant_level

            code = run_participant_level(config, templates, atlas)
        else:
            from latentbids.cli.group import run_group_level_cli

            code = run_group_level_cli(config, templates, atlas)
        if interrupted():
            raise KeyboardInterrupt
        return code
    except LatentbidsError as exc:
        if interrupted():  # e.g. a worker killed by the same signal, reported as a failure
            return _interrupted()
        LOGGER.error("%s", exc.message)
        return exc.exit_code
    except MemoryError:
        LOGGER.error("Out of memory: lower --nprocs, raise --mem / the container's memory limit, or use --batch-size")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return _interrupted()
    finally:
        for sig, handler in previous.items():  # callers that import main (tests) get theirs back
            if handler is not None:
                signal.signal(sig, handler)


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
