"""The claims list: every statement of significance the group level makes, with the test behind it.

latentbids reads a latent space with a test behind every claim (METHOD.md section 9).  Each such
statement (a latent unit is clinically relevant, a region is LRCP-positive, a SAM region, the latent
vector, RUB, SAR, a SHAP surrogate, PC1 tracking a global measure) is one :class:`Claim`, whether it
is supported or not.  The HTML verdicts, the headline, the tables and the NIfTI maps are all generated
from this list: a map is a finding only where its claim is supported, and the report says nothing the
list does not support.

Families (``family``) are declared once each, in :data:`CLAIM_FAMILIES` (a :class:`ClaimFamily`: what a
supported claim says, its default rule and multiplicity control in words (METHOD.md sections 5-7), the
verdict rule of :mod:`latentbids.analysis.verdict_rules`, the report section and the methods boilerplate);
:data:`FAMILIES` and :data:`FAMILY_MEANING` are views of it.  Adding a family: one :func:`register_family`
call in the block below (with its verdict rule in ``verdict_rules``), and the analysis that makes its claims.

``exploratory`` marks statements shown for orientation only (a ranking with no relevant unit behind it):
they are never ``supported`` and never appear in a headline.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import pandas as pd

from latentbids.analysis import verdict_rules as rules


@dataclass(frozen=True)
class ClaimFamily:
    """One claim family, declared once: what its claims say and where they are said.

    Attributes
    ----------
    name : str
        The ``family`` of its claims (``"unit"``); lower-case letters, digits and ``_``.
    meaning : str
        What a supported claim says, for headlines, summaries and the methods section.
    rule : str
        The family's default rule (test and multiplicity control) in words.
    scope : {"contrast", "cohort"}
        Whether its claims are about one contrast (``"A vs B"``) or the whole cohort (``contrast=""``).
    verdict : callable or None
        ``verdict(tests, ctx) -> list of str``: the family's claims in words
        (:mod:`~latentbids.analysis.verdict_rules`; ``tests`` never empty, ``ctx`` a
        :class:`~latentbids.analysis.verdict_rules.VerdictContext`); None: no sentence.
    order : int
        Position of its sentences among the verdicts of its scope (lower first).
    section : str
        The group report section that shows its claims (one of :data:`REPORT_SECTIONS`); a section renders
        a family it does not know with a generic claims table.
    boilerplate : tuple, default=()
        The analysis behind the family in the methods boilerplate, as text and ``("cite", key)`` pieces
        (``()``: the family adds no phrase).
    regional : bool, default=False
        Its items are regions of an atlas: the atlas is part of each claim (:attr:`Claim.atlas`), and a run
        with several atlases makes the family's claims once per atlas.
    """

    name: str
    meaning: str
    rule: str
    scope: str
    verdict: Callable | None
    order: int
    section: str
    boilerplate: tuple = ()
    regional: bool = False


#: the group report's sections, in page order (``latentbids.reports.group.SECTIONS`` holds their titles)
REPORT_SECTIONS = ("summary", "data", "training", "projections", "lrcp", "errors", "shap", "agnostic", "methods")

#: name -> family, in registration order (the order of :data:`FAMILIES` and of the calibration tables)
CLAIM_FAMILIES: dict[str, ClaimFamily] = {}


def register_family(family: ClaimFamily) -> ClaimFamily:
    """Add ``family`` to :data:`CLAIM_FAMILIES` (claims of it validate from then on).

    Parameters
    ----------
    family : ClaimFamily
        The declaration; its name must be new, its scope ``"contrast"`` or ``"cohort"``, its section one of
        :data:`REPORT_SECTIONS`.

    Returns
    -------
    ClaimFamily
        ``family``.
    """
    if family.name in CLAIM_FAMILIES or not re.fullmatch(r"[a-z][a-z0-9_]*", family.name):
        raise ValueError(f"claim family '{family.name}': the name must be new, lower-case letters, digits and '_'")
    if family.scope not in ("contrast", "cohort") or family.section not in REPORT_SECTIONS:
        raise ValueError(f"claim family '{family.name}': scope must be 'contrast' or 'cohort' and section one of "
                         f"{', '.join(REPORT_SECTIONS)}")
    CLAIM_FAMILIES[family.name] = family
    return family


def unregister_family(name: str) -> ClaimFamily:
    """Remove a family from :data:`CLAIM_FAMILIES` (a test's toy family, once it is done).

    Parameters
    ----------
    name : str
        The family's name.

    Returns
    -------
    ClaimFamily
        The removed declaration.
    """
    return CLAIM_FAMILIES.pop(name)


def families_in_order(scope: str) -> list[ClaimFamily]:
    """The families of ``scope`` in the order their verdicts are said.

    Parameters
    ----------
    scope : {"contrast", "cohort"}
        Which families.

    Returns
    -------
    list of ClaimFamily
        Sorted by ``order`` (registration order on a tie).
    """
    return sorted((f for f in CLAIM_FAMILIES.values() if f.scope == scope), key=lambda f: f.order)


class _Names(Sequence):
    """:data:`FAMILIES`: the registered names, live (a family registered later is in it)."""

    def __getitem__(self, i):
        return tuple(CLAIM_FAMILIES)[i]

    def __len__(self) -> int:
        return len(CLAIM_FAMILIES)

    def __contains__(self, name) -> bool:
        return name in CLAIM_FAMILIES

    def __repr__(self) -> str:
        return repr(tuple(CLAIM_FAMILIES))


class _Meanings(Mapping):
    """:data:`FAMILY_MEANING`: name -> meaning of the registered families, live."""

    def __getitem__(self, name) -> str:
        return CLAIM_FAMILIES[name].meaning

    def __iter__(self):
        return iter(CLAIM_FAMILIES)

    def __len__(self) -> int:
        return len(CLAIM_FAMILIES)

    def __repr__(self) -> str:
        return repr(dict(self))


#: the registered families' names, in order (a view of :data:`CLAIM_FAMILIES`)
FAMILIES = _Names()
#: what a supported claim of each family says, for headlines and the methods section (a view)
FAMILY_MEANING = _Meanings()

# --------------------------------------------------------------------------------------------------
# the built-in families (registration order = FAMILIES; ``order`` = the verdicts' order)

UNIT, REGION, LRCP, SAM = "unit", "region", "lrcp", "sam"
LATENT_VECTOR, VECTOR_BOUND, RUB = "latent_vector", "vector_bound", "rub"
SAR, SHAP, PC1, SHAP_REGIONS = "sar", "shap", "pc1", "shap_regions"

register_family(ClaimFamily(
    UNIT, "latent units that separate the classes (clinically relevant)",
    "max-statistic label permutation over every unit of every fold (Welch |t|)",
    "contrast", rules.unit_sentences, 20, "lrcp"))
register_family(ClaimFamily(
    REGION, "regions whose mean GM separates the classes",
    "max-statistic label permutation over the regions (Welch |t|)",
    "contrast", rules.region_sentences, 30, "lrcp", regional=True))
register_family(ClaimFamily(
    LRCP, "LRCP-positive regions (the latent space encodes them and they separate the classes)",
    "the region's own family-wise test + a family-wise tie to a relevant unit, in any fold (Welch |t|)",
    "contrast", rules.lrcp_sentences, 50, "lrcp", ("latent-region correspondence (LRCP)",), regional=True))
register_family(ClaimFamily(
    SAM, "regions whose voxels separate the classes (SAM)",
    "bound and max-statistic permutation p of the whole SAM pipeline",
    "contrast", rules.sam_sentences, 40, "agnostic",
    ("statistical agnostic bounds and mapping ", ("cite", "sam")), regional=True))
register_family(ClaimFamily(
    LATENT_VECTOR, "the whole latent vector separates the classes (held out, over the autoencoder's folds)",
    "held-out balanced accuracy over the folds, label permutation of the whole cross-validation",
    "contrast", rules.latent_vector_sentences, 10, "agnostic"))
register_family(ClaimFamily(
    VECTOR_BOUND, "the whole latent vector separates the classes (the paper's in-sample bound with d = K)",
    "the paper's in-sample bound with d = K at eta / n_folds",
    "contrast", rules.vector_bound_sentences, 60, "agnostic"))
register_family(ClaimFamily(
    RUB, "the whole latent vector separates the classes (RUB)",
    "PAC-Bayes bound on the Gibbs classifier at eta / n_folds (and the permutation p)",
    "contrast", rules.rub_sentences, 70, "agnostic"))
register_family(ClaimFamily(
    SAR, "the top SHAP regions predict the reconstruction error (SAR, held-out half)",
    "SAR on the half that did not select the regions",
    "cohort", rules.sar_sentences, 40, "shap", regional=True))
register_family(ClaimFamily(
    SHAP, "SHAP explanations of the reconstruction error",
    "CV R^2 floor and permutation null, Holm over the models",
    "cohort", rules.shap_sentences, 20, "shap", ("SHAP explanations of the reconstruction error ", ("cite", "shap"))))
register_family(ClaimFamily(
    PC1, "the first principal axis of the latent codes tracks a global measure",
    "Fisher z test of |rho| > 0.5, Bonferroni over the global measures",
    "cohort", rules.pc1_sentences, 10, "projections"))
register_family(ClaimFamily(
    SHAP_REGIONS, "the top SHAP regions, chosen on one half, predict the reconstruction error of the other half",
    "held-out R^2 of the top SHAP regions against permuted test-half errors",
    "cohort", rules.shap_regions_sentences, 30, "shap", regional=True))


@dataclass(frozen=True)
class Claim:
    """One statement of significance and the test behind it.

    ``statistic`` is the observed value of ``statistic_name``; ``p`` the p-value the verdict used
    (family-wise adjusted where a correction applies; NaN when the verdict is a bound); ``bound`` the
    worst-case value or bound the verdict used (NaN when it is a p-value alone); ``correction`` says
    how the family is controlled; ``contrast`` is ``"A vs B"``, or ``""`` for claims about the whole
    cohort (SHAP, SAR, PC1).  ``note`` explains the verdict in words when it needs it.

    Every verdict, headline, table and map of the group level is generated from these records, so a
    statement of significance exists only where a ``Claim`` with ``supported=True`` backs it.

    Attributes
    ----------
    contrast : str
        ``"A vs B"`` (class 0 vs class 1), or ``""`` for a claim about the whole cohort.
    family : str
        A registered family (:data:`CLAIM_FAMILIES`: ``unit``, ``region``, ``lrcp``, ``sam``,
        ``latent_vector``, ``vector_bound``, ``rub``, ``sar``, ``shap``, ``pc1``, ``shap_regions``);
        anything else raises ``ValueError``.
    item : str
        What the claim is about: a unit name (``z3``), a region name, a model name (``pooled``), ...
    statistic_name : str
        What ``statistic`` measures, in words (e.g. ``"best-threshold balanced accuracy"``).
    statistic : float
        Observed value of the statistic (balanced accuracy in [0.5, 1], Pearson r in [-1, 1], CV R^2,
        loss, ...); NaN when it could not be computed.
    p : float
        p-value the verdict used, in (0, 1] (family-wise adjusted where a correction applies); NaN when
        the verdict rests on a bound alone.
    bound : float
        Worst-case value the verdict used (e.g. ``acc*`` in accuracy units, or a bound ``Delta``); NaN
        when the verdict rests on a p-value alone.
    correction : str
        How the family is controlled, in words (quoted by the report).
    supported : bool
        The verdict: True only when the claim's test passed.  Never True together with ``exploratory``.
    exploratory : bool, default=False
        True for statements shown for orientation only (never supported, never in a headline).
    fold : str, default=""
        Fold of the claim (unit, latent-vector and RUB claims); ``""`` when not fold-specific.
    note : str, default=""
        The verdict explained in words (a reason for NaN, the test that decided), or ``""``.
    atlas : str, default=""
        The atlas whose region ``item`` names (a regional family, :attr:`ClaimFamily.regional`); ``""`` for a
        claim about units, the latent vector or the cohort.
    """

    contrast: str
    family: str
    item: str
    statistic_name: str
    statistic: float
    p: float
    bound: float
    correction: str
    supported: bool
    exploratory: bool = False
    fold: str = ""
    note: str = ""
    atlas: str = ""

    def __post_init__(self):
        if self.family not in CLAIM_FAMILIES:
            raise ValueError(f"unknown claim family '{self.family}'")
        if self.supported and self.exploratory:
            raise ValueError("an exploratory statement cannot be a supported claim")

    def as_json(self) -> dict:
        """JSON-ready dict (NaN becomes null)."""
        out = asdict(self)
        for key in ("statistic", "p", "bound"):
            value = out[key]
            missing = value is None or (isinstance(value, float) and not math.isfinite(value))
            out[key] = None if missing else float(value)
        return out


@dataclass
class ClaimsList:
    """All claims of one group-level analysis, in the order they were made.

    The single source the verdicts (:mod:`latentbids.analysis.verdicts`), ``analysis.json`` and the
    report read: what is not in this list is not said.

    Attributes
    ----------
    claims : list of Claim, default=[]
        The claims, in the order the sections made them.
    """

    claims: list[Claim] = field(default_factory=list)

    def extend(self, claims) -> None:
        """Append ``claims`` (an iterable of :class:`Claim`) in order."""
        self.claims.extend(claims)

    def __iter__(self):
        return iter(self.claims)

    def __len__(self) -> int:
        return len(self.claims)

    def select(self, family: str | None = None, contrast: str | None = None, supported: bool | None = None,
               exploratory: bool | None = None) -> list[Claim]:
        """The claims matching every given filter (``None`` matches anything)."""
        out = []
        for c in self.claims:
            if family is not None and c.family != family:
                continue
            if contrast is not None and c.contrast != contrast:
                continue
            if supported is not None and c.supported != supported:
                continue
            if exploratory is not None and c.exploratory != exploratory:
                continue
            out.append(c)
        return out

    def supported_items(self, family: str, contrast: str | None = None) -> list[str]:
        """The ``item`` of every supported claim of ``family`` (and ``contrast`` when given), in order."""
        return [c.item for c in self.select(family=family, contrast=contrast, supported=True)]

    def as_json(self) -> list[dict]:
        """JSON-ready list of dicts, one per claim (:meth:`Claim.as_json`: NaN becomes null)."""
        return [c.as_json() for c in self.claims]

    def frame(self) -> pd.DataFrame:
        """The claims as a DataFrame: one row per claim, one column per :class:`Claim` field (NaN kept)."""
        columns = [f.name for f in Claim.__dataclass_fields__.values()]
        return pd.DataFrame([asdict(c) for c in self.claims], columns=columns)

    @classmethod
    def from_json(cls, records) -> "ClaimsList":
        """Rebuild from :meth:`as_json` output (null -> NaN)."""
        claims = []
        for r in records:
            r = dict(r)
            for key in ("statistic", "p", "bound"):
                r[key] = math.nan if r.get(key) is None else float(r[key])
            claims.append(Claim(**r))
        return cls(claims)


def with_atlas(claims, atlas: str) -> list[Claim]:
    """``claims`` with :attr:`Claim.atlas` set to ``atlas`` on those of a regional family (the others as they are).

    Parameters
    ----------
    claims : iterable of Claim
    atlas : str
        The atlas's BIDS name (``AAL``, ``AAL3`` ...).

    Returns
    -------
    list of Claim
    """
    from dataclasses import replace

    return [replace(c, atlas=atlas) if CLAIM_FAMILIES[c.family].regional else c for c in claims]
