"""The output BIDS-Derivatives dataset: description, .bidsignore, label table and run logs.

Everything written here is deterministic (no timestamps) so that many participant jobs writing
the same file at once, each with an atomic rename, always leave one valid copy.

Sources are named with BIDS URIs, never host paths: ``bids:raw:`` for the input dataset and
``bids:<NAME>:`` for a ``-d NAME=PATH`` dataset, resolved by ``DatasetLinks`` entries that are paths
relative to the output folder (``../..`` for ``<bids_dir>/derivatives/latentbids``), so the dataset
stays valid when moved, shared or mounted elsewhere in a container.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from latentbids import __version__
from latentbids.bids.naming import CUSTOM_PATTERNS, dataset_links, dataset_name
from latentbids.utils.atomic import write_json, write_text, write_tsv

LOGGER = logging.getLogger("latentbids")
CODE_URL = "https://github.com/latentbids/latentbids"
BIDS_VERSION = "1.10.0"
HOW_TO_ACKNOWLEDGE = (
    "Cite latentbids as its CITATION.cff says (" + CODE_URL + "/blob/main/CITATION.cff) and the software "
    "and templates it used: logs/CITATION.md (and .html) in this dataset is a methods paragraph with the "
    "versions of this run and their references, to copy into your paper unchanged."
)


def read_description(bids_dir: str | os.PathLike) -> dict:
    """The input's ``dataset_description.json`` (empty dict when absent or unreadable)."""
    path = Path(bids_dir) / "dataset_description.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _source_dataset(description: dict, uri: str) -> dict:
    source = {"URL": uri}
    if description.get("DatasetDOI"):
        doi = str(description["DatasetDOI"])
        source["DOI"] = doi if doi.startswith("doi:") else f"doi:{doi.removeprefix('https://doi.org/')}"
    if description.get("Version"):
        source["Version"] = str(description["Version"])
    return source


def generated_by(container: str = "none") -> dict:
    """``GeneratedBy[0]``: name, version, code, and the container when the run was in ours."""
    from latentbids.utils.environment import container_image

    entry = {"Name": "latentbids", "Version": __version__, "CodeURL": CODE_URL}
    if container in ("docker", "apptainer"):
        entry["Container"] = {"Type": container, "Tag": container_image()}
    return entry


def dataset_description(bids_dir: str | os.PathLike, container: str = "none",
                        output_dir: str | os.PathLike | None = None,
                        derivatives: dict[str, str] | None = None) -> dict:
    """The derivative ``dataset_description.json`` contents for outputs made from ``bids_dir``.

    ``output_dir`` (default ``<bids_dir>/derivatives/latentbids``) anchors the relative
    ``DatasetLinks``; ``derivatives`` are the ``-d NAME=PATH`` datasets GM maps were reused from.
    """
    raw = read_description(bids_dir)
    output_dir = output_dir or Path(bids_dir) / "derivatives" / "latentbids"
    sources = [_source_dataset(raw, "bids:raw:")]
    for name, path in (derivatives or {}).items():
        sources.append(_source_dataset(read_description(path), f"bids:{dataset_name(name)}:"))
    desc = {
        "Name": f"latentbids derivatives of {raw.get('Name', Path(bids_dir).name)}",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by(container)],
        "SourceDatasets": sources,
        "DatasetLinks": dataset_links(output_dir, bids_dir, derivatives),
        "HowToAcknowledge": HOW_TO_ACKNOWLEDGE,
    }
    if raw.get("License"):
        desc["License"] = raw["License"]
    return desc


def init_output_dataset(output_dir: str | os.PathLike, bids_dir: str | os.PathLike, container: str = "none",
                        atlas=None, derivatives: dict[str, str] | None = None, templates=()) -> Path:
    """Create (or refresh) the derivative dataset's root files; safe to call from concurrent jobs.

    ``templates``: the grids of this run; those with no public reference image get a copy here
    (their ``SpatialReference``).
    """
    from latentbids.utils.locks import locked

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # Read-merge-write under a lock: a job without -d must not drop the links of a job with one. The
    # lock file is removed afterwards (no 0-byte file left in the dataset users read).
    with locked(output_dir / "logs" / ".dataset_description.lock", remove=True):
        desc = dataset_description(bids_dir, container, output_dir, derivatives)
        write_json(output_dir / "dataset_description.json", keep_links(read_description(output_dir), desc))
    write_text(output_dir / ".bidsignore", "\n".join(CUSTOM_PATTERNS) + "\n")
    if atlas is not None:
        write_label_table(output_dir, atlas)
    for template in templates:
        write_grid_reference(output_dir, template)
    return output_dir


def keep_links(existing: dict, new: dict) -> dict:
    """``new`` plus the datasets an earlier run linked (its ``-d`` datasets stay named by the files
    it wrote); entries that are not BIDS URIs (older host paths) are dropped."""
    links = {k: v for k, v in (existing.get("DatasetLinks") or {}).items()
             if isinstance(v, str) and not v.startswith(("file:", "/"))}
    links.update(new["DatasetLinks"])
    sources = list(new["SourceDatasets"])
    urls = {s.get("URL") for s in sources}
    for source in existing.get("SourceDatasets") or []:
        url = source.get("URL", "") if isinstance(source, dict) else ""
        if url.startswith("bids:") and url not in urls and url.split(":")[1] in links:
            sources.append(source)
            urls.add(url)
    raw_first = dict(sorted(links.items(), key=lambda kv: kv[0] != "raw"))
    return {**new, "SourceDatasets": sources, "DatasetLinks": raw_first}


def write_grid_reference(output_dir: str | os.PathLike, template) -> Path | None:
    """Copy a grid that has no public URL (nilearn's) into the dataset, where its sidecars point.

    Written once: an existing copy is left alone (the grid of a name never changes).
    """
    from latentbids.utils.atomic import save_nifti

    if not template.reference_file:
        return None
    target = Path(output_dir) / template.reference_file
    if not target.is_file():
        save_nifti(template.t1w, target)
    return target


def write_label_table(output_dir: str | os.PathLike, atlas) -> Path:
    """``atlas-<name>_dseg.tsv`` at the output root (with its column sidecar): the label table every
    regional file refers to."""
    from latentbids.bids.sidecars import DSEG_COLUMNS, write_column_sidecar

    table = write_tsv(atlas.label_table(), Path(output_dir) / f"atlas-{atlas.bids_name}_dseg.tsv")
    write_column_sidecar(table, DSEG_COLUMNS, Description=f"Label table of the {atlas.name} atlas "
                                                        f"({atlas.n_regions} regions)")
    return table


def write_run_config(output_dir: str | os.PathLike, run_id: str, provenance: dict) -> Path:
    """``logs/<run_id>/config.toml``: every parameter, seed, version and the device of this run
    (``provenance``: :meth:`RunConfig.provenance` or :meth:`GroupSettings.provenance`)."""
    from latentbids.config import dump_toml

    target = Path(output_dir) / "logs" / run_id / "config.toml"
    write_text(target, dump_toml(provenance))
    return target


def crash_dir(output_dir: str | os.PathLike, subject: str, run_id: str) -> Path:
    """``sub-<l>/log/<run_id>/``: where crash files of that subject's run go."""
    return Path(output_dir) / f"sub-{subject}" / "log" / run_id
