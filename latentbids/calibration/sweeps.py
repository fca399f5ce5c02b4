"""The calibration sweeps: false-positive rates on null cohorts, power on planted ones, and the summary
shipped in ``latentbids/data/calibration.json`` (the numbers every group report quotes).

``benchmarks/calibration.py`` is the command line around these; the tests run small versions.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from latentbids.calibration.families import (
    FAMILIES,
    RULES,
    lrcp_outcome,
    machine,
    pc1_outcome,
    sam_outcome,
    shap_outcome,
    vector_outcome,
    wilson,
)
from latentbids.simulate.analysis_cohort import draw_cohort

#: the package data file the summaries go to
PACKAGE_DATA = Path(__file__).resolve().parents[1] / "data" / "calibration.json"


def _cohort(model, n, K, balance, rng, *, loss=0.0, planted=(), folds=5, voxels=0, permute=False):
    n1 = int(round(n * balance))
    c = draw_cohort(model, n - n1, n1, K, rng=rng, loss=loss, planted=planted, n_folds=folds,
                    voxels_per_region=voxels)
    if permute:  # labels permuted: nothing planted is true any more, every positive is false
        c = dataclasses.replace(c, y=rng.permutation(c.y), planted=())
    return c


def run_fpr(model, planted, settings, args) -> list[dict]:
    rows = []
    grid = [(n, K, b) for n in args.n for K in args.K for b in (0.5, 0.3)]
    for n, K, balance in grid:
        for null in ("fresh", "permuted"):
            counts = {f: 0 for f in FAMILIES}
            reps = {f: 0 for f in FAMILIES}
            heavy = K == args.K[1] and n <= 100  # SAM and SHAP/SAR do not depend on K: one K, small n
            t0 = time.perf_counter()
            reps_cell = args.reps_large if n >= 400 else args.reps
            for r in range(reps_cell):
                rng = np.random.default_rng([args.seed, n, K, int(balance * 10), null == "permuted", r])
                voxels = args.voxels if heavy and r < args.reps_heavy else 0
                c = _cohort(model, n, K, balance, rng, loss=0.18 if null == "permuted" else 0.0,
                            planted=planted if null == "permuted" else (), folds=args.folds, voxels=voxels,
                            permute=null == "permuted")
                out = {**lrcp_outcome(c, settings, r), **vector_outcome(c, settings, r), **pc1_outcome(c, settings, r)}
                if voxels:
                    out.update(sam_outcome(c, settings, r))
                    if null == "fresh":  # the errors are unrelated to the labels either way
                        out.update(shap_outcome(c, settings, r))
                for f in FAMILIES:
                    if f in out:
                        counts[f] += bool(out[f])
                        reps[f] += 1
            for f in FAMILIES:
                if reps[f]:
                    lo, hi = wilson(counts[f], reps[f])
                    rows.append(dict(kind="fpr", family=f, rule=RULES[f], null=null, n=n, K=K,
                                     balance=f"{round((1 - balance) * 100)}/{round(balance * 100)}", reps=reps[f],
                                     rate=counts[f] / reps[f], lo=lo, hi=hi))
            print(f"fpr n={n} K={K} balance={balance} null={null}: "
                  + ", ".join(f"{f} {counts[f]}/{reps[f]}" for f in FAMILIES if reps[f])
                  + f" ({time.perf_counter() - t0:.0f} s)", flush=True)
    return rows


def run_power(model, planted, settings, args) -> list[dict]:
    rows = []
    for per_group in args.power_n:
        for loss in (0.08, 0.18):
            t0 = time.perf_counter()
            tally = {"all_planted": 0, "lrcp_planted": 0, "lrcp_other": 0, "region_planted": 0, "sam_planted": 0}
            sam_reps = 0
            for r in range(args.power_reps):
                rng = np.random.default_rng([args.seed, 7, per_group, int(loss * 100), r])
                voxels = args.voxels if r < args.reps_heavy and per_group <= 60 else 0
                c = _cohort(model, 2 * per_group, 32, 0.5, rng, loss=loss, planted=planted, folds=args.folds,
                            voxels=voxels)
                out = lrcp_outcome(c, settings, r)
                for key in ("all_planted", "lrcp_planted", "lrcp_other", "region_planted"):
                    tally[key] += out[key]
                if voxels:
                    tally["sam_planted"] += sam_outcome(c, settings, r)["sam_planted"]
                    sam_reps += 1
            R = args.power_reps
            lo, hi = wilson(tally["all_planted"], R)
            rows.append(dict(kind="power", family="lrcp", rule="all 4 planted regions LRCP-positive", null="planted",
                             n=2 * per_group, K=32, balance="50/50", reps=R, rate=tally["all_planted"] / R, lo=lo,
                             hi=hi, loss=loss, mean_planted_lrcp=tally["lrcp_planted"] / R,
                             mean_other_lrcp=tally["lrcp_other"] / R, mean_planted_region=tally["region_planted"] / R,
                             mean_planted_sam=tally["sam_planted"] / sam_reps if sam_reps else math.nan))
            print(f"power {per_group}/group loss {loss:.0%}: all 4 LRCP-positive {tally['all_planted']}/{R}, "
                  f"planted found {tally['lrcp_planted'] / R:.2f}, other {tally['lrcp_other'] / R:.2f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return rows


def run_unbalanced(model, planted, settings, args) -> list[dict]:
    """70/30 classes: both statistics under both family-wise rules, null and planted (n = 100, K = 32)."""
    rows = []
    for statistic in ("balanced", "majority"):
        for rule in ("permutation", "bonferroni"):
            s = dataclasses.replace(settings, statistic=statistic, family_correction=rule)
            for kind, loss in (("fpr", 0.0), ("power", 0.18)):
                hits = {"unit": 0, "region": 0, "lrcp": 0}
                planted_found = 0
                for r in range(args.reps):
                    rng = np.random.default_rng([args.seed, 3, r, loss > 0])
                    c = _cohort(model, 100, 32, 0.3, rng, loss=loss, planted=planted if loss else (), folds=args.folds)
                    out = lrcp_outcome(c, s, r)
                    for f in hits:
                        hits[f] += out[f]
                    planted_found += out["region_planted"]
                for f, k in hits.items():
                    lo, hi = wilson(k, args.reps)
                    rows.append(dict(kind=f"70/30 {kind}", family=f, rule=f"{rule}, {statistic}",
                                     null="fresh" if kind == "fpr" else "planted 18 %", n=100, K=32, balance="70/30",
                                     reps=args.reps, rate=k / args.reps, lo=lo, hi=hi,
                                     mean_planted_region=planted_found / args.reps if kind == "power" else math.nan))
                print(f"70/30 {statistic} {rule} {kind}: " + ", ".join(f"{f} {k}/{args.reps}" for f, k in hits.items()),
                      flush=True)
    return rows


def package_summary(rows: pd.DataFrame, settings, args) -> dict:
    fpr = rows[rows["kind"] == "fpr"]
    families = {}
    for f in FAMILIES:
        part = fpr[fpr["family"] == f]
        if part.empty:
            continue
        worst = part.sort_values(["rate", "hi"], ascending=False).iloc[0]
        families[f] = {"rule": RULES[f], "fpr": float(worst["rate"]), "lo": float(worst["lo"]),
                       "hi": float(worst["hi"]),
                       "condition": f"n = {worst['n']}, K = {worst['K']}, {worst['balance']}, {worst['null']} null",
                       "replications": int(part["reps"].sum()), "cells": int(len(part)),
                       "mean_fpr": float(part["rate"].mean()),
                       "sizes": sorted(int(n) for n in part["n"].unique())}
        hits = int(round(float((part["rate"] * part["reps"]).sum())))
        lo, hi = wilson(hits, int(part["reps"].sum()))
        families[f].update(false_positives=hits, pooled_fpr=hits / float(part["reps"].sum()), pooled_lo=lo,
                           pooled_hi=hi)
    ns = sorted(int(n) for n in fpr["n"].unique())
    ks = sorted(int(k) for k in fpr["K"].unique())
    return {"description": (f"per family, the worst of its cells (n = {', '.join(map(str, ns))}, K = "
                            f"{', '.join(map(str, ks))}, balanced and 70/30 classes, fresh and label-permuted nulls: "
                            "each family's 'sizes' and 'cells' say which it was measured on) and the pooled rate; "
                            f"{args.folds} folds; IXI-estimated regional GM correlation"),
            "eta": settings.eta, "machine": machine(), "date": date.today().isoformat(),
            "command": "python benchmarks/calibration.py " + " ".join(sys.argv[1:]), "families": families}


def write_package_data(summary: dict, command_note: str = "") -> None:
    """``latentbids/data/calibration.json``: the summary every group report quotes."""
    out = PACKAGE_DATA
    data = json.loads(out.read_text()) if out.is_file() else {}  # the other benchmarks' keys stay
    data.update(summary, command=summary["command"] + command_note)
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {out}")


def command_of(tsv: Path, default: str = "?") -> str:
    """The command that measured a results table, from the ``.command`` file written next to it."""
    side = Path(tsv).with_suffix(".command")
    return side.read_text().strip() if side.exists() else default
