"""Tests of latentbids.analysis.projections with planted ground truth (METHOD.md section 4)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score

from latentbids.analysis.pc1 import pc1_correlations
from latentbids.analysis.projections import project_latents
from latentbids.errors import UsageError

N, K = 60, 16
COLUMNS = ["pca1", "pca2", "pca3", "tsne1", "tsne2", "umap1", "umap2", "pls1", "pls2"]


def planted_plane(seed=0, n=N, k=K, noise=0.1, flip=False):
    """Latents driven by two hidden axes on disjoint unit sets (10 units: s1, 6 units: s2) + noise.

    ``flip`` negates the generating axis s1 and nothing else (same loadings, noise and offsets).
    """
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, 2))
    s = np.linalg.qr(s - s.mean(axis=0))[0] * np.sqrt(n - 1)  # uncorrelated, unit variance in-sample
    if flip:
        s[:, 0] *= -1
    weights = rng.choice([-1.0, 1.0], size=k) * rng.uniform(0.3, 1.5, k)
    weights[0] = -3.0  # unit 0: the clearly dominant (negative) unit of the s1 axis
    z = np.empty((n, k))
    z[:, :10] = s[:, [0]] * weights[:10]
    z[:, 10:] = s[:, [1]] * weights[10:]
    z += noise * rng.normal(size=(n, k)) + rng.normal(size=k) * 5  # arbitrary offsets per unit
    return z, s


def planted_labels(seed=1, n=N, k=K, shift=3.0, unit=3):
    """Noise latents, balanced 0/1 labels, class 1 shifted by `shift` on one latent unit."""
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n // 2)
    rng.shuffle(y)
    z = rng.normal(size=(n, k))
    z[:, unit] += shift * y
    return z, y


def fit_mask(n=N, n_fit=40, seed=2):
    rng = np.random.default_rng(seed)
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(n, n_fit, replace=False)] = True
    return mask


def reference_pca(z, fit, n_components):
    """sklearn's own PCA on data standardised with the fit rows' mean/sd, with the documented signs."""
    zs = (z - z[fit].mean(axis=0)) / z[fit].std(axis=0, ddof=1)
    pca = PCA(n_components=n_components, svd_solver="full").fit(zs[fit])
    comp = pca.components_
    signs = np.sign(comp[np.arange(len(comp)), np.argmax(np.abs(comp), axis=1)])
    return pca.transform(zs) * signs, comp * signs[:, None], pca.explained_variance_ratio_


# --------------------------------------------------------------------------------------------------
# PCA


def test_pca_recovers_planted_plane_and_refuses_noise():
    z, s = planted_plane()
    coords, meta = project_latents(z, None, methods=("pca",))
    evr = meta["pca"]["explained_variance_ratio"]
    assert sum(evr[:2]) > 0.9
    assert abs(pearsonr(coords["pca1"], s[:, 0]).statistic) > 0.95  # 10 units carry s1: the larger axis
    assert abs(pearsonr(coords["pca2"], s[:, 1]).statistic) > 0.95
    # pure noise: no two axes hold most of the variance
    _, meta0 = project_latents(np.random.default_rng(5).normal(size=(N, K)), None, methods=("pca",))
    assert sum(meta0["pca"]["explained_variance_ratio"][:2]) < 0.5


def test_pca_fit_on_fit_rows_matches_sklearn_and_ignores_heldout_rows():
    z, _ = planted_plane(noise=0.5)
    fit = fit_mask()
    coords, meta = project_latents(z, fit, methods=("pca",))
    ref, comp, evr = reference_pca(z, fit, 3)
    np.testing.assert_allclose(coords[["pca1", "pca2", "pca3"]].to_numpy(), ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(meta["pca"]["components"], comp, rtol=0, atol=1e-10)
    np.testing.assert_allclose(meta["pca"]["explained_variance_ratio"], evr, rtol=0, atol=1e-12)
    assert meta["pca"]["fitted_on"] == 40 and meta["pca"]["transformed"] == N
    # integer positions select the same rows as the mask
    coords_idx, _ = project_latents(z, np.flatnonzero(fit), methods=("pca",))
    pd.testing.assert_frame_equal(coords_idx, coords)
    # wildly different held-out rows: the fit (components, fit-row scores) does not move
    z_wild = z.copy()
    z_wild[~fit] = 1e3 * np.random.default_rng(9).standard_cauchy(size=((~fit).sum(), K)) - 77
    coords_w, meta_w = project_latents(z_wild, fit, methods=("pca",))
    np.testing.assert_allclose(meta_w["pca"]["components"], meta["pca"]["components"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(meta_w["pca"]["explained_variance_ratio"], evr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(coords_w[fit].to_numpy(), coords[fit].to_numpy(), rtol=0, atol=1e-12)
    assert not np.allclose(coords_w[~fit]["pca1"], coords[~fit]["pca1"])  # held-out rows are transformed


def test_pca_sign_convention_fixed_in_latent_space():
    """Largest-|loading| unit loads positively: negating the data negates the scores, not the loadings."""
    z, s = planted_plane(noise=1.0)
    fit = fit_mask()
    coords, meta = project_latents(z, fit, methods=("pca",))
    comp = np.asarray(meta["pca"]["components"])
    assert np.all(comp[np.arange(3), np.argmax(np.abs(comp), axis=1)] > 0)
    assert meta["pca"]["sign_units"][0] == 0 and comp[0, 0] > 0  # unit 0 dominates s1 and fixes the sign
    raw = PCA(3, svd_solver="full").fit(((z - z[fit].mean(0)) / z[fit].std(0, ddof=1))[fit]).components_
    assert np.all(np.abs(np.sum(raw * comp, axis=1)) > 1 - 1e-10)  # the same axes as sklearn, up to sign
    coords_neg, meta_neg = project_latents(-z, fit, methods=("pca",))
    np.testing.assert_allclose(meta_neg["pca"]["components"], comp, rtol=0, atol=1e-10)
    np.testing.assert_allclose(coords_neg.to_numpy(), -coords.to_numpy(), rtol=0, atol=1e-10)
    # flipping only the generating axis s1 (same noise): the axis stays put in latent space, so pc1
    # keeps its loadings, its scores flip with the data, and its relation to its own hidden factor is
    # fixed by the latent weights (unit 0 = -3 * s1 loads positively, so pc1 runs against s1) both times
    z_flip, s_flip = planted_plane(noise=1.0, flip=True)
    coords_f, meta_f = project_latents(z_flip, fit, methods=("pca",))
    c1_f = np.asarray(meta_f["pca"]["components"][0])
    assert meta_f["pca"]["sign_units"][0] == 0 and c1_f @ comp[0] > 0.9  # same axis, same sign (not -0.9)
    r = pearsonr(coords["pca1"], s[:, 0]).statistic
    r_f = pearsonr(coords_f["pca1"], s_flip[:, 0]).statistic
    assert r < -0.95 and r_f < -0.95
    # row order does not change the axes
    perm = np.random.default_rng(3).permutation(N)
    _, meta_p = project_latents(z[perm], fit[perm], methods=("pca",))
    np.testing.assert_allclose(meta_p["pca"]["components"], comp, rtol=0, atol=1e-10)


# --------------------------------------------------------------------------------------------------
# PLS


def test_pls_separates_heldout_classes_without_their_labels():
    z, y = planted_labels()
    fit = fit_mask()
    coords, meta = project_latents(z, fit, y, methods=("pls",))
    assert meta["pls"]["fitted_on"] == 40
    assert meta["pls"]["n_per_class"] == {"0": int((y[fit] == 0).sum()), "1": int((y[fit] == 1).sum())}
    # sign convention makes class 1 score higher: AUC > 0.9 one-sided, on rows PLS never saw
    assert roc_auc_score(y[~fit], coords.loc[~fit, "pls1"]) > 0.9
    # held-out labels are never read: garbage there changes nothing
    y_garbage = y.astype(object)
    y_garbage[~fit] = ["garbage", 7, -5.5, np.nan, None] * 4
    coords_g, meta_g = project_latents(z, fit, y_garbage, methods=("pls",))
    pd.testing.assert_frame_equal(coords_g, coords)
    assert meta_g["pls"] == meta["pls"]
    y_flip = y.copy()
    y_flip[~fit] = 1 - y_flip[~fit]
    pd.testing.assert_frame_equal(project_latents(z, fit, y_flip, methods=("pls",))[0], coords)


def test_pls_refuses_noise_on_heldout_rows():
    z, y = planted_labels(seed=4, n=200, shift=0.0)
    fit = fit_mask(n=200, n_fit=100, seed=5)
    coords, _ = project_latents(z, fit, y, methods=("pls",))
    auc_fit = roc_auc_score(y[fit], coords.loc[fit, "pls1"])
    auc_held = roc_auc_score(y[~fit], coords.loc[~fit, "pls1"])
    assert abs(auc_held - 0.5) < 0.15
    assert auc_fit > auc_held  # in-sample PLS separates noise: the reason it must not be read as evidence


def test_pls_sign_follows_labels_and_unlabelled_fit_rows_are_dropped():
    z, y = planted_labels(shift=-3.0)  # class 1 LOWER on the latent unit
    fit = fit_mask()
    coords, meta = project_latents(z, fit, y, methods=("pls",))
    assert roc_auc_score(y[~fit], coords.loc[~fit, "pls1"]) > 0.9
    coords_neg, _ = project_latents(-z, fit, y, methods=("pls",))  # oriented by labels, not by data sign
    np.testing.assert_allclose(coords_neg.to_numpy(), coords.to_numpy(), rtol=0, atol=1e-10)
    y_out = y.astype(float)
    outside = np.flatnonzero(fit)[:6]
    y_out[outside[:3]] = -1
    y_out[outside[3:]] = np.nan
    _, meta_out = project_latents(z, fit, y_out, methods=("pls",))
    assert meta_out["pls"]["fitted_on"] == 34
    with pytest.raises(UsageError):
        project_latents(z, fit, np.where(fit, y + 1, y), methods=("pls",))  # labels 1/2 on fit rows


# --------------------------------------------------------------------------------------------------
# t-SNE / UMAP


@pytest.mark.slow
def test_embeddings_are_deterministic_given_the_seed():
    z, _ = planted_plane(noise=0.5)
    methods = ("tsne", "umap")
    a, meta = project_latents(z, None, methods=methods, random_state=7)
    b, _ = project_latents(z, None, methods=methods, random_state=7)
    c, _ = project_latents(z, None, methods=methods, random_state=8)
    cols = ["tsne1", "tsne2", "umap1", "umap2"]
    assert np.isfinite(a[cols].to_numpy()).all()
    np.testing.assert_array_equal(a[cols].to_numpy(), b[cols].to_numpy())
    assert not np.allclose(a["umap1"], c["umap1"])  # the seed matters (t-SNE's PCA init leaves it little)
    for name in methods:
        assert meta[name]["random_state"] == 7 and meta[name]["fitted_on"] == N
        assert "not evidence" in meta[name]["caveat"]


@pytest.mark.slow
def test_small_n_clips_perplexity_and_neighbours():
    z, y = planted_labels(n=10)
    coords, meta = project_latents(z, None, y, random_state=0)
    assert meta["tsne"]["perplexity"] == pytest.approx(3.0) and meta["tsne"]["perplexity_requested"] == 30
    assert meta["umap"]["n_neighbors"] == 9 and meta["umap"]["n_neighbors_requested"] == 15
    assert "perplexity" in meta["tsne"]["clipped"] and "n_neighbors" in meta["umap"]["clipped"]
    assert list(coords.columns) == COLUMNS and np.isfinite(coords.to_numpy()).all()
    json.dumps(meta)  # the orchestrator writes it as JSON


# --------------------------------------------------------------------------------------------------
# degenerate inputs never raise; the column set is stable


@pytest.mark.parametrize("n", [1, 2, 3])
def test_tiny_n_skips_with_reasons(n):
    z, _ = planted_plane(n=8)
    coords, meta = project_latents(z[:n], None, np.arange(n) % 2)
    assert list(coords.columns) == COLUMNS and len(coords) == n
    for name in ("tsne", "umap"):
        assert not meta[name]["computed"] and "too few rows" in meta[name]["skipped"]
        assert coords[[f"{name}1", f"{name}2"]].isna().all().all()
    if n < 3:
        assert "too few fit rows" in meta["pca"]["skipped"] and coords.isna().all().all()
        assert meta["pls"]["skipped"]
    else:
        assert meta["pca"]["n_components"] == 2 and "clipped from 3 to 2" in meta["pca"]["clipped"]
        assert coords[["pca1", "pca2"]].notna().all().all() and coords["pca3"].isna().all()
    json.dumps(meta)


def test_constant_latents_one_class_and_single_unit():
    coords, meta = project_latents(np.full((20, 5), 0.3), None, np.arange(20) % 2)
    assert list(coords.columns) == COLUMNS and coords.isna().all().all()
    assert all(meta[m]["skipped"] for m in ("pca", "tsne", "umap", "pls"))
    z, _ = planted_labels(n=20, k=1, unit=0)
    coords, meta = project_latents(z, None, np.zeros(20), methods=("pca", "pls"))
    assert meta["pca"]["n_components"] == 1 and "clipped" in meta["pca"]["clipped"]
    assert coords["pca1"].notna().all() and coords[["pca2", "pca3"]].isna().all().all()
    assert "fewer than 2 classes" in meta["pls"]["skipped"] and coords["pls1"].isna().all()
    assert meta["tsne"]["skipped"] == "not requested in methods" and coords["tsne1"].isna().all()
    _, meta = project_latents(z, None, None, methods=("pls",))
    assert "y is None" in meta["pls"]["skipped"]


def test_nonfinite_rows_get_nan_and_bad_arguments_raise():
    z, _ = planted_plane()
    z[5, 2] = np.nan
    coords, meta = project_latents(pd.DataFrame(z, index=[f"s{i}" for i in range(N)]), None, methods=("pca",))
    assert coords.index[5] == "s5" and coords.loc["s5"].isna().all()
    assert coords.drop(index="s5")["pca1"].notna().all() and meta["pca"]["fitted_on"] == N - 1
    with pytest.raises(UsageError):
        project_latents(z[:, 0], None)
    with pytest.raises(UsageError):
        project_latents(z, np.ones(N - 1, dtype=bool))
    with pytest.raises(UsageError):
        project_latents(z, None, methods=("pca", "ica"))
    with pytest.raises(UsageError):
        project_latents(z, None, pca_components=0)


# --------------------------------------------------------------------------------------------------
# PC1 correlations


def test_pc1_correlations_match_scipy_and_drop_nan_rows():
    rng = np.random.default_rng(11)
    pc1 = rng.normal(size=N)
    pc1[3] = np.nan
    cov = pd.DataFrame(
        {
            "global_gm": 0.8 * np.nan_to_num(pc1) + 0.3 * rng.normal(size=N),  # planted
            "tiv": rng.normal(1500, 100, size=N),  # null
            "age": rng.uniform(20, 80, size=N),
            "flat": np.ones(N),
            "sex": rng.choice(["F", "M"], size=N),
        }
    )
    cov.loc[[0, 7, 9], "age"] = np.nan
    out = pc1_correlations(pd.Series(pc1), cov)
    assert list(out.columns[:4]) == ["covariate", "n", "r", "p"]
    assert list(out["covariate"]) == list(cov.columns)
    for name in ("global_gm", "tiv", "age"):
        ok = np.isfinite(pc1) & np.isfinite(cov[name].to_numpy())
        ref = pearsonr(pc1[ok], cov[name].to_numpy()[ok])
        row = out.set_index("covariate").loc[name]
        assert row["n"] == ok.sum()
        assert row["r"] == pytest.approx(ref.statistic, abs=1e-12)
        assert row["p_nonzero"] == pytest.approx(ref.pvalue, rel=1e-9)
    rows = out.set_index("covariate")
    assert rows.loc["age", "n"] == N - 4 and rows.loc["global_gm", "n"] == N - 1
    gm = rows.loc["global_gm"]
    assert gm["r"] > 0.9 and gm["p"] < 1e-10 and gm["supported"]
    assert rows.loc["tiv", "p"] > 0.05 and not rows.loc["tiv", "supported"]
    assert np.isnan(rows.loc["flat", "r"]) and "constant" in rows.loc["flat", "reason"]
    assert np.isnan(rows.loc["sex", "r"]) and "not numeric" in rows.loc["sex", "reason"]
    with pytest.raises(UsageError):
        pc1_correlations(pc1[:-1], cov)
