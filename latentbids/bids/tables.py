"""What counts as a missing value in the tables latentbids reads and writes.

BIDS writes a missing value as ``n/a``; tables made by hand or by other tools also carry empty cells,
``NA``, ``nan`` or ``None``, and pandas turns some of those into ``NaN`` on reading.  Every module that
decides whether a label, session or covariate is missing asks :func:`is_missing`, so a value
cannot be missing for one step and present for the next.
"""
from __future__ import annotations

import math

#: How latentbids writes a missing value into a TSV (the BIDS spelling).
NA_REP = "n/a"

#: Cell texts that mean "no value" (compared after stripping and lower-casing).
MISSING_VALUES = frozenset({"", "n/a", "na", "nan", "none"})


def is_missing(value) -> bool:
    """True for ``None``, a float NaN, ``pandas.NA``/``NaT`` and the texts in :data:`MISSING_VALUES`.

    Parameters
    ----------
    value : object
        One cell of a table (any type: text, number, ``None``, a pandas missing marker).

    Returns
    -------
    bool
        Whether the cell holds no value.
    """
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, str):
        return value.strip().lower() in MISSING_VALUES
    try:  # pandas.NA, pandas.NaT and numpy floating NaN without importing pandas here
        return bool(value != value)
    except (TypeError, ValueError):  # pandas.NA raises on bool(); arrays are never one cell
        return type(value).__name__ in ("NAType", "NaTType")
