"""One run's configuration: every parameter, seed, path and device, in one place.

The CLI builds a :class:`RunConfig` (defaults here < ``--config-file`` TOML < command line),
:mod:`latentbids.settings` resolves it once into the settings the levels run with, and ``logs/`` keeps
it as TOML with package versions so a run can be repeated.  Science defaults come from METHOD.md; the
ones marked [ours] there live here and nowhere else (interface defaults are read from here).

Every value is checked when it is set, whichever way (a section's ``__init__``, :meth:`RunConfig.update`
from the command line or a TOML file, or an assignment in code): its type is the field's annotation,
its choices or range are in :mod:`latentbids.config_checks`; a bad value is one usage error (exit 64)
naming the key, the value and what is allowed.  Keys set after a section is built are remembered as
*explicit*: ``--sloppy`` never silently replaces one of them (:meth:`RunConfig.apply_sloppy`).
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys
import typing
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from latentbids.config_checks import check_value
from latentbids.errors import MissingInputError, UsageError

LOGGER = logging.getLogger("latentbids")

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class _Section:
    """Base of the config sections: each assignment is checked, and the keys assigned after the
    section was built (by the user's file or command line, or by code) are remembered as explicit."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_explicit", set())

    def __setattr__(self, key: str, value) -> None:
        if self.__dict__.get("_frozen"):
            raise dataclasses.FrozenInstanceError(f"[{SECTION_NAMES[type(self)]}] is frozen (settings are read, "
                                                  f"never changed): cannot set {key}")
        hints = _field_types(type(self))
        if key not in hints:
            raise UsageError(f"unknown key '{key}' in [{SECTION_NAMES[type(self)]}]; known: "
                             f"{', '.join(sorted(hints))}")
        object.__setattr__(self, key, check_value(SECTION_NAMES[type(self)], key, value, hints[key]))
        explicit = self.__dict__.get("_explicit")
        if explicit is not None:
            explicit.add(key)

    @property
    def explicit(self) -> frozenset[str]:
        """The keys set after construction: what the user (or the calling code) chose."""
        return frozenset(self.__dict__.get("_explicit", ()))

    def frozen_copy(self):
        """A copy that refuses every assignment (lists become tuples): what settings hand to the science,
        so no stage can change a value another stage reads."""
        copy = type(self)(**{k: tuple(v) if isinstance(v, list) else v for k, v in dataclasses.asdict(self).items()})
        object.__setattr__(copy, "_explicit", set(self.explicit))
        object.__setattr__(copy, "_frozen", True)
        return copy

    def derive(self, key: str, value) -> None:
        """Set a value the run derives (a default resolved on this host, a ``--sloppy`` setting):
        checked like any other, but not counted as the user's choice."""
        if self.__dict__.get("_frozen"):
            raise dataclasses.FrozenInstanceError(f"[{SECTION_NAMES[type(self)]}] is frozen: cannot derive {key}")
        object.__setattr__(self, key, check_value(SECTION_NAMES[type(self)], key, value, _field_types(type(self))[key]))

    def check(self) -> None:
        """Check every value again, in place (explicit keys stay explicit)."""
        for key in _field_types(type(self)):
            self.derive(key, getattr(self, key))


@functools.lru_cache(maxsize=None)
def _field_types(cls) -> dict[str, Any]:
    return {f.name: hint for f, hint in ((f, typing.get_type_hints(cls)[f.name]) for f in dataclasses.fields(cls))}


@dataclass
class ExecutionConfig(_Section):
    """Where things are and how the run executes."""

    bids_dir: str = ""
    output_dir: str = ""
    analysis_level: str = "participant"
    work_dir: str = ""
    bids_database_dir: str = ""
    participant_label: list[str] = field(default_factory=list)
    session_label: list[str] = field(default_factory=list)
    bids_filters: dict = field(default_factory=dict)
    derivatives: dict = field(default_factory=dict)
    skip_bids_validation: bool = False
    nprocs: int = 0
    omp_nthreads: int = 0
    mem_gb: float = 0.0
    use_plugin: str = ""
    stop_on_first_crash: bool = False
    sloppy: bool = False
    notrack: bool = False
    verbose: int = 0
    device: str = "auto"
    resolved_device: str = ""  # what --device resolved to on this host (set at run start)
    random_seed: int = 42
    deterministic: bool = False
    templateflow_home: str = ""
    nilearn_data: str = ""
    run_id: str = ""
    reports_only: bool = False  # rebuild the reports from the outputs already in output_dir, nothing else
    boilerplate_only: bool = False  # write logs/CITATION.* and stop
    clean_workdir: bool = False  # empty the work dir's latentbids folders before the run


@dataclass
class SpatialConfig(_Section):
    """Template grid and atlas (METHOD.md section 2)."""

    # nilearn's 2 mm grid of ICBM 2009a symmetric: works offline, named so it is never taken for a
    # TemplateFlow grid (resources/templates.py DEFAULT_OUTPUT_SPACE)
    output_spaces: list[str] = field(default_factory=lambda: ["MNI152NLin2009aSym:res-nilearn2"])
    # the primary atlas first (the headline speaks for it); the others are a sensitivity analysis read through
    # the same latent space (METHOD.md, the atlas caution); a plain string is one atlas
    atlas: list[str] | str = field(default_factory=lambda: ["AAL"])
    atlas_labels: str = ""


@dataclass
class AnatConfig(_Section):
    """Participant-level GM segmentation and registration (METHOD.md section 2) [ours]."""

    brain_extraction: str = "hdbet"  # hdbet | template
    # HD-BET settings are fixed here, not by the hardware: the same scan gets the same mask on CPU and GPU.
    hdbet_mode: str = "fast"  # fast (one network) | accurate (five networks)
    hdbet_tta: bool = False  # test-time mirroring (8x the compute)
    registration: str = "SyN"  # config_checks.REGISTRATIONS: SyN | SyNQuick | SyNAggro | SyNRA | Affine
    atropos_prior_weight: float = 0.25
    atropos_mrf: float = 0.2  # 0.1 in METHOD.md; 0.2 measured better on IXI vs DLMUSE (BENCHMARKS.md)
    atropos_iterations: int = 5
    n4_iterations: list[int] = field(default_factory=lambda: [50, 50, 50, 50])  # per fitting level
    # QC of the template-space GM map (anat.measures.qc_metrics): measured inside the template brain
    # mask on GM >= qc_floor, so neither the grid's box nor a smoothed map's tails matter. Thresholds
    # per source: "own" (this segmentation), "smriprep", "cat12" (maps reused with -d); measured
    # values on IXI and simulated maps in BENCHMARKS.md.
    qc_floor: float = 0.1
    # One number instead of a table applies to every source (QC_SOURCES).
    qc_min_peak: dict[str, float] | float = field(default_factory=lambda: {"own": 0.9, "smriprep": 0.7, "cat12": 0.7})
    qc_min_coverage: dict[str, float] | float = field(
        default_factory=lambda: {"own": 0.55, "smriprep": 0.55, "cat12": 0.55})
    qc_max_outside: dict[str, float] | float = field(
        default_factory=lambda: {"own": 0.08, "smriprep": 0.15, "cat12": 0.15})
    qc_min_template_corr: dict[str, float] | float = field(
        default_factory=lambda: {"own": 0.5, "smriprep": 0.5, "cat12": 0.5})
    qc_min_max: float | None = None  # replaced by qc_min_peak; accepted (ignored, warned) in old config files
    qc_nonzero_range: list | None = None  # replaced by qc_min_coverage/qc_max_outside; same


@dataclass
class ModelConfig(_Section):
    """The 3D convolutional autoencoder and its training (METHOD.md section 3) [ours]."""

    model: str = ""  # --model PATH: encode with an existing model
    latent_dim: int = 32
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    learning_rate: float = 1e-4
    batch_size: int = 8
    max_epochs: int = 200
    patience: int = 20
    n_folds: int = 5
    fit_all: bool = False
    input_map: str = "modulated"  # modulated | probseg
    norm: str = "batch"  # batch | instance | group: instance norm would erase global GM differences
    # the network's ends (latentbids.model.network): patch (2x2x2 blocks as 8 channels, a k1 entry and
    # a k3 exit at half resolution) | space_to_depth (k3 entry) | conv (latentbids 0.1's, full-resolution
    # layers); speed against ClinicaDL and quality in BENCHMARKS.md (benchmarks/stem_quality.py)
    stem: str = "patch"
    compile: str = "auto"  # torch.compile the training steps: auto (CUDA only) | on | off
    fold: int = 0  # --fold N: train only fold N (a job of its own); 0: every fold, then the analysis
    validation_fraction: float = 0.15  # share of each fold's training subjects used for early stopping
    scale_percentile: float = 99.9  # modulated maps / this percentile of the training set (one constant)
    model_name: str = ""  # models/<name>/; default ae-K<latent_dim>
    exclude_qc_failures: bool = True  # maps whose participant QC failed are reported and left out


@dataclass
class AnalysisConfig(_Section):
    """Interpretation of the latent space at group level (METHOD.md sections 4-7) [ours unless noted]."""

    enabled: bool = True  # --skip-analysis turns it off (training and encoding still run)
    label_column: str = "group"  # participants.tsv column with the clinical labels
    contrasts: list[str] = field(default_factory=list)  # "CN:AD" pairs; empty = every pair of labels
    min_per_class: int = 3  # a label with fewer subjects is left out of contrasts (and said so)
    confounds: list[str] = field(default_factory=list)  # residualise on e.g. age, sex, tiv, gm_mean
    eta: float = 0.05  # bounds hold with probability 1 - eta
    bound: str = "G"  # G | GZ | VC (section 6)
    correlation: str = "pearson"  # pearson | spearman
    correction: str = "fdr_bh"  # region-unit correlations: fdr_bh | bonferroni | permutation (max-statistic)
    # every verdict is family-wise (METHOD.md 5-6): units (all folds) and regions by max-statistic label
    # permutation, or Bonferroni with a bound (fast); the per-item rule only in *_uncorrected columns
    family_correction: str = "permutation"  # permutation | bonferroni
    # the unit and region test statistic: welch (|t|, measured the most powerful for a GM loss) | auc (|AUC - 0.5|)
    # | balanced (best-threshold balanced accuracy, 0.5 + KS/2) | majority (accuracy vs the larger class)
    statistic: str = "welch"
    alpha: float = 0.05
    n_permutations: int = 1000  # label permutations of the unit/region/association nulls and RUB
    top_k: int = 10  # top-k overlap of rankings across folds
    pca_components: int = 3
    tsne_perplexity: float = 30.0
    umap_n_neighbors: int = 15
    umap_min_dist: float = 0.1
    pls_components: int = 2
    sam_top_voxels: int = 50
    sam_permutations: int = 100  # label permutations of SAM's whole select-PLS-SVM pipeline (guards its selection bias)
    sar_resamples: int = 20
    shap_n_estimators: int = 500
    shap_max_depth: int = 3
    shap_learning_rate: float = 0.05
    shap_subsample: float = 0.8
    shap_background: int = 200
    shap_permutations: int = 99  # refits on shuffled errors; Holm over <= 4 models needs p <= eta/4 (1/100)
    shap_min_r2: float = 0.1  # below this cross-validated R^2 no SHAP claim is made
    sar_top_m: int = 5  # SHAP's top regions tested by SAR (chosen on one half, tested on the other)
    shap_region_permutations: int = 999  # permutations of the test half's errors: held-out R^2 test of the top regions
    # with several --atlas: SHAP from each sensitivity atlas's regions too (false: the primary's only; its cost grows
    # with the regions, BENCHMARKS.md "The atlas caution")
    shap_every_atlas: bool = True
    rub_dropout: float = 0.95  # dropout rate of RUB's PAC-Bayes (Gibbs) classifier (METHOD.md 6)
    pc1_min_abs_r: float = 0.5  # "PC1 tracks X" needs |r| >= this and a Bonferroni p <= eta


@dataclass
class RunConfig:
    """Everything one ``latentbids`` invocation needs and records."""

    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    spatial: SpatialConfig = field(default_factory=SpatialConfig)
    anat: AnatConfig = field(default_factory=AnatConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)

    SECTIONS = ("execution", "spatial", "anat", "model", "analysis")

    def to_dict(self) -> dict[str, Any]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in self.SECTIONS}

    def update(self, values: dict[str, Any], origin: str = "config") -> None:
        """Set values from a nested ``{section: {key: value}}`` mapping (a TOML file, the command line,
        code), each checked and counted as explicit; the first bad key or value is one UsageError
        starting with ``origin``."""
        for section, items in values.items():
            if section not in self.SECTIONS:
                raise UsageError(
                    f"{origin}: unknown section [{section}]; known sections: {', '.join(self.SECTIONS)}"
                )
            if not isinstance(items, dict):
                raise UsageError(f"{origin}: [{section}] must be a table of key = value")
            for key, value in items.items():
                try:
                    setattr(getattr(self, section), key, value)
                except UsageError as exc:
                    raise UsageError(f"{origin}: {exc.message}") from None

    def validate(self) -> None:
        """Check every value again (a list changed in place is not seen by the assignment check)."""
        for name in self.SECTIONS:
            getattr(self, name).check()

    def apply_sloppy(self) -> None:
        """With ``--sloppy``, take :data:`SLOPPY` for every key the user did not set; a key the user set
        keeps its value, and one log line names those kept.  The one place ``--sloppy`` changes a setting
        (and :data:`SLOPPY_GRID_MM`, the group level's coarser working grid); idempotent."""
        if not self.execution.sloppy:
            return
        kept = []
        for section_name, table in SLOPPY.items():
            section = getattr(self, section_name)
            for key, value in table.items():
                current = getattr(section, key)
                if key not in section.explicit:
                    section.derive(key, min(current, value) if isinstance(value, int) else value)
                elif current != value:
                    kept.append(f"[{section_name}] {key} = {current!r} (--sloppy would use {value!r})")
        if kept and kept != self.__dict__.get("_sloppy_kept"):  # said once, however often it is resolved
            LOGGER.warning("--sloppy: keeping the value(s) you set: %s", "; ".join(kept))
        self._sloppy_kept = kept

    def provenance(self) -> dict[str, Any]:
        """The config plus environment facts (versions, host, device) for ``logs/``."""
        data = self.to_dict()
        from latentbids.utils.environment import environment_info

        data["environment"] = environment_info()
        return data


SECTION_NAMES = {ExecutionConfig: "execution", SpatialConfig: "spatial", AnatConfig: "anat", ModelConfig: "model",
                 AnalysisConfig: "analysis"}

#: ``--sloppy`` at participant level (tiny fast settings for tests): the template-registration brain
#: mask instead of HD-BET, antspyx's ``SyN`` preset (measured faster than ``antsRegistrationSyNQuick[s]``
#: on 2 mm data: 4.5 s vs 8.7 s on 2 cores) and fewer N4/Atropos iterations: ~0.5x the time, GM Dice
#: 0.69 instead of 0.82 on sub-IXI012 (BENCHMARKS.md).  Applied by :meth:`RunConfig.apply_sloppy`.
SLOPPY_ANAT = {"brain_extraction": "template", "registration": "SyN", "atropos_iterations": 3,
               "n4_iterations": [50, 50, 30]}
#: ``--sloppy`` at group level: a compact network trained for a few epochs, and permutation nulls and
#: SHAP models sized for seconds on 2 CPU cores (the verdicts stay family-wise, only coarser); integers
#: are caps (a smaller default stays).
SLOPPY_MODEL = {"channels": [4, 8, 8, 16], "max_epochs": 3, "patience": 2}
SLOPPY_ANALYSIS = {"n_permutations": 100, "sam_permutations": 20, "shap_permutations": 5, "shap_n_estimators": 100,
                   "sar_resamples": 5}
#: section -> what ``--sloppy`` sets there for every key the user did not set (:meth:`RunConfig.apply_sloppy`)
SLOPPY = {"anat": SLOPPY_ANAT, "model": SLOPPY_MODEL, "analysis": SLOPPY_ANALYSIS}
#: ``--sloppy`` at group level, beyond the keys: the network works on a block-average of the template at about
#: this voxel size (mm); resolved into ``GroupSettings.working_grid_mm``
SLOPPY_GRID_MM = 4.0


def load_toml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a TOML file, with one-line errors for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"--config-file {path} not found: pass an existing TOML file")
    data = path.read_bytes()
    try:
        return tomllib.loads(data.decode("utf-8-sig"))  # TOML is UTF-8; an editor's byte-order mark is tolerated
    except UnicodeDecodeError as exc:  # 10: the line feed
        raise UsageError(f"--config-file {path} is not UTF-8 (byte 0x{data[exc.start]:02x} on line "
                         f"{data.count(10, 0, exc.start) + 1}): save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--config-file {path} is not valid TOML ({exc}): fix the syntax") from None


def _without_none(value):
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_without_none(v) for v in value if v is not None]
    return value


def dump_toml(data: dict[str, Any]) -> str:
    """Serialise a nested dict to TOML (``None`` dropped; TOML has no null)."""
    import tomli_w

    return tomli_w.dumps(_without_none(data))


def new_run_id() -> str:
    """A sortable, unique run id: UTC timestamp plus a short random part (fMRIPrep style)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}_{uuid.uuid4().hex[:8]}"
