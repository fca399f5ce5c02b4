"""Nipype interface for the participant QC report (:mod:`latentbids.reports.participant`)."""
from __future__ import annotations

import os

from nipype.interfaces.base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, isdefined, traits


class _ReportInputSpec(BaseInterfaceInputSpec):
    label = traits.Str(mandatory=True, desc="sub-<l>[_ses-<s>]")
    t1w = File(exists=True)
    gm = File(exists=True)
    mask = File(exists=True)
    warped = File(exists=True)
    template_t1w = File(exists=True)
    gm_template = File(exists=True)
    qc_tsv = File(exists=True)
    volumes_json = File(exists=True)
    notes = traits.List(traits.Str)


class _ReportOutputSpec(TraitedSpec):
    out_report = File(exists=True)


class ParticipantReport(SimpleInterface):
    """Self-contained HTML page with QC figures and metrics for one participant job."""

    input_spec = _ReportInputSpec
    output_spec = _ReportOutputSpec

    def _run_interface(self, runtime):
        from latentbids.reports.participant import build_participant_report

        i = self.inputs
        get = lambda name: getattr(i, name) if isdefined(getattr(i, name)) else None  # noqa: E731
        out = os.path.join(runtime.cwd, f"{i.label}.html")
        self._results["out_report"] = build_participant_report(
            out, i.label, t1w=get("t1w"), gm=get("gm"), mask=get("mask"), warped=get("warped"),
            template_t1w=get("template_t1w"), qc_tsv=get("qc_tsv"), volumes_json=get("volumes_json"),
            gm_template=get("gm_template"), notes=get("notes"),
        )
        return runtime
