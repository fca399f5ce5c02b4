"""SHAP summaries in tables and words: global importance, class comparisons, one statement per model."""
from __future__ import annotations

import warnings
from itertools import combinations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

#: name of the model fitted on every subject (class models are named by their label)
POOLED = "pooled"

IMPORTANCE_COLUMNS = [
    "model", "region_index", "region", "importance", "rank", "importance_ridge", "rank_ridge",
]
COMPARISON_COLUMNS = [
    "class_a", "class_b", "n_a", "n_b", "spearman", "top_k", "top_k_overlap", "largest_changes",
    "both_surrogates_supported", "exploratory",
]


def py_scalar(v):
    """numpy scalar -> plain Python (ints stay ints) for tables and JSON.

    Region indices end up as keys and values of ``analysis.json``, which the ``json`` module cannot write
    as numpy scalars.

    Parameters
    ----------
    v : object
        Any value.

    Returns
    -------
    object
        ``v.item()`` for a numpy scalar (``np.int64`` -> ``int``, ``np.float64`` -> ``float``), else ``v``.
    """
    return v.item() if isinstance(v, np.generic) else v


def importance_table(name, phi, phi_ridge, region_index, region_names) -> pd.DataFrame:
    """Global SHAP importance of one model: mean |phi| per region, GBM and ridge baseline side by side.

    Mean absolute SHAP value is the usual global importance; the ridge column is the linear reference
    that says whether the GBM's ranking is more than a linear effect.

    Parameters
    ----------
    name : str
        Model name (``"pooled"`` or a class label).
    phi : ndarray of shape (n_subjects, n_regions)
        SHAP values of the GBM, in units of the reconstruction error.
    phi_ridge : ndarray of shape (n_subjects, n_regions)
        SHAP values of the ridge baseline, same units.
    region_index : sequence of shape (n_regions,)
        Atlas label of each column.
    region_names : sequence of str, shape (n_regions,)
        Name of each region.

    Returns
    -------
    pandas.DataFrame of shape (n_regions, 7)
        ``model``, ``region_index``, ``region``, ``importance`` (mean |phi| >= 0, error units), ``rank``
        (1 = most important; ties by column order), ``importance_ridge`` and ``rank_ridge``.
    """
    imp = np.abs(phi).mean(axis=0)
    imp_r = np.abs(phi_ridge).mean(axis=0)
    return pd.DataFrame({
        "model": name, "region_index": region_index, "region": region_names, "importance": imp,
        "rank": _rank(imp), "importance_ridge": imp_r, "rank_ridge": _rank(imp_r),
    })


def _rank(x) -> np.ndarray:
    """1 = largest; ties broken by column order (stable)."""
    order = np.argsort(-np.asarray(x), kind="stable")
    rank = np.empty(len(order), dtype=int)
    rank[order] = np.arange(1, len(order) + 1)
    return rank


def pooled_by_class(vals, classes, region_index, region_names) -> pd.DataFrame:
    """The pooled model's importance summarised within each class (METHOD's class-stratified summaries).

    One model explains every subject; averaging its |phi| per class shows where the classes' errors are
    driven differently without fitting smaller, noisier class models.

    Parameters
    ----------
    vals : pandas.DataFrame of shape (n_subjects, n_regions), or None
        SHAP values of the pooled GBM, index = row positions in ``classes``.
    classes : ndarray of shape (n_rows,), or None
        Class label per input row (None/NaN for unlabelled subjects, which are left out).
    region_index : sequence of shape (n_regions,)
        Atlas label of each column.
    region_names : sequence of str, shape (n_regions,)
        Name of each region.

    Returns
    -------
    pandas.DataFrame
        One row per (class, region): ``class`` (as ``str``), ``region_index``, ``region``,
        ``importance`` (mean |phi| over the class's subjects, error units) and ``rank`` (1 = most
        important within the class).  Empty (those columns) when ``vals`` or ``classes`` is None.
    """
    cols = ["class", "region_index", "region", "importance", "rank"]
    if vals is None or classes is None:
        return pd.DataFrame(columns=cols)
    labs = classes[vals.index.to_numpy()]
    frames = []
    for lab in sorted(pd.unique(labs[pd.notna(labs)]), key=lambda v: str(v)):
        imp = np.abs(vals.to_numpy()[labs == lab]).mean(axis=0)
        frames.append(pd.DataFrame({"class": str(lab), "region_index": region_index,
                                    "region": region_names, "importance": imp, "rank": _rank(imp)}))
    if not frames:  # no subject has a label: nothing to summarise by class
        return pd.DataFrame(columns=cols)
    return pd.concat(frames, ignore_index=True)[cols]


def compare_classes(importance, fits, class_models, top_k) -> pd.DataFrame:
    """Compare the importance vectors of every pair of fitted class models (exploratory).

    Whether the classes' errors are driven by the same regions.  No test stands behind it: two supported
    surrogates say that each class's error is predictable, not that the classes' importances differ
    (that needs the class labels permuted through both fits and both explanations, about ``B`` times
    the whole SHAP section).  So every row is ``exploratory`` and never a finding, whether or not both
    surrogates are supported (``both_surrogates_supported``, shown for orientation).

    Parameters
    ----------
    importance : pandas.DataFrame
        Long table of :func:`importance_table` rows of every fitted model.
    fits : pandas.DataFrame
        One row per model with ``model``, ``n`` and ``supported``.
    class_models : sequence of str
        Names of the class models, in pair order (models without importances are skipped).
    top_k : int
        Size of the top-k sets compared (capped at the number of regions).

    Returns
    -------
    pandas.DataFrame
        One row per pair ``(a, b)``: ``class_a``, ``class_b``, ``n_a``, ``n_b``, ``spearman`` (rank
        correlation of the importances, in [-1, 1]; NaN for constant importances), ``top_k``,
        ``top_k_overlap`` (in [0, 1]), ``largest_changes`` (the 3 regions with the largest
        |importance difference|, signed as b - a), ``both_surrogates_supported`` and ``exploratory``
        (always True).
    """
    fitted = [m for m in class_models if m in set(importance["model"])]
    f = fits.set_index("model")
    rows = []
    for a, b in combinations(fitted, 2):
        ia = importance[importance["model"] == a].set_index("region_index")
        ib = importance[importance["model"] == b].set_index("region_index").loc[ia.index]
        k = min(int(top_k), len(ia))
        top_a = set(ia.index[ia["rank"].to_numpy() <= k])
        top_b = set(ib.index[ib["rank"].to_numpy() <= k])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant importances -> NaN, said by the value
            rho = spearmanr(ia["importance"].to_numpy(), ib["importance"].to_numpy()).statistic
        diff = ib["importance"].to_numpy() - ia["importance"].to_numpy()
        big = np.argsort(-np.abs(diff), kind="stable")[:3]
        changes = "; ".join(f"{ia['region'].iloc[i]} ({diff[i]:+.3g})" for i in big)
        rows.append(dict(
            class_a=a, class_b=b, n_a=int(f.loc[a, "n"]), n_b=int(f.loc[b, "n"]),
            spearman=float(rho), top_k=k, top_k_overlap=len(top_a & top_b) / k if k else np.nan,
            largest_changes=changes,
            both_surrogates_supported=bool(f.loc[a, "supported"] and f.loc[b, "supported"]), exploratory=True,
        ))
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def statement(fit, importance, regions, sar, min_r2, pooled, one_class_reason) -> str:
    """One sentence on what may and may not be claimed from one surrogate model.

    An explanation of a model that does not fit is not an explanation: an unsupported model's sentence
    says in words that its SHAP values are not a finding, with its fit numbers and the reason.  A
    supported model supports "the error is predictable from regional GM", not its top regions: the
    pooled model's sentence adds the held-out test of the top regions (the verdict on them) and SAR
    beside it, whose silence is stated with its measured power, never as absence.

    Parameters
    ----------
    fit : pandas.Series
        The model's row of the fits table (``name`` = model name), after
        :func:`~latentbids.analysis.shap_validation.family_verdicts`.
    importance : pandas.DataFrame
        Long importance table (:func:`importance_table` rows); the model's top 3 regions are named.
    regions : tuple of (dict or None, str)
        The held-out test of the top regions and why it did not run
        (:func:`~latentbids.analysis.shap_regions.confirm_top_regions`).
    sar : tuple of (dict or None, str)
        SAR of the same regions and why it did not run.
    min_r2 : float
        The CV R^2 floor of a supported model.
    pooled : bool
        Whether ``fit`` is the pooled model (only its sentence mentions the region tests and
        ``one_class_reason``).
    one_class_reason : str
        Why there are no class models, or ``""``.

    Returns
    -------
    str
        The statement, in words.
    """
    who = "the pooled surrogate" if pooled else f"the surrogate of class {fit.name}"
    extra = f" ({one_class_reason})" if pooled and one_class_reason else ""
    if not np.isfinite(fit["cv_r2"]):
        return (f"No SHAP claim is supported for {who}: {fit['reason']}{extra}.")
    null = (f"permutation p = {fmt_p(fit['p_perm'])} after {int(fit['n_permutations_run'])} refits on "
            "shuffled errors" if int(fit["n_permutations_run"]) else "no permutation null run")
    nums = (f"CV R^2 = {fit['cv_r2']:.2f}, MAE {fit['cv_mae']:.3g} vs {fit['mae_mean_predictor']:.3g} "
            f"for the mean predictor; ridge baseline CV R^2 = {fit['cv_r2_ridge']:.2f}; {null}")
    tail = _region_tests_text(regions, sar) if pooled else ""
    if not fit["supported"]:
        if fit["cv_r2"] > min_r2:
            # it fits, but its fit could not be shown to beat the null (or no null could be run)
            return (f"No SHAP claim is supported for {who}: its out-of-sample fit is not established "
                    f"against the permutation null ({fit['reason']}), so its SHAP values are not a "
                    f"finding{extra} ({nums}).{tail}")
        return (f"No SHAP claim is supported for {who}: it does not predict the reconstruction error "
                f"reliably out of sample ({fit['reason']}). Its SHAP values explain a model that does "
                f"not fit and are not a finding{extra} ({nums}).{tail}")
    imp = importance[importance["model"] == fit.name].sort_values("rank")
    top = ", ".join(imp["region"].astype(str).head(3))
    return (f"For {who} the reconstruction error is predicted out of sample ({nums}): the error is "
            f"predictable from regional GM as a whole. The regions with the largest mean |SHAP| are {top}"
            f"{extra}; no region is a finding on its own (the SHAP map is model-level).{tail}")


def _region_tests_text(regions, sar) -> str:
    """The held-out test of the top regions and SAR beside it, in words (for the pooled statement)."""
    held, held_reason = regions
    res, sar_reason = sar
    if held is None:
        return f" The top regions were not tested: {held_reason}." if held_reason else ""
    if held.get("reason"):
        text = f" The held-out test of the top {held['m']} regions was not computed: {held['reason']}."
    else:
        verdict = "predict" if held["supported"] else "were not shown to predict"
        text = (f" The top {held['m']} SHAP regions, chosen on {held['n_select']} subjects, {verdict} the error of "
                f"the other {held['n_test']} (held-out R^2 = {held['r2']:.3f}, permutation p = {fmt_p(held['p'])}).")
    if res is None:
        return text + (f" SAR (the paper's check) {sar_reason}." if sar_reason else "")
    power = res.get("measured_power", np.nan)
    power_text = (f"measured power {100 * power:.0f} % at {res.get('measured_at', '')}" if np.isfinite(power)
                  else "its power at realistic effects is low (benchmarks/shap_regions_power.py)")
    word = "rejects" if res["supported"] else "does not reject, which is not evidence of absence"
    return text + f" SAR on the same half, the paper's check, {word} (p = {fmt_p(res['p_full'])}; {power_text})."


def fmt_p(p) -> str:
    """A p-value for a sentence: three significant digits, or ``"not computed"``.

    Parameters
    ----------
    p : float
        p-value in (0, 1], or NaN.

    Returns
    -------
    str
        E.g. ``"0.0123"``; ``"not computed"`` when ``p`` is not finite.
    """
    return "not computed" if not np.isfinite(p) else f"{p:.3g}"
