"""``--clean-workdir``: empty the folders latentbids keeps in the work dir, safely.

Only what latentbids itself creates there is removed (a work dir given by mistake, e.g. a home
folder, loses nothing else), and never while another latentbids job holds a lock in it: array tasks
share one work dir, and emptying it under a running task would break that task.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from latentbids.errors import UsageError

LOGGER = logging.getLogger("latentbids")

#: What latentbids writes into a work dir (participant workflow, resources, locks, index, validator
#: reports, model cache and checkpoints, redirected caches).
WORK_DIR_ENTRIES = ("latentbids_participant_wf", "resources", "locks", "bids_db", "logs", "model_cache",
                    "model_training", "caches")


def busy_locks(work_dir: str | Path) -> list[Path]:
    """Lock files in ``work_dir/locks`` that a running latentbids process holds right now."""
    from latentbids.utils.locks import try_lock

    busy = []
    for lock in sorted((Path(work_dir) / "locks").glob("*.lock")):
        handle = try_lock(lock)
        if handle is None:
            busy.append(lock)
        else:
            handle.close()
    return busy


def clean_work_dir(config) -> list[Path]:
    """Remove latentbids' folders from the work dir; return what was removed (exit 64 when busy)."""
    work = Path(config.execution.work_dir)
    busy = busy_locks(work)
    if busy:
        raise UsageError(f"--clean-workdir: another latentbids job is using {work} (holds {busy[0].name}): "
                         "wait for it to end, or use another -w")
    removed = []
    for name in WORK_DIR_ENTRIES:
        path = work / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
            removed.append(path)
        elif path.exists():
            path.unlink()
            removed.append(path)
    kept = sorted(p.name for p in work.iterdir()) if work.is_dir() else []
    LOGGER.info("--clean-workdir: removed %s from %s%s", ", ".join(p.name for p in removed) or "nothing", work,
                f"; left alone (not latentbids'): {', '.join(kept)}" if kept else "")
    return removed
