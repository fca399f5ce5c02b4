"""The out-of-sample latent-vector test, the mean-shift statistics and the power sentences (issue 17)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import Ridge
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from latentbids.analysis import discriminability as dsc
from latentbids.analysis.latent_vector import held_out_claim, held_out_splits, held_out_test
from latentbids.analysis.power import detectable_loss, power_sentence, required_n


def _folds(n: int, K: int, shift: float, rng, F: int = 5, share: float = 0.5):
    """k-fold latent codes: each fold its own rotation of one latent space; the classes differ by ``shift``
    (in sd units) along one direction of it."""
    y = (np.arange(n) < round(n * share)).astype(int)[rng.permutation(n)]
    fold = rng.permutation(np.arange(n) % F)
    base = rng.normal(size=(n, K))
    base[:, 0] += shift * y
    Z = {str(f + 1): base @ np.linalg.qr(rng.normal(size=(K, K)))[0] + 0.3 * rng.normal(size=(n, K))
         for f in range(F)}
    roles = {str(f + 1): np.where(fold == f, "test", "train") for f in range(F)}
    return Z, roles, y


def test_the_vectorised_null_is_the_ridge_classifier_refitted():
    """The permutation null is computed with the ridge hat matrices; check one relabelling against an explicit
    refit of sklearn's Ridge in every fold (same threshold rule)."""
    rng = np.random.default_rng(0)
    Z, roles, y = _folds(60, 6, 1.0, rng)
    got = held_out_test(Z, roles, y, n_permutations=0)
    predicted = np.zeros(len(y), bool)
    for fold, role in roles.items():
        tr, te = role == "train", role == "test"
        mean, sd = Z[fold][tr].mean(0), Z[fold][tr].std(0)
        model = Ridge(alpha=1.0).fit((Z[fold][tr] - mean) / sd, y[tr])
        fitted = model.predict((Z[fold][tr] - mean) / sd)
        cut = 0.5 * (fitted[y[tr] == 1].mean() + fitted[y[tr] == 0].mean())
        predicted[te] = model.predict((Z[fold][te] - mean) / sd) > cut
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, predicted))
    assert got["accuracy"] == pytest.approx(np.mean(predicted == y)) and got["n_tested"] == 60
    assert math.isnan(got["p"]) and not got["supported"]


def test_null_rate_at_most_eta_and_power_on_a_shift():
    rng = np.random.default_rng(1)
    null = sum(held_out_test(*_folds(80, 16, 0.0, rng, share=share), n_permutations=99, random_state=r)["supported"]
               for r in range(60) for share in (0.5, 0.3))
    # 120 null cohorts (balanced and 70/30): the binomial 99.9 % quantile of a 5 % rate is 14
    assert null <= 14
    found = sum(held_out_test(*_folds(80, 16, 1.2, rng), n_permutations=99, random_state=r)["supported"]
                for r in range(20))
    assert found >= 17


def test_fit_all_and_new_subjects_fall_back_to_a_stratified_split():
    rng = np.random.default_rng(2)
    Z, _, y = _folds(40, 4, 2.0, rng, F=1)
    splits, how = held_out_splits({"all": np.array(["train"] * 40)}, y, 0)
    assert len(splits) == 5 and "stratified 5-fold" in how
    tested = np.sort(np.concatenate([te for _, _, te in splits]))
    assert np.array_equal(tested, np.arange(40))  # every subject predicted once
    res = held_out_test({"all": Z["1"]}, {"all": np.array(["new"] * 40)}, y, n_permutations=99)
    assert res["supported"] and res["n_tested"] == 40
    claim = held_out_claim(res, "CN vs AD", 0.05)
    assert claim.family == "latent_vector" and claim.supported and "stratified" in claim.correction
    few = held_out_test({"1": Z["1"][:3]}, {"1": np.array(["test", "train", "train"])}, y[:3])
    assert few["reason"] and not few["supported"]


def test_mean_shift_statistics_match_scipy_and_sklearn():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(45, 5))
    y = (np.arange(45) < 20).astype(int)
    X[y == 1, 2] += 1.5
    welch = dsc.family_test(X, y, statistic="welch", n_permutations=200, random_state=0)
    ref = np.abs(stats.ttest_ind(X[y == 1], X[y == 0], equal_var=False).statistic)
    np.testing.assert_allclose(welch.statistic, ref)
    auc = dsc.family_test(X, y, statistic="auc", n_permutations=200, random_state=0)
    np.testing.assert_allclose(auc.statistic, [abs(roc_auc_score(y, X[:, j]) - 0.5) for j in range(5)])
    assert welch.chance == 0.0 and list(np.flatnonzero(welch.passes)) == [2]
    bonf = dsc.family_test(X, y, statistic="welch", method="bonferroni")
    assert bonf.critical == pytest.approx(stats.t.ppf(1 - 0.05 / 10, 19)) and list(np.flatnonzero(bonf.passes)) == [2]


def test_welch_finds_more_mean_shifts_than_the_balanced_accuracy_at_the_same_error_rate():
    """Why Welch is the default: a small mean shift in 3 of 40 correlated features, 40 subjects per group."""
    rng = np.random.default_rng(4)
    found = {"welch": 0, "balanced": 0}
    false = {"welch": 0, "balanced": 0}
    cov = 0.5 * np.eye(40) + 0.5
    for rep in range(30):
        X = rng.multivariate_normal(np.zeros(40), cov, size=80)
        y = np.repeat([0, 1], 40)
        X[y == 1, :3] += 0.8
        for name in found:
            t = dsc.family_test(X, y, statistic=name, n_permutations=99, random_state=rep)
            found[name] += int(t.passes[:3].sum())
            false[name] += int(t.passes[3:].any())
    assert found["welch"] > 1.3 * found["balanced"]
    assert false["welch"] <= 4 and false["balanced"] <= 4


TABLE = {"losses": [4, 8, 12, 18, 25], "n_per_group": [20, 60, 100], "regions": 4,
         "families": {"unit": [[0.0, 0.1, 0.3, 0.6, 0.9], [0.05, 0.4, 0.9, 1.0, 1.0], [0.1, 0.8, 1.0, 1.0, 1.0]],
                      "sam": [[0.0] * 5, [0.0, 0.0, 0.1, 0.2, 0.5], [0.0, 0.1, 0.3, 0.5, 0.7]]}}


def test_detectable_loss_reads_the_table_conservatively():
    loss, row = detectable_loss("unit", 60, TABLE)
    assert row == 60 and loss == pytest.approx(8 + (0.8 - 0.4) / (0.9 - 0.4) * 4)
    assert detectable_loss("unit", 99, TABLE) == (loss, 60)  # the row not above the user's n
    assert detectable_loss("unit", 100, TABLE)[0] == pytest.approx(8.0)
    assert detectable_loss("sam", 100, TABLE)[0] == math.inf
    assert detectable_loss("unit", 10, TABLE) == (None, None)  # below the table: no claim about power
    assert detectable_loss("lrcp", 60, TABLE) == (None, None)
    text = power_sentence("unit", 64, TABLE)
    assert "about 11 % in 4 regions with 80 % power" in text and "a smaller effect may be present" in text
    assert "may well be present" in power_sentence("sam", 64, TABLE)
    assert "not in the shipped power table" in power_sentence("lrcp", 64, TABLE)
    for sentence in (text, power_sentence("sam", 64, TABLE), power_sentence("lrcp", 64, TABLE)):
        assert "no information" not in sentence and "absent" not in sentence


def test_required_n_answers_the_planning_question_from_the_same_table():
    """How many per group for this loss: the first measured size whose detectable loss is at or below it."""
    assert required_n("unit", 12, TABLE) == 60  # 60 per group finds 11.2 %; 20 per group does not reach 80 %
    assert required_n("unit", 8, TABLE) == 100 and required_n("unit", 25, TABLE) == 20
    assert required_n("unit", 4, TABLE) is None and required_n("sam", 25, TABLE) is None  # beyond the table
    assert required_n("lrcp", 8, TABLE) is None


def test_latentbids_power_prints_both_readings_and_rejects_bad_values(capsys):
    """The planning command users run before scanning: one line per family, one line per bad value (exit 64)."""
    from latentbids.cli.power import main

    assert main(["--n", "60"]) == 0
    out = capsys.readouterr().out
    assert "at 60 subjects per group" in out and "best case" in out
    assert sum(line.startswith("  ") for line in out.splitlines()) >= 5
    assert main(["--loss", "8", "--family", "region"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert lines[0][0] == "region" and int(lines[0][1]) in (20, 40, 60, 100, 200)
    for bad in (["--loss", "0"], ["--loss", "nan"], ["--n", "1"], ["--n", "60", "--family", "nope"], []):
        with pytest.raises(SystemExit) as stop:
            main(bad)
        assert stop.value.code == 64
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, bad
