"""Group report sections that describe: data, training, projections, errors by class, methods."""
from __future__ import annotations

import dataclasses
import html
import math
import re

import pandas as pd

from latentbids.analysis.claims import PC1
from latentbids.analysis.projection_registry import shared_clauses
from latentbids.reports.group.figure_projections import projection_figure
from latentbids.reports.group.figures import _curves_png, error_by_class_figure
from latentbids.reports.group.format import (
    _categories,
    _esc,
    _flatten,
    _img,
    _is_nan,
    _kv_table,
    _label_column,
    _match_participants,
    _natural,
    _nc,
    _role,
    _table,
    projection_columns,
)
from latentbids.reports.group.sections_claims import calibration_table


def _group_rows(p: pd.DataFrame, col: str | None) -> list[dict]:
    groups = _categories(p[col])[0] if col else pd.Series(["all"] * len(p), index=p.index)
    rows = []
    for g in sorted(groups.unique(), key=_natural):
        sub = p[(groups == g).to_numpy()]
        row = {col or "group": g, "n": len(sub)}
        if "age" in p.columns:
            age = pd.to_numeric(sub["age"], errors="coerce").dropna()
            row["age mean"] = float(age.mean()) if len(age) else math.nan
            row["age sd"] = float(age.std()) if len(age) > 1 else math.nan
        if "sex" in p.columns:
            counts = sub["sex"].map(lambda v: "n/a" if _is_nan(v) else str(v)).value_counts()
            row["sex"] = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: _natural(kv[0])))
        rows.append(row)
    return rows


def section_data(report, page) -> str:
    a, p, lat = report.analysis, report.participants, report.latents
    parts = [f"<p>Subjects in the analysis: <b>{a.n_subjects}</b>.</p>"]
    if p is not None and len(p):
        col = _label_column(a.label_column, p)
        if col is None:
            parts.append(f"<p class='warn'>No label column '{_esc(a.label_column)}' in the participants table: "
                         "contrasts and label colourings are not possible.</p>")
        parts.append(f"<p>Participants table: {len(p)} rows.</p>" + _table(pd.DataFrame(_group_rows(p, col)),
                                                                             what="groups"))
    if lat is not None and len(lat):
        zcols = [c for c in lat.columns if re.fullmatch(r"z\d+", str(c))]
        bits = [f"{len(lat)} encoded maps", f"K = {len(zcols)} latent units"]
        if "fold" in lat.columns:
            bits.append(f"{lat['fold'].nunique()} fold(s)")
        role = _role(lat)
        if role is not None:
            bits += [f"{n} {r}" for r, n in role.value_counts().items()]
        parts.append("<p>Latent table: " + _esc(", ".join(bits)) + ".</p>")
        if role is not None and (role == "in training").any():
            parts.append("<p class='warn'>Some latent codes come from a model that saw these subjects in training: "
                         "statistics on them are in-sample.</p>")
    return "\n".join(parts)


def section_training(report, page) -> str:
    b64, why = _curves_png(report.curves_png or None)
    if b64 is None:
        return _nc("Training curves", why)
    return "<p>Training and validation loss per epoch for each model (fold).</p>" + _img(b64, "training curves")


def section_projections(report, page) -> str:
    res = report.analysis.projections
    if res is None:
        return _nc("Projections", report.analysis.failures.get("projections") or "no projection table")
    proj = _match_participants(res.table, report.participants)
    how = html.escape("; ".join(shared_clauses("meaning")), quote=False)
    parts = ["<p>Latent codes of the reference model projected to 2-D; colours: label, age and sex where known. "
             f"{how}.</p>",
             page.figure(projection_figure, proj, report.analysis.label_column, res.meta.get(
                 report.analysis.reference_fold, {}), alt="latent projections",
                 missing="no projection coordinates to draw")]
    meta = res.meta.get(report.analysis.reference_fold, {})
    for key, name, cols in projection_columns():
        if cols[0] not in proj.columns or pd.to_numeric(proj[cols[0]], errors="coerce").isna().all():
            m = meta.get(key) or {}
            parts.append(_nc(name, str(m.get("skipped") or f"no {name} coordinates")))
    parts.append("<h3>PC1 against global measures (one row per subject)</h3>")
    if res.pc1 is None:
        parts.append(_nc("PC1 correlations", "no PC1 scores"))
    else:
        claims = {c.item: c for c in report.analysis.claims.select(PC1)}
        table = res.pc1.drop(columns=["supported"]).assign(
            claim=[("supported" if claims[c].supported else "not supported") if c in claims else "n/a"
                   for c in res.pc1["covariate"]])
        parts.append(_table(table))
    return "\n".join(parts)


def section_errors(report, page) -> str:
    lat = report.latents
    if lat is None or "error" not in lat.columns:
        return _nc("Reconstruction error by class", "no reconstruction errors")
    coh = _match_participants(lat, report.participants)
    col = _label_column(report.analysis.label_column, coh)
    labels = coh[col] if col else pd.Series(["all"] * len(coh))
    df = pd.DataFrame({"label": labels.to_numpy(), "error": pd.to_numeric(coh["error"], errors="coerce")})
    parts = [page.figure(error_by_class_figure, df, "label", alt="reconstruction error by class")]
    stats = df.groupby(_categories(df["label"])[0].to_numpy())["error"].agg(["count", "mean", "median", "std"])
    stats = stats.reset_index().rename(columns={"index": "class", "count": "n", "std": "sd"})
    parts.append(_table(stats, what="classes") + "<p class='note'>Description only: no test is made on these "
                 "numbers (SHAP and SAR test what explains the error).</p>")
    return "\n".join(parts)


def section_methods(report, page) -> str:
    a = report.analysis
    pairs = [("model", a.model_name), ("mode", a.mode), ("label column", a.label_column),
             ("subjects", a.n_subjects), ("version", report.version), ("run id", report.run_id),
             ("folds", ", ".join(a.folds)), ("confounds", ", ".join(a.confounds) or "none")]
    parts = ["<h3>Run</h3>" + _kv_table(pairs),
             "<h3>Calibration: measured false-positive rates</h3>" + calibration_table(report),
             "<h3>Analysis parameters</h3>" + _kv_table(_flatten(dataclasses.asdict(a.settings)))]
    if a.projections is not None:
        parts.append("<h3>Projection parameters and seeds (reference fold)</h3>"
                     + _kv_table(_flatten(a.projections.meta.get(a.reference_fold, {}))))
    caveats = [
        *shared_clauses("caveat"),  # the projection methods' (t-SNE and UMAP; PLS)
        "In k-fold mode each fold is its own network: latent units are not aligned across folds; the unit family "
        "spans every unit of every fold, and only region rankings are pooled across folds.",
        "An explanation (SHAP) of a surrogate that does not fit the reconstruction error is not an explanation.",
        "Columns ending in _uncorrected (METHOD.md's first per-item rule) are never used in a verdict.",
    ]
    if a.mode == "fit_all":
        caveats.insert(0, "fit_all mode: every cohort subject was seen in training, so latent statistics are "
                          "in-sample.")
    parts.append("<h3>Caveats</h3><ul>" + "".join(f"<li>{_esc(c)}</li>" for c in caveats) + "</ul>")
    return "\n".join(parts)
