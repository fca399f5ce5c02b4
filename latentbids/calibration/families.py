"""The claim families a calibration measures, and how one cohort's outcome is read for each.

Importable (``from latentbids.calibration import lrcp_outcome``) so that the fast tests and the sweeps of
``benchmarks/`` (calibration.py, calibration_e2e.py, power_table.py, lrcp_rules.py) run the same code: each
``*_outcome`` takes one simulated cohort (:func:`latentbids.simulate.analysis_cohort.draw_cohort`), the
analysis settings and a seed, runs the family's default rule through :mod:`latentbids.analysis`, and says
whether it supported a claim (and which planted regions it found).
"""

from __future__ import annotations

import math
import os
import platform
import subprocess

import numpy as np

from latentbids.analysis.claims import FAMILIES  # noqa: F401  (the families calibrated: every claim family)
from latentbids.config import AnalysisConfig

PLANTED_NAMES = ("Hippocampus_L", "Hippocampus_R", "ParaHippocampal_L", "ParaHippocampal_R")
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
    """The CPU model and the CPUs this process may use (for every table's header)."""

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
