"""Projections section (METHOD.md section 4): every registered projection method (PCA and PLS per fold,
t-SNE and UMAP, fitted on every row at once, on the reference fold only), and PC1 of the reference fold
against global mean GM, TIV and age (one row per subject)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from latentbids.analysis.pc1 import pc1_claims, pc1_correlations
from latentbids.analysis.projection_registry import PROJECTION_METHODS
from latentbids.analysis.projections import project_latents
from latentbids.analysis.results import ProjectionResult, SectionResult


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


def _method_params(settings) -> dict:
    """The registered methods' parameters that the ``[analysis]`` settings hold (the others keep their default)."""
    return {key: getattr(settings, key) for m in PROJECTION_METHODS.values() for key in m.params
            if hasattr(settings, key)}


def run_projections(inp, settings, seed: int) -> SectionResult:
    """The section: ``result`` (a :class:`ProjectionResult`, reference fold), ``tables["projections"]`` (the
    coordinates of every fold) and ``claims`` (PC1's)."""
    y, pls_contrast = _primary_labels(inp)
    params = _method_params(settings)
    frames, metas = [], {}
    for fold in inp.folds:
        Z, role = inp.fold_Z[fold]
        # a transductive method (t-SNE, UMAP: fitted on every row, a picture) runs on the reference fold only
        methods = [m for m in PROJECTION_METHODS.values() if fold == inp.reference_fold or not m.transductive]
        fit = np.isin(role, ("train", "validation"))  # the maps the fold's network trained on
        if not fit.any():  # --model on subjects it never saw: no training rows to fit PLS on without leakage
            fit = np.ones(len(role), bool)
            methods = [m for m in methods if not m.supervised]
        coords, meta = project_latents(Z, fit, y, random_state=seed, methods=[m.name for m in methods], **params)
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
    return SectionResult(result=result, tables={"projections": table}, claims=tuple(claims))
