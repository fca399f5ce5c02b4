"""Group report, the latent-projection figure: one column per method, one row per colouring."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from latentbids.analysis.projection_registry import PROJECTION_METHODS
from latentbids.reports.group.format import (
    _categorical_colors,
    _categories,
    _float,
    _frame,
    _label_column,
    _mapping,
    _mpl_text,
    _new_figure,
    _png,
    _role,
    projection_columns,
)

#: markers of the roles (held out first), cycled
_MARKERS = "os^Dvx+"
_GREY = (0.75, 0.75, 0.75, 1.0)


def _methods_present(proj: pd.DataFrame) -> list[tuple[str, str, list[str]]]:
    """(key, name, columns) of the projections that have at least one finite coordinate."""
    methods = []
    for key, name, cols in projection_columns():
        present = [c for c in cols if c in proj.columns]
        if present and pd.to_numeric(proj[present[0]], errors="coerce").notna().any():
            methods.append((key, name, present))
    return methods


def _colourings(proj: pd.DataFrame, label_column: str | None) -> list[tuple[str, str]]:
    """The rows of the grid: ``("label", column)``, ``("continuous", "age")``, or ``("none", "")``."""
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
    return rows or [("none", "")]


def _axis_labels(key: str, cols: list[str], meta: Mapping) -> tuple[str, str]:
    """x and y labels; a method whose meta has an ``explained_variance_ratio`` (PCA) carries it; a 1-D
    projection is jittered in y."""
    xlab, ylab = cols[0], cols[1] if len(cols) > 1 else "(jitter)"
    evr = _mapping(meta.get(key)).get("explained_variance_ratio")
    if isinstance(evr, (list, tuple, np.ndarray)) and len(evr):
        xlab = f"{cols[0]} ({100 * _float(evr[0]):.1f} %)"
        if len(evr) > 1 and len(cols) > 1:
            ylab = f"{cols[1]} ({100 * _float(evr[1]):.1f} %)"
    return xlab, ylab


class _Panel:
    """Everything one colouring row shares across methods: the categories, palette and role markers."""

    def __init__(self, proj: pd.DataFrame, kind: str, col: str, role: pd.Series | None, markers: dict):
        self.proj, self.kind, self.col, self.role, self.markers = proj, kind, col, role, markers
        self.mappable = None
        if kind == "label":
            self.cats_s, self.cats = _categories(proj[col])
            self.palette = dict(zip(self.cats, _categorical_colors(len(self.cats))))
            self.palette["n/a"] = _GREY

    def groups(self):
        n = len(self.proj)
        if self.role is None:
            return [("o", np.ones(n, bool))]
        return [(self.markers[r], (self.role == r).to_numpy()) for r in self.markers]

    def draw(self, ax, x: np.ndarray, y: np.ndarray) -> None:
        for marker, rmask in self.groups():
            if self.kind == "label":
                for cat in self.cats:
                    m = rmask & (self.cats_s == cat).to_numpy()
                    if m.any():
                        ax.scatter(x[m], y[m], s=14, marker=marker, color=self.palette[cat], alpha=0.85,
                                   linewidths=0.3 if marker not in "x+" else 1.0)
            elif self.kind == "continuous":
                vals = pd.to_numeric(self.proj[self.col], errors="coerce").to_numpy(float)
                ok, nan = rmask & np.isfinite(vals), rmask & ~np.isfinite(vals)
                if nan.any():
                    ax.scatter(x[nan], y[nan], s=10, marker=marker, color="0.8")
                if ok.any():
                    finite = vals[np.isfinite(vals)]
                    self.mappable = ax.scatter(x[ok], y[ok], c=vals[ok], cmap="viridis", s=14, marker=marker,
                                               vmin=float(finite.min()), vmax=float(finite.max()))
            else:
                ax.scatter(x[rmask], y[rmask], s=14, marker=marker, color="C0")

    def legend(self, fig, ax) -> None:
        if self.kind == "label":
            from matplotlib.lines import Line2D

            handles = [Line2D([], [], marker="o", linestyle="", color=self.palette[c], label=_mpl_text(c))
                       for c in self.cats]
            ax.legend(handles=handles, title=_mpl_text(self.col), fontsize=7, title_fontsize=8, loc="upper left",
                      bbox_to_anchor=(1.02, 1.0), frameon=False)
        elif self.kind == "continuous" and self.mappable is not None:
            fig.colorbar(self.mappable, cax=ax.inset_axes([1.05, 0.0, 0.05, 1.0]), label=_mpl_text(self.col))


def _role_legend(fig, markers: dict) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker=m, linestyle="", color="0.3", label=_mpl_text(r)) for r, m in markers.items()]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)


def projection_figure(proj: pd.DataFrame | None, label_column: str | None = "group", meta: Mapping | None = None,
                      max_points: int = 5000) -> str | None:
    """Grid of 2-D latent projections: one column per registered method (PCA, t-SNE, UMAP, PLS, where present;
    titled by its ``figure_title``),
    one row per colouring (label; age on a continuous colour map; sex).  Held-out and in-training
    subjects get different markers when ``proj`` has a ``role`` or ``in_training`` column."""
    proj = _frame(proj)
    if proj is None:
        return None
    meta = _mapping(meta)
    methods = _methods_present(proj)
    if not methods:
        return None
    proj = proj.head(max_points)
    rows = _colourings(proj, label_column)
    role = _role(proj)
    markers = {} if role is None else {
        r: _MARKERS[i % len(_MARKERS)] for i, r in enumerate(sorted(role.unique(), key=lambda v: (v != "held out", v)))}
    jitter = np.random.default_rng(0).uniform(-0.5, 0.5, len(proj))
    fig = _new_figure(3.3 * len(methods) + 1.6, 3.0 * len(rows) + (0.4 if role is not None else 0))
    axes = fig.subplots(len(rows), len(methods), squeeze=False)
    for ri, (kind, col) in enumerate(rows):
        panel = _Panel(proj, kind, col, role, markers)
        for mi, (key, name, cols) in enumerate(methods):
            ax = axes[ri, mi]
            x = pd.to_numeric(proj[cols[0]], errors="coerce").to_numpy(float)
            y = pd.to_numeric(proj[cols[1]], errors="coerce").to_numpy(float) if len(cols) > 1 else jitter
            panel.draw(ax, x, y)
            xlab, ylab = _axis_labels(key, cols, meta)
            ax.set_xlabel(_mpl_text(xlab), fontsize=8)
            ax.set_ylabel(_mpl_text(ylab), fontsize=8)
            ax.tick_params(labelsize=7)
            if ri == 0:
                ax.set_title(PROJECTION_METHODS[key].figure_title, fontsize=9)
            if mi == len(methods) - 1:
                panel.legend(fig, ax)
    if markers:
        _role_legend(fig, markers)
    return _png(fig)
