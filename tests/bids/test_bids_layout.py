"""Selecting T1w images with pybids on real layouts (sessions, filters, derivatives folders)."""
from __future__ import annotations

import json
import multiprocessing as mp

import pytest

from latentbids.bids.layout import get_layout, load_filter_file, read_labels, select_t1w
from latentbids.errors import MissingInputError, NoDataError, UsageError


def test_ixi_ten_subjects_one_t1w_each(ixi_dir):
    jobs = select_t1w(get_layout(ixi_dir))
    assert [j.subject for j in jobs] == sorted(p.name[4:] for p in ixi_dir.glob("sub-*"))
    assert all(j.session is None for j in jobs)
    assert jobs[0].relpath == "sub-IXI012/anat/sub-IXI012_T1w.nii.gz"
    assert jobs[0].label == "sub-IXI012"


def test_sessions_and_labels(bids_examples):
    layout = get_layout(bids_examples / "ds114")
    jobs = select_t1w(layout, ["01", "02"], ["retest"])
    assert [(j.subject, j.session) for j in jobs] == [("01", "retest"), ("02", "retest")]
    assert jobs[0].label == "sub-01_ses-retest"
    all_jobs = select_t1w(layout)
    assert len(all_jobs) == 2 * len(layout.get_subjects())


def test_derivatives_folder_is_not_raw_input(bids_examples):
    """synthetic/ has derivatives/fmriprep: only raw T1w images are selected."""
    jobs = select_t1w(get_layout(bids_examples / "synthetic"))
    assert jobs and all("derivatives" not in j.relpath for j in jobs)
    assert len(jobs) == 10  # 5 subjects x 2 sessions


def test_filter_file_null_and_any(bids_examples, tmp_path):
    layout = get_layout(bids_examples / "7t_trt")
    one = tmp_path / "ses1.json"
    one.write_text(json.dumps({"t1w": {"session": "1"}, "bold": {"task": "rest"}}))
    jobs = select_t1w(layout, filters=load_filter_file(one))
    assert jobs and {j.session for j in jobs} == {"1"}
    none = tmp_path / "nosession.json"
    none.write_text(json.dumps({"t1w": {"session": None}}))
    with pytest.raises(NoDataError):
        select_t1w(layout, filters=load_filter_file(none))
    anyses = tmp_path / "any.json"
    anyses.write_text(json.dumps({"t1w": {"session": "*"}}))
    assert len(select_t1w(layout, filters=load_filter_file(anyses))) == len(select_t1w(layout))


def test_bad_filter_files(tmp_path):
    with pytest.raises(MissingInputError):
        load_filter_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"t1w": "session-1"}))
    with pytest.raises(UsageError):
        load_filter_file(bad)


def test_labels_from_list_and_file(tmp_path):
    assert read_labels(["sub-01", "02", "01"], "sub") == ["01", "02"]
    listing = tmp_path / "subjects.txt"
    listing.write_text("sub-03\n# a comment\n\n04\n")
    assert read_labels([str(listing), "05"], "sub") == ["03", "04", "05"]
    with pytest.raises(UsageError):
        read_labels(["sub_01!"], "sub")
    with pytest.raises(MissingInputError):
        read_labels([str(tmp_path / "nofile.txt")], "sub")


def _index(args):
    bids_dir, db = args
    layout = get_layout(bids_dir, db)
    return len(layout.get(suffix="T1w", extension=[".nii", ".nii.gz"]))


def test_persistent_index_is_safe_for_concurrent_jobs(ixi_dir, tmp_path):
    """Four jobs start at once on one database dir: one index is built, all read it."""
    db = tmp_path / "db"
    with mp.get_context("spawn").Pool(4) as pool:
        counts = pool.map(_index, [(str(ixi_dir), str(db))] * 4)
    assert counts == [10] * 4
    indexes = [p for p in db.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(indexes) == 1 and (indexes[0] / "layout_index.sqlite").is_file()
    assert not [p for p in db.iterdir() if p.name.startswith(".tmp-index-")]


def test_changed_dataset_gets_a_fresh_index(tmp_path, ixi_dir):
    from tests.helpers import copy_dataset

    data = copy_dataset(ixi_dir, tmp_path / "ds", subjects=["IXI012", "IXI013"])
    db = tmp_path / "db"
    assert len(select_t1w(get_layout(data, db))) == 2
    import shutil

    shutil.rmtree(data / "sub-IXI013")
    assert len(select_t1w(get_layout(data, db))) == 1


def test_one_t1w_per_session_when_several_runs(tmp_path, ixi_dir):
    """Two runs of one subject would overwrite each other's outputs: the first is kept, the other named."""
    import shutil

    from tests.helpers import copy_dataset

    data = copy_dataset(ixi_dir, tmp_path / "ds", subjects=["IXI012"])
    anat = data / "sub-IXI012" / "anat"
    for run in ("1", "2"):
        shutil.copy(anat / "sub-IXI012_T1w.nii.gz", anat / f"sub-IXI012_run-{run}_T1w.nii.gz")
    (anat / "sub-IXI012_T1w.nii.gz").unlink()
    (anat / "sub-IXI012_T1w.json").unlink()
    jobs = select_t1w(get_layout(data))
    assert [j.relpath for j in jobs] == ["sub-IXI012/anat/sub-IXI012_run-1_T1w.nii.gz"]
    filt = tmp_path / "run2.json"
    filt.write_text(json.dumps({"t1w": {"run": 2}}))
    jobs = select_t1w(get_layout(data), filters=load_filter_file(filt))
    assert [j.relpath for j in jobs] == ["sub-IXI012/anat/sub-IXI012_run-2_T1w.nii.gz"]


def test_empty_label_file_is_an_error_not_everyone(tmp_path):
    empty = tmp_path / "labels.txt"
    empty.write_text("# no subjects yet\n\n")
    with pytest.raises(UsageError, match="lists no sub labels"):
        read_labels([str(empty)], "sub")
    with pytest.raises(UsageError):
        read_labels(["é1"], "sub")


def test_unknown_session_is_no_data(bids_examples):
    layout = get_layout(bids_examples / "ds114")
    with pytest.raises(NoDataError, match="ses-9 not found"):
        select_t1w(layout, session_label=["test", "9"])
