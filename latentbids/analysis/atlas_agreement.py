"""Does a regional finding survive a change of atlas?  Agreement of regional claims across parcellations.

A regional verdict ("region R carries clinically relevant latent information", METHOD.md 5 and 6) is a
statement about one parcellation: a group run reads the same latent space through several atlases (the
primary first, e.g. AAL, then AAL3, HCPEx), each with its own regional claims.  This module lines the
claims of the atlases up on their common voxel grid:

- :func:`overlap_matrix`: the share of each region of atlas A that lies in each region of atlas B,
  optionally weighted by the mean GM, so that a boundary running through CSF counts little.
- :func:`agreement_table`: for every supported regional claim of every atlas A (each atlas is A in turn)
  and every other atlas B, the regions of B that overlap it ("counterparts": at least ``min_overlap`` of
  A's region, or more than :data:`INSIDE_SHARE` of themselves inside it), and whether one of them carries
  a supported claim of the same contrast and family in B (``holds``).  ``holds`` is missing (NA) when B
  cannot answer: the family was not tested in B for that contrast, no region of B overlaps the region
  (B does not cover it), or none of the counterparts was tested.

What the table says in words (one verdict per finding, whether it depends on the atlas, the figure's matrix)
is :mod:`latentbids.analysis.atlas_verdicts`.

No test is added here: every ``supported`` comes from its own family-wise test in its own atlas, so a
finding that "holds in AAL3" is two supported claims that overlap, not a new claim.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from latentbids.errors import UsageError

#: the claim families whose claims are about one atlas region
REGIONAL_FAMILIES = ("region", "lrcp", "sam", "shap")
#: the columns a claims table must have
CLAIM_COLUMNS = ("atlas", "contrast", "family", "region_index", "region", "supported")
#: a region of B with more than this share of itself inside A's region is a counterpart of it, however
#: little of A it covers (a fine atlas splits a coarse region into many small pieces)
INSIDE_SHARE = 0.5
#: a region of B with at least this share of A's region and this share of itself inside it is "nearly the same
#: region": when it is not supported, the atlases differ in their test (power at each atlas's eta, chance), not
#: in where they drew the boundary
SAME_REGION = 0.8
#: the columns of :func:`agreement_table`
TABLE_COLUMNS = ("finding", "atlas", "contrast", "family", "region_index", "region", "other_atlas", "overlaps",
                 "n_overlaps", "supported_overlaps", "holds", "supported_share", "outside_share", "same_region",
                 "verdict")


# ------------------------------------------------------------------------------------------ overlap
def _labels(name: str, labels, shape=None) -> np.ndarray:
    a = np.asarray(labels)
    if shape is not None and a.shape != shape:
        raise UsageError(f"atlas '{name}' has shape {a.shape}, not the common grid's {shape}: resample it first")
    if not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise UsageError(f"atlas '{name}' must hold integer labels")
        a = a.astype(np.int64)
    if a.size and a.min() < 0:
        raise UsageError(f"atlas '{name}' has negative labels: 0 is background, regions are positive")
    return a.ravel()


def _weights(weights, shape) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != shape:
        raise UsageError(f"GM weights have shape {w.shape}, not the atlases' grid {shape}")
    return np.clip(np.nan_to_num(w.ravel(), nan=0.0, posinf=0.0, neginf=0.0), 0.0, None)


def _joint(a: np.ndarray, b: np.ndarray, w: np.ndarray | None) -> pd.DataFrame:
    """(Weighted) voxel count of every pair of labels (background 0 included), both flat on one grid."""
    ua, ia = np.unique(a, return_inverse=True)
    ub, ib = np.unique(b, return_inverse=True)
    counts = np.bincount(ia.ravel() * len(ub) + ib.ravel(), weights=w, minlength=len(ua) * len(ub))
    return pd.DataFrame(counts.reshape(len(ua), len(ub)), index=ua, columns=ub)


def _shares(joint: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Share of each A region in each B label (0 = B's background), and of each B region inside each A."""
    rows = joint.drop(index=0, errors="ignore")
    rows = rows[rows.sum(axis=1) > 0]
    of_a = rows.div(rows.sum(axis=1), axis=0)
    cols = joint.drop(columns=0, errors="ignore")
    cols = cols.loc[:, cols.sum(axis=0) > 0]
    of_b = (cols / cols.sum(axis=0)).drop(index=0, errors="ignore")
    return of_a, of_b


def overlap_matrix(labels_a, labels_b, weights=None) -> pd.DataFrame:
    """Share of each region of atlas A lying in each region of atlas B (the same voxel grid).

    Parameters
    ----------
    labels_a, labels_b : array_like of int, shape (X, Y, Z)
        Labels of the two atlases on one grid (0 = background).
    weights : array_like of float, shape (X, Y, Z), optional
        Voxel weights, e.g. the mean GM of the cohort, so that a boundary through CSF counts little
        (non-finite and negative weights count 0).  None: every voxel counts 1.

    Returns
    -------
    DataFrame, shape (n_regions_a, n_regions_b)
        Index: the labels of A with a (weighted) voxel; columns: the labels of B present on the grid.
        Entry (a, b): the (weighted) share of region a lying in region b; a row sums to at most 1, the rest
        lying in B's background.
    """
    first = np.asarray(labels_a)
    a, b = _labels("A", first), _labels("B", labels_b, first.shape)
    of_a, _ = _shares(_joint(a, b, _weights(weights, first.shape)))
    out = of_a.drop(columns=0, errors="ignore")
    out.index.name, out.columns.name = "region_a", "region_b"
    return out


# ------------------------------------------------------------------------------------------- claims
def _regional_claims(claims: pd.DataFrame, atlases, families) -> pd.DataFrame:
    """One row per (atlas, contrast, family, region_index): supported if any of its rows is (folds)."""
    missing = [c for c in CLAIM_COLUMNS if c not in claims.columns]
    if missing:
        raise UsageError(f"the claims table lacks the column(s) {', '.join(missing)}")
    c = claims[claims["family"].isin(families) & claims["region_index"].notna()].copy()
    unknown = sorted(set(c["atlas"]) - set(atlases))
    if unknown:
        raise UsageError(f"claims name atlas(es) {', '.join(map(str, unknown))} that were not given")
    c["region_index"] = c["region_index"].astype(np.int64)
    c["supported"] = c["supported"].fillna(False).astype(bool)
    keys = ["atlas", "contrast", "family", "region_index"]
    c = c.groupby(keys, sort=False, as_index=False).agg(region=("region", "first"), supported=("supported", "any"))
    order = {name: i for i, name in enumerate(atlases)}
    return c.sort_values("atlas", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def _finding(row) -> str:
    return f"{row.family} {row.region} ({row.atlas}, {row.contrast})"


def _compare(row, other: str, of_a, of_b, tested: dict, names: dict, min_overlap: float) -> dict:
    """One row of the agreement table: the claim ``row`` of atlas A read in atlas ``other``."""
    out = {"other_atlas": other, "overlaps": "", "n_overlaps": 0, "supported_overlaps": "", "holds": pd.NA,
           "supported_share": np.nan, "outside_share": np.nan, "same_region": ""}
    status = tested.get((row.contrast, row.family))
    if row.region_index not in of_a.index:
        return {**out, "verdict": f"not comparable: {row.region} has no (GM-weighted) voxel on the common grid"}
    share = of_a.loc[row.region_index]
    inside = (of_b.loc[row.region_index] if row.region_index in of_b.index
              else pd.Series(0.0, index=of_b.columns)).reindex(share.index, fill_value=0.0)
    regions = share.drop(index=0, errors="ignore")
    counterparts = regions[(regions >= min_overlap) | (inside.drop(index=0, errors="ignore") > INSIDE_SHARE)]
    counterparts = counterparts.sort_values(ascending=False, kind="stable")
    label = [f"{names.get(b, f'label {b}')} ({s:.2f})" for b, s in counterparts.items()]
    same = [b for b, s in counterparts.items() if s >= SAME_REGION and inside.get(b, 0.0) >= SAME_REGION]
    out.update(overlaps="; ".join(label), n_overlaps=len(label), outside_share=float(share.get(0, 0.0)),
               same_region=names.get(same[0], f"label {same[0]}") if same else "")
    if status is None:
        return {**out, "verdict": f"not tested in {other}: no {row.family} claims for {row.contrast}"}
    supported = [b for b in regions.index if status.get(b) is True]
    out["supported_share"] = float(regions[supported].sum())
    if not label:
        return {**out, "verdict": f"not comparable: no region of {other} covers {row.region} "
                                  f"({out['outside_share']:.2f} of it outside {other}'s regions)"}
    held = [text for b, text in zip(counterparts.index, label) if status.get(b) is True]
    if held:
        return {**out, "holds": True, "supported_overlaps": "; ".join(held),
                "verdict": f"holds in {other}: {'; '.join(held)} supported"}
    untested = sum(b not in status for b in counterparts.index)
    if untested == len(label):
        return {**out, "verdict": f"not comparable: the overlapping regions of {other} ({out['overlaps']}) "
                                  f"have no {row.family} claim"}
    if same and status.get(same[0]) is False:
        return {**out, "holds": False,
                "verdict": f"not in {other}: {label[counterparts.index.get_loc(same[0])]} is nearly the same region "
                           "and not supported (a difference of the test, its power or chance, not of the boundary)"}
    none = "none supported" if len(label) > 1 else "not supported"
    note = f", {untested} untested" if untested else ""
    share_note = (f"; supported regions cover only {out['supported_share']:.2f} of it"
                  if out["supported_share"] > 0 else "")
    return {**out, "holds": False, "verdict": f"not in {other}: {out['overlaps']}, {none}{note}{share_note}"}


def agreement_table(atlases: Mapping, claims: pd.DataFrame, weights=None, min_overlap: float = 0.1, *,
                    families=REGIONAL_FAMILIES) -> pd.DataFrame:
    """Every supported regional claim of every atlas, read in every other atlas.

    Parameters
    ----------
    atlases : mapping of str to array_like of int, each of shape (X, Y, Z)
        Atlas name -> labels on one common grid (0 = background); the first key is the primary atlas.
    claims : DataFrame, shape (n_claims, >= 6)
        With columns ``atlas`` (a key of ``atlases``), ``contrast``, ``family``, ``region_index`` (the
        region's label in its atlas), ``region`` (its name), ``supported`` (bool).  Rows of other families,
        or without ``region_index``, are ignored; several rows of one region (folds) count as supported if
        any is.
    weights : array_like of float, shape (X, Y, Z), optional
        Mean GM: the overlaps are GM-weighted (see :func:`overlap_matrix`).
    min_overlap : float, default=0.1
        Share of A's region a region of B must cover to count as its counterpart (a region of B more than
        :data:`INSIDE_SHARE` inside A's region counts too).
    families : sequence of str, default=REGIONAL_FAMILIES
        The regional claim families to compare.

    Returns
    -------
    DataFrame, shape (n_supported_findings * (n_atlases - 1), 15)
        Columns :data:`TABLE_COLUMNS`: the finding (id ``"family region (atlas, contrast)"``) and its
        claim; ``other_atlas``; ``overlaps`` (its counterparts in B as ``"name (0.62); name (0.30)"``,
        largest first, the share of A's region each covers) and ``n_overlaps``; ``supported_overlaps``
        (those supported in B); ``holds`` (nullable bool: a counterpart carries a supported claim of the
        same contrast and family in B; NA when B cannot answer); ``supported_share`` (share of A's region
        covered by supported regions of B, any overlap); ``outside_share`` (share in B's background);
        ``same_region`` (the region of B that is nearly the same region, :data:`SAME_REGION` of each inside the
        other, else empty); ``verdict`` (one line).  ``attrs["atlases"]`` keeps the atlas order.
    """
    if not atlases:
        raise UsageError("agreement_table needs at least one atlas")
    if not 0.0 < float(min_overlap) <= 1.0:
        raise UsageError(f"min_overlap must lie in (0, 1] (got {min_overlap})")
    names_in = list(atlases)
    shape = np.asarray(atlases[names_in[0]]).shape
    flat = {name: _labels(name, atlases[name], shape) for name in names_in}
    w = _weights(weights, shape)
    regional = _regional_claims(claims, names_in, families)
    names = {a: dict(zip(g["region_index"], g["region"])) for a, g in regional.groupby("atlas")}
    tested = {a: {key: {int(i): bool(v) for i, v in zip(s["region_index"], s["supported"])}
                  for key, s in g.groupby(["contrast", "family"])} for a, g in regional.groupby("atlas")}
    shares = {}
    for i, a in enumerate(names_in):
        for b in names_in[i + 1:]:
            joint = _joint(flat[a], flat[b], w)
            shares[a, b], shares[b, a] = _shares(joint), _shares(joint.T)
    rows = []
    for row in regional[regional["supported"]].itertuples(index=False):
        for other in names_in:
            if other == row.atlas:
                continue
            of_a, of_b = shares[row.atlas, other]
            rows.append({"finding": _finding(row), "atlas": row.atlas, "contrast": row.contrast,
                         "family": row.family, "region_index": int(row.region_index), "region": row.region,
                         **_compare(row, other, of_a, of_b, tested.get(other, {}), names.get(other, {}),
                                    float(min_overlap))})
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    table["holds"] = table["holds"].astype("boolean")
    table.attrs["atlases"] = names_in
    return table
