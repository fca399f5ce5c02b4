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

    def allowed(self) -> str:
        if self.choices:
            return "use one of " + ", ".join(str(c) for c in self.choices)
        low = "" if self.low is None else f"{'>' if self.low_open else '>='} {_number(self.low)}"
        high = "" if self.high is None else f"<= {_number(self.high)}"
        return "use a value " + " and ".join(p for p in (low, high) if p)

    def apply(self, value):
        if self.normalise is not None:
            return self.normalise(value)
        if self.choices and value not in self.choices:
            raise ConfigValueError(self.allowed())
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise ConfigValueError(self.allowed())
        if self.high is not None and value > self.high:
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


POSITIVE = Rule(low=1)
NOT_NEGATIVE = Rule(low=0)
SHARE = Rule(low=0, high=1)
OPEN_SHARE = Rule(low=0, high=1, low_open=True)

#: ``(section, key) -> Rule``; keys without an entry are only type-checked.
RULES: dict[tuple[str, str], Rule] = {
    ("execution", "analysis_level"): Rule(choices=("participant", "group")),
    ("execution", "nprocs"): NOT_NEGATIVE,  # 0: the CPUs of the job
    ("execution", "omp_nthreads"): NOT_NEGATIVE,  # 0: min(8, nprocs)
    ("execution", "mem_gb"): NOT_NEGATIVE,  # 0: no limit
    ("execution", "verbose"): NOT_NEGATIVE,
    ("execution", "device"): Rule(normalise=_device),
    ("execution", "random_seed"): Rule(low=0, high=2**32 - 1),  # numpy's seed range
    ("spatial", "output_spaces"): Rule(normalise=lambda v: v if v else _fail("at least one space")),
    ("spatial", "atlas"): Rule(normalise=lambda v: v if v.strip() else _fail("an atlas name or path")),
    ("anat", "brain_extraction"): Rule(choices=("hdbet", "template")),
    ("anat", "hdbet_mode"): Rule(choices=("fast", "accurate")),
    ("anat", "registration"): Rule(choices=REGISTRATIONS),
    ("anat", "atropos_prior_weight"): SHARE,
    ("anat", "atropos_mrf"): NOT_NEGATIVE,
    ("anat", "atropos_iterations"): POSITIVE,
    ("anat", "n4_iterations"): Rule(normalise=lambda v: v if v and min(v) >= 1 else _fail("a non-empty list of "
                                                                                          "integers >= 1")),
    ("anat", "qc_floor"): SHARE,
    ("anat", "qc_min_peak"): Rule(normalise=_qc_table(0, 1)),
    ("anat", "qc_min_coverage"): Rule(normalise=_qc_table(0, 1)),
    ("anat", "qc_max_outside"): Rule(normalise=_qc_table(0, 1)),
    ("anat", "qc_min_template_corr"): Rule(normalise=_qc_table(-1, 1)),
    ("model", "latent_dim"): POSITIVE,
    ("model", "channels"): Rule(normalise=lambda v: v if v and min(v) >= 1 else _fail("a non-empty list of "
                                                                                      "integers >= 1")),
    ("model", "learning_rate"): Rule(low=0, low_open=True),
    ("model", "batch_size"): POSITIVE,
    ("model", "max_epochs"): POSITIVE,
    ("model", "patience"): NOT_NEGATIVE,
    ("model", "n_folds"): POSITIVE,
    ("model", "input_map"): Rule(choices=("modulated", "probseg")),
    ("model", "norm"): Rule(choices=("batch", "instance", "group", "none")),
    ("model", "stem"): Rule(choices=("conv", "space_to_depth")),
    ("model", "compile"): Rule(choices=("auto", "on", "off")),
    ("model", "fold"): NOT_NEGATIVE,  # 0: every fold
    ("model", "validation_fraction"): Rule(low=0, high=1, low_open=True),
    ("model", "scale_percentile"): Rule(low=0, high=100, low_open=True),
    ("analysis", "min_per_class"): POSITIVE,
    ("analysis", "eta"): OPEN_SHARE,
    ("analysis", "alpha"): OPEN_SHARE,
    ("analysis", "bound"): Rule(choices=("G", "GZ", "VC")),
    ("analysis", "correlation"): Rule(choices=("pearson", "spearman")),
    ("analysis", "correction"): Rule(choices=("fdr_bh", "bonferroni", "permutation")),
    ("analysis", "family_correction"): Rule(choices=("permutation", "bonferroni")),
    ("analysis", "statistic"): Rule(choices=("balanced", "majority")),
    **{("analysis", key): POSITIVE for key in (
        "top_k", "pca_components", "umap_n_neighbors", "pls_components", "sam_top_voxels", "shap_n_estimators",
        "shap_max_depth", "shap_background", "sar_top_m")},
    # 0 runs no null: the step reports its statistics and supports no claim
    **{("analysis", key): NOT_NEGATIVE for key in ("n_permutations", "sam_permutations", "sar_resamples",
                                                   "shap_permutations")},
    ("analysis", "tsne_perplexity"): Rule(low=0, low_open=True),
    ("analysis", "umap_min_dist"): NOT_NEGATIVE,
    ("analysis", "shap_learning_rate"): Rule(low=0, low_open=True),
    ("analysis", "shap_subsample"): Rule(low=0, high=1, low_open=True),
    ("analysis", "rub_dropout"): Rule(low=0, high=1),
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
