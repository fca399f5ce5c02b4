"""participants.tsv is read as BIDS defines a TSV: UTF-8 (BOM tolerated), tabs, no quoting; anything
else is one error naming the file, the line and the fix (exit 66), never a parser traceback or labels
silently lost.  Also the other small files a user hands in (label files, filter files, config files)."""
from __future__ import annotations

import logging

import pandas as pd
import pytest

from latentbids.bids.tables import read_participants
from latentbids.errors import EXIT_MISSING_INPUT, EXIT_USAGE, MissingInputError, UsageError


def _write(folder, data: bytes | str):
    path = folder / "participants.tsv"
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def test_a_quote_is_an_ordinary_character(tmp_path):
    """A CSV reader lets the '"' swallow the rows after it: sub-02 and sub-03 lost their labels."""
    _write(tmp_path, 'participant_id\tgroup\tnote\nsub-01\tCN\t"odd\nsub-02\tAD\tfine\nsub-03\tCN\t5" tall\n')
    table = read_participants(tmp_path)
    assert list(table.index) == ["sub-01", "sub-02", "sub-03"]
    assert table["group"].tolist() == ["CN", "AD", "CN"]
    assert table.loc["sub-01", "note"] == '"odd' and table.loc["sub-03", "note"] == '5" tall'


def test_utf8_with_a_byte_order_mark_and_crlf(tmp_path):
    _write(tmp_path, "\ufeffparticipant_id\tgroup\tage\r\nsub-01\tCN\t70\r\nsub-02\tAD\tn/a\r\n".encode("utf-8"))
    table = read_participants(tmp_path)
    assert table.index.name == "participant_id" and list(table.index) == ["sub-01", "sub-02"]
    assert table.loc["sub-01", "age"] == 70 and pd.isna(table.loc["sub-02", "age"])


@pytest.mark.parametrize("content, needles", [
    ("participant_id\tgroup\nsub-01\tCN\tx\n", ["line 2 has 3 tab-separated cell(s) where the header has 2",
                                                 "one cell per column"]),
    ("participant_id\tgroup\tage\nsub-01\tCN\t70\nsub-02\tAD\n", ["line 3 has 2 tab-separated", "n/a"]),
    ("participant_id,group\nsub-01,CN\n", ["line 1 has no tab", "tab-separated"]),
    ("participant_id\tgroup\nsub-01\tCN\nsub-02\tAD\nsub-01\tAD\n", ["sub-01 is on lines 2 and 4",
                                                                    "one row per subject"]),
    ("subject\tgroup\nsub-01\tCN\n", ["no participant_id column", "subject, group"]),
    ("participant_id\tgroup\tgroup\nsub-01\tCN\tAD\n", ["'group'", "repeated"]),
    ("participant_id\tgroup\n\tCN\n", ["line 2 has no participant_id"]),
    ("participant_id\tgroup\nsub-01\tCN\n".encode("utf-8") + "sub-02\tcontr\xf4le\n".encode("latin-1"),
     ["is not UTF-8 (byte 0xf4 on line 3)", "iconv"]),
    ("participant_id\tgroup\nsub-01\tCN\n".encode("utf-16"), ["is UTF-16", "UTF-8"]),
])
def test_a_malformed_table_is_one_line_naming_file_and_line(tmp_path, content, needles):
    path = _write(tmp_path, content)
    with pytest.raises(MissingInputError) as info:
        read_participants(tmp_path)
    message = info.value.message
    assert info.value.exit_code == EXIT_MISSING_INPUT and "\n" not in message
    assert message.startswith(f"participants.tsv {path}")
    for needle in needles:
        assert needle in message, message


def test_ids_without_sub_are_read_with_it_said_once(tmp_path, caplog):
    _write(tmp_path, "participant_id\tgroup\n01\tCN\n02\tAD\nsub-03\tCN\n")
    with caplog.at_level(logging.WARNING, logger="latentbids"):
        table = read_participants(tmp_path)
    assert list(table.index) == ["sub-01", "sub-02", "sub-03"]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "2 participant_id value(s) without 'sub-' (first: '01' on line 2)" in lines[0]


def test_no_participants_tsv_is_an_empty_table(tmp_path):
    table = read_participants(tmp_path)
    assert table.empty and table.index.name == "participant_id"


def test_a_byte_order_mark_in_a_label_file_is_not_part_of_the_label(tmp_path):
    from latentbids.bids.layout import read_labels

    listing = tmp_path / "subjects.txt"
    listing.write_bytes("\ufeff001\r\nsub-002\r\n".encode("utf-8"))
    assert read_labels([str(listing)], "sub") == ["001", "002"]
    listing.write_bytes("001\n\u200b002\n".encode("utf-8"))  # an invisible character is named, not shown raw
    with pytest.raises(UsageError, match=r"holds the invisible or non-ASCII character\(s\) U\+200B"):
        read_labels([str(listing)], "sub")
    listing.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(UsageError, match=r"--participant-label file .*subjects.txt is not UTF-8") as info:
        read_labels([str(listing)], "sub")
    assert info.value.exit_code == EXIT_USAGE


def test_a_filter_file_in_another_encoding_is_one_usage_error(tmp_path):
    from latentbids.bids.layout import load_filter_file

    path = tmp_path / "filter.json"
    path.write_bytes('\ufeff{"t1w": {"session": "1"}}'.encode("utf-8"))
    assert load_filter_file(path) == {"t1w": {"session": "1"}}
    path.write_bytes('{"t1w": {"acquisition": "r\xe9"}}'.encode("latin-1"))
    with pytest.raises(UsageError, match="--bids-filter-file .* is not UTF-8"):
        load_filter_file(path)
