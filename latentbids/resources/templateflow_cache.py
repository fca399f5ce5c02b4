"""TemplateFlow templates read offline, through TemplateFlow's own client.

Files are resolved with :class:`templateflow.client.TemplateFlowClient` (the client behind
``templateflow.api``) on the cache folder, with ``autoupdate`` off.  Only ``ls`` is used at run time:
``get`` would download the 0-byte placeholders TemplateFlow leaves for files it has not fetched, and a
run on a compute node (or in a container run with ``--network none``) must never reach the network.
A placeholder or a missing file is refused with one line (exit 66) that says how to fill the cache;
:func:`latentbids.resources.prefetch.prefetch` (``python -m latentbids.resources.templates --prefetch``)
fills it where there is internet, e.g. when the container image is built.

Which resolutions a template defines comes from its ``template_description.json`` (``res``): from the
cache when it holds the template, else from the skeleton that ships inside the templateflow wheel, so
the answer never depends on what happens to be downloaded.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import zipfile
from pathlib import Path

from latentbids.errors import MissingInputError

LOGGER = logging.getLogger("latentbids")
S3_ROOT = "https://templateflow.s3.amazonaws.com"

#: What latentbids reads of a template: key -> TemplateFlow query (entities besides template/resolution).
QUERIES = {
    "t1w": {"suffix": "T1w", "desc": None},
    "mask": {"suffix": "mask", "desc": "brain", "label": None},
    "gm": {"suffix": "probseg", "label": "GM", "desc": None, "atlas": None},
    "wm": {"suffix": "probseg", "label": "WM", "desc": None, "atlas": None},
    "csf": {"suffix": "probseg", "label": "CSF", "desc": None, "atlas": None},
}


def templateflow_home(explicit: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``explicit`` (``--templateflow-home``), ``$TEMPLATEFLOW_HOME``, else
    TemplateFlow's own default (the user cache folder, as ``templateflow.conf`` computes it)."""
    if explicit:
        return Path(explicit).expanduser().absolute()
    if os.environ.get("TEMPLATEFLOW_HOME"):
        return Path(os.environ["TEMPLATEFLOW_HOME"]).expanduser().absolute()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("templateflow")).absolute()


def fill_hint(space: str, index: int | str) -> str:
    """How to fill the cache: the same command the container build runs."""
    return (f"fill it on a machine with internet: 'python -m latentbids.resources.templates --prefetch "
            f"{space}:res-{index}' with TEMPLATEFLOW_HOME set to this folder (then copy it over)")


def _skeleton_zip() -> Path | None:
    """The skeleton (every file name, metadata files with content) inside the templateflow wheel.

    Located without importing ``templateflow``: importing it initialises (and may write) a cache.
    """
    spec = importlib.util.find_spec("templateflow")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "conf" / "templateflow-skel.zip"
    return path if path.is_file() else None


@functools.lru_cache(maxsize=32)
def template_description(space: str, home: str) -> dict | None:
    """``template_description.json`` of ``space``: from the cache, else from the wheel's skeleton.

    ``None`` when TemplateFlow does not know the template at all.
    """
    cached = Path(home) / f"tpl-{space}" / "template_description.json"
    if cached.is_file() and cached.stat().st_size > 0:
        try:
            return json.loads(cached.read_text())
        except (OSError, json.JSONDecodeError):
            pass
    skeleton = _skeleton_zip()
    if skeleton is None:
        return None
    with zipfile.ZipFile(skeleton) as zf:
        try:
            return json.loads(zf.read(f"tpl-{space}/template_description.json"))
        except KeyError:
            return None


def defined_resolutions(space: str, home: str | os.PathLike) -> dict[int, dict]:
    """``{index: {"zooms": [...], "shape": [...], "origin": [...]}}`` as TemplateFlow defines them.

    Empty when TemplateFlow does not know ``space`` or lists no ``res`` for it.
    """
    desc = template_description(space, str(home)) or {}
    out = {}
    for key, value in (desc.get("res") or {}).items():
        try:
            out[int(key)] = dict(value or {})
        except (TypeError, ValueError):
            continue
    return out


def _usable(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def _ensure_offline_environment(home: Path) -> None:
    """Point the templateflow package at ``home``, with automatic updates off, before it is imported.

    Importing ``templateflow`` builds a module-level cache on ``$TEMPLATEFLOW_HOME`` (writing a
    skeleton when that folder is empty); setting the variable first keeps it from writing anywhere else.
    """
    os.environ.setdefault("TEMPLATEFLOW_HOME", str(home))
    os.environ.setdefault("TEMPLATEFLOW_AUTOUPDATE", "0")


@functools.lru_cache(maxsize=4)
def _client(home: str, autoupdate: bool = False):
    """A TemplateFlow client on ``home`` (its pybids index of the cache is built once per process)."""
    _ensure_offline_environment(Path(home))
    from templateflow.client import TemplateFlowClient

    return TemplateFlowClient(root=home, autoupdate=autoupdate)


def reset_client() -> None:
    """Forget the indexed client: the next lookup indexes the cache as it is now (after a download)."""
    _client.cache_clear()


def resolve_files(space: str, index: int, home: str | os.PathLike) -> dict[str, Path]:
    """The T1w, brain mask and CSF/GM/WM probseg files of ``space`` at ``res-<index>``, offline.

    Raises :class:`MissingInputError` (exit 66) naming the first missing or placeholder (0-byte) file
    and how to fill the cache.
    """
    home = Path(home)
    if not home.is_dir() or not any(home.iterdir()):
        raise MissingInputError(
            f"The TemplateFlow cache {home} is empty or missing, so {space} res-{index} cannot be read: "
            f"{fill_hint(space, index)}, or pass --templateflow-home"
        )
    client = _client(str(home))
    found: dict[str, Path] = {}
    for key, query in QUERIES.items():
        hits = client.ls(space, resolution=index, extension=".nii.gz", **query)
        if key == "t1w":
            # TemplateFlow may ship a skull-stripped T1w (desc-brain); the plain one is masked below.
            hits = client.ls(space, resolution=index, extension=".nii.gz", suffix="T1w", desc="brain") or hits
        if not hits:
            raise MissingInputError(
                f"The TemplateFlow cache {home} has no {key} file for {space} res-{index} "
                f"(query {query}): {fill_hint(space, index)}"
            )
        path = Path(hits[0])
        if not _usable(path):
            what = "a 0-byte placeholder (never downloaded)" if path.is_file() else "missing"
            raise MissingInputError(
                f"TemplateFlow file {path} is {what}; latentbids never downloads at run time: "
                f"{fill_hint(space, index)}"
            )
        found[key] = path
    return found


def s3_url(path: str | os.PathLike, home: str | os.PathLike) -> str:
    """The public TemplateFlow URL of a cache file (the ``SpatialReference`` of its grid)."""
    rel = Path(path).absolute().relative_to(Path(home).absolute())
    return f"{S3_ROOT}/{rel.as_posix()}"
