"""File locks on the two kinds of filesystem a cluster job meets, in miniature.

``local``: the test's own folder.  ``fuse``: the same folder seen through a FUSE mount (bindfs), the
nearest to a network filesystem this sandbox can make (the kernel has no NFS client here).  On each:
two processes exclude each other, a waiting lock is granted when the holder finishes, and a killed
holder leaves no stale lock.  What a mount in miniature cannot show is two *machines*: bindfs, like an
NFS mount with ``local_lock`` or ``nolock``, does not pass locks to the other views of the files, so
locks exclude only processes using the same mount (docs/cluster.md says which mounts work).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from latentbids.utils.locks import try_lock

HOLD = """
import sys, time
from latentbids.utils.locks import {what}
lock, marker = sys.argv[1], sys.argv[2]
{body}
"""
HOLD_TRY = HOLD.format(what="try_lock", body="""
handle = try_lock(lock)
assert handle is not None
open(marker, "w").close()
time.sleep(600)
""")
SERIAL = HOLD.format(what="locked", body="""
with locked(lock):
    with open(marker, "a") as fh:
        fh.write("start\\n")
    time.sleep(0.5)
    with open(marker, "a") as fh:
        fh.write("end\\n")
""")


def _fuse_mount(tmp_path: Path) -> Path:
    if os.geteuid() != 0 or not Path("/dev/fuse").exists() or shutil.which("bindfs") is None:
        pytest.skip("no FUSE mount possible here (needs root, /dev/fuse and bindfs)")
    source, mount = tmp_path / "backing", tmp_path / "fuse"
    source.mkdir()
    mount.mkdir()
    if subprocess.run(["bindfs", str(source), str(mount)], capture_output=True).returncode != 0:
        pytest.skip("bindfs could not mount in this sandbox")
    return mount


@pytest.fixture(params=["local", "fuse"])
def folder(request, tmp_path):
    if request.param == "local":
        yield tmp_path / "local"
        return
    mount = _fuse_mount(tmp_path)
    try:
        assert "fuse" in subprocess.run(["stat", "-f", "-c", "%T", str(mount)], capture_output=True,
                                        text=True).stdout
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def _spawn(code: str, *args) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env)


def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_a_held_lock_excludes_and_a_killed_holder_frees_it(folder):
    folder.mkdir(parents=True, exist_ok=True)
    lock, marker = folder / "locks" / "single_subject_sub_01_wf.lock", folder / "held"
    holder = _spawn(HOLD_TRY, lock, marker)
    try:
        _wait_for(marker)
        assert try_lock(lock) is None  # another job is processing this subject
    finally:
        holder.send_signal(signal.SIGKILL)  # scancel --signal=KILL, a node crash: no cleanup runs
        holder.wait()
    handle = try_lock(lock)
    assert handle is not None, "a killed holder left a stale lock"
    handle.close()


def test_waiting_lockers_take_turns(folder):
    folder.mkdir(parents=True, exist_ok=True)
    lock, log = folder / "index.lock", folder / "order.txt"
    jobs = [_spawn(SERIAL, lock, log) for _ in range(3)]
    assert [job.wait(timeout=60) for job in jobs] == [0, 0, 0]
    assert log.read_text().split() == ["start", "end"] * 3  # never two inside at once
