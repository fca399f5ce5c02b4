"""Every number a user can set has a lower and an upper bound that mean something: a value outside is
one usage error naming the key (or option) and the limit, exit 64, before anything is written; never a
172 GB allocation, a TypeError or a scikit-learn ValueError later."""
from __future__ import annotations

import dataclasses
import typing

import pytest

from latentbids.cli.parser import parse_args
from latentbids.cli.run import build_config
from latentbids.config import RunConfig
from latentbids.config_checks import RULES
from latentbids.errors import UsageError
from tests.helpers import run_cli


def _numeric(hint) -> bool:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (list, dict):
        return any(_numeric(a) for a in args)
    return hint in (int, float) or any(_numeric(a) for a in args if a is not type(None))


def test_every_numeric_key_has_both_bounds():
    config, missing = RunConfig(), []
    for section in RunConfig.SECTIONS:
        part = getattr(config, section)
        hints = typing.get_type_hints(type(part))
        for field in dataclasses.fields(part):
            if not _numeric(hints[field.name]) or field.name == "qc_nonzero_range":  # ignored, replaced key
                continue
            rule = RULES.get((section, field.name))
            limited = rule is not None and rule.low is not None and rule.high is not None
            bounded = rule is not None and (rule.normalise is not None or limited)
            if not bounded:
                missing.append(f"[{section}] {field.name}")
    assert not missing, f"numeric keys without a lower and an upper bound: {missing}"


def _config(ixi_dir, tmp_path, *extra, toml: str | bytes | None = None):
    argv = [str(ixi_dir), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "w"), *extra]
    if toml is not None:
        path = tmp_path / "c.toml"
        path.write_bytes(toml if isinstance(toml, bytes) else toml.encode())
        argv += ["--config-file", str(path)]
    return build_config(parse_args(argv))


@pytest.mark.parametrize("toml, message", [
    ("[model]\nlatent_dim = 1e22\n", r"latent_dim = 1e\+22 is not valid: use an integer"),
    ("[model]\nlatent_dim = 10000000000000000000000\n", r"latent_dim = 10+ is not valid: use a value >= 1 and <= 1024"),
    ("[model]\nvalidation_fraction = 1.0\n", r"validation_fraction = 1.0 is not valid: use a value > 0 and <= 0.5"),
    ("[model]\nlearning_rate = nan\n", r"learning_rate = nan is not valid: use a finite number"),
    ("[model]\nbatch_size = 100000\n", r"batch_size = 100000 is not valid: use a value >= 1 and <= 1024"),
    ("[model]\nchannels = [16, 32, 64, 100000]\n", r"use a non-empty list of integers >= 1 and <= 1024"),
    ("[execution]\nmem_gb = 0.000001\n", r"mem_gb = 1e-06 is not valid: use 0 \(no limit\) or a value >= 0.25 GB"),
    ("[execution]\nnprocs = 1000000\n", r"nprocs = 1000000 is not valid: use a value >= 0 and <= 4096"),
    ("[analysis]\nn_permutations = 10000000000\n", r"n_permutations = 10000000000 is not valid: use a value >= 0 and"),
    ("[analysis]\numap_n_neighbors = 1\n", r"umap_n_neighbors = 1 is not valid: use a value >= 2"),
    ("[analysis]\nrub_dropout = 1.0\n", r"rub_dropout = 1.0 is not valid: use a value >= 0 and < 1"),
    ("[analysis]\nshap_min_r2 = inf\n", r"shap_min_r2 = inf is not valid: use a finite number"),
    ("[anat]\natropos_iterations = 100000\n", r"atropos_iterations = 100000 is not valid: use a value >= 1 and <= 100"),
])
def test_a_value_beyond_its_bound_in_a_config_file_is_one_usage_error(ixi_dir, tmp_path, toml, message):
    with pytest.raises(UsageError, match=message) as info:
        _config(ixi_dir, tmp_path, toml=toml)
    assert info.value.exit_code == 64 and "\n" not in info.value.message


@pytest.mark.parametrize("extra, message", [
    (["--latent-dim", "100000000"], r"^--latent-dim: \[model\] latent_dim = 100000000 is not valid: use a value >= 1 "
                                    r"and <= 1024"),
    (["--n-folds", "5000"], r"^--n-folds: \[model\] n_folds = 5000 is not valid: use a value >= 1 and <= 100"),
    (["--mem", "1KB"], r"argument --mem.*'1KB' is outside the memory limits: give at least 256MB"),
    (["--mem-mb", "100"], r"'100' is outside the memory limits"),
    (["--mem", "1e9T"], r"at most 65536 GB"),
])
def test_a_value_beyond_its_bound_on_the_command_line_names_the_option(ixi_dir, tmp_path, extra, message):
    with pytest.raises(UsageError, match=message):
        _config(ixi_dir, tmp_path, *extra)


def test_memory_sizes_in_the_units_people_write(ixi_dir, tmp_path):
    assert _config(ixi_dir, tmp_path, "--mem", "16GiB").execution.mem_gb == 16
    assert _config(ixi_dir, tmp_path, "--mem", "256MB").execution.mem_gb == 0.256
    assert _config(ixi_dir, tmp_path, "--mem-mb", "512").execution.mem_gb == 0.512


def test_a_config_file_that_is_not_utf8_is_one_usage_error(ixi_dir, tmp_path):
    with pytest.raises(UsageError, match=r"c.toml is not UTF-8 \(byte 0xe9 on line 2\): save it as UTF-8"):
        _config(ixi_dir, tmp_path, toml='[model]\nmodel_name = "\xe9t\xe9"\n'.encode("latin-1"))
    config = _config(ixi_dir, tmp_path, toml="\ufeff[model]\nlatent_dim = 16\n".encode("utf-8"))  # BOM tolerated
    assert config.model.latent_dim == 16


def test_through_the_cli_exit_64_before_anything_is_written(ixi_dir, tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[model]\nvalidation_fraction = 1.0\n")
    for extra in (["--latent-dim", "100000000"], ["--config-file", toml], ["--mem", "1KB"]):
        proc = run_cli(ixi_dir, tmp_path / "out", "group", "-w", tmp_path / "w", *extra, timeout=300)
        assert proc.returncode == 64, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if "| ERROR" in line]
        assert "Traceback" not in proc.stderr and len(errors) == 1, proc.stderr
        assert ("<= 1024" in errors[0] or "<= 0.5" in errors[0] or "256MB" in errors[0]), errors[0]
    assert not (tmp_path / "out").exists()
