"""One contrast (METHOD.md sections 5-6): LRCP over every fold, SAM on the voxels, the latent vector and RUB.

Why within folds: in k-fold mode each fold trains its own network, whose latent units are not another
fold's units.  LRCP therefore takes every fold's codes at once (one family of units for the family-wise
test, one score per fold and region, a consensus across folds); the latent-vector and RUB tests run per
fold at ``eta / n_folds``.  SAM and the regions' own test use GM and labels only, so they run once.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from latentbids.analysis.agnostic import latent_vector_test, sam_claims, sam_regions, vector_claims
from latentbids.analysis.cohort import contrast_name
from latentbids.analysis.latent_vector import held_out_claim, held_out_test
from latentbids.analysis.lrcp import LRCP
from latentbids.analysis.lrcp_claims import lrcp_claims
from latentbids.analysis.results import ContrastResult, SectionResult
from latentbids.bids.naming import latent_columns
from latentbids.utils.progress import step

LOGGER = logging.getLogger("latentbids.workflows.group.training")


def contrast_rows(inp, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows (in records order) of the usable subjects labelled ``a`` or ``b``, and their 0/1 labels."""
    rows = np.flatnonzero(inp.labels.isin([a, b]).to_numpy() & inp.usable)
    return rows, (inp.labels.iloc[rows] == b).to_numpy().astype(int)


def voxel_matrix(inp, rows: np.ndarray, voxels: np.ndarray) -> np.ndarray:
    """GM of the flat box ``voxels`` in the maps of ``rows`` (one map read at a time), confounds regressed out:
    what SAM (atlas voxels) and the atlas-free reference (brain voxels) test."""
    X = np.stack([np.asarray(inp.data[int(r)], dtype=np.float32).ravel()[voxels] for r in rows])
    if inp.C.shape[1]:
        from latentbids.analysis.stats import residualize

        X = residualize(X, inp.C[rows]).astype(np.float32, copy=False)
    return X


def _fold_codes(inp, rows: np.ndarray) -> dict:
    """Every fold's codes of ``rows`` (confounds regressed out)."""
    return {fold: inp.adjust(inp.fold_Z[fold][0], rows) for fold in inp.folds}


def _voxels(inp, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every atlas voxel of the contrast's maps (confounds regressed out), and each voxel's label."""
    vox = np.flatnonzero(inp.atlas_box.ravel() > 0)
    return voxel_matrix(inp, rows, vox), inp.atlas_box.ravel()[vox]


def run_contrast_regions(inp, settings, seed: int, a: str, b: str) -> SectionResult:
    """The regional half of one contrast: LRCP over every fold and SAM, with their claims.

    What a sensitivity atlas re-reads (:mod:`.atlases`): it depends on the atlas's regions, while the
    latent vector's tests (:func:`run_contrast`) do not and are made once, in the primary atlas.  ``result``
    is a :class:`ContrastResult` without latent-vector tests; when the contrast is skipped, ``result`` is
    None and ``notes`` says why.
    """
    rows, y = contrast_rows(inp, a, b)
    name = f"{a} vs {b}"
    if min((y == 0).sum(), (y == 1).sum()) < 2:
        return SectionResult(notes=(f"contrast {name} skipped: fewer than 2 usable subjects in a class",))
    G = inp.adjust(inp.G, rows)
    index = inp.regions["index"].to_numpy()
    names = inp.regions["name"].tolist()
    Z = _fold_codes(inp, rows)
    K = next(iter(Z.values())).shape[1]
    lrcp = LRCP(correlation=settings.correlation, correction=settings.correction, alpha=settings.alpha,
                eta=settings.eta, statistic=settings.statistic, family_correction=settings.family_correction,
                bound=settings.bound, n_permutations=settings.n_permutations, random_state=seed,
                top_k=settings.top_k)
    perms = settings.n_permutations
    with step(LOGGER, f"{name}: LRCP, {K} units x {len(index)} regions x {len(Z)} folds, {perms} permutations"):
        lrcp.fit(Z, G, y, region_index=index, region_names=names, unit_names=latent_columns(K),
                 n_confounds=inp.C.shape[1])
    X, voxel_labels = _voxels(inp, rows)
    with step(LOGGER, f"{name}: SAM, {X.shape[1]} voxels, {settings.sam_permutations} permutations"):
        sam = sam_regions(X, voxel_labels, y, index, top_voxels=settings.sam_top_voxels, eta=settings.eta,
                          bound=settings.bound, n_permutations=settings.sam_permutations, random_state=seed)
    sam.insert(1, "region", sam["region_index"].map(dict(zip(index, names))))
    claims = lrcp_claims(lrcp, name) + sam_claims(sam, name, settings.sam_permutations)
    result = ContrastResult(name=name, desc=contrast_name(a, b), labels=(a, b), n=len(rows),
                            n_per_class={a: int((y == 0).sum()), b: int((y == 1).sum())}, lrcp=lrcp, sam=sam,
                            vectors={}, reference_fold=inp.reference_fold, held_out=None)
    return SectionResult(result=result, claims=tuple(claims))


def run_contrast(inp, settings, seed: int, a: str, b: str) -> SectionResult:
    """Test one contrast: its regions (:func:`run_contrast_regions`), then the whole latent vector, held out
    over the folds and per fold with its bounds and RUB.  ``result`` is a :class:`ContrastResult` and
    ``claims`` its claims; when the contrast is skipped, ``result`` is None and ``notes`` says why."""
    regional = run_contrast_regions(inp, settings, seed, a, b)
    if regional.result is None:
        return regional
    rows, y = contrast_rows(inp, a, b)
    name = regional.result.name
    Z = _fold_codes(inp, rows)
    perms = settings.n_permutations
    with step(LOGGER, f"{name}: latent vector, held out over {len(Z)} folds, {perms} permutations"):
        held_out = held_out_test(Z, {fold: inp.fold_Z[fold][1][rows] for fold in inp.folds}, y,
                                 eta=settings.eta, n_permutations=perms, random_state=seed)
    eta_fold = settings.eta / len(inp.folds)
    with step(LOGGER, f"{name}: latent vector bounds and RUB per fold"):
        vectors = {fold: latent_vector_test(Zf, y, eta=eta_fold, bound=settings.bound, n_permutations=perms,
                                            random_state=seed, dropout=settings.rub_dropout)
                   for fold, Zf in Z.items()}
    claims = (list(regional.claims) + [held_out_claim(held_out, name, settings.eta)]
              + vector_claims(vectors, name, settings.eta))
    result = dataclasses.replace(regional.result, vectors=vectors, held_out=held_out)
    return SectionResult(result=result, claims=tuple(claims))
