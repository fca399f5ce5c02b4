"""The files of a model folder: checksums, and paths that cannot leave the folder.

A model folder is data that users copy between machines and labs; whatever its ``model.json`` says, a reader
must only ever open regular files inside it, and know that they are the bytes that were written.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from latentbids.errors import MissingInputError


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 checksum of a file's bytes (read in blocks of 1 MiB).

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    str
        The hex digest (64 lowercase hex characters).
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def inside(model_dir: Path, rel, what: str) -> Path:
    """``model_dir / rel`` when ``rel`` is a relative path to a regular file inside the model folder.

    A model folder is data a user copies around; its ``model.json`` must not be able to point the reader
    at ``/dev/zero`` or at a file of another folder (``../``, an absolute path, a symlink out).

    Parameters
    ----------
    model_dir : pathlib.Path
        The model folder.
    rel : str
        The path recorded in ``model.json``.
    what : str
        What the file is, for the message.

    Returns
    -------
    pathlib.Path
        The file's path.

    Raises
    ------
    MissingInputError
        ``rel`` is not a string, is absolute, leaves the folder, or is not a regular file.
    """
    root = Path(model_dir).resolve()
    if not isinstance(rel, str) or not rel or Path(rel).is_absolute():
        raise MissingInputError(f"--model {model_dir}: model.json gives {what} as {rel!r}, not a path inside the "
                                "folder: recopy the model folder")
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        raise MissingInputError(f"--model {model_dir}: {what} ({rel}) lies outside the model folder: recopy the "
                                "model folder")
    if not path.is_file():
        raise MissingInputError(f"--model {model_dir}: {what} ({rel}) is missing or not a regular file: copy the "
                                "whole model folder")
    return path
