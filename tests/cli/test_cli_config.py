"""Configuration precedence (defaults < --config-file < command line) and option plumbing."""
from __future__ import annotations

import pytest

from latentbids.cli.parser import parse_args, parse_mem
from latentbids.cli.run import build_config, load_plugin
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
    assert config.spatial.output_spaces == ["MNI152NLin2009aSym:res-2"]


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


def test_plugin_file(ixi_dir, tmp_path):
    plugin = tmp_path / "plugin.yml"
    plugin.write_text("plugin: MultiProc\nplugin_args: {n_procs: 3}\n")
    name, args = load_plugin(_config(ixi_dir, tmp_path, "--use-plugin", str(plugin), "--mem", "4GB"))
    assert name == "MultiProc" and args["n_procs"] == 3 and args["memory_gb"] == 4
    plugin.write_text("plugin_args: {}\n")
    with pytest.raises(UsageError, match="plugin: NAME"):
        load_plugin(_config(ixi_dir, tmp_path, "--use-plugin", str(plugin)))
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
    toml.write_text('[analysis]\nregion_correction = "bonferroni"\nshap_permutations = 60\n')
    config = _config(ixi_dir, tmp_path, "--config-file", str(toml), "--label-column", "dx", "--contrast",
                     "CN:AD", "sMCI:pMCI", "--confounds", "age", "tiv", "--skip-analysis")
    ac = config.analysis
    assert ac.label_column == "dx" and ac.contrasts == ["CN:AD", "sMCI:pMCI"] and ac.confounds == ["age", "tiv"]
    assert ac.enabled is False and ac.region_correction == "bonferroni" and ac.shap_permutations == 60
    assert _config(ixi_dir, tmp_path).analysis.enabled is True
    for bad in ("CN", "CN:CN", ":AD", "CN:AD:MCI"):
        with pytest.raises(UsageError, match="is not a contrast"):
            _config(ixi_dir, tmp_path, "--contrast", bad)
