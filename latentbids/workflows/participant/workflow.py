"""Participant level: one sub-workflow per T1w job, writing BIDS-Derivatives (CONVENTIONS.md).

``init_participant_wf`` returns a Nipype workflow (``base_dir`` = the work dir) holding one
``single_subject_<label>_wf`` per job, so a failing subject only stops its own nodes;
:mod:`latentbids.workflows.participant.run` runs it.  The factories are keyword-only and take the
resolved settings (:mod:`latentbids.settings`), the grids as files
(:mod:`latentbids.workflows.participant.template_files`) and a ``precomputed`` mapping of what other pipelines
already made (:mod:`latentbids.workflows.participant.precomputed`), never the run configuration.

Outputs per job (``sub-<l>/[ses-<s>/]anat/``), names from :mod:`latentbids.bids.naming`:

* ``sub-<l>_label-GM_probseg.nii.gz`` (native, RAS-reoriented T1w grid)
* ``sub-<l>_space-<tpl>_res-<r>_label-GM_probseg.nii.gz`` and ``..._desc-modulated_...``
* ``sub-<l>_space-<tpl>_res-<r>_desc-brain_mask.nii.gz``
* ``sub-<l>_from-T1w_to-<tpl>_mode-image_xfm.h5`` and ``sub-<l>_from-<tpl>_to-T1w_mode-image_xfm.h5``
* ``sub-<l>_space-<tpl>_atlas-<atlas>_desc-gm_stats.tsv``, ``sub-<l>_volumes.json``, ``sub-<l>_qc.tsv``
* ``sub-<l>[_ses-<s>].html`` at the output root.

Every ``--output-spaces`` entry gets its template-space maps, transforms and regional table; the
first one also drives the segmentation and the QC table (:mod:`latentbids.workflows.participant.spaces`).
Template-space sidecars carry ``SpatialReference`` (the grid's reference image).  Jobs with a
reused GM map in ``precomputed`` (``-d/--derivatives``) take the reuse branch: resample + tables only.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from nipype.pipeline import engine as pe

from latentbids.anat.measures import QC_MEASURE_COLUMNS
from latentbids.bids.derivatives import crash_dir
from latentbids.bids.jobs import T1wJob
from latentbids.bids.naming import raw_uri
from latentbids.bids.sidecars import QC_COLUMNS, STATS_COLUMNS, VOLUMES_METADATA
from latentbids.interfaces.bids import DerivativesSink
from latentbids.interfaces.reports import ParticipantReport
from latentbids.settings import AnatSettings, ParticipantSettings
from latentbids.workflows.participant.anat import init_anat_wf, init_reuse_wf
from latentbids.workflows.participant.precomputed import ReusedGM
from latentbids.workflows.participant.spaces import init_template_space_wf
from latentbids.workflows.participant.template_files import TemplateFiles

MASK_METADATA = {"Type": "Brain", "Description": "Brain mask on the template grid: the native brain mask carried "
                                                 "through the forward transform, thresholded at 0.5"}
MODULATION_DESCRIPTION = ("GM probability times the Jacobian determinant of the template-to-subject mapping; "
                          "values may exceed 1")


def subject_wf_name(job: T1wJob) -> str:
    """Name of a job's sub-workflow, e.g. ``single_subject_sub_01_ses_1_wf``."""
    return f"single_subject_{re.sub(r'[^A-Za-z0-9]', '_', job.label)}_wf"


def init_participant_wf(*, jobs: Sequence[T1wJob], grids: Sequence[TemplateFiles], settings: ParticipantSettings,
                        precomputed: Mapping[str, Mapping] | None = None,
                        name: str = "latentbids_participant_wf") -> pe.Workflow:
    """The participant-level workflow: one ``single_subject_*_wf`` per job, ``base_dir`` = the work dir.

    Parameters
    ----------
    jobs : sequence of T1wJob
        The T1w images to process (labels must be unique).
    grids : sequence of TemplateFiles
        Every output space, in ``--output-spaces`` order; the first drives the segmentation.
    settings : ParticipantSettings
        The resolved run (:func:`latentbids.settings.participant_settings`).
    precomputed : mapping, optional
        ``{job.label: {"gm_template": {space: ReusedGM}}}`` for jobs whose GM map is reused
        (:func:`latentbids.workflows.participant.precomputed.precomputed_for`).
    name : str
        The workflow's name (also its folder in the work dir).

    Returns
    -------
    nipype.pipeline.engine.Workflow
        Not yet run.
    """
    if not jobs:
        raise ValueError("init_participant_wf needs at least one T1w job")
    run = settings.run
    wf = pe.Workflow(name=name, base_dir=str(run.work_dir))
    wf.config["execution"] = {
        "crashfile_format": "txt",
        "stop_on_first_crash": settings.stop_on_first_crash,
        "remove_unnecessary_outputs": False,
        "parameterize_dirs": False,
        # the scheduler loop sleeps this long between polls (default 2 s): a rerun that finds every
        # node in the cache is dominated by it
        "poll_sleep_duration": 0.25,
        # Nipype's own HTML graph report is rewritten non-atomically at the work dir's top by every
        # job; concurrent array jobs would race on it, and latentbids writes its own reports.
        "create_report": False,
    }
    seen = set()
    for job in jobs:
        sub_wf = init_single_subject_wf(
            job=job, grids=grids, anat=settings.anat, output_dir=run.output_dir,
            crash_dir=crash_dir(run.output_dir, job.subject, run.run_id or "run"), omp_nthreads=run.omp_nthreads,
            precomputed=(precomputed or {}).get(job.label),
        )
        if sub_wf.name in seen:
            raise ValueError(f"two jobs share the label {job.label}")
        seen.add(sub_wf.name)
        wf.add_nodes([sub_wf])
    return wf


def init_single_subject_wf(*, job: T1wJob, grids: Sequence[TemplateFiles], anat: AnatSettings,
                           output_dir: str | Path, crash_dir: str | Path, omp_nthreads: int = 1,
                           precomputed: Mapping | None = None, name: str | None = None) -> pe.Workflow:
    """One job's workflow: the anatomical (or reuse) workflow plus derivative sinks and the report.

    Parameters
    ----------
    job : T1wJob
        The T1w image.
    grids : sequence of TemplateFiles
        Every output space; the first drives the segmentation and the QC table.
    anat : AnatSettings
        The resolved ``[anat]`` settings.
    output_dir : path-like
        The derivatives root.
    crash_dir : path-like
        Where this job's crash files go (``sub-<l>/log/<run_id>/``).
    omp_nthreads : int
        Threads of each heavy node.
    precomputed : mapping, optional
        ``{"gm_template": {space: ReusedGM}}``: the job's reused GM maps (then no segmentation).
    name : str, optional
        Default :func:`subject_wf_name`.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        Every node sends its crash files to ``crash_dir``.
    """
    template, *extra_grids = grids
    sinks = _Sinks(job, str(Path(output_dir).absolute()))
    wf = pe.Workflow(name=name or subject_wf_name(job))
    report = pe.Node(ParticipantReport(label=job.label, template_t1w=template.t1w), name="report")
    wf.connect(report, "out_report", sinks.make("ds_report", root_name=f"{job.label}.html", sidecar=False), "in_file")
    reused = (precomputed or {}).get("gm_template")
    if reused:
        _connect_reuse(wf, sinks, template, anat, reused[template.space], report)
        for grid in extra_grids:
            _add_reused_space(wf, sinks, grid, anat, reused[grid.space])
    else:
        anat_wf, seg_meta = _connect_segmentation(wf, sinks, template, anat, omp_nthreads, report)
        for grid in extra_grids:
            _add_segmented_space(wf, sinks, grid, anat, anat_wf, omp_nthreads, seg_meta)
    for node in wf._get_all_nodes():
        node.config = {"execution": {"crashdump_dir": str(crash_dir), "crashfile_format": "txt"}}
    return wf


class _Sinks:
    """Makes one job's :class:`DerivativesSink` nodes (run in the main process: they only copy)."""

    def __init__(self, job: T1wJob, output_dir: str):
        self.job, self.output_dir = job, output_dir

    def make(self, name: str, **kwargs) -> pe.Node:
        sink = DerivativesSink(base_directory=self.output_dir, subject=self.job.subject,
                               session=self.job.session or "", source_files=[self.job.relpath], **kwargs)
        return pe.Node(sink, name=name, run_without_submitting=True)

    def on_grid(self, name: str, grid: TemplateFiles, metadata: dict | None = None, **entities) -> pe.Node:
        """A sink of a file on ``grid`` (space, res and Resolution set; SpatialReference in the sidecar)."""
        meta = {**(metadata or {}), "SpatialReference": grid.spatial_reference}
        return self.make(name, space=grid.space, res=grid.res_entity, resolution=grid.resolution_text,
                         metadata=meta, **entities)

    def stats(self, name: str, grid: TemplateFiles) -> pe.Node:
        return self.make(name, space=grid.space, atlas=grid.atlas_name, desc="gm", suffix="stats",
                         extension=".tsv", columns=STATS_COLUMNS)

    def transforms(self, suffix: str, space: str) -> tuple[pe.Node, pe.Node]:
        forward = self.make(f"ds_xfm_forward{suffix}", from_space="T1w", to_space=space, mode="image",
                            suffix="xfm", extension=".h5")
        inverse = self.make(f"ds_xfm_inverse{suffix}", from_space=space, to_space="T1w", mode="image",
                            suffix="xfm", extension=".h5")
        return forward, inverse


def _connect_reuse(wf: pe.Workflow, sinks: _Sinks, template: TemplateFiles, anat: AnatSettings, reused: ReusedGM,
                   report: pe.Node) -> None:
    """First space of a job with a reused GM map: resample it, measure it, report it."""
    job = sinks.job
    reuse = init_reuse_wf(template=template, settings=anat, kind=reused.kind, subject_label=f"sub-{job.subject}",
                          session_label=f"ses-{job.session}" if job.session else "")
    reuse.inputs.inputnode.gm_map = reused.path
    report.inputs.notes = [f"GM map reused from {reused.uri} ({reused.kind}); no segmentation was run."]
    ds_qc = sinks.make("ds_qc", suffix="qc", extension=".tsv", columns={**QC_COLUMNS, **QC_MEASURE_COLUMNS})
    # fmt: off
    wf.connect([
        (reuse, sinks.on_grid("ds_gm_template", template, reused.metadata(), label="GM", suffix="probseg"),
         [("outputnode.gm_template", "in_file")]),
        (reuse, sinks.stats("ds_stats", template), [("outputnode.stats", "in_file")]),
        (reuse, ds_qc, [("outputnode.qc", "in_file")]),
        (reuse, report, [("outputnode.gm_template", "gm_template"), ("outputnode.qc", "qc_tsv")]),
    ])
    # fmt: on
    if reused.kind == "cat12":
        ds_mod = sinks.on_grid("ds_modulated", template, {**reused.metadata(), "Modulated": True}, label="GM",
                               desc="modulated", suffix="probseg")
        wf.connect(reuse, "outputnode.modulated", ds_mod, "in_file")


def _segmentation_metadata(anat: AnatSettings) -> dict:
    meta = {
        "Description": "Gray-matter posterior probability from 3-class Atropos segmentation guided by "
                       "template CSF/GM/WM priors",
        "BrainExtraction": anat.brain_extraction,
        "Registration": anat.registration,
        "AtroposPriorWeight": anat.prior_weight,
        "AtroposMRF": anat.mrf,
    }
    if anat.brain_extraction == "hdbet":
        meta.update(HDBETMode=anat.hdbet_mode, HDBETTestTimeAugmentation=anat.hdbet_tta)
    return meta


def _connect_segmentation(wf: pe.Workflow, sinks: _Sinks, template: TemplateFiles, anat: AnatSettings,
                          omp_nthreads: int, report: pe.Node) -> tuple[pe.Workflow, dict]:
    """First space of a segmented job: the anatomical workflow and its sinks; returns it and its metadata."""
    job = sinks.job
    anat_wf = init_anat_wf(template=template, settings=anat, subject_label=f"sub-{job.subject}",
                           session_label=f"ses-{job.session}" if job.session else "", omp_nthreads=omp_nthreads,
                           n4_shrink=_n4_shrink(job))
    anat_wf.inputs.inputnode.t1w = str(job.path)
    seg_meta = _segmentation_metadata(anat)
    ds_fwd, ds_inv = sinks.transforms("", template.space)
    sources = {"Sources": [raw_uri(job.relpath)]}
    # fmt: off
    wf.connect([
        (anat_wf, sinks.make("ds_gm", label="GM", suffix="probseg",
                             metadata={**seg_meta, "SpatialReference": raw_uri(job.relpath)}),
         [("outputnode.gm", "in_file")]),
        (anat_wf, sinks.on_grid("ds_gm_template", template, seg_meta, label="GM", suffix="probseg"),
         [("outputnode.gm_template", "in_file")]),
        (anat_wf, sinks.on_grid("ds_modulated", template, {**seg_meta, "Modulated": True,
                                                            "ModulationDescription": MODULATION_DESCRIPTION},
                                label="GM", desc="modulated", suffix="probseg"),
         [("outputnode.modulated", "in_file")]),
        (anat_wf, sinks.on_grid("ds_mask_template", template, {**MASK_METADATA,
                                                                "BrainExtraction": anat.brain_extraction},
                                desc="brain", suffix="mask"),
         [("outputnode.mask_template", "in_file")]),
        (anat_wf, ds_fwd, [("outputnode.forward", "in_file")]),
        (anat_wf, ds_inv, [("outputnode.inverse", "in_file")]),
        (anat_wf, sinks.stats("ds_stats", template), [("outputnode.stats", "in_file")]),
        (anat_wf, sinks.make("ds_volumes", suffix="volumes", extension=".json",
                             metadata={**VOLUMES_METADATA, **sources}), [("outputnode.volumes", "in_file")]),
        (anat_wf, sinks.make("ds_qc", suffix="qc", extension=".tsv", columns={**QC_COLUMNS, **QC_MEASURE_COLUMNS}),
         [("outputnode.qc", "in_file")]),
        (anat_wf, report, [("outputnode.t1w_preproc", "t1w"), ("outputnode.gm", "gm"),
                           ("outputnode.brain_mask", "mask"), ("outputnode.warped", "warped"),
                           ("outputnode.qc", "qc_tsv"), ("outputnode.volumes", "volumes_json")]),
    ])
    # fmt: on
    return anat_wf, seg_meta


def _space_key(space: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", space)


def _add_reused_space(wf: pe.Workflow, sinks: _Sinks, grid: TemplateFiles, anat: AnatSettings,
                      reused: ReusedGM) -> None:
    """A further output space of a job with a reused GM map: resample that space's map onto it."""
    job, key = sinks.job, _space_key(grid.space)
    reuse = init_reuse_wf(template=grid, settings=anat, kind=reused.kind, subject_label=f"sub-{job.subject}",
                          session_label=f"ses-{job.session}" if job.session else "", name=f"reuse_{key}_wf")
    reuse.inputs.inputnode.gm_map = reused.path
    ds_gm = sinks.on_grid(f"ds_gm_template_{key}", grid, reused.metadata(), label="GM", suffix="probseg")
    wf.connect([(reuse, ds_gm, [("outputnode.gm_template", "in_file")]),
                (reuse, sinks.stats(f"ds_stats_{key}", grid), [("outputnode.stats", "in_file")])])
    if reused.kind == "cat12":
        ds_mod = sinks.on_grid(f"ds_modulated_{key}", grid, {**reused.metadata(), "Modulated": True}, label="GM",
                               desc="modulated", suffix="probseg")
        wf.connect(reuse, "outputnode.modulated", ds_mod, "in_file")


def _add_segmented_space(wf: pe.Workflow, sinks: _Sinks, grid: TemplateFiles, anat: AnatSettings,
                         anat_wf: pe.Workflow, omp_nthreads: int, seg_meta: dict) -> None:
    """Maps, transforms and the regional table of a further output space of a segmented job."""
    key = _space_key(grid.space)
    space_wf = init_template_space_wf(template=grid, settings=anat, omp_nthreads=omp_nthreads, name=f"space_{key}_wf")
    ds_fwd, ds_inv = sinks.transforms(f"_{key}", grid.space)
    mask_meta = {**MASK_METADATA, "BrainExtraction": anat.brain_extraction}
    # fmt: off
    wf.connect([
        (anat_wf, space_wf, [("brain_extraction.out_brain", "inputnode.brain"), ("outputnode.gm", "inputnode.gm"),
                             ("outputnode.brain_mask", "inputnode.mask")]),
        (space_wf, sinks.on_grid(f"ds_gm_template_{key}", grid, seg_meta, label="GM", suffix="probseg"),
         [("outputnode.gm_template", "in_file")]),
        (space_wf, sinks.on_grid(f"ds_modulated_{key}", grid, {**seg_meta, "Modulated": True}, label="GM",
                                 desc="modulated", suffix="probseg"), [("outputnode.modulated", "in_file")]),
        (space_wf, sinks.on_grid(f"ds_mask_template_{key}", grid, mask_meta, desc="brain", suffix="mask"),
         [("outputnode.mask_template", "in_file")]),
        (space_wf, ds_fwd, [("outputnode.forward", "in_file")]),
        (space_wf, ds_inv, [("outputnode.inverse", "in_file")]),
        (space_wf, sinks.stats(f"ds_stats_{key}", grid), [("outputnode.stats", "in_file")]),
    ])
    # fmt: on


def _n4_shrink(job: T1wJob) -> int:
    """N4's shrink factor from the T1w header's voxel size, fixed when the workflow is built (so a
    2 mm scan keeps the node inputs, and the cache, it always had); 0 (decided by the node) when the
    header cannot be read here."""
    import nibabel as nib

    from latentbids.anat.preprocess import n4_shrink_factor

    try:
        return n4_shrink_factor(min(float(z) for z in nib.load(str(job.path)).header.get_zooms()[:3]))
    except Exception:  # noqa: BLE001 - the node reports an unreadable input itself
        return 0
