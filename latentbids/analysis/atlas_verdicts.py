"""What the agreement table says, in words and counts: one verdict per regional finding across the atlases.

:func:`~latentbids.analysis.atlas_agreement.agreement_table` lines every supported regional claim of one atlas up
with the regions of every other atlas; this module reads it:

- :func:`finding_verdicts`: one sentence per supported finding across all other atlases ("holds in AAL3 and
  HCPEx", "only in AAL: the effect straddles a boundary of AAL3 (...)", "partly: ...", "not replicated in AAL3,
  where nearly the same region is not supported"), and whether the finding depends on the atlas;
- :func:`dependence_summary`: the primary's findings counted by that dependence (the first "Atlas check");
- :func:`agreement_matrix`: finding x atlas, for the report's figure;
- :func:`shap_atlas_verdicts`: the SHAP statements (about the cohort, not one region) across atlases.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def _join(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _sentence(atlas: str, rows: pd.DataFrame) -> str:
    """One finding across the other atlases (``rows``: its rows of the agreement table)."""
    held = rows[rows["holds"].eq(True).fillna(False)]
    lost = rows[rows["holds"].eq(False).fillna(False)]
    na = rows[rows["holds"].isna()]
    details = "; ".join(f"{r.other_atlas}: {r.overlaps}, {'none' if r.n_overlaps > 1 else 'not'} supported"
                        for r in lost.itertuples())
    same = lost["same_region"].ne("")
    if same.any() and not same.all():  # say which misses are a difference of the test, not of the boundary
        details += "; nearly the same region in " + _join(
            [f"{r.other_atlas} ({r.same_region})" for r in lost[same].itertuples()]) + ": a difference of the test"
    elif same.any() and len(held):
        details += ": nearly the same region, so a difference of the test, not of the boundary"
    if len(held) and not len(lost):
        text = f"holds in {_join(held['other_atlas'])}"
    elif len(lost) and not len(held) and same.all():
        text = (f"not replicated in {_join(lost['other_atlas'])}, where nearly the same region is not supported "
                f"({details}): a difference of the test (power at each atlas's eta, or chance), not of the boundary")
    elif len(lost) and not len(held):
        split = lost.loc[(lost["n_overlaps"] > 1) & lost["same_region"].eq(""), "other_atlas"]
        why = f": the effect straddles a boundary of {_join(split)}" if len(split) else ""
        text = f"only in {atlas}{why} ({details})"
    elif len(lost):
        text = f"partly: holds in {_join(held['other_atlas'])}, not in {_join(lost['other_atlas'])} ({details})"
    else:
        return "not comparable in any other atlas: " + "; ".join(r.verdict for r in na.itertuples())
    if len(na):
        text += "; " + "; ".join(r.verdict for r in na.itertuples())
    return text


def finding_verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """One sentence per supported finding, across all the other atlases.

    Parameters
    ----------
    table : DataFrame, shape (n_rows, 15)
        The output of :func:`~latentbids.analysis.atlas_agreement.agreement_table`.

    Returns
    -------
    DataFrame, shape (n_findings, 9)
        Indexed by ``finding`` (in the order of the table): ``atlas``, ``contrast``, ``family``,
        ``region_index``, ``region``, ``n_holds`` (atlases where it holds), ``n_compared`` (atlases that
        could answer), ``depends_on_atlas`` (``no``, ``partly``, ``yes``, ``not replicated`` or ``not
        comparable``: see :func:`_dependence`), ``verdict`` ("holds in AAL3 and HCPEx", "only in AAL: the
        effect straddles a boundary of AAL3 (AAL3: X (0.55); Y (0.45), none supported)", "partly: holds in AAL3,
        not in HCPEx (...)").
    """
    cols = ["atlas", "contrast", "family", "region_index", "region", "n_holds", "n_compared", "depends_on_atlas",
            "verdict"]
    out = []
    for finding, rows in table.groupby("finding", sort=False):
        first = rows.iloc[0]
        out.append({"finding": finding, **{c: first[c] for c in cols[:5]},
                    "n_holds": int(rows["holds"].eq(True).fillna(False).sum()),
                    "n_compared": int(rows["holds"].notna().sum()), "depends_on_atlas": _dependence(rows),
                    "verdict": _sentence(first["atlas"], rows)})
    return pd.DataFrame(out, columns=["finding", *cols]).set_index("finding")


def _dependence(rows: pd.DataFrame) -> str:
    """Does the finding depend on the atlas?  ``no`` (it holds in every other atlas that can answer), ``yes``
    (in none, and at least one splits or dilutes the region), ``partly`` (in some), ``not replicated`` (in none,
    each having nearly the same region: the test differs, not the boundary), ``not comparable`` (none can answer)."""
    holds = rows["holds"].dropna().astype(bool)
    if not len(holds):
        return "not comparable"
    if holds.all():
        return "no"
    if holds.any():
        return "partly"
    lost = rows[rows["holds"].eq(False).fillna(False)]
    return "not replicated" if lost["same_region"].ne("").all() else "yes"


def agreement_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """Finding x atlas: where each supported finding holds, for a figure.

    Parameters
    ----------
    table : DataFrame, shape (n_rows, 15)
        The output of :func:`~latentbids.analysis.atlas_agreement.agreement_table`.

    Returns
    -------
    DataFrame, shape (n_findings, n_atlases)
        Object dtype: True in the finding's own atlas and where it holds, False where it does not, NaN
        where the atlas cannot answer (not tested, not covered).  Columns in the order of
        ``table.attrs["atlases"]`` (else of first appearance).
    """
    order = list(table.attrs.get("atlases") or pd.unique(pd.concat([table["atlas"], table["other_atlas"]])))
    findings = list(pd.unique(table["finding"]))
    out = pd.DataFrame(np.nan, index=pd.Index(findings, name="finding"), columns=order, dtype=object)
    for r in table.itertuples(index=False):
        out.loc[r.finding, r.atlas] = True
        out.loc[r.finding, r.other_atlas] = np.nan if pd.isna(r.holds) else bool(r.holds)
    return out


def _number(x) -> str:
    return f"{x:.2f}" if np.isfinite(x) else "not fitted"


def shap_atlas_verdicts(claims, atlases) -> list[str]:
    """One sentence per SHAP statement supported in some atlas, saying in which atlases it holds.

    SHAP's claims are about the whole cohort, not about one region: a surrogate model of the reconstruction
    error from an atlas's regional GM (family ``shap``, one per model) and the held-out test of its top
    regions (``shap_regions``, a set of regions).  Their counterpart in another atlas is the same statement
    made from that atlas's regions, so they are compared by model, not by overlap.

    Parameters
    ----------
    claims : iterable of Claim
        Every atlas's claims; a ``shap`` claim without an atlas is the primary's.
    atlases : sequence of str
        The atlas names, the primary first.

    Returns
    -------
    list of str
        E.g. ``"Atlas check, SHAP surrogate pooled: supported in AAL (CV R^2 0.14) and AAL3 (0.12), not in
        HCPEx (0.06)."``; empty when no atlas supports any.
    """
    atlases = list(atlases)
    if not atlases:
        return []
    by = {}
    for c in claims:
        if c.family not in ("shap", "shap_regions") or c.exploratory:
            continue
        atlas = c.atlas or atlases[0]
        by.setdefault((c.family, c.item if c.family == "shap" else ""), {})[atlas] = c
    out = []
    for (family, item), per_atlas in by.items():
        if not any(c.supported for c in per_atlas.values()):
            continue
        order = [a for a in atlases if a in per_atlas]
        if family == "shap":
            held = [f"{a} (CV R^2 {_number(per_atlas[a].statistic)})" for a in order if per_atlas[a].supported]
            lost = [f"{a} ({_number(per_atlas[a].statistic)})" for a in order if not per_atlas[a].supported]
            what = f"SHAP surrogate {item}"
        else:
            held = [f"{a} ({per_atlas[a].item})" for a in order if per_atlas[a].supported]
            lost = [f"{a} ({per_atlas[a].item})" for a in order if not per_atlas[a].supported]
            what = "top SHAP regions, held out"
        text = f"Atlas check, {what}: supported in {_join(held)}"
        text += f"; not in {_join(lost)}" if lost else ""
        missing = [a for a in atlases if a not in per_atlas]
        text += f"; not made in {_join(missing)}" if missing else ""
        out.append(text + ".")
    return out


def dependence_summary(verdicts: pd.DataFrame, primary: str) -> str | None:
    """One sentence counting the primary atlas's findings by ``depends_on_atlas`` (None without any).

    Parameters
    ----------
    verdicts : DataFrame
        The output of :func:`finding_verdicts`.
    primary : str
        The primary atlas (the one the headline speaks for).

    Returns
    -------
    str or None
        E.g. ``"Atlas check, AAL's 6 regional findings: 4 hold in every other atlas, 1 partly, 1 in AAL only
        (it depends on the atlas)."``
    """
    if verdicts is None or not len(verdicts) or "depends_on_atlas" not in verdicts:
        return None
    mine = verdicts[verdicts["atlas"] == primary]["depends_on_atlas"].value_counts()
    if not mine.sum():
        return None
    words = (("no", "hold in every other atlas"), ("partly", "partly"),
             ("yes", f"in {primary} only (the finding depends on the atlas)"),
             ("not replicated", "not replicated where another atlas has nearly the same region"),
             ("not comparable", "not comparable"))
    parts = [f"{int(mine[key])} {'holds' + text[4:] if key == 'no' and mine[key] == 1 else text}"
             for key, text in words if mine.get(key, 0)]
    n = int(mine.sum())
    return f"Atlas check, {primary}'s {n} regional finding{'s' if n > 1 else ''}: {', '.join(parts)}."
