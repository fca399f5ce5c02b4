"""A folder replaced as a whole: its new content is built beside it, then swapped in.

Why: a group run writes tens of files (latent tables, curves, maps, claims, ``analysis.json``, the report)
that only make sense together.  Written one by one into place, an interrupted or failed rerun would leave
one run's map beside another run's claims.  :class:`StagedFolder` builds the new set in a hidden folder
beside the target and, on :meth:`StagedFolder.commit`, moves the old set away and the new one in under a
lock, so a reader finds the previous complete set, the new complete set, or (for the instant between the
two renames, or after a kill there) none; never a mix.  An uncommitted staging folder is removed on exit,
and by the cancellation watchdog on SIGINT/SIGTERM.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

from latentbids.utils.atomic import pending
from latentbids.utils.locks import locked


class StagedFolder:
    """Build the content of ``target`` in a staging folder; :meth:`commit` swaps it in whole.

    Use as a context manager; the staging folder is made on first access to :attr:`path` (so a process
    that ends up writing nothing, e.g. a ``--fold`` job, leaves no trace) and removed on exit unless
    committed.

    Parameters
    ----------
    target : path-like
        The folder to replace (e.g. ``group/ae-K32``).
    """

    def __init__(self, target: str | os.PathLike):
        self.target = Path(target)
        self._staging = self.target.with_name(f".{self.target.name}.staging-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        self._made = False
        self._pending = contextlib.ExitStack()
        self.committed = False

    @property
    def path(self) -> Path:
        """The staging folder (created on first access)."""
        if not self._made:
            self._staging.mkdir(parents=True, exist_ok=False)
            self._pending.enter_context(pending(self._staging))  # the watchdog removes it on SIGINT/SIGTERM
            self._made = True
        return self._staging

    @property
    def used(self) -> bool:
        """Whether anything asked for the staging folder."""
        return self._made

    def final(self, path):
        """Where ``path`` (inside the staging folder) lies once committed; other paths are returned as they are."""
        if path is None:
            return None
        path = Path(path)
        if self._made and path.is_relative_to(self._staging):
            return self.target / path.relative_to(self._staging)
        return path

    def commit(self, before_swap=None) -> Path:
        """Swap the staged content in: the old folder is moved aside, the new one renamed in, the old removed.

        ``before_swap`` (a callable) runs under the same lock just before the swap, e.g. to remove a
        file outside the folder that belongs to the old set.  Returns the target.
        """
        staging = self.path
        with locked(self.target.parent / f".{self.target.name}.lock", remove=True):
            if before_swap is not None:
                before_swap()
            old = None
            if self.target.exists():
                old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
                os.rename(self.target, old)
            os.rename(staging, self.target)
            self.committed = True
            self._pending.close()
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        return self.target

    def __enter__(self) -> "StagedFolder":
        self.target.parent.mkdir(parents=True, exist_ok=True)
        if not any(self.target.parent.glob(f".{self.target.name}.old-*")):
            return self
        with locked(self.target.parent / f".{self.target.name}.lock", remove=True):
            for leftover in sorted(self.target.parent.glob(f".{self.target.name}.old-*")):
                # a set moved aside by a run killed between its two renames: put it back if nothing
                # replaced it (the previous complete set), else it is superseded
                with contextlib.suppress(OSError):
                    if self.target.exists():
                        shutil.rmtree(leftover)
                    else:
                        os.rename(leftover, self.target)
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if self._made and not self.committed:
            shutil.rmtree(self._staging, ignore_errors=True)
        self._pending.close()
        if exc is not None and exc.args and isinstance(exc.args[0], str) and str(self._staging) in exc.args[0]:
            # a write that failed inside the staging folder is named where the user will look for it
            exc.args = (exc.args[0].replace(str(self._staging), str(self.target)),) + exc.args[1:]
