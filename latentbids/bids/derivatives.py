"""The output BIDS-Derivatives dataset: description, .bidsignore, label table and run logs.

Everything written here is deterministic (no timestamps) so that many participant jobs writing
the same file at once, each with an atomic rename, always leave one valid copy.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from latentbids import __version__
from latentbids.bids.naming import CUSTOM_PATTERNS
from latentbids.utils.atomic import write_json, write_text, write_tsv

LOGGER = logging.getLogger("latentbids")
CODE_URL = "https://github.com/latentbids/latentbids"
DOCKER_IMAGE = "latentbids/latentbids"
BIDS_VERSION = "1.10.0"


def _file_uri(path: str | os.PathLike) -> str:
    return Path(path).resolve().as_uri()


def read_description(bids_dir: str | os.PathLike) -> dict:
    """The input's ``dataset_description.json`` (empty dict when absent or unreadable)."""
    path = Path(bids_dir) / "dataset_description.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def dataset_description(bids_dir: str | os.PathLike, container: str = "none") -> dict:
    """The derivative ``dataset_description.json`` contents for outputs made from ``bids_dir``."""
    raw = read_description(bids_dir)
    source = {"URL": _file_uri(bids_dir)}
    if raw.get("DatasetDOI"):
        doi = str(raw["DatasetDOI"])
        source["DOI"] = doi if doi.startswith("doi:") else f"doi:{doi.removeprefix('https://doi.org/')}"
    if raw.get("Version"):
        source["Version"] = str(raw["Version"])
    generated_by = {"Name": "latentbids", "Version": __version__, "CodeURL": CODE_URL}
    if container in ("docker", "apptainer"):
        generated_by["Container"] = {
            "Type": container,
            "Tag": f"{DOCKER_IMAGE}:{__version__}",
        }
    desc = {
        "Name": f"latentbids derivatives of {raw.get('Name', Path(bids_dir).name)}",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by],
        "SourceDatasets": [source],
        "DatasetLinks": {"raw": _file_uri(bids_dir)},
    }
    if raw.get("License"):
        desc["License"] = raw["License"]
    return desc


def init_output_dataset(output_dir: str | os.PathLike, bids_dir: str | os.PathLike, container: str = "none",
                        atlas=None) -> Path:
    """Create (or refresh) the derivative dataset's root files; safe to call from concurrent jobs."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(output_dir / "dataset_description.json", dataset_description(bids_dir, container))
    write_text(output_dir / ".bidsignore", "\n".join(CUSTOM_PATTERNS) + "\n")
    if atlas is not None:
        write_label_table(output_dir, atlas)
    return output_dir


def write_label_table(output_dir: str | os.PathLike, atlas) -> Path:
    """``atlas-<name>_dseg.tsv`` at the output root: the label table every regional file refers to."""
    return write_tsv(atlas.label_table(), Path(output_dir) / f"atlas-{atlas.bids_name}_dseg.tsv")


def write_run_config(output_dir: str | os.PathLike, run_id: str, config) -> Path:
    """``logs/<run_id>/config.toml``: every parameter, seed, version and the device of this run."""
    from latentbids.config import dump_toml

    target = Path(output_dir) / "logs" / run_id / "config.toml"
    write_text(target, dump_toml(config.provenance()))
    return target


def crash_dir(output_dir: str | os.PathLike, subject: str, run_id: str) -> Path:
    """``sub-<l>/log/<run_id>/``: where crash files of that subject's run go."""
    return Path(output_dir) / f"sub-{subject}" / "log" / run_id
