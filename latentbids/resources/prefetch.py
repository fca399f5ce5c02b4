"""Filling a TemplateFlow cache where there is internet: ``python -m latentbids.resources.templates``.

``--prefetch`` downloads what latentbids reads of each ``SPACE:res-N`` (at image build time, or on a
login node); ``--check`` tests offline, as a run would, that a cache holds them.  Runs never download
(:mod:`latentbids.resources.templateflow_cache`).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from latentbids.errors import MissingInputError, UsageError
from latentbids.resources.templateflow_cache import (
    QUERIES,
    defined_resolutions,
    reset_client,
    resolve_files,
    templateflow_home,
)
from latentbids.resources.templates import get_template, parse_output_space

#: fMRIPrep's default space and the offline default's TemplateFlow twin: what the image pre-fetches.
PREFETCH_DEFAULT = ("MNI152NLin2009cAsym:res-1", "MNI152NLin2009cAsym:res-2", "MNI152NLin2009aSym:res-1")


def prefetch(specs: list[str], home: str | os.PathLike | None = None, s3_root: str | None = None) -> list[Path]:
    """Download what latentbids reads of each ``SPACE:res-N`` into the cache (needs internet).

    Meant for image builds and login nodes (``s3_root``: a mirror of TemplateFlow's archive).
    Returns the files latentbids will read; each space is then checked offline as a run would.
    """
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
    reset_client()  # a run in this process must index the cache as it is now
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
