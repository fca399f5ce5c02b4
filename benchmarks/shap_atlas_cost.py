"""What SHAP costs per sensitivity atlas: ``explain_error`` on regional GM of 116 (AAL), 170 (AAL3) and 426 (HCPEx)
regions, the same cohort and target, ratios against the 116-region run made first in the same process.

A synthetic cohort (N subjects, two classes; regional GM with a global factor and smooth noise; a reconstruction
error that depends on 4 regions, so the pooled surrogate fits and its permutation null runs): the worst case of
the section, since a surrogate that does not fit skips its null.  Default ``[analysis]`` SHAP settings, or
``--sensitivity K`` for what :func:`~latentbids.workflows.group.analysis.atlases.sensitivity_settings` gives K
sensitivity atlases.

    python benchmarks/shap_atlas_cost.py --n 120 --permutations 19
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def cohort(n: int, regions: int, seed: int):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    G = 0.5 + 0.05 * rng.standard_normal((n, 1)) + 0.03 * rng.standard_normal((n, regions))
    e = G[:, :4].sum(axis=1) * -1.0 + 0.05 * rng.standard_normal(n)
    return G, e, np.where(y == 1, "AD", "CN").astype(object)


def main(argv=None) -> int:
    from latentbids.analysis.shap_error import explain_error
    from latentbids.calibration.families import machine
    from latentbids.config import AnalysisConfig
    from latentbids.workflows.group.analysis.atlases import sensitivity_settings

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=120)
    p.add_argument("--sensitivity", type=int, default=0, help="settings of one of K sensitivity atlases (0: primary)")
    p.add_argument("--regions", type=int, nargs="+", default=[116, 170, 426])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--permutations", type=int, default=None,
                   help="shap_permutations (default: the settings'); the null's cost is linear in it")
    args = p.parse_args(argv)
    s = AnalysisConfig(**({} if args.permutations is None else {"shap_permutations": args.permutations}))
    if args.sensitivity:
        s, _ = sensitivity_settings(s, args.sensitivity)
    print(f"# {machine()}; N = {args.n}; eta {s.eta:g}, shap_permutations {s.shap_permutations}, n_jobs 1")
    base = None
    for j in args.regions:
        G, e, labels = cohort(args.n, j, args.seed)
        t0 = time.perf_counter()
        res = explain_error(G, e, labels, np.arange(1, j + 1), [f"r{i}" for i in range(j)],
                            n_estimators=s.shap_n_estimators, max_depth=s.shap_max_depth,
                            learning_rate=s.shap_learning_rate, subsample=s.shap_subsample,
                            background=s.shap_background, n_permutations=s.shap_permutations,
                            min_r2=s.shap_min_r2, top_k=s.top_k, random_state=args.seed, eta=s.eta, bound=s.bound,
                            sar_top_m=s.sar_top_m, sar_resamples=s.sar_resamples,
                            region_permutations=s.shap_region_permutations, n_jobs=1)
        sec = time.perf_counter() - t0
        base = base or sec
        fits = ", ".join(f"{f.model} R^2 {f.cv_r2:.2f}" for f in res.fits.itertuples())
        print(f"{j} regions: {sec:.1f} s (x{sec / base:.2f}); {fits}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
