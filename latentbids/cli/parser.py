"""The ``latentbids`` command line (BIDS Apps convention; see docs/usage.md).

Options default to "not given" (``argparse.SUPPRESS``) so that the precedence
defaults < ``--config-file`` < command line can be applied in :mod:`latentbids.cli.run`.
``OPTION_TO_CONFIG`` is the single map from an option to the config field it sets; the defaults
shown by ``--help`` (and written into the Boutiques descriptors, :mod:`latentbids.cli.descriptors`)
are read from :class:`latentbids.config.RunConfig` through it, so they cannot drift apart.
"""
from __future__ import annotations

import argparse
import sys

from latentbids import __version__
from latentbids.errors import UnknownAnalysisLevel, UsageError

ANALYSIS_LEVELS = ("participant", "group")

#: argparse dest -> (config section, config key)
OPTION_TO_CONFIG = {
    "participant_label": ("execution", "participant_label"),
    "session_label": ("execution", "session_label"),
    "skip_bids_validation": ("execution", "skip_bids_validation"),
    "work_dir": ("execution", "work_dir"),
    "bids_database_dir": ("execution", "bids_database_dir"),
    "nprocs": ("execution", "nprocs"),
    "omp_nthreads": ("execution", "omp_nthreads"),
    "mem_gb": ("execution", "mem_gb"),
    "reports_only": ("execution", "reports_only"),
    "boilerplate_only": ("execution", "boilerplate_only"),
    "clean_workdir": ("execution", "clean_workdir"),
    "use_plugin": ("execution", "use_plugin"),
    "stop_on_first_crash": ("execution", "stop_on_first_crash"),
    "sloppy": ("execution", "sloppy"),
    "notrack": ("execution", "notrack"),
    "verbose": ("execution", "verbose"),
    "device": ("execution", "device"),
    "random_seed": ("execution", "random_seed"),
    "deterministic": ("execution", "deterministic"),
    "templateflow_home": ("execution", "templateflow_home"),
    "nilearn_data": ("execution", "nilearn_data"),
    "output_spaces": ("spatial", "output_spaces"),
    "atlas": ("spatial", "atlas"),
    "atlas_labels": ("spatial", "atlas_labels"),
    "model": ("model", "model"),
    "model_name": ("model", "model_name"),
    "latent_dim": ("model", "latent_dim"),
    "n_folds": ("model", "n_folds"),
    "fit_all": ("model", "fit_all"),
    "max_epochs": ("model", "max_epochs"),
    "batch_size": ("model", "batch_size"),
    "fold": ("model", "fold"),
    "analysis_enabled": ("analysis", "enabled"),
    "label_column": ("analysis", "label_column"),
    "contrasts": ("analysis", "contrasts"),
    "confounds": ("analysis", "confounds"),
}


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors raised as :class:`UsageError` (exit 64, not argparse's 2)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UsageError(f"{message} (see 'latentbids --help')")


def _contrast(value: str) -> str:
    """``--contrast A:B``: two different, non-empty labels separated by a colon."""
    parts = [p.strip() for p in str(value).split(":")]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise argparse.ArgumentTypeError(f"'{value}' is not a contrast: write two different labels as A:B, e.g. CN:AD")
    return f"{parts[0]}:{parts[1]}"


def parse_mem(value: str, default_unit: str = "G") -> float:
    """Memory in GB from ``16``, ``16G``, ``16GB``, ``16GiB``, ``16000MB``, ``0.5T``; a bare number is in
    ``default_unit`` (GB for ``--mem``, MB for ``--mem-mb`` as in fMRIPrep).

    The limits are the config's (:data:`latentbids.config_checks.MIN_MEM_GB`, 256 MB, and
    ``MAX_MEM_GB``), said in the unit the user wrote: ``--mem 1KB`` is a typo, not a limit to honour.
    """
    from latentbids.config_checks import MAX_MEM_GB, MIN_MEM_GB

    text = str(value).strip().upper().removesuffix("B").removesuffix("I").strip()
    factor = {"K": 1e-6, "M": 1e-3, "G": 1.0, "T": 1e3}[default_unit]
    if text and text[-1] in "KMGT":
        factor = {"K": 1e-6, "M": 1e-3, "G": 1.0, "T": 1e3}[text[-1]]
        text = text[:-1]
    try:
        gb = float(text) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a memory size: write e.g. 16 or 16GB") from None
    if not MIN_MEM_GB <= gb <= MAX_MEM_GB:  # also NaN and inf
        raise argparse.ArgumentTypeError(f"'{value}' is outside the memory limits: give at least 256MB "
                                         f"({MIN_MEM_GB:g} GB) and at most {MAX_MEM_GB} GB")
    return gb


def parse_mem_mb(value: str) -> float:
    """``--mem-mb``: memory in MB (units accepted, e.g. ``16000``, ``16G``), returned in GB."""
    return parse_mem(value, default_unit="M")


def _positive_int(value: str) -> int:
    """An integer >= 1 (``--nprocs``, ``--latent-dim`` ...)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not an integer") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"'{value}' must be at least 1")
    return number


def _device(value: str) -> str:
    """``--device``: parsed by the one device parser (:func:`latentbids.utils.devices.parse_device`)."""
    from latentbids.utils.devices import parse_device

    try:
        return str(parse_device(value))
    except UsageError:
        raise argparse.ArgumentTypeError(f"'{value}' is not one of auto, cpu, cuda, cuda:N") from None


def _derivative(value: str) -> tuple[str, str]:
    """``-d NAME=PATH`` (or a bare PATH, named by its folder)."""
    name, sep, path = value.partition("=")
    if not sep:
        path, name = value, value.rstrip("/").split("/")[-1]
    if not path:
        raise argparse.ArgumentTypeError(f"'{value}' is not NAME=PATH")
    return name, path


def build_parser() -> argparse.ArgumentParser:
    """The ``latentbids`` parser: the positional arguments, then one function per option group."""
    parser = _Parser(
        prog="latentbids",
        description=(
            "latentbids: gray-matter maps from T1w MRI (participant level), then a 3D convolutional "
            "autoencoder and the interpretation of its latent space (group level), as BIDS-Derivatives."
        ),
        argument_default=argparse.SUPPRESS,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("bids_dir", help="root of the input BIDS dataset")
    parser.add_argument("output_dir", help="output folder; use <bids_dir>/derivatives/latentbids")
    parser.add_argument("analysis_level", help="'participant' (per subject, parallel) or 'group'")
    parser.add_argument("--version", action="version", version=f"latentbids {__version__}")
    for add_options in (_selection_options, _resource_options, _model_options, _analysis_options,
                        _running_options, _redo_options):
        add_options(parser)
    _show_defaults(parser)
    return parser


def _selection_options(parser: argparse.ArgumentParser) -> None:
    """Which subjects, sessions and images; the validator; the pybids index; reused derivatives."""
    sel = parser.add_argument_group("selecting data")
    sel.add_argument("--participant-label", "--participant_label", dest="participant_label", nargs="+",
                     metavar="LABEL",
                     help="subjects to process (with or without 'sub-'), or a file with one label per line")
    sel.add_argument("--session-label", "--session_label", dest="session_label", nargs="+", metavar="LABEL",
                     help="sessions to process (with or without 'ses-')")
    sel.add_argument("--bids-filter-file", "--bids_filter_file", dest="bids_filter_file", metavar="FILE",
                     help='JSON of pybids queries, e.g. {"t1w": {"acquisition": "mprage"}}')
    sel.add_argument("--skip-bids-validation", "--skip_bids_validation", "--skip_bids_validator",
                     dest="skip_bids_validation", action="store_true", help="do not run the BIDS validator")
    sel.add_argument("--bids-database-dir", dest="bids_database_dir", metavar="DIR",
                     help="folder for the persistent pybids index")
    sel.add_argument("-d", "--derivatives", dest="derivatives", nargs="+", type=_derivative, metavar="NAME=PATH",
                     help="existing derivatives to reuse GM maps from (sMRIPrep/fMRIPrep probseg or CAT12 mwp1)")


def _resource_options(parser: argparse.ArgumentParser) -> None:
    """Template grids, atlas and the offline caches they come from."""
    spa = parser.add_argument_group("template, atlas and resources")
    spa.add_argument("--output-spaces", dest="output_spaces", nargs="+", metavar="SPACE[:res-N]",
                     help="template grids of the GM maps, every one processed (the first drives segmentation "
                          "and the group level): TemplateFlow spaces with their resolution index (e.g. "
                          "MNI152NLin2009cAsym:res-2, read from the TemplateFlow cache), or "
                          "MNI152NLin2009aSym:res-nilearnN (nilearn's N mm grid, offline)")
    spa.add_argument("--atlas", dest="atlas", nargs="+", metavar="NAME|PATH",
                     help="AAL, AAL3, HCPEx, AAL-SPM8/SPM12 (nilearn cache) or a label NIfTI in template space; "
                          "several: the first is the primary atlas (the headline speaks for it), the others a "
                          "sensitivity analysis of the same latent space, each with its own regional and SHAP "
                          "claims at eta / their number")
    spa.add_argument("--atlas-labels", dest="atlas_labels", metavar="TSV",
                     help="'index name' table for an --atlas PATH (several paths: each PATH's own .tsv)")
    spa.add_argument("--templateflow-home", dest="templateflow_home", metavar="DIR",
                     help="TemplateFlow cache; never downloads (fill it with "
                          "'python -m latentbids.resources.templates --prefetch')")
    spa.add_argument("--nilearn-data", dest="nilearn_data", metavar="DIR",
                     help="nilearn data cache for AAL-SPM* atlases")


def _model_options(parser: argparse.ArgumentParser) -> None:
    """The autoencoder (group level; --model also at participant level)."""
    mod = parser.add_argument_group("model (group level; --model also at participant level)")
    mod.add_argument("--model", dest="model", metavar="DIR", help="encode with an existing trained model folder")
    mod.add_argument("--model-name", dest="model_name", metavar="NAME",
                     help="name of the model this run trains (models/NAME, group/NAME, desc-NAME; default ae-K<K>): an "
                          "existing model folder of another configuration is never replaced")
    mod.add_argument("--latent-dim", dest="latent_dim", type=_positive_int, metavar="K", help="latent units")
    mod.add_argument("--n-folds", dest="n_folds", type=_positive_int, metavar="K", help="cross-validation folds")
    mod.add_argument("--fit-all", dest="fit_all", action="store_true", help="train one model on all subjects")
    mod.add_argument("--max-epochs", dest="max_epochs", type=_positive_int, metavar="N", help="epoch limit")
    mod.add_argument("--batch-size", dest="batch_size", type=_positive_int, metavar="N",
                     help="batch size (under torchrun: the global batch, split between the processes)")
    mod.add_argument("--fold", dest="fold", type=_positive_int, metavar="N",
                     help="train only cross-validation fold N and keep it in the work dir (one job per fold, e.g. a "
                          "SLURM array); a later group run without --fold merges the trained folds and runs the "
                          "analysis (docs/cluster.md)")


def _analysis_options(parser: argparse.ArgumentParser) -> None:
    """The latent-space analysis (group level)."""
    ana = parser.add_argument_group("latent-space analysis (group level)")
    ana.add_argument("--skip-analysis", dest="analysis_enabled", action="store_false",
                     help="train and encode only: no projections, LRCP, SHAP, statistics or group report")
    ana.add_argument("--label-column", dest="label_column", metavar="COLUMN",
                     help="participants.tsv column with the clinical labels")
    ana.add_argument("--contrast", "--contrasts", dest="contrasts", nargs="+", type=_contrast, metavar="A:B",
                     help="label pairs to compare, e.g. CN:AD CN:MCI")
    ana.add_argument("--confounds", dest="confounds", nargs="+", metavar="NAME",
                     help="regress these out before the analysis: participants.tsv columns, or tiv, gm_mean")


def _running_options(parser: argparse.ArgumentParser) -> None:
    """Work dir, processes, memory, plugin, config file, seed, device, speed, logging."""
    run = parser.add_argument_group("running")
    run.add_argument("-w", "--work-dir", dest="work_dir", metavar="DIR",
                     help="working folder for intermediate files; must be outside bids_dir")
    run.add_argument("--nprocs", "--nthreads", "--n-cpus", "--n_cpus", dest="nprocs", type=_positive_int,
                     metavar="N", help="processes for MultiProc (--nthreads as in fMRIPrep)")
    run.add_argument("--omp-nthreads", dest="omp_nthreads", type=_positive_int, metavar="N",
                     help="threads per process (ITK/torch)")
    run.add_argument("--mem", "--mem-gb", "--mem_gb", dest="mem_gb", type=parse_mem, metavar="GB",
                     help="memory limit in GB (units M/G/T accepted, e.g. 16GB)")
    run.add_argument("--mem-mb", "--mem_mb", dest="mem_gb", type=parse_mem_mb, metavar="MB",
                     help="memory limit in MB, as fMRIPrep's --mem-mb (e.g. 16000); same limit as --mem")
    run.add_argument("--use-plugin", "--use_plugin", dest="use_plugin", metavar="YAML",
                     help="Nipype plugin file, e.g. {plugin: SLURM, plugin_args: {sbatch_args: ...}}")
    run.add_argument("--config-file", dest="config_file", metavar="TOML",
                     help="run configuration (TOML, as written to logs/); options on the command line win")
    run.add_argument("--random-seed", dest="random_seed", type=int, metavar="N", help="seed for every random step")
    run.add_argument("--deterministic", dest="deterministic", action="store_true",
                     help="bit-identical results on the same device (slower)")
    run.add_argument("--device", dest="device", type=_device, metavar="{auto,cpu,cuda,cuda:N}",
                     help="where the autoencoder runs (auto: CUDA when present)")
    run.add_argument("--sloppy", dest="sloppy", action="store_true", help="tiny fast settings, for tests only")
    run.add_argument("--stop-on-first-crash", dest="stop_on_first_crash", action="store_true",
                     help="stop at the first failed participant instead of going on")
    run.add_argument("--notrack", dest="notrack", action="store_true",
                     help="accepted for compatibility; there is no telemetry")
    run.add_argument("-v", "--verbose", dest="verbose", action="count", help="more log output (-vv for debug)")


def _redo_options(parser: argparse.ArgumentParser) -> None:
    """What to (re)do: reports or boilerplate only, a clean work dir."""
    out = parser.add_argument_group("what to (re)do")
    out.add_argument("--reports-only", dest="reports_only", action="store_true",
                     help="only rebuild the reports (sub-*.html, logs/CITATION.*) from the outputs already in "
                          "output_dir; nothing is recomputed")
    out.add_argument("--boilerplate-only", "--boilerplate_only", dest="boilerplate_only", action="store_true",
                     help="only write the methods boilerplate (logs/CITATION.md and .html) and stop")
    out.add_argument("--clean-workdir", dest="clean_workdir", action="store_true",
                     help="empty latentbids' folders in the work dir first (refused while another job uses it)")


#: Defaults that depend on the run (not a constant of RunConfig), as --help states them.
DYNAMIC_DEFAULTS = {
    "work_dir": "./work",
    "bids_database_dir": "<work-dir>/bids_db",
    "nprocs": "the CPUs of the job ($SLURM_CPUS_PER_TASK, else the affinity mask)",
    "omp_nthreads": "min(8, nprocs)",
    "mem_gb": "no limit",
    "templateflow_home": "$TEMPLATEFLOW_HOME, else TemplateFlow's own default",
    "nilearn_data": "$NILEARN_DATA",
    "atlas_labels": "the --atlas path with .tsv",
    "contrasts": "every pair of labels with enough subjects",
    "analysis_enabled": "off (the analysis runs)",
    "derivatives": "none",
    "bids_filter_file": "none",
    "confounds": "none",
    "participant_label": "all subjects",
    "session_label": "all sessions",
    "model": "none: the group level trains a new model",
    "model_name": "ae-K<latent_dim>",
    "fold": "every fold, then the analysis",
    "use_plugin": "MultiProc with --nprocs",
    "config_file": "none",
    "verbose": "info messages",
}


def option_default(dest: str):
    """The default of an option's config field (``RunConfig``), or ``None`` when it has none."""
    from latentbids.config import RunConfig

    if dest not in OPTION_TO_CONFIG:
        return None
    section, key = OPTION_TO_CONFIG[dest]
    return getattr(getattr(RunConfig(), section), key)


def default_text(dest: str) -> str | None:
    """What ``--help`` says an option defaults to."""
    if dest in DYNAMIC_DEFAULTS:
        return DYNAMIC_DEFAULTS[dest]
    value = option_default(dest)
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Append ``(default: ...)`` to every option's help (argparse hides them under SUPPRESS)."""
    for action in parser._actions:  # noqa: SLF001 - argparse has no public list of actions
        if not action.option_strings or action.help in (None, argparse.SUPPRESS):
            continue
        text = default_text(action.dest)
        if text is not None:
            action.help = f"{action.help} (default: {text})".replace("%", "%%")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; unknown analysis level raises :class:`UnknownAnalysisLevel` (exit 17)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.analysis_level not in ANALYSIS_LEVELS:
        raise UnknownAnalysisLevel(
            f"Unknown analysis level '{args.analysis_level}': use 'participant' or 'group'"
        )
    if getattr(args, "fold", None) is not None and args.analysis_level != "group":
        raise UsageError("--fold trains one fold of the group level's cross-validation: use it with 'group'")
    if getattr(args, "reports_only", False) and args.analysis_level == "group":
        raise UsageError("--reports-only rebuilds the participant reports; the group report is written by the group "
                         "level itself: rerun the group level to rebuild it")
    return args
