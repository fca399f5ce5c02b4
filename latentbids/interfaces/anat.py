"""Nipype interfaces wrapping :mod:`latentbids.anat` (one interface per pipeline step, T1w to GM map).

Each interface only moves file names between Nipype and a plain function; the science lives in
``latentbids.anat``.  Heavy interfaces take ``omp_nthreads`` (ITK threads for antspyx, torch threads
for HD-BET), set for the duration of the call only.  Defaults and choices of the science inputs are
the run configuration's (:mod:`latentbids.config`); the workflows set every one of them anyway.
The measures on the resulting maps are in :mod:`latentbids.interfaces.measures`.
"""
from __future__ import annotations

import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from latentbids.interfaces.common import (
    ANAT_DEFAULTS,
    SEED_DEFAULT,
    ThreadsInputSpec,
    config_enum,
    nthreads,
    out_path,
)


# --------------------------------------------------------------------------------------------
class _ReorientInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="T1w image in any orientation")


class _OneFileOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class ReorientRAS(SimpleInterface):
    """Reorient to RAS+ (voxel axes permuted only; no resampling)."""

    input_spec = _ReorientInputSpec
    output_spec = _OneFileOutputSpec

    def _run_interface(self, runtime):
        from latentbids.anat.preprocess import reorient_to_ras

        self._results["out_file"] = reorient_to_ras(self.inputs.in_file, out_path(runtime, "T1w_ras.nii.gz"))
        return runtime


# --------------------------------------------------------------------------------------------
class _N4InputSpec(ThreadsInputSpec):
    in_file = File(exists=True, mandatory=True)
    shrink_factor = traits.Int(0, usedefault=True, desc="0: N4 on a ~8 mm grid at any input resolution")
    iterations = traits.List(traits.Int, list(ANAT_DEFAULTS.n4_iterations), usedefault=True,
                             desc="iterations per fitting level")


class N4BiasCorrection(SimpleInterface):
    """N4 bias-field correction with antspyx (intensities rescaled to 0..~1000)."""

    input_spec = _N4InputSpec
    output_spec = _OneFileOutputSpec

    def _run_interface(self, runtime):
        from latentbids.anat.preprocess import n4_bias_correct

        self._results["out_file"] = n4_bias_correct(
            self.inputs.in_file, out_path(runtime, "T1w_n4.nii.gz"),
            shrink_factor=self.inputs.shrink_factor, iterations=tuple(self.inputs.iterations),
            nthreads=nthreads(self.inputs),
        )
        return runtime


# --------------------------------------------------------------------------------------------
class _BrainExtractionInputSpec(ThreadsInputSpec):
    in_file = File(exists=True, mandatory=True, desc="bias-corrected RAS T1w")
    method = config_enum("brain_extraction", usedefault=True)
    device = traits.Str("cpu", usedefault=True, nohash=True, desc="a resolved device: cpu or cuda[:N] (HD-BET)")
    hdbet_mode = config_enum("hdbet_mode", usedefault=True)
    hdbet_tta = traits.Bool(ANAT_DEFAULTS.hdbet_tta, usedefault=True)
    use_gpu = traits.Bool(False, usedefault=True, nohash=True,
                          desc="marks the node as a GPU node for MultiProc scheduling")
    template_t1w = File(exists=True, desc="template brain (method=template)")
    template_mask = File(exists=True, desc="template brain mask (method=template)")
    seed = traits.Int(SEED_DEFAULT, usedefault=True)


class _BrainExtractionOutputSpec(TraitedSpec):
    out_mask = File(exists=True)
    out_brain = File(exists=True)


class BrainExtraction(SimpleInterface):
    """Brain mask with HD-BET (default) or by warping the template mask (cheap, ``--sloppy``)."""

    input_spec = _BrainExtractionInputSpec
    output_spec = _BrainExtractionOutputSpec

    def _run_interface(self, runtime):
        from latentbids.anat.brain_mask import apply_mask, hdbet_brain_mask, template_brain_mask

        mask = out_path(runtime, "brain_mask.nii.gz")
        if self.inputs.method == "hdbet":
            hdbet_brain_mask(self.inputs.in_file, mask, device=self.inputs.device,
                             mode=self.inputs.hdbet_mode, tta=self.inputs.hdbet_tta,
                             nthreads=nthreads(self.inputs))
        else:
            template_brain_mask(self.inputs.in_file, mask, self.inputs.template_t1w,
                                self.inputs.template_mask, nthreads=nthreads(self.inputs),
                                seed=self.inputs.seed)
        self._results["out_mask"] = mask
        self._results["out_brain"] = apply_mask(self.inputs.in_file, mask, out_path(runtime, "brain.nii.gz"))
        return runtime


# --------------------------------------------------------------------------------------------
class _RegisterInputSpec(ThreadsInputSpec):
    moving = File(exists=True, mandatory=True, desc="skull-stripped T1w")
    template = File(exists=True, mandatory=True, desc="template brain T1w")
    transform = config_enum("registration", usedefault=True)
    seed = traits.Int(SEED_DEFAULT, usedefault=True)


class _RegisterOutputSpec(TraitedSpec):
    forward = File(exists=True, desc="composite .h5: resamples subject images onto the template")
    inverse = File(exists=True, desc="composite .h5: resamples template images onto the subject")
    warped = File(exists=True, desc="subject brain on the template grid")


class RegisterToTemplate(SimpleInterface):
    """antspyx SyN-family registration of the subject brain to the template brain."""

    input_spec = _RegisterInputSpec
    output_spec = _RegisterOutputSpec

    def _run_interface(self, runtime):
        from latentbids.anat.registration import register_to_template

        res = register_to_template(self.inputs.moving, self.inputs.template, runtime.cwd,
                                   transform=self.inputs.transform, seed=self.inputs.seed,
                                   nthreads=nthreads(self.inputs))
        self._results.update(res)
        return runtime


# --------------------------------------------------------------------------------------------
class _ApplyTransformsInputSpec(ThreadsInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True)
    reference = File(exists=True, mandatory=True)
    transforms = InputMultiObject(File(exists=True), mandatory=True)
    interpolation = traits.Enum("linear", "nearestNeighbor", "bSpline", usedefault=True)


class _ApplyTransformsOutputSpec(TraitedSpec):
    out_files = OutputMultiObject(File(exists=True))


class ApplyTransforms(SimpleInterface):
    """Resample images onto ``reference`` through ANTs transforms (e.g. priors to the subject)."""

    input_spec = _ApplyTransformsInputSpec
    output_spec = _ApplyTransformsOutputSpec

    def _run_interface(self, runtime):
        from latentbids.anat.registration import apply_transform

        outs = []
        for i, path in enumerate(self.inputs.in_files):
            base = os.path.basename(path).split(".")[0]
            outs.append(apply_transform(path, self.inputs.reference, list(self.inputs.transforms),
                                        out_path(runtime, f"{i:02d}_{base}_resampled.nii.gz"),
                                        interpolation=self.inputs.interpolation,
                                        nthreads=nthreads(self.inputs)))
        self._results["out_files"] = outs
        return runtime


# --------------------------------------------------------------------------------------------
class _AtroposInputSpec(ThreadsInputSpec):
    in_file = File(exists=True, mandatory=True, desc="bias-corrected T1w")
    mask = File(exists=True, mandatory=True)
    priors = InputMultiObject(File(exists=True), mandatory=True, desc="CSF, GM, WM priors on the subject grid")
    prior_weight = traits.Float(ANAT_DEFAULTS.atropos_prior_weight, usedefault=True)
    mrf = traits.Float(ANAT_DEFAULTS.atropos_mrf, usedefault=True, desc="MRF smoothing factor")
    iterations = traits.Int(ANAT_DEFAULTS.atropos_iterations, usedefault=True)


class _AtroposOutputSpec(TraitedSpec):
    csf = File(exists=True)
    gm = File(exists=True)
    wm = File(exists=True)
    dseg = File(exists=True)


class AtroposSegmentation(SimpleInterface):
    """Three-class Atropos segmentation guided by warped template priors."""

    input_spec = _AtroposInputSpec
    output_spec = _AtroposOutputSpec

    def _run_interface(self, runtime):
        from latentbids.anat.segmentation import atropos_segment

        res = atropos_segment(self.inputs.in_file, self.inputs.mask, list(self.inputs.priors), runtime.cwd,
                              prior_weight=self.inputs.prior_weight, mrf=self.inputs.mrf,
                              iterations=self.inputs.iterations, nthreads=nthreads(self.inputs))
        self._results.update(csf=res["CSF"], gm=res["GM"], wm=res["WM"], dseg=res["dseg"])
        return runtime


# --------------------------------------------------------------------------------------------
class _ToTemplateInputSpec(ThreadsInputSpec):
    gm = File(exists=True, mandatory=True, desc="native GM probability")
    mask = File(exists=True, mandatory=True, desc="native brain mask")
    forward = File(exists=True, mandatory=True, desc="forward composite transform")
    template = File(exists=True, mandatory=True, desc="template T1w (defines the grid)")


class _ToTemplateOutputSpec(TraitedSpec):
    gm_template = File(exists=True)
    modulated = File(exists=True)
    mask_template = File(exists=True)
    jacobian = File(exists=True)


class GMToTemplate(SimpleInterface):
    """GM probability and brain mask on the template grid, plus the Jacobian-modulated GM map."""

    input_spec = _ToTemplateInputSpec
    output_spec = _ToTemplateOutputSpec

    def _run_interface(self, runtime):
        from latentbids.anat.measures import clip_probability, modulate, threshold_mask
        from latentbids.anat.registration import apply_transform, jacobian_determinant

        n = nthreads(self.inputs)
        raw = apply_transform(self.inputs.gm, self.inputs.template, [self.inputs.forward],
                              out_path(runtime, "gm_interp.nii.gz"), nthreads=n)
        gm = clip_probability(raw, out_path(runtime, "gm_template.nii.gz"))
        jac = jacobian_determinant(self.inputs.forward, self.inputs.template,
                                   out_path(runtime, "jacobian.nii.gz"), nthreads=n)
        mask_raw = apply_transform(self.inputs.mask, self.inputs.template, [self.inputs.forward],
                                   out_path(runtime, "mask_interp.nii.gz"), nthreads=n)
        self._results.update(
            gm_template=gm,
            modulated=modulate(gm, jac, out_path(runtime, "gm_modulated.nii.gz")),
            mask_template=threshold_mask(mask_raw, out_path(runtime, "mask_template.nii.gz")),
            jacobian=jac,
        )
        return runtime
