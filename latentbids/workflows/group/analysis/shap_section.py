"""SHAP section (METHOD.md section 7): explain each subject's held-out reconstruction error from its
regional GM, with the pooled and per-class surrogates tested together (one family of claims)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from latentbids.analysis.results import SectionResult, ShapSection
from latentbids.analysis.shap_error import explain_error, shap_claims


def error_target(inp) -> tuple[np.ndarray, str | None]:
    """The per-map error to explain, and a note when it is not a held-out error.

    k-fold: each fold is its own network with its own intensity scale, so the fold offsets are removed
    and the surrogate explains differences between subjects, not between networks: each fold's mean is
    subtracted and the grand mean, computed once before any change, is added back, so that every fold
    ends with the same mean.  (The first version recomputed the grand mean inside the loop, after the
    earlier folds had been shifted, so the folds ended on different means and the offsets survived as
    noise in the target.)  Non-finite errors stay non-finite and take no part in the means.  fit-all:
    the training error (no held-out error exists without k-fold).
    """
    latents = inp.latent_table
    e = np.array(latents["error"], dtype=float)
    if inp.mode == "fit_all":
        return e, ("fit-all mode: SHAP explains each subject's training reconstruction error (no held-out error "
                   "exists without k-fold)")
    finite = np.isfinite(e)
    if len(inp.folds) > 1 and finite.any():
        fold = latents["fold"].astype(str).to_numpy()
        grand = e[finite].mean()
        offsets = {f: e[(fold == f) & finite].mean() - grand for f in np.unique(fold[finite])}
        for f, offset in offsets.items():
            e[fold == f] -= offset
    return e, None


def run_shap(inp, settings, seed: int, n_jobs: int) -> SectionResult:
    """The section: ``result`` (a :class:`ShapSection`), its ``claims`` (SHAP models, the top regions' held-out
    test, SAR) and ``notes`` (what the error explained is, in fit-all mode)."""
    rows = np.flatnonzero(inp.usable)
    e, note = error_target(inp)
    target = e[rows]
    if inp.C.shape[1]:
        from latentbids.analysis.stats import residualize

        target = residualize(target, inp.C[rows]) + target.mean()
    G = inp.adjust(inp.G, rows)
    labels = inp.labels.iloc[rows].to_numpy(object)
    res = explain_error(  # a cohort without labels has the pooled model only (classes=None), no class model
        G, target, labels if pd.notna(labels).any() else None, inp.regions["index"].to_numpy(),
        inp.regions["name"].tolist(), n_estimators=settings.shap_n_estimators, max_depth=settings.shap_max_depth,
        learning_rate=settings.shap_learning_rate, subsample=settings.shap_subsample,
        background=settings.shap_background, n_permutations=settings.shap_permutations, min_r2=settings.shap_min_r2,
        top_k=settings.top_k, random_state=seed, eta=settings.eta, bound=settings.bound,
        sar_top_m=settings.sar_top_m, sar_resamples=settings.sar_resamples,
        region_permutations=settings.shap_region_permutations, n_jobs=n_jobs)
    features = pd.DataFrame(G, columns=inp.regions["index"].to_numpy())
    section = ShapSection(result=res, features=features, regions=inp.regions)
    return SectionResult(result=section, claims=tuple(shap_claims(res)), notes=(note,) if note else ())
