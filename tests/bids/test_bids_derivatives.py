"""The derivative dataset skeleton and provenance files."""
from __future__ import annotations

import json

from latentbids import __version__
from latentbids.bids.derivatives import init_output_dataset, write_run_config
from latentbids.bids.validation import errors_of, run_validator, validate_dataset
from latentbids.config import RunConfig, load_toml
from latentbids.resources import get_atlas


def test_skeleton_for_ixi_passes_the_validator(ixi_dir, tmp_path):
    out = tmp_path / "derivatives" / "latentbids"
    init_output_dataset(out, ixi_dir, container="docker", atlas=get_atlas())
    config = RunConfig()
    config.execution.run_id = "20260101-000000_abcd1234"
    write_run_config(out, config.execution.run_id, config.provenance())
    report = run_validator(out, tmp_path / "report.json")
    assert errors_of(report) == [], errors_of(report)

    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "latentbids"
    assert desc["GeneratedBy"][0]["Name"] in out.name
    assert desc["GeneratedBy"][0]["Version"] == __version__
    assert desc["GeneratedBy"][0]["Container"]["Type"] == "docker"
    assert desc["License"] == "CC BY-SA 3.0"  # copied from the input
    # sources are BIDS URIs resolved by relative DatasetLinks: no host path is recorded
    assert desc["SourceDatasets"][0]["URL"] == "bids:raw:"
    assert not desc["DatasetLinks"]["raw"].startswith(("file:", "/"))
    assert (out / desc["DatasetLinks"]["raw"]).resolve() == ixi_dir.resolve()
    assert "CITATION" in desc["HowToAcknowledge"]
    assert str(tmp_path) not in json.dumps(desc)
    ignore = (out / ".bidsignore").read_text().splitlines()
    assert "*_latent.tsv" in ignore and "logs" in ignore and "models" in ignore
    table = (out / "atlas-AAL_dseg.tsv").read_text().splitlines()
    assert table[0] == "index\tname" and len(table) == 117 and table[1] == "1\tPrecentral_L"
    columns = json.loads((out / "atlas-AAL_dseg.json").read_text())
    assert set(columns) >= {"index", "name", "Description"} and columns["name"]["Description"]


def test_run_config_toml_records_everything(tmp_path):
    config = RunConfig()
    config.execution.random_seed = 7
    config.model.latent_dim = 16
    path = write_run_config(tmp_path, "run1", config.provenance())
    data = load_toml(path)
    assert data["execution"]["random_seed"] == 7
    assert data["model"]["latent_dim"] == 16
    assert data["environment"]["versions"]["latentbids"] == __version__
    assert "torch" in data["environment"]["versions"]
    # the recorded file is a valid --config-file
    again = RunConfig()
    data.pop("environment")
    again.update(data)
    assert again.model.latent_dim == 16 and again.execution.random_seed == 7


def test_rewrite_is_identical(ixi_dir, tmp_path):
    """Concurrent participant jobs rewrite the root files: the content must not change."""
    init_output_dataset(tmp_path, ixi_dir)
    first = (tmp_path / "dataset_description.json").read_bytes()
    init_output_dataset(tmp_path, ixi_dir)
    assert (tmp_path / "dataset_description.json").read_bytes() == first
    assert not list(tmp_path.glob(".*.tmp*"))


def test_raw_ixi_validates(ixi_dir, tmp_path):
    validate_dataset(ixi_dir, tmp_path / "r.json")
    assert (tmp_path / "r.json").is_file()
