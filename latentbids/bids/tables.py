"""The tables of the input dataset as BIDS defines them, and what counts as a missing value.

BIDS writes a missing value as ``n/a``; tables made by hand or by other tools also carry empty cells,
``NA``, ``nan`` or ``None``, and pandas turns some of those into ``NaN`` on reading.  Every module that
decides whether a label, session or covariate is missing asks :func:`is_missing`, so a value
cannot be missing for one step and present for the next.

``participants.tsv`` is read here and only here (:func:`read_participants`), the way BIDS defines a
TSV: UTF-8 (a byte-order mark tolerated, as spreadsheets write one), tab-separated, one row per line,
no quoting: a ``"`` is an ordinary character, never the start of a field that swallows the rows after
it (what a CSV reader does).  A table that is not that (a ragged row, another encoding, a repeated
``participant_id``) is one :class:`~latentbids.errors.MissingInputError` naming the file, the line
and the fix (exit 66), never a parser traceback or labels silently lost.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from latentbids.errors import MissingInputError

LOGGER = logging.getLogger("latentbids")

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


def read_text_file(path: str | os.PathLike, what: str, error=MissingInputError) -> str:
    """The text of a small UTF-8 file the user gave, without a byte-order mark.

    A file in another encoding (Latin-1 from an old spreadsheet, UTF-16 from some Windows editors)
    is one ``error`` naming ``what``, the file, the line and the fix, not a ``UnicodeDecodeError``.

    Parameters
    ----------
    path : path-like
        The file.
    what : str
        How the user knows it (``participants.tsv``, ``--participant-label file``), said first.
    error : type
        The :class:`~latentbids.errors.LatentbidsError` to raise: 66 for a dataset's file, 64 for a
        file named on the command line.

    Returns
    -------
    str
        The decoded text (``\r\n`` line ends kept; callers split lines).
    """
    data = Path(path).read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise error(f"{what} {path} is UTF-16: save it as UTF-8 (e.g. 'iconv -f UTF-16 -t UTF-8')")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise error(f"{what} {path} is not UTF-8 (byte 0x{data[exc.start]:02x} on line {line}): save it as "
                    "UTF-8 (e.g. 'iconv -f LATIN1 -t UTF-8')") from None


def read_tsv_rows(path: str | os.PathLike, what: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the ``(line number, cells)`` rows of a BIDS TSV file.

    Cells are split on tabs only and stripped of surrounding spaces; quotes are kept as they are.
    Blank lines are skipped.  A row with another number of cells than the header, an empty or
    repeated column name, or a file without a header is one MissingInputError (exit 66).
    """
    lines = read_text_file(path, what).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    if not numbered:
        raise MissingInputError(f"{what} {path} is empty: write a header line (participant_id ...) and one "
                                "row per subject, or remove the file")
    header = [cell.strip() for cell in numbered[0][1].split("\t")]
    if len(header) == 1 and ("," in header[0] or ";" in header[0]):
        raise MissingInputError(f"{what} {path} line {numbered[0][0]} has no tab: BIDS tables are tab-separated; "
                                "save it as tab-separated values (TSV), not comma-separated")
    repeated = sorted({c for c in header if header.count(c) > 1 or not c})
    if repeated:
        raise MissingInputError(f"{what} {path} line {numbered[0][0]}: column name(s) "
                                f"{', '.join(repr(c) for c in repeated)} empty or repeated: give every column "
                                "one unique name")
    rows = []
    for number, line in numbered[1:]:
        cells = [cell.strip() for cell in line.split("\t")]
        if len(cells) != len(header):
            raise MissingInputError(
                f"{what} {path} line {number} has {len(cells)} tab-separated cell(s) where the header has "
                f"{len(header)} ({', '.join(header)}): give every row one cell per column, separated by "
                "single tabs (n/a for a missing value)")
        rows.append((number, cells))
    return header, rows


def _typed(column: list[str]):
    """A column of cells as numbers when every present cell is one (like pandas' reader), else text;
    missing cells (:func:`is_missing`) are NaN / None."""
    import pandas as pd

    present = [c for c in column if not is_missing(c)]
    numbers = pd.to_numeric(pd.Series(present, dtype=object), errors="coerce")
    if present and numbers.notna().all():
        return pd.to_numeric(pd.Series([math.nan if is_missing(c) else c for c in column], dtype=object))
    return pd.Series([None if is_missing(c) else c for c in column], dtype=object)


def read_participants(bids_dir: str | os.PathLike):
    """``participants.tsv`` as a DataFrame indexed by ``participant_id`` (empty when absent).

    Read as BIDS says (:func:`read_tsv_rows`).  Every cell :func:`is_missing` calls missing is NaN
    (numeric columns) or ``None``, so no later step has to know the spellings.  An id written
    without ``sub-`` is read with it (said once in the log), so the table still joins to the
    subjects; a missing ``participant_id`` column, an empty id or an id on two lines is one error
    naming the file and the lines (exit 66).

    Parameters
    ----------
    bids_dir : path-like
        The input dataset.

    Returns
    -------
    pandas.DataFrame
        One row per subject, indexed by ``participant_id`` (``sub-<label>``); the other columns as
        written (numbers where every value is one).
    """
    import pandas as pd

    path = Path(bids_dir) / "participants.tsv"
    if not path.is_file():
        return pd.DataFrame(columns=["participant_id"]).set_index("participant_id")
    header, rows = read_tsv_rows(path, "participants.tsv")
    if "participant_id" not in header:
        raise MissingInputError(f"participants.tsv {path} has no participant_id column (header: "
                                f"{', '.join(header)}): name the first column participant_id (sub-<label> per row)")
    at = header.index("participant_id")
    ids = [_participant_id(path, number, cells[at]) for number, cells in rows]
    bare = [(number, cells[at]) for number, cells in rows if not cells[at].startswith("sub-")]
    if bare:
        LOGGER.warning("participants.tsv %s: %d participant_id value(s) without 'sub-' (first: '%s' on line %d) "
                       "read as sub-<label>; BIDS writes sub-<label>", path, len(bare), bare[0][1], bare[0][0])
    seen: dict[str, int] = {}
    for (number, _cells), pid in zip(rows, ids):
        if pid in seen:
            raise MissingInputError(f"participants.tsv {path}: {pid} is on lines {seen[pid]} and {number}: keep one "
                                    "row per subject (merge or delete the other)")
        seen[pid] = number
    table = pd.DataFrame({name: _typed([cells[i] for _n, cells in rows])
                          for i, name in enumerate(header) if i != at})
    table.index = pd.Index(ids, name="participant_id", dtype=object)
    return table


def _participant_id(path: Path, number: int, cell: str) -> str:
    """``sub-<label>`` from a ``participant_id`` cell (``01`` is read as ``sub-01``)."""
    if is_missing(cell):
        raise MissingInputError(f"participants.tsv {path} line {number} has no participant_id: write sub-<label> "
                                "or delete the row")
    return cell if cell.startswith("sub-") else f"sub-{cell}"
