"""The group level as the CLI runs it: gather the participant-level GM maps, then train/encode."""
from __future__ import annotations

import logging
from pathlib import Path

from latentbids.bids.naming import bids_name, res_label, subject_dir
from latentbids.errors import EXIT_OK, MissingInputError, NoDataError

LOGGER = logging.getLogger("latentbids")


def gm_map_name(subject: str, session: str | None, template, modulated: bool) -> str:
    """File name of a template-space GM map written by the participant level."""
    return bids_name(
        "probseg", ".nii.gz", sub=subject, ses=session, space=template.space,
        res=res_label(template.resolution), label="GM", desc="modulated" if modulated else None,
    )


def _find_maps(out: Path, ex, template, modulated: bool) -> tuple[list[dict], list[str]]:
    rows, missing = [], []
    for sub_dir in sorted(out.glob("sub-*")):
        if not sub_dir.is_dir():
            continue
        subject = sub_dir.name[4:]
        if ex.participant_label and subject not in ex.participant_label:
            continue
        sessions = [p.name[4:] for p in sorted(sub_dir.glob("ses-*")) if p.is_dir()] or [None]
        for session in sessions:
            if ex.session_label and session not in ex.session_label:
                continue
            path = out / subject_dir(subject, session) / gm_map_name(subject, session, template, modulated)
            if path.is_file():
                rows.append({"participant_id": f"sub-{subject}",
                             "session_id": f"ses-{session}" if session else "n/a", "gm_path": str(path)})
            else:
                missing.append(str(path.relative_to(out)))
    return rows, missing


def collect_gm_maps(config, template):
    """One row per subject/session with a template-space GM map in output_dir.

    Columns: participant_id, session_id, gm_path, plus participants.tsv columns (group, age, ...).
    Modulated maps are used by default; when none exist (GM maps reused through ``-d`` from
    sMRIPrep come unmodulated) the plain probability maps are used for every subject, said in the
    log and recorded in the config (``model.input_map``).  The two kinds are never mixed.
    """
    import pandas as pd

    from latentbids.bids.layout import read_participants

    ex = config.execution
    out = Path(ex.output_dir)
    modulated = config.model.input_map == "modulated"
    rows, missing = _find_maps(out, ex, template, modulated)
    if modulated and not rows:
        rows, missing = _find_maps(out, ex, template, modulated=False)
        if rows:
            LOGGER.warning("No modulated GM maps in %s: training on unmodulated GM probability maps", out)
            config.model.input_map = "probseg"
    for name in missing:
        LOGGER.warning("%s is missing: run the participant level for it", name)
    if not rows:
        if ex.participant_label or ex.session_label:
            raise NoDataError(f"No GM map in {out} matches the selected participants/sessions: check the labels")
        raise MissingInputError(
            f"No template-space GM maps in {out}: run 'latentbids {ex.bids_dir} {out} participant' first"
        )
    records = pd.DataFrame(rows)
    participants = read_participants(ex.bids_dir)
    if len(participants.columns):
        records = records.join(participants, on="participant_id")
    if "group" not in records.columns:
        for alt in ("diagnosis", "dx", "Group", "DX"):
            if alt in records.columns:
                records["group"] = records[alt]
                break
        else:
            records["group"] = "n/a"
    return records


def run_group_level_cli(config, templates, atlas) -> int:
    """Train (or encode with ``--model``) and write the group outputs."""
    from latentbids.bids.derivatives import write_run_config

    template = templates[0]
    records = collect_gm_maps(config, template)
    write_run_config(config.execution.output_dir, config.execution.run_id, config)  # input_map may have changed
    from latentbids.workflows.group import run_group_level

    LOGGER.info("Group level on %d GM map(s) from %d subject(s)", len(records), records["participant_id"].nunique())
    result = run_group_level(config, records, template, atlas)
    LOGGER.info("Group level finished; outputs in %s", config.execution.output_dir)
    for key, value in (result or {}).items():
        if isinstance(value, (str, Path)):
            LOGGER.debug("%s: %s", key, value)
    return EXIT_OK
