"""Low-dimensional projections of the latent codes (METHOD.md section 4).

Four views of the standardised latent matrix ``Z`` (subjects x latent units):

- **PCA** (unsupervised, linear): fitted on the *fit rows* only, every row transformed; the explained
  variance ratio says how much of the latent variance the plotted axes hold.
- **PLS** (supervised, linear, on the clinical label): fitted on the fit rows that carry a label and
  applied to every row, so held-out subjects are placed by a model that never saw their labels.
- **t-SNE** and **UMAP** (unsupervised, non-linear, 2-D): embed all rows at once; they are pictures.

Guards of METHOD.md section 4, which this module enforces or records:

1. PLS uses the labels, so it is fitted on training rows only (``fit_rows`` with a 0/1 label) and the
   held-out rows are only projected.  The labels of rows outside ``fit_rows`` are never read.  A PLS
   plot of the *fit* rows separates the classes by construction (even for pure noise); only the
   held-out rows' scores are evidence, and that evidence is tested elsewhere (LRCP, agnostic tests).
2. t-SNE and UMAP distances, cluster sizes and gaps are not evidence: they depend on perplexity /
   n_neighbors and the seed, and they exaggerate separation.  No statistic is computed on them here and
   none should be downstream; ``meta`` says so.
3. PC1 is correlated with global mean GM, TIV and age by :func:`pc1_correlations`: a latent axis that
   only encodes brain size is a finding, not a biomarker.

Degenerate inputs (very few subjects, constant latents, one class for PLS, fewer latent units than
requested components) never raise: the method is clipped or skipped and the reason is written in
``meta``; skipped methods and components leave NaN columns so the column set is always the same.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from latentbids.analysis.projection_methods import pca_scores, pls_scores, skipped, tsne_embedding, umap_embedding
from latentbids.errors import UsageError

METHODS = ("pca", "tsne", "umap", "pls")

def project_latents(
    Z,
    fit_rows=None,
    y=None,
    *,
    pca_components: int = 3,
    tsne_perplexity: float = 30,
    umap_n_neighbors: int = 15,
    umap_min_dist: float = 0.1,
    pls_components: int = 2,
    random_state: int = 42,
    methods: Sequence[str] = METHODS,
) -> tuple[pd.DataFrame, dict]:
    """Project latent codes with PCA, t-SNE, UMAP and PLS.

    Parameters
    ----------
    Z : array-like, shape (N, K)
        Latent codes, one row per subject (a DataFrame keeps its index in ``coords``).  Rows with a
        non-finite value are left out of every fit and get NaN coordinates.
    fit_rows : array-like of bool (length N) or of int positions, or None
        The subjects the projections are *fitted* on (the training subjects of the reference model);
        the others are only transformed.  The standardisation uses the mean and standard deviation
        (ddof=1) of these rows.  ``None`` means every row.
    y : array-like, shape (N,), optional
        Binary label 0/1 for PLS; -1 or NaN marks subjects outside the contrast.  Only the entries
        of ``fit_rows`` are read (the held-out labels are never used, whatever they hold).
    pca_components : int
        Number of principal components (clipped to the rank the fit rows allow).
    tsne_perplexity : float
        t-SNE perplexity, clipped to ``(n - 1) / 3`` for small ``n``.
    umap_n_neighbors : int
        UMAP neighbourhood size, clipped to ``n - 1``.
    umap_min_dist : float
        UMAP minimum distance, in [0, 1].
    pls_components : int
        Number of PLS components (clipped to what the labelled fit rows allow).
    random_state : int
        Seed of t-SNE and UMAP (UMAP then runs single-threaded, which makes it reproducible).
    methods : sequence of str
        Subset of ``("pca", "tsne", "umap", "pls")`` to compute; the others are reported as skipped.

    Returns
    -------
    coords : DataFrame, shape (N, pca_components + 4 + pls_components)
        Columns ``pca1..pcaC, tsne1, tsne2, umap1, umap2, pls1..plsP`` in the row order of ``Z``;
        always all of them (NaN where a method or a component was skipped or clipped).
    meta : dict
        JSON-serialisable.  Top level: ``n``, ``n_valid``, ``n_fit``, ``K``, ``random_state``,
        ``methods``, ``standardization`` (fit-on count, ddof, constant units) and one dict per method
        ``pca``, ``tsne``, ``umap``, ``pls``, each with ``computed`` (bool), ``skipped`` (reason or
        None), ``clipped`` (reason or None), ``fitted_on`` (row count), its parameters (requested and
        used) and ``warnings``.  ``pca`` adds ``explained_variance_ratio``, ``components`` (loadings,
        C x K), ``sign_units`` (the latent unit that fixes each axis' sign) and ``sign_convention``;
        ``pls`` adds ``n_per_class``, ``x_rotations`` (K x P) and
        ``sign_convention``; ``tsne``/``umap`` add ``caveat``.

    Notes
    -----
    Sign conventions (component signs are otherwise arbitrary and solver-dependent):

    - PCA: each axis is flipped so that the latent unit with the largest absolute loading loads
      positively.  The axes are thus fixed in latent space: negating the data, or the hidden factor
      behind an axis, negates the scores and leaves the loadings unchanged.  Like any sign rule it is
      fragile where it is nearly tied: when two units of opposite sign have almost the same largest
      |loading|, a small change of the data can flip the axis (``meta["pca"]["sign_units"]`` names the
      deciding unit, so such a flip is visible).  Compare axes across models by their loadings, never by
      their sign alone.
    - PLS: each axis is flipped so that class 1 has the higher mean score on the rows PLS was fitted on.

    PLS is sklearn's ``PLSRegression(scale=False)`` on the standardised latents (the fit rows'
    scaling, shared by all methods), t-SNE is ``TSNE(init="pca")`` (``init="random"`` with a single
    informative latent unit), UMAP is ``umap.UMAP`` with its defaults otherwise.
    """
    methods = _check_methods(methods)
    _check_params(pca_components, tsne_perplexity, umap_n_neighbors, umap_min_dist, pls_components)
    index = Z.index if isinstance(Z, pd.DataFrame) else None
    Z = np.asarray(Z, dtype=float)
    if Z.ndim != 2:
        raise UsageError(
            f"project_latents needs a 2-D latent matrix (subjects x units); got shape {Z.shape}"
        )
    n, k = Z.shape
    fit = _fit_mask(fit_rows, n)
    valid = np.all(np.isfinite(Z), axis=1)
    fit &= valid
    Zs, mean, sd, constant = _standardise(Z, fit, valid)
    n_valid, n_fit = int(valid.sum()), int(fit.sum())

    columns = (
        [f"pca{i + 1}" for i in range(pca_components)]
        + ["tsne1", "tsne2", "umap1", "umap2"]
        + [f"pls{i + 1}" for i in range(pls_components)]
    )
    coords = pd.DataFrame(np.nan, index=index if index is not None else pd.RangeIndex(n), columns=columns)
    meta = {
        "n": n,
        "n_valid": n_valid,
        "n_fit": n_fit,
        "K": k,
        "random_state": int(random_state),
        "methods": list(methods),
        "standardization": {
            "fitted_on": n_fit,
            "ddof": 1,
            "constant_units": [int(j) for j in np.flatnonzero(constant)],
            "note": "z-scores with the fit rows' mean/sd; units constant on the fit rows are set to 0",
        },
    }
    if n_valid < n:
        meta["standardization"]["excluded_nonfinite_rows"] = int(n - n_valid)

    runners = {
        "pca": lambda: pca_scores(Zs, fit, valid, constant, pca_components),
        "pls": lambda: pls_scores(Zs, fit, valid, constant, y, pls_components),
        "tsne": lambda: tsne_embedding(Zs, tsne_perplexity, random_state),
        "umap": lambda: umap_embedding(Zs, umap_n_neighbors, umap_min_dist, random_state),
    }
    for name in METHODS:
        if name in methods:
            scores, info = runners[name]()
        else:
            scores, info = None, skipped("not requested in methods")
        meta[name] = info
        if scores is not None:
            cols = [f"{name}{i + 1}" for i in range(scores.shape[1])]
            values = np.full((n, scores.shape[1]), np.nan)
            values[valid] = scores
            coords[cols] = values
    return coords, meta


# --------------------------------------------------------------------------------------------------
# input checks and standardisation


def _check_methods(methods) -> tuple[str, ...]:
    if isinstance(methods, str):
        methods = (methods,)
    methods = tuple(str(m).lower() for m in methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UsageError(f"unknown projection method(s) {unknown}; choose from {list(METHODS)}")
    return methods


def _check_params(pca_components, tsne_perplexity, umap_n_neighbors, umap_min_dist, pls_components) -> None:
    for name, value in (("pca_components", pca_components), ("pls_components", pls_components)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise UsageError(f"{name} must be a positive integer (got {value!r})")
    k = umap_n_neighbors
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise UsageError(f"umap_n_neighbors must be an integer >= 2 (got {umap_n_neighbors!r})")
    if not np.isfinite(tsne_perplexity) or tsne_perplexity <= 0:
        raise UsageError(f"tsne_perplexity must be a positive number (got {tsne_perplexity!r})")
    if not 0.0 <= float(umap_min_dist) <= 1.0:
        raise UsageError(f"umap_min_dist must lie in [0, 1] (got {umap_min_dist!r})")


def _fit_mask(fit_rows, n: int) -> np.ndarray:
    if fit_rows is None:
        return np.ones(n, dtype=bool)
    rows = np.asarray(fit_rows)
    if rows.dtype == bool:
        if rows.shape != (n,):
            raise UsageError(
                f"fit_rows as a boolean mask must have one entry per subject ({n}); got {rows.shape}"
            )
        return rows.copy()
    if rows.size == 0:
        return np.zeros(n, dtype=bool)
    if not np.issubdtype(rows.dtype, np.integer) or rows.ndim != 1:
        raise UsageError("fit_rows must be a boolean mask or a 1-D array of integer row positions")
    if rows.min() < -n or rows.max() >= n:
        raise UsageError(f"fit_rows holds positions outside 0..{n - 1}")
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return mask


def _standardise(Z: np.ndarray, fit: np.ndarray, valid: np.ndarray):
    """Z-scores with the fit rows' mean/sd (ddof=1); units constant on the fit rows become 0."""
    k = Z.shape[1]
    if fit.sum() >= 2:
        mean = Z[fit].mean(axis=0)
        sd = Z[fit].std(axis=0, ddof=1)
    else:
        mean, sd = np.zeros(k), np.zeros(k)
    # exact ties, or a spread that is only rounding error of the mean (np.full(n, 0.3) has sd ~1e-17)
    spread = np.ptp(Z[fit], axis=0) if fit.any() else np.zeros(k)
    constant = (spread == 0) | ~np.isfinite(sd) | ~(sd > 1e-12 * np.abs(mean))
    Zs = np.zeros_like(Z[valid])
    keep = ~constant
    Zs[:, keep] = (Z[valid][:, keep] - mean[keep]) / sd[keep]
    return Zs, mean, sd, constant


