#!/usr/bin/env python
"""Calibration of every claim family: false-positive rates on null cohorts, power on planted effects.

latentbids makes a claim only through a test that can fail (METHOD.md section 9); this script measures,
for each family of claims (unit, region, lrcp, sam, latent_vector, rub, sar, shap, pc1), how often the
default rule calls noise significant, with a 95 % Wilson interval, over null replications of two kinds:

* ``fresh``: a new null cohort each time (labels unrelated to everything);
* ``permuted``: a cohort with a planted 18 % GM loss in 4 regions whose labels are then permuted.

Cohorts come from :mod:`latentbids.simulate.analysis_cohort`: regional GM with the between-region
correlation, means and variability estimated from the ten IXI scans of ``../shared/data`` (``--ixi``
re-estimates it from participant-level outputs and rewrites the package data), per-fold latent codes of a
linear-autoencoder stand-in, voxels for SAM, reconstruction errors unrelated to GM.  Grid: n = 40, 100,
400; K = 16, 32, 64, 128; balanced and 70/30 classes.  Power: 8 % and 18 % loss in Hippocampus_L/R and
ParaHippocampal_L/R at 60 per group (and at 20 and 200 per group), K = 32.  On 70/30 classes the table
shows both statistics (balanced accuracy with chance 0.5, and accuracy against the majority share) under
both family-wise rules (permutation, Bonferroni).

Commands (also in BENCHMARKS.md)::

    .venv/bin/python benchmarks/calibration.py --ixi DERIVATIVES_OF_ds-ixi10   # refresh the GM model
    .venv/bin/python benchmarks/calibration.py --reps 100 --write-package-data  # the full table
    .venv/bin/python benchmarks/calibration.py --quick                          # minutes: a smoke run
    .venv/bin/python benchmarks/calibration.py --end-to-end --null-runs 60      # through latentbids group

``--write-package-data`` writes ``latentbids/data/calibration.json``, the per-family worst false-positive
rate that every group report quotes in its methods section.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latentbids.config import AnalysisConfig  # noqa: E402
from latentbids.simulate.analysis_cohort import RegionalGMModel, draw_cohort  # noqa: E402

PLANTED_NAMES = ("Hippocampus_L", "Hippocampus_R", "ParaHippocampal_L", "ParaHippocampal_R")
FAMILIES = ("unit", "region", "lrcp", "sam", "latent_vector", "vector_bound", "rub", "sar", "shap", "shap_regions",
            "pc1")
RULES = {
    "unit": "max-statistic label permutation over every unit of every fold (Welch |t|)",
    "region": "max-statistic label permutation over the regions (Welch |t|)",
    "lrcp": "the region's own family-wise test + a family-wise tie to a relevant unit, in any fold (Welch |t|)",
    "sam": "bound and max-statistic permutation p of the whole SAM pipeline",
    "latent_vector": "held-out balanced accuracy over the folds, label permutation of the whole cross-validation",
    "vector_bound": "the paper's in-sample bound with d = K at eta / n_folds",
    "rub": "PAC-Bayes bound on the Gibbs classifier at eta / n_folds (and the permutation p)",
    "sar": "SAR on the half that did not select the regions",
    "shap": "CV R^2 floor and permutation null, Holm over the models",
    "shap_regions": "held-out R^2 of the top SHAP regions against permuted test-half errors",
    "pc1": "Fisher z test of |rho| > 0.5, Bonferroni over the global measures",
}
#: the power table's grid (METHOD.md section 10): GM loss in percent x subjects per group
POWER_LOSSES = (4, 8, 12, 18, 25)
POWER_N = (20, 40, 60, 100, 200)
#: the families the power table covers, and what "detects" means for each: the family supports a claim
#: about a planted region (unit, latent_vector, bound and RUB: supports any claim about the contrast)
POWER_FAMILIES = ("unit", "region", "lrcp", "sam", "latent_vector", "vector_bound", "rub")


def machine() -> str:
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:  # noqa: BLE001 - description only
            return "?"

    model = sh("lscpu | sed -n 's/^Model name: *//p'") or platform.processor()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cpus} CPUs"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


# ------------------------------------------------------------------------------------ the families
def lrcp_outcome(c, s: AnalysisConfig, seed: int) -> dict:
    from latentbids.analysis.lrcp import LRCP

    m = LRCP(correlation=s.correlation, correction=s.correction, alpha=s.alpha, eta=s.eta, statistic=s.statistic,
             family_correction=s.family_correction, bound=s.bound, n_permutations=s.n_permutations,
             random_state=seed).fit(c.Z, c.G, c.y, region_index=c.region_index, region_names=c.region_names)
    pos = set(m.consensus_.loc[m.consensus_["lrcp_positive"], "region_index"].astype(int))
    disc = set(m.region_tests_.loc[m.region_tests_["discriminates"], "region_index"].astype(int))
    planted = set(c.planted)
    return {"unit": m.summary_["n_units_relevant"] > 0, "region": bool(disc), "lrcp": bool(pos),
            "lrcp_planted": len(pos & planted), "lrcp_other": len(pos - planted),
            "region_planted": len(disc & planted), "all_planted": planted <= pos if planted else False}


def vector_outcome(c, s: AnalysisConfig, seed: int) -> dict:
    """The held-out latent-vector test (the confirmatory claim), and the bound halves of the paper's bound and RUB
    claims (the RUB claim additionally needs the permutation p, so its rate is at most this one)."""
    from latentbids.analysis.agnostic import latent_vector_test
    from latentbids.analysis.latent_vector import held_out_test

    held = held_out_test(c.Z, c.roles, c.y, eta=s.eta, n_permutations=s.n_permutations, random_state=seed)
    eta = s.eta / len(c.Z)
    vec = [latent_vector_test(Z, c.y, eta=eta, bound=s.bound, n_permutations=0, random_state=seed,
                              dropout=s.rub_dropout) for Z in c.Z.values()]
    return {"latent_vector": held["supported"], "vector_bound": any(v["supported"] for v in vec),
            "rub": any(v["rub"]["passes_bound"] for v in vec)}


def sam_outcome(c, s: AnalysisConfig, seed: int) -> dict:
    from latentbids.analysis.agnostic import sam_regions

    sam = sam_regions(c.X, c.voxel_labels, c.y, c.region_index, top_voxels=s.sam_top_voxels, eta=s.eta,
                      bound=s.bound, n_permutations=s.sam_permutations, random_state=seed)
    hit = set(sam.loc[sam["supported"], "region_index"].astype(int))
    return {"sam": bool(hit - set(c.planted)) if c.planted else bool(hit), "sam_planted": len(hit & set(c.planted)),
            "sam_bound_only": int(sam["passes_bound"].sum())}


def shap_outcome(c, s: AnalysisConfig, seed: int) -> dict:
    from latentbids.analysis.shap_error import explain_error

    classes = np.where(c.y == 1, "B", "A").astype(object)
    res = explain_error(c.G, c.e, classes, c.region_index, list(c.region_names), n_estimators=s.shap_n_estimators,
                        max_depth=s.shap_max_depth, learning_rate=s.shap_learning_rate, subsample=s.shap_subsample,
                        background=s.shap_background, n_permutations=s.shap_permutations, min_r2=s.shap_min_r2,
                        random_state=seed, eta=s.eta, bound=s.bound, sar_top_m=s.sar_top_m,
                        sar_resamples=0)
    return {"shap": bool(res.fits["supported"].any()), "sar": bool(res.sar and res.sar["supported"]),
            "shap_regions": bool(res.regions and res.regions["supported"])}


def pc1_outcome(c, s: AnalysisConfig, seed: int) -> dict:
    """PC1 of the reference fold against global measures shuffled across subjects (the null)."""
    from latentbids.analysis.pc1 import pc1_correlations
    from latentbids.analysis.projections import project_latents

    fold = next(iter(c.Z))
    coords, _ = project_latents(c.Z[fold], c.roles[fold] != "test", None, methods=("pca",), random_state=seed)
    rng = np.random.default_rng(seed)
    cov = c.covariates.iloc[rng.permutation(len(c.y))].reset_index(drop=True)
    table = pc1_correlations(coords["pca1"].to_numpy(float), cov, eta=s.eta, min_abs_r=s.pc1_min_abs_r)
    return {"pc1": bool(table["supported"].any())}


# ------------------------------------------------------------------------------------------ driver
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


def estimate_ixi(derivatives: Path) -> Path:
    """Estimate the regional GM model from participant-level outputs (modulated template-space maps)."""
    import nibabel as nib

    from latentbids.analysis.cohort import regional_means
    from latentbids.resources import get_atlas
    from latentbids.resources.atlases import resample_atlas
    from latentbids.simulate.analysis_cohort import IXI_MODEL_FILE

    maps = sorted(derivatives.glob("sub-*/anat/*_space-MNI152NLin2009aSym_*label-GM_desc-modulated_probseg.nii.gz"))
    if len(maps) < 5:
        raise SystemExit(f"need at least 5 modulated GM maps under {derivatives} (found {len(maps)})")
    atlas = get_atlas("AAL")
    ref = nib.load(str(maps[0]))
    labels = np.asarray(resample_atlas(atlas, ref).dataobj)
    vols = np.stack([np.asarray(nib.load(str(m)).dataobj, dtype=np.float32) for m in maps])
    G, _ = regional_means(vols, labels, atlas.labels["index"].to_numpy())
    keep = np.isfinite(G).all(axis=0)
    model = RegionalGMModel.from_maps(G[:, keep], atlas.labels["index"].to_numpy()[keep],
                                      atlas.labels["name"].to_numpy()[keep],
                                      f"{len(maps)} IXI subjects (ds-ixi10), modulated GM, AAL, Ledoit-Wolf")
    out = ROOT / "latentbids" / "data" / IXI_MODEL_FILE
    model.save(out)
    off = model.corr[~np.eye(len(model.corr), dtype=bool)]
    print(f"wrote {out}: {len(model.index)} regions from {len(maps)} maps; off-diagonal correlation "
          f"mean {off.mean():.2f}, 5-95 % {np.percentile(off, 5):.2f}..{np.percentile(off, 95):.2f}; "
          f"median cv {np.median(model.cv):.3f}")
    return out


def write_package_data(summary: dict, command_note: str = "") -> None:
    """``latentbids/data/calibration.json``: the summary every group report quotes."""
    out = ROOT / "latentbids" / "data" / "calibration.json"
    data = json.loads(out.read_text()) if out.is_file() else {}  # the other benchmarks' keys stay
    data.update(summary, command=summary["command"] + command_note)
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {out}")


def summarize(args) -> int:
    """Join earlier runs' tables (see ``--summarize``) and write the summary they support."""
    table = None
    for path in args.summarize:
        part = pd.read_csv(path, sep="\t")
        if table is not None:
            heavy = set(part.loc[part["kind"] == "fpr", "family"]) - set(table.loc[table["kind"] == "fpr", "family"])
            part = part[part["family"].isin(heavy)]  # only the families the earlier tables lack
        table = part if table is None else pd.concat([table, part], ignore_index=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, sep="\t", index=False, float_format="%.4f")
    print(f"wrote {args.out} from {', '.join(map(str, args.summarize))}")
    if args.write_package_data:
        tables = "; ".join(f"{p}: {command_of(p)}" for p in args.summarize)
        write_package_data(package_summary(table, AnalysisConfig(), args), f" (tables: {tables})")
    return 0


def command_of(tsv: Path, default: str = "?") -> str:
    """The command that measured a results table, from the ``.command`` file written next to it."""
    side = Path(tsv).with_suffix(".command")
    return side.read_text().strip() if side.exists() else default


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--end-to-end" in argv:  # the same calibration through latentbids group itself: calibration_e2e.py
        import calibration_e2e

        return calibration_e2e.main([a for a in argv if a != "--end-to-end"])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                epilog="--end-to-end: run benchmarks/calibration_e2e.py (latentbids group on simulated "
                                       "cohorts) with the remaining options")
    p.add_argument("--ixi", type=Path, help="estimate the regional GM model from these participant-level outputs")
    p.add_argument("--reps", type=int, default=100, help="null replications per cell (cheap families)")
    p.add_argument("--reps-large", type=int, default=40, help="null replications per cell at n >= 400")
    p.add_argument("--n-permutations", type=int, default=None,
                   help="label permutations of the unit/region nulls (default: the config's, 1000); the size "
                        "of a permutation test does not depend on it, only the resolution of its p-values")
    p.add_argument("--reps-heavy", type=int, default=40, help="replications of SAM, SHAP and SAR per cell")
    p.add_argument("--power-reps", type=int, default=40)
    p.add_argument("--n", type=int, nargs="+", default=[40, 100, 400])
    p.add_argument("--K", type=int, nargs="+", default=[16, 32, 64, 128])
    p.add_argument("--power-n", type=int, nargs="+", default=[20, 60, 200], help="subjects per group")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--voxels", type=int, default=40, help="voxels per region for SAM")
    p.add_argument("--seed", type=int, default=20261202)
    p.add_argument("--quick", action="store_true", help="a few replications on a small grid (smoke run)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "calibration.tsv")
    p.add_argument("--write-package-data", action="store_true")
    p.add_argument("--fpr-only", action="store_true", help="false-positive grid only (no power, no 70/30 table)")
    p.add_argument("--summarize", type=Path, nargs="+", metavar="TSV",
                   help="no new replications: join these tables (a later table adds only the families the "
                        "earlier ones lack) into --out and, with --write-package-data, the "
                        "package summary; e.g. a wide grid of the cheap families and a narrow one of SAM/SHAP/SAR")
    args = p.parse_args(argv)
    if args.summarize:
        return summarize(args)
    if args.ixi:
        estimate_ixi(args.ixi)
        return 0
    if args.quick:
        args.reps, args.reps_large, args.reps_heavy, args.power_reps = 10, 4, 4, 5
        args.n, args.K, args.power_n = [40, 100], [16, 32], [60]
    if len(args.K) < 2:
        args.K = args.K * 2
    model = RegionalGMModel.ixi()
    planted = tuple(int(model.index[list(model.names).index(name)]) for name in PLANTED_NAMES)
    settings = AnalysisConfig()
    if args.n_permutations:
        settings = dataclasses.replace(settings, n_permutations=args.n_permutations)
    print(f"calibration on {machine()}; regional GM model: {model.source}; defaults: family_correction="
          f"{settings.family_correction}, statistic={settings.statistic}, n_permutations={settings.n_permutations}, "
          f"sam_permutations={settings.sam_permutations}, shap_permutations={settings.shap_permutations}", flush=True)
    t0 = time.perf_counter()
    rows = run_fpr(model, planted, settings, args)
    if not args.fpr_only:
        rows += run_power(model, planted, settings, args) + run_unbalanced(model, planted, settings, args)
    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, sep="\t", index=False, float_format="%.4f")
    args.out.with_suffix(".command").write_text(
        f"python benchmarks/calibration.py {' '.join(sys.argv[1:])}  # {machine()}, {time.perf_counter() - t0:.0f} s\n")
    print(f"wrote {args.out} ({time.perf_counter() - t0:.0f} s)")
    if args.write_package_data:
        write_package_data(package_summary(table, settings, args))
    fpr = table[table["kind"] == "fpr"]
    worst = fpr.sort_values("rate", ascending=False).groupby("family").head(1)
    print(worst[["family", "null", "n", "K", "balance", "reps", "rate", "lo", "hi"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
