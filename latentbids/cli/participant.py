"""The participant level as the CLI runs it: select, check, then run the Nipype workflow.

Exit-code policy for several subjects (docs/usage.md): bad inputs are reported and skipped, the
good ones are processed; the run ends with 0 when every selected image was processed, 1 when a
processing step failed for any subject, else 66 when some inputs were rejected, else 75 when some
subjects were skipped because another job was processing them (a temporary failure: rerun later).
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from latentbids.errors import EXIT_FAILURE, EXIT_MISSING_INPUT, EXIT_OK, EXIT_TEMPORARY, MissingInputError

LOGGER = logging.getLogger("latentbids")


def collect_jobs(config):
    """The T1w jobs of this run (with reusable GM maps attached) and the inputs rejected."""
    from latentbids.bids.input_checks import check_jobs
    from latentbids.bids.layout import get_layout, select_t1w

    ex = config.execution
    layout = get_layout(ex.bids_dir, ex.bids_database_dir)
    jobs = select_t1w(layout, ex.participant_label, ex.session_label, ex.bids_filters)
    if ex.derivatives:
        jobs = [_attach_existing_gm(job, ex.derivatives) for job in jobs]
    LOGGER.info("Selected %d T1w image(s) from %d subject(s)", len(jobs), len({j.subject for j in jobs}))
    good, bad = check_jobs(jobs)
    if not good:
        raise MissingInputError(
            f"None of the {len(jobs)} selected T1w image(s) is usable (first: {bad[0]}); fix or remove them"
        )
    return good, bad


def _attach_existing_gm(job, derivatives):
    from latentbids.anat.reuse import find_existing_gm_map

    found = find_existing_gm_map(derivatives, job.subject, job.session)
    if not found:
        return job
    path, kind = found
    LOGGER.info("%s: reusing GM map %s (%s)", job.label, path, kind)
    return dataclasses.replace(job, gm_map=Path(path), gm_map_kind=kind)


def check_model_grid(config, template) -> None:
    """Refuse a ``--model`` trained on another template or grid before any subject is processed."""
    import nibabel as nib
    import numpy as np

    from latentbids.model.bundle import load_bundle

    bundle = load_bundle(config.model.model)
    probe = nib.Nifti1Image(np.zeros(template.shape, "uint8"), template.affine)
    bundle.check_input(probe, space=template.space, name=f"participant grid {template.name}")
    LOGGER.info("--model %s: subjects will be encoded with it after processing", config.model.model)


def encode_with_existing_model(config, template, jobs, results) -> dict[str, str]:
    """Participant-level ``--model``: each job encodes only its own subjects (map/reduce)."""
    from pathlib import Path

    from latentbids.bids.naming import subject_dir
    from latentbids.cli.group import gm_map_name
    from latentbids.errors import LatentbidsError
    from latentbids.model.bundle import encode_with_model, load_bundle

    out = Path(config.execution.output_dir)
    # Encode the kind of map the model was trained on, whatever this run's default is.
    trained_on = load_bundle(config.model.model).meta.get("intensity", {}).get("input_map", config.model.input_map)
    modulated = trained_on == "modulated"
    for job in jobs:
        if results.get(job.label) != "ok":
            continue
        gm = out / subject_dir(job.subject, job.session) / gm_map_name(job.subject, job.session, template, modulated)
        try:
            encoded = encode_with_model(
                config.model.model, gm, participant_id=f"sub-{job.subject}", session_id=job.session,
                output_dir=out, space=template.space, device=config.execution.device,
                source=f"bids::{gm.relative_to(out).as_posix()}",
            )
        except LatentbidsError as exc:
            LOGGER.error("%s: encoding failed: %s", job.label, exc.message)
            results[job.label] = f"failed: encoding ({exc.message})"
            continue
        row = encoded["latent"].iloc[0]
        LOGGER.info("%s: encoded with fold %s (in_training=%s), error %.5f", job.label, row["fold"],
                    bool(row["in_training"]), float(row["error"]))
    return results


def run_participant_level(config, templates, atlas) -> int:
    """Process every selected T1w; return the exit code per the policy above."""
    from latentbids.cli.run import load_plugin

    good, bad = collect_jobs(config)
    if config.model.model:
        check_model_grid(config, templates[0])
    from latentbids.workflows.participant import LOCKED, run_participant_wf

    plugin, plugin_args = load_plugin(config)
    results = run_participant_wf(config, good, plugin=plugin, plugin_args=plugin_args)
    if config.model.model:
        results = encode_with_existing_model(config, templates[0], good, results)
    locked = {label for label, status in results.items() if status == LOCKED}
    failed = {label: status for label, status in results.items() if status not in ("ok", LOCKED)}
    for label, status in sorted(results.items()):
        LOGGER.info("%s: %s", label, status)
    for problem in bad:
        LOGGER.info("%s: input rejected: %s", problem.job.label, problem.reason)
    LOGGER.info(
        "Participant level finished: %d processed, %d failed, %d input(s) rejected, %d held by another job; "
        "outputs in %s", len(results) - len(failed) - len(locked), len(failed), len(bad), len(locked),
        config.execution.output_dir,
    )
    if failed:
        return EXIT_FAILURE
    if bad:
        return EXIT_MISSING_INPUT
    if locked:
        return EXIT_TEMPORARY
    return EXIT_OK
