"""Writable places for the caches and scratch space a run needs (numba, matplotlib, deno, torch, tmp).

A container started with ``--read-only`` as an arbitrary uid cannot write where the image points
these libraries (``NUMBA_CACHE_DIR=/opt/cache/numba``, ``MPLCONFIGDIR=/opt/cache/matplotlib``,
``/tmp`` without a tmpfs), and each then fails its own way: numba refuses to compile UMAP ("cannot
cache function 'rdist'") because it only accepts a cache folder it can write, matplotlib warns and
falls back to a temporary folder, which does not exist either, and ``tempfile`` finds no usable
directory.  So at start-up, before any of them is imported, every such place that is not writable is
replaced by a per-user writable one, under the work dir (``-w``) or else ``$TMPDIR/latentbids-$UID``,
through the environment variable the library reads (so Nipype and joblib workers inherit it), with
one log line.  What the image filled at build time (UMAP's compiled functions, matplotlib's font
list) is copied along once, so a read-only image does not redo that work on every run.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, MutableMapping

from latentbids.errors import CannotCreateError

LOGGER = logging.getLogger("latentbids")
WORK_DIR_FOLDER = "caches"  # <work_dir>/caches/<name>


def _home(env: MutableMapping[str, str], xdg: str, fallback: str) -> Path:
    """``$XDG_*_HOME``, else ``$HOME/<fallback>``: where these libraries go when not told."""
    return Path(env.get(xdg) or Path(env.get("HOME") or "/") / fallback)


@dataclass(frozen=True)
class Cache:
    """One place a library writes: its variable, where it goes without it, whether to copy it along."""

    name: str
    variable: str
    default: Callable[[MutableMapping[str, str]], Path] | None  # None: only checked when set
    copy_contents: bool  # filled at build time and worth reusing


CACHES = (
    # First: the fallback ``$TMPDIR/latentbids-$UID`` of the others must itself be writable.
    Cache("tmp", "TMPDIR", lambda _env: Path("/tmp"), copy_contents=False),
    Cache("numba", "NUMBA_CACHE_DIR", lambda env: _home(env, "XDG_CACHE_HOME", ".cache") / "numba", True),
    Cache("matplotlib", "MPLCONFIGDIR", lambda env: _home(env, "XDG_CONFIG_HOME", ".config") / "matplotlib", True),
    # Unset, the validator's cache goes beside its report in the work dir (bids/validation.py).
    Cache("deno", "DENO_DIR", None, False),
    # torch makes this folder whenever torch._dynamo is imported (by its optimizers), even unused;
    # unset, it is $TMPDIR/torchinductor_<user>, so the image names one to keep it off /tmp.
    Cache("torchinductor", "TORCHINDUCTOR_CACHE_DIR", None, False),
)


@dataclass(frozen=True)
class CacheMove:
    """A cache that was pointed elsewhere: from where, to where, and whether its contents came along."""

    variable: str
    configured: Path
    place: Path
    copied: bool

    def __str__(self) -> str:
        return f"{self.variable} {self.configured} -> {self.place}" + (" (contents copied)" if self.copied else "")


def is_writable_dir(path: Path) -> bool:
    """Whether ``path`` is, or can be made, a folder this process can create files in.

    Tried for real (as numba does), not with ``os.access``: read-only mounts, ACLs and root-squashed
    network filesystems all answer honestly that way.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def _copy_contents(source: Path, target: Path) -> bool:
    """Copy ``source`` into the empty or missing ``target`` in one rename, so that jobs sharing a work
    dir never read a half-copied cache; ``False`` when there was nothing to copy or another job won."""
    if not source.is_dir() or not os.access(source, os.R_OK | os.X_OK) or not any(source.iterdir()):
        return False
    if target.is_dir() and any(target.iterdir()):
        return False
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        # The copy is this user's to extend (numba adds what it compiles), whatever the image's modes.
        shutil.copytree(source, staging, copy_function=shutil.copyfile, dirs_exist_ok=True)
        for folder, _, _ in os.walk(staging):
            os.chmod(folder, 0o755)
        os.replace(staging, target)  # replaces an empty folder; fails if another job filled it
        return True
    except OSError:
        return False
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def use_writable_caches(
    work_dir: str | os.PathLike | None, environ: MutableMapping[str, str] | None = None
) -> list[CacheMove]:
    """Point every cache whose configured place is not writable to a writable one; return the moves.

    Call it once at start-up, before numba or matplotlib are imported (they read their variable at
    import).  ``environ`` defaults to ``os.environ``, so child processes inherit the new places.
    Raises :class:`CannotCreateError` (exit 73) when no candidate place is writable.
    """
    env = os.environ if environ is None else environ
    moves = []
    for cache in CACHES:
        if not env.get(cache.variable) and cache.default is None:
            continue
        configured = Path(env.get(cache.variable) or cache.default(env))
        if is_writable_dir(configured):
            continue
        candidates = [Path(env.get("TMPDIR") or "/tmp") / f"latentbids-{os.getuid()}" / cache.name]
        if work_dir:
            candidates.insert(0, Path(work_dir) / WORK_DIR_FOLDER / cache.name)
        place = next((p for p in candidates if p != configured and is_writable_dir(p)), None)
        if place is None:
            raise CannotCreateError(
                f"{cache.variable} {configured} is not writable, nor is any of "
                f"{', '.join(map(str, candidates))}: pass a writable -w/--work-dir or set {cache.variable} "
                "to a writable folder"
            )
        copied = cache.copy_contents and _copy_contents(configured, place)
        env[cache.variable] = str(place)
        if cache.variable == "TMPDIR" and env is os.environ:
            tempfile.tempdir = None  # tempfile caches its choice; let it choose again from $TMPDIR
        moves.append(CacheMove(cache.variable, configured, place, copied))
    if moves:
        LOGGER.info("Caches moved to writable places (their configured places are not): %s",
                    "; ".join(map(str, moves)))
    return moves
