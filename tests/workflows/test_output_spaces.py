"""Every --output-spaces entry, named honestly, with provenance a reviewer can trust (one CLI run).

One sloppy participant run of a real IXI scan into two grids: nilearn's 4 mm MNI152NLin2009aSym grid
and TemplateFlow's MNI152NLin2009cAsym res-4 from a cache laid out by the tests (tests/tf_cache.py).
"""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from latentbids.bids.sidecars import undocumented_columns
from latentbids.bids.validation import errors_of, run_validator
from latentbids.resources import get_template
from tests.helpers import copy_dataset, run_cli
from tests.tf_cache import write_space

pytestmark = pytest.mark.slow
SPACES = {"MNI152NLin2009aSym": "nilearn4", "MNI152NLin2009cAsym": "4"}


@pytest.fixture(scope="module")
def two_grids(tmp_path_factory, ixi_dir):
    base = tmp_path_factory.mktemp("spaces")
    tf_home = base / "templateflow"
    write_space(tf_home, "MNI152NLin2009cAsym", 4)
    data = copy_dataset(ixi_dir, base / "ds", subjects=["IXI012"])
    out = data / "derivatives" / "latentbids"
    proc = run_cli(data, out, "participant", "-w", base / "work", "--sloppy", "--nprocs", 2, "--omp-nthreads", 1,
                   "--output-spaces", *(f"{s}:res-{r}" for s, r in SPACES.items()), "--templateflow-home", tf_home,
                   timeout=900)
    assert proc.returncode == 0, proc.stderr
    return dict(base=base, out=out, tf_home=tf_home, log=proc.stderr)


def test_every_space_has_its_maps_on_its_own_grid(two_grids):
    anat = two_grids["out"] / "sub-IXI012" / "anat"
    for space, res in SPACES.items():
        tpl = get_template(space, res, two_grids["tf_home"])
        for name in ("label-GM_probseg", "label-GM_desc-modulated_probseg", "desc-brain_mask"):
            img = nib.load(anat / f"sub-IXI012_space-{space}_res-{res}_{name}.nii.gz")
            assert img.shape == tpl.shape and np.allclose(img.affine, tpl.affine), (space, name)
        gm = np.asarray(nib.load(anat / f"sub-IXI012_space-{space}_res-{res}_label-GM_probseg.nii.gz").dataobj)
        prior = np.asarray(tpl.gm.dataobj)
        assert np.corrcoef(gm.ravel(), prior.ravel())[0, 1] > 0.6, space  # really on that template
        assert (anat / f"sub-IXI012_from-T1w_to-{space}_mode-image_xfm.h5").is_file()
        assert (anat / f"sub-IXI012_space-{space}_atlas-AAL_desc-gm_stats.tsv").is_file()


def test_sidecars_name_the_grid_and_its_reference(two_grids):
    out = two_grids["out"]
    anat = out / "sub-IXI012" / "anat"
    nilearn = json.loads((anat / "sub-IXI012_space-MNI152NLin2009aSym_res-nilearn4_label-GM_probseg.json").read_text())
    assert "not a TemplateFlow grid" in nilearn["Resolution"] and "50x59x48" in nilearn["Resolution"]
    reference = nilearn["SpatialReference"]
    assert reference == "bids::tpl-MNI152NLin2009aSym/tpl-MNI152NLin2009aSym_res-nilearn4_T1w.nii.gz"
    grid = nib.load(out / reference.removeprefix("bids::"))
    assert grid.shape == (50, 59, 48)
    tf = json.loads((anat / "sub-IXI012_space-MNI152NLin2009cAsym_res-4_desc-brain_mask.json").read_text())
    assert tf["SpatialReference"].startswith("https://templateflow.s3.amazonaws.com/tpl-MNI152NLin2009cAsym/")
    assert tf["Description"] and "49x58x49" in tf["Resolution"]
    native = json.loads((anat / "sub-IXI012_label-GM_probseg.json").read_text())
    assert native["SpatialReference"] == "bids:raw:sub-IXI012/anat/sub-IXI012_T1w.nii.gz"


def test_no_host_path_and_every_table_described(two_grids):
    out, base = two_grids["out"], two_grids["base"]
    for path in out.rglob("*.json"):
        if "/log/" in path.as_posix() or path.parent.name == "logs":
            continue
        text = path.read_text()
        assert str(base) not in text and "file://" not in text, path
    tables = [p for p in out.rglob("*.tsv") if "/log" not in p.as_posix()]
    assert len(tables) >= 4
    for tsv in tables:
        assert undocumented_columns(tsv) == [], tsv
    volumes = json.loads((out / "sub-IXI012" / "anat" / "sub-IXI012_volumes.json").read_text())
    assert volumes["Units"]["TIV_ml"] == "mL" and volumes["TIV_ml"] > 500
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["SourceDatasets"] == [{"URL": "bids:raw:"}] and desc["DatasetLinks"] == {"raw": "../.."}
    assert desc["HowToAcknowledge"] and "Container" not in desc["GeneratedBy"][0]  # a venv run is no container
    methods = (out / "logs" / "CITATION.md").read_text()
    assert "MNI152NLin2009cAsym (TemplateFlow res-4, 4 mm)" in methods and "Ciric R" in methods
    assert (out / "logs" / "CITATION.html").is_file()


def test_outputs_pass_the_bids_validator(two_grids, tmp_path):
    report = run_validator(two_grids["out"], tmp_path / "report.json")
    assert errors_of(report) == []
    warnings = [i for i in report["issues"]["issues"] if i.get("severity") == "warning"]
    assert not [w for w in warnings if "SpatialReference" in json.dumps(w)], warnings
