"""Templates and atlases come from wheels or caches, never from the network."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from latentbids.errors import MissingInputError, UsageError
from latentbids.resources import get_atlas, get_template, resample_atlas
from latentbids.resources.templates import parse_output_space


def test_default_template_2mm():
    tpl = get_template()
    # nilearn's grid is not TemplateFlow's (which has res-1 only, 193x229x193): its label says so
    assert tpl.space == "MNI152NLin2009aSym" and tpl.name == "MNI152NLin2009aSym_res-nilearn2"
    assert tpl.provider == "nilearn" and tpl.spatial_reference.startswith("bids::tpl-MNI152NLin2009aSym/")
    assert "99x117x95" in tpl.resolution_text and "not a TemplateFlow grid" in tpl.resolution_text
    assert tpl.shape == (99, 117, 95)
    assert np.allclose(np.abs(np.diag(tpl.affine)[:3]), 2)
    mask = np.asarray(tpl.mask.dataobj) > 0
    priors = sum(np.asarray(img.dataobj) for img in (tpl.csf, tpl.gm, tpl.wm))
    assert priors.max() <= 1.0 + 1e-5
    assert 1.2e6 < mask.sum() * 8 < 2.2e6  # brain mask volume in mm^3 (about 1.5-2 litres)
    gm = np.asarray(tpl.gm.dataobj)
    assert gm[mask].mean() > gm[~mask].mean()


@pytest.mark.slow
def test_other_resolutions():
    assert get_template(resolution=4).shape == (50, 59, 48)
    assert get_template(resolution=1.5).name.endswith("res-nilearn1p5")
    assert get_template("MNI152NLin2009aSym", "nilearn4").shape == (50, 59, 48)


def test_missing_templateflow_space_is_clear(tmp_path):
    with pytest.raises(MissingInputError, match="TemplateFlow cache"):
        get_template("MNI152NLin2009cAsym", 2, templateflow_home=tmp_path)


def test_output_space_parsing():
    assert parse_output_space("MNI152NLin2009aSym:res-2") == ("MNI152NLin2009aSym", "2")
    assert parse_output_space("MNI152NLin2009cAsym:res-02") == ("MNI152NLin2009cAsym", "2")
    assert parse_output_space("MNI152NLin2009aSym:res-nilearn1p5") == ("MNI152NLin2009aSym", "nilearn1p5")
    assert parse_output_space("MNI152NLin6Asym") == ("MNI152NLin6Asym", "2")
    for bad in ("MNI152NLin2009aSym:2mm", "MNI152NLin2009aSym:res-1.5", ":res-2"):
        with pytest.raises(UsageError):
            parse_output_space(bad)


def test_aal_from_wheel_on_template_grid():
    atlas = get_atlas()
    assert atlas.n_regions == 116 and atlas.bids_name == "AAL"
    assert atlas.labels.iloc[0].tolist() == [1, "Precentral_L"]
    on_grid = resample_atlas(atlas, get_template().t1w)
    labels = set(np.unique(np.asarray(on_grid.dataobj))) - {0}
    assert labels == set(atlas.labels["index"])


def test_aal_spm8_from_nilearn_cache(nilearn_data):
    atlas = get_atlas("AAL-SPM8", nilearn_data=nilearn_data)
    assert atlas.n_regions == 116
    assert atlas.labels["name"].iloc[0] == "Precentral_L"
    assert atlas.labels["index"].iloc[0] == 2001


def test_aal_spm8_missing_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("NILEARN_DATA", raising=False)
    with pytest.raises(MissingInputError, match="nilearn cache"):
        get_atlas("AAL-SPM12", nilearn_data=tmp_path)


def test_user_atlas_with_tsv(tmp_path):
    data = np.zeros((10, 10, 10), np.int16)
    data[:5], data[5:] = 1, 2
    path = tmp_path / "atlas-halves_dseg.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    (tmp_path / "atlas-halves_dseg.tsv").write_text("index\tname\n1\tleft\n2\tright\n")
    atlas = get_atlas(str(path))
    assert atlas.labels["name"].tolist() == ["left", "right"]


def test_user_atlas_errors(tmp_path):
    with pytest.raises(UsageError, match="unknown"):
        get_atlas("NoSuchAtlas")
    with pytest.raises(MissingInputError):
        get_atlas(str(tmp_path / "missing.nii.gz"))
    path = tmp_path / "float.nii.gz"
    nib.save(nib.Nifti1Image(np.random.rand(5, 5, 5).astype(np.float32), np.eye(4)), str(path))
    (tmp_path / "float.tsv").write_text("1\ta\n")
    with pytest.raises(UsageError, match="non-integer"):
        get_atlas(str(path))


def test_incomplete_nilearn_cache_never_downloads(tmp_path):
    (tmp_path / "aal_SPM12" / "aal").mkdir(parents=True)  # folder there, files missing
    with pytest.raises(MissingInputError, match="incomplete"):
        get_atlas("AAL-SPM12", nilearn_data=tmp_path)


def test_a_user_atlas_label_table_is_read_as_utf8_and_a_bad_one_is_one_line(tmp_path):
    """--atlas-labels: a BOM (spreadsheet export) is tolerated, a header line skipped; Latin-1, no rows or a
    repeated index are one line naming the file and the fix, never a UnicodeDecodeError."""
    from latentbids.errors import MissingInputError, UsageError
    from latentbids.resources.atlases import read_label_tsv

    good = tmp_path / "labels.tsv"
    good.write_bytes("\ufeffindex\tname\n1\tHippocampus_L\n2\tRégion_2\n".encode("utf-8"))
    table = read_label_tsv(good)
    assert table["index"].tolist() == [1, 2] and table["name"].tolist() == ["Hippocampus_L", "Région_2"]
    latin = tmp_path / "latin.tsv"
    latin.write_bytes("index\tname\n1\tR\xe9gion\n".encode("latin-1"))
    with pytest.raises(MissingInputError, match=r"Atlas label table .*latin.tsv is not UTF-8 .* line 2") as info:
        read_label_tsv(latin)
    assert "\n" not in str(info.value)
    empty = tmp_path / "empty.tsv"
    empty.write_text("index\tname\n")
    with pytest.raises(MissingInputError, match="holds no 'index name' rows"):
        read_label_tsv(empty)
    twice = tmp_path / "twice.tsv"
    twice.write_text("1\tA\n1\tB\n")
    with pytest.raises(UsageError, match="lists an index twice"):
        read_label_tsv(twice)
