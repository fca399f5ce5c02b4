from latentbids.bids.naming import bids_name, derivative_path, raw_uri, res_label, strip_prefix


def test_entity_order_is_canonical():
    name = bids_name("probseg", ".nii.gz", desc="modulated", label="GM", res=2,
                     space="MNI152NLin2009aSym", sub="01", ses="a")
    assert name == "sub-01_ses-a_space-MNI152NLin2009aSym_res-2_label-GM_desc-modulated_probseg.nii.gz"


def test_paths_and_uris(tmp_path):
    path = derivative_path("probseg", ".nii.gz", sub="01", label="GM")
    assert str(path) == "sub-01/anat/sub-01_label-GM_probseg.nii.gz"
    assert derivative_path("T1w", ".nii.gz", sub="01", ses="2", root=tmp_path).parent == tmp_path / "sub-01/ses-2/anat"
    assert raw_uri("sub-01/anat/sub-01_T1w.nii.gz") == "bids:raw:sub-01/anat/sub-01_T1w.nii.gz"
    assert res_label(2.0) == "2" and res_label(1.5) == "1p5"
    assert strip_prefix("sub-01", "sub") == "01" and strip_prefix("01", "sub") == "01"


def test_working_grid_res_entity_is_one_rule_for_every_level():
    from latentbids.bids.naming import grid_res_entity

    assert grid_res_entity("nilearn2", 2.0, 2.0) == "nilearn2"  # the template's own grid: its label
    assert grid_res_entity("nilearn2", 2.0, 4.0) == "nilearn4"  # --sloppy on nilearn's grid: still nilearn's
    assert grid_res_entity("2", 2.0, 2.0) == "2"  # TemplateFlow's index
    assert grid_res_entity("1", 1.0, 4.0) == "4mm"  # no TemplateFlow index for a block-average
    assert grid_res_entity("nilearn1", 1.0, 1.5) == "nilearn1p5"
