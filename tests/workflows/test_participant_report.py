"""The participant HTML report on small synthetic images: figures embedded, failing QC flagged."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd

from latentbids.reports.participant import brain_cuts, build_participant_report


def _ball(path, radius, value=1.0, shape=(30, 30, 30)):
    grid = np.indices(shape) - np.array(shape)[:, None, None, None] / 2
    data = (np.sqrt((grid ** 2).sum(0)) < radius).astype(np.float32) * value
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = -30
    nib.save(nib.Nifti1Image(data, aff), path)
    return str(path)


def test_brain_cuts_inside_the_object(tmp_path):
    cuts = brain_cuts(_ball(tmp_path / "b.nii.gz", 6))
    for key in "xyz":
        assert len(cuts[key]) == 5 and np.all(np.abs(cuts[key]) < 12)


def test_report_flags_failing_subject(tmp_path):
    t1 = _ball(tmp_path / "t1.nii.gz", 12, 500)
    gm = _ball(tmp_path / "gm.nii.gz", 9)
    mask = _ball(tmp_path / "mask.nii.gz", 12)
    qc = tmp_path / "qc.tsv"
    pd.DataFrame([{"participant_id": "sub-01", "gm_max": 0.5, "qc_pass": False,
                   "qc_fail_reasons": "gm_max<0.95"}]).to_csv(qc, sep="\t", index=False)
    vols = tmp_path / "v.json"
    vols.write_text(json.dumps({"GM_ml": 700.0, "TIV_ml": 1500.0}))
    out = build_participant_report(tmp_path / "sub-01.html", "sub-01", t1w=t1, gm=gm, mask=mask, warped=t1,
                                   template_t1w=t1, qc_tsv=str(qc), volumes_json=str(vols))
    html = open(out).read()
    assert html.count("data:image/png;base64,") == 2
    assert "Quality control: FAIL (gm_max&lt;0.95)" in html
    assert "TIV_ml" in html
