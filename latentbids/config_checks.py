"""What each configuration value may be: its type (from the dataclass field) and its choices or range.

:mod:`latentbids.config` calls :func:`check_value` whenever a value is set (by a section's
``__init__``, by ``RunConfig.update`` from the command line or a TOML file, or by code), so a bad value
fails at once as one :class:`~latentbids.errors.UsageError` naming the key, the value and what is
allowed, and no consumer has to re-cast or re-check what it reads.  Integers are accepted where a
number is expected (TOML writes ``1`` for ``1.0``); nothing else is converted.

The choices of values that a later step interprets (a norm, a bound, a correction) are repeated here
because the config may not import those steps; ``tests/cli/test_cli_config.py`` checks that each list
equals the one its consumer accepts.
"""
from __future__ import annotations

import math
import numbers
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable

from latentbids.errors import UsageError

#: Where a template-space GM map can come from; each has its own QC thresholds ([anat] qc_*).
QC_SOURCES = ("own", "smriprep", "cat12")
#: ``[anat] registration`` names (anat.registration.TRANSFORMS maps them to antspyx presets).
REGISTRATIONS = ("SyN", "SyNQuick", "SyNAggro", "SyNRA", "Affine")


class ConfigValueError(ValueError):
    """A value that does not fit its key, with what to use instead (``"use one of a, b"``);
    :func:`check_value` turns it into a UsageError naming the key and the value."""


@dataclass(frozen=True)
class Rule:
    """What a value must be beyond its type: one of ``choices``, or inside a range, or whatever
    ``normalise`` accepts (it returns the canonical value)."""

    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself excluded
    normalise: Callable[[Any], Any] | None = None
    high_open: bool = False  # high itself excluded

    def allowed(self) -> str:
        if self.choices:
            return "use one of " + ", ".join(str(c) for c in self.choices)
        low = "" if self.low is None else f"{'>' if self.low_open else '>='} {_number(self.low)}"
        high = "" if self.high is None else f"{'<' if self.high_open else '<='} {_number(self.high)}"
        return "use a value " + " and ".join(p for p in (low, high) if p)

    def apply(self, value):
        if self.normalise is not None:
            return self.normalise(value)
        if self.choices and value not in self.choices:
            raise ConfigValueError(self.allowed())
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise ConfigValueError(self.allowed())
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise ConfigValueError(self.allowed())
        return value


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _device(value: str) -> str:
    from latentbids.utils.devices import DEVICE_CHOICES, parse_device

    try:
        return str(parse_device(value))
    except UsageError:
        raise ConfigValueError(f"use {DEVICE_CHOICES}") from None


def _qc_table(low: float, high: float) -> Callable[[Any], Any]:
    """A QC threshold: one number for every source, or a table ``{source: number}``."""

    def check(value):
        table = value if isinstance(value, dict) else {source: value for source in QC_SOURCES}
        unknown = sorted(set(table) - set(QC_SOURCES))
        if unknown:
            raise ConfigValueError(f"unknown source(s) {', '.join(map(str, unknown))}: use {', '.join(QC_SOURCES)}")
        for number in table.values():
            if not _is_number(number) or not low <= number <= high:
                raise ConfigValueError(f"use a number in [{low:g}, {high:g}], or a table of them by source "
                                       f"({', '.join(QC_SOURCES)})")
        return {k: float(v) for k, v in value.items()} if isinstance(value, dict) else float(value)

    return check


def _int_list(longest: int, high: int) -> Callable[[Any], Any]:
    """A non-empty list of at most ``longest`` integers, each in [1, ``high``]."""

    def check(value):
        if not value or len(value) > longest or min(value) < 1 or max(value) > high:
            raise ConfigValueError(f"use a non-empty list of integers >= 1 and <= {high}, at most {longest} of them")
        return value

    return check


#: The smallest memory limit a run may be given (GB): below it not even Python, Nipype and one
#: image fit, and a unit typo (``--mem 1KB``, ``--mem 16`` meant as MB) would only fail later.
MIN_MEM_GB = 0.25
#: The largest (GB): more than any node has (64 TB); a larger value is a unit typo.
MAX_MEM_GB = 65536


def _memory(value):
    if value != 0 and not MIN_MEM_GB <= value <= MAX_MEM_GB:
        raise ConfigValueError(f"use 0 (no limit) or a value >= {MIN_MEM_GB:g} GB (256 MB) and <= {MAX_MEM_GB} GB")
    return value


def _rule(low, high, low_open=False, high_open=False) -> Rule:
    return Rule(low=low, high=high, low_open=low_open, high_open=high_open)


#: Upper bounds say where a value stops meaning anything (or would exhaust the machine); the
#: reasons are given where they are not obvious.  Every numeric key has a lower and an upper bound
#: (``tests/cli/test_config_bounds.py`` checks it).
MAX_CPUS = 4096  # more than any node has: a larger --nprocs is a typo that would fork that many workers
MAX_FOLDS = 100  # every fold trains a network; more folds than that is leave-one-out of a large cohort
MAX_PERMUTATIONS = 100_000  # p resolution 1e-5, far below any eta; each one refits a model
SHARE = Rule(low=0, high=1)
OPEN_SHARE = Rule(low=0, high=1, low_open=True)
#: a level or a probability of error: above 1/2 a test or a bound says nothing
ERROR_RATE = Rule(low=0, high=0.5, low_open=True)

#: ``(section, key) -> Rule``; every key with a number has one (lists and tables: a normalise check).

def _atlas_list(value) -> list[str]:
    """``--atlas``: one name or path, or several (the primary first), none empty and none twice."""
    atlases = [value] if isinstance(value, str) else list(value)
    if not atlases or any(not str(a).strip() for a in atlases):
        _fail("an atlas name or path, or several (the primary first)")
    if len({str(a).strip() for a in atlases}) < len(atlases):
        _fail("each atlas once")
    return [str(a).strip() for a in atlases]

RULES: dict[tuple[str, str], Rule] = {
    ("execution", "analysis_level"): Rule(choices=("participant", "group")),
    ("execution", "nprocs"): _rule(0, MAX_CPUS),  # 0: the CPUs of the job
    ("execution", "omp_nthreads"): _rule(0, MAX_CPUS),  # 0: min(8, nprocs)
    ("execution", "mem_gb"): Rule(normalise=_memory),  # 0: no limit
    ("execution", "verbose"): _rule(0, 10),  # -vv already logs everything
    ("execution", "device"): Rule(normalise=_device),
    ("execution", "random_seed"): Rule(low=0, high=2**32 - 1),  # numpy's seed range
    ("spatial", "output_spaces"): Rule(normalise=lambda v: v if v else _fail("at least one space")),
    ("spatial", "atlas"): Rule(normalise=_atlas_list),
    ("anat", "brain_extraction"): Rule(choices=("hdbet", "template")),
    ("anat", "hdbet_mode"): Rule(choices=("fast", "accurate")),
    ("anat", "registration"): Rule(choices=REGISTRATIONS),
    ("anat", "atropos_prior_weight"): SHARE,
    ("anat", "atropos_mrf"): SHARE,  # Atropos' MRF smoothing factor: 0 none, 1 the strongest it documents
    ("anat", "atropos_iterations"): _rule(1, 100),  # EM iterations; Atropos converges in well under 100
    # N4: at most 10 fitting levels (each halves the B-spline spacing: beyond, a knot per voxel)
    ("anat", "n4_iterations"): Rule(normalise=_int_list(10, 1000)),
    ("anat", "qc_floor"): SHARE,
    ("anat", "qc_min_peak"): Rule(normalise=_qc_table(0, 1)),
    ("anat", "qc_min_coverage"): Rule(normalise=_qc_table(0, 1)),
    ("anat", "qc_max_outside"): Rule(normalise=_qc_table(0, 1)),
    ("anat", "qc_min_template_corr"): Rule(normalise=_qc_table(-1, 1)),
    ("anat", "qc_min_max"): SHARE,  # replaced by qc_min_peak (ignored, warned); still a GM probability
    # K: the latents are read unit by unit (LRCP: K x regions tests); beyond 1024 the dense layers
    # alone take GBs and the code compresses nothing a cohort can support
    ("model", "latent_dim"): _rule(1, 1024),
    # at most 8 levels: each halves the grid, and 2**8 voxels exceed any template axis
    ("model", "channels"): Rule(normalise=_int_list(8, 1024)),
    ("model", "learning_rate"): _rule(0, 1, low_open=True),  # Adam diverges long before 1
    ("model", "batch_size"): _rule(1, 1024),  # a 2 mm volume and its activations take ~100 MB each
    ("model", "max_epochs"): _rule(1, 100_000),
    ("model", "patience"): _rule(0, 100_000),
    ("model", "n_folds"): _rule(1, MAX_FOLDS),
    ("model", "input_map"): Rule(choices=("modulated", "probseg")),
    ("model", "norm"): Rule(choices=("batch", "instance", "group", "none")),
    ("model", "stem"): Rule(choices=("conv", "space_to_depth", "patch")),
    ("model", "compile"): Rule(choices=("auto", "on", "off")),
    ("model", "fold"): _rule(0, MAX_FOLDS),  # 0: every fold
    # a share of each fold's training subjects kept for early stopping: above 1/2 the network would
    # train on fewer subjects than it is stopped on (1.0 leaves none to train on)
    ("model", "validation_fraction"): _rule(0, 0.5, low_open=True),
    ("model", "scale_percentile"): _rule(0, 100, low_open=True),
    ("analysis", "min_per_class"): _rule(1, 100_000),  # more subjects than any cohort: no contrast
    ("analysis", "eta"): ERROR_RATE,
    ("analysis", "alpha"): ERROR_RATE,
    ("analysis", "bound"): Rule(choices=("G", "GZ", "VC")),
    ("analysis", "correlation"): Rule(choices=("pearson", "spearman")),
    ("analysis", "correction"): Rule(choices=("fdr_bh", "bonferroni", "permutation")),
    ("analysis", "family_correction"): Rule(choices=("permutation", "bonferroni")),
    ("analysis", "statistic"): Rule(choices=("welch", "auc", "balanced", "majority")),
    # counts of regions, units or components: no atlas has 10,000 regions, no latent space 1024+ units
    **{("analysis", key): _rule(1, 10_000) for key in ("top_k", "sar_top_m")},
    **{("analysis", key): _rule(1, 1024) for key in ("pca_components", "pls_components")},
    ("analysis", "sam_top_voxels"): _rule(1, 1_000_000),  # a 1 mm brain mask has ~1.5 million voxels
    ("analysis", "shap_n_estimators"): _rule(1, 100_000),
    ("analysis", "shap_max_depth"): _rule(1, 32),  # 2**32 leaves: more than any cohort has subjects
    ("analysis", "shap_background"): _rule(1, 100_000),
    # 0 runs no null: the step reports its statistics and supports no claim
    **{("analysis", key): _rule(0, MAX_PERMUTATIONS) for key in ("n_permutations", "sam_permutations",
                                                                 "sar_resamples", "shap_permutations",
                                                                 "shap_region_permutations")},
    ("analysis", "tsne_perplexity"): _rule(0, 10_000, low_open=True),  # must also be < subjects (t-SNE says)
    ("analysis", "umap_n_neighbors"): _rule(2, 10_000),  # UMAP needs a neighbour besides the point itself
    ("analysis", "umap_min_dist"): SHARE,  # UMAP requires min_dist <= spread (1)
    ("analysis", "shap_learning_rate"): _rule(0, 1, low_open=True),  # boosting shrinkage
    ("analysis", "shap_subsample"): OPEN_SHARE,
    ("analysis", "shap_min_r2"): SHARE,  # a cross-validated R^2: at most 1; below 0 is worse than the mean
    ("analysis", "rub_dropout"): _rule(0, 1, high_open=True),  # dropout 1 keeps no weight at all
    ("analysis", "pc1_min_abs_r"): SHARE,
}


def _fail(what: str):
    raise ConfigValueError(f"use {what}")


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def describe_type(hint) -> str:
    """``list[int]`` -> "a list of integers", for error messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(a) for a in args if a is not type(None)) + (
            " (or nothing)" if type(None) in args else "")
    if origin is list or hint is list:
        return "a list" + (f" of {_PLURALS.get(args[0], args[0])}" if args else "")
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a text", dict: "a table"}
    return names.get(origin or hint, str(hint))


_PLURALS = {int: "integers", float: "numbers", str: "texts"}


def coerce(value, hint):
    """``value`` as the type ``hint`` names (an int for a float is made a float), or ConfigValueError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg)
            except ConfigValueError:
                continue
        raise ConfigValueError(f"use {describe_type(hint)}")
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if hint is float and _is_number(value):
        if not math.isfinite(value):  # TOML has nan and inf; no key means anything by them
            raise ConfigValueError("use a finite number")
        return float(value)
    if hint is str and isinstance(value, str):
        return value
    if (origin is list or hint is list) and isinstance(value, (list, tuple)):
        try:
            return [coerce(item, args[0]) for item in value] if args else list(value)
        except ConfigValueError:
            raise ConfigValueError(f"use {describe_type(hint)}") from None
    if (origin is dict or hint is dict) and isinstance(value, dict):
        return dict(value)
    raise ConfigValueError(f"use {describe_type(hint)}")


def check_value(section: str, key: str, value, hint):
    """The canonical form of ``[section] key = value`` (type ``hint``), or one UsageError that names the
    key, the value and what is allowed."""
    try:
        typed = coerce(value, hint)
        rule = RULES.get((section, key))
        return rule.apply(typed) if rule is not None and typed is not None else typed
    except ConfigValueError as exc:
        raise UsageError(f"[{section}] {key} = {value!r} is not valid: {exc}") from None
