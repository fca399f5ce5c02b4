"""Nipype interfaces measuring GM maps (:mod:`latentbids.anat.measures`) and bringing reused ones
(:mod:`latentbids.anat.reuse`) onto the grid: regional table, tissue volumes, QC table.

QC thresholds default to the run configuration's for latentbids' own maps; the workflows set the
thresholds of each map's source (:meth:`latentbids.settings.AnatSettings.qc_inputs`).
"""
from __future__ import annotations

import json

from nipype.interfaces.base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, isdefined, traits

from latentbids.bids.tables import NA_REP
from latentbids.config_checks import QC_SOURCES
from latentbids.interfaces.common import ANAT_DEFAULTS, out_path


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
        out = out_path(runtime, "regional_stats.tsv")
        table.to_csv(out, sep="\t", index=False, na_rep=NA_REP, float_format="%.6g")
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
        out = out_path(runtime, "volumes.json")
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
    qc_source = traits.Enum(*QC_SOURCES, usedefault=True, desc="where the map came from")
    qc_floor = traits.Float(ANAT_DEFAULTS.qc_floor, usedefault=True, desc="GM below this is ignored (numerical tails)")
    qc_min_peak = traits.Float(ANAT_DEFAULTS.qc_min_peak["own"], usedefault=True)
    qc_min_coverage = traits.Float(ANAT_DEFAULTS.qc_min_coverage["own"], usedefault=True)
    qc_max_outside = traits.Float(ANAT_DEFAULTS.qc_max_outside["own"], usedefault=True)
    qc_min_template_corr = traits.Float(ANAT_DEFAULTS.qc_min_template_corr["own"], usedefault=True)


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
        row["qc_fail_reasons"] = m["qc_fail_reasons"] or NA_REP
        out = out_path(runtime, "qc.tsv")
        pd.DataFrame([row]).to_csv(out, sep="\t", index=False, na_rep=NA_REP, float_format="%.6g")
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
                                                            out_path(runtime, "gm_template.nii.gz"))
        else:
            self._results["modulated"] = resample_to_grid(self.inputs.in_file, self.inputs.template,
                                                          out_path(runtime, "gm_modulated.nii.gz"), clip01=False)
            partner = unmodulated_partner(self.inputs.in_file)
            src = partner or self.inputs.in_file
            # without wp1, the probability map is the modulated map clipped to [0, 1] (recorded)
            self._results["gm_template"] = resample_to_grid(src, self.inputs.template,
                                                            out_path(runtime, "gm_template.nii.gz"))
        return runtime
