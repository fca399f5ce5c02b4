"""Group report sections that state results: summary, LRCP, SHAP and the agnostic tests.

Every verdict shown here is read from the claims list (``report.analysis.claims``) or from the verdict
sentences generated from it; the tables beside them are descriptions.  Nothing here compares a number
with a threshold.
"""
from __future__ import annotations

import math

import pandas as pd

from latentbids.analysis.claims import (
    CLAIM_FAMILIES,
    LATENT_VECTOR,
    LRCP,
    PC1,
    REGION,
    RUB,
    SAM,
    SAR,
    SHAP,
    SHAP_REGIONS,
    UNIT,
    VECTOR_BOUND,
)
from latentbids.analysis.power import detectable_loss
from latentbids.analysis.verdicts import contrast_verdicts
from latentbids.reports.group.figure_atlases import atlas_agreement_figure
from latentbids.reports.group.figure_lrcp import lrcp_bar_figure, lrcp_heatmap_figure
from latentbids.reports.group.figures import shap_beeswarm_figure
from latentbids.reports.group.format import _esc, _fmt, _kv_table, _nc, _table

#: columns of a claims table in the report
CLAIM_COLUMNS = ["family", "contrast", "fold", "item", "statistic_name", "statistic", "p", "bound", "correction"]
#: the families whose claims the sections render by hand (tables, figures); any other registered family is
#: shown in the section it declares by :func:`family_claims`
RENDERED_BY_HAND = frozenset({UNIT, REGION, LRCP, SAM, LATENT_VECTOR, VECTOR_BOUND, RUB, SAR, SHAP, SHAP_REGIONS,
                              PC1})


def _ul(items, cls: str = "verdicts") -> str:
    return f"<ul class='{cls}'>" + "".join(f"<li>{_esc(i)}</li>" for i in items) + "</ul>"


def _claims_table(claims, what: str = "claims") -> str:
    frame = pd.DataFrame([c.__dict__ for c in claims])
    if frame.empty:
        return "<p class='nc'>(none)</p>"
    frame = frame[[c for c in CLAIM_COLUMNS if c in frame.columns]]
    return _table(frame.loc[:, frame.astype(str).ne("").any()], max_rows=40, what=what)


def _verdict_mark(supported: bool) -> str:
    return "supported" if supported else "not supported"


def family_claims(report, sid: str) -> str:
    """The claims of every registered family that declares section ``sid`` and is not rendered by hand: what a
    supported claim says, the family's rule and its claims table ("" when there is none)."""
    parts = []
    for family in CLAIM_FAMILIES.values():
        claims = report.analysis.claims.select(family.name)
        if family.section != sid or family.name in RENDERED_BY_HAND or not claims:
            continue
        parts.append(f"<h3>{_esc(family.meaning)} (<code>{_esc(family.name)}</code>)</h3><p class='note'>Rule: "
                     f"{_esc(family.rule)}.</p>" + _claims_table(claims, f"{family.name} claims"))
    return "\n".join(parts)


def section_summary(report, page) -> str:
    a = report.analysis
    facts = (f"model: <b>{_esc(a.model_name)}</b>; mode: <b>{_esc(a.mode)}</b>; subjects: <b>{a.n_subjects}</b>; "
             f"label column: <b>{_esc(a.label_column)}</b>; family-wise eta = <b>{report.eta:g}</b>")
    parts = [f"<p>{facts}</p>", f"<p class='headline'><b>{_esc(a.headline)}</b></p>"]
    supported = a.claims.select(supported=True)
    if supported:
        parts.append("<h3>Supported claims</h3>" + _claims_table(supported, "supported claims"))
    parts.append("<h3>Statistical verdicts</h3>" + (_ul(a.verdicts) if a.verdicts else
                                                    "<p class='nc'>No test could be run (see below).</p>"))
    parts.append("<p class='note'>Every statement of significance in this report is one entry of the claims list "
                 "(analysis.json, Claims; and the claims TSV), with its test and its correction; rankings marked "
                 "exploratory are not findings.</p>")
    for title, items, cls in (("Not computed in this run", [f"{k}: {v}" for k, v in a.skipped.items()], "warn"),
                              ("Failed in this run", [f"{k}: {v}" for k, v in a.failures.items()], "fail"),
                              ("Notes", list(a.notes), ""),
                              ("Problems while building this report", page.problems, "fail")):
        if items:
            parts.append(f"<h3 class='{cls}'>{_esc(title)}</h3>" + _ul(items, cls or "verdicts"))
    return "\n".join(parts)


def section_lrcp(report, page) -> str:
    a = report.analysis
    if not a.contrasts:
        return _nc("LRCP", a.skipped.get("lrcp") or "no contrast could be formed")
    parts = []
    for c in a.contrasts:
        parts.append(f"<h3>{_esc(c.name)}</h3>")
        parts.append(_ul(contrast_verdicts(a.claims, c.name, c.n, c.n_per_class, report.eta)))
        ref_units = a.claims.select(UNIT, c.name)
        relevant = {u.item for u in ref_units if u.supported and u.fold == c.reference_fold}
        positive = set(a.claims.supported_items(LRCP, c.name))
        exploratory = any(x.exploratory for x in a.claims.select(LRCP, c.name))
        assoc = c.lrcp.association_
        assoc = assoc[assoc["fold"].astype(str) == c.reference_fold]
        parts.append(page.figure(lrcp_heatmap_figure, assoc, c.lrcp.consensus_, relevant, title=c.name,
                                 alt=f"LRCP heat map {c.name}"))
        parts.append("<p class='note'>Heat map of the reference fold's units (* = clinically relevant in that "
                     "fold): in k-fold mode units are not aligned across folds, so only the region ranking is "
                     "pooled.</p>")
        parts.append(page.figure(lrcp_bar_figure, c.lrcp.consensus_, positive, exploratory, title=c.name,
                                 alt=f"LRCP top regions {c.name}"))
        table = c.lrcp.consensus_[["region", "mean_score", "n_folds_positive", "statistic", "p_fwer", "auc",
                                   "cohens_d"]].copy()
        table.insert(1, "LRCP claim", ["exploratory" if exploratory else _verdict_mark(r in positive)
                                       for r in table["region"]])
        parts.append("<h4>Region ranking" + (" (exploratory: no relevant unit)" if exploratory else "")
                     + "</h4>" + _table(table, what="regions"))
        stab = c.lrcp.stability_
        if stab and stab.get("reason") is None:
            parts.append(f"<p>Ranking stability across folds: Kendall tau {_fmt(stab['kendall_tau'])}, top-"
                         f"{stab['top_k']} overlap {_fmt(stab['top_k_overlap'])} (over regions scoring above 0)."
                         "</p>")
    parts.append(_across_atlases(a, page))
    return "\n".join(parts)


def _across_atlases(a, page) -> str:
    """With several atlases: what each finding becomes in the other parcellations (sentences, figure, table)."""
    table = a.atlas_agreement
    if table is None:
        return ""
    head = ("<h3>Across atlases</h3><p class='note'>The first atlas carries the headline; the others read the same "
            "latent space as a sensitivity analysis (each at eta / their number). A finding that holds in one atlas "
            "only is a statement about where that atlas drew its lines until shown otherwise.</p>")
    sentences = _ul(a.atlas_verdicts) if a.atlas_verdicts else ""
    if not len(table):
        return head + sentences + "<p>No atlas supports a regional claim: no region to compare.</p>"
    cols = [c for c in ("atlas", "contrast", "family", "region", "other_atlas", "overlaps", "holds", "verdict")
            if c in table]
    figure = page.figure(atlas_agreement_figure, table, alt="Atlas agreement: where each regional finding holds")
    return head + sentences + figure + _table(table[cols], what="rows")


def section_shap(report, page) -> str:
    s = report.analysis.shap
    if s is None:
        return _nc("SHAP", report.analysis.skipped.get("shap") or report.analysis.failures.get("shap")
                   or "no SHAP results")
    res = s.result
    claims = report.analysis.claims
    shap_claims = {c.item: c for c in claims.select(SHAP)}
    items = [f"{m}: {_verdict_mark(c.supported)} (CV R^2 = {_fmt(c.statistic)}, Holm-adjusted p = {_fmt(c.p, 'p')})"
             + (f"; {c.note}" if c.note else "") for m, c in shap_claims.items()]
    parts = [_ul(items), f"<p class='note'>{_esc(next(iter(shap_claims.values())).correction)}. A supported "
             "surrogate supports 'the error is predictable from regional GM' (model level), not any one region."
             "</p>" if shap_claims else ""]
    parts.append("<h3>Surrogate fit</h3>" + _table(res.fits, what="models"))
    imp = res.importance
    if len(imp):
        wide = imp.pivot_table(index=["region_index", "region"], columns="model", values="importance")
        first = "pooled" if "pooled" in wide.columns else wide.columns[0]
        wide = wide.sort_values(first, ascending=False)
        wide.columns = [f"{m} importance ({_verdict_mark(shap_claims[m].supported) if m in shap_claims else 'n/a'})"
                        for m in wide.columns]
        parts.append(f"<h3>Global importance (mean |SHAP|, model-level: no region is tested on its own), sorted by "
                     f"the {_esc(first)} model</h3>" + _table(wide.reset_index(), what="regions"))
    if res.comparison is not None and len(res.comparison):
        comp = res.comparison.drop(columns=["exploratory"], errors="ignore")
        parts.append("<h3>Class comparison (exploratory: no test compares the classes' importances; not a "
                     "finding)</h3>" + _table(comp, what="class pairs"))
    parts.append(_section_shap_regions(claims, res))
    names = dict(zip(s.regions["index"], s.regions["name"]))
    for m, values in list((res.values or {}).items())[:4]:
        ok = m in shap_claims and shap_claims[m].supported
        parts.append(f"<p class='{'note' if ok else 'fail'}'>{_esc(m)}: " + (
            "the surrogate is supported; the figure is model-level (no region is a finding on its own).</p>" if ok
            else "the surrogate is not supported; this figure is shown for transparency and is not a finding.</p>"))
        parts.append(page.figure(shap_beeswarm_figure, values, s.features, names,
                                 title=f"{m} ({_verdict_mark(ok)}, model-level)", alt=f"SHAP beeswarm {m}"))
    return "\n".join(p for p in parts if p)


def _section_shap_regions(claims, res) -> str:
    """The held-out test of the top regions (the verdict) and SAR beside it (the paper's check)."""
    held, sar = claims.select(SHAP_REGIONS), claims.select(SAR)
    parts = ["<h3>Top SHAP regions on held-out subjects (chosen on one half, tested on the other)</h3>"]
    if held:
        parts.append(_claims_table(held, "tests") + f"<p>{_esc(_verdict_mark(held[0].supported))}: "
                     f"{_esc(held[0].note)}.</p>")
    else:
        parts.append(_nc("Held-out test of the top regions", getattr(res, "regions_reason", "") or "no result"))
    parts.append("<h4>SAR of the same regions (the paper's check, not the verdict)</h4>")
    if sar:
        word = "rejects" if sar[0].supported else "does not reject (low power: not evidence of absence)"
        parts.append(_claims_table(sar, "tests") + f"<p>SAR {_esc(word)}; {_esc(sar[0].note)}.</p>")
    else:
        parts.append(_nc("SAR", res.sar_reason or "no SAR result"))
    return "\n".join(parts)


def section_agnostic(report, page) -> str:
    a = report.analysis
    if not a.contrasts:
        return _nc("Statistical agnostic tests", a.skipped.get("lrcp") or "no contrast could be formed")
    parts = ["<p>Each verdict below is a claim of the claims list. The confirmatory test of the whole latent "
             "vector (<code>latent_vector</code>) is out of sample: each fold's classifier predicts the subjects the "
             "fold held out, and the held-out balanced accuracy is judged against a label permutation of the whole "
             "cross-validation (its bound column: the exact lower confidence bound of the held-out accuracy). The "
             "paper's checks follow: worst-case accuracy acc* = accuracy - Delta with d = K (bound "
             f"{_esc(a.settings.bound)}, at eta / n_folds; <code>vector_bound</code>) and RUB (its PAC-Bayes bound on "
             "the dropout classifier and its permutation p must agree); with the full latent vector they need large "
             "samples or large effects (their measured power is in each verdict: RUB's Gibbs classifier almost never "
             "passes), so their silence is no evidence about the latent space. A SAM region needs its bound "
             "and the family-wise permutation p of the whole voxel-selection pipeline to agree.</p>"]
    for c in a.contrasts:
        parts.append(f"<h3>{_esc(c.name)}</h3>")
        tests = [t for f in (LATENT_VECTOR, VECTOR_BOUND, RUB) for t in a.claims.select(f, c.name)]
        rows = [{"family": t.family, "fold": t.fold, "test": t.item, "statistic": t.statistic_name,
                 "value": t.statistic, "bound": t.bound, "p": t.p, "verdict": _verdict_mark(t.supported),
                 "why": t.note or t.correction} for t in tests]
        parts.append(_table(pd.DataFrame(rows), max_rows=40, what="tests"))
        sam = a.claims.select(SAM, c.name)
        frame = c.sam[["region", "n_selected", "accuracy", "acc_star", "chance", "passes_bound", "p_fwer"]].copy()
        frame["claim"] = [_verdict_mark(x.supported) for x in sam] if len(sam) == len(frame) else "n/a"
        frame = frame.sort_values("accuracy", ascending=False, kind="mergesort")
        n_ok = sum(x.supported for x in sam)
        parts.append(f"<h4>SAM per region ({n_ok} supported; sorted by accuracy)</h4>"
                     + _table(frame, what="regions"))
        units = [u for u in a.claims.select(UNIT, c.name)]
        best = max(units, key=lambda u: u.statistic if math.isfinite(u.statistic) else -1, default=None)
        if best is not None:
            parts.append("<p>Best latent unit: " + _esc(f"fold {best.fold} {best.item}, {best.statistic_name} "
                                                          f"{_fmt(best.statistic)}, family-wise p {_fmt(best.p, 'p')}: "
                                                          f"{_verdict_mark(best.supported)}") + ".</p>")
    return "\n".join(parts)


def calibration_table(report) -> str:
    """The false-positive rates measured by ``benchmarks/calibration.py``, per claim family."""
    cal = report.calibration
    if not cal or not cal.get("families"):
        return _nc("Calibration table", "no calibration results are shipped with this version")
    rows = []
    for family, r in cal["families"].items():
        pooled = r.get("pooled_fpr")
        rows.append({"family": family, "default rule": r.get("rule", ""),
                     "false positives / null replications": f"{r.get('false_positives', '?')} / "
                                                            f"{r.get('replications')}",
                     "pooled rate (95% interval)": "" if pooled is None else
                     f"{_fmt(pooled)} ({_fmt(r.get('pooled_lo'))}-{_fmt(r.get('pooled_hi'))})",
                     "worst cell (95% interval)": f"{_fmt(r.get('fpr'))} ({_fmt(r.get('lo'))}-{_fmt(r.get('hi'))})",
                     "worst cell at": r.get("condition", ""),
                     "measured at n": ", ".join(str(n) for n in r.get("sizes", [])) or "?"})
    head = (f"<p>False-positive rates of each family's default rule, measured on null cohorts and label "
            f"permutations; a rule holds its level when the pooled rate's interval covers eta or lies below "
            "it (a cell of few replications can show a high rate by chance: see its interval) "
            f"({_esc(cal.get('description', ''))}; eta = {cal.get('eta')}; "
            f"{_esc(cal.get('machine', ''))}, {_esc(cal.get('date', ''))}).</p>")
    return (head + _table(pd.DataFrame(rows), max_rows=20, what="families")
            + _kv_table([("command", cal.get("command", ""))]) + _end_to_end_table(cal) + _power_table(cal))


def _end_to_end_table(cal: dict) -> str:
    """The same families measured through ``latentbids group`` (benchmarks/calibration_e2e.py), and the headline."""
    e2e = cal.get("end_to_end")
    if not e2e:
        return _nc("End-to-end calibration", "not shipped with this version")
    rows = [{"family": f, "false positives / null runs": f"{r['false_positives']} / {r['replications']}",
             "rate (95% interval)": f"{_fmt(r['rate'])} ({_fmt(r['lo'])}-{_fmt(r['hi'])})"}
            for f, r in e2e["families"].items()]
    return ("<h4>Through the real group level</h4><p>Every row counts null runs of <code>latentbids group</code> "
            f"({_esc(e2e.get('network', ''))}; designs: {_esc('; '.join(e2e.get('designs', [])))}) in which the "
            "family supported a claim about a contrast: for a family, the runs with two labels (one contrast, the "
            "rate each family promises); <code>headline</code> counts every run whose headline named a claim (the "
            "report-wide rate, 3-label runs included).</p>" + _table(pd.DataFrame(rows), max_rows=20,
                                                                    what="families"))


def _power_table(cal: dict) -> str:
    """What each family finds: the smallest planted loss found with 80 % power, per group size."""
    power = cal.get("power")
    if not power:
        return _nc("Power table", "not shipped with this version: a silent test's power is not stated")
    rows = []
    for family in power["families"]:
        row = {"family": family}
        for n in power["n_per_group"]:
            loss, _ = detectable_loss(family, n, power)
            row[f"{n} per group"] = ("n/a" if loss is None else f"> {max(power['losses'])} %" if math.isinf(loss)
                                     else f"{loss:.0f} %")
        rows.append(row)
    return ("<h4>Power: the smallest GM loss (in {} regions) each family finds with 80 % power</h4><p>{}</p>"
            .format(power.get("regions", 4), _esc(power.get("source", "")))
            + _table(pd.DataFrame(rows), max_rows=20, what="families"))
