"""``--reports-only``: the participant reports rebuilt from what is already in ``output_dir``.

Nothing is recomputed from the inputs: the reports are rebuilt from the participant-level outputs
(and the raw T1w for the background).  What the outputs do not keep (the bias-corrected T1w, the
native brain mask, the registered T1w) is not shown, and each rebuilt report says so.
"""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from latentbids.errors import MissingInputError

LOGGER = logging.getLogger("latentbids")


def _numbers_only(volumes_json: Path, folder: Path) -> str:
    """The volumes file without its metadata (units, description), as the report table expects."""
    data = json.loads(volumes_json.read_text())
    target = folder / volumes_json.name
    target.write_text(json.dumps({k: v for k, v in data.items() if isinstance(v, (int, float))}))
    return str(target)


def rebuild_participant_reports(run, template=None) -> list[Path]:
    """``sub-<l>[_ses-<s>].html`` for every selected T1w with outputs in ``output_dir``.

    Parameters
    ----------
    run : latentbids.settings.run.RunSettings
        The resolved run (selection and output folder).
    template : latentbids.resources.Template, optional
        The grid whose maps are shown (default: the first output space's).

    Returns
    -------
    list of Path
        The reports written; :class:`MissingInputError` (exit 66) when there is none to rebuild.
    """
    from latentbids.bids.layout import get_layout, select_t1w
    from latentbids.bids.naming import bids_name, gm_map_name, subject_dir
    from latentbids.reports.participant import build_participant_report
    from latentbids.utils.atomic import save_nifti

    sel, out = run.selection, Path(run.output_dir)
    template = template if template is not None else run.templates[0]
    jobs = select_t1w(get_layout(str(sel.bids_dir), str(sel.database_dir)), list(sel.participant_label),
                      list(sel.session_label), sel.filters)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="latentbids-reports-") as tmp:
        tmp = Path(tmp)
        template_t1w = save_nifti(template.t1w, tmp / "template_T1w.nii.gz")
        for job in jobs:
            anat = out / subject_dir(job.subject, job.session)
            ids = {"sub": job.subject, "ses": job.session}
            native = anat / bids_name("probseg", ".nii.gz", label="GM", **ids)
            on_grid = anat / gm_map_name(job.subject, job.session, template.space, template.res, modulated=False)
            qc, volumes = anat / bids_name("qc", ".tsv", **ids), anat / bids_name("volumes", ".json", **ids)
            if not on_grid.is_file():
                LOGGER.warning("%s: no %s in %s: run the participant level first; no report", job.label,
                               on_grid.name, anat)
                continue
            notes = ["Rebuilt from the outputs with --reports-only: the bias-corrected T1w, the native brain mask "
                     "and the registered T1w are not kept in the outputs, so the raw T1w is the background and "
                     "the registration is shown as the GM map on the template."]
            report = build_participant_report(
                out / f"{job.label}.html", job.label,
                t1w=str(job.path) if native.is_file() else None, gm=str(native) if native.is_file() else None,
                template_t1w=str(template_t1w), gm_template=str(on_grid),
                qc_tsv=str(qc) if qc.is_file() else None,
                volumes_json=_numbers_only(volumes, tmp) if volumes.is_file() else None, notes=notes,
            )
            written.append(Path(report))
    if not written:
        raise MissingInputError(f"No participant outputs in {out} for the selected subjects on the "
                                f"{template.name} grid: run the participant level first")
    return written
