"""A folder replaced as a whole (utils/staging.py): the previous complete set, or the new one, never a mix."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from latentbids.utils.staging import StagedFolder


def _set(folder: Path, **files) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


def _content(folder: Path) -> dict:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def test_commit_replaces_the_whole_set(tmp_path):
    target = tmp_path / "group" / "ae-K32"
    _set(target, **{"old.tsv": "old", "shared.tsv": "old"})
    with StagedFolder(target) as staged:
        _set(staged.path, **{"shared.tsv": "new", "new.tsv": "new"})
        assert _content(target) == {"old.tsv": "old", "shared.tsv": "old"}  # untouched until the swap
        staged.commit()
    assert _content(target) == {"new.tsv": "new", "shared.tsv": "new"}
    assert staged.final(staged.path / "new.tsv") == target / "new.tsv"
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".ae-K32.")] == []  # no lock, no staging left


def test_a_failed_run_leaves_the_previous_set(tmp_path):
    target = tmp_path / "ae-K32"
    _set(target, **{"a.tsv": "old"})
    with pytest.raises(RuntimeError):
        with StagedFolder(target) as staged:
            _set(staged.path, **{"a.tsv": "half"})
            raise RuntimeError("the analysis failed")
    assert _content(target) == {"a.tsv": "old"}
    assert [p.name for p in tmp_path.iterdir() if "staging" in p.name] == []


def test_an_unused_staging_folder_leaves_no_trace(tmp_path):
    with StagedFolder(tmp_path / "ae-K32") as staged:
        assert not staged.used
    assert list(tmp_path.iterdir()) == []


def test_a_set_moved_aside_by_a_killed_run_is_put_back(tmp_path):
    """A run killed between the two renames of its swap leaves the previous set under ``.<name>.old-*``
    and no target: the next run restores it before anything else."""
    target = tmp_path / "ae-K32"
    _set(tmp_path / ".ae-K32.old-123-abcdef12", **{"a.tsv": "previous"})
    with StagedFolder(target):
        assert _content(target) == {"a.tsv": "previous"}


def test_sigterm_removes_the_staging_folder(tmp_path):
    """The cancellation watchdog removes an uncommitted staging folder when the process is ended."""
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        from pathlib import Path
        from latentbids.utils.processes import install_signal_handlers
        from latentbids.utils.staging import StagedFolder
        install_signal_handlers()
        with StagedFolder(Path({str(tmp_path / 'ae-K32')!r})) as staged:
            (staged.path / "a.tsv").write_text("half")
            print(staged.path, flush=True)
            time.sleep(30)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    staging = Path(proc.stdout.readline().strip())
    assert staging.is_dir()
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
    assert not staging.exists() and not (tmp_path / "ae-K32").exists()


def test_an_error_inside_the_staging_folder_names_the_final_path(tmp_path):
    from latentbids.errors import StorageError

    target = tmp_path / "ae-K32"
    with pytest.raises(StorageError) as info:
        with StagedFolder(target) as staged:
            raise StorageError(f"cannot write {staged.path / 'a.tsv'}: No space left on device (ENOSPC)")
    assert str(target / "a.tsv") in str(info.value) and "staging" not in str(info.value)
