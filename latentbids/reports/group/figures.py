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
    _frame,
    _key,
    _label_column,
    _mapping,
    _mpl_text,
    _new_figure,
    _png,
)


# --------------------------------------------------------------------------------------------------
# figures: each returns base64 PNG or None when there is nothing to draw
# --------------------------------------------------------------------------------------------------
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


