"""Participant level: one sub-workflow per T1w job, writing BIDS-Derivatives (CONVENTIONS.md).

``init_participant_wf(config, jobs)`` returns a Nipype workflow (``base_dir`` = the work dir) holding
one ``single_subject_<label>_wf`` per job, so a failing subject only stops its own nodes.
``run_participant_wf`` runs it and reports ``{job.label: "ok" | "failed: <reason>"}``.

Outputs per job (``sub-<l>/[ses-<s>/]anat/``), names from :mod:`latentbids.bids.naming`:

* ``sub-<l>_label-GM_probseg.nii.gz`` (native, RAS-reoriented T1w grid)
* ``sub-<l>_space-<tpl>_res-<r>_label-GM_probseg.nii.gz`` and ``..._desc-modulated_...``
* ``sub-<l>_space-<tpl>_res-<r>_desc-brain_mask.nii.gz``
* ``sub-<l>_from-T1w_to-<tpl>_mode-image_xfm.h5`` and ``sub-<l>_from-<tpl>_to-T1w_mode-image_xfm.h5``
* ``sub-<l>_space-<tpl>_atlas-<atlas>_desc-gm_stats.tsv``, ``sub-<l>_volumes.json``, ``sub-<l>_qc.tsv``
* ``sub-<l>[_ses-<s>].html`` at the output root.

Every ``--output-spaces`` entry gets its template-space maps, transforms and regional table; the
first one also drives the segmentation and the QC table (:mod:`latentbids.workflows.spaces`).
Template-space sidecars carry ``SpatialReference`` (the grid's reference image).
Jobs with ``gm_map`` set (``-d/--derivatives``) take the reuse branch: resample + tables only.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from latentbids.anat.measures import QC_MEASURE_COLUMNS
from latentbids.anat.reuse import find_existing_gm_map
from latentbids.bids.jobs import T1wJob
from latentbids.bids.naming import derivative_uri, raw_uri
from latentbids.bids.sidecars import QC_COLUMNS, STATS_COLUMNS, VOLUMES_METADATA
from latentbids.interfaces.bids import DerivativesSink
from latentbids.interfaces.reports import ParticipantReport
from latentbids.workflows.anat import AnatSettings, TemplateFiles, init_anat_wf, init_reuse_wf, qc_thresholds
from latentbids.workflows.multiproc import CancellableMultiProcPlugin
from latentbids.workflows.spaces import init_template_space_wf

LOGGER = logging.getLogger("latentbids")
MASK_METADATA = {"Type": "Brain", "Description": "Brain mask on the template grid: the native brain mask carried "
                                                 "through the forward transform, thresholded at 0.5"}

#: The result of a job whose subject another running latentbids process holds (exit 75 if nothing worse).
LOCKED = "failed: another latentbids job is processing it right now; rerun when it ends"

__all__ = ["find_existing_gm_map", "init_participant_wf", "init_single_subject_wf", "prepare_resources",
           "run_participant_wf"]


# ------------------------------------------------------------------------------------------------
# configuration -> workflow settings
def anat_settings(config) -> AnatSettings:
    """The anatomical settings of a run.

    ``--sloppy`` (tiny fast settings for tests) swaps HD-BET for the template-registration brain
    mask, uses antspyx's ``SyN`` preset (measured faster than ``antsRegistrationSyNQuick[s]`` on
    2 mm data: 4.5 s vs 8.7 s on 2 cores) and fewer N4/Atropos iterations: ~0.5x the time, GM Dice
    0.69 instead of 0.82 on sub-IXI012 (BENCHMARKS.md).
    """
    ex, an = config.execution, config.anat
    sloppy = bool(ex.sloppy)
    registration = "SyN" if sloppy else an.registration
    for old, new in (("qc_min_max", "qc_min_peak"), ("qc_nonzero_range", "qc_min_coverage and qc_max_outside")):
        if getattr(an, old, None) is not None:
            LOGGER.warning("[anat] %s is no longer used (it depended on the grid's box and on numerical tails): "
                           "see %s", old, new)
    return AnatSettings(
        brain_extraction="template" if sloppy else an.brain_extraction,
        hdbet_mode=str(an.hdbet_mode),
        hdbet_tta=bool(an.hdbet_tta),
        registration=registration,
        prior_weight=float(an.atropos_prior_weight),
        mrf=float(an.atropos_mrf),
        atropos_iterations=3 if sloppy else 5,
        n4_iterations=(50, 50, 30) if sloppy else (50, 50, 50, 50),
        seed=int(ex.random_seed),
        device=_device_type(ex.device),
        qc_floor=float(an.qc_floor),
        qc=qc_thresholds(an),
    )


def _device_type(spec: str) -> str:
    """``cpu`` or ``cuda[:N]`` for HD-BET, resolved by the one rule the whole app uses."""
    from latentbids.model.device import resolve_device

    return str(resolve_device(spec))


def multiproc_args(config) -> dict:
    """MultiProc arguments from ``--nprocs``/``--mem`` (a plugin file's own values override them)."""
    ex = config.execution
    args = {"n_procs": int(ex.nprocs or 0) or (os.cpu_count() or 1), "raise_insufficient": False}
    if ex.mem_gb:
        args["memory_gb"] = float(ex.mem_gb)
    return args


def work_dir_of(config) -> Path:
    """The Nipype work dir: ``config.execution.work_dir`` or ``./work`` (fMRIPrep's default)."""
    return Path(config.execution.work_dir or Path.cwd() / "work").absolute()


def prepare_resources(config, space_spec: str | None = None) -> TemplateFiles:
    """Write the template images and the resampled atlas once into ``<work_dir>/resources``.

    Templates come only from :func:`latentbids.resources.get_template`, the atlas from
    :func:`get_atlas` + :func:`resample_atlas`.  Existing files are kept (their timestamps are part of
    Nipype's cache keys, so rewriting them would rerun every subject).
    """
    from latentbids.resources import DEFAULT_OUTPUT_SPACE, get_atlas, get_template, resample_atlas
    from latentbids.resources.templates import parse_output_space
    from latentbids.utils.atomic import save_nifti, write_tsv
    from latentbids.utils.locks import locked

    spec = space_spec or (config.spatial.output_spaces or [DEFAULT_OUTPUT_SPACE])[0]
    space, resolution = parse_output_space(spec)
    tpl = get_template(space, resolution, templateflow_home=config.execution.templateflow_home or None)
    atlas = get_atlas(config.spatial.atlas, labels_path=config.spatial.atlas_labels or None,
                      nilearn_data=config.execution.nilearn_data or None)
    res = tpl.res
    # The atlas folder is keyed by content, so another atlas with the same name never reuses this one.
    digest = hashlib.sha256(np.ascontiguousarray(atlas.img.dataobj).tobytes())
    digest.update(atlas.label_table().to_csv(sep="\t", index=False).encode())
    folder = work_dir_of(config) / "resources" / f"tpl-{space}_res-{res}_atlas-{atlas.bids_name}-{digest.hexdigest()[:8]}"
    paths = {key: folder / f"tpl-{space}_res-{res}_{key}.nii.gz" for key in ("t1w", "mask", "csf", "gm", "wm")}
    atlas_path = folder / f"atlas-{atlas.bids_name}_res-{res}_dseg.nii.gz"
    labels_path = folder / f"atlas-{atlas.bids_name}_dseg.tsv"
    # Concurrent jobs on one work dir: one writes, the others wait and then find the files.  Existing
    # files are never rewritten (their timestamps are part of Nipype's cache keys).
    with locked(folder.parent / f".{folder.name}.lock"):
        for key, path in paths.items():
            if not path.is_file():
                save_nifti(getattr(tpl, key), path)
        if not atlas_path.is_file():
            save_nifti(resample_atlas(atlas, tpl.t1w), atlas_path)
        if not labels_path.is_file():
            write_tsv(atlas.label_table(), labels_path)
    paths = {key: str(path) for key, path in paths.items()}
    return TemplateFiles(
        space=space, resolution=tpl.resolution, res_entity=res, atlas=str(atlas_path),
        atlas_labels=str(labels_path), atlas_name=atlas.bids_name, resolution_text=tpl.resolution_text,
        **paths,
    )


def grid_metadata(config, template: TemplateFiles) -> dict:
    """Sidecar fields every template-space file carries: which grid, and its reference image."""
    from latentbids.resources import get_template

    tpl = get_template(template.space, template.res_entity, config.execution.templateflow_home or None)
    return {"SpatialReference": tpl.spatial_reference}


def _node_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", label)


def subject_wf_name(job: T1wJob) -> str:
    """Name of a job's sub-workflow, e.g. ``single_subject_sub_01_ses_1_wf``."""
    return f"single_subject_{_node_name(job.label)}_wf"


def crash_dir(config, job: T1wJob) -> Path:
    """``<output_dir>/sub-<l>/log/<run_id>/`` (CONVENTIONS.md)."""
    from latentbids.bids.derivatives import crash_dir as _crash_dir

    return _crash_dir(Path(config.execution.output_dir).absolute(), job.subject,
                      config.execution.run_id or "run")


# ------------------------------------------------------------------------------------------------
def _sink(name: str, job: T1wJob, output_dir: str, **kwargs) -> pe.Node:
    sink = DerivativesSink(base_directory=output_dir, subject=job.subject, session=job.session or "",
                           source_files=[job.relpath], **kwargs)
    return pe.Node(sink, name=name, run_without_submitting=True)


def _reused_map(config, job: T1wJob, space: str) -> tuple[str, str]:
    """The ``-d`` GM map of ``job`` to put on a ``space`` grid (a map in that space when there is one)."""
    found = find_existing_gm_map(config.execution.derivatives, job.subject, job.session, space=space)
    return found if found else (str(job.gm_map), job.gm_map_kind or "smriprep")


def _reuse_metadata(config, path: str, kind: str) -> dict:
    uri = derivative_uri(path, config.execution.derivatives)
    return {"Description": f"GM map reused from an existing {kind} derivative, resampled to the grid",
            "ReusedFrom": uri, "Sources": [uri]}


def _add_template_space(wf: pe.Workflow, job: T1wJob, config, template: TemplateFiles, settings: AnatSettings,
                        anat: pe.Workflow | None, omp_nthreads: int, seg_meta: dict) -> None:
    """Maps, transforms and the regional table of one more output space (not the first)."""
    out = str(Path(config.execution.output_dir).absolute())
    key = re.sub(r"[^A-Za-z0-9]", "", template.space)
    tpl, res = template.space, template.res_entity
    common = dict(space=tpl, res=res, resolution=template.resolution_text)
    grid = grid_metadata(config, template)
    ds_stats = _sink(f"ds_stats_{key}", job, out, space=tpl, atlas=template.atlas_name, desc="gm",
                     suffix="stats", extension=".tsv", columns=STATS_COLUMNS)
    if anat is None:  # -d: resample the reused map onto this grid too
        path, kind = _reused_map(config, job, tpl)
        reuse = init_reuse_wf(template, settings, kind=kind, subject_label=f"sub-{job.subject}",
                              session_label=f"ses-{job.session}" if job.session else "", name=f"reuse_{key}_wf")
        reuse.inputs.inputnode.gm_map = path
        meta = _reuse_metadata(config, path, kind)
        ds_gm = _sink(f"ds_gm_template_{key}", job, out, label="GM", suffix="probseg", metadata={**meta, **grid},
                      **common)
        wf.connect([(reuse, ds_gm, [("outputnode.gm_template", "in_file")]),
                    (reuse, ds_stats, [("outputnode.stats", "in_file")])])
        if kind == "cat12":
            ds_mod = _sink(f"ds_modulated_{key}", job, out, label="GM", desc="modulated", suffix="probseg",
                           metadata={**meta, **grid, "Modulated": True}, **common)
            wf.connect(reuse, "outputnode.modulated", ds_mod, "in_file")
        return
    space_wf = init_template_space_wf(template, settings, omp_nthreads=omp_nthreads, name=f"space_{key}_wf")
    ds_gm = _sink(f"ds_gm_template_{key}", job, out, label="GM", suffix="probseg", metadata={**seg_meta, **grid},
                  **common)
    ds_mod = _sink(f"ds_modulated_{key}", job, out, label="GM", desc="modulated", suffix="probseg",
                   metadata={**seg_meta, **grid, "Modulated": True}, **common)
    ds_mask = _sink(f"ds_mask_template_{key}", job, out, desc="brain", suffix="mask",
                    metadata={**MASK_METADATA, "BrainExtraction": settings.brain_extraction, **grid}, **common)
    ds_fwd = _sink(f"ds_xfm_forward_{key}", job, out, from_space="T1w", to_space=tpl, mode="image", suffix="xfm",
                   extension=".h5")
    ds_inv = _sink(f"ds_xfm_inverse_{key}", job, out, from_space=tpl, to_space="T1w", mode="image", suffix="xfm",
                   extension=".h5")
    # fmt: off
    wf.connect([
        (anat, space_wf, [("brain_extraction.out_brain", "inputnode.brain"), ("outputnode.gm", "inputnode.gm"),
                          ("outputnode.brain_mask", "inputnode.mask")]),
        (space_wf, ds_gm, [("outputnode.gm_template", "in_file")]),
        (space_wf, ds_mod, [("outputnode.modulated", "in_file")]),
        (space_wf, ds_mask, [("outputnode.mask_template", "in_file")]),
        (space_wf, ds_fwd, [("outputnode.forward", "in_file")]),
        (space_wf, ds_inv, [("outputnode.inverse", "in_file")]),
        (space_wf, ds_stats, [("outputnode.stats", "in_file")]),
    ])
    # fmt: on


def init_single_subject_wf(job: T1wJob, config, template: TemplateFiles, settings: AnatSettings,
                           omp_nthreads: int = 1, name: str | None = None,
                           extra_templates: tuple[TemplateFiles, ...] = ()) -> pe.Workflow:
    """One job's workflow: the anatomical (or reuse) workflow plus derivative sinks and the report.

    ``template`` is the first output space; ``extra_templates`` the others (maps and tables only).
    """
    out = str(Path(config.execution.output_dir).absolute())
    wf = pe.Workflow(name=name or subject_wf_name(job))
    sub_label = f"sub-{job.subject}"
    ses_label = f"ses-{job.session}" if job.session else ""
    tpl, res = template.space, template.res_entity
    report = pe.Node(ParticipantReport(label=job.label, template_t1w=template.t1w), name="report")
    ds_report = _sink("ds_report", job, out, root_name=f"{job.label}.html", sidecar=False)
    wf.connect(report, "out_report", ds_report, "in_file")

    common_tpl = dict(space=tpl, res=res, resolution=template.resolution_text)
    grid = grid_metadata(config, template)
    ds_stats = _sink("ds_stats", job, out, space=tpl, atlas=template.atlas_name, desc="gm", suffix="stats",
                     extension=".tsv", columns=STATS_COLUMNS)
    ds_qc = _sink("ds_qc", job, out, suffix="qc", extension=".tsv", columns={**QC_COLUMNS, **QC_MEASURE_COLUMNS})
    ds_gm_tpl = _sink("ds_gm_template", job, out, label="GM", suffix="probseg", **common_tpl)

    if job.gm_map is not None:
        path, kind = _reused_map(config, job, tpl)
        reuse = init_reuse_wf(template, settings, kind=kind, subject_label=sub_label, session_label=ses_label)
        reuse.inputs.inputnode.gm_map = path
        meta = _reuse_metadata(config, path, kind)
        ds_gm_tpl.inputs.metadata = {**meta, **grid}
        report.inputs.notes = [f"GM map reused from {meta['ReusedFrom']} ({kind}); no segmentation was run."]
        # fmt: off
        wf.connect([
            (reuse, ds_gm_tpl, [("outputnode.gm_template", "in_file")]),
            (reuse, ds_stats, [("outputnode.stats", "in_file")]),
            (reuse, ds_qc, [("outputnode.qc", "in_file")]),
            (reuse, report, [("outputnode.gm_template", "gm_template"), ("outputnode.qc", "qc_tsv")]),
        ])
        # fmt: on
        if kind == "cat12":
            ds_mod = _sink("ds_modulated", job, out, label="GM", desc="modulated", suffix="probseg",
                           metadata=dict(meta, Modulated=True, **grid), **common_tpl)
            wf.connect(reuse, "outputnode.modulated", ds_mod, "in_file")
        for extra in extra_templates:
            _add_template_space(wf, job, config, extra, settings, None, omp_nthreads, meta)
        return _with_crash_dir(wf, config, job)

    anat = init_anat_wf(template, settings, subject_label=sub_label, session_label=ses_label,
                        omp_nthreads=omp_nthreads, n4_shrink=_n4_shrink(job))
    anat.inputs.inputnode.t1w = str(job.path)
    seg_meta = {
        "Description": "Gray-matter posterior probability from 3-class Atropos segmentation guided by "
                       "template CSF/GM/WM priors",
        "BrainExtraction": settings.brain_extraction,
        "Registration": settings.registration,
        "AtroposPriorWeight": settings.prior_weight,
        "AtroposMRF": settings.mrf,
    }
    if settings.brain_extraction == "hdbet":
        seg_meta.update(HDBETMode=settings.hdbet_mode, HDBETTestTimeAugmentation=settings.hdbet_tta)
    ds_gm = _sink("ds_gm", job, out, label="GM", suffix="probseg",
                  metadata={**seg_meta, "SpatialReference": raw_uri(job.relpath)})
    ds_gm_tpl.inputs.metadata = {**seg_meta, **grid}
    ds_mod = _sink("ds_modulated", job, out, label="GM", desc="modulated", suffix="probseg",
                   metadata=dict(seg_meta, Modulated=True,
                                 ModulationDescription="GM probability times the Jacobian determinant of "
                                                       "the template-to-subject mapping; values may exceed 1",
                                 **grid),
                   **common_tpl)
    ds_mask = _sink("ds_mask_template", job, out, desc="brain", suffix="mask",
                    metadata={**MASK_METADATA, "BrainExtraction": settings.brain_extraction, **grid}, **common_tpl)
    ds_fwd = _sink("ds_xfm_forward", job, out, from_space="T1w", to_space=tpl, mode="image", suffix="xfm",
                   extension=".h5")
    ds_inv = _sink("ds_xfm_inverse", job, out, from_space=tpl, to_space="T1w", mode="image", suffix="xfm",
                   extension=".h5")
    ds_vol = _sink("ds_volumes", job, out, suffix="volumes", extension=".json",
                   metadata={**VOLUMES_METADATA, "Sources": [raw_uri(job.relpath)]})
    # fmt: off
    wf.connect([
        (anat, ds_gm, [("outputnode.gm", "in_file")]),
        (anat, ds_gm_tpl, [("outputnode.gm_template", "in_file")]),
        (anat, ds_mod, [("outputnode.modulated", "in_file")]),
        (anat, ds_mask, [("outputnode.mask_template", "in_file")]),
        (anat, ds_fwd, [("outputnode.forward", "in_file")]),
        (anat, ds_inv, [("outputnode.inverse", "in_file")]),
        (anat, ds_stats, [("outputnode.stats", "in_file")]),
        (anat, ds_vol, [("outputnode.volumes", "in_file")]),
        (anat, ds_qc, [("outputnode.qc", "in_file")]),
        (anat, report, [("outputnode.t1w_preproc", "t1w"), ("outputnode.gm", "gm"),
                        ("outputnode.brain_mask", "mask"), ("outputnode.warped", "warped"),
                        ("outputnode.qc", "qc_tsv"), ("outputnode.volumes", "volumes_json")]),
    ])
    # fmt: on
    for extra in extra_templates:
        _add_template_space(wf, job, config, extra, settings, anat, omp_nthreads, seg_meta)
    return _with_crash_dir(wf, config, job)


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


def _with_crash_dir(wf: pe.Workflow, config, job: T1wJob) -> pe.Workflow:
    """Send the crash files of every node of ``wf`` to the job's ``sub-<l>/log/<run_id>/``."""
    folder = str(crash_dir(config, job))
    for node in wf._get_all_nodes():
        node.config = {"execution": {"crashdump_dir": folder, "crashfile_format": "txt"}}
    return wf


def init_participant_wf(config, jobs: list[T1wJob], name: str = "latentbids_participant_wf") -> pe.Workflow:
    """The participant-level workflow: one ``single_subject_*_wf`` per job, base_dir = work dir."""
    if not jobs:
        raise ValueError("init_participant_wf needs at least one T1w job")
    if not config.execution.output_dir:
        raise ValueError("config.execution.output_dir is not set")
    from latentbids.resources import DEFAULT_OUTPUT_SPACE

    spaces = config.spatial.output_spaces or [DEFAULT_OUTPUT_SPACE]
    template, *extra_templates = [prepare_resources(config, spec) for spec in spaces]
    settings = anat_settings(config)
    omp = int(config.execution.omp_nthreads or 0) or max(1, min(8, os.cpu_count() or 1))
    wf = pe.Workflow(name=name, base_dir=str(work_dir_of(config)))
    wf.config["execution"] = {
        "crashfile_format": "txt",
        "stop_on_first_crash": bool(config.execution.stop_on_first_crash),
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
        sub_wf = init_single_subject_wf(job, config, template, settings, omp_nthreads=omp,
                                        extra_templates=tuple(extra_templates))
        if sub_wf.name in seen:
            raise ValueError(f"two jobs share the label {job.label}")
        seen.add(sub_wf.name)
        wf.add_nodes([sub_wf])
    return wf


# ------------------------------------------------------------------------------------------------
class _Progress:
    """Nipype ``status_callback``: one log line per finished step and per finished subject."""

    def __init__(self, jobs: list[T1wJob], wf: pe.Workflow):
        self.by_wf = {subject_wf_name(j): j for j in jobs}
        self.total: dict[str, int] = defaultdict(int)
        for sub_wf in wf._graph.nodes():
            job = self.by_wf.get(sub_wf.name)
            if job is not None and isinstance(sub_wf, pe.Workflow):
                # Nipype drops IdentityInterface nodes (inputnode/outputnode) from the run graph
                self.total[job.label] = sum(not isinstance(n.interface, niu.IdentityInterface)
                                            for n in sub_wf._get_all_nodes())
        self.done: dict[str, int] = defaultdict(int)
        self.failed: dict[str, str] = {}
        self.started: dict[str, float] = {}
        self.t0 = {j.label: None for j in jobs}

    def _job(self, node) -> T1wJob | None:
        for part in node.fullname.split("."):
            if part in self.by_wf:
                return self.by_wf[part]
        return None

    def __call__(self, node, status: str) -> None:
        job = self._job(node)
        if job is None:
            return
        key = node.fullname
        if status == "start":
            self.started[key] = time.time()
            if self.t0[job.label] is None:
                self.t0[job.label] = time.time()
            return
        step = node.name
        space = next((p[len("space_"):-len("_wf")] for p in node.fullname.split(".")
                      if p.startswith("space_") and p.endswith("_wf")), None)
        if space:  # a further output space (workflows/spaces.py): say which
            step = f"{step} ({space})"
        began = self.started.pop(key, None)
        if status == "end":
            self.done[job.label] += 1
            if not node.name.startswith("ds_") and not node.name.endswith("node"):
                if began is not None:
                    LOGGER.info("%s: %s finished (%.1f s)", job.label, step, time.time() - began)
                elif _has_result(node):  # MultiProc reports cached nodes with "end" only
                    LOGGER.info("%s: %s finished (cached)", job.label, step)
                # else: Linear reports "end" for nodes it skipped after a failure: they did not run
            if self.done[job.label] == self.total[job.label] and job.label not in self.failed:
                start = self.t0[job.label]
                how = f"{time.time() - start:.0f} s" if start is not None else "all steps cached"
                LOGGER.info("%s: participant level finished (%s)", job.label, how)
        elif status == "exception":
            self.failed.setdefault(job.label, f"step {step} crashed")
            LOGGER.error("%s: %s FAILED (see %s)", job.label, step, node.config["execution"].get("crashdump_dir"))


def _has_result(node) -> bool:
    try:
        return (Path(node.output_dir()) / f"result_{node.name}.pklz").is_file()
    except Exception:  # pragma: no cover - a node without an output dir
        return False


def _crash_reason(folder: Path, since: float, wf_name: str) -> str | None:
    """Last line of the newest crash file of ``wf_name`` written after ``since`` in ``folder``.

    The folder is per subject, so the sessions of one subject share it: a crash file is only
    attributed to the job whose sub-workflow name it mentions.
    """
    if not folder.is_dir():
        return None
    files = sorted((p for p in folder.glob("crash-*") if p.stat().st_mtime >= since - 1
                    and f".{wf_name}." in p.read_text(errors="replace")),
                   key=lambda p: p.stat().st_mtime)
    if not files:
        return None
    text = files[-1].read_text(errors="replace").strip().splitlines()
    lines = [ln.strip() for ln in text if ln.strip()]
    node = re.search(r"crash-\d+-\d+-[^-]+-(.+?)-[0-9a-f]{8}-", files[-1].name)
    last = next((ln for ln in reversed(lines) if "Error" in ln or "Exception" in ln), lines[-1] if lines else "")
    return f"{node.group(1) if node else 'a step'}: {last}"[:300]


def run_participant_wf(config, jobs: list[T1wJob], plugin: str | None = None,
                       plugin_args: dict | None = None) -> dict[str, str]:
    """Run the participant level; return ``{job.label: "ok" | "failed: <reason>"}``.

    MultiProc with ``config.execution.nprocs`` processes by default (or ``plugin``/``plugin_args``,
    e.g. from ``--use-plugin``); MultiProc is :class:`CancellableMultiProcPlugin`.  A failed subject does not stop the others unless
    ``config.execution.stop_on_first_crash``; crash files go to ``sub-<l>/log/<run_id>/``.
    """
    check_reuse_spaces(config, jobs)
    held, results = _lock_jobs(config, jobs)
    jobs = [job for job in jobs if job.label in held]
    if not jobs:
        return results
    try:
        results.update(_run_locked(config, jobs, plugin, plugin_args))
    finally:
        for handle in held.values():
            handle.close()
    return results


def check_reuse_spaces(config, jobs: list[T1wJob]) -> None:
    """Refuse, before any work, ``-d`` maps that are in another template than an output space.

    Putting a map of one template onto another template's grid needs a transform between the two
    templates; without one it would only pretend both were the same space (exit 64).
    """
    from latentbids.anat.reuse import map_space, space_mismatch
    from latentbids.errors import UsageError
    from latentbids.resources.templates import parse_output_space

    problems = []
    for spec in config.spatial.output_spaces:
        space, _ = parse_output_space(spec)
        for job in jobs:
            if job.gm_map is None:
                continue
            path, kind = _reused_map(config, job, space)
            why = space_mismatch(path, kind, space)
            if why:
                problems.append((job, map_space(path, kind), why))
    if problems:
        job, found, why = problems[0]
        spaces = sorted({p[1] for p in problems if p[1]})
        hint = (f"reuse them in their own space (--output-spaces {spaces[0]}:res-N; TemplateFlow cache needed)"
                if spaces else "give maps with a space- entity")
        raise UsageError(f"-d/--derivatives: {len(problems)} reused GM map(s) would change template space, first "
                         f"{job.label}: {why}: {hint}, or drop -d to segment these subjects")


def _lock_jobs(config, jobs: list[T1wJob]) -> tuple[dict, dict[str, str]]:
    """One job per subject/session at a time in a work dir (overlapping SLURM array tasks, resubmits).

    Returns the held lock handles by job label and a failure result for each job already locked by
    another running latentbids process.
    """
    from latentbids.utils.locks import try_lock

    held, busy = {}, {}
    for job in jobs:
        lock = work_dir_of(config) / "locks" / f"{subject_wf_name(job)}.lock"
        handle = try_lock(lock)
        if handle is None:
            LOGGER.error("%s: another latentbids job is processing it in this work dir (%s); skipped",
                         job.label, lock)
            busy[job.label] = LOCKED
        else:
            held[job.label] = handle
    return held, busy


def _run_locked(config, jobs: list[T1wJob], plugin: str | None, plugin_args: dict | None) -> dict[str, str]:
    wf = init_participant_wf(config, jobs)
    progress = _Progress(jobs, wf)
    plugin = plugin or "MultiProc"
    args = dict(plugin_args or {})
    if plugin in ("MultiProc", "LegacyMultiProc"):
        args = {**multiproc_args(config), **args}
    if plugin in ("MultiProc", "Linear", "LegacyMultiProc"):
        args.setdefault("status_callback", progress)
    since = time.time()
    error: Exception | None = None
    LOGGER.info("Participant level: %d job(s), plugin %s", len(jobs), plugin)
    # MultiProc runs as latentbids' cancellable variant (workers a SIGTERM ends at once)
    runner = CancellableMultiProcPlugin(plugin_args=args) if plugin == "MultiProc" else plugin
    try:
        wf.run(plugin=runner, plugin_args=args)
    except Exception as exc:  # nipype raises RuntimeError listing failed nodes at the end
        error = exc
    results: dict[str, str] = {}
    for job in jobs:
        reason = progress.failed.get(job.label)
        crash = _crash_reason(crash_dir(config, job), since, subject_wf_name(job))
        if crash is not None:  # the crash file names the exception; the callback only the step
            reason = crash
        if reason is None and error is not None and progress.done.get(job.label, 0) < progress.total[job.label] \
                and plugin in ("MultiProc", "Linear", "LegacyMultiProc"):
            reason = f"did not finish ({type(error).__name__})"
        results[job.label] = "ok" if reason is None else f"failed: {reason}"
    if error is not None and all(v == "ok" for v in results.values()):
        raise error
    return results
