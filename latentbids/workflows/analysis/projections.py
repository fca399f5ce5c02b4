"""Projections section (METHOD.md section 4): PCA and PLS per fold, t-SNE and UMAP on the reference fold,
and PC1 of the reference fold against global mean GM, TIV and age (one row per subject)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from latentbids.analysis.pc1 import pc1_claims, pc1_correlations
from latentbids.analysis.projections import project_latents
from latentbids.analysis.results import ProjectionResult


def _primary_labels(inp) -> tuple[np.ndarray, str | None]:
    """0/1 labels of the first contrast for PLS (NaN outside it), and its name."""
    y = np.full(len(inp.records), np.nan)
    if not inp.contrasts:
        return y, None
    a, b = inp.contrasts[0]
    y[(inp.labels == a).to_numpy()] = 0
    y[(inp.labels == b).to_numpy()] = 1
    return y, f"{a} (0) vs {b} (1)"


def _global_measures(inp) -> pd.DataFrame:
    cov = inp.covariates
    wanted = {"gm_mean": cov["gm_mean"], "tiv": cov["tiv"]}
    for name in ("age", "Age", "AGE"):
        if name in cov.columns:
            wanted["age"] = pd.to_numeric(cov[name], errors="coerce")
            break
    return pd.DataFrame(wanted)


def run_projections(inp, settings, seed: int) -> tuple[ProjectionResult, pd.DataFrame, list]:
    """Returns the result (reference fold), the table of every fold, and the PC1 claims."""
    y, pls_contrast = _primary_labels(inp)
    frames, metas = [], {}
    for fold in inp.folds:
        Z, role = inp.fold_Z[fold]
        methods = ("pca", "tsne", "umap", "pls") if fold == inp.reference_fold else ("pca", "pls")
        fit = np.isin(role, ("train", "validation"))  # the maps the fold's network trained on
        if not fit.any():  # --model on subjects it never saw: no training rows to fit PLS on without leakage
            fit = np.ones(len(role), bool)
            methods = tuple(m for m in methods if m != "pls")
        coords, meta = project_latents(
            Z, fit, y, pca_components=settings.pca_components, tsne_perplexity=settings.tsne_perplexity,
            umap_n_neighbors=settings.umap_n_neighbors, umap_min_dist=settings.umap_min_dist,
            pls_components=settings.pls_components, random_state=seed, methods=methods)
        frame = pd.concat([inp.ids(), coords.reset_index(drop=True)], axis=1)
        frame.insert(0, "fold", fold)
        frame.insert(3, "role", role)
        frame.insert(4, "label", inp.labels.fillna("n/a").to_numpy())
        frames.append(frame)
        metas[fold] = meta
    table = pd.concat(frames, ignore_index=True)
    ref = table[table["fold"] == inp.reference_fold].reset_index(drop=True)
    pc1, claims = None, []
    if "pca1" in ref and np.isfinite(ref["pca1"]).any():
        # one row per subject: a second session is not a second observation of the correlation
        first = ~inp.records["participant_id"].duplicated().to_numpy()
        pc1 = pc1_correlations(ref.loc[first, "pca1"].to_numpy(float),
                               _global_measures(inp)[first].reset_index(drop=True),
                               eta=settings.eta, min_abs_r=settings.pc1_min_abs_r)
        claims = pc1_claims(pc1, settings.pc1_min_abs_r)
    result = ProjectionResult(table=ref, meta=metas, pc1=pc1, pls_contrast=pls_contrast)
    return result, table, claims
