"""The input BIDS dataset: a persistent pybids index and the selection of T1w images.

Many participant jobs (a SLURM array, say) start at once against one dataset and one
``--bids-database-dir``.  The index is built once under an exclusive file lock into a temporary
folder, then renamed into place; every other job waits for the lock and then only reads it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from latentbids.bids.jobs import T1wJob
from latentbids.bids.naming import strip_prefix
from latentbids.bids.tables import read_text_file
from latentbids.errors import MissingInputError, NoDataError, UsageError
from latentbids.utils.locks import locked

LOGGER = logging.getLogger("latentbids")

T1W_QUERY = {"datatype": "anat", "suffix": "T1w", "extension": [".nii", ".nii.gz"]}
_INDEX_VERSION = "1"


def read_labels(values: Iterable[str] | None, prefix: str) -> list[str]:
    """Expand ``--participant-label``/``--session-label`` values.

    Each value is a label (``01`` or ``sub-01``) or a path to a text file with one label per line
    (blank lines and ``#`` comments ignored).  Order is kept, duplicates dropped.
    """
    labels: list[str] = []
    for value in values or []:
        value = str(value).strip()
        path = Path(value)
        names_a_file = os.sep in value or value.endswith((".txt", ".tsv", ".csv"))
        if names_a_file or (path.is_file() and not value.startswith(prefix + "-")):
            if not path.is_file():
                raise MissingInputError(f"Label file {value} not found: "
                                        "give labels or an existing file with one per line")
            # utf-8-sig: a byte-order mark (Windows editors) must not become part of the first label
            text = read_text_file(path, f"--{'participant' if prefix == 'sub' else 'session'}-label file", UsageError)
            items = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
            items = [i for item in items for i in item.replace(",", " ").split()]
            if not items:
                # An empty list must never mean "everyone" (a SLURM array task would take the dataset).
                raise UsageError(f"Label file {value} lists no {prefix} labels: write one label per line")
        else:
            items = [value]
        for item in items:
            label = strip_prefix(item, prefix)
            if not re.fullmatch(r"[A-Za-z0-9]+", label):
                odd = sorted({f"U+{ord(c):04X}" for c in item if not (c.isascii() and c.isprintable())})
                what = f" (it holds the invisible or non-ASCII character(s) {', '.join(odd)})" if odd else ""
                raise UsageError(f"{ascii(item) if odd else repr(item)} is not a valid {prefix} label{what}: use "
                                 f"letters and digits only (e.g. {prefix}-01)")
            if label not in labels:
                labels.append(label)
    return labels


def load_filter_file(path: str | os.PathLike | None) -> dict:
    """Read a ``--bids-filter-file`` (fMRIPrep format: ``{"t1w": {"session": "1", ...}}``).

    Only the ``t1w`` query is used by latentbids; other keys are accepted (so one filter file can
    serve several BIDS Apps) and logged.  JSON ``null`` means "entity absent" and ``"*"`` means
    "any value", as in fMRIPrep.
    """
    if not path:
        return {}
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"--bids-filter-file {path} not found: pass an existing JSON file")
    try:
        data = json.loads(read_text_file(path, "--bids-filter-file", UsageError))
    except json.JSONDecodeError as exc:
        raise UsageError(f"--bids-filter-file {path} is not valid JSON ({exc.msg} at line {exc.lineno}): "
                         "fix it") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise UsageError(f"--bids-filter-file {path} must map query names to objects, "
                         'e.g. {"t1w": {"session": "1"}}')
    ignored = sorted(set(data) - {"t1w"})
    if ignored:
        LOGGER.info("bids-filter-file: ignoring queries %s (latentbids uses only 't1w')", ", ".join(ignored))
    return data


def check_selection(bids_dir: str | os.PathLike, participant_label: list[str] | None = None,
                    session_label: list[str] | None = None) -> None:
    """Refuse, in a second and before the BIDS validator runs, labels that name no folder.

    A mistyped ``--participant-label`` must not wait for the validator, which would then blame the
    dataset (it sees a tree without the subject); only the ``sub-*``/``ses-*`` folder names are read.
    The same :class:`~latentbids.errors.NoDataError` (exit 18) as :func:`select_t1w`'s.

    Parameters
    ----------
    bids_dir : path-like
        The input dataset.
    participant_label, session_label : list of str, optional
        Labels without their ``sub-``/``ses-`` prefix.
    """
    bids_dir = Path(bids_dir)
    subjects = sorted(p.name[4:] for p in bids_dir.glob("sub-*") if p.is_dir())
    missing = [s for s in participant_label or [] if s not in subjects]
    if missing:
        raise NoDataError(f"Participant(s) {', '.join('sub-' + m for m in missing)} not found in {bids_dir}: "
                          f"check --participant-label (found {len(subjects)} subjects)")
    if session_label:
        folders = [bids_dir / f"sub-{s}" for s in (participant_label or subjects)]
        sessions = sorted({p.name[4:] for folder in folders for p in folder.glob("ses-*") if p.is_dir()})
        missing = [s for s in session_label if s not in sessions]
        if missing:
            raise NoDataError(f"Session(s) {', '.join('ses-' + m for m in missing)} not found in {bids_dir}: check "
                              f"--session-label (found: {', '.join('ses-' + s for s in sessions) or 'no sessions'})")


def _pybids_filters(filters: dict) -> dict:
    from bids.layout import Query

    out = {}
    for key, value in filters.items():
        if value is None:
            out[key] = Query.NONE
        elif value == "*":
            out[key] = Query.ANY
        else:
            out[key] = value
    return out


def _dataset_signature(bids_dir: Path) -> str:
    """Cheap fingerprint of the dataset's file list (names, sizes, mtimes) to detect stale indexes."""
    digest = hashlib.sha256(_INDEX_VERSION.encode())
    for root, dirs, files in os.walk(bids_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in ("derivatives", "sourcedata", "code"))
        for name in sorted(files):
            full = Path(root) / name
            try:
                st = full.stat()
            except OSError:
                continue
            digest.update(f"{full.relative_to(bids_dir)}:{st.st_size}:{int(st.st_mtime)}\n".encode())
    return digest.hexdigest()[:16]


def get_layout(bids_dir: str | os.PathLike, database_dir: str | os.PathLike | None = None):
    """Return a pybids ``BIDSLayout`` for ``bids_dir``, indexed once and reused from ``database_dir``.

    The index folder is keyed by the dataset's file-list fingerprint, so a changed dataset gets a
    fresh index and a stale one is never trusted.
    """
    from bids import BIDSLayout, BIDSLayoutIndexer

    bids_dir = Path(bids_dir).resolve()
    indexer = BIDSLayoutIndexer(validate=False, index_metadata=False)
    if not database_dir:
        return BIDSLayout(str(bids_dir), validate=False, indexer=indexer)
    database_dir = Path(database_dir).resolve()
    key = hashlib.sha256(str(bids_dir).encode()).hexdigest()[:12]
    target = database_dir / f"{bids_dir.name}-{key}-{_dataset_signature(bids_dir)}"
    with locked(database_dir / f".{bids_dir.name}-{key}.lock"):
        if not (target / "layout_index.sqlite").is_file():
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-index-", dir=database_dir))
            try:
                BIDSLayout(str(bids_dir), validate=False, indexer=indexer, database_path=str(tmp))
                if target.exists():
                    shutil.rmtree(target)
                os.replace(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            LOGGER.info("Indexed %s into %s", bids_dir, target)
    return BIDSLayout(str(bids_dir), validate=False, database_path=str(target))


def select_t1w(
    layout,
    participant_label: list[str] | None = None,
    session_label: list[str] | None = None,
    filters: dict | None = None,
) -> list[T1wJob]:
    """The T1w images to process, one :class:`T1wJob` each, sorted by subject and session.

    Raises :class:`NoDataError` (exit 18) when a requested participant/session does not exist or
    when the selection is empty.
    """
    bids_dir = Path(layout.root)
    subjects = sorted(layout.get_subjects())
    if participant_label:
        missing = [s for s in participant_label if s not in subjects]
        if missing:
            raise NoDataError(
                f"Participant(s) {', '.join('sub-' + m for m in missing)} not found in {bids_dir}: "
                f"check --participant-label (found {len(subjects)} subjects)"
            )
    if session_label:
        sessions = set(layout.get_sessions())
        missing = [s for s in session_label if s not in sessions]
        if missing:
            raise NoDataError(
                f"Session(s) {', '.join('ses-' + m for m in missing)} not found in {bids_dir}: check "
                f"--session-label (found: {', '.join('ses-' + s for s in sorted(sessions)) or 'no sessions'})"
            )
    query = dict(T1W_QUERY)
    query.update(_pybids_filters((filters or {}).get("t1w", {})))
    if participant_label:
        query["subject"] = participant_label
    if session_label:
        query["session"] = session_label
    try:
        files = layout.get(return_type="object", **query)
    except Exception as exc:  # pybids raises ValueError/TypeError on unknown entities
        raise UsageError(f"--bids-filter-file query {query} is invalid for pybids ({exc}): "
                         "fix the entity names") from None
    jobs = []
    for f in files:
        ents = f.get_entities()
        path = Path(f.path)
        jobs.append(
            T1wJob(
                subject=str(ents["subject"]),
                session=str(ents["session"]) if ents.get("session") else None,
                path=path,
                relpath=path.relative_to(bids_dir).as_posix(),
            )
        )
    jobs = one_t1w_per_session(jobs)
    if jobs:
        for subject in subjects_without_t1w(layout, jobs, participant_label):
            LOGGER.warning("sub-%s: no T1w image selected (its folder holds %s): not processed; a T1w goes in "
                           "sub-%s/[ses-*/]anat/*_T1w.nii[.gz] (or check the filters)", subject,
                           _contents(bids_dir / f"sub-{subject}"), subject)
    if not jobs:
        what = []
        if participant_label:
            what.append("participants " + ", ".join(participant_label))
        if session_label:
            what.append("sessions " + ", ".join(session_label))
        if filters and filters.get("t1w"):
            what.append(f"filter {filters['t1w']}")
        raise NoDataError(
            f"No T1w image in {bids_dir} matches {' and '.join(what) or 'the dataset'}: "
            "check the labels/filters (T1w images must be sub-*/[ses-*/]anat/*_T1w.nii[.gz])"
        )
    return jobs


def subjects_without_t1w(layout, jobs: list[T1wJob], participant_label: list[str] | None = None) -> list[str]:
    """The selected subjects (``participant_label``, else every subject) that got no T1w job.

    A subject folder with only ``func/`` (or a T1w the filters left out) is never skipped in silence:
    :func:`select_t1w` warns about each, and the participant level's summary names them.

    Parameters
    ----------
    layout : bids.BIDSLayout
        The dataset's index.
    jobs : list of T1wJob
        What was selected.
    participant_label : list of str, optional
        The requested subjects (without ``sub-``).

    Returns
    -------
    list of str
        Subject labels (without ``sub-``), sorted.
    """
    selected = {job.subject for job in jobs}
    return sorted(set(participant_label or layout.get_subjects()) - selected)


def _contents(folder: Path) -> str:
    """``func/, ses-1/dwi/``: the datatype folders of a subject, to say what it has instead of a T1w."""
    found = sorted({p.relative_to(folder).as_posix() + "/" for p in folder.glob("**/*")
                    if p.is_dir() and not p.name.startswith(("ses-", "."))})
    return ", ".join(found[:6]) + (" ..." if len(found) > 6 else "") if found else "no data folder"


def one_t1w_per_session(jobs: list[T1wJob]) -> list[T1wJob]:
    """Keep one T1w per subject and session: the first by file name (e.g. ``run-1`` before ``run-2``).

    Outputs are named by subject and session only, so two images of one session would overwrite each
    other.  The others are named in a warning with the way to choose (``--bids-filter-file``).
    """
    jobs = sorted(jobs, key=lambda j: (j.subject, j.session or "", j.relpath))
    kept: dict[tuple[str, str | None], T1wJob] = {}
    for job in jobs:
        key = (job.subject, job.session)
        if key in kept:
            LOGGER.warning(
                "%s: several T1w images; using %s, ignoring %s (choose another with --bids-filter-file, "
                'e.g. {"t1w": {"run": "2"}})', job.label, kept[key].relpath, job.relpath,
            )
            continue
        kept[key] = job
    return list(kept.values())
