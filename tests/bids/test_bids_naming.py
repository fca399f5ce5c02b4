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
