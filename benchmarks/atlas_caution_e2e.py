#!/usr/bin/env python
"""The atlas caution through the real group level: ``latentbids group --atlas AAL AAL3 HCPEx`` on simulated cohorts.

``atlas_caution.py`` measures the parcellation's part of a regional verdict with the ``region`` family on GM maps;
this runs the command users run (autoencoder, LRCP, SAM, SHAP per atlas, the agreement table), with the network
and analysis settings of ``calibration_e2e.py`` (demo network, ``--epochs`` epochs, 200 label permutations, cheap
SHAP):

* ``--null-runs N``: N null cohorts (no planted effect, two labels drawn at random afterwards; 40 and 100 per
  group, cycled): per run and atlas, whether it supported any claim about the contrast (``region``, ``lrcp``,
  ``sam``); the primary (AAL) is tested at eta, each of the two sensitivity atlases at eta / 2.
* ``--shape-runs N``: N cohorts per planted shape (:data:`SHAPES`, 60 per group): the regions each atlas supports
  per family and the agreement verdicts ("holds in ...", "only in ...", "partly ...").

One JSON line per run; ``--out`` keeps the table after every run (a long sweep).

    python benchmarks/atlas_caution_e2e.py --null-runs 12 --shape-runs 2 --epochs 10 \\
        --out benchmarks/results/atlas_caution_e2e.tsv
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import calibration_e2e as e2e  # noqa: E402

ATLASES = ("AAL", "AAL3", "HCPEx")
REGIONAL = ("region", "lrcp", "sam")
#: planted shape -> (the atlas whose region names --effect uses, the effect)
SHAPES = {
    "AAL3 Frontal_Sup_2_L 12 %": ("AAL3", "Frontal_Sup_2_L:12"),
    "blob 14 mm at (-54, -6, 28), 15 %": ("AAL", "blob:-54,-6,28,14:15"),
}


def _claims(root: Path, analysis: dict) -> pd.DataFrame:
    """Every atlas's claims: the primary's from analysis.json, each sensitivity atlas's from its claims TSV."""
    from latentbids.analysis.claims import ClaimsList

    frames = [ClaimsList.from_json(analysis["Claims"]).frame().assign(atlas=lambda f: f["atlas"].replace("", "AAL"))]
    out = root / "derivatives" / "latentbids"
    for key, rel in analysis["Files"].items():
        if key.startswith("atlas-") and key.endswith("_claims"):
            frames.append(pd.read_csv(out / rel, sep="\t"))
    claims = pd.concat(frames, ignore_index=True)
    claims["supported"] = claims["supported"].astype(bool)
    return claims


def _verdicts(root: Path, analysis: dict) -> list[str]:
    return [v for v in analysis.get("Verdicts", []) if v.startswith("Atlas check")]


def run_row(root: Path, analysis: dict) -> dict:
    claims = _claims(root, analysis)
    about = claims[claims["family"].isin(REGIONAL) & claims["contrast"].fillna("").ne("") & claims["supported"]]
    row = {}
    for atlas in ATLASES:
        mine = about[about["atlas"] == atlas]
        row[f"{atlas}_any"] = bool(len(mine))
        for family in REGIONAL:
            row[f"{atlas}_{family}"] = ", ".join(sorted(set(mine.loc[mine["family"] == family, "item"])))
    row["sensitivity_any"] = row["AAL3_any"] or row["HCPEx_any"]
    row["verdicts"] = " | ".join(_verdicts(root, analysis))
    row["failures"] = len(analysis.get("Failures") or {})
    return row


def run(args) -> pd.DataFrame:
    rng = np.random.default_rng([args.seed, args.first_run])
    scratch = Path(tempfile.mkdtemp(prefix="latentbids-atlas-e2e-", dir=args.scratch))
    config = e2e._config(scratch, args.epochs)
    jobs = [("null", i, (40, 100)[i % 2], None) for i in range(args.first_run, args.first_run + args.null_runs)]
    jobs += [("shape", i, 60, shape) for shape in SHAPES
             for i in range(args.first_run, args.first_run + args.shape_runs)]
    rows = []
    for kind, i, per_group, shape in jobs:
        root, work = scratch / f"{kind}{i}", scratch / "work"
        seed = args.seed + 1000 * i + (0 if shape is None else 1 + list(SHAPES).index(shape))
        atlas, effect = SHAPES[shape] if shape else ("AAL", None)
        e2e._simulate(root, 2 * per_group, seed, effect, ("--effect-atlas", atlas))
        if kind == "null":
            e2e._relabel(root, ("CN", "AD"), 0.5, rng)
        analysis, seconds = e2e._group(root, work, config, args.nprocs, ("--atlas", *ATLASES))
        truth = {}
        if shape:
            overlap = json.loads((root / "simulation.json").read_text()).get("PlantedEffectsOverlap", {})
            truth = {"truth": json.dumps(overlap)}
        row = {"kind": kind, "run": i, "shape": shape or "", "n_per_group": per_group, "seed": seed,
               "seconds": round(seconds, 1), **run_row(root, analysis), **truth}
        rows.append(row)
        print(json.dumps(row), flush=True)
        pd.DataFrame(rows).to_csv(args.out, sep="\t", index=False)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(scratch, ignore_errors=True)
    return pd.DataFrame(rows)


def summarize(table: pd.DataFrame) -> None:
    from latentbids.calibration.families import machine, wilson

    print(f"# {machine()}")
    null = table[table["kind"] == "null"]
    if len(null):
        n = len(null)
        for name, col in (("primary AAL (eta)", "AAL_any"), ("sensitivity AAL3 or HCPEx (eta/2 each)",
                                                              "sensitivity_any")):
            k = int(null[col].astype(bool).sum())
            lo, hi = wilson(k, n)
            print(f"null, {name}: {k}/{n} runs with a supported contrast claim "
                  f"(95 % CI {100 * lo:.1f}-{100 * hi:.1f} %)")
        added = int((null["sensitivity_any"].astype(bool) & ~null["AAL_any"].astype(bool)).sum())
        print(f"null, a sensitivity atlas adds a claim where the primary has none: {added}/{n}")
    for shape, part in table[table["kind"] == "shape"].groupby("shape"):
        print(f"\n## {shape} ({len(part)} runs)")
        for r in part.itertuples():
            print(f"run {r.run}: " + "; ".join(f"{a} lrcp [{getattr(r, f'{a}_lrcp')}] sam [{getattr(r, f'{a}_sam')}]"
                                               for a in ATLASES))
            print(f"  {r.verdicts}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--null-runs", type=int, default=0)
    p.add_argument("--shape-runs", type=int, default=0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--nprocs", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--seed", type=int, default=20261208)
    p.add_argument("--first-run", type=int, default=0)
    p.add_argument("--scratch", type=Path, default=None)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "atlas_caution_e2e.tsv")
    p.add_argument("--summarize", type=Path, nargs="+", metavar="TSV")
    args = p.parse_args(argv)
    if args.summarize:
        # keep_default_na=False: the kind "null" and the empty region lists are text, not missing values
        summarize(pd.concat([pd.read_csv(t, sep="\t", keep_default_na=False) for t in args.summarize],
                            ignore_index=True))
        return 0
    summarize(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
