"""One missing-value vocabulary for every table latentbids reads."""
from __future__ import annotations

import numpy as np
import pandas as pd

from latentbids.bids.tables import MISSING_VALUES, NA_REP, is_missing


def test_missing_values():
    assert NA_REP in MISSING_VALUES
    for value in (None, float("nan"), np.nan, np.float32("nan"), pd.NA, pd.NaT, "", "  ", "n/a", "N/A", "NA", "na",
                  "nan", "NaN", "None", "none"):
        assert is_missing(value), repr(value)
    for value in ("CN", "0", 0, 0.0, False, "n/a/b", "nana", np.int64(3)):
        assert not is_missing(value), repr(value)


def test_participants_tsv_missing_cells_are_nan(tmp_path):
    from latentbids.bids.tables import read_participants

    (tmp_path / "participants.tsv").write_text(
        "participant_id\tgroup\tage\tsex\n"
        "sub-01\tCN\t61\tF\n"
        "sub-02\tn/a\tNA\tnone\n"
        "sub-03\tAD\t\tN/A\n"
    )
    table = read_participants(tmp_path)
    assert list(table.index) == ["sub-01", "sub-02", "sub-03"]
    assert table.loc["sub-01"].tolist() == ["CN", 61, "F"]
    assert table.loc["sub-02"].isna().all() and table.loc["sub-03", ["age", "sex"]].isna().all()
    assert table.loc["sub-03", "group"] == "AD"
    assert pd.api.types.is_numeric_dtype(table["age"])
