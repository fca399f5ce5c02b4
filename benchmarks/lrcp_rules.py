#!/usr/bin/env python
"""Which LRCP rule finds what is there at the same error rate: the measurement behind the defaults.

On the same cohorts (:mod:`latentbids.simulate.analysis_cohort`: IXI regional GM correlation, linear-autoencoder
stand-in, K = 32, 5 folds; a loss planted in Hippocampus_L/R and ParaHippocampal_L/R), four rules:

* ``old``: best-threshold balanced accuracy, the fold-majority consensus, the FDR profile as the tie (the
  rule before issue 17);
* ``balanced-any``: the same statistic, any fold, the family-wise tie;
* ``welch-any`` (the default): Welch |t|, any fold, the family-wise tie;
* ``auc-any``: |AUC - 0.5|, any fold, the family-wise tie.

For each: planted regions found (mean of 4), other regions called positive, and on null cohorts the share
with any LRCP claim.  Usage (BENCHMARKS.md "Power")::

    .venv/bin/python benchmarks/lrcp_rules.py --reps 20
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latentbids import calibration as cal  # noqa: E402
from latentbids.analysis.lrcp import LRCP  # noqa: E402
from latentbids.simulate.analysis_cohort import RegionalGMModel, draw_cohort  # noqa: E402


def _old_positive(m) -> set:
    """The pre-issue-17 rule on a fitted (balanced) LRCP: S_j > 0 through the FDR profile, majority of folds."""
    f = m.folds_.merge(m.region_tests_[["region_index", "discriminates"]], on="region_index")
    f["old"] = ~f["exploratory"].astype(bool) & (f["score"] > 0) & f["discriminates"].astype(bool)
    counts = f.groupby("region_index")["old"].sum()
    return set(counts[counts > f["fold"].nunique() / 2].index.astype(int))


def outcomes(c, n_permutations: int, seed: int) -> dict:
    out = {}
    for name, statistic in (("balanced", "balanced"), ("welch", "welch"), ("auc", "auc")):
        m = LRCP(statistic=statistic, n_permutations=n_permutations, random_state=seed).fit(
            c.Z, c.G, c.y, region_index=c.region_index, region_names=c.region_names)
        positive = set(m.consensus_.loc[m.consensus_["lrcp_positive"], "region_index"].astype(int))
        out[f"{name}-any"] = positive
        if name == "balanced":
            out["old"] = _old_positive(m)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--per-group", type=int, default=60)
    p.add_argument("--losses", type=float, nargs="+", default=[0.08, 0.18])
    p.add_argument("--n-permutations", type=int, default=200)
    p.add_argument("--seed", type=int, default=17)
    args = p.parse_args(argv)
    model = RegionalGMModel.ixi()
    planted = tuple(int(model.index[list(model.names).index(n)]) for n in cal.PLANTED_NAMES)
    rows, t0 = [], time.perf_counter()
    for loss in [0.0, *args.losses]:
        for r in range(args.reps):
            rng = np.random.default_rng([args.seed, r, int(loss * 100)])
            c = draw_cohort(model, args.per_group, args.per_group, 32, rng=rng,
                            loss=loss, planted=planted if loss else (), n_folds=5)
            for rule, positive in outcomes(c, args.n_permutations, r).items():
                rows.append({"loss": loss, "rep": r, "rule": rule, "planted": len(positive & set(planted)),
                             "other": len(positive - set(planted)) if loss else len(positive), "any": bool(positive)})
    table = pd.DataFrame(rows)
    summary = table.groupby(["loss", "rule"]).agg(planted_mean=("planted", "mean"), other_mean=("other", "mean"),
                                                  any_claim=("any", "mean")).reset_index()
    print(summary.to_string(index=False))
    print(f"{args.reps} cohorts per loss, {args.per_group} per group; {cal.machine()}; "
          f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
