"""A write that fails because of the storage (disk full, quota, read-only mount, no permission, I/O
error) ends in one line naming the path and the errno, exit 73 (74 for EIO), also in the run's log;
at participant level the other subjects are still processed, and nothing half-written is left.

The faults are injected in-process (``os.replace`` fails for the chosen paths, as a full disk fails
the last step of a write): tests run as root here, where a read-only folder does not stop a write.
MultiProc's workers are forked, so they inherit the fault.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from latentbids.cli.run import main

SPACE = "MNI152NLin2009aSym:res-nilearn4"
FAST = ["--skip-bids-validation", "--sloppy", "--output-spaces", SPACE, "--nprocs", "1"]


@pytest.fixture(autouse=True)
def _fresh_log_handlers():
    """Each in-process run logs to this test's captured stderr and its own log file."""
    import logging

    logger = logging.getLogger("latentbids")
    saved = list(logger.handlers)
    logger.handlers.clear()
    yield
    for handler in logger.handlers:
        handler.close()
    logger.handlers[:] = saved


def _simulate(folder: Path, n: int, *extra) -> Path:
    from latentbids.cli.simulate import main as simulate

    assert simulate([str(folder), "--n-subjects", str(n), "--seed", "1", "--resolution", "4", *extra]) == 0
    return folder


def _fail_replace(monkeypatch, needle: str, code: int = errno.ENOSPC) -> list[str]:
    """``os.replace`` onto a path containing ``needle`` fails with ``code``; returns the paths hit."""
    real, hit = os.replace, []

    def replace(src, dst, *args, **kwargs):
        if needle in str(dst):
            hit.append(str(dst))
            raise OSError(code, os.strerror(code), str(src))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return hit


def _errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if "| ERROR" in line]


def _leftovers(out: Path) -> list[str]:
    return [str(p) for p in out.rglob("*") if ".tmp" in p.name]


@pytest.mark.slow
def test_full_disk_for_one_subject_exits_73_and_the_other_is_processed(tmp_path, monkeypatch, capfd):
    bids = _simulate(tmp_path / "ds", 2)
    out = tmp_path / "out"
    hit = _fail_replace(monkeypatch, f"{out}/sub-002/")
    code = main([str(bids), str(out), "participant", "-w", str(tmp_path / "w"), *FAST])
    err = capfd.readouterr().err
    assert hit, "the fault was never injected"
    assert code == 73, err[-3000:]
    assert "Traceback" not in err
    last = _errors(err)[-1]
    assert "sub-002" in last and "No space left on device (ENOSPC)" in last and str(out / "sub-002") in last
    assert list((out / "sub-001" / "anat").glob("*_label-GM_probseg.nii.gz")), "the good subject was not written"
    assert not list((out / "sub-002").rglob("*.nii.gz")) and not _leftovers(out)
    log = next((out / "logs").glob("*/latentbids.log")).read_text()
    assert "ENOSPC" in log and "sub-002" in _errors(log)[-1]


@pytest.mark.parametrize("code, exit_code, name", [(errno.EIO, 74, "EIO"), (errno.EROFS, 73, "EROFS"),
                                                   (errno.EDQUOT, 73, "EDQUOT")])
def test_a_failed_write_before_any_work_is_one_line(tmp_path, monkeypatch, capsys, code, exit_code, name):
    bids = _simulate(tmp_path / "ds", 2, "--gm-only")
    out = tmp_path / "out"
    _fail_replace(monkeypatch, "dataset_description.json", code)
    assert main([str(bids), str(out), "participant", "-w", str(tmp_path / "w"), *FAST]) == exit_code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"Cannot write {out / 'dataset_description.json'}: " in _errors(err)[-1]
    assert f"({name})" in _errors(err)[-1]
    assert not _leftovers(out)


def test_an_oserror_outside_the_atomic_writers_is_one_line(tmp_path, monkeypatch, capsys):
    """A lock, a Nipype file or torch writing on a read-only mount: the CLI maps the errno itself."""
    import latentbids.bids.derivatives as derivatives

    bids = _simulate(tmp_path / "ds", 2, "--gm-only")
    out = tmp_path / "out"

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(out / "logs" / "x.lock"))

    monkeypatch.setattr(derivatives, "init_output_dataset", read_only)
    assert main([str(bids), str(out), "participant", "-w", str(tmp_path / "w"), *FAST]) == 73
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = _errors(err)[-1]
    assert str(out / "logs" / "x.lock") in line and "(EROFS)" in line
    assert "Cannot write" in next((out / "logs").glob("*/latentbids.log")).read_text()


@pytest.mark.slow
def test_full_disk_at_group_level_is_one_line_and_no_temporary_is_left(tmp_path, monkeypatch, capfd):
    """Before: an OSError traceback, exit 1, and the log without the error."""
    bids = _simulate(tmp_path / "ds", 12, "--gm-only", "--group-ready")
    out = bids / "derivatives" / "latentbids"
    hit = _fail_replace(monkeypatch, f"{out}/sub-005/", errno.EDQUOT)
    code = main([str(bids), str(out), "group", "-w", str(tmp_path / "w"), *FAST, "--n-folds", "2"])
    err = capfd.readouterr().err
    assert hit and code == 73, err[-3000:]
    assert "Traceback" not in err
    line = _errors(err)[-1]
    assert str(out / "sub-005") in line and "Disk quota exceeded (EDQUOT)" in line
    assert not _leftovers(out)
    log = next((out / "logs").glob("*/latentbids.log")).read_text()
    assert "(EDQUOT)" in _errors(log)[-1]


def test_a_log_file_that_fills_up_is_one_line_not_a_traceback_per_message(tmp_path, capsys):
    import logging

    from latentbids.cli.logging_setup import add_log_file, setup_logging

    setup_logging(0)
    handler = add_log_file(tmp_path / "logs" / "latentbids.log")

    class Full:
        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def flush(self):
            pass

        def close(self):
            pass

    handler.stream = Full()
    logger = logging.getLogger("latentbids")
    for i in range(3):
        logger.info("message %d", i)
    err = capsys.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err
    assert err.count("Cannot write the log file") == 1 and "No space left on device" in err
    assert "message 2" in err and handler not in logger.handlers
