#!/usr/bin/env python
"""The power table every silent verdict quotes (METHOD.md section 10): what each claim family finds.

For each planted GM loss (4, 8, 12, 18, 25 % in Hippocampus_L/R and ParaHippocampal_L/R) and each group size
(20, 40, 60, 100, 200 per group), ``--reps`` cohorts are drawn with :mod:`latentbids.simulate.analysis_cohort`
(IXI-estimated regional GM correlation, per-fold latent codes of a linear-autoencoder stand-in: the best case
of an autoencoder that encodes the regions) and analysed with the same estimators and defaults as the group
level.  A family "detects" the loss in a cohort when it supports a claim about a planted region (unit,
latent_vector, vector_bound, rub: any claim about the contrast).  The share of cohorts is the power;
``--write-package-data`` stores the table in ``latentbids/data/calibration.json`` (key ``power``), from which
:func:`latentbids.analysis.power.detectable_loss` reads the smallest loss found with 80 % power at a user's n.
The end-to-end check through ``latentbids group`` (the real autoencoder) is ``calibration_e2e.py --power``.

Commands (also in BENCHMARKS.md)::

    .venv/bin/python benchmarks/power_table.py --reps 40 --write-package-data   # the shipped table
    .venv/bin/python benchmarks/power_table.py --reps 5 --n 20 60                # a smoke run
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latentbids import calibration as cal  # noqa: E402
from latentbids.config import AnalysisConfig  # noqa: E402
from latentbids.simulate.analysis_cohort import RegionalGMModel  # noqa: E402


def detected(c, settings, seed: int, with_sam: bool) -> dict:
    """Which families support a claim about a planted region (or about the contrast) in one cohort."""
    out = cal.lrcp_outcome(c, settings, seed)
    vec = cal.vector_outcome(c, settings, seed)
    row = {"unit": bool(out["unit"]), "region": out["region_planted"] > 0, "lrcp": out["lrcp_planted"] > 0,
           "latent_vector": bool(vec["latent_vector"]), "vector_bound": bool(vec["vector_bound"]),
           "rub": bool(vec["rub"]), "lrcp_planted": out["lrcp_planted"], "lrcp_other": out["lrcp_other"],
           "region_planted": out["region_planted"]}
    if with_sam:
        row["sam"] = cal.sam_outcome(c, settings, seed)["sam_planted"] > 0
    return row


def run_grid(args) -> pd.DataFrame:
    model = RegionalGMModel.ixi()
    planted = tuple(int(model.index[list(model.names).index(n)]) for n in cal.PLANTED_NAMES)
    settings = dataclasses.replace(AnalysisConfig(), n_permutations=args.n_permutations,
                                   sam_permutations=args.sam_permutations)
    rows = []
    for per_group in args.n:
        for loss in args.losses:
            t0 = time.perf_counter()
            for r in range(args.reps):
                rng = np.random.default_rng([args.seed, per_group, loss, r])
                with_sam = r < args.sam_reps and per_group <= args.sam_max_n
                c = cal._cohort(model, 2 * per_group, args.K, 0.5, rng, loss=loss / 100, planted=planted,
                                folds=args.folds, voxels=args.voxels if with_sam else 0)
                rows.append({"n_per_group": per_group, "loss": loss, "rep": r, **detected(c, settings, r, with_sam)})
            part = pd.DataFrame([x for x in rows if x["n_per_group"] == per_group and x["loss"] == loss])
            print(f"{per_group}/group, {loss} %: " + ", ".join(
                f"{f} {part[f].mean():.2f}" for f in cal.POWER_FAMILIES if f in part and part[f].notna().any())
                + f"; LRCP planted {part['lrcp_planted'].mean():.2f} of 4, other {part['lrcp_other'].mean():.2f}"
                + f" ({time.perf_counter() - t0:.0f} s)", flush=True)
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame, args) -> dict:
    """The ``power`` entry of calibration.json: one row per group size, one column per loss, per family."""
    sizes, losses = sorted(table["n_per_group"].unique()), sorted(table["loss"].unique())
    families, counts = {}, {}
    for f in cal.POWER_FAMILIES:
        if f not in table or table[f].isna().all():
            continue
        grid = table.groupby(["n_per_group", "loss"])[f].mean()
        if any((n, loss) not in grid.index or np.isnan(grid[(n, loss)]) for n in sizes for loss in losses):
            continue  # a family measured on part of the grid only (SAM) is not quoted
        families[f] = [[round(float(grid[(n, loss)]), 3) for loss in losses] for n in sizes]
        counts[f] = int(table.groupby(["n_per_group", "loss"])[f].count().min())
    return {"losses": [int(x) for x in losses], "n_per_group": [int(x) for x in sizes], "regions": 4,
            "planted": list(cal.PLANTED_NAMES), "replications": int(args.reps), "families": families,
            "replications_by_family": counts,
            "source": ("estimator level: latentbids.simulate.analysis_cohort (IXI regional GM correlation, "
                       f"linear-autoencoder stand-in, K = {args.K}, {args.folds} folds), the group level's "
                       f"estimators and defaults, {args.n_permutations} permutations; "
                       "'detects' = a supported claim about a planted region"),
            "machine": cal.machine(), "date": date.today().isoformat(),
            "command": _command(args)}


def _command(args) -> str:
    """The command that measured the table: this one, or for ``--from-table`` the one its ``.command`` file
    (written next to every table) records."""
    this = "python benchmarks/power_table.py " + " ".join(sys.argv[1:])
    return cal.command_of(args.from_table, this) if args.from_table else this


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=40)
    p.add_argument("--n", type=int, nargs="+", default=list(cal.POWER_N), help="subjects per group")
    p.add_argument("--losses", type=int, nargs="+", default=list(cal.POWER_LOSSES), help="GM loss, percent")
    p.add_argument("--K", type=int, default=32)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--n-permutations", type=int, default=200)
    p.add_argument("--sam-permutations", type=int, default=50)
    p.add_argument("--sam-reps", type=int, default=0, help="cohorts per cell that also run SAM (voxels)")
    p.add_argument("--sam-max-n", type=int, default=60)
    p.add_argument("--voxels", type=int, default=50)
    p.add_argument("--seed", type=int, default=20261207)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "power_table.tsv")
    p.add_argument("--write-package-data", action="store_true")
    p.add_argument("--from-table", type=Path, metavar="TSV",
                   help="no new cohorts: summarise a table an earlier run wrote (its grid and --reps)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    if args.from_table:
        table = pd.read_csv(args.from_table, sep="\t")
        args.reps = int(table.groupby(["n_per_group", "loss"]).size().min())
    else:
        table = run_grid(args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, sep="\t", index=False)
        note = f"{time.perf_counter() - t0:.0f} s, {cal.machine()}"
        args.out.with_suffix(".command").write_text(f"{_command(args)}  # {note}\n")
        print(f"wrote {args.out} ({note})")
    if args.write_package_data:
        target = ROOT / "latentbids" / "data" / "calibration.json"
        data = json.loads(target.read_text())
        data["power"] = summary(table, args)
        target.write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote the power table into {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
