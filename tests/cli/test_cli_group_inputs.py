"""Which participant-level GM maps the group level takes: modulated first, QC failures left out."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from latentbids.bids.naming import gm_map_name
from latentbids.config import RunConfig
from latentbids.errors import MissingInputError, NoDataError
from latentbids.resources import get_template
from latentbids.settings import group_settings
from latentbids.workflows.group.inputs import collect_gm_maps
from tests.helpers import write_minimal_dataset


def _collect(config, template):
    """The records the group level gathers with ``config``'s settings."""
    return collect_gm_maps(group_settings(config), template)[0]

def _participant_outputs(out, subject, template, qc_pass=True, modulated=True):
    anat = out / f"sub-{subject}" / "anat"
    anat.mkdir(parents=True)
    img = nib.Nifti1Image(np.zeros(template.shape, np.float32), template.affine)
    nib.save(img, str(anat / gm_map_name(subject, None, template.space, template.res, modulated=False)))
    if modulated:
        nib.save(img, str(anat / gm_map_name(subject, None, template.space, template.res, modulated=True)))
    reasons = "" if qc_pass else "gm_max<0.95"
    (anat / f"sub-{subject}_qc.tsv").write_text(
        f"participant_id\tqc_pass\tqc_fail_reasons\nsub-{subject}\t{qc_pass}\t{reasons}\n")


@pytest.fixture
def setup(tmp_path):
    bids = write_minimal_dataset(tmp_path / "bids", {s: None for s in ("01", "02", "03")})
    (bids / "participants.tsv").write_text(
        "participant_id\tgroup\tage\nsub-01\tCN\t60\nsub-02\tAD\t70\nsub-03\tAD\t75\n")
    config = RunConfig()
    config.execution.bids_dir = str(bids)
    config.execution.output_dir = str(tmp_path / "out")
    return config, get_template(resolution=4), tmp_path / "out"


def test_qc_failures_are_left_out_and_reported(setup):
    config, template, out = setup
    config.model.fit_all = True  # two subjects are enough to train in fit-all mode
    _participant_outputs(out, "01", template)
    _participant_outputs(out, "02", template, qc_pass=False)
    _participant_outputs(out, "03", template)
    records = _collect(config, template)
    assert records["participant_id"].tolist() == ["sub-01", "sub-03"]
    assert records["group"].tolist() == ["CN", "AD"] and records["age"].tolist() == [60, 75]
    assert all("desc-modulated" in p for p in records["gm_path"])
    excluded = pd.read_csv(out / "group" / "qc_excluded.tsv", sep="\t")
    assert excluded["participant_id"].tolist() == ["sub-02"]
    assert excluded["qc_fail_reasons"].tolist() == ["gm_max<0.95"]

    config.model.exclude_qc_failures = False
    assert len(_collect(config, template)) == 3
    assert pd.read_csv(out / "group" / "qc_excluded.tsv", sep="\t").empty  # no stale list survives


def test_all_failed_is_a_clear_error(setup):
    config, template, out = setup
    _participant_outputs(out, "01", template, qc_pass=False)
    with pytest.raises(MissingInputError, match="failed participant QC"):
        _collect(config, template)


def test_unmodulated_fallback_never_mixes(setup):
    config, template, out = setup
    _participant_outputs(out, "01", template, modulated=False)
    _participant_outputs(out, "02", template, modulated=False)
    records, settings = collect_gm_maps(group_settings(config), template)
    assert settings.input_map == "probseg" and settings.record["model"]["input_map"] == "probseg"
    assert config.model.input_map == "modulated"  # new settings, the config is never changed
    assert not any("desc-modulated" in Path(p).name for p in records["gm_path"])


def test_selection_and_missing_outputs(setup):
    config, template, out = setup
    with pytest.raises(MissingInputError, match="participant' first"):
        _collect(config, template)
    _participant_outputs(out, "01", template)
    config.execution.participant_label = ["02"]
    with pytest.raises(NoDataError):
        _collect(config, template)


def test_maps_on_another_grid_are_pointed_to(setup):
    """Maps written at res-4 while the group level looks for res-2: the error names the option to pass."""
    config, template, out = setup
    _participant_outputs(out, "01", template)
    with pytest.raises(MissingInputError, match="pass --output-spaces MNI152NLin2009aSym:res-nilearn4"):
        _collect(config, get_template(resolution=2))


def test_too_few_subjects_left_by_qc_names_the_cause(setup, caplog):
    """QC leaves 2 of 3 subjects where 5-fold training needs 7: the error blames QC, with the count,
    what failed and where the list is (not "use fewer folds")."""
    config, template, out = setup
    _participant_outputs(out, "01", template)
    _participant_outputs(out, "02", template, qc_pass=False)
    _participant_outputs(out, "03", template)
    with pytest.raises(MissingInputError) as err:
        _collect(config, template)
    message = err.value.message
    assert "1 GM map(s) failed participant QC (gm_max: 1;" in message
    assert f"list in {out / 'group' / 'qc_excluded.tsv'}" in message
    assert "leaving 2 of 3 subjects where training needs at least 7" in message
    assert pd.read_csv(out / "group" / "qc_excluded.tsv", sep="\t")["participant_id"].tolist() == ["sub-02"]
    config.model.n_folds = 2
    config.model.fit_all = False
    with pytest.raises(MissingInputError, match="needs at least 4"):
        _collect(config, template)
    config.model.exclude_qc_failures = False  # the user's way out: all three are used
    assert len(_collect(config, template)) == 3
