"""What to simulate: planted effects, groups and every knob, parsed and checked in one place.

A :class:`SimulationSpec` is the full description of a cohort; ``latentbids-simulate`` builds one
from its options and :func:`latentbids.simulate.cohort.simulate_cohort` from its arguments.  Every
user mistake raises :class:`latentbids.errors.UsageError` (exit 64) with a one-line message.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from latentbids.errors import UsageError

DEFAULT_GROUPS = ("CN", "AD")


def _fmt(value: float) -> str:
    """Shortest text that reads back as exactly ``value``."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


@dataclass(frozen=True)
class Effect:
    """GM loss of ``percent`` % (at severity 1) in every region of ``regions``, or in a sphere.

    A region effect names regions of the simulation's effect atlas (``SimulationSpec.atlas``, AAL by
    default).  A blob effect has no regions but a centre ``center_mm`` (MNI x, y, z in mm) and a
    radius ``radius_mm``: every template voxel whose centre lies within the radius loses the same
    fraction of its GM (a hard-edged sphere; voxels without GM lose nothing, so it acts on GM only).

    Attributes
    ----------
    regions : tuple of str
        Region names of the effect atlas (empty for a blob).
    percent : float
        GM loss in % at severity 1 (0-100).
    center_mm : tuple of float or None
        A blob's centre, MNI (x, y, z) in mm; None for a region effect.
    radius_mm : float or None
        A blob's radius in mm (> 0); None for a region effect.
    """

    regions: tuple[str, ...]
    percent: float
    center_mm: tuple[float, float, float] | None = None
    radius_mm: float | None = None

    @property
    def is_blob(self) -> bool:
        """True for a sphere (``blob:X,Y,Z,RADIUS_MM:PERCENT``), False for named regions."""
        return self.center_mm is not None

    def to_text(self) -> str:
        """The ``--effect`` text of this effect (``parse_effect(e.to_text()) == e``)."""
        if self.is_blob:
            numbers = [*self.center_mm, self.radius_mm]
            return f"blob:{','.join(_fmt(v) for v in numbers)}:{_fmt(self.percent)}"
        return f"{','.join(self.regions)}:{_fmt(self.percent)}"

    def to_dict(self) -> dict:
        """``regions`` and ``percent``; a blob adds ``center_mm`` and ``radius_mm`` (regions empty)."""
        data = {"regions": list(self.regions), "percent": self.percent}
        if self.is_blob:
            data.update(center_mm=list(self.center_mm), radius_mm=self.radius_mm)
        return data


@dataclass(frozen=True)
class Group:
    """A diagnostic group and the mean severity of its members (0 = control, 1 = full effect)."""

    name: str
    mean_severity: float


@dataclass
class SimulationSpec:
    """Every parameter of a simulated cohort (defaults are ours; recorded in simulation.json)."""

    n_subjects: int
    seed: int
    effects: tuple[Effect, ...] = ()
    groups: tuple[Group, ...] = ()
    severity_spread: float = 0.5  # individual severity = mean * U(1 - spread, 1 + spread)
    age_range: tuple[float, float] = (60.0, 85.0)
    age_effect: float = 0.0  # % global GM loss per decade above the youngest age of age_range
    tiv_confound: float = 0.0  # fractional TIV reduction at severity 1 (0 = no confound)
    deformation_mm: float = 3.0  # RMS amplitude of the smooth nonlinear deformation in the brain
    gm_variability: float = 0.05  # SD of the smooth individual GM modulation (fraction)
    noise_scale: float = 1.0  # multiplies the random noise level (1.5-4 % of WM intensity)
    resolution: float = 2.0  # template grid (truth / --gm-only maps) in mm
    voxel_size: float | None = None  # T1w voxel size in mm (default: resolution)
    gm_only: bool = False
    atlas: str = "AAL"  # the atlas whose region names the region effects use (--effect-atlas)
    space: str = "MNI152NLin2009aSym"

    def __post_init__(self):
        if not self.groups:
            self.groups = parse_groups(DEFAULT_GROUPS)
        self.effects = tuple(self.effects)
        self.groups = tuple(self.groups)
        if self.voxel_size is None:
            self.voxel_size = self.resolution

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["effects"] = [e.to_dict() for e in self.effects]
        data["groups"] = [{"name": g.name, "mean_severity": g.mean_severity} for g in self.groups]
        data["age_range"] = list(self.age_range)
        return data


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{what} '{text}' is not a number") from None
    if not math.isfinite(value):
        raise UsageError(f"{what} '{text}' is not a finite number")
    return value


BLOB_SYNTAX = "blob:X,Y,Z,RADIUS_MM:PERCENT"
BLOB_EXAMPLE = "blob:-54,-6,28,8:15"


def _parse_blob(text: str, numbers: str, percent: float) -> Effect:
    parts = [p.strip() for p in numbers.split(",")]
    if len(parts) != 4 or not all(parts):
        raise UsageError(
            f"--effect '{text}' is not {BLOB_SYNTAX}: give the MNI centre in mm and a radius in mm, "
            f"e.g. {BLOB_EXAMPLE}"
        )
    x, y, z, radius = (_number(p, f"--effect '{text}': {what}") for p, what in zip(parts, "xyzr"))
    if radius <= 0:
        raise UsageError(f"--effect '{text}': radius {radius:g} mm must be above 0, e.g. {BLOB_EXAMPLE}")
    return Effect(regions=(), percent=percent, center_mm=(x, y, z), radius_mm=radius)


def _check_region_names(text: str, regions: tuple[str, ...], region_names: Sequence[str], atlas: str) -> None:
    known = set(region_names)
    for region in regions:
        if region not in known:
            close = difflib.get_close_matches(region, list(region_names), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            example = "Hippocampus_L" if "Hippocampus_L" in known else list(region_names)[0]
            raise UsageError(
                f"--effect '{text}': region '{region}' is not an {atlas} region name{hint}; "
                f"names are case-sensitive, e.g. {example} (--effect-atlas chooses the atlas)"
            )


def parse_effect(text: str, region_names: Sequence[str] | None = None, atlas: str = "AAL") -> Effect:
    """Parse one ``--effect``: ``REGION[,REGION...]:PERCENT`` or ``blob:X,Y,Z,RADIUS_MM:PERCENT``.

    Parameters
    ----------
    text : str
        ``Hippocampus_L,Hippocampus_R:20`` (regions of ``atlas``) or ``blob:-54,-6,28,8:15`` (a
        sphere of radius 8 mm around MNI point (-30, -20, 10) mm).  ``PERCENT`` is 0-100.
    region_names : sequence of str, optional
        The region names of ``atlas``; when given, every named region must be one of them.
    atlas : str
        The atlas name the error messages give (``AAL`` by default).

    Returns
    -------
    Effect
        The parsed effect.

    Raises
    ------
    UsageError
        A one-line message naming the fix for a malformed effect, a percent outside 0-100, a
        radius of 0 or less, an unknown region or a region named twice.
    """
    spec = str(text).strip()
    kind, colon, body = spec.partition(":")
    is_blob = bool(colon) and kind.strip().lower() == "blob"
    regions_part, sep, percent_part = (body if is_blob else spec).rpartition(":")
    if not sep or not regions_part.strip() or not percent_part.strip():
        syntax = BLOB_SYNTAX if is_blob else f"REGION[,REGION]:PERCENT or {BLOB_SYNTAX}"
        raise UsageError(
            f"--effect '{text}' is not {syntax}: write e.g. "
            f"{BLOB_EXAMPLE if is_blob else 'Hippocampus_L,Hippocampus_R:20'}"
        )
    percent = _number(percent_part.strip().rstrip("%"), f"--effect '{text}': percent")
    if not 0 <= percent <= 100:
        raise UsageError(f"--effect '{text}': percent {percent:g} is outside 0-100")
    if is_blob:
        return _parse_blob(text, regions_part, percent)
    regions = tuple(r.strip() for r in regions_part.split(",") if r.strip())
    if not regions:
        raise UsageError(f"--effect '{text}' names no region: write e.g. Hippocampus_L:20")
    if region_names is not None:
        _check_region_names(text, regions, region_names, atlas)
    if len(set(regions)) != len(regions):
        raise UsageError(f"--effect '{text}' names a region twice")
    return Effect(regions=regions, percent=percent)


def check_effects(effects: Iterable[Effect], region_names: Sequence[str], atlas: str = "AAL") -> tuple[Effect, ...]:
    """Validate effects against the label list of ``atlas``; a region may be planted only once.

    Parameters
    ----------
    effects : iterable of Effect or str
        Parsed effects or ``--effect`` texts.
    region_names : sequence of str
        The region names of the effect atlas.
    atlas : str
        The effect atlas's name, for the error messages.

    Returns
    -------
    tuple of Effect
        The checked effects, in order.  Blobs may overlap anything (their losses multiply).
    """
    checked, seen = [], set()
    for effect in effects:
        text = effect if isinstance(effect, str) else effect.to_text()
        effect = parse_effect(text, region_names, atlas)
        twice = seen.intersection(effect.regions)
        if twice:
            raise UsageError(f"--effect: region {sorted(twice)[0]} is planted twice: give it once")
        seen.update(effect.regions)
        checked.append(effect)
    return tuple(checked)


def check_effect_atlas(name: str) -> str:
    """Return ``name`` if it names an atlas ``--effect-atlas`` can read, else raise a one-line UsageError.

    Known are the shipped atlases (``AAL``, ``AAL3``, ``HCPEx``), nilearn's AAL versions (read from
    its cache) and a path to an integer-label NIfTI in MNI space with an ``index<TAB>name`` TSV
    beside it (``latentbids.resources.get_atlas`` reads it and reports its own problems).

    Parameters
    ----------
    name : str
        The ``--effect-atlas`` value.

    Returns
    -------
    str
        ``name``, unchanged.
    """
    from latentbids.resources.atlases import NILEARN_ATLASES, WHEEL_ATLASES

    name = str(name)
    if name in WHEEL_ATLASES or name in NILEARN_ATLASES:
        return name
    if name.endswith((".nii", ".nii.gz")) or Path(name).exists():
        return name
    lower = {a.lower(): a for a in WHEEL_ATLASES + NILEARN_ATLASES}
    close = difflib.get_close_matches(name.lower(), list(lower), n=1)
    hint = f" (did you mean {lower[close[0]]}?)" if close else ""
    raise UsageError(
        f"--effect-atlas '{name}' is unknown{hint}: use {', '.join(WHEEL_ATLASES)} (shipped) or a path to "
        "an integer-label NIfTI in MNI space with an index<TAB>name TSV beside it"
    )


def parse_groups(groups: str | Iterable[str] | Iterable[Group]) -> tuple[Group, ...]:
    """Groups ordered from healthy to most affected: ``CN,AD`` or ``CN,MCI,AD`` (or ``NAME:SEV``).

    Without an explicit severity the first group is the control group (mean severity 0), the last
    is fully affected (1) and the ones between are evenly spaced (``CN,MCI,AD`` -> 0, 0.5, 1).
    """
    if isinstance(groups, str):
        items = [g for g in groups.split(",")]
    else:
        items = list(groups)
    if items and all(isinstance(g, Group) for g in items):
        parsed = tuple(items)
    else:
        names, sev = [], []
        for item in items:
            name, sep, value = str(item).strip().partition(":")
            name = name.strip()
            if not name or not name.isalnum():
                raise UsageError(
                    f"--groups: group name '{item}' must be alphanumeric (e.g. CN,MCI,AD)"
                )
            names.append(name)
            sev.append(_number(value, f"--groups '{item}': severity") if sep else None)
        if len(names) < 2:
            raise UsageError("--groups needs at least two groups, e.g. CN,AD")
        n = len(names)
        parsed = tuple(
            Group(name, s if s is not None else i / (n - 1))
            for i, (name, s) in enumerate(zip(names, sev))
        )
    names = [g.name for g in parsed]
    if len(set(names)) != len(names):
        raise UsageError(f"--groups lists a group twice: {','.join(names)}")
    for g in parsed:
        if not 0 <= g.mean_severity <= 2:
            raise UsageError(f"--groups: severity {g.mean_severity:g} of {g.name} is outside 0-2")
    return parsed


def check_spec(spec: SimulationSpec) -> SimulationSpec:
    """Reject impossible combinations with one-line UsageErrors."""
    if int(spec.n_subjects) != spec.n_subjects or spec.n_subjects < 1:
        raise UsageError(f"--n-subjects {spec.n_subjects} must be a positive integer")
    if spec.n_subjects < len(spec.groups):
        raise UsageError(
            f"--n-subjects {spec.n_subjects} is too small for {len(spec.groups)} groups "
            f"({','.join(g.name for g in spec.groups)}): "
            f"give at least {len(spec.groups)} (one per group)"
        )
    if not 0 <= int(spec.seed) < 2**63 or int(spec.seed) != spec.seed:
        raise UsageError(f"--seed {spec.seed} must be a non-negative integer")
    lo, hi = spec.age_range
    if not 0 <= lo <= hi <= 120:
        raise UsageError(f"--age-range {lo:g} {hi:g} must satisfy 0 <= MIN <= MAX <= 120")
    if not 0 <= spec.severity_spread <= 1:
        raise UsageError(f"--severity-spread {spec.severity_spread:g} is outside 0-1")
    if not 0 <= spec.age_effect <= 50:
        raise UsageError(f"--age-effect {spec.age_effect:g} (% GM loss per decade) is outside 0-50")
    if not 0 <= spec.tiv_confound < 0.5:
        raise UsageError(f"--tiv-confound {spec.tiv_confound:g} is outside 0-0.5")
    if not 0 <= spec.deformation_mm <= 10:
        raise UsageError(f"--deformation {spec.deformation_mm:g} mm is outside 0-10")
    if not 0 <= spec.gm_variability <= 0.3:
        raise UsageError(f"--gm-variability {spec.gm_variability:g} is outside 0-0.3")
    if not 0 <= spec.noise_scale <= 10:
        raise UsageError(f"--noise-scale {spec.noise_scale:g} is outside 0-10")
    for what, value in (("--resolution", spec.resolution), ("--voxel-size", spec.voxel_size)):
        if not 0.5 <= float(value) <= 4:
            raise UsageError(f"{what} {value:g} mm is outside 0.5-4 mm")
    return spec
