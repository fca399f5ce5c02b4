"""Nipype interfaces wrapping :mod:`latentbids.anat` (one interface per pipeline step).

Each interface only moves file names between Nipype and a plain function; the science lives in
``latentbids.anat``.  Heavy interfaces take ``omp_nthreads`` (ITK threads for antspyx, torch threads
for HD-BET), set for the duration of the call only.
"""
from __future__ import annotations

import json
import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)


def _out(runtime, name: str) -> str:
    return os.path.join(runtime.cwd, name)


def _nthreads(inputs) -> int | None:
    return int(inputs.omp_nthreads) if isdefined(inputs.omp_nthreads) and inputs.omp_nthreads else None


class _ThreadsInputSpec(BaseInterfaceInputSpec):
    omp_nthreads = traits.Int(1, usedefault=True, nohash=True, desc="threads for ITK/torch")


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

        self._results["out_file"] = reorient_to_ras(self.inputs.in_file, _out(runtime, "T1w_ras.nii.gz"))
        return runtime


# --------------------------------------------------------------------------------------------
class _N4InputSpec(_ThreadsInputSpec):
    in_file = File(exists=True, mandatory=True)
    shrink_factor = traits.Int(0, usedefault=True, desc="0: N4 on a ~8 mm grid at any input resolution")
    iterations = traits.List(traits.Int, [50, 50, 50, 50], usedefault=True)


class N4BiasCorrection(SimpleInterface):
    """N4 bias-field correction with antspyx (intensities rescaled to 0..~1000)."""

    input_spec = _N4InputSpec
    output_spec = _OneFileOutputSpec

    def _run_interface(self, runtime):
        from latentbids.anat.preprocess import n4_bias_correct

        self._results["out_file"] = n4_bias_correct(
            self.inputs.in_file, _out(runtime, "T1w_n4.nii.gz"),
            shrink_factor=self.inputs.shrink_factor, iterations=tuple(self.inputs.iterations),
            nthreads=_nthreads(self.inputs),
        )
        return runtime


# --------------------------------------------------------------------------------------------
class _BrainExtractionInputSpec(_ThreadsInputSpec):
    in_file = File(exists=True, mandatory=True, desc="bias-corrected RAS T1w")
    method = traits.Enum("hdbet", "template", usedefault=True)
    device = traits.Str("cpu", usedefault=True, nohash=True, desc="cpu or cuda[:N] (HD-BET)")
    hdbet_mode = traits.Enum("fast", "accurate", usedefault=True)
    hdbet_tta = traits.Bool(False, usedefault=True)
    use_gpu = traits.Bool(False, usedefault=True, nohash=True,
                          desc="marks the node as a GPU node for MultiProc scheduling")
    template_t1w = File(exists=True, desc="template brain (method=template)")
    template_mask = File(exists=True, desc="template brain mask (method=template)")
    seed = traits.Int(42, usedefault=True)


class _BrainExtractionOutputSpec(TraitedSpec):
    out_mask = File(exists=True)
    out_brain = File(exists=True)


class BrainExtraction(SimpleInterface):
    """Brain mask with HD-BET (default) or by warping the template mask (cheap, ``--sloppy``)."""

    input_spec = _BrainExtractionInputSpec
    output_spec = _BrainExtractionOutputSpec

    def _run_interface(self, runtime):
        from latentbids.anat.preprocess import apply_mask, hdbet_brain_mask, template_brain_mask

        mask = _out(runtime, "brain_mask.nii.gz")
        if self.inputs.method == "hdbet":
            hdbet_brain_mask(self.inputs.in_file, mask, device=self.inputs.device,
                             mode=self.inputs.hdbet_mode, tta=self.inputs.hdbet_tta,
                             nthreads=_nthreads(self.inputs))
        else:
            template_brain_mask(self.inputs.in_file, mask, self.inputs.template_t1w,
                                self.inputs.template_mask, nthreads=_nthreads(self.inputs),
                                seed=self.inputs.seed)
        self._results["out_mask"] = mask
        self._results["out_brain"] = apply_mask(self.inputs.in_file, mask, _out(runtime, "brain.nii.gz"))
        return runtime


# --------------------------------------------------------------------------------------------
class _RegisterInputSpec(_ThreadsInputSpec):
    moving = File(exists=True, mandatory=True, desc="skull-stripped T1w")
    template = File(exists=True, mandatory=True, desc="template brain T1w")
    transform = traits.Str("SyN", usedefault=True)
    seed = traits.Int(42, usedefault=True)


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
                                   nthreads=_nthreads(self.inputs))
        self._results.update(res)
        return runtime


# --------------------------------------------------------------------------------------------
class _ApplyTransformsInputSpec(_ThreadsInputSpec):
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
                                        _out(runtime, f"{i:02d}_{base}_resampled.nii.gz"),
                                        interpolation=self.inputs.interpolation,
                                        nthreads=_nthreads(self.inputs)))
        self._results["out_files"] = outs
        return runtime


# --------------------------------------------------------------------------------------------
class _AtroposInputSpec(_ThreadsInputSpec):
    in_file = File(exists=True, mandatory=True, desc="bias-corrected T1w")
    mask = File(exists=True, mandatory=True)
    priors = InputMultiObject(File(exists=True), mandatory=True, desc="CSF, GM, WM priors on the subject grid")
    prior_weight = traits.Float(0.25, usedefault=True)
    mrf = traits.Float(0.1, usedefault=True)
    iterations = traits.Int(5, usedefault=True)


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
                              iterations=self.inputs.iterations, nthreads=_nthreads(self.inputs))
        self._results.update(csf=res["CSF"], gm=res["GM"], wm=res["WM"], dseg=res["dseg"])
        return runtime


# --------------------------------------------------------------------------------------------
class _ToTemplateInputSpec(_ThreadsInputSpec):
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

        n = _nthreads(self.inputs)
        raw = apply_transform(self.inputs.gm, self.inputs.template, [self.inputs.forward],
                              _out(runtime, "gm_interp.nii.gz"), nthreads=n)
        gm = clip_probability(raw, _out(runtime, "gm_template.nii.gz"))
        jac = jacobian_determinant(self.inputs.forward, self.inputs.template,
                                   _out(runtime, "jacobian.nii.gz"), nthreads=n)
        mask_raw = apply_transform(self.inputs.mask, self.inputs.template, [self.inputs.forward],
                                   _out(runtime, "mask_interp.nii.gz"), nthreads=n)
        self._results.update(
            gm_template=gm,
            modulated=modulate(gm, jac, _out(runtime, "gm_modulated.nii.gz")),
            mask_template=threshold_mask(mask_raw, _out(runtime, "mask_template.nii.gz")),
            jacobian=jac,
        )
        return runtime


# --------------------------------------------------------------------------------------------
class _RegionalInputSpec(BaseInterfaceInputSpec):
    gm_template = File(exists=True, mandatory=True)
    modulated = File(exists=True, desc="modulated GM (adds volume_ml)")
    atlas = File(exists=True, mandatory=True, desc="atlas labels on the template grid")
    atlas_labels = File(exists=True, mandatory=True, desc="TSV with index, name")


class _RegionalOutputSpec(TraitedSpec):
    out_tsv = File(exists=True)


class RegionalStats(SimpleInterface):
    """Mean GM probability (and GM volume) per atlas region."""

    input_spec = _RegionalInputSpec
    output_spec = _RegionalOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import pandas as pd

        from latentbids.anat.measures import regional_table

        labels = pd.read_csv(self.inputs.atlas_labels, sep="\t")
        mod = self.inputs.modulated if isdefined(self.inputs.modulated) else None
        table = regional_table(self.inputs.gm_template, nib.load(self.inputs.atlas), labels, modulated=mod)
        out = _out(runtime, "regional_stats.tsv")
        table.to_csv(out, sep="\t", index=False, na_rep="n/a", float_format="%.6g")
        self._results["out_tsv"] = out
        return runtime


# --------------------------------------------------------------------------------------------
class _VolumesInputSpec(BaseInterfaceInputSpec):
    csf = File(exists=True, mandatory=True)
    gm = File(exists=True, mandatory=True)
    wm = File(exists=True, mandatory=True)
    mask = File(exists=True, mandatory=True)


class _JSONOutputSpec(TraitedSpec):
    out_json = File(exists=True)


class TissueVolumes(SimpleInterface):
    """TIV and total CSF/GM/WM volumes (ml) in native space, as JSON."""

    input_spec = _VolumesInputSpec
    output_spec = _JSONOutputSpec

    def _run_interface(self, runtime):
        from latentbids.anat.measures import tissue_volumes

        vols = tissue_volumes(self.inputs.csf, self.inputs.gm, self.inputs.wm, mask=self.inputs.mask)
        out = _out(runtime, "volumes.json")
        with open(out, "w") as fh:
            json.dump(vols, fh, indent=2)
        self._results["out_json"] = out
        return runtime


# --------------------------------------------------------------------------------------------
class _QCInputSpec(BaseInterfaceInputSpec):
    gm_template = File(exists=True, mandatory=True)
    template_gm = File(exists=True, mandatory=True)
    template_mask = File(exists=True, mandatory=True)
    warped = File(exists=True, desc="registered subject brain (optional)")
    template_t1w = File(exists=True)
    volumes = File(exists=True, desc="volumes JSON (adds TIV and GM fraction to the table)")
    subject_label = traits.Str(mandatory=True, desc="participant_id column value (sub-...)")
    session_label = traits.Str("", usedefault=True)
    qc_source = traits.Enum("own", "smriprep", "cat12", usedefault=True, desc="where the map came from")
    qc_floor = traits.Float(0.1, usedefault=True, desc="GM below this is ignored (numerical tails)")
    qc_min_peak = traits.Float(0.9, usedefault=True)
    qc_min_coverage = traits.Float(0.55, usedefault=True)
    qc_max_outside = traits.Float(0.08, usedefault=True)
    qc_min_template_corr = traits.Float(0.5, usedefault=True)


class _QCOutputSpec(TraitedSpec):
    out_tsv = File(exists=True)
    qc_pass = traits.Bool()


class QualityMetrics(SimpleInterface):
    """Per-subject QC table: checks of the template-space GM map inside the template brain mask
    (:func:`latentbids.anat.measures.qc_metrics`), thresholds of the map's source."""

    input_spec = _QCInputSpec
    output_spec = _QCOutputSpec

    def _run_interface(self, runtime):
        import pandas as pd

        from latentbids.anat.measures import qc_metrics

        i = self.inputs
        m = qc_metrics(
            i.gm_template, i.template_gm, i.template_mask,
            warped_t1w=i.warped if isdefined(i.warped) else None,
            template_t1w=i.template_t1w if isdefined(i.template_t1w) else None,
            floor=i.qc_floor, min_peak=i.qc_min_peak, min_coverage=i.qc_min_coverage,
            max_outside=i.qc_max_outside, min_template_corr=i.qc_min_template_corr,
        )
        row = {"participant_id": i.subject_label}
        if i.session_label:
            row["session_id"] = i.session_label
        if isdefined(i.volumes):
            with open(i.volumes) as fh:
                vols = json.load(fh)
            row.update(TIV_ml=vols.get("TIV_ml"), GM_ml=vols.get("GM_ml"), GM_fraction=vols.get("GM_fraction"))
        row["qc_source"] = i.qc_source
        row.update(m)
        row["qc_fail_reasons"] = m["qc_fail_reasons"] or "n/a"
        out = _out(runtime, "qc.tsv")
        pd.DataFrame([row]).to_csv(out, sep="\t", index=False, na_rep="n/a", float_format="%.6g")
        self._results["out_tsv"] = out
        self._results["qc_pass"] = bool(m["qc_pass"])
        return runtime


# --------------------------------------------------------------------------------------------
class _ResampleExistingInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="existing template-space GM map")
    kind = traits.Enum("smriprep", "cat12", mandatory=True)
    template = File(exists=True, mandatory=True, desc="analysis grid")


class _ResampleExistingOutputSpec(TraitedSpec):
    gm_template = File(exists=True, desc="GM probability on the grid")
    modulated = File(desc="modulated GM on the grid (CAT12 mwp1 only)")


class ResampleExistingGM(SimpleInterface):
    """Resample a GM map from another pipeline (sMRIPrep probseg, CAT12 mwp1) onto the grid."""

    input_spec = _ResampleExistingInputSpec
    output_spec = _ResampleExistingOutputSpec

    def _run_interface(self, runtime):
        from latentbids.anat.reuse import resample_to_grid, unmodulated_partner

        if self.inputs.kind == "smriprep":
            self._results["gm_template"] = resample_to_grid(self.inputs.in_file, self.inputs.template,
                                                            _out(runtime, "gm_template.nii.gz"))
        else:
            self._results["modulated"] = resample_to_grid(self.inputs.in_file, self.inputs.template,
                                                          _out(runtime, "gm_modulated.nii.gz"), clip01=False)
            partner = unmodulated_partner(self.inputs.in_file)
            src = partner or self.inputs.in_file
            # without wp1, the probability map is the modulated map clipped to [0, 1] (recorded)
            self._results["gm_template"] = resample_to_grid(src, self.inputs.template,
                                                            _out(runtime, "gm_template.nii.gz"))
        return runtime
