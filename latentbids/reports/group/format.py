"""Group report, formatting: values, tables, images and the page's constants (no figures, no layout)."""
from __future__ import annotations

import base64
import html
import io
import logging
import math
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

from latentbids.analysis.projection_registry import PROJECTION_METHODS

LOGGER = logging.getLogger("latentbids.reports")

DPI = 85
MAX_ROWS = 20
SECTIONS = (
    ("summary", "Summary"),
    ("data", "Data"),
    ("training", "Training"),
    ("projections", "Projections"),
    ("lrcp", "LRCP"),
    ("errors", "Reconstruction error by class"),
    ("shap", "SHAP on reconstruction error"),
    ("agnostic", "Statistical agnostic tests"),
    ("methods", "Methods & provenance"),
)
TRUE_STRINGS = {"true", "1", "yes", "y", "t"}

CSS = (
    "body{font-family:sans-serif;margin:2em;max-width:1200px;color:#222}"
    "h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}"
    ".t{border-collapse:collapse;font-size:90%;margin:.5em 0}"
    ".t td,.t th{padding:2px 8px;border-bottom:1px solid #eee;text-align:right}"
    ".t th{background:#f4f4f4}"
    ".fail{color:#b00;font-weight:bold} .pass{color:#070;font-weight:bold}"
    ".warn{color:#a60;font-weight:bold} .nc{color:#666;font-style:italic}"
    ".verdicts li{margin:.3em 0} .note{color:#555;font-size:90%} img{max-width:100%}"
    "nav a{margin-right:1em}"
)


def projection_columns() -> list[tuple[str, str, tuple[str, str]]]:
    """``(name, label, (first, second coordinate column))`` of every registered projection method, in order."""
    return [(m.name, m.label, (f"{m.name}1", f"{m.name}2")) for m in PROJECTION_METHODS.values()]


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------
def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _frame(value) -> pd.DataFrame | None:
    """A non-empty DataFrame or None (a list of dicts is accepted too)."""
    if isinstance(value, pd.DataFrame):
        return value if not value.empty else None
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        return pd.DataFrame(value)
    return None


def _mapping(value) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _is_nan(value) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _scalar(value):
    """``value`` when it is a plain scalar (str, number, bool, path), else None (a DataFrame, list
    or dict where a name or a number was expected is treated as missing)."""
    if value is None or isinstance(
        value, (pd.DataFrame, pd.Series, Mapping, list, tuple, set, np.ndarray)
    ):
        return None
    return None if _is_nan(value) else value


def _sentences(value) -> list[str]:
    """A list of sentences from a string or a list/Series of them (anything else: none)."""
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, (list, tuple, pd.Series, np.ndarray)):
        return [str(v) for v in value if _scalar(v) is not None and str(v).strip()]
    return []


def _float(value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _truthy(value) -> bool | None:
    """True/False for booleans, 0/1 and 'true'/'false' strings; None when unknown (NaN, None)."""
    if _is_nan(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return bool(value)
    return str(value).strip().lower() in TRUE_STRINGS


def _key(value) -> str:
    """Join key: 3, 3.0 and '3' are the same region / unit."""
    f = _float(value)
    if not math.isnan(f) and float(f).is_integer() and not isinstance(value, (bool, np.bool_)):
        return str(int(f))
    return str(value)


def _natural(value):
    """Sort key: z2 before z10, 'CN' and 'AD' alphabetically, numbers by value."""
    return [
        (0, int(t), "") if t.isdigit() else (1, 0, t.lower())
        for t in re.split(r"(\d+)", str(value))
        if t
    ]


def _mpl_text(value) -> str:
    """A label safe for matplotlib (a '$' would start mathtext and can raise)."""
    return str(value).replace("$", r"\$")


def _is_p_column(col) -> bool:
    c = str(col).lower()
    return c == "p" or c.startswith("p_") or c.endswith("_p") or "pval" in c or c == "p_perm"


def _fmt(value, col="") -> str:
    """3 decimals for floats (3 significant digits for p-values and values below 0.1, so a SHAP
    value of 2e-4 or an error of 0.0113 is not shown as 0.000 / 0.011), yes/no for booleans."""
    if isinstance(value, Mapping):
        text = ", ".join(f"{k}={_fmt(v, k)}" for k, v in value.items())
        return text if len(text) <= 200 else text[:197] + "..."
    if isinstance(value, (list, tuple, np.ndarray)):
        text = (
            "["
            + ", ".join(_fmt(v, col) for v in list(value)[:20])
            + (", ..." if len(value) > 20 else "")
            + "]"
        )
        return text
    if _is_nan(value):
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if _is_p_column(col) or 0 < abs(value) < 0.1:  # small values keep 3 significant digits
            return f"{value:.3g}"
        return f"{value:.3f}"
    return str(value)


def _table(df: pd.DataFrame | None, max_rows: int = MAX_ROWS, what: str = "rows") -> str:
    """An escaped HTML table of at most ``max_rows`` rows, saying how many more there are."""
    if df is None or df.empty:
        return "<p class='nc'>(empty table)</p>"
    if df.index.name is not None or isinstance(df.index, pd.MultiIndex):
        df = df.reset_index()
    shown = df.head(max_rows).copy()
    shown.columns = [str(c) for c in shown.columns]
    for col in shown.columns:
        shown[col] = [_fmt(v, col) for v in shown[col].tolist()]
    out = shown.to_html(index=False, escape=True, classes="t", border=0, na_rep="n/a")
    if len(df) > max_rows:
        out += (
            f"<p class='note'>Showing the first {max_rows} of {len(df)} {_esc(what)} "
            f"({len(df) - max_rows} more in the TSV outputs).</p>"
        )
    return out


def _kv_table(pairs, max_rows: int = 200) -> str:
    df = pd.DataFrame([(str(k), _fmt(v, k)) for k, v in pairs], columns=["parameter", "value"])
    return _table(df, max_rows=max_rows, what="parameters")


def _flatten(d: Mapping, prefix: str = "") -> list:
    rows = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            rows.extend(_flatten(v, key + "."))
        elif isinstance(v, (pd.DataFrame, pd.Series)):
            rows.append((key, f"<{type(v).__name__} {getattr(v, 'shape', '')}>"))
        else:
            rows.append((key, v))
    return rows


def _nc(what: str, reason: str) -> str:
    return f"<p class='nc'>{_esc(what)} not computed: {_esc(reason)}</p>"


def _img(b64: str | None, alt: str, missing: str = "not enough data to draw it") -> str:
    if not b64:
        return _nc(f"Figure '{alt}'", missing)
    return f'<p><img src="data:image/png;base64,{b64}" alt="{_esc(alt)}"></p>'


def _png(fig) -> str:
    """Encode a matplotlib Figure as base64 PNG and drop its contents."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        fig.clf()
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _new_figure(width: float, height: float):
    """A pyplot-free Agg figure (nothing to close in pyplot's registry; cleared by :func:`_png`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _categorical_colors(n: int):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _categories(series: pd.Series, max_categories: int = 20) -> tuple[pd.Series, list]:
    """String categories in natural order; NaN -> 'n/a'; beyond ``max_categories`` -> 'other'."""
    s = series.map(lambda v: "n/a" if _is_nan(v) else str(v))
    cats = sorted((c for c in s.unique() if c != "n/a"), key=_natural)
    if len(cats) > max_categories:
        keep = set(s.value_counts().index[: max_categories - 1]) - {"n/a"}
        s = s.where(s.isin(keep) | (s == "n/a"), "other")
        cats = sorted(keep, key=_natural) + ["other"]
    if (s == "n/a").any():
        cats.append("n/a")
    return s, cats


def _match_participants(df: pd.DataFrame, extra: pd.DataFrame | None) -> pd.DataFrame:
    """Add ``extra``'s columns that ``df`` lacks, matched on participant_id (and session_id where
    both tables carry one and it matches); 'sub-' prefixes are ignored.  Row order and index of
    ``df`` kept.
    """
    if extra is None or "participant_id" not in df.columns or "participant_id" not in extra.columns:
        return df
    cols = [
        c
        for c in extra.columns
        if c not in df.columns and c not in ("participant_id", "session_id")
    ]
    if not cols:
        return df

    def pid(s):
        return s.astype(str).str.strip().str.replace(r"^sub-", "", regex=True)

    def ses(s):
        return s.astype(str).str.strip().str.replace(r"^ses-", "", regex=True)

    left = pd.DataFrame({"_pid": pid(df["participant_id"]).to_numpy()})
    right = extra[cols].copy()
    right["_pid"] = pid(extra["participant_id"]).to_numpy()
    keys = ["_pid"]
    if "session_id" in df.columns and "session_id" in extra.columns:
        left["_ses"] = ses(df["session_id"]).to_numpy()
        right["_ses"] = ses(extra["session_id"]).to_numpy()
        both = left.merge(right.drop_duplicates(["_pid", "_ses"]), on=["_pid", "_ses"], how="left")
        if both[cols].notna().any().any():
            out = df.copy()
            for c in cols:
                out[c] = both[c].to_numpy()
            return out
    merged = left[keys].merge(
        right.drop(columns=["_ses"], errors="ignore").drop_duplicates(keys), on=keys, how="left"
    )
    out = df.copy()
    for c in cols:
        out[c] = merged[c].to_numpy()
    return out


def _label_column(ctx_label, df: pd.DataFrame | None) -> str | None:
    if df is None:
        return None
    for cand in (ctx_label, "group", "label", "diagnosis", "dx"):
        if cand and cand in df.columns and df[cand].notna().any():
            return cand
    return None


def _role(df: pd.DataFrame) -> pd.Series | None:
    """'held out' / 'in training' (or the given role) per row, from a role or in_training column."""
    if "role" in df.columns and df["role"].notna().any():
        mapping = {
            "test": "held out",
            "held_out": "held out",
            "heldout": "held out",
            "new": "new subject",
            "train": "in training",
            "validation": "in training",
            "training": "in training",
        }
        return df["role"].map(
            lambda v: "n/a" if _is_nan(v) else mapping.get(str(v).lower(), str(v))
        )
    if "in_training" in df.columns and df["in_training"].notna().any():
        return df["in_training"].map(
            lambda v: "n/a" if _truthy(v) is None else ("in training" if _truthy(v) else "held out")
        )
    return None


