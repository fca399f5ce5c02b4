"""Group report, the atlas-agreement figure: where each supported regional finding holds, atlas by atlas."""
from __future__ import annotations

import numpy as np
import pandas as pd

from latentbids.reports.group.format import _mpl_text, _new_figure, _png

#: cell states of the figure, in legend order: (code, label, colour)
STATES = ((3, "the finding's own atlas", "#1f4e79"), (2, "holds (an overlapping region is supported)", "#4caf50"),
          (1, "does not hold (overlapping regions not supported)", "#f08a24"),
          (0, "cannot answer (not tested, or no overlapping region)", "#e0e0e0"))


def atlas_agreement_codes(table: pd.DataFrame) -> pd.DataFrame:
    """Finding x atlas state codes of :data:`STATES` from an agreement table (its own atlas 3, holds 2, does not
    hold 1, cannot answer 0), in the table's atlas order."""
    from latentbids.analysis.atlas_verdicts import agreement_matrix

    matrix = agreement_matrix(table)
    codes = pd.DataFrame(0, index=matrix.index, columns=matrix.columns, dtype=int)
    own = table.drop_duplicates("finding").set_index("finding")["atlas"]
    for finding in matrix.index:
        for atlas in matrix.columns:
            value = matrix.loc[finding, atlas]
            codes.loc[finding, atlas] = (3 if own[finding] == atlas else 0 if pd.isna(value)
                                         else 2 if bool(value) else 1)
    return codes


def atlas_agreement_figure(table: pd.DataFrame | None, max_rows: int = 40) -> str | None:
    """One row per supported regional finding (the first ``max_rows``), one column per atlas: where it holds."""
    if table is None or not len(table):
        return None
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    every = atlas_agreement_codes(table)
    codes = every.iloc[:max_rows]
    n_rows, n_cols = codes.shape
    fig = _new_figure(2.2 + 1.1 * n_cols + 0.04 * max(len(str(f)) for f in codes.index), 1.4 + 0.28 * n_rows)
    ax = fig.add_subplot(1, 1, 1)
    cmap = ListedColormap([colour for _, _, colour in sorted(STATES)])
    ax.imshow(codes.to_numpy(), cmap=cmap, vmin=-0.5, vmax=3.5, aspect="auto", interpolation="nearest")
    ax.set_xticks(np.arange(n_cols), [_mpl_text(c) for c in codes.columns])
    ax.set_yticks(np.arange(n_rows), [_mpl_text(f) for f in codes.index], fontsize=7)
    ax.xaxis.tick_top()
    ax.set_xticks(np.arange(n_cols + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n_rows + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    ax.legend(handles=[Patch(color=colour, label=label) for _, label, colour in STATES], loc="upper center",
              bbox_to_anchor=(0.5, -0.02), ncol=2, fontsize=7, frameon=False)
    more = len(every) - n_rows
    ax.set_title("Where each supported regional finding holds" + (f" (first {n_rows}; {more} more in the table)"
                                                                 if more > 0 else ""), fontsize=9)
    return _png(fig)
