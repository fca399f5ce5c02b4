"""TemplateFlow templates read offline, through TemplateFlow's own client.

Files are resolved with :class:`templateflow.client.TemplateFlowClient` (the client behind
``templateflow.api``) on the cache folder, with ``autoupdate`` off.  Only ``ls`` is used at run time:
``get`` would download the 0-byte placeholders TemplateFlow leaves for files it has not fetched, and a
run on a compute node (or in a container run with ``--network none``) must never reach the network.
A placeholder or a missing file is refused with one line (exit 66) that says how to fill the cache;
:func:`prefetch` (``python -m latentbids.resources.templates --prefetch``) fills it where there is
internet, e.g. when the container image is built.

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

from latentbids.errors import MissingInputError, UsageError

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

#: fMRIPrep's default space and the offline default's TemplateFlow twin: what the image pre-fetches.
PREFETCH_DEFAULT = ("MNI152NLin2009cAsym:res-1", "MNI152NLin2009cAsym:res-2", "MNI152NLin2009aSym:res-1")


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


def prefetch(specs: list[str], home: str | os.PathLike | None = None, s3_root: str | None = None) -> list[Path]:
    """Download what latentbids reads of each ``SPACE:res-N`` into the cache (needs internet).

    Meant for image builds and login nodes (``s3_root``: a mirror of TemplateFlow's archive).
    Returns the files latentbids will read; each space is then checked offline as a run would.
    """
    from latentbids.resources.templates import parse_output_space

    home = templateflow_home(home)
    home.mkdir(parents=True, exist_ok=True)
    os.environ["TEMPLATEFLOW_HOME"] = str(home)
    os.environ["TEMPLATEFLOW_AUTOUPDATE"] = "1"
    from templateflow.client import TemplateFlowClient

    client = TemplateFlowClient(root=home, autoupdate=True, **({"s3_root": s3_root} if s3_root else {}))
    wanted = []
    for spec in specs:
        space, res = parse_output_space(spec)
        if not str(res).isdigit():
            raise UsageError(f"--prefetch {spec}: give a TemplateFlow resolution index, e.g. {space}:res-1")
        index = int(res)
        if index not in defined_resolutions(space, home):
            raise UsageError(f"--prefetch {spec}: TemplateFlow defines no res-{index} for {space}")
        wanted.append((space, index))
        queries = [*QUERIES.values(), {"suffix": "T1w", "desc": "brain"}]
        for query in queries:
            try:
                client.get(space, resolution=index, extension=".nii.gz", **query)
            except Exception as exc:  # noqa: BLE001 - requests/TemplateFlow errors, said in one line
                raise MissingInputError(f"--prefetch {spec}: TemplateFlow download failed ({type(exc).__name__}: "
                                        f"{' '.join(str(exc).split())[:300]}): check the network and retry") from None
    _client.cache_clear()  # a run in this process must index the cache as it is now
    files: list[Path] = []
    for space, index in wanted:
        files += resolve_files(space, index, home).values()
    return files


def main(argv: list[str] | None = None) -> int:
    """``python -m latentbids.resources.templates --prefetch [SPACE:res-N ...]``."""
    import argparse

    from latentbids.errors import LatentbidsError

    parser = argparse.ArgumentParser(
        prog="python -m latentbids.resources.templates",
        description="Fill a TemplateFlow cache with the templates latentbids reads (needs internet; run "
                    "at image build time or on a login node). Runs never download.",
    )
    parser.add_argument("--prefetch", nargs="*", metavar="SPACE:res-N", default=None,
                        help=f"spaces to fetch (default: {' '.join(PREFETCH_DEFAULT)})")
    parser.add_argument("--templateflow-home", metavar="DIR",
                        help="cache folder (default: $TEMPLATEFLOW_HOME, else TemplateFlow's default)")
    parser.add_argument("--check", nargs="*", metavar="SPACE:res-N", default=None,
                        help="check offline that the cache holds these spaces (exit 66 if not)")
    parser.add_argument("--s3-root", metavar="URL", help="a mirror of TemplateFlow's archive (default: TemplateFlow's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.prefetch is not None:
            files = prefetch(list(args.prefetch) or list(PREFETCH_DEFAULT), args.templateflow_home, args.s3_root)
            print(f"TemplateFlow cache {templateflow_home(args.templateflow_home)}: {len(files)} file(s) ready")
        if args.check is not None:
            from latentbids.resources.templates import get_template, parse_output_space

            for spec in list(args.check) or list(PREFETCH_DEFAULT):
                space, res = parse_output_space(spec)
                tpl = get_template(space, res, args.templateflow_home)
                print(f"{spec}: {tpl.name}, {tpl.resolution_text}")
        if args.prefetch is None and args.check is None:
            parser.print_help()
            return 64
    except LatentbidsError as exc:
        print(f"ERROR: {exc.message}")
        return exc.exit_code
    return 0
