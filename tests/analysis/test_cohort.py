"""Labels, contrasts, confounds and regional means of the analysis cohort."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from latentbids.analysis import cohort
from latentbids.errors import UsageError


def test_default_contrasts_put_the_control_label_first_and_skip_small_labels():
    labels = ["AD"] * 5 + ["CN"] * 6 + ["MCI"] * 4 + ["FTD"] * 2 + ["n/a", None, ""]
    pairs, notes = cohort.plan_contrasts(labels, min_per_class=3)
    assert pairs == [("CN", "AD"), ("CN", "MCI"), ("AD", "MCI")]
    assert any("FTD" in n and "fewer than 3" in n for n in notes)


def test_requested_contrasts_are_checked_by_name():
    labels = ["CN"] * 4 + ["AD"] * 4 + ["MCI"] * 2
    assert cohort.plan_contrasts(labels, ["AD:CN"])[0] == [("AD", "CN")]
    with pytest.raises(UsageError, match="no subject has the label 'XX'"):
        cohort.plan_contrasts(labels, ["CN:XX"])
    pairs, notes = cohort.plan_contrasts(labels, ["CN:MCI"], min_per_class=3)
    assert pairs == [] and "MCI" in notes[0]


def test_one_label_gives_no_contrast_and_says_so():
    pairs, notes = cohort.plan_contrasts(["CN"] * 10)
    assert pairs == [] and notes


def test_contrast_name_is_bids_safe():
    assert cohort.contrast_name("CN", "AD") == "CNvsAD"
    assert cohort.contrast_name("s-MCI", "p_MCI") == "sMCIvspMCI"


def test_regional_means_match_a_direct_computation():
    rng = np.random.default_rng(0)
    atlas = rng.integers(0, 4, size=(6, 5, 4))
    vols = rng.random((3, 6, 5, 4))
    G, gm = cohort.regional_means(vols, atlas, [1, 2, 3, 7])
    for i in range(3):
        for j, r in enumerate([1, 2, 3]):
            assert G[i, j] == pytest.approx(vols[i][atlas == r].mean())
        assert gm[i] == pytest.approx(vols[i][atlas > 0].mean())
    assert np.isnan(G[:, 3]).all()  # a region with no voxel on this grid


def test_confounds_sex_coding_one_hot_and_unknown_names():
    cov = pd.DataFrame({"age": [60, "n/a", 70], "sex": ["M", "F", "female"], "site": ["a", "b", "b"],
                        "gm_mean": [0.4, 0.5, 0.6], "tiv": [1500.0, np.nan, 1400.0]})
    C, names = cohort.confound_matrix(cov, ["age", "sex", "site", "tiv"])
    assert names == ["age", "sex", "site=b", "tiv"]
    assert np.isnan(C[1, 0]) and list(C[:, 1]) == [1, 0, 0] and list(C[:, 2]) == [0, 1, 1]
    with pytest.raises(UsageError, match="confound 'weight'"):
        cohort.confound_matrix(cov, ["weight"])


def test_covariate_table_takes_tiv_from_participants_when_volumes_lack_it():
    records = pd.DataFrame({"participant_id": ["sub-1", "sub-2"], "session_id": ["n/a"] * 2,
                            "gm_path": ["a", "b"], "TIV": [1500, 1600]})
    table = cohort.covariate_table(records, [0.4, 0.5], [np.nan, 1650.0])
    assert list(table["tiv"]) == [1500.0, 1650.0] and "gm_path" not in table
