"""The group level through the CLI on simulated GM maps (``latentbids-simulate --gm-only --group-ready``):
a null cohort ends with no supported claim about the labels and no LRCP map presented as a finding."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import run_cli  # noqa: E402

pytestmark = pytest.mark.slow  # make check skips this module (see Makefile)

SPACE = "MNI152NLin2009aSym:res-nilearn4"


@pytest.fixture(scope="module")
def null_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("null")
    bids = root / "sim"
    sim = run_cli(bids, "--n-subjects", 24, "--seed", 11, "--gm-only", "--group-ready", "--resolution", 4,
                  entry="latentbids-simulate")
    assert sim.returncode == 0, sim.stderr
    out = bids / "derivatives" / "latentbids"
    assert len(list(out.glob("sub-*/anat/*_res-nilearn4_label-GM_desc-modulated_probseg.nii.gz"))) == 24
    proc = run_cli(bids, out, "group", "-w", root / "work", "--skip-bids-validation", "--sloppy", "--n-folds", 2,
                   "--output-spaces", SPACE, "--nprocs", 1, "--omp-nthreads", 1)
    return proc, out


def test_null_cohort_supports_no_claim_about_the_labels(null_run):
    proc, out = null_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    analysis = json.loads((out / "group" / "ae-K32" / "analysis.json").read_text())
    assert analysis["Contrasts"] == ["CN:AD"]
    claims = analysis["Claims"]
    families = {c["family"] for c in claims}
    assert {"unit", "region", "lrcp", "sam", "latent_vector", "vector_bound", "rub", "shap", "pc1"} <= families
    # nothing about CN vs AD is supported; cohort-wide statements may be (PC1 ~ global GM is true of any cohort
    # whose heads differ in size; the reconstruction error may really depend on regional GM): no label in them
    supported = [c for c in claims if c["supported"]]
    cohort_wide = ("pc1", "shap", "shap_regions", "sar")
    assert all(c["contrast"] == "" and c["family"] in cohort_wide for c in supported), supported
    assert "CN vs AD" not in analysis["Headline"]
    # no LRCP or SHAP map is presented as a finding: only exploratory ones, and their sidecars say so
    maps = sorted((out / "group" / "ae-K32").glob("*.nii.gz"))
    assert maps and all("exploratory" in m.name for m in maps), maps
    for m in maps:
        side = json.loads(m.with_name(m.name.replace(".nii.gz", ".json")).read_text())
        assert side["Exploratory"] is True
    report = (out / "group_ae-K32.html").read_text()
    assert "exploratory" in report.lower()
    assert "Headline:" in proc.stderr and "Traceback" not in proc.stderr
