#!/usr/bin/env python
"""Benchmark the group-level analysis (latentbids.analysis) on a synthetic cohort with a planted effect.

Builds, in memory and seeded, a cohort of N subjects in two balanced classes:

* ``G`` (N x J, J = 116 regions): regional mean GM, ``mu_j * (1 + cv * eps)`` with correlated noise
  (one global factor, 8 "networks" of regions, independent rest: correlation 0.5 within a network,
  0.25 across), and a planted ``--loss`` (18 %) in 4 regions for class 1;
* per fold, ``Z`` (N x K, K = 32): a noisy linear mixing of standardised ``G`` (each unit loads on
  6 random regions; units 0-3 load mostly on one planted region each, unit 4 on all four: the
  "disease axis" an autoencoder would find), each fold with its own perturbed mixing and unit order
  (k-fold models do not share units) and roles train / validation / test as the group level writes;
* voxel data for SAM: ``--voxels`` voxels per region, the regional mean plus spatially correlated
  noise (white noise smoothed along a chain, sigma 2 voxels) and a fixed per-voxel pattern;
* the held-out reconstruction error ``e``: a linear function of the planted regions and two others
  plus noise (population R^2 ~0.4), so the SHAP surrogate fits and its permutation null runs in full
  (the expensive case); the ``shap-e-noise`` variant uses an ``e`` unrelated to ``G`` (the common case
  of METHOD.md section 7, where the sequential null stops early).

It then times each step exactly as :class:`latentbids.workflows.group.analysis.run.GroupAnalysis` calls
it (same functions, same arguments from the settings; no files are written):

* ``projections``  ``project_latents`` per fold, PCA+PLS, plus t-SNE+UMAP on the reference fold;
* ``lrcp``         ``LRCP(...).fit`` on every fold at once (family-wise unit and region nulls, consensus,
                   stability);
* ``latent_vec``   ``latent_vector_test`` per fold (linear SVM + RUB on the Gibbs classifier, permutation p);
* ``sam``          ``sam_regions`` with ``sam_permutations`` (supported = bound and family-wise p agree);
* ``shap``         ``explain_error`` with the orchestrator's arguments (``n_jobs`` = ``--nprocs``).

Configurations (ratios against ``baseline`` = default ``AnalysisConfig``, n_jobs 1): ``sloppy``
(``config.SLOPPY_ANALYSIS`` caps, i.e. ``--sloppy``), ``perm-correction`` (LRCP's association with
``correction = "permutation"``), ``bonferroni`` (``family_correction = "bonferroni"``: no label permutations),
``shap-jobs2`` (explain_error with n_jobs 2, i.e. ``--nprocs 2``),
``shap-e-noise`` (baseline settings, ``e`` unrelated to ``G``).  A variant reruns only the steps whose
settings (or inputs) differ from the baseline; the others are marked ``=`` and its total uses the
baseline's time for them.  The first call of UMAP compiles numba code: it is warmed up before any
timing and reported separately, as are the imports.

The SHAP step at default settings can take many minutes: before each SHAP run the cost is estimated
from one timed GBM fit per model size (``(1 + n_permutations) * cv + 1`` fits per model, i.e. the
worst case of a surrogate that fits; one job, whatever ``n_jobs``) and the run is skipped, and said
so, when the estimate exceeds ``--shap-budget`` seconds.

The benchmark is also a sanity check: for the planted cohort it prints whether the planted regions
are LRCP consensus positives and SAM-confirmed, and whether the SHAP surrogate is supported.

Example (2-core VM)::

    NUMBA_CACHE_DIR=.cache/numba .venv/bin/python benchmarks/bench_analysis.py --n 100 400 \
        --folds 5 --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time

#: steps in pipeline order and the AnalysisConfig keys (plus "n_jobs", "e") each one depends on
STEPS = {
    "projections": ("pca_components", "tsne_perplexity", "umap_n_neighbors", "umap_min_dist", "pls_components"),
    "lrcp": ("correlation", "correction", "alpha", "eta", "bound", "n_permutations", "family_correction",
             "statistic", "top_k"),
    "latent_vec": ("eta", "bound", "n_permutations", "rub_dropout"),
    "sam": ("sam_top_voxels", "eta", "bound", "sam_permutations", "alpha"),
    "shap": ("shap_n_estimators", "shap_max_depth", "shap_learning_rate", "shap_subsample", "shap_background",
             "shap_permutations", "shap_min_r2", "top_k", "eta", "bound", "sar_resamples", "n_jobs", "e"),
}
VARIANTS = ("sloppy", "perm-correction", "bonferroni", "shap-jobs2", "shap-e-noise")
#: columns of the planted regions (region_index = column + 1)
PLANTED = (4, 33, 61, 97)


def machine() -> str:
    """This host, the CPU model and usable CPUs (the calibration's one rule), memory and load."""
    from latentbids.calibration import machine as cpu

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**30
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{platform.node()}, {cpu()}, {mem} GiB RAM, load {load}"


# ---------------------------------------------------------------------------------------- cohort
def make_cohort(n, folds=5, J=116, K=32, loss=0.18, voxels=30, cv=0.12, seed=0):
    """Synthetic cohort (see the module docstring); returns a dict of arrays."""
    import numpy as np
    from scipy.ndimage import gaussian_filter1d

    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    rng.shuffle(y)
    mu = rng.uniform(0.35, 0.65, J)
    network = rng.integers(0, 8, J)
    glob = rng.standard_normal((n, 1))
    nets = rng.standard_normal((n, 8))[:, network]
    eps = 0.5 * glob + 0.5 * nets + np.sqrt(0.5) * rng.standard_normal((n, J))
    G = mu * (1.0 + cv * eps)
    planted = np.array(PLANTED)
    G[np.ix_(y == 1, planted)] *= 1.0 - loss

    # latent codes: one mixing per fold (perturbed, units permuted), roles per fold
    Gs = (G - G.mean(0)) / G.std(0)
    W = np.zeros((J, K))
    for k in range(K):
        W[rng.choice(J, 6, replace=False), k] = rng.standard_normal(6)
    for k, j in enumerate(planted):
        W[:, k] *= 0.3
        W[j, k] = 2.0
    W[:, 4] *= 0.3
    W[planted, 4] = 1.0
    order = rng.permutation(n)
    chunks = np.array_split(order, folds)
    fold_Z, roles = [], []
    for f in range(folds):
        Wf = (W + 0.2 * rng.standard_normal((J, K)) * (W != 0))[:, rng.permutation(K)]
        signal = Gs @ Wf
        Z = signal + 0.5 * signal.std(0) * rng.standard_normal((n, K))
        role = np.full(n, "train", dtype=object)
        role[chunks[f]] = "test"
        rest = np.flatnonzero(role == "train")
        role[rng.choice(rest, max(1, len(rest) // 10), replace=False)] = "validation"
        fold_Z.append(Z)
        roles.append(role)

    # voxels: regional value + smooth noise + a fixed per-voxel pattern
    labels = np.repeat(np.arange(1, J + 1), voxels)
    noise = gaussian_filter1d(rng.standard_normal((n, J * voxels)), 2.0, axis=1)
    noise /= noise.std()
    sd = np.repeat(cv * mu, voxels)
    pattern = 0.05 * rng.standard_normal(J * voxels)
    X = (np.repeat(G, voxels, axis=1) + sd * noise + pattern).astype(np.float32)

    # reconstruction error: planted regions (loss -> larger error) + two others + noise
    a = -Gs[:, planted].mean(1) / Gs[:, planted].mean(1).std() + 0.7 * Gs[:, 10] - 0.5 * Gs[:, 50]
    a /= a.std()
    e = 0.010 + 0.002 * (a + 1.2 * rng.standard_normal(n))
    e_noise = 0.010 + 0.002 * rng.standard_normal(n)
    return dict(y=y, G=G, fold_Z=fold_Z, roles=roles, X=X, labels=labels, e=e, e_noise=e_noise,
                region_index=np.arange(1, J + 1), region_names=[f"region{j:03d}" for j in range(1, J + 1)],
                planted=[int(p) + 1 for p in planted])


# ----------------------------------------------------------------------------------------- steps
def step_projections(c, s, seed):
    from latentbids.analysis.projections import project_latents

    parts = {}
    for f, (Z, role) in enumerate(zip(c["fold_Z"], c["roles"])):
        t0 = time.perf_counter()
        methods = ("pca", "tsne", "umap", "pls") if f == 0 else ("pca", "pls")
        project_latents(Z, role != "test", c["y"].astype(float), pca_components=s.pca_components,
                        tsne_perplexity=s.tsne_perplexity, umap_n_neighbors=s.umap_n_neighbors,
                        umap_min_dist=s.umap_min_dist, pls_components=s.pls_components, random_state=seed,
                        methods=methods)
        parts["reference fold" if f == 0 else "other folds"] = (
            parts.get("reference fold" if f == 0 else "other folds", 0.0) + time.perf_counter() - t0)
    return parts


def step_lrcp(c, s, seed, top_k):
    """LRCP as the contrast section runs it: every fold's codes at once (one family of units)."""
    import numpy as np

    from latentbids.analysis.lrcp import LRCP

    est = LRCP(correlation=s.correlation, correction=s.correction, alpha=s.alpha, eta=s.eta, statistic=s.statistic,
               family_correction=s.family_correction, bound=s.bound, n_permutations=s.n_permutations,
               random_state=seed, top_k=top_k)
    est.fit({str(f): Z for f, Z in enumerate(c["fold_Z"])}, c["G"], c["y"], region_index=c["region_index"],
            region_names=c["region_names"], unit_names=[f"z{k}" for k in range(c["fold_Z"][0].shape[1])])
    cons = est.consensus_
    pos = set(cons.loc[cons["lrcp_positive"].astype(bool), "region_index"].astype(int))
    planted = set(int(p) for p in c["planted"])
    stab = est.stability_
    return {"lrcp_planted": len(pos & planted), "lrcp_other": len(pos - planted),
            "tau": np.nan if stab is None else stab["kendall_tau"]}


def step_latent_vec(c, s, seed):
    from latentbids.analysis.agnostic import latent_vector_test

    sig = []
    for Z in c["fold_Z"]:
        vec = latent_vector_test(Z, c["y"], eta=s.eta / len(c["fold_Z"]), bound=s.bound,
                                 n_permutations=s.n_permutations, random_state=seed, dropout=s.rub_dropout)
        sig.append((bool(vec["supported"]), (vec.get("rub") or {}).get("p_perm")))
    return {"vec_significant": sum(a for a, _ in sig), "rub_p": sig[0][1]}


def step_sam(c, s, seed):
    from latentbids.analysis.agnostic import sam_regions

    sam = sam_regions(c["X"], c["labels"], c["y"], c["region_index"], top_voxels=s.sam_top_voxels, eta=s.eta,
                      bound=s.bound, n_permutations=s.sam_permutations, random_state=seed)
    conf = set(sam.loc[sam["supported"], "region_index"].astype(int))
    planted = set(int(p) for p in c["planted"])
    return {"sam_significant": int(sam["passes_bound"].sum()), "sam_planted": len(conf & planted),
            "sam_other": len(conf - planted)}


def step_shap(c, s, seed, n_jobs, e_key):
    from latentbids.analysis.shap_error import explain_error

    res = explain_error(
        c["G"], c[e_key], c["y"].astype(str), c["region_index"], c["region_names"],
        n_estimators=s.shap_n_estimators, max_depth=s.shap_max_depth, learning_rate=s.shap_learning_rate,
        subsample=s.shap_subsample, background=s.shap_background, n_permutations=s.shap_permutations,
        min_r2=s.shap_min_r2, top_k=s.top_k, random_state=seed, eta=s.eta, bound=s.bound,
        sar_top_m=s.sar_top_m, sar_resamples=s.sar_resamples, n_jobs=n_jobs)
    fits = res.fits.set_index("model")
    out = {"shap_fits": "; ".join(
        f"{m}: R2 {r.cv_r2:.2f} p {r.p_perm:.3f} ({int(r.n_permutations_run)} refits, {r.seconds:.0f} s)"
        + (" supported" if r.supported else "") for m, r in fits.iterrows())}
    imp = res.importance[res.importance["model"] == "pooled"].sort_values("rank")
    top = set(imp["region_index"].astype(int).head(5))
    out["shap_top5_planted"] = len(top & set(int(p) for p in c["planted"]))
    return out


def shap_estimate(c, s, seed):
    """Worst-case seconds of one explain_error call (n_jobs 1): one timed GBM fit per model size."""
    import numpy as np
    from sklearn.ensemble import GradientBoostingRegressor

    total = 0.0
    n = len(c["y"])
    cv = 5
    timed = {}
    for size in (n, int(np.sum(c["y"] == 0)), int(np.sum(c["y"] == 1))):
        if size not in timed:
            rows = np.arange(size)
            train = rows[: size - size // cv]
            gbm = GradientBoostingRegressor(n_estimators=s.shap_n_estimators, max_depth=s.shap_max_depth,
                                            learning_rate=s.shap_learning_rate, subsample=s.shap_subsample,
                                            random_state=seed)
            t0 = time.perf_counter()
            gbm.fit(c["G"][train], c["e"][train])
            timed[size] = time.perf_counter() - t0
        total += timed[size] * ((1 + s.shap_permutations) * cv + 1)
    return total


# ------------------------------------------------------------------------------------------ main
def settings_for(variant):
    from latentbids.config import SLOPPY_ANALYSIS, AnalysisConfig

    s = AnalysisConfig()
    n_jobs, e_key = 1, "e"
    if variant == "sloppy":
        for key, cap in SLOPPY_ANALYSIS.items():
            setattr(s, key, min(int(getattr(s, key)), cap))
    elif variant == "perm-correction":
        s.correction = "permutation"
    elif variant == "bonferroni":
        s.family_correction = "bonferroni"
    elif variant == "shap-jobs2":
        n_jobs = 2
    elif variant == "shap-e-noise":
        e_key = "e_noise"
    return s, n_jobs, e_key


def key_of(s, n_jobs, e_key, step):
    d = dataclasses.asdict(s)
    d.update(n_jobs=n_jobs, e=e_key)
    return tuple(d[k] for k in STEPS[step])


def run_config(variant, cohort, seed, shap_budget, base_keys=None):
    s, n_jobs, e_key = settings_for(variant)
    times, info = {}, {}
    for step in STEPS:
        key = key_of(s, n_jobs, e_key, step)
        if base_keys is not None and base_keys.get(step) == key:
            continue  # same as the baseline: not rerun
        if step == "shap":
            # single-job worst case, whatever n_jobs: on a shared 2-core VM n_jobs 2 gained nothing
            # (N 100: x0.99) and the /n_jobs estimate under-ran the N 400 run by 1.7x
            est = shap_estimate(cohort, s, seed)
            info["shap_estimate_s"] = est
            if est > shap_budget:
                info["shap_fits"] = (f"not run: worst-case estimate {est:.0f} s > --shap-budget {shap_budget:.0f} s")
                times[step] = float("nan")
                continue
        t0 = time.perf_counter()
        if step == "projections":
            info["projection_parts"] = step_projections(cohort, s, seed)
        elif step == "lrcp":
            info.update(step_lrcp(cohort, s, seed, s.top_k))
        elif step == "latent_vec":
            info.update(step_latent_vec(cohort, s, seed))
        elif step == "sam":
            info.update(step_sam(cohort, s, seed))
        elif step == "shap":
            info.update(step_shap(cohort, s, seed, n_jobs, e_key))
        times[step] = time.perf_counter() - t0
        print(f"#   {variant}: {step} {times[step]:.1f} s", flush=True)
    keys = {step: key_of(s, n_jobs, e_key, step) for step in STEPS}
    return times, info, keys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 400], help="cohort sizes (two balanced classes)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--voxels", type=int, default=30, help="voxels per region for SAM")
    parser.add_argument("--loss", type=float, default=0.18, help="planted GM loss in class 1")
    parser.add_argument("--threads", type=int, default=0,
                        help="BLAS/OpenMP threads of this process (0: leave the libraries' default)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run the configs this many times, interleaved; report the median of each")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--shap-budget", type=float, default=600.0,
                        help="skip a SHAP run whose worst-case estimate exceeds this many seconds")
    parser.add_argument("--seed", type=int, default=42, help="the run's random_seed (analysis seed)")
    args = parser.parse_args(argv)

    if args.threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".cache", "numba"))

    print(f"# latentbids bench_analysis: {machine()}", flush=True)
    t0 = time.perf_counter()
    import numpy as np
    import shap
    import sklearn
    import umap
    from threadpoolctl import threadpool_limits

    import latentbids.analysis.agnostic  # noqa: F401
    import latentbids.analysis.lrcp  # noqa: F401
    import latentbids.analysis.projections as proj
    import latentbids.analysis.shap_error  # noqa: F401
    import latentbids.workflows.group.analysis.run  # noqa: F401

    t_import = time.perf_counter() - t0
    limits = threadpool_limits(args.threads) if args.threads else None
    # UMAP's first call compiles numba code (cached under NUMBA_CACHE_DIR): warm it up, untimed
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    proj.project_latents(rng.standard_normal((40, 8)), methods=("umap", "tsne"), random_state=0)
    t_warm = time.perf_counter() - t0
    print(f"# python {sys.version.split()[0]}, numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
          f"umap {umap.__version__}, shap {shap.__version__}; threads {args.threads or 'default'}; "
          f"NUMBA_CACHE_DIR {os.environ['NUMBA_CACHE_DIR']}")
    print(f"# imports {t_import:.1f} s; UMAP/t-SNE warm-up (first call, numba JIT or cache load) {t_warm:.1f} s")

    all_rows = []
    for n in args.n:
        t_make = time.perf_counter()
        cohort = make_cohort(n, folds=args.folds, loss=args.loss, voxels=args.voxels)
        t_make = time.perf_counter() - t_make
        print(f"# N {n} ({n // 2} + {n - n // 2}), J 116, K 32, {args.folds} folds, {args.voxels} voxels/region, "
              f"planted {args.loss:.0%} loss in regions {list(cohort['planted'])}; cohort built in {t_make:.1f} s; "
              f"load {open('/proc/loadavg').read().split()[:3]}", flush=True)
        runs = []
        for rep in range(max(1, args.repeats)):
            base_t, base_i, base_keys = run_config("baseline", cohort, args.seed, args.shap_budget)
            one = [("baseline", base_t, base_i)]
            for v in args.variants:
                t, i, _ = run_config(v, cohort, args.seed, args.shap_budget, base_keys)
                one.append((v, t, i))
            runs.append(one)
        rows = []
        for idx, (name, _, info) in enumerate(runs[0]):
            times = {}
            for step in STEPS:
                vals = [r[idx][1][step] for r in runs if step in r[idx][1]]
                if vals:
                    times[step] = float(np.median(vals))
            rows.append((name, times, info))
        base = rows[0][1]
        header = ["config", *STEPS, "total s", "x base"]
        print(f"\nN = {n}: seconds per step (median of {max(1, args.repeats)}; '=' same settings as baseline, "
              "not rerun; x: ratio to the baseline step)")
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        base_shap = np.isfinite(base.get("shap", np.nan))
        for name, times, info in rows:
            cells, total, no_shap = [name], 0.0, not base_shap
            for step in STEPS:
                t = times.get(step, base.get(step, np.nan))
                if step in times and not np.isfinite(t):
                    cells.append("not run")
                    no_shap = True
                    continue
                if step in times:
                    ratio = t / base[step] if name != "baseline" and np.isfinite(base.get(step, np.nan)) else None
                    cells.append(f"{t:.1f}" + (f" (x{ratio:.2f})" if ratio is not None else ""))
                else:
                    cells.append("=")
            # totals over the same steps for both (without SHAP when either did not run it)
            steps = [st for st in STEPS if not (no_shap and st == "shap")]
            total = sum(times.get(st, base.get(st)) for st in steps)
            base_total = sum(base[st] for st in steps)
            cells.append(f"{total:.1f}" + (" (no shap)" if no_shap else ""))
            cells.append(f"{total / base_total:.2f}")
            print("| " + " | ".join(cells) + " |")
        print(f"\nN = {n}: sanity check (planted regions {list(cohort['planted'])})")
        for name, times, info in rows:
            parts = []
            if "lrcp_planted" in info:
                parts.append(f"LRCP consensus positives: planted {info['lrcp_planted']}/4, other "
                             f"{info['lrcp_other']}, Kendall tau {info['tau']:.2f}")
            if "vec_significant" in info:
                parts.append(f"latent vector significant in {info['vec_significant']}/{args.folds} folds, "
                             f"RUB p_perm (fold 0) {info['rub_p']:.3f}")
            if "sam_planted" in info:
                parts.append(f"SAM bound passes {info['sam_significant']}/116, supported: planted "
                             f"{info['sam_planted']}/4, other {info['sam_other']}")
            if "shap_fits" in info:
                parts.append(f"SHAP {info['shap_fits']}"
                             + (f"; pooled top-5 holds {info['shap_top5_planted']}/4 planted"
                                if "shap_top5_planted" in info else ""))
            if "shap_estimate_s" in info:
                parts.append(f"SHAP worst-case estimate {info['shap_estimate_s']:.0f} s")
            if "projection_parts" in info:
                parts.append("projections: " + ", ".join(f"{k} {v:.1f} s" for k, v in info["projection_parts"].items()))
            print(f"- {name}: " + "; ".join(parts))
        all_rows.append((n, rows))
    print(f"\n# end: load {open('/proc/loadavg').read().split()[:3]}")
    if limits is not None:
        limits.restore_original_limits()
    return all_rows


if __name__ == "__main__":
    main()
