"""Low-dimensional projections of the latent codes (METHOD.md section 4).

Views of the standardised latent matrix ``Z`` (subjects x latent units), one per method of
:data:`~latentbids.analysis.projection_registry.PROJECTION_METHODS`; the four built in:

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

from latentbids.analysis.projection_methods import skipped
from latentbids.analysis.projection_registry import PROJECTION_METHODS, ProjectionData, default_params, method_names
from latentbids.errors import UsageError


def project_latents(Z, fit_rows=None, y=None, *, random_state: int = 42, methods: Sequence[str] | None = None,
                    **params) -> tuple[pd.DataFrame, dict]:
    """Project latent codes with every registered method (PCA, t-SNE, UMAP and PLS by default).

    The methods are those of :data:`~latentbids.analysis.projection_registry.PROJECTION_METHODS`, in their
    registration order; each owns the columns ``<name>1 ..`` and the ``meta`` entry ``<name>``.

    Parameters
    ----------
    Z : array-like of shape (n_subjects, n_units)
        Latent codes, one row per subject (a DataFrame keeps its index in ``coords``).  Rows with a
        non-finite value are left out of every fit and get NaN coordinates.
    fit_rows : array-like of bool (length n_subjects) or of int positions, or None
        The subjects the projections are *fitted* on (the training subjects of the reference model);
        the others are only transformed.  The standardisation uses the mean and standard deviation
        (ddof=1) of these rows.  ``None`` means every row.
    y : array-like of shape (n_subjects,), optional
        Binary label 0/1 for PLS; -1 or NaN marks subjects outside the contrast.  Only the entries
        of ``fit_rows`` are read (the held-out labels are never used, whatever they hold).
    random_state : int, default=42
        Seed of t-SNE and UMAP (UMAP then runs single-threaded, which makes it reproducible).
    methods : sequence of str, optional
        Subset of the registered methods (default: all of them, ``("pca", "tsne", "umap", "pls")``) to
        compute; the others are reported as skipped.
    **params
        The methods' parameters (a registered method declares its own, with defaults):

        - ``pca_components`` (int, default 3): principal components (clipped to the rank the fit rows allow);
        - ``tsne_perplexity`` (float, default 30): t-SNE perplexity, clipped to ``(n - 1) / 3`` for small ``n``;
        - ``umap_n_neighbors`` (int, default 15): UMAP neighbourhood size, clipped to ``n - 1``;
        - ``umap_min_dist`` (float, default 0.1): UMAP minimum distance, in [0, 1];
        - ``pls_components`` (int, default 2): PLS components (clipped to what the labelled fit rows allow).

    Returns
    -------
    coords : DataFrame of shape (n_subjects, n_columns)
        Columns ``pca1..pcaC, tsne1, tsne2, umap1, umap2, pls1..plsP`` (then any other registered method's) in
        the row order of ``Z``; always all of them (NaN where a method or a component was skipped or clipped).
    meta : dict
        JSON-serialisable.  Top level: ``n``, ``n_valid``, ``n_fit``, ``K``, ``random_state``,
        ``methods``, ``standardization`` (fit-on count, ddof, constant units) and one dict per method
        ``pca``, ``tsne``, ``umap``, ``pls``, each with ``computed`` (bool), ``skipped`` (reason or
        None), ``clipped`` (reason or None), ``fitted_on`` (row count), its parameters (requested and
        used) and ``warnings``.  ``pca`` adds ``explained_variance_ratio``, ``components`` (loadings,
        ``n_components x n_units``), ``sign_units`` (the latent unit that fixes each axis' sign) and
        ``sign_convention``; ``pls`` adds ``n_per_class``, ``x_rotations`` (``n_units x n_components``) and
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
    methods = _check_methods(method_names() if methods is None else methods)
    params = _check_params(params)
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

    columns = [c for m in PROJECTION_METHODS.values() for c in m.columns(params)]
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

    data = ProjectionData(Zs=Zs, fit=fit, valid=valid, constant=constant, y=y, random_state=random_state)
    for name, method in PROJECTION_METHODS.items():
        if name in methods:
            scores, info = method.run(data, params)
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
    unknown = [m for m in methods if m not in PROJECTION_METHODS]
    if unknown:
        raise UsageError(f"unknown projection method(s) {unknown}; choose from {list(PROJECTION_METHODS)}")
    return methods


def _check_params(params: dict) -> dict:
    """Every registered method's parameters (``params`` over the defaults), each checked by its method."""
    values = default_params()
    unknown = sorted(set(params) - set(values))
    if unknown:
        raise UsageError(f"unknown projection parameter(s) {unknown}; the registered methods take {sorted(values)}")
    values.update(params)
    for method in PROJECTION_METHODS.values():
        if method.check is not None:
            method.check(values)
    return values


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


