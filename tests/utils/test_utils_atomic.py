"""Atomic writes leave either the old or the new complete file, never a partial one."""
from __future__ import annotations

import pandas as pd
import pytest

from latentbids.utils.atomic import atomic_path, write_json, write_text, write_tsv


def test_failed_write_keeps_old_file(tmp_path):
    target = tmp_path / "a.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_suffix_kept_for_format_detection(tmp_path):
    with atomic_path(tmp_path / "x.nii.gz") as tmp:
        assert tmp.name.endswith(".nii.gz")
        tmp.write_bytes(b"1")
    assert (tmp_path / "x.nii.gz").read_bytes() == b"1"


def test_json_and_tsv(tmp_path):
    write_json(tmp_path / "a.json", {"b": 1})
    assert (tmp_path / "a.json").read_text() == '{\n  "b": 1\n}\n'
    write_tsv(pd.DataFrame({"x": [1.0, None]}), tmp_path / "t.tsv")
    assert (tmp_path / "t.tsv").read_text().splitlines() == ["x", "1.0", "n/a"]
