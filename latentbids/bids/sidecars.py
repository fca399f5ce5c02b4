"""JSON sidecars that describe tabular and JSON outputs: columns, units, sources.

BIDS describes the columns of a TSV in a JSON file of the same name (``{"column": {"Description":
..., "Units": ...}}``).  This module holds the descriptions of the TSVs the participant level writes
and the helpers every other writer uses (the group-level analysis tables call
:func:`write_column_sidecar` with their own columns), so that no table leaves the pipeline without
saying what its numbers are and in which units.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ML = "mL"
UNITLESS = "1"

#: Regional table ``*_atlas-<atlas>_desc-gm_stats.tsv`` (anat.measures.regional_table).
STATS_COLUMNS: dict[str, dict] = {
    "index": {"Description": "Label value of the region in the atlas image (atlas-<atlas>_dseg.tsv at the "
                            "dataset root names every label)"},
    "name": {"Description": "Region name from the atlas label table"},
    "mean_gm": {"Description": "Mean GM probability over the region's voxels on the template grid "
                               "(n/a: the region has no voxel on this grid)", "Units": UNITLESS},
    "volume_ml": {"Description": "GM volume of the region: sum of the Jacobian-modulated GM map over the "
                                 "region times the voxel volume (native-space millilitres)", "Units": ML},
}

#: Participant QC table ``*_qc.tsv``: identifiers, volumes, shared measures and verdict
#: (interfaces.anat.QualityMetrics); the gated measures are described beside their computation
#: (anat.measures.QC_MEASURE_COLUMNS) and merged in by the participant workflow.
QC_COLUMNS: dict[str, dict] = {
    "participant_id": {"Description": "Participant identifier (sub-<label>)"},
    "session_id": {"Description": "Session identifier (ses-<label>)"},
    "TIV_ml": {"Description": "Total intracranial volume: CSF + GM + WM posteriors (native space)", "Units": ML},
    "GM_ml": {"Description": "Total GM volume (native space)", "Units": ML},
    "GM_fraction": {"Description": "GM_ml / TIV_ml", "Units": UNITLESS},
    "gm_max": {"Description": "Maximum of the template-space GM probability map (reported, not gated)",
               "Units": UNITLESS},
    "gm_template_corr": {"Description": "Pearson correlation of the GM map with the template's GM prior inside "
                                        "the template brain mask", "Units": UNITLESS},
    "gm_mean_in_mask": {"Description": "Mean GM probability inside the template brain mask (reported, not gated)",
                        "Units": UNITLESS},
    "t1w_template_corr": {"Description": "Pearson correlation of the registered T1w brain with the template T1w "
                                         "inside the template brain mask (registration check, reported)",
                          "Units": UNITLESS},
    "qc_pass": {"Description": "True when every check passed (thresholds in logs/<run_id>/config.toml, [anat])",
                "Levels": {"True": "every check passed", "False": "at least one check failed"}},
    "qc_fail_reasons": {"Description": "The failed checks, separated by ';' (n/a when none failed)"},
}

#: ``atlas-<atlas>_dseg.tsv`` at the dataset root.
DSEG_COLUMNS: dict[str, dict] = {
    "index": {"Description": "Label value in the atlas image"},
    "name": {"Description": "Region name"},
}

#: ``*_volumes.json``: the units of its keys (anat.measures.tissue_volumes).
VOLUMES_METADATA: dict = {
    "Description": "Tissue volumes of the T1w in native space: sums of the Atropos CSF/GM/WM posteriors "
                   "times the voxel volume; TIV is their sum",
    "Units": {"CSF_ml": ML, "GM_ml": ML, "WM_ml": ML, "TIV_ml": ML, "brain_mask_ml": ML,
              "GM_fraction": UNITLESS},
}


def column_sidecar(columns: Mapping[str, str | Mapping], **extra) -> dict:
    """A BIDS TSV sidecar: ``{column: {"Description": ..., ["Units": ...]}}`` plus ``extra`` fields.

    A plain string is taken as the description.  Use for every TSV written into the derivatives.
    """
    out: dict = {}
    for column, spec in columns.items():
        out[str(column)] = {"Description": spec} if isinstance(spec, str) else dict(spec)
    out.update(extra)
    return out


def sidecar_path(data_file: str | os.PathLike) -> Path:
    """``x.tsv`` / ``x.nii.gz`` -> ``x.json``."""
    path = Path(data_file)
    for ext in (".nii.gz", ".tsv.gz", ".tsv", ".nii", ".json"):
        if path.name.endswith(ext):
            return path.with_name(path.name[: -len(ext)] + ".json")
    return path.with_suffix(".json")


def write_column_sidecar(tsv_path: str | os.PathLike, columns: Mapping[str, str | Mapping],
                         only_present: bool = True, **extra) -> Path:
    """Write ``<tsv>.json`` describing the TSV's columns (atomically; returns its path).

    With ``only_present`` the sidecar lists exactly the columns the TSV has (a description for a
    column the file lacks would mislead); a present column with no description is an error, so a
    new column cannot slip out undocumented.
    """
    from latentbids.utils.atomic import write_json

    tsv_path = Path(tsv_path)
    present = tsv_path.read_text(encoding="utf-8").split("\n", 1)[0].rstrip("\r").split("\t")
    missing = [c for c in present if c not in columns]
    if missing:
        raise ValueError(f"{tsv_path.name}: no description for column(s) {missing}")
    chosen = {c: columns[c] for c in present} if only_present else dict(columns)
    return write_json(sidecar_path(tsv_path), column_sidecar(chosen, **extra))


def undocumented_columns(tsv_path: str | os.PathLike) -> list[str]:
    """Columns of a TSV that its JSON sidecar does not describe (all of them when there is none)."""
    import json

    tsv_path = Path(tsv_path)
    columns = tsv_path.read_text(encoding="utf-8").split("\n", 1)[0].rstrip("\r").split("\t")
    side = sidecar_path(tsv_path)
    described = json.loads(side.read_text()) if side.is_file() else {}
    return [c for c in columns if not isinstance(described.get(c), dict) or not described[c].get("Description")]
