"""The participant level, start to end: select and check the T1w images, run the workflow, and with
``--model`` encode each processed subject with an existing model.

Bad inputs are reported and skipped, the good ones processed; what happened to every selected image
is returned as a :class:`ParticipantOutcome`, which the CLI turns into the exit code
(:func:`latentbids.cli.participant.exit_code`, policy in docs/usage.md).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from latentbids.bids.input_checks import InputProblem
from latentbids.bids.jobs import T1wJob
from latentbids.errors import MissingInputError
from latentbids.settings import ParticipantSettings
from latentbids.workflows.participant.run import LOCKED, load_plugin, run_participant_wf

LOGGER = logging.getLogger("latentbids")


@dataclass(frozen=True)
class ParticipantOutcome:
    """What the participant level did with each selected image.

    ``results`` maps every processed (or attempted) job's label to ``"ok"``, :data:`LOCKED` or
    ``"failed: <reason>"``; ``rejected`` lists the inputs refused before any work; ``without_t1w`` the
    selected subjects that have no T1w image at all (not an error: named in a warning and the summary).
    """

    results: dict[str, str]
    rejected: tuple[InputProblem, ...] = ()
    without_t1w: tuple[str, ...] = ()  # selected subjects with no T1w image (``sub-<l>``), warned about

    @property
    def failed(self) -> dict[str, str]:
        return {label: status for label, status in self.results.items() if status not in ("ok", LOCKED)}

    @property
    def locked(self) -> list[str]:
        return [label for label, status in self.results.items() if status == LOCKED]


def collect_jobs(selection, derivatives: dict | None = None) -> tuple[list[T1wJob], list[InputProblem], list[str]]:
    """The T1w jobs of this run (with reusable GM maps attached), the inputs rejected, and the selected
    subjects without any T1w (``sub-<l>``); ``selection`` is the run's
    :class:`~latentbids.settings.run.Selection`, ``derivatives`` the ``-d NAME=PATH`` datasets.

    Raises :class:`~latentbids.errors.MissingInputError` (exit 66) when no selected image is usable.
    """
    from latentbids.bids.input_checks import check_jobs
    from latentbids.bids.layout import get_layout, select_t1w, subjects_without_t1w

    sel = selection
    layout = get_layout(str(sel.bids_dir), str(sel.database_dir))
    jobs = select_t1w(layout, list(sel.participant_label), list(sel.session_label), sel.filters)
    without = ["sub-" + s for s in subjects_without_t1w(layout, jobs, list(sel.participant_label))]
    if derivatives:
        jobs = [_attach_reused_gm(job, derivatives) for job in jobs]
    LOGGER.info("Selected %d T1w image(s) from %d subject(s)", len(jobs), len({j.subject for j in jobs}))
    good, bad = check_jobs(jobs)
    if not good:
        raise MissingInputError(
            f"None of the {len(jobs)} selected T1w image(s) is usable (first: {bad[0]}); fix or remove them"
        )
    return good, bad, without


def _attach_reused_gm(job: T1wJob, derivatives: dict[str, str]) -> T1wJob:
    from latentbids.anat.reuse import find_existing_gm_map

    found = find_existing_gm_map(derivatives, job.subject, job.session)
    if not found:
        return job
    path, kind = found
    LOGGER.info("%s: reusing GM map %s (%s)", job.label, path, kind)
    return dataclasses.replace(job, gm_map=Path(path), gm_map_kind=kind)


def check_model_grid(model_dir: str, template) -> None:
    """Check ``--model`` whole before any subject is processed: files, checksums, weights loadable as tensors,
    paths inside the folder, and the template grid (a damaged folder is exit 66, another grid exit 64)."""
    from latentbids.model.bundle_checks import verify_bundle

    bundle = verify_bundle(model_dir, space=template.space, shape=template.shape, affine=template.affine)
    LOGGER.info("--model %s: verified (%d fold(s), %s); subjects will be encoded with it after processing",
                model_dir, len(bundle.folds), bundle.grid_name())


def encode_with_existing_model(settings: ParticipantSettings, jobs: list[T1wJob],
                               results: dict[str, str]) -> dict[str, str]:
    """Participant-level ``--model``: each job encodes only its own subjects (map/reduce).

    The map encoded is the kind the model was trained on (modulated or not), whatever this run's
    default; a subject whose encoding fails gets a failed result.
    """
    from latentbids.bids.naming import gm_map_name, self_uri, subject_dir
    from latentbids.errors import LatentbidsError
    from latentbids.model.bundle import load_bundle
    from latentbids.model.subject_encoding import encode_with_model

    run = settings.run
    out, template, model_dir = run.output_dir, run.templates[0], settings.given_model
    trained_on = load_bundle(model_dir).meta.get("intensity", {}).get("input_map", settings.input_map)
    for job in jobs:
        if results.get(job.label) != "ok":
            continue
        gm = out / subject_dir(job.subject, job.session) / gm_map_name(
            job.subject, job.session, template.space, template.res, modulated=trained_on == "modulated")
        try:
            encoded = encode_with_model(
                model_dir, gm, participant_id=f"sub-{job.subject}", session_id=job.session, output_dir=out,
                space=template.space, device=run.device, source=self_uri(gm.relative_to(out)),
            )
        except LatentbidsError as exc:
            LOGGER.error("%s: encoding failed: %s", job.label, exc.message)
            results[job.label] = f"failed: encoding ({exc.message})"
            continue
        except (OSError, ValueError, RuntimeError) as exc:  # one subject's map: the others are still encoded
            LOGGER.error("%s: encoding failed: %s: %s", job.label, type(exc).__name__, exc)
            results[job.label] = f"failed: encoding ({type(exc).__name__}: {exc})"
            continue
        row = encoded.latent.iloc[0]
        LOGGER.info("%s: encoded with fold %s (in_training=%s), error %.5f", job.label, row["fold"],
                    bool(row["in_training"]), float(row["error"]))
    return results


def run_participant_level(settings: ParticipantSettings) -> ParticipantOutcome:
    """Process every selected T1w of a resolved run.

    Parameters
    ----------
    settings : ParticipantSettings
        Built once from the config (:func:`latentbids.settings.participant.participant_settings`): the run's
        paths, threads, device, templates, atlas and selection, the anatomical settings, ``-d``, ``--model``
        and ``--use-plugin``.

    Returns
    -------
    ParticipantOutcome
        Every job's result and the rejected inputs (also logged, one line each, and summed up).
    """
    run = settings.run
    good, bad, without = collect_jobs(run.selection, settings.derivatives)
    if settings.given_model is not None:
        check_model_grid(settings.given_model, run.templates[0])
    plugin, plugin_args = load_plugin(settings.use_plugin, run.multiproc_args)
    results = run_participant_wf(jobs=good, settings=settings, plugin=plugin, plugin_args=plugin_args)
    if settings.given_model is not None:
        results = encode_with_existing_model(settings, good, results)
    outcome = ParticipantOutcome(results=results, rejected=tuple(bad), without_t1w=tuple(without))
    for label, status in sorted(results.items()):
        LOGGER.info("%s: %s", label, status)
    for problem in bad:
        LOGGER.info("%s: input rejected: %s", problem.job.label, problem.reason)
    named = ", ".join(without[:10]) + (" ..." if len(without) > 10 else "")
    no_t1w = f", {len(without)} subject(s) without a T1w ({named})" if without else ""
    LOGGER.info(
        "Participant level finished: %d processed, %d failed, %d input(s) rejected, %d held by another job%s; "
        "outputs in %s", len(results) - len(outcome.failed) - len(outcome.locked), len(outcome.failed), len(bad),
        len(outcome.locked), no_t1w, run.output_dir,
    )
    return outcome
