"""Group report, the LRCP figures: the r-tilde heat map and the bar chart of the region ranking."""
from __future__ import annotations

import numpy as np
import pandas as pd

from latentbids.reports.group.format import (
    _fmt,
    _frame,
    _is_nan,
    _key,
    _mpl_text,
    _natural,
    _new_figure,
    _png,
    _truthy,
)


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


def _profile_matrix(assoc: pd.DataFrame, key_col: str, regions: pd.DataFrame | None, top_n: int):
    """r-tilde as a (top_n regions by LRCP rank) x (units, natural order) matrix, and the region names."""
    a = pd.DataFrame({
        "key": assoc[key_col].map(_key),
        "unit": assoc["unit"].map(_key),
        "rt": _r_tilde(assoc),
        "name": assoc["region"].astype(str) if "region" in assoc.columns else assoc[key_col].map(_key),
    })
    names = dict(zip(a["key"], a["name"]))
    mat = a.pivot_table(index="key", columns="unit", values="rt", aggfunc="mean")
    if mat.empty:
        return None, names
    by_strength = list(mat.abs().sum(axis=1).sort_values(ascending=False).index)
    order = _region_order(regions, key_col)
    keys = ([k for k in order if k in mat.index] + [k for k in by_strength if k not in set(order)]) if order \
        else by_strength
    cols = sorted(mat.columns, key=_natural)
    return mat.loc[keys[:top_n], cols].fillna(0.0), names


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
    mat, names = _profile_matrix(assoc, key_col, _frame(regions), top_n)
    if mat is None:
        return None
    keys, cols = list(mat.index), list(mat.columns)
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
