"""The configuration checks every value when it is set (command line, TOML file, code), and the one
place each default and choice lives agrees with everything that repeats it (interfaces, docs)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from latentbids.cli.parser import OPTION_TO_CONFIG, parse_args
from latentbids.cli.run import build_config
from latentbids.config import AnatConfig, RunConfig
from latentbids.errors import UsageError
from tests.helpers import run_cli

REPO = Path(__file__).resolve().parents[2]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _from_file(ixi_dir, tmp_path, text: str, *extra):
    toml = tmp_path / "c.toml"
    toml.write_text(text)
    args = parse_args([str(ixi_dir), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "w"),
                       "--config-file", str(toml), *extra])
    return build_config(args)


@pytest.mark.parametrize("text, message", [
    ('[anat]\nhdbet_mode = "slow"\n', r"\[anat\] hdbet_mode = 'slow' is not valid: use one of fast, accurate"),
    ('[anat]\nregistration = "BSplineSyN"\n', r"registration = 'BSplineSyN' is not valid: use one of SyN, SyNQuick"),
    ("[model]\nlatent_dim = 0\n", r"\[model\] latent_dim = 0 is not valid: use a value >= 1"),
    ("[analysis]\nshap_permutations = -1\n", r"shap_permutations = -1 is not valid: use a value >= 0"),
    ('[model]\nlatent_dim = "16"\n', r"\[model\] latent_dim = '16' is not valid: use an integer"),
    ("[model]\nfit_all = 1\n", r"\[model\] fit_all = 1 is not valid: use true or false"),
    ('[model]\nnorm = "layer"\n', r"norm = 'layer' is not valid: use one of batch, instance, group, none"),
    ("[model]\nchannels = [16, 0]\n", r"channels = \[16, 0\] is not valid: use a non-empty list of integers >= 1"),
    ('[analysis]\nbound = "Hoeffding"\n', r"\[analysis\] bound = 'Hoeffding' is not valid: use one of G, GZ, VC"),
    ("[analysis]\neta = 1.5\n", r"\[analysis\] eta = 1.5 is not valid: use a value > 0 and <= 0.5"),
    ('[execution]\ndevice = "gpu"\n', r"\[execution\] device = 'gpu' is not valid: use auto, cpu, cuda or cuda:N"),
    ("[anat]\nqc_min_peak = {own = 0.9, fsl = 0.5}\n", r"unknown source\(s\) fsl: use own, smriprep, cat12"),
])
def test_a_bad_value_in_a_config_file_is_one_usage_error(ixi_dir, tmp_path, text, message):
    with pytest.raises(UsageError, match=message) as info:
        _from_file(ixi_dir, tmp_path, text)
    assert info.value.message.startswith(f"{tmp_path / 'c.toml'}: [")  # names the file first, one line
    assert "\n" not in info.value.message


def test_values_are_typed_once_for_every_consumer(ixi_dir, tmp_path):
    config = _from_file(ixi_dir, tmp_path, "[anat]\natropos_mrf = 0\nqc_min_peak = 1\n[model]\nlearning_rate = 1\n",
                        "--device", "CPU")
    assert config.execution.device == "cpu"
    assert config.anat.atropos_mrf == 0.0 and isinstance(config.anat.atropos_mrf, float)
    assert isinstance(config.model.learning_rate, float)
    assert config.anat.qc_min_peak == 1.0 and isinstance(config.anat.qc_min_peak, float)


def test_bad_values_from_code_fail_when_set(tmp_path):
    config = RunConfig()
    with pytest.raises(UsageError, match=r"\[anat\] brain_extraction = 'bet' is not valid: use one of hdbet, template"):
        config.anat.brain_extraction = "bet"
    with pytest.raises(UsageError, match=r"code: \[model\] batch_size = 2.5 is not valid: use an integer"):
        config.update({"model": {"batch_size": 2.5}}, origin="code")
    with pytest.raises(UsageError, match="unknown key 'latent_dims' in \\[model\\]"):
        config.model.latent_dims = 16
    assert config.anat.brain_extraction == "hdbet" and config.model.batch_size == 8  # nothing half-set
    config.execution.device = " CUDA:1 "
    assert config.execution.device == "cuda:1"  # one spelling for every consumer
    config.spatial.output_spaces.append(2)  # changed in place: seen by validate()
    with pytest.raises(UsageError, match=r"\[spatial\] output_spaces = .* is not valid: use a list of texts"):
        config.validate()


def test_explicit_keys_are_remembered():
    config = RunConfig()
    assert config.anat.explicit == frozenset()
    config.update({"anat": {"atropos_mrf": 0.3}}, origin="file")
    config.anat.hdbet_tta = True
    config.anat.derive("registration", "SyN")  # a value the run derives is not the user's choice
    assert config.anat.explicit == {"atropos_mrf", "hdbet_tta"}


def test_sloppy_keeps_what_the_config_file_set(ixi_dir, tmp_path, caplog):
    """--sloppy on the command line and brain_extraction = "hdbet" in the file: HD-BET runs, and one
    log line says so; without the file --sloppy takes the template mask."""
    from latentbids.settings import resolve_config

    with caplog.at_level("WARNING", logger="latentbids"):
        config = _from_file(ixi_dir, tmp_path, '[anat]\nbrain_extraction = "hdbet"\n', "--sloppy")
        resolve_config(config)  # resolved again when the run starts: not said twice
    assert config.anat.brain_extraction == "hdbet" and config.anat.atropos_iterations == 3
    lines = [r.getMessage() for r in caplog.records if "--sloppy" in r.getMessage()]
    assert lines == ["--sloppy: keeping the value(s) you set: [anat] brain_extraction = 'hdbet' "
                     "(--sloppy would use 'template')"]
    plain = build_config(parse_args([str(ixi_dir), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "w"),
                                     "--sloppy"]))
    assert plain.anat.brain_extraction == "template" and plain.anat.n4_iterations == [50, 50, 30]


def test_sloppy_never_overrides_a_model_or_analysis_value_the_user_set(ixi_dir, tmp_path, caplog):
    """The group level's --sloppy caps (network, epochs, permutations) obey the same rule as [anat]: what the
    user set runs, said once in the log; what the user left alone takes the sloppy value."""
    from latentbids.settings import group_settings, resolve_config

    with caplog.at_level("WARNING", logger="latentbids"):
        config = _from_file(ixi_dir, tmp_path, "[model]\nmax_epochs = 50\n[analysis]\nn_permutations = 500\n",
                            "--sloppy")
        resolve_config(config)
    settings = group_settings(config)
    train, analysis = settings.train, settings.analysis
    assert train.max_epochs == 50 and train.patience == 2 and list(train.channels) == [4, 8, 8, 16]
    assert analysis.n_permutations == 500 and analysis.sam_permutations == 20
    lines = [r.getMessage() for r in caplog.records if "--sloppy" in r.getMessage()]
    assert len(lines) == 1 and "[model] max_epochs = 50" in lines[0] and "[analysis] n_permutations = 500" in lines[0]
    plain = _from_file(ixi_dir, tmp_path, "", "--sloppy")
    resolve_config(plain)
    assert (plain.model.max_epochs, plain.analysis.n_permutations, plain.analysis.shap_permutations) == (3, 100, 5)
    assert not {"max_epochs", "channels"} & plain.model.explicit  # derived, not the user's choice


def test_bad_value_through_the_cli_exits_64_in_one_line(ixi_dir, tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[anat]\nbrain_extraction = "bet"\n')
    proc = run_cli(ixi_dir, tmp_path / "out", "participant", "-w", tmp_path / "w", "--config-file", toml, timeout=300)
    assert proc.returncode == 64, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1 and "[anat] brain_extraction = 'bet' is not valid: use one of hdbet, template" in errors[0]
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_choices_agree_with_their_consumers():
    """The config repeats the choices of the steps that interpret a value (it may not import them)."""
    from latentbids.analysis.bounds import BOUNDS
    from latentbids.analysis.discriminability import FWER_METHODS, STATISTICS
    from latentbids.analysis.lrcp import CORRECTIONS
    from latentbids.analysis.stats import CORRELATIONS
    from latentbids.anat.registration import TRANSFORMS
    from latentbids.config_checks import RULES
    from latentbids.model.acceleration import COMPILE_MODES
    from latentbids.model.network import NORMS, STEMS

    consumers = {("anat", "registration"): tuple(TRANSFORMS), ("model", "norm"): NORMS,
                 ("model", "stem"): STEMS, ("model", "compile"): COMPILE_MODES,
                 ("analysis", "bound"): BOUNDS, ("analysis", "correction"): CORRECTIONS,
                 ("analysis", "correlation"): CORRELATIONS, ("analysis", "statistic"): STATISTICS,
                 ("analysis", "family_correction"): FWER_METHODS}
    for key, choices in consumers.items():
        assert set(RULES[key].choices) == set(choices), key
    for section in RunConfig.SECTIONS:  # every rule names a real key
        assert {k for s, k in RULES if s == section} <= set(getattr(RunConfig(), section).__dataclass_fields__)


def test_interface_defaults_are_the_configs():
    """A node built without a value does what a run does: the trait defaults are config.py's."""
    from latentbids.interfaces.anat import AtroposSegmentation, BrainExtraction, N4BiasCorrection, RegisterToTemplate
    from latentbids.interfaces.measures import QualityMetrics

    anat = AnatConfig()
    atropos = AtroposSegmentation().inputs
    assert (atropos.mrf, atropos.prior_weight, atropos.iterations) == (
        anat.atropos_mrf, anat.atropos_prior_weight, anat.atropos_iterations)
    assert N4BiasCorrection().inputs.iterations == anat.n4_iterations
    brain = BrainExtraction().inputs
    assert (brain.method, brain.hdbet_mode, brain.hdbet_tta) == (anat.brain_extraction, anat.hdbet_mode, anat.hdbet_tta)
    assert RegisterToTemplate().inputs.transform == anat.registration
    qc = QualityMetrics().inputs
    assert (qc.qc_floor, qc.qc_min_peak, qc.qc_min_coverage, qc.qc_max_outside, qc.qc_min_template_corr) == (
        anat.qc_floor, anat.qc_min_peak["own"], anat.qc_min_coverage["own"], anat.qc_max_outside["own"],
        anat.qc_min_template_corr["own"])


def test_usage_md_lists_every_file_only_setting_with_its_default():
    """docs/usage.md's TOML block names real keys with config.py's defaults (a renamed or removed key,
    a changed default, fails here), and every [anat] key (none has a command-line option) is in it."""
    text = (REPO / "docs" / "usage.md").read_text()
    block = re.search(r"## Settings only in a `--config-file`.*?```toml\n(.*?)```", text, re.S).group(1)
    documented = tomllib.loads(block)
    config = RunConfig()
    config.update(documented, origin="docs/usage.md")  # unknown keys and bad values fail here
    defaults = RunConfig()
    for section, values in documented.items():
        for key, value in values.items():
            assert getattr(getattr(config, section), key) == getattr(getattr(defaults, section), key), (section, key)
    assert not {key for section, key in OPTION_TO_CONFIG.values() if section == "anat"}
    for key in set(defaults.anat.__dataclass_fields__) - {"qc_min_max", "qc_nonzero_range"}:  # deprecated
        assert key in documented["anat"], f"[anat] {key} is not in docs/usage.md"


def test_replaced_qc_keys_are_accepted_and_said_once(tmp_path, caplog):
    """Old config files with qc_min_max still run; the run says once which keys replaced it."""
    from latentbids.settings import participant_settings

    config = RunConfig()
    config.update({"execution": {"output_dir": str(tmp_path / "out"), "work_dir": str(tmp_path / "w"),
                                 "device": "cpu"}, "anat": {"qc_min_max": 0.95}}, origin="old.toml")
    with caplog.at_level("WARNING", logger="latentbids"):
        settings = participant_settings(config)
    lines = [r.getMessage() for r in caplog.records if "no longer used" in r.getMessage()]
    assert lines == ["[anat] qc_min_max is no longer used (it depended on the grid's box and on numerical tails): "
                     "see qc_min_peak"]
    assert settings.anat.qc["own"]["qc_min_peak"] == 0.9 and settings.run.device == "cpu"
    assert settings.run.work_dir == tmp_path / "w" and settings.run.nprocs >= 1
