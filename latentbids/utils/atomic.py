"""Atomic file writes: write under a temporary name in the same folder, then rename.

A rename within one file system is atomic on POSIX, so a reader (or a rerun after an interrupted
job) sees either the old complete file or the new complete file, never a half-written one.  Many
participant jobs may write into one output folder at once; each temporary name is unique.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

#: Temporary paths being written right now (removed by the cancellation watchdog before a hard exit).
_PENDING: set[Path] = set()


def remove_pending_temporaries() -> None:
    """Remove every temporary file or folder still being written (the process is about to end)."""
    for path in list(_PENDING):
        with contextlib.suppress(OSError):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink()
        _PENDING.discard(path)


@contextlib.contextmanager
def pending(path: str | os.PathLike) -> Iterator[Path]:
    """Register ``path`` (a temporary file or folder) as being written for the duration of a block."""
    path = Path(path)
    _PENDING.add(path)
    try:
        yield path
    finally:
        _PENDING.discard(path)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    On any exception the temporary file is removed and ``target`` is left untouched.
    ``suffix`` defaults to the target's full suffix (e.g. ``.nii.gz``) so that libraries that
    infer the format from the extension (nibabel, matplotlib) write the right format.

    A write that fails because of the storage (disk full, quota, read-only mount, no permission,
    I/O error) raises :class:`~latentbids.errors.StorageError` naming ``target`` (not the temporary
    name the user never sees) and the errno: one line and exit 73 (74 for EIO) instead of a
    traceback, and still an ``OSError`` for callers that handle one.
    """
    target = Path(target)
    if suffix is None:
        suffix = "".join(target.suffixes)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise _storage_error(exc, target) from exc
    tmp_path = Path(tmp)
    try:
        with pending(tmp_path):
            yield tmp_path
            os.chmod(tmp_path, 0o644)
            os.replace(tmp_path, target)
    except BaseException as exc:
        _remove(tmp_path)
        error = _storage_error(exc, target, tmp_path) if isinstance(exc, OSError) else exc
        if error is exc:
            raise
        raise error from exc


def _remove(tmp_path: Path) -> None:
    """Remove a temporary file or folder, whatever is left of it; a failure here must not hide the
    error that made the write fail (e.g. a filesystem remounted read-only mid-write)."""
    with contextlib.suppress(OSError):
        if tmp_path.is_dir():
            shutil.rmtree(tmp_path, ignore_errors=True)
        else:
            tmp_path.unlink(missing_ok=True)


def _storage_error(exc: OSError, target: Path, tmp_path: Path | None = None) -> OSError:
    """``exc`` as a StorageError naming ``target`` when the storage caused it; else ``exc`` itself.

    The path named is the one the error was about, with the temporary name replaced by ``target``.
    """
    from latentbids.errors import storage_error

    where = exc.filename
    if where is None or (tmp_path is not None and Path(str(where)) == tmp_path):
        where = target
    return storage_error(exc, where) or exc


def write_text(target: str | os.PathLike, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``target``."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_json(target: str | os.PathLike, data, indent: int = 2) -> Path:
    """Atomically write ``data`` as pretty JSON (sorted keys are not forced: order is meaningful)."""
    return write_text(target, json.dumps(data, indent=indent, default=str) + "\n")


def write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    """Atomically write raw bytes to ``target``."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def save_nifti(img, target: str | os.PathLike) -> Path:
    """Atomically save a nibabel image to ``target`` (format from its extension)."""
    import nibabel as nib

    with atomic_path(target) as tmp:
        nib.save(img, str(tmp))
    return Path(target)


def write_tsv(df, target: str | os.PathLike, **kwargs) -> Path:
    """Atomically write a pandas DataFrame as a BIDS TSV (tab separated, ``n/a`` for missing)."""
    kwargs.setdefault("index", False)
    kwargs.setdefault("na_rep", "n/a")
    with atomic_path(target) as tmp:
        df.to_csv(tmp, sep="\t", **kwargs)
    return Path(target)
