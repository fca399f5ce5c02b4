"""Group report, the page: sections in order, verdicts first (see :func:`build_group_report`)."""
from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

from latentbids.reports.group.figures import (
    _curves_png,
    error_by_class_figure,
    lrcp_bar_figure,
    lrcp_heatmap_figure,
    projection_figure,
    _relevant_units,
    shap_beeswarm_figure,
)
from latentbids.reports.group.format import (
    _categories,
    CSS,
    _esc,
    _flatten,
    _float,
    _fmt,
    _frame,
    _img,
    _is_nan,
    _key,
    _kv_table,
    _label_column,
    LOGGER,
    _mapping,
    _match_participants,
    _natural,
    _nc,
    PROJECTION_METHODS,
    _role,
    _scalar,
    SECTIONS,
    _sentences,
    _table,
    _truthy,
)


# --------------------------------------------------------------------------------------------------
# the page
# --------------------------------------------------------------------------------------------------
class _Report:
    def __init__(self, ctx: Mapping):
        self.ctx = ctx
        self.problems: list[str] = []
        self.skipped = _mapping(ctx.get("skipped"))
        self.failures = _mapping(ctx.get("failures"))
        params = _mapping(ctx.get("parameters"))
        self.eta = _float(_scalar(ctx.get("eta", params.get("eta", 0.05))))
        if math.isnan(self.eta):
            self.eta = 0.05
        self.bound = str(_scalar(ctx.get("bound")) or _scalar(params.get("bound")) or "G")
        self.participants = _frame(ctx.get("participants"))
        self.latents = _frame(ctx.get("latents"))
        self.label_column = str(
            _scalar(ctx.get("label_column")) or _scalar(params.get("label_column")) or "group"
        )
        self.contrasts = (
            [c for c in (ctx.get("contrasts") or []) if isinstance(c, Mapping)]
            if isinstance(ctx.get("contrasts"), (list, tuple))
            else []
        )
        self.shap = _mapping(ctx.get("shap"))

    # -- utilities ---------------------------------------------------------------------------------
    def reason(self, *keys, default: str) -> str:
        """The orchestrator's reason for a missing part (``skipped``, else ``failures``)."""
        for k in keys:
            if k in self.skipped and _scalar(self.skipped[k]) is not None:
                return str(self.skipped[k])
        for k in keys:
            if k in self.failures and _scalar(self.failures[k]) is not None:
                return f"the analysis failed ({self.failures[k]})"
        return default

    @staticmethod
    def contrast_name(c: Mapping) -> str:
        return str(_scalar(c.get("name")) or "contrast")

    def figure(
        self, fn, *args, alt: str, missing: str = "not enough data to draw it", **kwargs
    ) -> str:
        try:
            return _img(fn(*args, **kwargs), alt, missing)
        except Exception as exc:  # a figure never kills the page
            LOGGER.warning("group report: figure %r failed", alt, exc_info=True)
            msg = f"Figure '{alt}' failed to render ({type(exc).__name__}: {exc})"
            self.problems.append(msg)
            return f"<p class='fail'>{_esc(msg)}</p>"

    def sig_text(self, value) -> str:
        t = _truthy(value)
        if t is None:
            return "not computed"
        return "significant" if t else f"not significant at eta={self.eta:g}"

    def one_label_reason(self) -> str | None:
        """Why no contrast could be formed, from the labels (when the orchestrator did not say)."""
        if self.participants is None:
            return None
        col = _label_column(self.label_column, self.participants)
        if col is None:
            return f"no label column '{self.label_column}' in the participants table"
        labels = sorted({str(v) for v in self.participants[col].dropna()}, key=_natural)
        if len(labels) < 2:
            return (
                f"only one label ({', '.join(labels) or 'none'}) in column '{col}': "
                "a contrast needs two labels"
            )
        return None

    def no_contrast_reason(self) -> str:
        default = self.one_label_reason() or "no contrast results were passed to the report"
        return self.reason("lrcp", "contrasts", default=default)

    def cohort(self) -> pd.DataFrame | None:
        """The latent table annotated with the participants' label/age/sex."""
        if self.latents is None:
            return None
        return _match_participants(self.latents, self.participants)

    # -- sections ----------------------------------------------------------------------------------
    def section_summary(self) -> str:
        ctx = self.ctx
        parts = []
        facts = []
        for key, name in (
            ("model_name", "model"),
            ("mode", "mode"),
            ("n_subjects", "subjects"),
            ("label_column", "label column"),
        ):
            value = _scalar(ctx.get(key))
            if value is not None and value != "":
                facts.append(f"{name}: <b>{_esc(value)}</b>")
        if facts:
            parts.append("<p>" + "; ".join(facts) + "</p>")
        verdicts = _sentences(ctx.get("verdicts"))
        if not verdicts:  # gather what the sections say
            verdicts = []
            for c in self.contrasts:
                verdicts += [f"{self.contrast_name(c)}: {v}" for v in _sentences(c.get("verdicts"))]
            st = self.shap.get("statements", self.shap.get("statement"))
            if isinstance(st, Mapping):
                verdicts += [f"SHAP ({k}): {v}" for k, v in st.items() if _scalar(v) is not None]
            elif isinstance(st, str):
                verdicts.append(st)
        if verdicts:
            parts.append(
                "<h3>Statistical verdicts</h3><ul class='verdicts'>"
                + "".join(f"<li>{_esc(v)}</li>" for v in verdicts)
                + "</ul>"
            )
        else:
            parts.append(
                _nc(
                    "Statistical verdicts",
                    self.reason(
                        "verdicts", default="no statistical verdicts were passed to the report"
                    ),
                )
            )
        items = [f"{k}: {v}" for k, v in self.skipped.items()] if self.skipped else []
        if isinstance(ctx.get("skipped"), (list, tuple)):
            items += [str(v) for v in ctx["skipped"]]
        if items:
            parts.append(
                "<h3 class='warn'>Not computed in this run</h3><ul>"
                + "".join(f"<li class='warn'>{_esc(i)}</li>" for i in items)
                + "</ul>"
            )
        failed = [f"{k}: {v}" for k, v in self.failures.items()]
        failed += _sentences(ctx.get("failures"))
        if failed:
            parts.append(
                "<h3 class='fail'>Failed in this run</h3><ul>"
                + "".join(f"<li class='fail'>{_esc(i)}</li>" for i in failed)
                + "</ul>"
            )
        notes = _sentences(ctx.get("notes"))
        if notes:
            parts.append(
                "<h3>Notes</h3><ul>" + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul>"
            )
        if self.problems:
            parts.append(
                "<h3 class='fail'>Problems while building this report</h3><ul>"
                + "".join(f"<li class='fail'>{_esc(p)}</li>" for p in self.problems)
                + "</ul>"
            )
        return "\n".join(parts)

    def section_data(self) -> str:
        ctx = self.ctx
        parts = []
        if _scalar(ctx.get("n_subjects")) is not None:
            parts.append(f"<p>Subjects in the analysis: <b>{_esc(ctx['n_subjects'])}</b>.</p>")
        p = self.participants
        if p is None:
            parts.append(
                _nc(
                    "Participants summary",
                    self.reason("participants", "data", default="no participants table"),
                )
            )
        else:
            col = _label_column(self.label_column, p)
            if col is None:
                parts.append(
                    f"<p class='warn'>No label column '{_esc(self.label_column)}' in the "
                    "participants table: contrasts and label colourings are not possible.</p>"
                )
                groups = pd.Series(["all"] * len(p), index=p.index)
            else:
                groups, _ = _categories(p[col])
            rows = []
            for g in sorted(groups.unique(), key=_natural):
                sub = p[(groups == g).to_numpy()]
                row = {col or "group": g, "n": len(sub)}
                if "age" in p.columns:
                    age = pd.to_numeric(sub["age"], errors="coerce").dropna()
                    row["age mean"] = float(age.mean()) if len(age) else math.nan
                    row["age sd"] = float(age.std()) if len(age) > 1 else math.nan
                    row["age range"] = f"{age.min():.0f}-{age.max():.0f}" if len(age) else "n/a"
                if "sex" in p.columns:
                    counts = (
                        sub["sex"].map(lambda v: "n/a" if _is_nan(v) else str(v)).value_counts()
                    )
                    row["sex"] = ", ".join(
                        f"{k} {v}"
                        for k, v in sorted(counts.items(), key=lambda kv: _natural(kv[0]))
                    )
                rows.append(row)
            parts.append(
                f"<p>Participants table: {len(p)} rows.</p>"
                + _table(pd.DataFrame(rows), what="groups")
            )
        lat = self.latents
        if lat is None:
            parts.append(
                _nc("Latent table summary", self.reason("latents", default="no latent table"))
            )
        else:
            zcols = [c for c in lat.columns if re.fullmatch(r"z\d+", str(c))]
            bits = [f"{len(lat)} encoded maps", f"K = {len(zcols)} latent units"]
            if "fold" in lat.columns:
                bits.append(f"{lat['fold'].nunique()} fold(s)")
            role = _role(lat)
            if role is not None:
                bits += [f"{n} {r}" for r, n in role.value_counts().items()]
            parts.append("<p>Latent table: " + _esc(", ".join(bits)) + ".</p>")
            if role is not None and (role == "in training").any():
                parts.append(
                    "<p class='warn'>Some latent codes come from a model that saw these subjects "
                    "in training: statistics on them are in-sample.</p>"
                )
        return "\n".join(parts)

    def section_training(self) -> str:
        b64, why = _curves_png(_scalar(self.ctx.get("curves_png")))
        if b64 is None:
            why = self.reason("training", "curves", "curves_png", default=why)
            if _scalar(self.ctx.get("curves_png")):
                self.problems.append(f"training curves: {why}")
            return _nc("Training curves", why)
        return "<p>Training and validation loss per epoch for each model (fold).</p>" + _img(
            b64, "training curves"
        )

    def section_projections(self) -> str:
        ctx = self.ctx
        proj = _frame(ctx.get("projections"))
        meta = _mapping(ctx.get("projections_meta"))
        parts = []
        if proj is None:
            parts.append(
                _nc("Projections", self.reason("projections", default="no projection table"))
            )
        else:
            lat = self.latents
            if lat is not None:
                keep = [
                    c
                    for c in ("participant_id", "session_id", "in_training", "role")
                    if c in lat.columns
                ]
                proj = _match_participants(proj, lat[keep])
            proj = _match_participants(proj, self.participants)
            parts.append(
                "<p>Latent codes of the reference model projected to 2-D; colours: label, age and "
                "sex where known. PCA and PLS are fitted on the model's training subjects and the "
                "others are projected; t-SNE and UMAP are fitted on all subjects and their "
                "distances are not evidence (no statistics are computed on them).</p>"
            )
            parts.append(
                self.figure(
                    projection_figure,
                    proj,
                    self.label_column,
                    meta,
                    alt="latent projections",
                    missing="no projection coordinates to draw",
                )
            )
            for key, name, cols in PROJECTION_METHODS:
                if (
                    cols[0] in proj.columns
                    and pd.to_numeric(proj[cols[0]], errors="coerce").notna().any()
                ):
                    continue
                m = _mapping(meta.get(key))
                why = (
                    m.get("skipped")
                    or m.get("reason")
                    or _mapping(meta.get("skipped")).get(key)
                    or self.reason(key, default="")
                )
                if not why:
                    why = (
                        (self.one_label_reason() or "no PLS columns in the projection table")
                        if key == "pls"
                        else f"no {name} columns in the projection table"
                    )
                parts.append(_nc(name, str(why)))
        pc1 = _frame(ctx.get("pc1_correlations"))
        parts.append("<h3>PC1 against global measures</h3>")
        if pc1 is None:
            parts.append(
                _nc(
                    "PC1 correlations",
                    self.reason("pc1_correlations", "pc1", default="no PC1 table"),
                )
            )
        else:
            parts.append(_table(pc1))
            if {"covariate", "r", "p"} <= set(pc1.columns):
                for _, row in pc1.iterrows():
                    r, pv = _float(row["r"]), _float(row["p"])
                    if abs(r) >= 0.5 and pv < 0.05:
                        parts.append(
                            f"<p class='warn'>PC1 tracks {_esc(row['covariate'])} (r = {r:.2f}, "
                            f"p = {pv:.3g}): a latent axis that is only this measure is a finding, "
                            "not a biomarker.</p>"
                        )
        return "\n".join(parts)

    def section_lrcp(self) -> str:
        if not self.contrasts:
            return _nc("LRCP", self.no_contrast_reason())
        parts = []
        for c in self.contrasts:
            name = self.contrast_name(c)
            parts.append(f"<h3>{_esc(name)}</h3>")
            skipped = c.get("skipped")
            why = _scalar(c.get("reason")) or (
                _fmt(skipped) if isinstance(skipped, Mapping) and skipped else _scalar(skipped)
            )
            if why:
                parts.append(f"<p class='warn'>Not computed for this contrast: {_esc(why)}</p>")
            summary = _mapping(c.get("summary"))
            for sentence in _sentences(summary.get("statement")):
                parts.append(f"<p><b>{_esc(sentence)}</b></p>")
            if summary.get("weights_rule") == "auc_fallback":
                parts.append(
                    "<p class='warn'>No latent unit passed the bound: the unit weights fell back "
                    "to |AUC - 0.5|.</p>"
                )
            verdicts = _sentences(c.get("verdicts"))
            if verdicts:
                parts.append(
                    "<ul class='verdicts'>"
                    + "".join(f"<li>{_esc(v)}</li>" for v in verdicts)
                    + "</ul>"
                )
            regions, assoc, units = (
                _frame(c.get("lrcp_regions")),
                _frame(c.get("lrcp_association")),
                _frame(c.get("units")),
            )
            if assoc is None:
                parts.append(
                    _nc(
                        "LRCP heat map",
                        self.reason("lrcp_association", default="no association table"),
                    )
                )
            else:
                parts.append(
                    self.figure(
                        lrcp_heatmap_figure,
                        assoc,
                        regions,
                        units,
                        title=name,
                        alt=f"LRCP heat map {name}",
                    )
                )
                parts.append(
                    "<p class='note'>Heat map of the reference fold's units: in k-fold mode units "
                    "are not aligned across folds, so only the region ranking is pooled.</p>"
                )
            if regions is None:
                parts.append(
                    _nc("LRCP ranking", self.reason("lrcp_regions", default="no region ranking"))
                )
            else:
                parts.append(
                    self.figure(
                        lrcp_bar_figure, regions, title=name, alt=f"LRCP top regions {name}"
                    )
                )
                sort = regions
                if "rank" in regions.columns:
                    sort = (
                        regions.assign(_o=pd.to_numeric(regions["rank"], errors="coerce"))
                        .sort_values("_o", na_position="last")
                        .drop(columns="_o")
                    )
                parts.append("<h4>Region ranking</h4>" + _table(sort, what="regions"))
            if units is not None:
                parts.append("<h4>Latent units</h4>" + _table(units, what="units"))
            stab = _mapping(c.get("stability"))
            if stab:
                parts.append(
                    "<p>Ranking stability across folds: "
                    + _esc("; ".join(f"{k} = {_fmt(v, k)}" for k, v in stab.items()))
                    + ".</p>"
                )
            else:
                parts.append(
                    _nc("Ranking stability", "no stability summary (needs two or more folds)")
                )
        return "\n".join(parts)

    def section_errors(self) -> str:
        df = _frame(self.ctx.get("errors_by_class"))
        label = "label"
        note = ""
        if df is None:
            coh = self.cohort()
            col = _label_column(self.label_column, coh)
            if coh is not None and "error" in coh.columns and col is not None:
                df, label = coh[[col, "error"]], col
                note = (
                    "<p class='note'>Derived from the latent table's error column and the "
                    "participants' labels.</p>"
                )
        if df is None or "error" not in df.columns:
            return _nc(
                "Reconstruction error by class",
                self.reason("errors_by_class", "errors", default="no reconstruction errors"),
            )
        if label not in df.columns:
            label = _label_column(self.label_column, df) or label
        parts = [
            self.figure(error_by_class_figure, df, label, alt="reconstruction error by class"),
            note,
        ]
        err = pd.to_numeric(df["error"], errors="coerce")
        groups = (
            _categories(df[label])[0]
            if label in df.columns
            else pd.Series(["all"] * len(df), index=df.index)
        )
        stats = (
            pd.DataFrame({"class": groups.to_numpy(), "error": err.to_numpy()})
            .groupby("class")["error"]
            .agg(["count", "mean", "median", "std"])
            .reset_index()
        )
        stats = stats.iloc[
            sorted(range(len(stats)), key=lambda i: _natural(stats["class"].iloc[i]))
        ]
        parts.append(_table(stats.rename(columns={"count": "n", "std": "sd"}), what="classes"))
        return "\n".join(parts)

    def section_shap(self) -> str:
        s = self.shap
        if not s:
            return _nc("SHAP", self.reason("shap", default="no SHAP results"))
        parts = []
        fits = _frame(s.get("fits"))
        supported = {}
        if fits is not None and "model" in fits.columns and "supported" in fits.columns:
            supported = {str(m): _truthy(v) for m, v in zip(fits["model"], fits["supported"])}
        st = s.get("statements", s.get("statement"))
        if isinstance(st, str):
            st = {"pooled": st}
        if isinstance(st, Mapping) and st:
            items = []
            for m, v in st.items():
                cls = " class='fail'" if supported.get(str(m)) is False else ""
                items.append(f"<li{cls}><b>{_esc(m)}</b>: {_esc(v)}</li>")
            parts.append("<ul class='verdicts'>" + "".join(items) + "</ul>")
        else:
            parts.append(_nc("SHAP statements", "no statements were passed"))
        parts.append("<h3>Surrogate fit</h3>")
        parts.append(
            _table(fits, what="models")
            if fits is not None
            else _nc("Surrogate fit table", "no fit table")
        )
        if supported and not any(supported.values()):
            parts.append(
                "<p class='fail'>No surrogate model fits the reconstruction error: no SHAP claim "
                "is supported and the figures below are not findings.</p>"
            )
        imp = _frame(s.get("importance"))
        names = {}
        if imp is not None and {"region_index", "region"} <= set(imp.columns):
            names = {_key(k): str(v) for k, v in zip(imp["region_index"], imp["region"])}
        names.update({_key(k): str(v) for k, v in _mapping(s.get("region_names")).items()})
        regions = _frame(s.get("regions"))
        if regions is not None:
            kcol = next((c for c in ("region_index", "index") if c in regions.columns), None)
            ncol = next((c for c in ("region", "name") if c in regions.columns), None)
            if kcol and ncol:
                names.update({_key(k): str(v) for k, v in zip(regions[kcol], regions[ncol])})
        if imp is not None and {"model", "importance"} <= set(imp.columns):
            key = "region_index" if "region_index" in imp.columns else "region"
            wide = imp.pivot_table(index=key, columns="model", values="importance", aggfunc="mean")
            first = "pooled" if "pooled" in wide.columns else wide.columns[0]
            wide = wide.sort_values(first, ascending=False)
            wide = wide[[first] + [m for m in wide.columns if m != first]]
            wide.columns = [f"{m} importance" for m in wide.columns]
            wide = wide.reset_index()
            if key == "region_index" and names:
                wide.insert(1, "region", wide["region_index"].map(lambda k: names.get(_key(k), "")))
            parts.append(
                f"<h3>Global importance (mean |SHAP|), sorted by the {_esc(first)} model</h3>"
                + _table(wide, what="regions")
            )
        else:
            parts.append(_nc("SHAP importance table", "no importance table"))
        comp = _frame(s.get("comparison"))
        if comp is not None:
            parts.append("<h3>Class comparison</h3>" + _table(comp, what="class pairs"))
        parts.append("<h3>SAR check of the top regions (pooled model)</h3>")
        sar = s.get("sar")
        if isinstance(sar, Mapping) and sar:
            pairs = [(k, self.sig_text(v) if k == "significant" else v) for k, v in sar.items()]
            parts.append(_kv_table(pairs))
        elif _frame(sar) is not None:
            parts.append(_table(_frame(sar), what="rows"))
        else:
            why = _scalar(s.get("sar_reason")) or self.reason("sar", default="no SAR result")
            parts.append(_nc("SAR check", str(why)))
        values = s.get("values")
        if isinstance(values, pd.DataFrame):
            values = {"pooled": values}
        features = s.get("features")
        if isinstance(features, np.ndarray):
            features = pd.DataFrame(features)
        if isinstance(values, Mapping) and values:
            parts.append("<h3>SHAP values per region (beeswarm)</h3>")
            fit_r2 = {}
            if fits is not None and {"model", "cv_r2"} <= set(fits.columns):
                fit_r2 = {str(m): _float(r) for m, r in zip(fits["model"], fits["cv_r2"])}
            for i, (m, v) in enumerate(values.items()):
                if i >= 4:
                    parts.append(
                        f"<p class='note'>{len(values) - 4} more models' SHAP values are in the "
                        "TSV outputs.</p>"
                    )
                    break
                ok = supported.get(str(m))
                tag = "" if ok is None else ("supported" if ok else "NOT supported: not a finding")
                r2 = fit_r2.get(str(m))
                title = f"{m}" + (
                    f" (CV R^2 = {r2:.2f}; {tag})"
                    if r2 is not None and not math.isnan(r2)
                    else (f" ({tag})" if tag else "")
                )
                if ok is False:
                    parts.append(
                        f"<p class='fail'>{_esc(m)}: the surrogate does not fit the error; this "
                        "figure is shown for transparency and is not a finding.</p>"
                    )
                parts.append(
                    self.figure(
                        shap_beeswarm_figure,
                        v,
                        features if isinstance(features, pd.DataFrame) else None,
                        names,
                        title=title,
                        alt=f"SHAP beeswarm {m}",
                    )
                )
        else:
            parts.append(
                _nc(
                    "SHAP beeswarm",
                    self.reason("shap_values", default="no SHAP values were passed"),
                )
            )
        return "\n".join(parts)

    def agnostic_rows(self, c: Mapping) -> list[dict]:
        rows = []
        summary = _mapping(c.get("summary"))
        n = summary.get("n", math.nan)
        lv = _mapping(c.get("latent_vector"))
        if lv:
            d = lv.get("d", summary.get("K", math.nan))
            rows.append(
                {
                    "test": f"full latent vector, bound {self.bound}",
                    "n": lv.get("n", n),
                    "d": d,
                    "accuracy": lv.get("accuracy"),
                    "Delta": lv.get("delta"),
                    "acc*": lv.get("acc_star"),
                    "p": math.nan,
                    "verdict": self.sig_text(lv.get("significant")),
                }
            )
            rub = _mapping(lv.get("rub"))
            if rub:
                rows.append(
                    {
                        "test": "full latent vector, RUB (PAC-Bayes)",
                        "n": rub.get("n", n),
                        "d": rub.get("d", d),
                        "accuracy": rub.get("accuracy"),
                        "Delta": rub.get("delta"),
                        "acc*": rub.get("acc_star"),
                        "p": rub.get("p_perm", math.nan),
                        "verdict": self.sig_text(rub.get("significant")),
                    }
                )
        units = _frame(c.get("units"))
        if units is not None and "acc_star" in units.columns:
            acc = pd.to_numeric(units["acc_star"], errors="coerce")
            if acc.notna().any():
                best = units.loc[acc.idxmax()]
                n_rel = len(_relevant_units(units))
                sig = best.get("relevant", acc.max() > 0.5)
                rows.append(
                    {
                        "test": f"best latent unit ({_key(best.get('unit'))}; "
                        f"{n_rel} of {len(units)} relevant)",
                        "n": n,
                        "d": 1,
                        "accuracy": best.get("accuracy"),
                        "Delta": best.get("delta"),
                        "acc*": best.get("acc_star"),
                        "p": math.nan,
                        "verdict": self.sig_text(sig),
                    }
                )
        sam = _frame(c.get("sam"))
        if sam is not None and "acc_star" in sam.columns:
            acc = pd.to_numeric(sam["acc_star"], errors="coerce")
            if acc.notna().any():
                best = sam.loc[acc.idxmax()]
                n_sig = (
                    int(sam["significant"].map(lambda v: bool(_truthy(v))).sum())
                    if "significant" in sam
                    else int((acc > 0.5).sum())
                )
                label = (
                    best.get("region")
                    if "region" in sam.columns
                    else f"region {_key(best.get('region_index', '?'))}"
                )
                rows.append(
                    {
                        "test": f"best region, SAM ({label}; {n_sig} of {len(sam)} significant)",
                        "n": n,
                        "d": 1,
                        "accuracy": best.get("accuracy"),
                        "Delta": best.get("delta"),
                        "acc*": best.get("acc_star"),
                        "p": best.get("p_z", math.nan),
                        "verdict": self.sig_text(best.get("significant", acc.max() > 0.5)),
                    }
                )
        return rows

    def section_agnostic(self) -> str:
        if not self.contrasts:
            return _nc(
                "Statistical agnostic tests",
                self.reason("agnostic", default=self.no_contrast_reason()),
            )
        parts = [
            f"<p>Worst-case accuracy acc* = accuracy - Delta (bound {_esc(self.bound)}, eta = "
            f"{self.eta:g}); a test is significant when acc* &gt; 0.5. With the full latent vector "
            "(d = K) the bound is much larger than for one feature, so single units and single "
            "regions can pass where the multivariate classifier cannot; both are reported.</p>"
        ]
        for c in self.contrasts:
            name = self.contrast_name(c)
            parts.append(f"<h3>{_esc(name)}</h3>")
            rows = self.agnostic_rows(c)
            if rows:
                df = pd.DataFrame(rows)
                parts.append(_table(df, what="tests"))
                for r in rows:
                    verdict = r["verdict"]
                    cls = (
                        "pass"
                        if verdict == "significant"
                        else "nc" if verdict == "not computed" else "warn"
                    )
                    parts.append(
                        f"<p class='{cls}'>{_esc(name)}, {_esc(r['test'])}: {_esc(verdict)}"
                        f" (acc* = {_esc(_fmt(_float(r['acc*'])))}).</p>"
                    )
            else:
                parts.append(
                    _nc(
                        "Agnostic tests",
                        self.reason(
                            "agnostic",
                            default="no latent-vector, unit or SAM " "results for this contrast",
                        ),
                    )
                )
            sam = _frame(c.get("sam"))
            if sam is not None:
                if "acc_star" in sam.columns:
                    sam = (
                        sam.assign(_o=pd.to_numeric(sam["acc_star"], errors="coerce"))
                        .sort_values("_o", ascending=False, na_position="last")
                        .drop(columns="_o")
                    )
                if "significant" in sam.columns:
                    sam = sam.assign(significant=sam["significant"].map(self.sig_text))
                parts.append(
                    "<h4>SAM per region (sorted by acc*)</h4>" + _table(sam, what="regions")
                )
                parts.append(
                    "<p class='note'>SAM selects voxels with the labels, which inflates in-sample "
                    "accuracy; its bound is stated for d = 1 after selection, as in the group's "
                    "method.</p>"
                )
        return "\n".join(parts)

    def section_methods(self) -> str:
        ctx = self.ctx
        pairs = [
            (k, _scalar(ctx.get(k)))
            for k in (
                "title",
                "model_name",
                "mode",
                "label_column",
                "n_subjects",
                "version",
                "run_id",
            )
            if _scalar(ctx.get(k)) is not None
        ]
        pairs += [("eta", self.eta), ("bound", self.bound)]
        parts = ["<h3>Run</h3>" + _kv_table(pairs)]
        params = _mapping(ctx.get("parameters"))
        parts.append(
            "<h3>Analysis parameters</h3>"
            + (
                _kv_table(_flatten(params))
                if params
                else _nc("Parameter table", "no parameters were passed")
            )
        )
        meta = _mapping(ctx.get("projections_meta"))
        parts.append(
            "<h3>Projection parameters and seeds</h3>"
            + (
                _kv_table(_flatten(meta))
                if meta
                else _nc("Projection metadata", "no projection metadata")
            )
        )
        mode = str(_scalar(ctx.get("mode")) or "")
        caveats = [
            "t-SNE and UMAP are fitted on all subjects without labels; their distances and "
            "clusters are not evidence, and no statistics are computed on them.",
            "PLS uses the labels: it is fitted on the model's training subjects only and held-out "
            "subjects are projected.",
            "In k-fold mode each fold is its own network: latent units are not aligned across "
            "folds, so latent coordinates are compared only within one fold (the heat maps and "
            "projections show the reference fold) and only region rankings are pooled across "
            "folds.",
            "An explanation (SHAP) of a surrogate that does not fit the reconstruction error is "
            "not an explanation.",
        ]
        if mode == "fit_all":
            caveats.insert(
                0,
                "fit_all mode: every cohort subject was seen in training, so latent statistics "
                "are in-sample.",
            )
        parts.append(
            "<h3>Caveats</h3><ul>" + "".join(f"<li>{_esc(c)}</li>" for c in caveats) + "</ul>"
        )
        return "\n".join(parts)

    # -- page --------------------------------------------------------------------------------------
    def render(self) -> str:
        title = str(_scalar(self.ctx.get("title")) or "latentbids group report")
        bodies = {}
        for sid, _ in SECTIONS[1:]:
            bodies[sid] = self.run_section(sid)
        bodies["summary"] = self.run_section("summary")  # last: it lists the problems of the others
        out = [
            "<!DOCTYPE html>",
            "<html><head><meta charset='utf-8'>",
            f"<title>{_esc(title)}</title>",
            f"<style>{CSS}</style>",
            "</head><body>",
            f"<h1>{_esc(title)}</h1>",
            "<nav>"
            + "".join(f"<a href='#{sid}'>{_esc(name)}</a>" for sid, name in SECTIONS)
            + "</nav>",
        ]
        for sid, name in SECTIONS:
            out.append(f"<section id='{sid}'><h2>{_esc(name)}</h2>\n{bodies[sid]}\n</section>")
        out.append("</body></html>")
        return "\n".join(out)

    def run_section(self, sid: str) -> str:
        try:
            return getattr(self, f"section_{sid}")()
        except Exception as exc:  # a section never kills the page
            LOGGER.warning("group report: section %s failed", sid, exc_info=True)
            msg = f"Section '{sid}' failed to render ({type(exc).__name__}: {exc})"
            self.problems.append(msg)
            return f"<p class='fail'>{_esc(msg)}</p>"


def build_group_report(ctx: Mapping | None) -> str:
    """HTML text of the group report (self-contained; the orchestrator writes it).

    ``ctx`` keys (all optional; a missing, None or empty one is rendered as
    "not computed: <reason>", with the reason taken from ``ctx["skipped"][<key>]`` when given):

    - ``title``, ``model_name``, ``mode`` ("kfold" / "fit_all"), ``n_subjects``, ``label_column``,
      ``version``, ``run_id``; ``eta``, ``bound`` and ``parameters`` (dict of analysis settings).
    - ``participants``: DataFrame participant_id, [session_id], <label_column>, [age], [sex].
    - ``latents``: DataFrame participant_id, session_id, fold, in_training, z0.., error.
    - ``curves_png``: path of the training-curves PNG.
    - ``projections``: DataFrame participant_id, [session_id], [fold], [role], pca1.., tsne1, tsne2,
      umap1, umap2, pls1..; ``projections_meta``: dict per method (parameters, seed, ``skipped``
      reason, PCA ``explained_variance_ratio``).
    - ``pc1_correlations``: DataFrame covariate, n, r, p.
    - ``contrasts``: list of dicts: name, lrcp_regions, lrcp_association, units, summary,
      stability, sam, latent_vector, verdicts (and optionally reason).
    - ``shap``: dict fits, importance, comparison, statements, values (model -> DataFrame),
      features (G, the regional GM, for the beeswarm colours).
    - ``errors_by_class``: DataFrame label, error (derived from latents + participants when absent).
    - ``verdicts``: list of sentences shown first; ``skipped``: dict key -> reason, keys read:
      verdicts, participants, data, latents, training, curves, projections, pca, tsne, umap, pls,
      pc1_correlations, lrcp, contrasts, lrcp_association, lrcp_regions, errors_by_class, errors,
      shap, shap_values, agnostic (all of them are also listed under "Not computed" in the summary).

    Never raises: a failing figure or section is reported on the page in red.
    """
    try:
        return _Report(ctx if isinstance(ctx, Mapping) else {}).render()
    except Exception as exc:  # last resort: still a page that says what went wrong
        LOGGER.error("group report failed", exc_info=True)
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>latentbids group "
            "report</title></head><body><h1>latentbids group report</h1><p class='fail'>The "
            f"report could not be built ({_esc(type(exc).__name__)}: "
            f"{_esc(exc)}).</p></body></html>"
        )

