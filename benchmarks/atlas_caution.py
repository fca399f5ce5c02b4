"""The atlas caution on ground truth: which atlases find a planted loss, and what the agreement table says.

For each planted shape (a region of AAL, a region of AAL3, a blob straddling two AAL regions, and no
effect) one cohort is simulated with ``latentbids-simulate``'s machinery (GM maps on the template grid,
``simulation.json`` recording which regions of AAL, AAL3 and HCPEx truly hold the loss); each atlas reads
the same maps: regional mean GM, the ``region`` family's test (max-statistic label permutation, Welch |t|),
at eta for the primary atlas (AAL) and eta / 2 for each of the two sensitivity atlases, as the group level
does; then :func:`latentbids.analysis.atlas_agreement.agreement_table` and its verdicts, GM-weighted.

What it measures is the parcellation's part of a regional verdict (the GM-level family that LRCP builds on);
the autoencoder is not trained here.  Prints one block per shape and writes ``--out`` (JSON).

    python benchmarks/atlas_caution.py --n 60 --percent 8 --out benchmarks/results/atlas_caution.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

ATLASES = ("AAL", "AAL3", "HCPEx")
SHAPES = {  # name -> (effect atlas, effects)
    "AAL region (Temporal_Inf_L)": ("AAL", ["Temporal_Inf_L"]),
    "AAL3 region (Frontal_Sup_2_L)": ("AAL3", ["Frontal_Sup_2_L"]),
    "blob straddling Precentral_L/Postcentral_L": ("AAL", ["blob:-54,-6,28,10"]),
    "no effect": ("AAL", []),
}


def _maps(root: Path) -> tuple[np.ndarray, np.ndarray, object]:
    """Every subject's GM map (N, X, Y, Z), its 0/1 label (AD = 1) and the grid's image."""
    parts = pd.read_csv(root / "participants.tsv", sep="\t")
    maps, labels, ref = [], [], None
    for row in parts.itertuples():
        path = next((root / row.participant_id).rglob("*_label-GM_probseg.nii.gz"))
        img = nib.load(str(path))
        ref = ref or img
        maps.append(np.asarray(img.dataobj, dtype=np.float32))
        labels.append(int(row.group != "CN"))
    return np.stack(maps), np.asarray(labels), ref


def _claims(maps, y, atlas_labels: dict, eta: float, n_perm: int, seed: int) -> pd.DataFrame:
    """The region family's claims in every atlas (primary at eta, the others at eta / (n - 1))."""
    from latentbids.analysis.discriminability import family_test
    from latentbids.resources import get_atlas
    from latentbids.utils.regions import region_means

    rows, n_sens = [], len(atlas_labels) - 1
    for i, (name, lab) in enumerate(atlas_labels.items()):
        table = get_atlas(name).labels
        G, _ = region_means(maps.reshape(len(maps), -1), lab.ravel(), table["index"].to_numpy())
        keep = np.isfinite(G).all(axis=0)
        test = family_test(G[:, keep], y, statistic="welch", eta=eta if i == 0 else eta / n_sens,
                           n_permutations=n_perm, random_state=seed)
        for idx, region, ok in zip(table["index"][keep], table["name"][keep], test.passes):
            rows.append({"atlas": name, "contrast": "CN vs AD", "family": "region", "region_index": int(idx),
                         "region": str(region), "supported": bool(ok)})
    return pd.DataFrame(rows)


def run_shape(shape: str, n: int, percent: float, seed: int, n_perm: int, eta: float, tmp: Path) -> dict:
    from latentbids.analysis.atlas_agreement import agreement_table
    from latentbids.analysis.atlas_verdicts import finding_verdicts
    from latentbids.resources import get_atlas, resample_atlas
    from latentbids.simulate.cohort import simulate_cohort

    effect_atlas, regions = SHAPES[shape]
    effects = [f"{r}:{percent:g}" for r in regions]
    out = tmp / f"cohort{abs(hash(shape)) % 10**6}"
    simulate_cohort(out, 2 * n, seed, effects, gm_only=True, resolution=4.0, atlas=effect_atlas, overwrite=True)
    truth = json.loads((out / "simulation.json").read_text()).get("PlantedEffectsOverlap", {})
    maps, y, ref = _maps(out)
    labels = {a: np.asarray(resample_atlas(get_atlas(a), ref).dataobj).astype(np.int64) for a in ATLASES}
    claims = _claims(maps, y, labels, eta, n_perm, seed)
    supported = claims[claims["supported"]]
    table = agreement_table(labels, claims, weights=maps.mean(axis=0))
    verdicts = finding_verdicts(table) if len(table) else pd.DataFrame(columns=["verdict"])
    true_regions = {}
    for eff in truth.get("Effects", []):
        for atlas, ov in eff.get("Overlap", {}).items():
            true_regions.setdefault(atlas, []).extend(f"{r['Name']} ({r['Fraction']:.2f})" for r in ov["Regions"])
    return {"shape": shape, "effects": effects, "effect_atlas": effect_atlas,
            "truth": true_regions,
            "supported": {a: supported[supported["atlas"] == a]["region"].tolist() for a in ATLASES},
            "verdicts": {str(k): str(v) for k, v in verdicts["verdict"].items()}}


def main(argv=None) -> int:
    from latentbids.calibration.families import machine

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=60, help="subjects per group")
    p.add_argument("--percent", type=float, default=8.0, help="GM loss in the planted shape (%%)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--permutations", type=int, default=999)
    p.add_argument("--eta", type=float, default=0.05)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    print(f"# atlas caution: {args.n} per group, {args.percent:g} % loss, region family (Welch |t|, "
          f"{args.permutations} permutations), AAL primary at eta {args.eta}, AAL3/HCPEx at {args.eta / 2:g}; "
          f"{machine()}")
    results = []
    with tempfile.TemporaryDirectory(prefix="atlas-caution-") as tmp:
        for shape in SHAPES:
            start = time.perf_counter()
            res = run_shape(shape, args.n, args.percent, args.seed, args.permutations, args.eta, Path(tmp))
            res["seconds"] = round(time.perf_counter() - start, 1)
            results.append(res)
            print(f"\n## {shape} ({res['seconds']} s)")
            for atlas in ATLASES:
                print(f"  {atlas:6s} truth: {'; '.join(res['truth'].get(atlas, [])) or '-'}")
                print(f"  {atlas:6s} supported: {', '.join(res['supported'][atlas]) or 'none'}")
            for finding, verdict in res["verdicts"].items():
                print(f"  {finding}: {verdict}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
                                        "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
