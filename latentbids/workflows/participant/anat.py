"""Anatomical workflow: T1w -> GM probability maps in native and template space (METHOD.md sec. 2).

``init_anat_wf`` builds one Nipype node per step::

    reorient -> n4 -> brain_extraction -> register -> warp_priors -> atropos
             -> to_template (GM, modulated GM, brain mask) -> regional_stats, volumes, qc

``init_reuse_wf`` is the ``-d/--derivatives`` branch: an existing template-space GM map is only
resampled to the grid and measured.
"""
from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from latentbids.interfaces.anat import (
    ApplyTransforms,
    AtroposSegmentation,
    BrainExtraction,
    GMToTemplate,
    N4BiasCorrection,
    RegisterToTemplate,
    ReorientRAS,
)
from latentbids.interfaces.measures import QualityMetrics, RegionalStats, ResampleExistingGM, TissueVolumes
from latentbids.settings import AnatSettings
from latentbids.workflows.participant.template_files import TemplateFiles

ANAT_OUTPUTS = [
    "t1w_preproc", "brain_mask", "csf", "gm", "wm", "dseg", "forward", "inverse", "warped",
    "gm_template", "modulated", "mask_template", "jacobian", "stats", "volumes", "qc", "qc_pass",
]


def init_anat_wf(
    *,
    template: TemplateFiles,
    settings: AnatSettings,
    subject_label: str,
    session_label: str = "",
    omp_nthreads: int = 1,
    n4_shrink: int = 0,
    name: str = "anat_wf",
) -> pe.Workflow:
    """Build the T1w -> GM workflow.

    Parameters
    ----------
    template : TemplateFiles
        The first output space's grid, priors and atlas as files.
    settings : AnatSettings
        The resolved ``[anat]`` settings (:func:`latentbids.settings.anat_settings`).
    subject_label, session_label : str
        ``sub-01`` / ``ses-1``: only fill the QC table's id columns.
    omp_nthreads : int
        Threads of each heavy node (ITK, torch).
    n4_shrink : int
        N4's shrink factor for this T1w (:func:`latentbids.anat.preprocess.n4_shrink_factor` of its
        voxel size; 0 lets the node work it out).
    name : str
        The workflow's name.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        Inputs (``inputnode``): ``t1w``.  Outputs (``outputnode``): :data:`ANAT_OUTPUTS`.
    """
    wf = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["t1w"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=ANAT_OUTPUTS), name="outputnode")

    reorient = pe.Node(ReorientRAS(), name="reorient")
    n4 = pe.Node(N4BiasCorrection(iterations=list(settings.n4_iterations), shrink_factor=int(n4_shrink),
                                  omp_nthreads=omp_nthreads),
                 name="n4", n_procs=omp_nthreads)
    brain = pe.Node(
        BrainExtraction(method=settings.brain_extraction, device=settings.device, use_gpu=settings.use_gpu,
                        hdbet_mode=settings.hdbet_mode, hdbet_tta=settings.hdbet_tta,
                        template_t1w=template.t1w,
                        template_mask=template.mask, seed=settings.seed, omp_nthreads=omp_nthreads),
        name="brain_extraction", n_procs=omp_nthreads, mem_gb=2.0,
    )
    register = pe.Node(RegisterToTemplate(template=template.t1w, transform=settings.registration,
                                          seed=settings.seed, omp_nthreads=omp_nthreads),
                       name="register", n_procs=omp_nthreads, mem_gb=1.5)
    warp_priors = pe.Node(ApplyTransforms(in_files=[template.csf, template.gm, template.wm],
                                          omp_nthreads=omp_nthreads),
                          name="warp_priors", n_procs=omp_nthreads)
    atropos = pe.Node(AtroposSegmentation(prior_weight=settings.prior_weight, mrf=settings.mrf,
                                          iterations=settings.atropos_iterations, omp_nthreads=omp_nthreads),
                      name="atropos", n_procs=omp_nthreads)
    to_template = pe.Node(GMToTemplate(template=template.t1w, omp_nthreads=omp_nthreads),
                          name="to_template", n_procs=omp_nthreads)
    stats = pe.Node(RegionalStats(atlas=template.atlas, atlas_labels=template.atlas_labels),
                    name="regional_stats")
    volumes = pe.Node(TissueVolumes(), name="volumes")
    qc = pe.Node(QualityMetrics(template_gm=template.gm, template_mask=template.mask,
                                template_t1w=template.t1w, subject_label=subject_label,
                                session_label=session_label, **settings.qc_inputs("own")),
                 name="qc")

    # fmt: off
    wf.connect([
        (inputnode, reorient, [("t1w", "in_file")]),
        (reorient, n4, [("out_file", "in_file")]),
        (n4, brain, [("out_file", "in_file")]),
        (brain, register, [("out_brain", "moving")]),
        (n4, warp_priors, [("out_file", "reference")]),
        (register, warp_priors, [("inverse", "transforms")]),
        (n4, atropos, [("out_file", "in_file")]),
        (brain, atropos, [("out_mask", "mask")]),
        (warp_priors, atropos, [("out_files", "priors")]),
        (atropos, to_template, [("gm", "gm")]),
        (brain, to_template, [("out_mask", "mask")]),
        (register, to_template, [("forward", "forward")]),
        (to_template, stats, [("gm_template", "gm_template"), ("modulated", "modulated")]),
        (atropos, volumes, [("csf", "csf"), ("gm", "gm"), ("wm", "wm")]),
        (brain, volumes, [("out_mask", "mask")]),
        (to_template, qc, [("gm_template", "gm_template")]),
        (register, qc, [("warped", "warped")]),
        (volumes, qc, [("out_json", "volumes")]),
        (n4, outputnode, [("out_file", "t1w_preproc")]),
        (brain, outputnode, [("out_mask", "brain_mask")]),
        (register, outputnode, [("forward", "forward"), ("inverse", "inverse"), ("warped", "warped")]),
        (atropos, outputnode, [("csf", "csf"), ("gm", "gm"), ("wm", "wm"), ("dseg", "dseg")]),
        (to_template, outputnode, [("gm_template", "gm_template"), ("modulated", "modulated"),
                                   ("mask_template", "mask_template"), ("jacobian", "jacobian")]),
        (stats, outputnode, [("out_tsv", "stats")]),
        (volumes, outputnode, [("out_json", "volumes")]),
        (qc, outputnode, [("out_tsv", "qc"), ("qc_pass", "qc_pass")]),
    ])
    # fmt: on
    return wf


REUSE_OUTPUTS = ["gm_template", "modulated", "stats", "qc", "qc_pass"]


def init_reuse_wf(
    *,
    template: TemplateFiles,
    settings: AnatSettings,
    kind: str,
    subject_label: str,
    session_label: str = "",
    name: str = "reuse_wf",
) -> pe.Workflow:
    """Resample an existing template-space GM map (``-d``) onto the grid and measure it.

    Parameters
    ----------
    template : TemplateFiles
        The grid, priors and atlas as files.
    settings : AnatSettings
        The resolved ``[anat]`` settings (the QC thresholds of ``kind``).
    kind : {"smriprep", "cat12"}
        Where the map comes from.
    subject_label, session_label : str
        ``sub-01`` / ``ses-1`` for the QC table.
    name : str
        The workflow's name.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        Inputs: ``gm_map``.  Outputs: :data:`REUSE_OUTPUTS` (``modulated`` only for CAT12 mwp1).
    """
    wf = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["gm_map"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=REUSE_OUTPUTS), name="outputnode")
    resample = pe.Node(ResampleExistingGM(kind=kind, template=template.t1w), name="resample_existing")
    stats = pe.Node(RegionalStats(atlas=template.atlas, atlas_labels=template.atlas_labels),
                    name="regional_stats")
    qc = pe.Node(QualityMetrics(template_gm=template.gm, template_mask=template.mask,
                                subject_label=subject_label, session_label=session_label,
                                **settings.qc_inputs(kind)),
                 name="qc")
    # fmt: off
    wf.connect([
        (inputnode, resample, [("gm_map", "in_file")]),
        (resample, stats, [("gm_template", "gm_template")]),
        (resample, qc, [("gm_template", "gm_template")]),
        (resample, outputnode, [("gm_template", "gm_template")]),
        (stats, outputnode, [("out_tsv", "stats")]),
        (qc, outputnode, [("out_tsv", "qc"), ("qc_pass", "qc_pass")]),
    ])
    if kind == "cat12":
        wf.connect([
            (resample, stats, [("modulated", "modulated")]),
            (resample, outputnode, [("modulated", "modulated")]),
        ])
    # fmt: on
    return wf
