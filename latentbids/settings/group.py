"""The group level's settings, built once from the resolved config: what every group stage reads.

:func:`group_settings` is the only place the group level looks at the config.  After it, ``--latent-dim``
lives in ``GroupSettings.train.latent_dim``, ``--device`` in ``GroupSettings.device`` (resolved once, by
:func:`~latentbids.settings.run.resolve_run`), ``--contrast`` in ``GroupSettings.analysis.contrasts``; the
stages under :mod:`latentbids.workflows.group.training` take these objects and only read them.  A decision the
data force on the run (no modulated GM maps: train on the probability maps) returns new settings
(:meth:`GroupSettings.with_input_map`) and never changes the config.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from latentbids.config import SLOPPY_GRID_MM
from latentbids.errors import UsageError
from latentbids.model.train_settings import TrainSettings
from latentbids.settings.run import RunSettings, Selection, resolve_config, selection_of


@dataclass(frozen=True)
class FoldPlan:
    """How subjects are split: ``n_folds`` stratified folds, or one model on every subject (``fit_all``);
    ``validation_fraction`` of each fold's training subjects stop early; ``only`` is ``--fold N`` (one fold,
    a job of its own) or None (every fold)."""

    n_folds: int
    fit_all: bool
    validation_fraction: float
    seed: int
    only: str | None = None

    @property
    def mode(self) -> str:
        return "fit_all" if self.fit_all else "kfold"


@dataclass(frozen=True)
class GroupSettings:
    """Everything the group level runs with, resolved on this host (see the module docstring).

    Attributes
    ----------
    output_dir, work_dir, run_id, nprocs, omp_nthreads : Path, Path, str, int, int
        The run's folders, id and threads.
    device : str
        ``cpu`` or ``cuda:N`` (never ``auto``; under torchrun this process's GPU).
    selection : Selection
        ``--participant-label`` and ``--session-label`` (which GM maps are gathered), and the dataset.
    seed, deterministic, sloppy : int, bool, bool
        ``--random-seed``, ``--deterministic``, ``--sloppy`` (recorded in the model folder).
    working_grid_mm : float
        The network's grid: 0 for the template's, else a block-average at about this voxel size
        (``--sloppy``: :data:`latentbids.config.SLOPPY_GRID_MM`).
    model_name : str
        The name the outputs carry (``models/<name>/``, ``desc-<name>``), checked once here.
    given_model : Path or None
        ``--model DIR``: encode with it, no training.
    input_map, scale_percentile, compile, exclude_qc_failures : str, float, str, bool
        Which GM maps are trained on (``modulated`` or ``probseg``), their intensity scale, torch.compile,
        and whether maps that failed participant QC are left out.
    train : TrainSettings
        The network, optimiser and early stopping.
    folds : FoldPlan
        The splits.
    analysis : AnalysisConfig
        ``[analysis]``, frozen (``--sloppy`` applied): the latent-space analysis.
    record : dict
        The config as ``logs/<run_id>/config.toml`` and the model folder keep it (with this run's input map).
    """

    output_dir: Path
    work_dir: Path
    run_id: str
    nprocs: int
    omp_nthreads: int
    device: str
    selection: Selection
    seed: int
    deterministic: bool
    sloppy: bool
    working_grid_mm: float
    model_name: str
    given_model: Path | None
    input_map: str
    scale_percentile: float
    compile: str
    exclude_qc_failures: bool
    train: TrainSettings
    folds: FoldPlan
    analysis: object
    record: dict = field(default_factory=dict, repr=False, compare=False)

    def with_input_map(self, input_map: str) -> GroupSettings:
        """These settings training on ``input_map`` maps instead (recorded as such)."""
        record = {**self.record, "model": {**self.record.get("model", {}), "input_map": input_map}}
        return dataclasses.replace(self, input_map=input_map, record=record)

    def provenance(self) -> dict:
        """:attr:`record` plus the environment (versions, host, device) for ``config.toml`` files."""
        from latentbids.utils.environment import environment_info

        return {**self.record, "environment": environment_info()}


def train_settings(model_config, seed: int, deterministic: bool) -> TrainSettings:
    """The :class:`TrainSettings` of a checked ``[model]`` section."""
    mc = model_config
    return TrainSettings(latent_dim=int(mc.latent_dim), channels=tuple(int(c) for c in mc.channels),
                         learning_rate=float(mc.learning_rate), batch_size=int(mc.batch_size),
                         max_epochs=int(mc.max_epochs), patience=int(mc.patience), seed=int(seed),
                         deterministic=bool(deterministic), norm=str(mc.norm), stem=str(mc.stem))


def fold_plan(model_config, seed: int) -> FoldPlan:
    """The :class:`FoldPlan` of ``[model]``; ``--fold`` with ``--fit-all`` or ``--model`` is refused here."""
    mc = model_config
    fold = int(mc.fold or 0)
    if fold < 0:
        raise UsageError(f"--fold {fold}: folds are numbered from 1")
    if fold and mc.fit_all:
        raise UsageError("--fold trains one fold of the cross-validation, --fit-all one model on every subject: "
                         "drop one of them")
    if fold and mc.model:
        raise UsageError("--fold trains a fold; --model encodes with a trained model: drop one of them")
    return FoldPlan(n_folds=int(mc.n_folds), fit_all=bool(mc.fit_all),
                    validation_fraction=float(mc.validation_fraction), seed=int(seed),
                    only=str(fold) if fold else None)


def group_settings(config, run: RunSettings | None = None) -> GroupSettings:
    """The group level's settings of a config (resolved here: :func:`resolve_config`, idempotent).

    ``run`` (from :func:`~latentbids.settings.run.resolve_run`) gives the device; without it (library use,
    tests) the device is resolved here from ``--device``, the one rule
    (:func:`latentbids.utils.devices.process_device`).
    """
    from latentbids.model.names import expected_model_name

    resolve_config(config)
    ex, mc = config.execution, config.model
    if not ex.output_dir:
        raise UsageError("the group level needs an output folder (config.execution.output_dir)")
    if run is not None:
        device = run.device
    else:
        from latentbids.utils.devices import process_device

        device = str(process_device(ex.device))
    return GroupSettings(
        output_dir=Path(ex.output_dir).absolute(), work_dir=Path(ex.work_dir), run_id=ex.run_id, nprocs=int(ex.nprocs),
        omp_nthreads=int(ex.omp_nthreads), device=device, selection=selection_of(config), seed=int(ex.random_seed),
        deterministic=bool(ex.deterministic), sloppy=bool(ex.sloppy),
        working_grid_mm=SLOPPY_GRID_MM if ex.sloppy else 0.0,
        model_name=expected_model_name(mc.model or None, mc.model_name, int(mc.latent_dim)),
        given_model=Path(mc.model) if mc.model else None, input_map=str(mc.input_map),
        scale_percentile=float(mc.scale_percentile), compile=str(mc.compile),
        exclude_qc_failures=bool(mc.exclude_qc_failures), train=train_settings(mc, ex.random_seed, ex.deterministic),
        folds=fold_plan(mc, ex.random_seed), analysis=config.analysis.frozen_copy(), record=config.to_dict(),
    )
