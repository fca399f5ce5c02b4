"""Subject-level stratified k-fold: no participant in two roles, sessions together, each held out once."""

from __future__ import annotations

import pandas as pd
import pytest

from latentbids.errors import UsageError
from latentbids.model.splits import make_splits


def _records(n=20):
    rows = []
    for i in range(n):
        pid = f"sub-{i:02d}"
        group = ["CN", "AD"][i % 2] if i != 5 else "n/a"
        for ses in ["ses-1", "ses-2"] if i % 3 == 0 else ["n/a"]:
            rows.append({"participant_id": pid, "session_id": ses, "group": group})
    return pd.DataFrame(rows)


def test_kfold_hygiene():
    rec = _records()
    splits = make_splits(rec, n_folds=5, seed=1)
    assert sorted(splits["fold"].unique()) == ["1", "2", "3", "4", "5"]
    # one role per subject per fold (sessions cannot be split: roles are per subject)
    assert not splits.duplicated(["fold", "participant_id"]).any()
    # every subject held out exactly once
    held = splits[splits.role == "test"].participant_id
    assert held.is_unique and set(held) == set(rec.participant_id)
    for _, part in splits.groupby("fold"):
        roles = part.groupby("role").participant_id.apply(set)
        assert not (roles["train"] & roles["test"]) and not (roles["validation"] & roles["test"])
        assert not (roles["train"] & roles["validation"])
        assert len(roles["validation"]) >= 1


def test_stratified_by_group():
    rec = pd.DataFrame(
        {"participant_id": [f"sub-{i:02d}" for i in range(30)], "group": ["AD"] * 10 + ["CN"] * 20}
    )
    splits = make_splits(rec, n_folds=5, seed=3)
    counts = splits[splits.role == "test"].groupby("fold").group.value_counts().unstack()
    assert (counts["AD"] == 2).all() and (counts["CN"] == 4).all()


def test_deterministic_and_seed_dependent():
    rec = _records()
    a = make_splits(rec, n_folds=4, seed=9)
    pd.testing.assert_frame_equal(a, make_splits(rec, n_folds=4, seed=9))
    assert not a.equals(make_splits(rec, n_folds=4, seed=10))


def test_fit_all_and_too_few_subjects():
    rec = _records(8)
    splits = make_splits(rec, fit_all=True)
    assert set(splits.fold) == {"all"} and set(splits.role) == {"train", "validation"}
    with pytest.raises(UsageError, match="too few"):
        make_splits(_records(5), n_folds=5)
