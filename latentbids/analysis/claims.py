"""The claims list: every statement of significance the group level makes, with the test behind it.

latentbids reads a latent space with a test behind every claim (METHOD.md section 9).  Each such
statement (a latent unit is clinically relevant, a region is LRCP-positive, a SAM region, the latent
vector, RUB, SAR, a SHAP surrogate, PC1 tracking a global measure) is one :class:`Claim`, whether it
is supported or not.  The HTML verdicts, the headline, the tables and the NIfTI maps are all generated
from this list: a map is a finding only where its claim is supported, and the report says nothing the
list does not support.

Families (``family``) and their default multiplicity control, per contrast (METHOD.md section 5-7):

========================  ====================================================================
``unit``                  max-statistic label permutation over every unit of every fold
``region``                max-statistic label permutation over the atlas regions
``lrcp``                  tied to a relevant unit *and* the region's own family-wise test,
                          positive in most folds
``sam``                   the bound *and* the max-statistic permutation p of SAM's pipeline
``latent_vector``         held-out balanced accuracy over the autoencoder's folds, label permutation of
                          the whole cross-validation (the confirmatory multivariate test)
``vector_bound``          the paper's in-sample bound with d = K, Bonferroni over folds (reported)
``rub``                   PAC-Bayes bound on the Gibbs classifier *and* permutation p, Bonferroni
                          over folds
``sar``                   SAR on subjects that did not select the regions (one test; the paper's check)
``shap_regions``          held-out R^2 of the top SHAP regions against permuted test errors (one test)
``shap``                  permutation null of the surrogate's CV R^2, Holm over the models
``pc1``                   Fisher z test of |rho| > 0.5, Bonferroni over the global measures
========================  ====================================================================

``exploratory`` marks statements shown for orientation only (a ranking with no relevant unit behind it):
they are never ``supported`` and never appear in a headline.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import pandas as pd

FAMILIES = ("unit", "region", "lrcp", "sam", "latent_vector", "vector_bound", "rub", "sar", "shap", "pc1",
            "shap_regions")

#: What a supported claim of each family says, for headlines and the methods section.
FAMILY_MEANING = {
    "unit": "latent units that separate the classes (clinically relevant)",
    "region": "regions whose mean GM separates the classes",
    "lrcp": "LRCP-positive regions (the latent space encodes them and they separate the classes)",
    "sam": "regions whose voxels separate the classes (SAM)",
    "latent_vector": "the whole latent vector separates the classes (held out, over the autoencoder's folds)",
    "vector_bound": "the whole latent vector separates the classes (the paper's in-sample bound with d = K)",
    "rub": "the whole latent vector separates the classes (RUB)",
    "sar": "the top SHAP regions predict the reconstruction error (SAR, held-out half)",
    "shap": "SHAP explanations of the reconstruction error",
    "pc1": "the first principal axis of the latent codes tracks a global measure",
    "shap_regions": "the top SHAP regions, chosen on one half, predict the reconstruction error of the other half",
}


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
        One of :data:`FAMILIES` (``unit``, ``region``, ``lrcp``, ``sam``, ``latent_vector``, ``rub``,
        ``sar``, ``shap``, ``pc1``); anything else raises ``ValueError``.
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

    def __post_init__(self):
        if self.family not in FAMILIES:
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
