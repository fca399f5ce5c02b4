"""Outputs in every ``--output-spaces`` entry beyond the first.

The first space drives the segmentation (its priors guide Atropos) and the QC table; each further
space only needs the subject brought onto its grid: the skull-stripped T1w is registered to that
template (the same SyN-family settings), and the native GM map and brain mask are carried over with
the forward transform, modulated by its Jacobian, and measured in the atlas.  Reused maps
(``-d``) are resampled onto each grid by :func:`latentbids.workflows.participant.anat.init_reuse_wf` instead.
"""
from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from latentbids.interfaces.anat import GMToTemplate, RegisterToTemplate
from latentbids.interfaces.measures import RegionalStats
from latentbids.settings import AnatSettings
from latentbids.workflows.participant.template_files import TemplateFiles

SPACE_OUTPUTS = ["gm_template", "modulated", "mask_template", "forward", "inverse", "stats"]


def init_template_space_wf(*, template: TemplateFiles, settings: AnatSettings, omp_nthreads: int = 1,
                           name: str = "space_wf") -> pe.Workflow:
    """Register to a further output space's template and resample the native maps onto it.

    Parameters
    ----------
    template : TemplateFiles
        The further space's grid and atlas as files.
    settings : AnatSettings
        The resolved ``[anat]`` settings (registration preset, seed).
    omp_nthreads : int
        Threads of each heavy node.
    name : str
        The workflow's name.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        Inputs (``inputnode``): ``brain`` (skull-stripped, bias-corrected T1w), ``gm`` (native GM
        probability), ``mask`` (native brain mask).  Outputs: :data:`SPACE_OUTPUTS`.
    """
    wf = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["brain", "gm", "mask"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=SPACE_OUTPUTS), name="outputnode")
    register = pe.Node(RegisterToTemplate(template=template.t1w, transform=settings.registration,
                                          seed=settings.seed, omp_nthreads=omp_nthreads),
                       name="register", n_procs=omp_nthreads, mem_gb=1.5)
    to_template = pe.Node(GMToTemplate(template=template.t1w, omp_nthreads=omp_nthreads),
                          name="to_template", n_procs=omp_nthreads)
    stats = pe.Node(RegionalStats(atlas=template.atlas, atlas_labels=template.atlas_labels),
                    name="regional_stats")
    # fmt: off
    wf.connect([
        (inputnode, register, [("brain", "moving")]),
        (inputnode, to_template, [("gm", "gm"), ("mask", "mask")]),
        (register, to_template, [("forward", "forward")]),
        (to_template, stats, [("gm_template", "gm_template"), ("modulated", "modulated")]),
        (register, outputnode, [("forward", "forward"), ("inverse", "inverse")]),
        (to_template, outputnode, [("gm_template", "gm_template"), ("modulated", "modulated"),
                                   ("mask_template", "mask_template")]),
        (stats, outputnode, [("out_tsv", "stats")]),
    ])
    # fmt: on
    return wf
