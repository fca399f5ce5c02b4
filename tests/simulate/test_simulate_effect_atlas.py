"""Losses planted in another atlas's regions or in a sphere, and the truth record of where they are.

Issue 21: a regional verdict is a statement about one parcellation, so the simulator plants in AAL,
AAL3, HCPEx or a user atlas (``--effect-atlas``) or in a blob straddling regions
(``blob:X,Y,Z,RADIUS_MM:PERCENT``), and ``simulation.json`` says which regions of each atlas hold
each planted loss (``PlantedEffectsOverlap``).  Cohorts here are on the 4 mm grid to stay fast.
"""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from latentbids.cli.simulate import main
from latentbids.errors import UsageError
from latentbids.simulate import build_spec, simulate_subject
from latentbids.simulate.anatomy import head_model
from latentbids.simulate.effects import AtlasGrid, get_atlas_grid, sphere_mask
from latentbids.simulate.spec import Effect, check_effect_atlas, parse_effect
from latentbids.simulate.truth_overlap import loss_overlap

RES = 4.0
#: an AAL3 region that AAL does not have (posterior orbitofrontal cortex, in AAL's Frontal_Inf_Orb_L)
AAL3_REGION = "OFCpost_L"
#: a sphere on the left central sulcus: on the 4 mm grid its GM loss falls 0.57 in AAL's
#: Postcentral_L and 0.43 in Precentral_L (2 mm: 0.65 and 0.35), nothing elsewhere
BLOB = "blob:-54,-6,28,8:15"
STRADDLED = {"Precentral_L", "Postcentral_L"}
#: truth(effect) / truth(no effect) = 1 - loss up to float32 rounding of the product
EXACT = dict(rtol=2e-6, atol=1e-8)


# --- pure functions: no template --------------------------------------------------------------------

def _toy_atlas() -> AtlasGrid:
    labels = np.zeros((10, 1, 1), dtype=np.int16)
    labels[:5] = 1  # "A": 5 voxels
    labels[5:8] = 2  # "B": 3 voxels
    labels[8] = 3  # "C": 1 voxel; the last voxel is unlabelled
    return AtlasGrid("toy", labels, {"A": 1, "B": 2, "C": 3, "Empty": 4}, "test", np.eye(4))


def test_loss_overlap_shares_sum_to_one():
    atlas = _toy_atlas()
    loss = np.full((10, 1, 1), 0.2, dtype=np.float32)
    out = loss_overlap(loss, atlas, min_fraction=0.15)
    assert [r["Name"] for r in out["Regions"]] == ["A", "B"]  # C holds 0.1: not listed
    assert [r["Fraction"] for r in out["Regions"]] == [0.5, 0.3] and out["Regions"][0]["Index"] == 1
    assert out["Unlisted"] == pytest.approx(0.1) and out["OutsideAtlas"] == pytest.approx(0.1)
    total = sum(r["Fraction"] for r in out["Regions"]) + out["Unlisted"] + out["OutsideAtlas"]
    assert total == pytest.approx(1.0)
    weights = np.zeros((10, 1, 1))
    weights[5:8] = 1.0  # only B's voxels hold GM: all of the loss is B's
    assert loss_overlap(loss, atlas, weights=weights)["Regions"] == [{"Name": "B", "Index": 2, "Fraction": 1.0}]
    assert loss_overlap(np.zeros_like(loss), atlas) == {"Regions": [], "Unlisted": 0.0, "OutsideAtlas": 0.0}
    with pytest.raises(ValueError, match="one grid"):
        loss_overlap(np.zeros((3, 3, 3)), atlas)


def test_sphere_mask_is_the_voxels_within_the_radius():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -10.0
    mask = sphere_mask((11, 11, 11), affine, (0.0, 0.0, 0.0), 2.5)  # centre is voxel (5, 5, 5)
    assert mask.sum() == 7 and mask[5, 5, 5] and mask[4, 5, 5] and not mask[4, 4, 5]  # 2 mm in, 2.83 out
    assert sphere_mask((11, 11, 11), affine, (0.0, 0.0, 0.0), 3.0).sum() == 19  # edges in, corners (3.46) out
    assert sphere_mask((11, 11, 11), affine, (0.0, 0.0, 0.0), 3.5).sum() == 27
    assert sphere_mask((11, 11, 11), affine, (-10.0, -10.0, -10.0), 2.5).sum() == 4  # cut by the grid's corner
    assert not sphere_mask((11, 11, 11), affine, (100.0, 0.0, 0.0), 5.0).any()


def test_blob_effects_parse_and_round_trip():
    effect = parse_effect(BLOB)
    assert effect == Effect((), 15.0, (-54.0, -6.0, 28.0), 8.0) and effect.is_blob
    assert parse_effect(effect.to_text()) == effect and effect.to_text() == BLOB
    assert effect.to_dict() == {"regions": [], "percent": 15.0, "center_mm": [-54.0, -6.0, 28.0], "radius_mm": 8.0}
    odd = Effect((), 12.5, (0.1234567891, 0.0, 0.0), 7.25)
    assert parse_effect(odd.to_text()) == odd
    assert Effect(("Hippocampus_L",), 20.0).to_dict() == {"regions": ["Hippocampus_L"], "percent": 20.0}


@pytest.mark.parametrize("text, words", [
    ("blob:-54,-6,28,0:15", "radius 0 mm must be above 0"),
    ("blob:-54,-6,28,-3:15", "must be above 0"),
    ("blob:-54,-6,28:15", "is not blob:X,Y,Z,RADIUS_MM:PERCENT"),
    ("blob:-54,-6,28,8:150", "outside 0-100"),
    ("blob:x,-6,28,8:15", "is not a number"),
    ("blob:-54,-6,28,8", "is not blob:X,Y,Z,RADIUS_MM:PERCENT"),
])
def test_bad_blobs_are_one_line_usage_errors(text, words):
    with pytest.raises(UsageError) as info:
        parse_effect(text)
    assert words in info.value.message and "\n" not in info.value.message


def test_effect_atlas_names():
    assert [check_effect_atlas(a) for a in ("AAL", "AAL3", "HCPEx")] == ["AAL", "AAL3", "HCPEx"]
    with pytest.raises(UsageError, match=r"'hcpex' is unknown \(did you mean HCPEx\?\): use AAL, AAL3, HCPEx"):
        check_effect_atlas("hcpex")
    with pytest.raises(UsageError, match="a path to an integer-label NIfTI"):
        check_effect_atlas("Schaefer400")


# --- planted in the template: exact factors ---------------------------------------------------------

def _affected_pair(effects, **options):
    """Subject 2 (AD, severity > 0) with ``effects`` and without, on the 4 mm grid."""
    spec = build_spec(2, 5, effects=effects, gm_only=True, resolution=RES, **options)
    null = build_spec(2, 5, effects=[], gm_only=True, resolution=RES)
    sub, ref = simulate_subject(spec, 2), simulate_subject(null, 2)
    assert sub.row == ref.row and sub.row["severity"] > 0
    return sub, ref


@pytest.mark.slow
def test_an_aal3_region_loses_exactly_its_factor_and_nothing_else_changes():
    head = head_model(RES)
    aal3 = get_atlas_grid(head, "AAL3")
    assert AAL3_REGION not in get_atlas_grid(head, "AAL").index
    sub, ref = _affected_pair([f"{AAL3_REGION}:20"], atlas="AAL3")
    inside = aal3.labels == aal3.index[AAL3_REGION]
    assert inside.sum() > 30 and (ref.gm[inside] > 0).sum() > 30
    np.testing.assert_array_equal(sub.gm[~inside], ref.gm[~inside])
    np.testing.assert_allclose(sub.gm[inside], ref.gm[inside] * (1 - 0.2 * sub.row["severity"]), **EXACT)
    assert set(np.unique(aal3.labels[sub.loss > 0])) == {aal3.index[AAL3_REGION]}
    with pytest.raises(UsageError, match=f"region '{AAL3_REGION}' is not an AAL region name"):
        build_spec(2, 5, effects=[f"{AAL3_REGION}:20"], gm_only=True, resolution=RES)


@pytest.mark.slow
def test_a_blob_loses_exactly_its_factor_inside_the_sphere_across_two_regions():
    head = head_model(RES)
    aal = get_atlas_grid(head, "AAL")
    sub, ref = _affected_pair([BLOB])
    inside = sphere_mask(head.shape, head.affine, (-54.0, -6.0, 28.0), 8.0)
    np.testing.assert_array_equal(sub.gm[~inside], ref.gm[~inside])
    np.testing.assert_allclose(sub.gm[inside], ref.gm[inside] * (1 - 0.15 * sub.row["severity"]), **EXACT)
    hit = {name for name, idx in aal.index.items() if ((aal.labels == idx) & inside & (ref.gm > 0)).any()}
    assert hit == STRADDLED  # on the boundary: both sides, nothing else
    # a blob over a planted region: the losses multiply, the factor stays exact
    both, ref = _affected_pair([BLOB, "Postcentral_L:10"])
    post = aal.labels == aal.index["Postcentral_L"]
    sev = both.row["severity"]
    factor = np.where(post, 1 - 0.1 * sev, 1.0) * np.where(inside, 1 - 0.15 * sev, 1.0)
    np.testing.assert_allclose(both.gm, ref.gm * factor, **EXACT)


@pytest.mark.slow
def test_a_user_label_atlas_plants_where_it_says(tmp_path):
    head = head_model(RES)
    x_mm = head.affine[0, 0] * np.arange(head.shape[0]) + head.affine[0, 3]
    halves = (np.where(x_mm < 0, 1, 2)[:, None, None] * head.mask).astype(np.int16)
    path = tmp_path / "atlas-halves_dseg.nii.gz"
    nib.save(nib.Nifti1Image(halves, head.affine), path)
    (tmp_path / "atlas-halves_dseg.tsv").write_text("index\tname\n1\tleft\n2\tright\n")
    sub, ref = _affected_pair(["left:10"], atlas=str(path))
    changed = sub.gm != ref.gm
    assert changed.sum() > 1000 and (halves[changed] == 1).all()
    with pytest.raises(UsageError, match="'middle' is not an .*halves_dseg.nii.gz region name"):
        build_spec(2, 5, effects=["middle:10"], gm_only=True, resolution=RES, atlas=str(path))


# --- the truth record, through the command line ----------------------------------------------------

@pytest.fixture(scope="module")
def record(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "atlas3"
    argv = [str(out), "--n-subjects", "2", "--seed", "3", "--gm-only", "--resolution", "4",
            "--effect-atlas", "AAL3", "--effect", f"{AAL3_REGION}:20", "--effect", BLOB]
    assert main(argv) == 0
    return json.loads((out / "simulation.json").read_text()), (out / "README.md").read_text()


@pytest.mark.slow
def test_truth_record_keeps_its_keys_and_says_where_each_loss_is(record):
    sim, readme = record
    assert sim["Atlas"]["Name"] == "AAL3" and sim["Parameters"]["atlas"] == "AAL3"
    region, blob = sim["PlantedEffects"]
    assert region == {"Regions": [AAL3_REGION], "RegionIndices": [29], "Percent": 20.0}
    assert blob == {"Regions": [], "RegionIndices": [], "Percent": 15.0,
                    "Blob": {"CenterMM": [-54.0, -6.0, 28.0], "RadiusMM": 8.0}}
    overlap = sim["PlantedEffectsOverlap"]
    assert overlap["Atlases"] == ["AAL", "AAL3", "HCPEx"] and overlap["MinFraction"] == 0.05
    first, second = overlap["Effects"]
    assert first["Atlas"] == "AAL3" and first["Regions"] == [AAL3_REGION] and first["Voxels"] > 30
    assert second["Atlas"] == "blob" and second["Blob"] == blob["Blob"] and second["Percent"] == 15.0
    for effect in overlap["Effects"]:
        assert set(effect["Overlap"]) == {"AAL", "AAL3", "HCPEx"}
        for atlas, shares in effect["Overlap"].items():
            fractions = [r["Fraction"] for r in shares["Regions"]]
            assert fractions == sorted(fractions, reverse=True) and min(fractions) >= 0.05, atlas
            assert sum(fractions) + shares["Unlisted"] + shares["OutsideAtlas"] == pytest.approx(1, abs=2e-4)
    assert first["Overlap"]["AAL3"]["Regions"] == [{"Name": AAL3_REGION, "Index": 29, "Fraction": 1.0}]
    assert first["Overlap"]["AAL"]["Regions"][0]["Name"] == "Frontal_Inf_Orb_L"  # AAL has no OFCpost
    aal = {r["Name"]: r["Fraction"] for r in second["Overlap"]["AAL"]["Regions"]}
    assert set(aal) == STRADDLED and min(aal.values()) > 0.3 and sum(aal.values()) == pytest.approx(1, abs=1e-3)
    assert len(second["Overlap"]["HCPEx"]["Regions"]) >= 2  # finer: the loss spreads over more regions
    assert "sphere of 8 mm around MNI (-54, -6, 28) mm: 15 %" in readme and "(regions of AAL3)" in readme


@pytest.mark.slow
def test_no_effect_needs_no_atlas_overlap(tmp_path):
    out = tmp_path / "null"
    assert main([str(out), "--n-subjects", "2", "--seed", "1", "--gm-only", "--resolution", "4"]) == 0
    sim = json.loads((out / "simulation.json").read_text())
    assert sim["PlantedEffects"] == [] and sim["PlantedEffectsOverlap"]["Effects"] == []


BAD = [
    (["--effect-atlas", "Nope", "--effect", "Hippocampus_L:20"], "--effect-atlas 'Nope' is unknown"),
    (["--effect-atlas", "aal3"], "did you mean AAL3?"),
    (["--effect-atlas", "AAL3", "--effect", "Hippocampus_X:20"], "not an AAL3 region name"),
    (["--effect-atlas", "HCPEx", "--effect", "Precuneus_L:20"], "not an HCPEx region name"),
    (["--effect-atlas", "AAL3", "--effect", "Thalamus_L:20"], "covers no voxel of the 4 mm grid"),
    (["--effect", "blob:-54,-6,28,0:15"], "must be above 0"),
    (["--effect", "blob:-54,-6,28:15"], "blob:X,Y,Z,RADIUS_MM:PERCENT"),
    (["--effect", "blob:-54,-6,28,8:101"], "outside 0-100"),
    (["--effect", "blob:150,0,0,8:15"], "covers no GM"),
]


@pytest.mark.slow
@pytest.mark.parametrize("argv, words", BAD, ids=[b[1] for b in BAD])
def test_bad_atlas_and_blob_options_exit_64_with_one_line(tmp_path, capsys, argv, words):
    out = tmp_path / "sim"
    assert main([str(out), "--n-subjects", "2", "--seed", "1", "--gm-only", "--resolution", "4"] + argv) == 64
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("latentbids-simulate: error:") and words in err
    assert not out.exists()


def test_help_names_the_atlas_and_the_blob(capsys):
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--effect-atlas" in text and "HCPEx" in text and "blob:X,Y,Z,RADIUS_MM:PERCENT" in text
    assert "PlantedEffectsOverlap" in text
