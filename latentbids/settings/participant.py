"""The participant level's settings: the run's, the anatomical workflow's (``[anat]`` resolved,
``--sloppy`` applied, QC thresholds per source) and what the level reads besides the T1w images
(``-d`` datasets, ``--model``, ``--use-plugin``), frozen, built once from the resolved config."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from latentbids.config_checks import QC_SOURCES
from latentbids.errors import UsageError
from latentbids.settings.run import RunSettings, resolve_run

#: ``[anat]`` QC threshold keys, each a number or a table by source (:data:`QC_SOURCES`).
QC_FIELDS = ("qc_min_peak", "qc_min_coverage", "qc_max_outside", "qc_min_template_corr")


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
    """What the participant level runs with: the run's settings, the anatomical settings, the
    ``-d NAME=PATH`` datasets whose GM maps are reused, ``--model`` (each subject encoded with it after
    processing; None: not) with the map kind to encode when its folder does not say, and the Nipype
    plugin file (``--use-plugin``, None: MultiProc with the run's threads)."""

    run: RunSettings
    anat: AnatSettings
    derivatives: dict = field(default_factory=dict)
    stop_on_first_crash: bool = False
    given_model: Path | None = None
    input_map: str = "modulated"
    use_plugin: str | None = None


def participant_settings(config, run: RunSettings | None = None) -> ParticipantSettings:
    """The participant level's settings; ``run`` from :func:`resolve_run` (resolved here when not given)."""
    if not config.execution.output_dir:
        raise UsageError("the participant level needs an output folder (config.execution.output_dir)")
    run = run if run is not None else resolve_run(config)
    ex, mc = config.execution, config.model
    return ParticipantSettings(run=run, anat=anat_settings(config, run.device), derivatives=dict(ex.derivatives),
                               stop_on_first_crash=ex.stop_on_first_crash,
                               given_model=Path(mc.model) if mc.model else None, input_map=mc.input_map,
                               use_plugin=ex.use_plugin or None)
