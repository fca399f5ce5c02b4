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
``latent_vector``         bound with d = K, Bonferroni over folds
``rub``                   PAC-Bayes bound on the Gibbs classifier *and* permutation p, Bonferroni
                          over folds
``sar``                   SAR on subjects that did not select the regions (one test)
``shap``                  permutation null of the surrogate's CV R^2, Holm over the models
``pc1``                   Pearson p, Bonferroni over the global measures, and |r| >= 0.5
========================  ====================================================================

``exploratory`` marks statements shown for orientation only (a ranking with no relevant unit behind it):
they are never ``supported`` and never appear in a headline.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import pandas as pd

FAMILIES = ("unit", "region", "lrcp", "sam", "latent_vector", "rub", "sar", "shap", "pc1")

#: What a supported claim of each family says, for headlines and the methods section.
FAMILY_MEANING = {
    "unit": "latent units that separate the classes (clinically relevant)",
    "region": "regions whose mean GM separates the classes",
    "lrcp": "LRCP-positive regions (the latent space encodes them and they separate the classes)",
    "sam": "regions whose voxels separate the classes (SAM)",
    "latent_vector": "the whole latent vector separates the classes (bound with d = K)",
    "rub": "the whole latent vector separates the classes (RUB)",
    "sar": "the top SHAP regions predict the reconstruction error (SAR, held-out half)",
    "shap": "SHAP explanations of the reconstruction error",
    "pc1": "the first principal axis of the latent codes tracks a global measure",
}


@dataclass(frozen=True)
class Claim:
    """One statement of significance and the test behind it.

    ``statistic`` is the observed value of ``statistic_name``; ``p`` the p-value the verdict used
    (family-wise adjusted where a correction applies; NaN when the verdict is a bound); ``bound`` the
    worst-case value or bound the verdict used (NaN when it is a p-value alone); ``correction`` says
    how the family is controlled; ``contrast`` is ``"A vs B"``, or ``""`` for claims about the whole
    cohort (SHAP, SAR, PC1).  ``note`` explains the verdict in words when it needs it.
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
            out[key] = None if value is None or (isinstance(value, float) and not math.isfinite(value)) else float(value)
        return out


@dataclass
class ClaimsList:
    """All claims of one group-level analysis, in the order they were made."""

    claims: list[Claim] = field(default_factory=list)

    def extend(self, claims) -> None:
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
        return [c.item for c in self.select(family=family, contrast=contrast, supported=True)]

    def as_json(self) -> list[dict]:
        return [c.as_json() for c in self.claims]

    def frame(self) -> pd.DataFrame:
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
