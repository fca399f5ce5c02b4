"""Analysis-level cohorts with a known truth, for calibrating the claims (METHOD.md section 9).

A full simulated cohort (``latentbids-simulate``) tests the whole pipeline but costs a participant level
and an autoencoder training; measuring a false-positive rate needs hundreds of cohorts per setting.  This
module draws the group analysis's *inputs* directly, with the structure that matters for its tests:

- regional mean GM ``G`` (n x J) from a multivariate normal whose between-region correlation, means and
  coefficients of variation were estimated from real GM maps (:class:`RegionalGMModel`; the shipped one
  comes from the ten IXI scans of the project's test data, shrunk with Ledoit-Wolf because ten subjects
  cannot estimate 116 x 116 correlations on their own);
- a planted GM loss (a fraction of each region's mean) in chosen regions for class 1;
- per-fold latent codes from a linear-autoencoder stand-in: the top principal axes of the standardised
  ``G`` of the fold's training subjects, in a random order and sign per fold (k-fold networks do not share
  units), plus noise;
- optionally voxels per region (the regional value, a fixed voxel pattern and spatially smooth noise) for
  SAM, reconstruction errors (unrelated to ``G`` under the null) and global covariates.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd

from latentbids.errors import UsageError

#: package data: the regional GM model estimated from the IXI scans (benchmarks/calibration.py --ixi)
IXI_MODEL_FILE = "regional_gm_ixi.npz"


@dataclass(frozen=True)
class RegionalGMModel:
    """Multivariate-normal regional mean GM: ``G_j = mean_j * (1 + cv_j * eps_j)``, ``eps ~ N(0, corr)``."""

    index: np.ndarray  # atlas labels (J,)
    names: tuple[str, ...]
    mean: np.ndarray  # (J,) regional mean GM
    cv: np.ndarray  # (J,) between-subject coefficient of variation
    corr: np.ndarray  # (J, J) correlation of the relative deviations
    source: str

    def __post_init__(self):
        J = len(self.index)
        if self.mean.shape != (J,) or self.cv.shape != (J,) or self.corr.shape != (J, J) or len(self.names) != J:
            raise UsageError("a regional GM model needs one mean, cv and name per region and a J x J correlation")

    @classmethod
    def from_maps(cls, G: np.ndarray, index, names, source: str) -> "RegionalGMModel":
        """Estimate the model from regional GM of real maps (N x J), with Ledoit-Wolf shrinkage."""
        from sklearn.covariance import LedoitWolf

        G = np.asarray(G, dtype=float)
        mean = G.mean(axis=0)
        rel = G / mean - 1.0
        cv = rel.std(axis=0, ddof=1)
        cov = LedoitWolf().fit((rel - rel.mean(0)) / cv).covariance_
        d = np.sqrt(np.diag(cov))
        return cls(np.asarray(index), tuple(str(n) for n in names), mean, cv, cov / np.outer(d, d), source)

    @classmethod
    def ixi(cls) -> "RegionalGMModel":
        """The model shipped with latentbids (estimated from the IXI scans of the test data)."""
        try:
            with resources.files("latentbids").joinpath("data", IXI_MODEL_FILE).open("rb") as fh:
                data = np.load(fh, allow_pickle=False)
                return cls(data["index"], tuple(str(n) for n in data["names"]), data["mean"], data["cv"],
                           data["corr"], str(data["source"]))
        except FileNotFoundError:
            raise UsageError(f"package data {IXI_MODEL_FILE} is missing: run benchmarks/calibration.py --ixi "
                             "DERIVATIVES to estimate it from participant-level outputs") from None

    def save(self, path) -> None:
        np.savez_compressed(path, index=self.index, names=np.array(self.names), mean=self.mean, cv=self.cv,
                            corr=self.corr.astype(np.float32), source=np.array(self.source))

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` subjects' regional GM (n x J)."""
        chol = np.linalg.cholesky(self.corr + 1e-9 * np.eye(len(self.index)))
        eps = rng.standard_normal((n, len(self.index))) @ chol.T
        return self.mean * (1.0 + self.cv * eps)


@dataclass(frozen=True)
class AnalysisCohort:
    """The inputs of one contrast's analysis: labels, regional GM, per-fold latents, roles, extras."""

    y: np.ndarray
    G: np.ndarray
    Z: dict  # fold -> (n, K)
    roles: dict  # fold -> (n,) train / validation / test
    region_index: np.ndarray
    region_names: tuple[str, ...]
    planted: tuple[int, ...]  # region_index of the regions with a planted loss
    X: np.ndarray | None = None  # (n, V) voxels
    voxel_labels: np.ndarray | None = None
    e: np.ndarray | None = None  # reconstruction error per subject
    covariates: pd.DataFrame | None = None  # gm_mean, tiv, age


def _fold_latents(Gs: np.ndarray, K: int, n_folds: int, noise: float, rng) -> tuple[dict, dict]:
    n, J = Gs.shape
    order = rng.permutation(n)
    Z, roles = {}, {}
    for f, test in enumerate(np.array_split(order, n_folds) if n_folds > 1 else [np.array([], int)]):
        role = np.full(n, "train", dtype=object)
        role[test] = "test"
        train = np.flatnonzero(role == "train")
        centred = Gs[train] - Gs[train].mean(0)
        axes = np.linalg.svd(centred, full_matrices=False)[2].T  # J x min(J, n_train)
        k_pc = min(K, axes.shape[1])
        W = axes[:, :k_pc]
        if K > k_pc:  # more units than principal axes: random mixtures of the regions
            W = np.column_stack([W, rng.standard_normal((J, K - k_pc)) / np.sqrt(J)])
        W = W[:, rng.permutation(K)] * rng.choice([-1.0, 1.0], K)
        signal = Gs @ W
        signal /= signal.std(axis=0)
        Z[str(f + 1)] = signal + noise * rng.standard_normal((n, K))
        roles[str(f + 1)] = role
    return Z, roles


def _voxels(G: np.ndarray, cv: np.ndarray, per_region: int, rng) -> tuple[np.ndarray, np.ndarray]:
    from scipy.ndimage import gaussian_filter1d

    n, J = G.shape
    labels = np.repeat(np.arange(J), per_region)
    noise = gaussian_filter1d(rng.standard_normal((n, J * per_region)), 2.0, axis=1)
    noise /= noise.std()
    pattern = 0.05 * rng.standard_normal(J * per_region)
    sd = np.repeat(cv * G.mean(0), per_region)
    return (np.repeat(G, per_region, axis=1) + sd * noise + pattern).astype(np.float32), labels


def draw_cohort(model: RegionalGMModel, n0: int, n1: int, K: int, *, rng: np.random.Generator, loss: float = 0.0,
                planted=(), n_folds: int = 5, latent_noise: float = 0.5, voxels_per_region: int = 0,
                error_from_gm: float = 0.0) -> AnalysisCohort:
    """One cohort of ``n0`` class-0 and ``n1`` class-1 subjects (class order shuffled).

    ``loss`` (fraction) is removed from the GM of the ``planted`` regions (atlas labels) in class 1;
    ``error_from_gm`` > 0 makes the reconstruction error depend on the planted regions (else it is noise).
    """
    y = np.r_[np.zeros(n0, int), np.ones(n1, int)]
    rng.shuffle(y)
    G = model.draw(len(y), rng)
    pos = [int(np.flatnonzero(model.index == r)[0]) for r in planted]
    if loss:
        G[np.ix_(y == 1, pos)] *= 1.0 - float(loss)
    Gs = (G - G.mean(0)) / G.std(0)
    Z, roles = _fold_latents(Gs, int(K), int(n_folds), float(latent_noise), rng)
    X = labels = None
    if voxels_per_region:
        X, lab = _voxels(G, model.cv, int(voxels_per_region), rng)
        labels = model.index[lab]
    e = 0.01 + 0.002 * rng.standard_normal(len(y))
    if error_from_gm and pos:
        e = e - 0.002 * float(error_from_gm) * Gs[:, pos].mean(1)
    covariates = pd.DataFrame({"gm_mean": G.mean(1), "tiv": rng.normal(1500, 110, len(y)),
                               "age": rng.uniform(60, 85, len(y))})
    return AnalysisCohort(y=y, G=G, Z=Z, roles=roles, region_index=model.index, region_names=model.names,
                          planted=tuple(int(r) for r in planted), X=X, voxel_labels=labels, e=e,
                          covariates=covariates)
