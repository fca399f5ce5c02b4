"""Group level, step 0: the GM maps the participant level wrote, gated by its QC, joined to participants.tsv.

:func:`collect_gm_maps` finds one template-space GM map per subject/session under the output dir (the
names are :func:`latentbids.bids.naming.gm_map_name`'s), leaves out the maps that failed participant QC
(:func:`apply_qc_gate`, never silently: ``group/qc_excluded.tsv``) and adds the participants.tsv columns
(``group`` and the covariates).  Its records are what :func:`latentbids.workflows.group.training.train_and_encode`
trains on.
"""
from __future__ import annotations

import logging
from pathlib import Path

from latentbids.bids.naming import bids_name, gm_map_name, subject_dir
from latentbids.bids.tables import NA_REP
from latentbids.errors import MissingInputError, NoDataError

LOGGER = logging.getLogger("latentbids")


def _find_maps(out: Path, selection, template, modulated: bool) -> tuple[list[dict], list[str]]:
    rows, missing = [], []
    for sub_dir in sorted(out.glob("sub-*")):
        if not sub_dir.is_dir():
            continue
        subject = sub_dir.name[4:]
        if selection.participant_label and subject not in selection.participant_label:
            continue
        sessions = [p.name[4:] for p in sorted(sub_dir.glob("ses-*")) if p.is_dir()] or [None]
        for session in sessions:
            if selection.session_label and session not in selection.session_label:
                continue
            folder = out / subject_dir(subject, session)
            path = folder / gm_map_name(subject, session, template.space, template.res, modulated)
            if path.is_file():
                rows.append({"participant_id": f"sub-{subject}",
                             "session_id": f"ses-{session}" if session else NA_REP, "gm_path": str(path),
                             "qc_path": str(folder / bids_name("qc", ".tsv", sub=subject, ses=session))})
            else:
                missing.append(str(path.relative_to(out)))
    return rows, missing


def _other_spaces(out: Path) -> list[str]:
    """``["<space> res-<r>", ...]`` of the template-space GM maps present in ``out`` (any space)."""
    import re

    found = set()
    for path in out.glob("sub-*/**/*_label-GM_*probseg.nii.gz"):
        match = re.search(r"_space-([A-Za-z0-9]+)_res-([A-Za-z0-9.]+)_", path.name)
        if match:
            found.add(f"{match.group(1)} res-{match.group(2)}")
    return sorted(found)


def collect_gm_maps(settings, template):
    """One row per subject/session with a template-space GM map in output_dir, and the settings to train with.

    Columns: participant_id, session_id, gm_path, plus participants.tsv columns (group, age, ...).
    Modulated maps are used by default; when none exist (GM maps reused through ``-d`` from
    sMRIPrep come unmodulated) the plain probability maps are used for every subject, said in the
    log, and the returned settings say so (:meth:`~latentbids.settings.group.GroupSettings.with_input_map`,
    recorded in the run's config file).  The two kinds are never mixed.

    Parameters
    ----------
    settings : latentbids.settings.group.GroupSettings
    template : latentbids.resources.Template

    Returns
    -------
    records : pandas.DataFrame
    settings : GroupSettings
        ``settings``, or new ones with ``input_map = "probseg"``.
    """
    import pandas as pd

    out, selection = settings.output_dir, settings.selection
    modulated = settings.input_map == "modulated"
    rows, missing = _find_maps(out, selection, template, modulated)
    if modulated and not rows:
        rows, missing = _find_maps(out, selection, template, modulated=False)
        if rows:
            LOGGER.warning("No modulated GM maps in %s: training on unmodulated GM probability maps", out)
            settings = settings.with_input_map("probseg")
    for name in missing:
        LOGGER.warning("%s is missing: run the participant level for it", name)
    if not rows:
        if selection.participant_label or selection.session_label:
            raise NoDataError(f"No GM map in {out} matches the selected participants/sessions: check the labels")
        other = _other_spaces(out)
        if other:
            raise MissingInputError(
                f"No GM maps in {template.space} res-{template.res} in {out}, but there are "
                f"maps in {', '.join(other)}: pass --output-spaces {other[0].replace(' res-', ':res-')}"
            )
        raise MissingInputError(
            f"No template-space GM maps in {out}: run 'latentbids {selection.bids_dir} {out} participant' first"
        )
    from latentbids.model.splits import min_subjects

    plan = settings.folds
    needed = 1 if settings.given_model is not None else min_subjects(plan.n_folds, plan.fit_all)
    records = apply_qc_gate(pd.DataFrame(rows), out, settings.exclude_qc_failures, needed)
    return join_participants(records, selection.bids_dir, settings.analysis.label_column), settings


def join_participants(records, bids_dir, label_column: str = "group"):
    """``records`` with the columns of the dataset's participants.tsv (labels, covariates).

    No participants.tsv, or no label column, is a cohort without labels: training, encoding and the
    label-free analysis run, and one warning says why no contrast will.  A table none of whose ids
    is a subject with a GM map is one error naming the file (exit 66): every label would be lost.
    Subjects without a row, and labels that differ only in case (``CN``, ``cn``), are warned about.

    Parameters
    ----------
    records : pandas.DataFrame
        One row per GM map, with ``participant_id`` (``sub-<label>``).
    bids_dir : path-like
        The input dataset (participants.tsv at its root).
    label_column : str
        The column of the clinical labels (``--label-column``).

    Returns
    -------
    pandas.DataFrame
        ``records`` plus the table's columns, and a ``group`` column (``n/a`` when unknown).
    """
    from latentbids.bids.tables import read_participants

    path = Path(bids_dir) / "participants.tsv"
    participants = read_participants(bids_dir)
    if len(participants):
        subjects = set(records["participant_id"])
        if not subjects & set(participants.index):
            raise MissingInputError(
                f"participants.tsv {path}: none of its {len(participants)} participant_id values (first row: "
                f"'{participants.index[0]}') is a subject with a GM map (e.g. {sorted(subjects)[0]}): write each id "
                "as its subject folder is named (sub-<label>)")
        unlisted = sorted(subjects - set(participants.index))
        if unlisted:
            LOGGER.warning("%d subject(s) have no row in %s (%s): their labels and covariates are n/a", len(unlisted),
                           path, ", ".join(unlisted[:10]) + (" ..." if len(unlisted) > 10 else ""))
        records = records.join(participants, on="participant_id")
    if "group" not in records.columns:
        for alt in ("diagnosis", "dx", "Group", "DX"):
            if alt in records.columns:
                records["group"] = records[alt]
                break
        else:
            records["group"] = NA_REP
    _say_why_no_labels(records, path, label_column)
    return records


def _say_why_no_labels(records, path: Path, column: str) -> None:
    """One warning when the cohort has no labels (no contrast will run), or labels differ only in case."""
    from latentbids.analysis.cohort import clean_labels

    if not path.is_file():
        LOGGER.warning("No participants.tsv in %s: no labels, so no contrast (the label-free analysis runs); add "
                       "one with a '%s' column to compare groups", path.parent, column)
        return
    if column not in records.columns:
        return  # --label-column names a column the table lacks: refused with the columns it has (exit 64)
    labels = clean_labels(records[column]).dropna()
    if labels.empty:
        LOGGER.warning("participants.tsv %s has no '%s' labels for these subjects: no contrast (the label-free "
                       "analysis runs); fill the column, or name another with --label-column", path, column)
        return
    spellings: dict[str, dict[str, int]] = {}
    for label, count in labels.value_counts().items():
        spellings.setdefault(label.lower(), {})[label] = int(count)
    for variants in spellings.values():
        if len(variants) > 1:
            LOGGER.warning("participants.tsv %s column '%s': labels %s differ only in case and are separate classes: "
                           "write one spelling if they are one group", path, column,
                           ", ".join(f"'{k}' ({n})" for k, n in sorted(variants.items())))


def _qc_verdict(path: str) -> tuple[bool | None, str]:
    """(passed, reasons) from a participant ``_qc.tsv``; ``None`` when there is no QC file."""
    import pandas as pd

    if not Path(path).is_file():
        return None, "no QC file"
    qc = pd.read_csv(path, sep="\t")
    if "qc_pass" not in qc.columns or qc.empty:
        return None, "no qc_pass column"
    passed = str(qc["qc_pass"].iloc[0]).strip().lower() in ("true", "1")
    reasons = qc["qc_fail_reasons"].iloc[0] if "qc_fail_reasons" in qc.columns else ""
    return passed, "" if passed or pd.isna(reasons) else str(reasons)


def _reason_counts(reasons) -> str:
    """``"gm_peak: 20, gm_outside: 5"``: how many excluded maps failed each check."""
    import re
    from collections import Counter

    counts = Counter(re.split(r"[\s<>=]", part.strip(), maxsplit=1)[0]
                     for text in reasons for part in str(text).split(";") if part.strip())
    return ", ".join(f"{name}: {n}" for name, n in counts.most_common())


def apply_qc_gate(records, out: Path, exclude: bool, needed: int = 1):
    """Leave out GM maps that failed participant QC (METHOD.md section 2), never silently.

    The excluded maps and their reasons go to ``group/qc_excluded.tsv`` (one log line each, and one
    warning counting them by check).  Maps without a QC file (e.g. produced by an older run) are
    kept and said to be unchecked.  When fewer than ``needed`` subjects are left (what the requested
    training needs), the error says that QC left them out, how many, and where the list is.
    """
    from latentbids.utils.atomic import write_tsv

    verdicts = [_qc_verdict(p) for p in records["qc_path"]]
    records = records.assign(qc_pass=[v[0] for v in verdicts], qc_fail_reasons=[v[1] for v in verdicts])
    unchecked = records[records["qc_pass"].isna()]
    if len(unchecked):
        LOGGER.warning("%d GM map(s) have no participant QC verdict and are used unchecked: %s", len(unchecked),
                       ", ".join(unchecked["participant_id"]))
    failed = records[records["qc_pass"] == False]  # noqa: E712 (None means unchecked)
    table = failed[["participant_id", "session_id", "qc_fail_reasons"]]
    listing = out / "group" / "qc_excluded.tsv"
    # Written on every run (empty when nothing is excluded) so a stale list never survives a rerun.
    write_tsv(table if exclude else table.iloc[:0], listing)
    if exclude and len(failed):
        for row in failed.itertuples():
            LOGGER.info("%s %s left out of the group level: participant QC failed (%s)", row.participant_id,
                        row.session_id, row.qc_fail_reasons)
        LOGGER.warning("%d of %d GM map(s) failed participant QC and are left out (%s); list in %s",
                       len(failed), len(records), _reason_counts(failed["qc_fail_reasons"]), listing)
        records = records[records["qc_pass"] != False]  # noqa: E712
    elif len(failed):
        LOGGER.warning("%d GM map(s) failed participant QC and are used anyway (exclude_qc_failures = false)",
                       len(failed))
    kept = records["participant_id"].nunique()
    if exclude and len(failed) and kept < needed:
        total = kept + failed.loc[~failed["participant_id"].isin(records["participant_id"]), "participant_id"].nunique()
        raise MissingInputError(
            f"{len(failed)} GM map(s) failed participant QC ({_reason_counts(failed['qc_fail_reasons'])}; list in "
            f"{listing}), leaving {kept} of {total} subjects where training needs at least {needed}: inspect the "
            "sub-*.html reports, adjust the [anat] qc_* thresholds for these maps and rerun the participant level, "
            "or set exclude_qc_failures = false under [model] in a --config-file to use them anyway"
        )
    return records.drop(columns=["qc_path"]).reset_index(drop=True)
