"""The atlas caution on ground truth (the fast twin of ``benchmarks/atlas_caution.py``).

A cohort is simulated with a GM loss planted in one AAL3 region; AAL, AAL3 and HCPEx read the same maps through
the ``region`` family (AAL at eta, the two others at eta / 2, as a group run does).  What must come out:
AAL3 finds exactly its planted region, AAL finds the AAL region that holds most of the loss (the truth record
says which), no atlas a region the loss does not touch, and the agreement table says the finding does not
depend on the atlas; with the labels shuffled no atlas supports anything.
"""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

ATLASES = ("AAL", "AAL3", "HCPEx")


def _region_claims(maps, y, labels, eta, seed=0):
    from latentbids.analysis.discriminability import family_test
    from latentbids.resources import get_atlas
    from latentbids.utils.regions import region_means

    rows = []
    for i, (name, lab) in enumerate(labels.items()):
        table = get_atlas(name).labels
        G, _ = region_means(maps.reshape(len(maps), -1), lab.ravel(), table["index"].to_numpy())
        keep = np.isfinite(G).all(axis=0)
        test = family_test(G[:, keep], y, statistic="welch", eta=eta if i == 0 else eta / (len(labels) - 1),
                           n_permutations=199, random_state=seed)
        rows += [{"atlas": name, "contrast": "CN vs AD", "family": "region", "region_index": int(idx),
                  "region": str(region), "supported": bool(ok)}
                 for idx, region, ok in zip(table["index"][keep], table["name"][keep], test.passes)]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from latentbids.resources import get_atlas, resample_atlas
    from latentbids.simulate.cohort import simulate_cohort

    out = tmp_path_factory.mktemp("caution") / "sim"
    simulate_cohort(out, 60, 5, ["Frontal_Sup_2_L:20"], gm_only=True, resolution=4.0, atlas="AAL3", overwrite=True)
    parts = pd.read_csv(out / "participants.tsv", sep="\t")
    maps, ref = [], None
    for pid in parts["participant_id"]:
        img = nib.load(str(next((out / pid).rglob("*_label-GM_probseg.nii.gz"))))
        ref = ref or img
        maps.append(np.asarray(img.dataobj, dtype=np.float32))
    truth = json.loads((out / "simulation.json").read_text())["PlantedEffectsOverlap"]["Effects"][0]["Overlap"]
    labels = {a: np.asarray(resample_atlas(get_atlas(a), ref).dataobj).astype(np.int64) for a in ATLASES}
    return np.stack(maps), (parts["group"] != "CN").to_numpy().astype(int), labels, truth


@pytest.mark.slow
def test_a_planted_aal3_region_is_found_in_every_atlas_and_the_table_says_it_holds(cohort):
    from latentbids.analysis.atlas_agreement import agreement_table
    from latentbids.analysis.atlas_verdicts import finding_verdicts

    maps, y, labels, truth = cohort
    claims = _region_claims(maps, y, labels, 0.05)
    found = {a: set(claims.loc[(claims["atlas"] == a) & claims["supported"], "region"]) for a in ATLASES}
    assert found["AAL3"] == {"Frontal_Sup_2_L"}
    assert truth["AAL"]["Regions"][0]["Name"] == "Frontal_Sup_L" and "Frontal_Sup_L" in found["AAL"]
    from latentbids.resources import get_atlas

    planted = labels["AAL3"] == int(get_atlas("AAL3").labels.set_index("name").loc["Frontal_Sup_2_L", "index"])
    for atlas in ("AAL", "HCPEx"):  # nothing outside the regions the loss touches
        table = get_atlas(atlas).labels.set_index("index")["name"]
        touched = {table[i] for i in np.unique(labels[atlas][planted]) if i in table.index}
        assert found[atlas] and found[atlas] <= touched, (atlas, found[atlas] - touched)
    verdicts = finding_verdicts(agreement_table(labels, claims, weights=maps.mean(axis=0)))
    primary = verdicts.loc["region Frontal_Sup_L (AAL, CN vs AD)"]
    assert primary["depends_on_atlas"] == "no" and primary["verdict"] == "holds in AAL3 and HCPEx"
    assert verdicts.loc["region Frontal_Sup_2_L (AAL3, CN vs AD)", "depends_on_atlas"] == "no"


@pytest.mark.slow
def test_shuffled_labels_give_no_atlas_a_claim(cohort):
    maps, y, labels, _ = cohort
    claims = _region_claims(maps, np.random.default_rng(3).permutation(y), labels, 0.05, seed=1)
    assert len(claims) > 116 + 170 and not claims["supported"].any()
