"""Settings resolved once: a checked :class:`~latentbids.config.RunConfig` (what was asked) becomes
what this run does on this host, in the frozen settings objects the levels take as arguments.

Each decision is taken here and nowhere else:

* work dir (default ``./work``) and pybids database dir (default ``<work dir>/bids_db``), absolute,
  checked and created (:func:`resolve_config`, :func:`check_paths`);
* threads: ``--nprocs`` (default: the job's CPUs), ``--omp-nthreads`` (default ``min(8, nprocs)``);
* ``--sloppy``: :meth:`RunConfig.apply_sloppy` (a key the user set is kept, and the log says so);
* the device: :func:`latentbids.utils.devices.resolve_device` (``cuda`` without a GPU: exit 64 at once);
* templates and atlas: loaded once (:mod:`latentbids.resources`) and handed on as objects.

What is derived is written back into the config as derived (not explicit) values, so
``logs/<run_id>/config.toml`` records what ran.  The participant level takes
:class:`ParticipantSettings`; the group level reads the resolved config and :class:`RunSettings`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from latentbids.config_checks import QC_SOURCES
from latentbids.errors import CannotCreateError, MissingInputError, UsageError

if TYPE_CHECKING:
    from latentbids.resources import Atlas, Template

LOGGER = logging.getLogger("latentbids")

#: The work dir when ``-w`` is not given (fMRIPrep's default), relative to where latentbids runs.
DEFAULT_WORK_DIR = "work"
#: ``[anat]`` QC threshold keys, each a number or a table by source (:data:`QC_SOURCES`).
QC_FIELDS = ("qc_min_peak", "qc_min_coverage", "qc_max_outside", "qc_min_template_corr")


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
class RunSettings:
    """What both levels run with, resolved on this host.

    ``device`` is ``cpu`` or ``cuda:N`` (never ``auto``); ``templates`` are the ``--output-spaces``
    grids in order (the first drives segmentation and the group level); ``mem_gb`` 0 means no limit.
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
    from latentbids.resources import get_atlas, templates_for
    from latentbids.utils.devices import describe_device, resolve_device

    resolve_config(config)
    ex, sp = config.execution, config.spatial
    for old, new in (("qc_min_max", "qc_min_peak"), ("qc_nonzero_range", "qc_min_coverage and qc_max_outside")):
        if getattr(config.anat, old) is not None:
            LOGGER.warning("[anat] %s is no longer used (it depended on the grid's box and on numerical tails): "
                           "see %s", old, new)
    device = resolve_device(ex.device)
    ex.derive("resolved_device", f"{device} ({describe_device(device)})")
    LOGGER.info("Device %s resolved to %s", ex.device, ex.resolved_device)
    if ex.templateflow_home:
        os.environ["TEMPLATEFLOW_HOME"] = ex.templateflow_home
    templates = tuple(templates_for(sp.output_spaces, ex.templateflow_home or None))
    atlas = get_atlas(sp.atlas, sp.atlas_labels or None, ex.nilearn_data or None)
    for template in templates:
        LOGGER.info("Template %s (%s)", template.name, template.source)
    LOGGER.info("Atlas %s with %d regions (%s)", atlas.name, atlas.n_regions, atlas.source)
    return RunSettings(output_dir=Path(ex.output_dir).absolute(), work_dir=Path(ex.work_dir), run_id=ex.run_id,
                       nprocs=ex.nprocs, omp_nthreads=ex.omp_nthreads, mem_gb=ex.mem_gb, device=str(device),
                       templates=templates, atlas=atlas)


@dataclass(frozen=True)
class AnatSettings:
    """Everything the anatomical workflows need (``[anat]`` resolved, ``--sloppy`` applied)."""

    brain_extraction: str  # hdbet | template
    hdbet_mode: str
    hdbet_tta: bool
    registration: str
    prior_weight: float
    mrf: float
    atropos_iterations: int
    n4_iterations: tuple[int, ...]
    seed: int
    device: str  # cpu | cuda:N (HD-BET)
    qc_floor: float
    #: ``{source: {threshold: value}}`` for every source in :data:`QC_SOURCES` (see :func:`qc_thresholds`)
    qc: dict = field(repr=False)

    @property
    def use_gpu(self) -> bool:
        return self.device.startswith("cuda")

    def qc_inputs(self, source: str) -> dict:
        """:class:`~latentbids.interfaces.measures.QualityMetrics` inputs for a GM map from ``source``."""
        return {"qc_source": source, "qc_floor": self.qc_floor, **self.qc[source]}


def qc_thresholds(anat_config) -> dict[str, dict[str, float]]:
    """``{source: {qc_min_peak: .., qc_min_coverage: .., ...}}`` from a checked ``config.anat``.

    Each threshold is a table per source (``qc_min_peak = {own = 0.9, smriprep = 0.7}``) or one number
    for every source; a source the table leaves out keeps its default.
    """
    from latentbids.config import AnatConfig

    defaults = AnatConfig()
    out: dict[str, dict[str, float]] = {source: {} for source in QC_SOURCES}
    for name in QC_FIELDS:
        value = getattr(anat_config, name)
        table = {**getattr(defaults, name), **value} if isinstance(value, dict) else dict.fromkeys(QC_SOURCES, value)
        for source in QC_SOURCES:
            out[source][name] = float(table[source])
    return out


def anat_settings(config, device: str) -> AnatSettings:
    """The anatomical settings of a resolved config (:func:`resolve_config`) on ``device``."""
    an = config.anat
    return AnatSettings(
        brain_extraction=an.brain_extraction, hdbet_mode=an.hdbet_mode, hdbet_tta=an.hdbet_tta,
        registration=an.registration, prior_weight=an.atropos_prior_weight, mrf=an.atropos_mrf,
        atropos_iterations=an.atropos_iterations, n4_iterations=tuple(an.n4_iterations),
        seed=config.execution.random_seed, device=device, qc_floor=an.qc_floor, qc=qc_thresholds(an),
    )


@dataclass(frozen=True)
class ParticipantSettings:
    """What the participant level runs with: the run's settings, the anatomical settings, and the
    ``-d NAME=PATH`` datasets whose GM maps are reused."""

    run: RunSettings
    anat: AnatSettings
    derivatives: dict = field(default_factory=dict)
    stop_on_first_crash: bool = False


def participant_settings(config, run: RunSettings | None = None) -> ParticipantSettings:
    """The participant level's settings; ``run`` from :func:`resolve_run` (resolved here when not given)."""
    if not config.execution.output_dir:
        raise UsageError("the participant level needs an output folder (config.execution.output_dir)")
    run = run if run is not None else resolve_run(config)
    return ParticipantSettings(run=run, anat=anat_settings(config, run.device),
                               derivatives=dict(config.execution.derivatives),
                               stop_on_first_crash=config.execution.stop_on_first_crash)
