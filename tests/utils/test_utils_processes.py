"""The process-tree helpers behind cancellation (the end-to-end runs are in tests/cli/test_cli_cancellation.py)."""
from __future__ import annotations

import subprocess
import sys
import time

from latentbids.utils.processes import descendants, is_alive, terminate_tree

PARENT = """
import signal, subprocess, sys, time
deaf = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(120)"
polite = "import time; print('ready', flush=True); time.sleep(120)"
kids = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for code in (deaf, polite)]
for kid in kids:
    kid.stdout.readline()
print(" ".join(str(k.pid) for k in kids), flush=True)
time.sleep(120)
"""


def test_terminate_tree_kills_what_ignores_sigterm():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        deaf, polite = map(int, parent.stdout.readline().split())
        assert set(descendants(parent.pid)) == {deaf, polite}
        t0 = time.monotonic()
        killed = terminate_tree(grace=1.0, pid=parent.pid)
        assert killed == [deaf]  # SIGTERM ended the polite one; the deaf one needed SIGKILL
        assert time.monotonic() - t0 < 4
        assert not is_alive(deaf) and not is_alive(polite)  # zombies until their parent reaps them
        assert descendants(parent.pid) == []
    finally:
        parent.kill()
        parent.wait()


def test_terminate_tree_without_children_returns_at_once():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        t0 = time.monotonic()
        assert terminate_tree(grace=5.0, pid=proc.pid) == []
        assert time.monotonic() - t0 < 1
    finally:
        proc.kill()
        proc.wait()


def test_worker_setup():
    """A worker leads its own process group, dies on SIGTERM at once and ignores SIGINT."""
    code = ("import os, signal; from latentbids.utils.processes import init_worker; init_worker(); "
            "print(os.getpgid(0) == os.getpid(), signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, "
            "signal.getsignal(signal.SIGINT) == signal.SIG_IGN, flush=True)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "True", "True"], out.stderr


ORPHAN = """
import os, sys, time
from pathlib import Path
out = Path(sys.argv[1])
first = os.getpid()
if os.fork():
    os._exit(0)  # the parent goes: the child is adopted by PID 1 (or a subreaper), as under `docker run`
while os.getppid() == first:
    time.sleep(0.01)
from latentbids.utils.processes import init_worker
init_worker()
out.write_text(f"alive, parent {os.getppid()}")
"""


def test_a_worker_whose_parent_is_pid_1_keeps_running(tmp_path):
    """latentbids is PID 1 in a container started without --init: its workers' parent pid is 1."""
    out = tmp_path / "worker"
    subprocess.run([sys.executable, "-c", ORPHAN, str(out)], timeout=60, check=True)
    deadline = time.monotonic() + 30
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert out.read_text().startswith("alive"), "init_worker ended a worker whose parent is PID 1"
