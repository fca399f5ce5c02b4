"""Every documented exit code, through the installed console script in a subprocess."""
from __future__ import annotations

import json

import pytest

from tests.helpers import copy_dataset, run_cli


def _one_line_error(proc):
    """User errors: no traceback, and the error is a single log line."""
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "| ERROR" in ln]
    assert errors, proc.stderr
    return errors[-1]


def test_version_exits_0():
    from latentbids import __version__

    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"latentbids {__version__}"


def test_help_exits_0():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for option in ("--participant-label", "--skip-bids-validation", "--use-plugin", "--device", "--mem"):
        assert option in proc.stdout


def test_unknown_analysis_level_exits_17(ixi_dir, tmp_path):
    proc = run_cli(ixi_dir, tmp_path / "out", "subject")
    assert proc.returncode == 17
    assert "Unknown analysis level 'subject'" in _one_line_error(proc)


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--nprocs", "zero"], "--nprocs"),
        (["--mem", "lots"], "not a memory size"),
        (["--device", "tpu"], "auto, cpu, cuda"),
    ],
)
def test_bad_option_exits_64(ixi_dir, tmp_path, extra, needle):
    proc = run_cli(ixi_dir, tmp_path / "out", "participant", *extra)
    assert proc.returncode == 64
    assert needle in _one_line_error(proc)


def test_missing_positional_exits_64():
    proc = run_cli("only_one_arg")
    assert proc.returncode == 64
    assert "required" in _one_line_error(proc)


def test_output_equal_to_bids_dir_exits_64(tmp_path, ixi_dir):
    data = copy_dataset(ixi_dir, tmp_path / "ds", subjects=["IXI012"])
    proc = run_cli(data, data, "participant", "-w", tmp_path / "w")
    assert proc.returncode == 64
    assert "output_dir is bids_dir" in _one_line_error(proc)
    assert not (data / "logs").exists()


def test_work_dir_inside_bids_dir_exits_64(tmp_path, ixi_dir):
    data = copy_dataset(ixi_dir, tmp_path / "ds", subjects=["IXI012"])
    proc = run_cli(data, tmp_path / "out", "participant", "-w", data / "work")
    assert proc.returncode == 64
    assert "--work-dir" in _one_line_error(proc)
    assert not (data / "work").exists()


def test_missing_bids_dir_exits_66(tmp_path):
    proc = run_cli(tmp_path / "nope", tmp_path / "out", "participant")
    assert proc.returncode == 66
    assert "does not exist" in _one_line_error(proc)


def test_not_a_bids_root_exits_66(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_cli(tmp_path / "empty", tmp_path / "out", "participant")
    assert proc.returncode == 66
    assert "dataset_description.json" in _one_line_error(proc)


def test_missing_config_file_exits_66(ixi_dir, tmp_path):
    proc = run_cli(ixi_dir, tmp_path / "out", "participant", "--config-file", tmp_path / "none.toml")
    assert proc.returncode == 66
    assert "none.toml" in _one_line_error(proc)


@pytest.mark.slow
def test_validation_errors_exit_16(bids_examples, tmp_path):
    """pet002's images are unreadable placeholders: the official validator reports errors."""
    proc = run_cli(bids_examples / "pet002", tmp_path / "out", "participant", "-w", tmp_path / "w")
    assert proc.returncode == 16
    line = _one_line_error(proc)
    assert "failed BIDS validation" in line and "NIFTI_HEADER_UNREADABLE" in line


@pytest.mark.slow
def test_unreadable_inputs_exit_66_when_validation_skipped(bids_examples, tmp_path):
    proc = run_cli(bids_examples / "pet002", tmp_path / "out", "participant", "-w", tmp_path / "w",
                   "--skip-bids-validation")
    assert proc.returncode == 66
    assert "Input rejected" in proc.stderr
    assert "sub-01_ses-baseline_T1w.nii" in proc.stderr
    assert "None of the 4 selected T1w image(s) is usable" in _one_line_error(proc)


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--participant-label", "sub-99"], "sub-99 not found"),
        (["--participant-label", "01", "--session-label", "nosuch"], "ses-nosuch not found"),
    ],
)
@pytest.mark.slow
def test_filters_matching_nothing_exit_18(bids_examples, tmp_path, extra, needle):
    proc = run_cli(bids_examples / "ds114", tmp_path / "out", "participant", "-w", tmp_path / "w",
                   "--skip-bids-validation", *extra)
    assert proc.returncode == 18
    assert needle in _one_line_error(proc)


@pytest.mark.slow
def test_filter_file_matching_nothing_exits_18(bids_examples, tmp_path):
    filt = tmp_path / "filter.json"
    filt.write_text(json.dumps({"t1w": {"acquisition": "nonexistent"}}))
    proc = run_cli(bids_examples / "ds114", tmp_path / "out", "participant", "-w", tmp_path / "w",
                   "--skip-bids-validation", "--bids-filter-file", filt)
    assert proc.returncode == 18


def test_bad_filter_file_exits_64(bids_examples, tmp_path):
    filt = tmp_path / "filter.json"
    filt.write_text("{not json")
    proc = run_cli(bids_examples / "ds114", tmp_path / "out", "participant", "-w", tmp_path / "w",
                   "--skip-bids-validation", "--bids-filter-file", filt)
    assert proc.returncode == 64
    assert "not valid JSON" in _one_line_error(proc)


@pytest.mark.slow
def test_group_without_participant_outputs_exits_66(ixi_dir, tmp_path):
    proc = run_cli(ixi_dir, tmp_path / "out", "group", "-w", tmp_path / "w", "--skip-bids-validation")
    assert proc.returncode == 66
    assert "run 'latentbids" in _one_line_error(proc)


def test_cuda_without_gpu_exits_64_before_any_work(ixi_dir, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = run_cli(ixi_dir, tmp_path / "out", "participant", "-w", tmp_path / "w", "--device", "cuda")
    assert proc.returncode == 64
    assert "CUDA is not available" in _one_line_error(proc) and "--device cpu" in _one_line_error(proc)
    assert not list((tmp_path / "out").glob("sub-*"))


@pytest.mark.parametrize("which", ["output_dir", "--work-dir", "--bids-database-dir"])
def test_folder_that_cannot_be_created_exits_73(ixi_dir, tmp_path, which):
    """A regular file where a folder must go (works as root too, unlike a read-only mount)."""
    squatter = tmp_path / "a_file"
    squatter.write_text("not a folder")
    out, work = tmp_path / "out", tmp_path / "w"
    folder = squatter / "sub"
    args = {"output_dir": [ixi_dir, folder, "participant", "-w", work],
            "--work-dir": [ixi_dir, out, "participant", "-w", folder],
            "--bids-database-dir": [ixi_dir, out, "participant", "-w", work, "--bids-database-dir", folder]}[which]
    proc = run_cli(*args, "--skip-bids-validation")
    assert proc.returncode == 73, proc.stderr
    line = _one_line_error(proc)
    assert which in line and "cannot be created" in line and str(folder) in line
    assert not (out / "logs").exists()


@pytest.mark.slow
def test_subject_locked_by_another_job_exits_75(ixi_dir, tmp_path):
    """An overlapping array task holds the subject: skipped at once, 75 = try again later."""
    from latentbids.utils.locks import try_lock

    work = tmp_path / "w"
    handle = try_lock(work / "locks" / "single_subject_sub_IXI012_wf.lock")
    try:
        proc = run_cli(ixi_dir, tmp_path / "out", "participant", "-w", work, "--participant-label", "IXI012",
                       "--sloppy", "--skip-bids-validation")
    finally:
        handle.close()
    assert proc.returncode == 75, proc.stderr
    assert "sub-IXI012: another latentbids job is processing it" in _one_line_error(proc)
    assert not list((tmp_path / "out").glob("sub-IXI012/anat/*"))
