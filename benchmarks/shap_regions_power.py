#!/usr/bin/env python
"""Power and null rate of the tests of SHAP's top regions (METHOD.md section 7), variant by variant.

The claim "SHAP's top regions predict the reconstruction error" is tested on subjects that did not
choose the regions.  This script measures, on simulated cohorts, how often each candidate test rejects:

* ``heldout_ridge`` (the shipped test, :func:`latentbids.analysis.shap_regions.heldout_r2_test`): ridge
  fitted on the selection half, held-out R^2 on the test half, test errors permuted (B = 999);
* ``heldout_ols``: the same with OLS;
* ``heldout_gbm``: the same with a GBM on the m regions (METHOD's surrogate settings);
* ``cv_within``: OLS cross-validated (5 folds) within the test half, the whole CV refitted on permuted
  errors (B = 199);
* ``insample_f``: OLS on the test half, in-sample R^2 by its F test (not held out; for reference);
* ``sar``: SAR's ``p_full <= eta`` on the test half (the paper's check).

Cohorts: regional GM of 116 AAL regions drawn from the IXI correlation model shipped with latentbids;
the error ``e`` is a standardised mean of the GM of 3 regions (Hippocampus_L, ParaHippocampal_R,
Precuneus_L) times a weight that makes the population R^2 of ``e`` on GM equal ``--r2``, plus unit
noise; ``--r2 0`` is the null.  Selection: ``shap`` (the shipped selection: top ``m`` regions by mean
|SHAP| of a GBM fitted on the selection half, METHOD's 500 trees unless ``--trees``) or ``oracle`` (the
planted regions first, then the next ones by index: the tests alone, without the selection's misses).

Commands and rejection rates measured (2-core shared machine, seed 2026, eta = 0.05; B = 999 for the
held-out variants, 199 for ``cv_within``)::

    .venv/bin/python benchmarks/shap_regions_power.py --r2 0.1 --n-test 100 --reps 200 --selection oracle
    #   heldout_ridge 0.880, heldout_ols 0.835, heldout_gbm 0.395, cv_within 0.560, insample_f 0.685, sar 0.000
    .venv/bin/python benchmarks/shap_regions_power.py --r2 0 --n-test 100 --reps 400 --selection oracle \
        --variants heldout_ridge heldout_ols cv_within insample_f sar
    #   heldout_ridge 0.055 (22/400, 95 % interval 0.037-0.082), heldout_ols 0.058, cv_within 0.058,
    #   insample_f 0.068, sar 0.000
    .venv/bin/python benchmarks/shap_regions_power.py --r2 0.1 --n-test 100 --reps 100 --selection shap \
        --variants heldout_ridge heldout_ols cv_within insample_f sar
    #   (0.61 of the 3 planted regions among the top 5) heldout_ridge 0.51, heldout_ols 0.51, cv_within 0.20,
    #   insample_f 0.29, sar 0.00
    .venv/bin/python benchmarks/shap_regions_power.py --r2 0 --n-test 100 --reps 100 --selection shap \
        --variants heldout_ridge heldout_ols cv_within insample_f sar
    #   heldout_ridge 0.05 (5/100), heldout_ols 0.06, cv_within 0.03, insample_f 0.03, sar 0.00
    .venv/bin/python benchmarks/shap_regions_power.py --r2 0.3 --n-select 200 --n-test 200 --reps 100 \
        --selection oracle --variants heldout_ridge heldout_ols cv_within insample_f sar
    #   every held-out and in-sample variant 1.00, sar 0.00
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import f as f_dist

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latentbids.analysis.agnostic import sar  # noqa: E402
from latentbids.analysis.shap_regions import heldout_r2_test, select_top_regions  # noqa: E402
from latentbids.calibration import wilson  # noqa: E402
from latentbids.simulate.analysis_cohort import RegionalGMModel  # noqa: E402

PLANTED_NAMES = ("Hippocampus_L", "ParaHippocampal_R", "Precuneus_L")
VARIANTS = ("heldout_ridge", "heldout_ols", "heldout_gbm", "cv_within", "insample_f", "sar")


def _signal_sd(model, planted, rng) -> float:
    """Population sd of the planted signal (mean of standardised GM of the planted regions)."""
    G = model.draw(200_000, rng)
    return float(_signal(G, model, planted).std())


def _signal(G, model, planted):
    Z = (G / model.mean - 1.0) / model.cv
    return Z[:, planted].mean(axis=1)


def draw(model, planted, sd, n, r2, rng):
    """Regional GM (n x J) and an error whose population R^2 on GM is ``r2``."""
    G = model.draw(n, rng)
    weight = math.sqrt(r2 / (1.0 - r2)) / sd if r2 > 0 else 0.0
    e = weight * _signal(G, model, planted) + rng.standard_normal(n)
    return G, 0.01 + 0.001 * e  # on the scale of an MSE


def _ols_fit(X, y):
    A = np.column_stack([np.ones(len(X)), X])
    return np.linalg.lstsq(A, y, rcond=None)[0]


def _ols_pred(beta, X):
    return beta[0] + X @ beta[1:]


def _r2(y, pred):
    return 1.0 - float(np.sum((y - pred) ** 2)) / float(np.sum((y - y.mean()) ** 2))


def _perm_p(stat, null):
    return (np.sum(np.asarray(null) >= stat - 1e-12) + 1) / (len(null) + 1)


def heldout_fixed(pred, e_test, B, rng):
    obs = _r2(e_test, pred)
    null = [_r2(e_test[rng.permutation(len(e_test))], pred) for _ in range(B)]
    return _perm_p(obs, null)


def cv_within(X, y, B, rng, k=5):
    folds = np.array_split(rng.permutation(len(y)), k)

    def cv_r2(t):
        pred = np.empty(len(t))
        for f in folds:
            train = np.setdiff1d(np.arange(len(t)), f)
            pred[f] = _ols_pred(_ols_fit(X[train], t[train]), X[f])
        return _r2(t, pred)

    obs = cv_r2(y)
    return _perm_p(obs, [cv_r2(y[rng.permutation(len(y))]) for _ in range(B)])


def insample_f(X, y):
    n, m = X.shape
    r2 = _r2(y, _ols_pred(_ols_fit(X, y), X))
    F = (r2 / m) / ((1 - r2) / (n - m - 1))
    return float(f_dist.sf(F, m, n - m - 1))


def one_rep(model, planted, sd, args, r):
    rng = np.random.default_rng([args.seed, r])
    G, e = draw(model, planted, sd, args.n_select + args.n_test, args.r2, rng)
    sel, test = np.arange(args.n_select), np.arange(args.n_select, args.n_select + args.n_test)
    params = dict(sar_top_m=args.m, random_state=r, background=200, n_estimators=args.trees, max_depth=3,
                  learning_rate=0.05, subsample=0.8)
    if args.selection == "shap":
        top = select_top_regions(G[sel], e[sel], params)
    else:
        top = list(planted) + [j for j in range(G.shape[1]) if j not in planted][: args.m - len(planted)]
    Xs, Xt = G[np.ix_(sel, top)], G[np.ix_(test, top)]
    Xs_std = (Xs - Xs.mean(0)) / Xs.std(0)
    Xt_std = (Xt - Xs.mean(0)) / Xs.std(0)
    out = {"planted_in_top": len(set(top) & set(planted))}
    out["heldout_ridge"] = heldout_r2_test(Xs, e[sel], Xt, e[test], n_permutations=999, random_state=r)["p"]
    out["heldout_ols"] = heldout_fixed(_ols_pred(_ols_fit(Xs_std, e[sel]), Xt_std), e[test], 999, rng)
    if "heldout_gbm" in args.variants:
        from sklearn.ensemble import GradientBoostingRegressor

        gbm = GradientBoostingRegressor(n_estimators=args.trees, max_depth=3, learning_rate=0.05, subsample=0.8,
                                        random_state=r).fit(Xs, e[sel])
        out["heldout_gbm"] = heldout_fixed(gbm.predict(Xt), e[test], 999, rng)
    if "cv_within" in args.variants:
        out["cv_within"] = cv_within(Xt_std, e[test], 199, rng)
    out["insample_f"] = insample_f(Xt_std, e[test])
    out["sar"] = sar(Xt, e[test], eta=args.eta, bound="G", n_resamples=0, random_state=r)["p_full"]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--r2", type=float, default=0.1)
    ap.add_argument("--n-select", type=int, default=100)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--m", type=int, default=5)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--eta", type=float, default=0.05)
    ap.add_argument("--selection", choices=("shap", "oracle"), default="oracle")
    ap.add_argument("--trees", type=int, default=500)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args(argv)
    model = RegionalGMModel.ixi()
    planted = [list(model.names).index(n) for n in PLANTED_NAMES]
    sd = _signal_sd(model, planted, np.random.default_rng(0))
    t0 = time.perf_counter()
    rows = [one_rep(model, planted, sd, args, r) for r in range(args.reps)]
    print(f"R^2 = {args.r2}, {args.n_select} selection + {args.n_test} test subjects, top {args.m} regions "
          f"({args.selection} selection), {args.reps} replications, eta = {args.eta} "
          f"({time.perf_counter() - t0:.0f} s)")
    print(f"  planted regions among the top {args.m}: mean {np.mean([r['planted_in_top'] for r in rows]):.2f} of "
          f"{len(planted)}")
    for v in VARIANTS:
        ps = [r[v] for r in rows if v in r]
        if not ps:
            continue
        k = int(np.sum(np.asarray(ps) <= args.eta + 1e-12))
        lo, hi = wilson(k, len(ps))
        print(f"  {v:14s} rejects {k:4d} / {len(ps)} = {k / len(ps):.3f}  (95 % interval {lo:.3f}-{hi:.3f})")


if __name__ == "__main__":
    main()
