"""File locks for jobs that share a folder (SLURM arrays on one work dir or database dir).

``flock`` locks are released by the kernel when the process dies, so a killed job never leaves a
stale lock behind.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def locked(lock_path: str | os.PathLike, remove: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (created if needed), waiting for it.

    ``remove=True`` deletes the lock file when done, for locks in a folder users read (the output
    dataset) where a 0-byte ``.lock`` would be litter.  Deleting a lock file another job may be
    waiting on is safe only as done here: the holder unlinks it *before* unlocking, and a job that
    gets the lock checks that its file is still the one at ``lock_path`` (else it lost a race with
    that unlink and takes the lock again on the new file).
    """
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fh = open(lock_path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
        except BaseException:  # interrupted while waiting
            fh.close()
            raise
        if not remove or _is_current(fh, lock_path):
            break
        fh.close()  # the holder before us removed this file: lock the one at lock_path now
    try:
        yield
    finally:
        if remove:
            with contextlib.suppress(OSError):
                lock_path.unlink()
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def _is_current(fh, lock_path: Path) -> bool:
    """Whether the open lock file ``fh`` is still the file at ``lock_path`` (not unlinked meanwhile)."""
    try:
        here = os.stat(lock_path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fh.fileno())
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)


def try_lock(lock_path: str | os.PathLike):
    """Take an exclusive lock without waiting: the open file (keep it to hold the lock) or ``None``."""
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(lock_path, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh
