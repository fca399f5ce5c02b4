"""Configuration precedence (defaults < --config-file < command line) and option plumbing."""
from __future__ import annotations

import pytest

from latentbids.cli.parser import parse_args, parse_mem
from latentbids.cli.run import build_config
from latentbids.errors import MissingInputError, UsageError


def _config(ixi_dir, tmp_path, *extra):
    args = parse_args([str(ixi_dir), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "w"), *extra])
    return build_config(args)


def test_defaults(ixi_dir, tmp_path):
    config = _config(ixi_dir, tmp_path)
    assert config.model.latent_dim == 32 and config.model.n_folds == 5
    assert config.execution.random_seed == 42
    assert config.execution.bids_database_dir == str(tmp_path / "w" / "bids_db")
    assert config.execution.nprocs >= 1 and config.execution.omp_nthreads >= 1
    assert config.spatial.output_spaces == ["MNI152NLin2009aSym:res-nilearn2"]
    ex = config.execution
    assert not (ex.reports_only or ex.boilerplate_only or ex.clean_workdir)


def test_config_file_then_command_line(ixi_dir, tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[model]\nlatent_dim = 16\nn_folds = 3\n[execution]\nrandom_seed = 5\noutput_dir = "/ignored"\n')
    config = _config(ixi_dir, tmp_path, "--config-file", str(toml), "--latent-dim", "64")
    assert config.model.latent_dim == 64  # command line wins
    assert config.model.n_folds == 3  # file beats default
    assert config.execution.random_seed == 5
    assert config.execution.output_dir == str(tmp_path / "out")  # paths come from the command line


def test_config_file_unknown_key(ixi_dir, tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[model]\nlatent_dims = 16\n")
    with pytest.raises(UsageError, match="unknown key 'latent_dims'"):
        _config(ixi_dir, tmp_path, "--config-file", str(toml))
    toml.write_text("[model\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        _config(ixi_dir, tmp_path, "--config-file", str(toml))


def test_labels_aliases_and_file(ixi_dir, tmp_path):
    listing = tmp_path / "subs.txt"
    listing.write_text("sub-IXI012\nIXI013\n")
    config = _config(ixi_dir, tmp_path, "--participant_label", str(listing), "sub-IXI014", "--skip_bids_validator")
    assert config.execution.participant_label == ["IXI012", "IXI013", "IXI014"]
    assert config.execution.skip_bids_validation is True


def test_memory_units():
    assert parse_mem("16") == 16 and parse_mem("16GB") == 16 and parse_mem("16000MB") == 16
    assert parse_mem("0.5T") == 500


def test_nipreps_spellings(ixi_dir, tmp_path):
    """--mem-mb/--mem_mb (MB, as fMRIPrep), --nthreads, and the rebuild/clean switches reach the config."""
    for flag in ("--mem-mb", "--mem_mb"):
        assert _config(ixi_dir, tmp_path, flag, "16000").execution.mem_gb == 16
    assert _config(ixi_dir, tmp_path, "--mem-mb", "8G").execution.mem_gb == 8  # units still accepted
    assert _config(ixi_dir, tmp_path, "--mem", "8").execution.mem_gb == 8  # --mem stays in GB
    assert _config(ixi_dir, tmp_path, "--nthreads", "3").execution.nprocs == 3
    ex = _config(ixi_dir, tmp_path, "--reports-only", "--boilerplate-only", "--clean-workdir").execution
    assert ex.reports_only and ex.boilerplate_only and ex.clean_workdir
    with pytest.raises(UsageError, match="memory size"):
        _config(ixi_dir, tmp_path, "--mem-mb", "lots")


def test_help_shows_every_default(capsys, monkeypatch):
    """argparse hides defaults under SUPPRESS; --help states them, read from RunConfig."""
    from latentbids.cli.parser import OPTION_TO_CONFIG, build_parser, default_text

    monkeypatch.setenv("COLUMNS", "400")  # no wrapping inside a value

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for needle in ("(default: 32)", "(default: 5)", "(default: MNI152NLin2009aSym:res-nilearn2)",
                   "(default: AAL)", "(default: auto)", "(default: 42)", "(default: group)", "(default: ./work)"):
        assert needle in text, needle
    parser = build_parser()
    for action in parser._actions:
        if action.option_strings and action.dest in OPTION_TO_CONFIG:
            assert default_text(action.dest) is not None or action.dest in ("confounds",), action.dest
            assert "(default:" in action.help, action.dest


def test_container_kind_from_explicit_markers(monkeypatch, tmp_path):
    """Only Apptainer's variables and the image's LATENTBIDS_CONTAINER count, never /.dockerenv alone."""
    from latentbids.utils.environment import container_image, container_kind

    for var in ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER", "LATENTBIDS_CONTAINER",
                "LATENTBIDS_CONTAINER_IMAGE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("pathlib.Path.exists", lambda self: True)  # as if /.dockerenv were there
    assert container_kind() == "none"
    monkeypatch.setenv("LATENTBIDS_CONTAINER", "docker")
    assert container_kind() == "docker" and container_image().startswith("latentbids/latentbids:")
    monkeypatch.setenv("LATENTBIDS_CONTAINER_IMAGE", "latentbids/latentbids:0.1.0-cuda")
    assert container_image() == "latentbids/latentbids:0.1.0-cuda"
    monkeypatch.setenv("APPTAINER_CONTAINER", "/images/latentbids.sif")
    assert container_kind() == "apptainer"


def _plugin(config):
    from latentbids.settings import RunSettings
    from latentbids.workflows.participant.run import load_plugin

    ex = config.execution
    run = RunSettings(output_dir=ex.output_dir, work_dir=ex.work_dir, run_id=ex.run_id, nprocs=ex.nprocs,
                      omp_nthreads=ex.omp_nthreads, mem_gb=ex.mem_gb, device="cpu", templates=(), atlas=None)
    return load_plugin(ex.use_plugin, run.multiproc_args)


def test_plugin_file(ixi_dir, tmp_path):
    plugin = tmp_path / "plugin.yml"
    plugin.write_text("plugin: MultiProc\nplugin_args: {n_procs: 3}\n")
    name, args = _plugin(_config(ixi_dir, tmp_path, "--use-plugin", str(plugin), "--mem", "4GB"))
    assert name == "MultiProc" and args["n_procs"] == 3 and args["memory_gb"] == 4
    assert _plugin(_config(ixi_dir, tmp_path, "--nprocs", "2")) == ("MultiProc", {"n_procs": 2,
                                                                                   "raise_insufficient": False})
    plugin.write_text("plugin_args: {}\n")
    with pytest.raises(UsageError, match="plugin: NAME"):
        _plugin(_config(ixi_dir, tmp_path, "--use-plugin", str(plugin)))
    with pytest.raises(MissingInputError):
        _config(ixi_dir, tmp_path, "--use-plugin", str(tmp_path / "none.yml"))


def test_derivatives_and_model_paths_checked(ixi_dir, tmp_path):
    with pytest.raises(MissingInputError, match="--derivatives smriprep"):
        _config(ixi_dir, tmp_path, "-d", f"smriprep={tmp_path / 'nope'}")
    with pytest.raises(MissingInputError, match="--model"):
        _config(ixi_dir, tmp_path, "--model", str(tmp_path / "nomodel"))
    (tmp_path / "smri").mkdir()
    config = _config(ixi_dir, tmp_path, "-d", f"smriprep={tmp_path / 'smri'}")
    assert config.execution.derivatives == {"smriprep": str(tmp_path / "smri")}


def test_output_inside_raw_but_not_derivatives_is_refused(tmp_path, ixi_dir):
    from tests.helpers import copy_dataset

    data = copy_dataset(ixi_dir, tmp_path / "ds", subjects=["IXI012"])
    with pytest.raises(UsageError, match="derivatives"):
        build_config(parse_args([str(data), str(data / "out"), "participant"]))


def test_cpus_follow_the_allocation(ixi_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    assert _config(ixi_dir, tmp_path).execution.nprocs == 3
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    import os

    assert _config(ixi_dir, tmp_path).execution.nprocs == len(os.sched_getaffinity(0))


def test_database_dir_inside_bids_dir_is_refused(tmp_path, ixi_dir):
    from tests.helpers import copy_dataset

    data = copy_dataset(ixi_dir, tmp_path / "ds", subjects=["IXI012"])
    with pytest.raises(UsageError, match="bids-database-dir"):
        build_config(parse_args([str(data), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "w"),
                                 "--bids-database-dir", str(data / "db")]))


def test_analysis_options(ixi_dir, tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[analysis]\nfamily_correction = "bonferroni"\nshap_permutations = 60\n')
    config = _config(ixi_dir, tmp_path, "--config-file", str(toml), "--label-column", "dx", "--contrast",
                     "CN:AD", "sMCI:pMCI", "--confounds", "age", "tiv", "--skip-analysis")
    ac = config.analysis
    assert ac.label_column == "dx" and ac.contrasts == ["CN:AD", "sMCI:pMCI"] and ac.confounds == ["age", "tiv"]
    assert ac.enabled is False and ac.family_correction == "bonferroni" and ac.shap_permutations == 60
    assert _config(ixi_dir, tmp_path).analysis.enabled is True
    for bad in ("CN", "CN:CN", ":AD", "CN:AD:MCI"):
        with pytest.raises(UsageError, match="is not a contrast"):
            _config(ixi_dir, tmp_path, "--contrast", bad)
