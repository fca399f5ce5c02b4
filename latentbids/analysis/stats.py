"""Small statistics shared by the group analysis (METHOD.md section 5).

Standardisation, confound residualisation, correlation matrices with their p-values, multiple-comparison
control (Benjamini-Hochberg, Bonferroni, max-statistic permutation); the effect sizes are in
:mod:`latentbids.analysis.effect_sizes`.  Everything is
vectorised over columns: LRCP correlates every atlas region (J = 116) with every latent unit (K = 32..128),
so an ``N x J`` by ``N x K`` correlation is one matrix product of standardised arrays, and a permutation
null is a batch of such products.

A statistic that cannot be computed (a constant column, fewer than three subjects, a single class) comes
back as NaN rather than raising: one weak contrast must never stop the group run.  Caller mistakes (NaN in
confounds, mismatched shapes, unknown method names) raise :class:`latentbids.errors.UsageError`.
"""
from __future__ import annotations

import numpy as np
from scipy import stats as _sps

from latentbids.errors import UsageError

CORRELATIONS = ("pearson", "spearman")
ADJUSTMENTS = ("fdr_bh", "bonferroni")

#: Tolerance for "max null statistic >= observed": the identity permutation must count as a tie.
_TIE_TOL = 1e-12


def as_2d(X, name: str) -> np.ndarray:
    """``X`` as a float 2-D array (a 1-D ``X`` is one column); a 3-D or empty ``X`` is a usage error.

    Parameters
    ----------
    X : array-like of shape (n_samples,) or (n_samples, n_features)
        Values.
    name : str
        The argument's name in the error message.

    Returns
    -------
    ndarray of shape (n_samples, n_features), float
    """
    arr = np.asarray(X, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise UsageError(f"{name} must be a 1-D or 2-D array (got {arr.ndim} dimensions)")
    return arr


def standardize(X) -> np.ndarray:
    """Column z-scores (mean 0, sample standard deviation ``ddof=1``).

    Constant columns (and every column when there are fewer than two rows) become 0 instead of NaN:
    a unit that never varies carries no information, and a 0 column contributes nothing to correlations
    computed as products of standardised arrays.  NaN in ``X`` propagates to its column.
    A 1-D input returns a 1-D array.  A column counts as constant when its sd is at most ``1e-12``
    times ``max(|mean|, 1)`` (constant up to rounding error).

    Parameters
    ----------
    X : array-like of shape (n_samples,) or (n_samples, n_features)
        Data, e.g. latent codes or regional GM.

    Returns
    -------
    ndarray of the same shape as ``X``, dtype float
        z-scores (unitless); 0 for constant columns; all 0 when ``n_samples < 2``.
    """
    arr = np.asarray(X, dtype=float)
    one_d = arr.ndim == 1
    arr = as_2d(arr, "X")
    n = arr.shape[0]
    if n < 2:
        return np.zeros(arr.shape[0]) if one_d else np.zeros_like(arr)
    mean = arr.mean(axis=0)
    sd = arr.std(axis=0, ddof=1)
    # Relative tolerance: a column that is constant up to rounding error is constant.
    scale = np.maximum(np.abs(mean), 1.0)
    constant = ~(sd > 1e-12 * scale) & np.isfinite(sd)
    safe = np.where(constant, 1.0, sd)
    out = (arr - mean) / safe
    out[:, constant] = 0.0
    return out[:, 0] if one_d else out


def residualize(X, C) -> np.ndarray:
    """``X`` minus its ordinary-least-squares fit (with intercept) on the confounds ``C``.

    Used to remove age, sex, TIV or global mean GM from latent codes and regional GM before LRCP, so
    that an association is not just "both track head size".  ``C`` is ``N x c`` (or length ``N``);
    the intercept is added here, so the residuals also have mean 0.  ``C`` must not contain NaN: drop
    or impute those subjects first.  A 1-D ``X`` returns a 1-D array.

    Parameters
    ----------
    X : array-like of shape (n_samples,) or (n_samples, n_features)
        Data to adjust (latent codes, regional GM, voxels, the reconstruction error).
    C : array-like of shape (n_samples,) or (n_samples, n_confounds)
        Confounds, finite (e.g. from :func:`latentbids.analysis.cohort.confound_matrix`).

    Returns
    -------
    ndarray of the same shape as ``X``, dtype float
        Residuals, in the units of ``X``, with mean 0 per column.  Each confound costs one degree of
        freedom of later correlation tests (``n_confounds`` of :func:`correlate`).
    """
    arr = np.asarray(X, dtype=float)
    one_d = arr.ndim == 1
    arr = as_2d(arr, "X")
    conf = as_2d(C, "C")
    if conf.shape[0] != arr.shape[0]:
        raise UsageError(
            f"confounds have {conf.shape[0]} rows but the data have {arr.shape[0]}: pass one row per subject"
        )
    if not np.all(np.isfinite(conf)):
        raise UsageError("confounds contain NaN or infinite values: drop or impute those subjects first")
    design = np.column_stack([np.ones(arr.shape[0]), conf])
    beta, *_ = np.linalg.lstsq(design, arr, rcond=None)
    out = arr - design @ beta
    return out[:, 0] if one_d else out


def _prepare(A, method: str) -> np.ndarray:
    arr = as_2d(A, "input")
    if method == "spearman":
        arr = _sps.rankdata(arr, axis=0)
    return standardize(arr)


def _check_method(method: str) -> str:
    m = str(method).lower()
    if m not in CORRELATIONS:
        raise UsageError(f"unknown correlation '{method}': use one of {', '.join(CORRELATIONS)}")
    return m


def _constant(X: np.ndarray) -> np.ndarray:
    """Columns that standardise to all zeros (constant)."""
    return ~np.any(X != 0.0, axis=0)


def correlate(A, B, method: str = "pearson", n_confounds: int = 0):
    """Correlation of every column of ``A`` (N x J) with every column of ``B`` (N x K).

    Returns ``(r, p)``, both ``J x K``.  Pearson's ``r`` with the two-sided p-value of Student's t with
    ``N - 2`` degrees of freedom (as ``scipy.stats.pearsonr``); ``method="spearman"`` is Pearson on the
    column ranks (average ranks for ties) with the same t approximation (as ``scipy.stats.spearmanr``).
    Pairs involving a constant column, and everything when ``N < 3``, are NaN.  ``n_confounds``: columns
    already regressed out of ``A`` and ``B`` (partial correlation), each costing one degree of freedom.
    This is LRCP's association step: every region against every latent unit in one matrix product.

    Parameters
    ----------
    A : array-like of shape (n_samples,) or (n_samples, n_a)
        First set of columns (e.g. regional GM).
    B : array-like of shape (n_samples,) or (n_samples, n_b)
        Second set of columns (e.g. latent units), same rows as ``A``.
    method : {"pearson", "spearman"}, default="pearson"
        Correlation type (case-insensitive).
    n_confounds : int, default=0
        Confounds already regressed out; the t test uses ``n_samples - 2 - n_confounds`` degrees of
        freedom (everything NaN when that is below 1).

    Returns
    -------
    r : ndarray of shape (n_a, n_b)
        Correlations in [-1, 1]; NaN for a constant column.
    p : ndarray of shape (n_a, n_b)
        Two-sided p-values in [0, 1] (0 where ``|r| = 1``); NaN where ``r`` is NaN.
    """
    m = _check_method(method)
    a, b = as_2d(A, "A"), as_2d(B, "B")
    if a.shape[0] != b.shape[0]:
        raise UsageError(f"A has {a.shape[0]} rows and B has {b.shape[0]}: pass one row per subject in both")
    n = a.shape[0]
    shape = (a.shape[1], b.shape[1])
    df = n - 2 - int(n_confounds)
    if n < 3 or df < 1:
        return np.full(shape, np.nan), np.full(shape, np.nan)
    za, zb = _prepare(a, m), _prepare(b, m)
    r = np.clip(za.T @ zb / (n - 1), -1.0, 1.0)
    bad = _constant(za)[:, None] | _constant(zb)[None, :]
    r[bad] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        t = r * np.sqrt(df / ((1.0 - r) * (1.0 + r)))
    p = 2.0 * _sps.t.sf(np.abs(t), df)
    p[np.abs(r) == 1.0] = 0.0
    p[bad] = np.nan
    return r, p


def adjust_pvalues(p, method: str = "fdr_bh") -> np.ndarray:
    """Multiple-comparison adjusted p-values, same shape as ``p``.

    ``"fdr_bh"``: Benjamini-Hochberg step-up (controls the false discovery rate; the adjusted value of
    the i-th smallest of ``m`` p-values is ``min_{j >= i} p_(j) m / j``, capped at 1).  ``"bonferroni"``:
    ``min(p m, 1)`` (family-wise error).  NaN entries stay NaN and do not count towards ``m``.
    A test is significant at level ``alpha`` when its adjusted p-value is below ``alpha``.

    Parameters
    ----------
    p : array-like of any shape
        p-values in [0, 1]; NaN for tests that were not computed.
    method : {"fdr_bh", "bonferroni"}, default="fdr_bh"
        Adjustment (case-insensitive).

    Returns
    -------
    ndarray of the same shape as ``p``
        Adjusted p-values in [0, 1], at least the raw ones; NaN where ``p`` is not finite.
    """
    name = str(method).lower()
    if name not in ADJUSTMENTS:
        raise UsageError(f"unknown p-value adjustment '{method}': use one of {', '.join(ADJUSTMENTS)}")
    arr = np.asarray(p, dtype=float)
    out = np.full(arr.shape, np.nan)
    flat = arr.ravel()
    ok = np.isfinite(flat)
    values = flat[ok]
    m = values.size
    if m == 0:
        return out
    if name == "bonferroni":
        adj = np.minimum(values * m, 1.0)
    else:
        order = np.argsort(values, kind="mergesort")
        ranked = values[order] * m / np.arange(1, m + 1)
        ranked = np.minimum.accumulate(ranked[::-1])[::-1]
        adj = np.empty(m)
        adj[order] = np.minimum(ranked, 1.0)
    res = out.ravel()
    res[ok] = adj
    return res.reshape(arr.shape)


def max_stat_permutation(
    A, B, n_permutations: int = 1000, random_state: int = 0, method: str = "pearson", batch_size: int = 64
) -> np.ndarray:
    """Family-wise-error p-values of all ``J x K`` correlations from a max-statistic permutation null.

    The subject order of ``B`` (the latent codes) is shuffled ``n_permutations`` times, which breaks
    every region-unit link while keeping the correlation structure within ``A`` and within ``B``; each
    permutation contributes the maximum ``|r|`` over all ``J x K`` pairs.  The adjusted p-value of pair
    ``(j, k)`` is ``(#{max_null >= |r_jk|} + 1) / (n_permutations + 1)`` (the observed statistic counts
    as one permutation, so p is never 0).  Permutations are done in batches of matrix products, so 1000
    permutations of a 116 x 32 problem with N = 1000 take a few seconds.  Deterministic given
    ``random_state``.  Pairs with a constant column are NaN.  Unlike :func:`correlate` it takes no
    ``n_confounds``: residualised data are permuted as they are.

    Parameters
    ----------
    A : array-like of shape (n_samples,) or (n_samples, n_a)
        First set of columns (regional GM), kept in place.
    B : array-like of shape (n_samples,) or (n_samples, n_b)
        Second set of columns (latent units), whose rows are permuted.
    n_permutations : int, default=1000
        Number of permutations ``B``, at least 1.
    random_state : int, default=0
        Seed of the permutations.
    method : {"pearson", "spearman"}, default="pearson"
        Correlation type (case-insensitive).
    batch_size : int, default=64
        Permutations per matrix product (memory vs speed).

    Returns
    -------
    ndarray of shape (n_a, n_b)
        Family-wise p-values in [1 / (B + 1), 1]; all NaN when ``n_samples < 3``.
    """
    m = _check_method(method)
    if int(n_permutations) < 1:
        raise UsageError(f"n_permutations must be at least 1 (got {n_permutations})")
    a, b = as_2d(A, "A"), as_2d(B, "B")
    if a.shape[0] != b.shape[0]:
        raise UsageError(f"A has {a.shape[0]} rows and B has {b.shape[0]}: pass one row per subject in both")
    n = a.shape[0]
    J, K = a.shape[1], b.shape[1]
    if n < 3:
        return np.full((J, K), np.nan)
    za, zb = _prepare(a, m), _prepare(b, m)
    observed = np.abs(za.T @ zb) / (n - 1)
    rng = np.random.default_rng(random_state)
    n_perm = int(n_permutations)
    null_max = np.empty(n_perm)
    zaT = np.ascontiguousarray(za.T)
    done = 0
    while done < n_perm:
        size = min(batch_size, n_perm - done)
        idx = np.stack([rng.permutation(n) for _ in range(size)])  # size x n
        stacked = zb[idx]  # size x n x K
        stacked = np.transpose(stacked, (1, 0, 2)).reshape(n, size * K)
        prod = np.abs(zaT @ stacked).reshape(J, size, K)
        null_max[done : done + size] = prod.max(axis=(0, 2)) / (n - 1)
        done += size
    null_sorted = np.sort(null_max)
    # count of null maxima >= observed (with a tolerance so exact ties count)
    below = np.searchsorted(null_sorted, observed.ravel() - _TIE_TOL, side="left")
    count = n_perm - below
    p = ((count + 1) / (n_perm + 1)).reshape(J, K)
    bad = _constant(za)[:, None] | _constant(zb)[None, :]
    p[bad] = np.nan
    return p
