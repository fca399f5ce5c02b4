"""PC1 tracks a global measure (METHOD.md section 4): a test of |rho| > min_abs_r, not a cut on |r|.

The claim "PC1 tracks global GM" must be wrong in at most eta of cohorts where the true correlation is
at most ``min_abs_r``.  The first rule ("|r| >= 0.5 and Pearson p <= eta") called a true rho = 0.45 at
n = 100 "tracking" in about a quarter of samples.  The rates below are measured on 400 draws per
setting and compared with the binomial upper limit of a 5 % rate (one-sided 99.9 %), so a correct test
fails this file about once in a thousand runs of a fresh seed, and the seeds are fixed.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom, norm, pearsonr

from latentbids.analysis.pc1 import PC1_COLUMNS, pc1_claims, pc1_correlations, tracking_p

DRAWS, N, ETA = 400, 100, 0.05
#: the largest rejection count out of DRAWS that a true 5 % rate reaches with probability 0.999
LIMIT = binom.ppf(0.999, DRAWS, ETA) / DRAWS


def _draw(rng, rho, n=N):
    x = rng.normal(size=n)
    y = rho * x + math.sqrt(1 - rho ** 2) * rng.normal(size=n)
    return x, pd.DataFrame({"global_gm": y})


def _rate(rho, seed, n=N):
    rng = np.random.default_rng(seed)
    hits, cut_hits = 0, 0
    for _ in range(DRAWS):
        x, cov = _draw(rng, rho, n)
        row = pc1_correlations(x, cov, eta=ETA, min_abs_r=0.5).iloc[0]
        hits += bool(row["supported"])
        cut_hits += bool(row["p_nonzero"] <= ETA and abs(row["r"]) >= 0.5)  # the first version's rule
    return hits / DRAWS, cut_hits / DRAWS


def test_a_correlation_below_the_boundary_is_not_called_tracking():
    rate, cut_rate = _rate(0.45, seed=1)
    assert rate <= LIMIT  # expected 1.1 % (40 000 draws); 400 draws of this seed: 2.5 %
    assert cut_rate > 0.15  # the cut on the sample r (26 % in the issue) is no test


def test_the_level_holds_at_the_boundary_of_the_null():
    rate, _ = _rate(0.5, seed=2)
    assert rate <= LIMIT
    assert rate >= 0.01  # the test is not vacuous: the boundary is rejected near eta


def test_a_strong_correlation_is_found():
    rate, _ = _rate(0.8, seed=3)
    assert rate >= 0.97  # power at rho = 0.8, n = 100: 0.9999 (40 000 draws)


def test_tracking_p_is_the_fisher_z_tail_at_the_least_favourable_null():
    r, n = 0.62, 80
    z, z0, s = math.atanh(r), math.atanh(0.5), math.sqrt(n - 3)
    z0 += 0.5 / (2 * (n - 1))  # Fisher's bias of atanh(r) at the boundary rho = 0.5
    assert tracking_p(r, n, 0.5) == pytest.approx(norm.sf((z - z0) * s) + norm.cdf((-z - z0) * s))
    assert tracking_p(-r, n, 0.5) == tracking_p(r, n, 0.5)  # "tracks" is about |rho|
    # with a boundary of 0 it is the two-sided test of rho = 0 (Fisher's approximation of Pearson's p)
    # (the bias term rho / (2 (n - 1)) vanishes there)
    assert tracking_p(0.3, 100, 0.0) == pytest.approx(2 * norm.sf(math.atanh(0.3) * math.sqrt(97)))
    assert tracking_p(0.4, 100, 0.5) > 0.5  # an r below the boundary is no evidence above it
    assert math.isnan(tracking_p(0.9, 3, 0.5)) and math.isnan(tracking_p(float("nan"), 50, 0.5))
    assert tracking_p(0.99, 50, 1.0) == 1.0  # nothing can exceed |rho| = 1


def test_table_bonferroni_and_claims():
    rng = np.random.default_rng(4)
    x = rng.normal(size=N)
    cov = pd.DataFrame({"gm": 0.9 * x + 0.3 * rng.normal(size=N), "tiv": rng.normal(size=N),
                        "weak": 0.4 * x + rng.normal(size=N), "sex": rng.choice(["F", "M"], size=N)})
    out = pc1_correlations(x, cov, eta=ETA, min_abs_r=0.5)
    assert list(out.columns) == PC1_COLUMNS
    rows = out.set_index("covariate")
    for name in ("gm", "tiv", "weak"):
        ref = pearsonr(x, cov[name])
        assert rows.loc[name, "p_nonzero"] == pytest.approx(ref.pvalue, rel=1e-9)
        assert rows.loc[name, "p"] == pytest.approx(tracking_p(ref.statistic, N, 0.5))
        assert rows.loc[name, "p_bonferroni"] == pytest.approx(min(1.0, 3 * rows.loc[name, "p"]))
    assert rows.loc["gm", "supported"] and not rows.loc["tiv", "supported"]
    # "weak" correlates (p of rho = 0 tiny) but does not track: |rho| = 0.37 < 0.5
    assert rows.loc["weak", "p_nonzero"] < 1e-3 and not rows.loc["weak", "supported"]
    assert np.isnan(rows.loc["sex", "p"]) and not rows.loc["sex", "supported"]
    claims = pc1_claims(out, 0.5)
    assert [c.item for c in claims] == list(cov.columns)
    assert [c.supported for c in claims] == list(out["supported"])
    assert all("Fisher z test of |rho| <= 0.5" in c.correction and "Bonferroni over 3" in c.correction
               for c in claims)
    assert claims[0].p == pytest.approx(rows.loc["gm", "p_bonferroni"])
