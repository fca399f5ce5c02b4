"""The four projections of :func:`latentbids.analysis.projections.project_latents`, one function each.

Each takes the standardised latents and returns ``(scores on the valid rows, or None; meta dict)``; the
meta dict says what was computed, clipped or skipped and why (never an exception for degenerate input).
"""
from __future__ import annotations

import warnings

import numpy as np

from latentbids.errors import UsageError

#: Fewest rows a PCA / PLS fit is attempted on.
MIN_FIT_ROWS = 3
#: Fewest rows t-SNE / UMAP are run on (UMAP's spectral initialisation fails below 4 points).
MIN_EMBED_ROWS = 4

PCA_SIGN_CONVENTION = (
    "each principal axis is oriented so that the latent unit with the largest absolute loading "
    "(the first one on a tie) has a positive loading"
)
PLS_SIGN_CONVENTION = (
    "each PLS axis is oriented so that class 1 has the higher mean score on the rows PLS was fitted on "
    "(on an exact tie: the latent unit with the largest absolute weight has a positive weight)"
)
EMBEDDING_CAVEAT = (
    "unsupervised picture fitted on all rows; distances, cluster sizes and gaps are not evidence: "
    "no statistics are computed on them"
)


def skipped(reason: str, **params) -> dict:
    """The meta dict of a projection that was not computed, with the reason.

    Degenerate input never raises in :func:`~latentbids.analysis.projections.project_latents`: a method
    that cannot run is recorded with this dict, so ``meta`` always has the same keys.

    Parameters
    ----------
    reason : str
        Why the method was skipped, in words.
    **params
        The method's parameters (requested values, sign convention, ...), copied into the dict.

    Returns
    -------
    dict
        ``computed`` (False), ``skipped`` (``reason``), ``clipped`` (None), ``fitted_on`` (0), the
        ``params`` and ``warnings`` (empty list).
    """
    return {"computed": False, "skipped": reason, "clipped": None, "fitted_on": 0, **params, "warnings": []}


def _messages(caught) -> list[str]:
    return sorted({f"{w.category.__name__}: {w.message}" for w in caught})


def _largest_positive(vectors: np.ndarray) -> np.ndarray:
    """+1/-1 per row of ``vectors`` so that each row's largest-|value| entry becomes positive."""
    idx = np.argmax(np.abs(vectors), axis=1)
    signs = np.sign(vectors[np.arange(len(vectors)), idx])
    signs[signs == 0] = 1.0
    return signs


# --------------------------------------------------------------------------------------------------
# the four methods; each returns (scores on the valid rows or None, meta dict)


def pca_scores(Zs, fit, valid, constant, n_components):
    """PCA fitted on the fit rows, every valid row transformed, each axis with a fixed sign.

    The unsupervised linear view of the latent space; the explained variance ratio says how much of the
    latent variance the plotted axes hold.  Each axis is flipped so that the unit with the largest
    absolute loading loads positively (:data:`PCA_SIGN_CONVENTION`).

    Parameters
    ----------
    Zs : ndarray of shape (n_valid, n_units)
        Standardised latents of the valid rows (units constant on the fit rows are 0).
    fit : ndarray of bool, shape (n_subjects,)
        Rows the PCA is fitted on (a subset of ``valid``).
    valid : ndarray of bool, shape (n_subjects,)
        Rows with finite latents (the rows of ``Zs``).
    constant : ndarray of bool, shape (n_units,)
        Units constant on the fit rows.
    n_components : int
        Requested components; clipped to ``min(non-constant units, fit rows - 1)``.

    Returns
    -------
    scores : ndarray of shape (n_valid, n_components_used), or None
        PCA scores (in standard-deviation units of the latents); None when skipped.
    info : dict
        Meta of the method: ``computed``, ``skipped``, ``clipped``, ``fitted_on``, ``transformed``,
        ``n_components_requested``, ``n_components``, ``explained_variance_ratio`` (each in [0, 1]),
        ``components`` (signed loadings, ``n_components x n_units``), ``sign_units``,
        ``sign_convention`` and ``warnings``.
    """
    from sklearn.decomposition import PCA

    params = {"n_components_requested": int(n_components), "sign_convention": PCA_SIGN_CONVENTION}
    fit_v = fit[valid]
    n_fit, k_eff = int(fit_v.sum()), int((~constant).sum())
    if n_fit < MIN_FIT_ROWS:
        return None, skipped(f"too few fit rows for PCA (n={n_fit} < {MIN_FIT_ROWS})", **params)
    if k_eff == 0:
        return None, skipped("every latent unit is constant on the fit rows", **params)
    used = min(int(n_components), k_eff, n_fit - 1)
    clipped = None
    if used < n_components:
        clipped = (
            f"n_components clipped from {n_components} to {used} "
            f"(non-constant latent units: {k_eff}, fit rows - 1: {n_fit - 1})"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pca = PCA(n_components=used, svd_solver="full").fit(Zs[fit_v])
        scores = pca.transform(Zs)
    signs = _largest_positive(pca.components_)
    scores = scores * signs
    sign_units = np.argmax(np.abs(pca.components_), axis=1)
    info = {
        "computed": True,
        "skipped": None,
        "clipped": clipped,
        "fitted_on": n_fit,
        "transformed": int(len(Zs)),
        **params,
        "n_components": used,
        "explained_variance_ratio": [float(v) for v in pca.explained_variance_ratio_],
        "components": (pca.components_ * signs[:, None]).tolist(),
        "sign_units": [int(j) for j in sign_units],
        "warnings": _messages(caught),
    }
    return scores, info


def pls_scores(Zs, fit, valid, constant, y, n_components):
    """PLS on the clinical label, fitted on the labelled fit rows only, every valid row projected.

    The supervised linear view: only the labels of fit rows are read, so held-out subjects are placed by
    a model that never saw their labels (the fit rows separate by construction, even on noise).  Each axis
    is flipped so that class 1 has the higher mean score on the rows PLS was fitted on
    (:data:`PLS_SIGN_CONVENTION`).  ``PLSRegression(scale=False)`` on the standardised latents.

    Parameters
    ----------
    Zs : ndarray of shape (n_valid, n_units)
        Standardised latents of the valid rows (units constant on the fit rows are 0).
    fit : ndarray of bool, shape (n_subjects,)
        Rows the PLS may be fitted on (a subset of ``valid``).
    valid : ndarray of bool, shape (n_subjects,)
        Rows with finite latents (the rows of ``Zs``).
    constant : ndarray of bool, shape (n_units,)
        Units constant on the fit rows.
    y : array-like of shape (n_subjects,), or None
        0/1 labels; -1 or NaN (or None) marks subjects outside the contrast.  Other values on the fit
        rows, or a length other than ``n_subjects``, raise :class:`~latentbids.errors.UsageError`.
    n_components : int
        Requested components; clipped to ``min(non-constant units, labelled fit rows - 1)``.

    Returns
    -------
    scores : ndarray of shape (n_valid, n_components_used), or None
        PLS x-scores; None when skipped (no labels, one class, too few labelled fit rows, constant latents).
    info : dict
        Meta of the method: ``computed``, ``skipped``, ``clipped``, ``fitted_on``, ``transformed``,
        ``n_components_requested``, ``n_components``, ``n_per_class``, ``labels_used``, ``x_rotations``
        (signed, ``n_units x n_components``), ``sign_convention`` and ``warnings``.
    """
    from sklearn.cross_decomposition import PLSRegression

    params = {
        "n_components_requested": int(n_components),
        "sign_convention": PLS_SIGN_CONVENTION,
        "labels_used": "fit rows with label 0 or 1 only; held-out labels are never read",
    }
    if y is None:
        return None, skipped("no labels given (y is None)", **params)
    y_all = np.asarray(y, dtype=object).ravel()
    if len(y_all) != len(fit):
        raise UsageError(
            f"y has {len(y_all)} entries but Z has {len(fit)} rows; pass one label per subject"
        )
    # Only the fit rows' labels are read: the held-out ones may hold anything.
    try:
        y_fit = np.array([np.nan if v is None else v for v in y_all[fit]], dtype=float)
    except (TypeError, ValueError):
        raise UsageError(
            "y must hold 0/1 labels (-1 or NaN outside the contrast); map class names first"
        ) from None
    bad = np.isfinite(y_fit) & ~np.isin(y_fit, (0.0, 1.0, -1.0))
    if bad.any():
        raise UsageError(
            f"y holds values other than 0/1 (-1 or NaN outside the contrast) on the fit rows: "
            f"{sorted(set(y_fit[bad].tolist()))[:5]}; map the contrast's classes to 0/1 first"
        )
    rows = np.flatnonzero(fit)
    labelled = np.isin(y_fit, (0.0, 1.0))
    use = np.zeros(len(fit), dtype=bool)
    use[rows[labelled]] = True
    y_use = y_fit[labelled]
    counts = {"0": int((y_use == 0).sum()), "1": int((y_use == 1).sum())}
    params["n_per_class"] = counts
    use_v = use[valid]
    n_use, k_eff = int(use_v.sum()), int((~constant).sum())
    if min(counts.values()) == 0:
        reason = f"fewer than 2 classes among the labelled fit rows (per class: {counts})"
        return None, skipped(reason, **params)
    if n_use < MIN_FIT_ROWS:
        return None, skipped(f"too few labelled fit rows for PLS (n={n_use} < {MIN_FIT_ROWS})", **params)
    if k_eff == 0:
        return None, skipped("every latent unit is constant on the fit rows", **params)
    used = min(int(n_components), k_eff, n_use - 1)
    clipped = None
    if used < n_components:
        clipped = (
            f"n_components clipped from {n_components} to {used} "
            f"(non-constant latent units: {k_eff}, labelled fit rows - 1: {n_use - 1})"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pls = PLSRegression(n_components=used, scale=False).fit(Zs[use_v], y_use)
        scores = pls.transform(Zs)
    fit_scores = scores[use_v]
    diff = fit_scores[y_use == 1].mean(axis=0) - fit_scores[y_use == 0].mean(axis=0)
    signs = np.sign(diff)
    tie = ~(np.abs(diff) > 1e-12 * (1.0 + np.abs(fit_scores).max(axis=0)))
    signs[tie] = _largest_positive(pls.x_rotations_.T)[tie]
    scores = scores * signs
    info = {
        "computed": True,
        "skipped": None,
        "clipped": clipped,
        "fitted_on": n_use,
        "transformed": int(len(Zs)),
        **params,
        "n_components": used,
        "x_rotations": (pls.x_rotations_ * signs).tolist(),
        "warnings": _messages(caught),
    }
    return scores, info


def _embedding_precheck(Zs, name, params):
    n = len(Zs)
    if n < MIN_EMBED_ROWS:
        return skipped(f"too few rows for {name} (n={n} < {MIN_EMBED_ROWS})", **params)
    if not np.any(np.ptp(Zs, axis=0) > 0):
        return skipped("the standardised latents have no variance (constant latent units)", **params)
    return None


def tsne_embedding(Zs, perplexity, random_state):
    """2-D t-SNE of every valid row: a picture, not evidence (:data:`EMBEDDING_CAVEAT`).

    Distances, cluster sizes and gaps depend on the perplexity and the seed and exaggerate separation,
    so nothing downstream computes a statistic on them.  PCA initialisation, or a seeded random one when
    only one latent unit varies.

    Parameters
    ----------
    Zs : ndarray of shape (n_valid, n_units)
        Standardised latents of the valid rows.
    perplexity : float
        Requested perplexity (> 0); clipped to ``(n_valid - 1) / 3``.
    random_state : int
        Seed of t-SNE.

    Returns
    -------
    embedding : ndarray of shape (n_valid, 2), or None
        t-SNE coordinates (arbitrary units); None when skipped (fewer than 4 rows, constant latents).
    info : dict
        Meta of the method: ``computed``, ``skipped``, ``clipped``, ``fitted_on``,
        ``perplexity_requested``, ``perplexity``, ``init``, ``random_state``, ``caveat`` and ``warnings``.
    """
    from sklearn.manifold import TSNE

    params = {
        "perplexity_requested": float(perplexity),
        "random_state": int(random_state),
        "caveat": EMBEDDING_CAVEAT,
    }
    skipped = _embedding_precheck(Zs, "t-SNE", params)
    if skipped is not None:
        return None, skipped
    n = len(Zs)
    used = min(float(perplexity), (n - 1) / 3.0)
    clipped = None
    if used < perplexity:
        clipped = f"perplexity clipped from {perplexity:g} to (n-1)/3 = {used:g} (n={n})"
    # PCA initialisation needs two informative directions; with one, fall back to a seeded random start.
    init = "pca" if int(np.sum(np.ptp(Zs, axis=0) > 0)) >= 2 else "random"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emb = TSNE(n_components=2, perplexity=used, init=init, random_state=random_state).fit_transform(Zs)
    info = {
        "computed": True,
        "skipped": None,
        "clipped": clipped,
        "fitted_on": n,
        **params,
        "perplexity": used,
        "init": init,
        "warnings": _messages(caught),
    }
    return emb, info


def umap_embedding(Zs, n_neighbors, min_dist, random_state):
    """2-D UMAP of every valid row: a picture, not evidence (:data:`EMBEDDING_CAVEAT`).

    Like t-SNE, its distances, cluster sizes and gaps depend on ``n_neighbors`` and the seed and are not
    tested.  The seed makes UMAP single-threaded and reproducible (its warning about ``n_jobs`` is dropped).

    Parameters
    ----------
    Zs : ndarray of shape (n_valid, n_units)
        Standardised latents of the valid rows.
    n_neighbors : int
        Requested neighbourhood size (>= 2); clipped to ``n_valid - 1``.
    min_dist : float
        UMAP minimum distance, in [0, 1].
    random_state : int
        Seed of UMAP.

    Returns
    -------
    embedding : ndarray of shape (n_valid, 2), or None
        UMAP coordinates (arbitrary units); None when skipped (fewer than 4 rows, constant latents).
    info : dict
        Meta of the method: ``computed``, ``skipped``, ``clipped``, ``fitted_on``,
        ``n_neighbors_requested``, ``n_neighbors``, ``min_dist``, ``random_state``, ``caveat`` and
        ``warnings``.
    """
    params = {
        "n_neighbors_requested": int(n_neighbors),
        "min_dist": float(min_dist),
        "random_state": int(random_state),
        "caveat": EMBEDDING_CAVEAT,
    }
    skipped = _embedding_precheck(Zs, "UMAP", params)
    if skipped is not None:
        return None, skipped
    import umap  # lazy: importing umap compiles numba code

    n = len(Zs)
    used = min(int(n_neighbors), n - 1)
    clipped = f"n_neighbors clipped from {n_neighbors} to n-1 = {used}" if used < n_neighbors else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emb = umap.UMAP(
            n_components=2, n_neighbors=used, min_dist=float(min_dist), random_state=int(random_state)
        ).fit_transform(Zs)
    msgs = [m for m in _messages(caught) if "n_jobs value" not in m]  # expected: a seed makes UMAP serial
    info = {
        "computed": True,
        "skipped": None,
        "clipped": clipped,
        "fitted_on": n,
        **params,
        "n_neighbors": used,
        "warnings": msgs,
    }
    return np.asarray(emb, dtype=float), info
