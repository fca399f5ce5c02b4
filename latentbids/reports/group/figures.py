"""Group report, figures: each function returns a base64 PNG, or None when there is nothing to draw."""
from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from latentbids.reports.group.format import (
    _categorical_colors,
    _categories,
    _float,
    _fmt,
    _frame,
    _is_nan,
    _key,
    _label_column,
    _mapping,
    _mpl_text,
    _natural,
    _new_figure,
    _png,
    PROJECTION_METHODS,
    _role,
    _truthy,
)


# --------------------------------------------------------------------------------------------------
# figures: each returns base64 PNG or None when there is nothing to draw
# --------------------------------------------------------------------------------------------------
def projection_figure(
    proj: pd.DataFrame | None,
    label_column: str | None = "group",
    meta: Mapping | None = None,
    max_points: int = 5000,
) -> str | None:
    """Grid of 2-D latent projections: one column per method (PCA, t-SNE, UMAP, PLS, where present),
    one row per colouring (label; age on a continuous colour map; sex).  Held-out and in-training
    subjects get different markers when ``proj`` has a ``role`` or ``in_training`` column."""
    proj = _frame(proj)
    if proj is None:
        return None
    meta = _mapping(meta)
    methods = []
    for key, name, cols in PROJECTION_METHODS:
        present = [c for c in cols if c in proj.columns]
        if present and pd.to_numeric(proj[present[0]], errors="coerce").notna().any():
            methods.append((key, name, present))
    if not methods:
        return None
    proj = proj.head(max_points)
    rows = []
    label_column = _label_column(label_column, proj)
    if label_column:
        rows.append(("label", label_column))
    if "age" in proj.columns and pd.to_numeric(proj["age"], errors="coerce").notna().any():
        rows.append(("continuous", "age"))
    for sex in ("sex", "gender"):
        if sex in proj.columns and proj[sex].notna().any():
            rows.append(("label", sex))
            break
    if not rows:
        rows.append(("none", ""))
    role = _role(proj)
    markers = {}
    if role is not None:
        for i, r in enumerate(sorted(role.unique(), key=lambda v: (v != "held out", v))):
            markers[r] = "os^Dvx+"[i % 7]
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-0.5, 0.5, len(proj))
    fig = _new_figure(3.3 * len(methods) + 1.6, 3.0 * len(rows) + (0.4 if role is not None else 0))
    axes = fig.subplots(len(rows), len(methods), squeeze=False)
    for ri, (kind, col) in enumerate(rows):
        if kind == "label":
            cats_s, cats = _categories(proj[col])
            palette = dict(zip(cats, _categorical_colors(len(cats))))
            palette["n/a"] = (0.75, 0.75, 0.75, 1.0)
        for mi, (key, name, cols) in enumerate(methods):
            ax = axes[ri, mi]
            x = pd.to_numeric(proj[cols[0]], errors="coerce").to_numpy(float)
            if len(cols) > 1:
                y = pd.to_numeric(proj[cols[1]], errors="coerce").to_numpy(float)
                ylab = cols[1]
            else:
                y, ylab = jitter, "(jitter)"
            groups = (
                [(None, np.ones(len(proj), bool))]
                if role is None
                else [(r, (role == r).to_numpy()) for r in markers]
            )
            mappable = None
            for r, rmask in groups:
                marker = "o" if r is None else markers[r]
                if kind == "label":
                    for cat in cats:
                        m = rmask & (cats_s == cat).to_numpy()
                        if m.any():
                            ax.scatter(
                                x[m],
                                y[m],
                                s=14,
                                marker=marker,
                                color=palette[cat],
                                alpha=0.85,
                                linewidths=0.3 if marker not in "x+" else 1.0,
                            )
                elif kind == "continuous":
                    vals = pd.to_numeric(proj[col], errors="coerce").to_numpy(float)
                    ok = rmask & np.isfinite(vals)
                    nan = rmask & ~np.isfinite(vals)
                    if nan.any():
                        ax.scatter(x[nan], y[nan], s=10, marker=marker, color="0.8")
                    if ok.any():
                        finite = vals[np.isfinite(vals)]
                        mappable = ax.scatter(
                            x[ok],
                            y[ok],
                            c=vals[ok],
                            cmap="viridis",
                            s=14,
                            marker=marker,
                            vmin=float(finite.min()),
                            vmax=float(finite.max()),
                        )
                else:
                    ax.scatter(x[rmask], y[rmask], s=14, marker=marker, color="C0")
            xlab, ylab2 = cols[0], ylab
            evr = _mapping(meta.get(key)).get("explained_variance_ratio")
            if key == "pca" and isinstance(evr, (list, tuple, np.ndarray)) and len(evr):
                xlab = f"pca1 ({100 * _float(evr[0]):.1f} %)"
                if len(evr) > 1 and len(cols) > 1:
                    ylab2 = f"pca2 ({100 * _float(evr[1]):.1f} %)"
            ax.set_xlabel(_mpl_text(xlab), fontsize=8)
            ax.set_ylabel(_mpl_text(ylab2), fontsize=8)
            ax.tick_params(labelsize=7)
            title = name if ri == 0 else ""
            if ri == 0 and key in ("tsne", "umap"):
                title += " (distances are not evidence)"
            if title:
                ax.set_title(title, fontsize=9)
            if mi == len(methods) - 1:
                if kind == "label":
                    from matplotlib.lines import Line2D

                    handles = [
                        Line2D(
                            [], [], marker="o", linestyle="", color=palette[c], label=_mpl_text(c)
                        )
                        for c in cats
                    ]
                    ax.legend(
                        handles=handles,
                        title=_mpl_text(col),
                        fontsize=7,
                        title_fontsize=8,
                        loc="upper left",
                        bbox_to_anchor=(1.02, 1.0),
                        frameon=False,
                    )
                elif kind == "continuous" and mappable is not None:
                    cax = ax.inset_axes([1.05, 0.0, 0.05, 1.0])
                    fig.colorbar(mappable, cax=cax, label=_mpl_text(col))
    if markers:
        from matplotlib.lines import Line2D

        handles = [
            Line2D([], [], marker=m, linestyle="", color="0.3", label=_mpl_text(r))
            for r, m in markers.items()
        ]
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncol=len(handles),
            fontsize=8,
            frameon=False,
        )
    return _png(fig)


def _r_tilde(assoc: pd.DataFrame) -> pd.Series:
    """r-tilde: the association r where significant (after correction), else 0."""
    if "r_tilde" in assoc.columns:
        return pd.to_numeric(assoc["r_tilde"], errors="coerce").fillna(0.0)
    r = pd.to_numeric(assoc["r"], errors="coerce")
    if "significant" in assoc.columns:
        sig = assoc["significant"].map(lambda v: bool(_truthy(v)))
        return r.where(sig, 0.0).fillna(0.0)
    return r.fillna(0.0)


def _region_order(regions: pd.DataFrame | None, key_col: str) -> list[str] | None:
    """Region keys ordered by rank (or by score, descending) from an LRCP regions table."""
    if regions is None or key_col not in regions.columns:
        return None
    df = regions.copy()
    if "rank" in df.columns and pd.to_numeric(df["rank"], errors="coerce").notna().any():
        df = df.assign(_o=pd.to_numeric(df["rank"], errors="coerce")).sort_values(
            "_o", na_position="last"
        )
    else:
        for score in ("mean_score", "score"):
            if score in df.columns:
                df = df.assign(_o=pd.to_numeric(df[score], errors="coerce")).sort_values(
                    "_o", ascending=False, na_position="last"
                )
                break
    return [_key(v) for v in df[key_col].tolist()]


def lrcp_heatmap_figure(
    association: pd.DataFrame | None,
    regions: pd.DataFrame | None = None,
    relevant: set | None = None,
    top_n: int = 30,
    title: str = "",
) -> str | None:
    """Heat map of r-tilde (regions x latent units), the ``top_n`` regions by LRCP rank, a diverging
    colour map centred at 0; the units named in ``relevant`` (supported unit claims) are starred and
    drawn in green."""
    assoc = _frame(association)
    if assoc is None or "unit" not in assoc.columns or not ({"r", "r_tilde"} & set(assoc.columns)):
        return None
    key_col = (
        "region_index"
        if "region_index" in assoc.columns
        else ("region" if "region" in assoc.columns else None)
    )
    if key_col is None:
        return None
    a = pd.DataFrame(
        {
            "key": assoc[key_col].map(_key),
            "unit": assoc["unit"].map(_key),
            "rt": _r_tilde(assoc),
            "name": (
                assoc["region"].astype(str)
                if "region" in assoc.columns
                else assoc[key_col].map(_key)
            ),
        }
    )
    names = dict(zip(a["key"], a["name"]))
    mat = a.pivot_table(index="key", columns="unit", values="rt", aggfunc="mean")
    if mat.empty:
        return None
    order = _region_order(_frame(regions), key_col)
    if order:
        keys = [k for k in order if k in mat.index]
        keys += [
            k
            for k in mat.abs().sum(axis=1).sort_values(ascending=False).index
            if k not in set(keys)
        ]
    else:
        keys = list(mat.abs().sum(axis=1).sort_values(ascending=False).index)
    keys = keys[:top_n]
    cols = sorted(mat.columns, key=_natural)
    mat = mat.loc[keys, cols].fillna(0.0)
    vmax = float(np.nanmax(np.abs(mat.to_numpy()))) if mat.size else 0.0
    empty = vmax == 0.0
    vmax = vmax or 1.0
    relevant = {_key(u) for u in (relevant or ())}
    fig = _new_figure(min(16.0, 3.0 + 0.3 * len(cols)), 1.2 + 0.24 * len(keys))
    ax = fig.subplots()
    im = ax.imshow(
        mat.to_numpy(float),
        aspect="auto",
        cmap="RdBu_r",
        vmin=-vmax,
        vmax=vmax,
        interpolation="nearest",
    )
    ax.set_yticks(range(len(keys)))
    ax.set_yticklabels([_mpl_text(names.get(k, k)) for k in keys], fontsize=7)
    ax.set_xticks(range(len(cols)))
    labels = [("z" + c if c.isdigit() else c) + ("*" if c in relevant else "") for c in cols]
    ax.set_xticklabels(
        [_mpl_text(t) for t in labels], rotation=90, fontsize=7 if len(cols) <= 64 else 5
    )
    for tick, c in zip(ax.get_xticklabels(), cols):
        if c in relevant:
            tick.set_color("#070")
            tick.set_fontweight("bold")
    fig.colorbar(im, ax=ax, label="r~ (significant r, else 0)", shrink=0.8)
    sub = " (no significant association: r~ = 0 everywhere)" if empty else ""
    ax.set_title(
        _mpl_text(
            (title + "\n" if title else "")
            + "LRCP profile, top regions by rank; * = relevant unit"
            + sub
        ),
        fontsize=9,
    )
    ax.set_xlabel("latent unit", fontsize=8)
    return _png(fig)


def lrcp_bar_figure(regions: pd.DataFrame | None, positive_names: set | None = None, exploratory: bool = False,
                    top_n: int = 15, title: str = "") -> str | None:
    """Horizontal bars of the LRCP score of the ``top_n`` regions by rank; the regions named in
    ``positive_names`` (supported LRCP claims) in green; an exploratory ranking says so in its title."""
    df = _frame(regions)
    if df is None:
        return None
    score = next((c for c in ("mean_score", "score") if c in df.columns), None)
    if score is None:
        return None
    key_col = "region_index" if "region_index" in df.columns else "region"
    order = _region_order(df, key_col) if key_col in df.columns else None
    df = df.assign(
        _k=df[key_col].map(_key) if key_col in df.columns else range(len(df))
    ).drop_duplicates("_k")
    if order:
        df = df.set_index("_k").loc[[k for k in order if k in set(df["_k"])]].reset_index()
    df = df.head(top_n)
    vals = pd.to_numeric(df[score], errors="coerce").fillna(0.0).to_numpy(float)
    if not len(vals):
        return None
    positive = (df["region"].astype(str).isin({str(n) for n in (positive_names or ())}).to_numpy()
                if "region" in df.columns else np.zeros(len(df), bool))
    names = (
        df["region"].astype(str).tolist()
        if "region" in df.columns
        else df["_k"].astype(str).tolist()
    )
    fig = _new_figure(7.0, 1.0 + 0.3 * len(df))
    ax = fig.subplots()
    y = np.arange(len(df))[::-1]
    ax.barh(y, vals, color=np.where(positive, "#2a8a4a", "#9a9a9a"))
    ax.set_yticks(y)
    ax.set_yticklabels([_mpl_text(n) for n in names], fontsize=7)
    if "n_folds_positive" in df.columns and not exploratory:
        for yi, v, n in zip(y, vals, df["n_folds_positive"].tolist()):
            if not _is_nan(n):
                ax.text(v, yi, f" positive in {_fmt(n)} fold(s)", va="center", fontsize=6)
    from matplotlib.patches import Patch

    ax.legend(
        handles=[
            Patch(color="#2a8a4a", label="LRCP-positive"),
            Patch(color="#9a9a9a", label="not positive"),
        ],
        fontsize=7,
        loc="lower right",
        frameon=False,
    )
    ax.set_xlabel(
        "LRCP score S_j" + (" (mean over folds)" if score == "mean_score" else ""), fontsize=8
    )
    what = "exploratory ranking (no relevant latent unit: not a finding)" if exploratory else "regions"
    ax.set_title(_mpl_text((title + ": " if title else "") + f"top {len(df)} {what}"), fontsize=9)
    return _png(fig)


def _swarm_offsets(x: np.ndarray, width: float = 0.4, bins: int = 40) -> np.ndarray:
    """Vertical offsets spreading points that share an x-bin (a simple beeswarm)."""
    out = np.zeros(len(x))
    if len(x) < 2:
        return out
    lo, hi = float(np.min(x)), float(np.max(x))
    idx = (
        np.zeros(len(x), int)
        if hi <= lo
        else np.minimum(((x - lo) / (hi - lo) * bins).astype(int), bins - 1)
    )
    counts = np.bincount(idx, minlength=bins)
    step = width / max(1, math.ceil(counts.max() / 2))
    for b in np.nonzero(counts)[0]:
        members = np.nonzero(idx == b)[0]
        k = np.arange(len(members))
        out[members] = np.where(k % 2 == 0, 1, -1) * ((k + 1) // 2) * step
    return out


def shap_beeswarm_figure(
    values: pd.DataFrame | None,
    features: pd.DataFrame | None = None,
    names: Mapping | None = None,
    top_n: int = 15,
    title: str = "",
) -> str | None:
    """Beeswarm-like strip plot: one row per region (the ``top_n`` by mean |SHAP|), x = SHAP value,
    colour = the region's feature value (5th-95th percentile scaled; grey where unknown)."""
    vals = _frame(values)
    if vals is None:
        return None
    vals = vals.apply(pd.to_numeric, errors="coerce")
    imp = vals.abs().mean().dropna().sort_values(ascending=False)
    if imp.empty:
        return None
    top = list(imp.index[:top_n])
    feats = None
    if isinstance(features, pd.DataFrame) and not features.empty:
        fcols = {_key(c): c for c in features.columns}
        if set(vals.index).issubset(set(features.index)):
            rows = features.loc[vals.index]
        elif len(features) == len(vals):
            rows = features
        else:
            pos = pd.to_numeric(pd.Series(vals.index), errors="coerce")
            rows = (
                features.iloc[pos.astype(int).to_numpy()]
                if pos.notna().all() and pos.min() >= 0 and pos.max() < len(features)
                else None
            )
        if rows is not None:
            feats = {
                c: pd.to_numeric(rows[fcols[_key(c)]], errors="coerce").to_numpy(float)
                for c in top
                if _key(c) in fcols
            }
    names = {_key(k): v for k, v in _mapping(names).items()}
    fig = _new_figure(7.5, 1.0 + 0.35 * len(top))
    ax = fig.subplots()
    mappable = None
    for i, col in enumerate(reversed(top)):
        phi = vals[col].to_numpy(float)
        ok = np.isfinite(phi)
        y = i + _swarm_offsets(phi[ok])
        f = feats.get(col) if feats else None
        if f is not None and np.isfinite(f[ok]).any():
            fv = f[ok]
            lo, hi = np.nanpercentile(fv, [5, 95])
            if hi <= lo:
                lo, hi = np.nanmin(fv), np.nanmax(fv)
            scaled = np.clip((fv - lo) / (hi - lo), 0, 1) if hi > lo else np.full(len(fv), 0.5)
            known = np.isfinite(scaled)
            if (~known).any():
                ax.scatter(phi[ok][~known], y[~known], s=9, color="0.7", linewidths=0)
            mappable = ax.scatter(
                phi[ok][known],
                y[known],
                c=scaled[known],
                cmap="coolwarm",
                vmin=0,
                vmax=1,
                s=9,
                linewidths=0,
            )
        else:
            ax.scatter(phi[ok], y, s=9, color="0.5", linewidths=0)
    ax.axvline(0, color="0.5", linewidth=0.8)
    ax.set_yticks(range(len(top)))
    ax.set_yticklabels([_mpl_text(names.get(_key(c), c)) for c in reversed(top)], fontsize=7)
    ax.set_xlabel("SHAP value (effect on the predicted reconstruction error)", fontsize=8)
    ax.set_title(_mpl_text(title or "SHAP values"), fontsize=9)
    if mappable is not None:
        cb = fig.colorbar(mappable, ax=ax, ticks=[0, 1], shrink=0.8)
        cb.ax.set_yticklabels(["low", "high"])
        cb.set_label("feature value (regional GM)")
    return _png(fig)


def error_by_class_figure(errors: pd.DataFrame | None, label_column: str = "label") -> str | None:
    """Box plot of the reconstruction error per class, the subjects as jittered points."""
    df = _frame(errors)
    if df is None or "error" not in df.columns:
        return None
    label_column = label_column if label_column in df.columns else _label_column(None, df)
    err = pd.to_numeric(df["error"], errors="coerce")
    if label_column is None:
        cats_s, cats = pd.Series(["all"] * len(df), index=df.index), ["all"]
    else:
        cats_s, cats = _categories(df[label_column])
    data = [err[(cats_s == c).to_numpy()].dropna().to_numpy(float) for c in cats]
    keep = [i for i, d in enumerate(data) if len(d)]
    if not keep:
        return None
    cats, data = [cats[i] for i in keep], [data[i] for i in keep]
    colors = _categorical_colors(len(cats))
    fig = _new_figure(1.5 + 1.1 * len(cats), 3.5)
    ax = fig.subplots()
    ax.boxplot(data, positions=range(len(cats)), widths=0.5, showfliers=False)
    rng = np.random.default_rng(0)
    for i, d in enumerate(data):
        ax.scatter(
            i + rng.uniform(-0.15, 0.15, len(d)), d, s=12, color=colors[i], alpha=0.8, zorder=3
        )
    ax.set_xticks(range(len(cats)))
    ax.set_xticklabels([_mpl_text(f"{c}\n(n={len(d)})") for c, d in zip(cats, data)], fontsize=8)
    ax.set_ylabel("reconstruction error", fontsize=8)
    ax.set_title("Reconstruction error by class", fontsize=9)
    return _png(fig)


def _curves_png(path) -> tuple[str | None, str]:
    """base64 of a PNG file, or None and the reason."""
    if not path:
        return None, "no training-curves PNG was passed"
    p = Path(str(path))
    if not p.is_file():
        return None, f"training-curves file not found: {p}"
    data = p.read_bytes()
    if not data.startswith(b"\x89PNG"):
        return None, f"{p} is not a PNG file"
    return base64.b64encode(data).decode("ascii"), ""


