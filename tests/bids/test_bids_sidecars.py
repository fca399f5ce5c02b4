"""Column sidecars: every TSV column described, units stated, nothing described that is not there."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from latentbids.bids.sidecars import (
    QC_COLUMNS,
    STATS_COLUMNS,
    column_sidecar,
    sidecar_path,
    undocumented_columns,
    write_column_sidecar,
)


def test_write_column_sidecar_lists_exactly_the_present_columns(tmp_path):
    tsv = tmp_path / "sub-01_space-X_atlas-AAL_desc-gm_stats.tsv"
    pd.DataFrame({"index": [1], "name": ["a"], "mean_gm": [0.5]}).to_csv(tsv, sep="\t", index=False)
    side = write_column_sidecar(tsv, STATS_COLUMNS, Description="regional GM")
    data = json.loads(side.read_text())
    assert side == sidecar_path(tsv) and side.name.endswith("_stats.json")
    assert set(data) == {"index", "name", "mean_gm", "Description"}  # no volume_ml: not in this file
    assert data["mean_gm"]["Units"] == "1" and undocumented_columns(tsv) == []


def test_an_undescribed_column_is_an_error(tmp_path):
    tsv = tmp_path / "t.tsv"
    pd.DataFrame({"participant_id": ["sub-01"], "surprise": [1]}).to_csv(tsv, sep="\t", index=False)
    with pytest.raises(ValueError, match="surprise"):
        write_column_sidecar(tsv, QC_COLUMNS)
    assert undocumented_columns(tsv) == ["participant_id", "surprise"]


def test_plain_strings_are_descriptions():
    assert column_sidecar({"z0": "latent unit 0", "error": {"Description": "MSE", "Units": "1"}}, Version=1) == {
        "z0": {"Description": "latent unit 0"}, "error": {"Description": "MSE", "Units": "1"}, "Version": 1}
    assert all("Units" in QC_COLUMNS[c] for c in ("TIV_ml", "GM_ml", "gm_max"))
