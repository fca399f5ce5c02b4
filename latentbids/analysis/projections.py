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

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import pearsonr

from latentbids.errors import UsageError

METHODS = ("pca", "tsne", "umap", "pls")

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
        "pca": lambda: _pca(Zs, fit, valid, constant, pca_components),
        "pls": lambda: _pls(Zs, fit, valid, constant, y, pls_components),
        "tsne": lambda: _tsne(Zs, valid, tsne_perplexity, random_state),
        "umap": lambda: _umap(Zs, valid, umap_n_neighbors, umap_min_dist, random_state),
    }
    prefixes = {"pca": "pca", "pls": "pls", "tsne": "tsne", "umap": "umap"}
    for name in METHODS:
        if name in methods:
            scores, info = runners[name]()
        else:
            scores, info = None, _skipped("not requested in methods")
        meta[name] = info
        if scores is not None:
            cols = [f"{prefixes[name]}{i + 1}" for i in range(scores.shape[1])]
            values = np.full((n, scores.shape[1]), np.nan)
            values[valid] = scores
            coords[cols] = values
    return coords, meta


def pc1_correlations(pc1, covariates: pd.DataFrame, eta: float = 0.05, min_abs_r: float = 0.5) -> pd.DataFrame:
    """Pearson correlation of PC1 with each covariate (global mean GM, TIV, age, ...).

    METHOD.md section 4 asks for it because an autoencoder's main latent axis often tracks head size or
    global atrophy: a PC1 that is "only brain size" is a finding, not a biomarker.  The claim "PC1
    tracks X" is ``supported`` when the Bonferroni-adjusted p (over the covariates that could be
    correlated) is at most ``eta`` *and* ``|r| >= min_abs_r`` (a weak correlation is not "tracking").
    Pass one row per subject: a second session of the same subject is not a new observation.

    Parameters
    ----------
    pc1 : array-like, shape (N,)
        PC1 scores (e.g. ``coords["pca1"]``), matched to the covariates by position.
    covariates : DataFrame, N rows
        One column per covariate.  Boolean columns count as 0/1; other non-numeric columns are not
        correlated (code them as numbers first).

    Returns
    -------
    DataFrame
        One row per covariate: ``covariate``, ``n`` (complete pairs: rows where PC1 or the covariate is
        NaN are dropped per covariate), ``r``, ``p`` (two-sided, ``scipy.stats.pearsonr``),
        ``p_bonferroni``, ``supported`` and ``reason`` (None, or why ``r`` and ``p`` are NaN: fewer
        than 3 pairs, a constant variable, a non-numeric column).
    """
    if isinstance(covariates, pd.Series):
        covariates = covariates.to_frame()
    if not isinstance(covariates, pd.DataFrame):
        raise UsageError("pc1_correlations needs the covariates as a pandas DataFrame (one column each)")
    x = np.asarray(pc1, dtype=float).ravel()
    if len(x) != len(covariates):
        raise UsageError(
            f"pc1 has {len(x)} values but the covariate table has {len(covariates)} rows; "
            "pass them in the same order"
        )
    rows = []
    for name in covariates.columns:
        col = covariates[name]
        r = p = np.nan
        reason = None
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            c = col.to_numpy(dtype=float, na_value=np.nan)
            ok = np.isfinite(x) & np.isfinite(c)
            m = int(ok.sum())
            if m < 3:
                reason = f"fewer than 3 complete pairs (n={m})"
            elif np.ptp(x[ok]) == 0 or np.ptp(c[ok]) == 0:
                reason = "PC1 is constant" if np.ptp(x[ok]) == 0 else f"{name} is constant"
            else:
                res = pearsonr(x[ok], c[ok])
                r, p = float(res.statistic), float(res.pvalue)
        else:
            m = 0
            reason = f"{name} is not numeric (code it as numbers to correlate it)"
        rows.append({"covariate": str(name), "n": m, "r": r, "p": p, "reason": reason})
    table = pd.DataFrame(rows, columns=["covariate", "n", "r", "p", "reason"])
    tested = int(table["p"].notna().sum())
    table["p_bonferroni"] = np.minimum(1.0, table["p"] * max(tested, 1))
    table["supported"] = (table["p_bonferroni"].fillna(1.0) <= float(eta) + 1e-12) & (
        table["r"].abs().fillna(0.0) >= float(min_abs_r))
    return table[["covariate", "n", "r", "p", "p_bonferroni", "supported", "reason"]]


def pc1_claims(table: pd.DataFrame, min_abs_r: float = 0.5) -> list:
    """One claim "PC1 tracks <covariate>" per row of :func:`pc1_correlations`."""
    from latentbids.analysis.claims import Claim

    tested = int(table["p"].notna().sum())
    return [Claim(contrast="", family="pc1", item=str(row.covariate), statistic_name="Pearson r",
                  statistic=float(row.r), p=float(row.p_bonferroni), bound=math.nan,
                  correction=f"Bonferroni over {tested} global measure(s), and |r| >= {min_abs_r:g}",
                  supported=bool(row.supported), note=str(row.reason or ""))
            for row in table.itertuples()]


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


def _skipped(reason: str, **params) -> dict:
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


def _pca(Zs, fit, valid, constant, n_components):
    from sklearn.decomposition import PCA

    params = {"n_components_requested": int(n_components), "sign_convention": PCA_SIGN_CONVENTION}
    fit_v = fit[valid]
    n_fit, k_eff = int(fit_v.sum()), int((~constant).sum())
    if n_fit < MIN_FIT_ROWS:
        return None, _skipped(f"too few fit rows for PCA (n={n_fit} < {MIN_FIT_ROWS})", **params)
    if k_eff == 0:
        return None, _skipped("every latent unit is constant on the fit rows", **params)
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


def _pls(Zs, fit, valid, constant, y, n_components):
    from sklearn.cross_decomposition import PLSRegression

    params = {
        "n_components_requested": int(n_components),
        "sign_convention": PLS_SIGN_CONVENTION,
        "labels_used": "fit rows with label 0 or 1 only; held-out labels are never read",
    }
    if y is None:
        return None, _skipped("no labels given (y is None)", **params)
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
        return None, _skipped(reason, **params)
    if n_use < MIN_FIT_ROWS:
        return None, _skipped(f"too few labelled fit rows for PLS (n={n_use} < {MIN_FIT_ROWS})", **params)
    if k_eff == 0:
        return None, _skipped("every latent unit is constant on the fit rows", **params)
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
        return _skipped(f"too few rows for {name} (n={n} < {MIN_EMBED_ROWS})", **params)
    if not np.any(np.ptp(Zs, axis=0) > 0):
        return _skipped("the standardised latents have no variance (constant latent units)", **params)
    return None


def _tsne(Zs, valid, perplexity, random_state):
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


def _umap(Zs, valid, n_neighbors, min_dist, random_state):
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
