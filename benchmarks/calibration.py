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
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from latentbids.calibration import *  # noqa: E402,F403  (cal.X for the other benchmark scripts)
from latentbids.calibration import (  # noqa: E402
    PLANTED_NAMES,
    command_of,
    machine,
    package_summary,
    run_fpr,
    run_power,
    run_unbalanced,
    write_package_data,
)
from latentbids.config import AnalysisConfig  # noqa: E402
from latentbids.simulate.analysis_cohort import RegionalGMModel  # noqa: E402


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
