"""The run's settings, resolved once: a checked :class:`~latentbids.config.RunConfig` (what was asked)
becomes what this run does on this host, in the frozen :class:`RunSettings` both levels start from.

Each decision is taken here and nowhere else:

* work dir (default ``./work``) and pybids database dir (default ``<work dir>/bids_db``), absolute,
  checked and created (:func:`resolve_config`, :func:`check_paths`);
* threads: ``--nprocs`` (default: the job's CPUs), ``--omp-nthreads`` (default ``min(8, nprocs)``);
* ``--sloppy``: :meth:`RunConfig.apply_sloppy` (a key the user set is kept, and the log says so);
* the device: :func:`latentbids.utils.devices.process_device` (``cuda`` without a GPU: exit 64 at once;
  under torchrun each process's GPU), then only read;
* templates and atlas: loaded once (:mod:`latentbids.resources`) and handed on as objects.

What is derived is written back into the config as derived (not explicit) values, so
``logs/<run_id>/config.toml`` records what ran.  No workflow reads the config: the participant level
takes :class:`~latentbids.settings.participant.ParticipantSettings`, the group level
:class:`~latentbids.settings.group.GroupSettings`, both built from :class:`RunSettings`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from latentbids.errors import CannotCreateError, MissingInputError, UsageError

if TYPE_CHECKING:
    from latentbids.resources import Atlas, Template

LOGGER = logging.getLogger("latentbids")

#: The work dir when ``-w`` is not given (fMRIPrep's default), relative to where latentbids runs.
DEFAULT_WORK_DIR = "work"


def available_cpus() -> int:
    """CPUs this job may use: the SLURM allocation, else the affinity mask (cgroups), else all."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def resolve_config(config) -> None:
    """Fill what the config leaves to the host (work dir, database dir, threads), apply ``--sloppy``
    and check every value; idempotent, and run by the CLI before any folder is touched."""
    ex = config.execution
    ex.derive("work_dir", str(Path(ex.work_dir or DEFAULT_WORK_DIR).expanduser().absolute()))
    ex.derive("bids_database_dir", str(Path(ex.bids_database_dir or Path(ex.work_dir) / "bids_db").absolute()))
    ex.derive("nprocs", ex.nprocs or available_cpus())
    ex.derive("omp_nthreads", ex.omp_nthreads or min(8, ex.nprocs))
    config.apply_sloppy()
    config.validate()


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def check_paths(config) -> None:
    """Refuse paths that would lose data or mix inputs and outputs; create the output, work and
    database folders (exit 73 when one cannot be written)."""
    ex = config.execution
    bids_dir, output_dir, work_dir = Path(ex.bids_dir), Path(ex.output_dir), Path(ex.work_dir)
    if not bids_dir.exists():
        raise MissingInputError(f"bids_dir {bids_dir} does not exist: "
                                "check the path (and the -B/-v mounts in a container)")
    if not bids_dir.is_dir():
        raise UsageError(f"bids_dir {bids_dir} is not a folder: pass the root of a BIDS dataset")
    if not (bids_dir / "dataset_description.json").is_file():
        raise MissingInputError(
            f"{bids_dir} has no dataset_description.json: pass the root of a BIDS dataset (the folder holding sub-*/)"
        )
    if output_dir.resolve() == bids_dir.resolve():
        raise UsageError(f"output_dir is bids_dir ({bids_dir}): write to {bids_dir / 'derivatives' / 'latentbids'}")
    if _inside(bids_dir, output_dir):
        target = bids_dir / "derivatives" / "latentbids"
        raise UsageError(f"output_dir {output_dir} contains bids_dir: write to {target}")
    if _inside(output_dir, bids_dir) and not _inside(output_dir, bids_dir / "derivatives"):
        target = bids_dir / "derivatives" / "latentbids"
        raise UsageError(f"output_dir {output_dir} is inside bids_dir but not under derivatives/: use {target}")
    if _inside(work_dir, bids_dir):
        raise UsageError(f"--work-dir {work_dir} is inside bids_dir: put it outside the dataset (e.g. /tmp/work)")
    if _inside(Path(ex.bids_database_dir), bids_dir):
        raise UsageError(f"--bids-database-dir {ex.bids_database_dir} is inside bids_dir: put it outside the dataset")
    if _inside(work_dir, output_dir):
        raise UsageError(f"--work-dir {work_dir} is inside output_dir: put it outside the derivatives (e.g. /tmp/work)")
    if ex.use_plugin and not Path(ex.use_plugin).is_file():
        raise MissingInputError(f"--use-plugin {ex.use_plugin} not found: pass a Nipype plugin YAML file")
    if config.model.model and not Path(config.model.model).is_dir():
        raise MissingInputError(f"--model {config.model.model} not found: "
                                "pass a model folder written by the group level (output_dir/models/...)")
    for name, path in ex.derivatives.items():
        if not Path(path).is_dir():
            raise MissingInputError(f"--derivatives {name}={path}: folder not found; check the path")
    for folder, option in ((output_dir, "output_dir"), (work_dir, "--work-dir"),
                           (Path(ex.bids_database_dir), "--bids-database-dir")):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CannotCreateError(
                f"{option} {folder} cannot be created ({exc.strerror or exc}): choose a writable folder"
            ) from None
        if not (os.access(folder, os.W_OK | os.X_OK) and folder.is_dir()):
            raise CannotCreateError(f"{option} {folder} is not a writable folder: choose a writable folder")


@dataclass(frozen=True)
class Selection:
    """Which inputs of the BIDS dataset this run reads: ``--participant-label``, ``--session-label`` and
    ``--bids-filter-file`` (empty: every one), and where pybids keeps its database."""

    bids_dir: Path
    database_dir: Path
    participant_label: tuple[str, ...] = ()
    session_label: tuple[str, ...] = ()
    filters: dict = field(default_factory=dict)


def selection_of(config) -> Selection:
    """The :class:`Selection` of a resolved config."""
    ex = config.execution
    return Selection(bids_dir=Path(ex.bids_dir), database_dir=Path(ex.bids_database_dir),
                     participant_label=tuple(ex.participant_label or ()), session_label=tuple(ex.session_label or ()),
                     filters=dict(ex.bids_filters or {}))


@dataclass(frozen=True)
class RunSettings:
    """What both levels run with, resolved on this host.

    ``device`` is ``cpu`` or ``cuda:N`` (never ``auto``); ``templates`` are the ``--output-spaces``
    grids in order (the first drives segmentation and the group level); ``mem_gb`` 0 means no limit;
    ``record`` is the resolved config as ``logs/<run_id>/config.toml`` keeps it (``config.to_dict()``);
    ``atlas`` is the primary atlas and ``atlases`` every ``--atlas`` in order (the primary first).
    """

    output_dir: Path
    work_dir: Path
    run_id: str
    nprocs: int
    omp_nthreads: int
    mem_gb: float
    device: str
    templates: tuple[Template, ...]
    atlas: Atlas
    atlases: tuple[Atlas, ...] = ()
    selection: Selection | None = None
    seed: int = 42
    record: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def multiproc_args(self) -> dict:
        """Nipype MultiProc arguments (a ``--use-plugin`` file's own values override them)."""
        args = {"n_procs": self.nprocs, "raise_insufficient": False}
        if self.mem_gb:
            args["memory_gb"] = self.mem_gb
        return args


def resolve_run(config) -> RunSettings:
    """Resolve the config (:func:`resolve_config`), the device, the templates and the atlas, once.

    ``--device cuda`` without a GPU, an unknown space or atlas, or a TemplateFlow space missing from
    the cache fail here in one line, before any subject is touched.
    """
    from latentbids.resources import templates_for
    from latentbids.utils.devices import describe_device, process_device

    resolve_config(config)
    ex, sp = config.execution, config.spatial
    for old, new in (("qc_min_max", "qc_min_peak"), ("qc_nonzero_range", "qc_min_coverage and qc_max_outside")):
        if getattr(config.anat, old) is not None:
            LOGGER.warning("[anat] %s is no longer used (it depended on the grid's box and on numerical tails): "
                           "see %s", old, new)
    device = process_device(ex.device)
    ex.derive("resolved_device", f"{device} ({describe_device(device)})")
    LOGGER.info("Device %s resolved to %s", ex.device, ex.resolved_device)
    if ex.templateflow_home:
        os.environ["TEMPLATEFLOW_HOME"] = ex.templateflow_home
    templates = tuple(templates_for(sp.output_spaces, ex.templateflow_home or None))
    atlases = load_atlases(sp.atlas, sp.atlas_labels or None, ex.nilearn_data or None)
    atlas = atlases[0]
    for template in templates:
        LOGGER.info("Template %s (%s)", template.name, template.source)
    for i, one in enumerate(atlases):
        LOGGER.info("Atlas %s with %d regions (%s)%s", one.name, one.n_regions, one.source,
                    "" if i else (" - the primary atlas" if len(atlases) > 1 else ""))
    return RunSettings(output_dir=Path(ex.output_dir).absolute(), work_dir=Path(ex.work_dir), run_id=ex.run_id,
                       nprocs=ex.nprocs, omp_nthreads=ex.omp_nthreads, mem_gb=ex.mem_gb, device=str(device),
                       templates=templates, atlas=atlas, atlases=atlases, selection=selection_of(config),
                       seed=ex.random_seed, record=config.to_dict())


def load_atlases(names, labels_path: str | None = None, nilearn_data: str | None = None) -> tuple[Atlas, ...]:
    """Every ``--atlas`` loaded once, the primary first.

    ``--atlas-labels`` names the label table of the one path atlas; with several path atlases each takes
    the ``.tsv`` beside it, and ``--atlas-labels`` is refused (it could not say which it belongs to).  Two
    atlases with one BIDS name would write the same files: refused.
    """
    from latentbids.resources import get_atlas
    from latentbids.resources.atlases import is_atlas_path

    names = [names] if isinstance(names, str) else list(names)
    paths = [n for n in names if is_atlas_path(str(n))]
    if labels_path and len(paths) > 1:
        raise UsageError(f"--atlas-labels {labels_path} with {len(paths)} atlas files: put each file's labels "
                         "in a .tsv beside it (same name) and drop --atlas-labels")
    atlases = tuple(get_atlas(n, labels_path if n in paths else None, nilearn_data) for n in names)
    seen: dict[str, str] = {}
    for name, atlas in zip(names, atlases):
        if atlas.bids_name in seen:
            raise UsageError(f"--atlas {seen[atlas.bids_name]} and {name} both write atlas-{atlas.bids_name} files: "
                             "rename one of the files")
        seen[atlas.bids_name] = name
    return atlases
