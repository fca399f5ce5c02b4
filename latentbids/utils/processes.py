"""Prompt, clean cancellation: SIGTERM or SIGINT ends the whole process tree within seconds.

What a cluster sends: ``scancel``, a SLURM time limit and ``docker stop`` send SIGTERM (SLURM follows
with SIGKILL 30 s later, Docker 10 s later); Ctrl-C sends SIGINT to the terminal's foreground
process group.  The rules here:

* The main process (:func:`install_signal_handlers`) turns the first SIGTERM/SIGINT into a
  ``KeyboardInterrupt``: Python code unwinds, so every file being written under a temporary name
  (:mod:`latentbids.utils.atomic`) is removed and nothing half-written reaches the output.  The CLI
  then ends every descendant (:func:`terminate_tree`) and exits 130, without waiting for any pool
  to drain.  A watchdog makes sure the process is gone :data:`DEADLINE_S` seconds after the signal
  even if the unwinding blocks (it removes the pending temporary files and exits 130 itself).
* Worker processes (Nipype MultiProc, :func:`init_worker`) get their own process group, keep the
  default SIGTERM action (die at once, even inside HD-BET's or ITK's C++ code, where a Python
  handler would not run), ignore SIGINT (the main process decides), and die with their parent
  (``PR_SET_PDEATHSIG``) if it is SIGKILLed.  Workers write only inside the work dir, where an
  unfinished Nipype node is recomputed on the next run: a rerun with the same work dir resumes.
* :func:`terminate_tree` sends SIGTERM to every descendant (to the process group of a group
  leader, so whatever a worker started goes too), waits :data:`GRACE_S` seconds, then SIGKILLs the
  survivors (a worker that blocks SIGTERM, or sits in uninterruptible code).
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
import time
from pathlib import Path

LOGGER = logging.getLogger("latentbids")

#: Seconds the descendants get to end after SIGTERM before SIGKILL.
GRACE_S = 3.0
#: Seconds after the first signal at which the watchdog ends the process whatever it is doing.
DEADLINE_S = 8.0

_PR_SET_PDEATHSIG = 1
_signals_received: list[int] = []


# ------------------------------------------------------------------------------------------------
# the process tree
def _stat(pid: int) -> tuple[int, str] | None:
    """``(parent pid, state letter)`` of ``pid`` from ``/proc``, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces and ')'
    return int(fields[1]), fields[0]


def is_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (a dead child its parent has not reaped yet)."""
    stat = _stat(pid)
    return stat is not None and stat[1] not in ("Z", "X")


def descendants(pid: int | None = None) -> list[int]:
    """Every living process below ``pid`` (default: this process), parents before children."""
    root = os.getpid() if pid is None else pid
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:  # pragma: no cover - not Linux: the children multiprocessing knows of
        import multiprocessing

        return [p.pid for p in multiprocessing.active_children() if p.pid]
    for entry in entries:
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[1] not in ("Z", "X"):
                children.setdefault(stat[0], []).append(int(entry))
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


def _signal(pid: int, signum: int) -> None:
    """Signal ``pid``'s whole process group when it leads its own group, else ``pid`` alone."""
    try:
        if os.getpgid(pid) == pid and pid != os.getpgid(0):
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def terminate_tree(grace: float = GRACE_S, pid: int | None = None) -> list[int]:
    """End every descendant of ``pid`` (default: this process): SIGTERM, then SIGKILL after ``grace``.

    Returns the pids that had to be SIGKILLed.  Does not wait for pools or reap children (their
    owners do, or init when this process exits).
    """
    targets = descendants(pid)
    if not targets:
        return []
    for child in targets:
        _signal(child, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        targets = sorted(set(targets) | set(descendants(pid)))  # children started meanwhile
        if not any(is_alive(p) for p in targets):
            return []
        time.sleep(0.05)
    killed = [p for p in targets if is_alive(p)]
    for child in killed:
        _signal(child, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(is_alive(p) for p in killed):
        time.sleep(0.05)
    return killed


# ------------------------------------------------------------------------------------------------
# worker processes
def init_worker(cwd: str | None = None) -> None:
    """Initializer of every worker process (Nipype MultiProc; see the module docstring)."""
    parent = os.getppid()  # may be 1 legitimately: latentbids is PID 1 in a container without --init
    if cwd:
        os.chdir(cwd)
    os.environ["NIPYPE_NO_ET"] = "1"
    try:
        os.setpgid(0, 0)
    except OSError:  # pragma: no cover - already a session or group leader
        pass
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


# ------------------------------------------------------------------------------------------------
# the main process
def interrupted() -> int | None:
    """The first SIGTERM/SIGINT this process received (after :func:`install_signal_handlers`)."""
    return _signals_received[0] if _signals_received else None


def _on_signal(signum, _frame) -> None:
    """First signal: start the watchdog and unwind; later ones: already on the way out."""
    first = not _signals_received
    _signals_received.append(signum)
    if first:
        threading.Thread(target=_watchdog, args=(signum,), name="latentbids-cancel-watchdog",
                         daemon=True).start()
        raise KeyboardInterrupt(f"signal {signum}")


def _watchdog(signum: int) -> None:
    """End the process :data:`DEADLINE_S` after the signal if the main thread has not managed to."""
    time.sleep(DEADLINE_S)
    from latentbids.utils.atomic import remove_pending_temporaries

    LOGGER.error("Interrupted (signal %d): still busy %.0f s later; ending every process now", signum,
                 DEADLINE_S)
    terminate_tree(grace=0.5)
    remove_pending_temporaries()
    for handler in logging.getLogger().handlers + LOGGER.handlers:
        try:
            handler.flush()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
    os._exit(130)


def install_signal_handlers() -> None:
    """SIGTERM and SIGINT unwind the main thread (``KeyboardInterrupt``) and arm the watchdog.

    Call once from the main thread of the main process, before any worker is started.
    """
    _signals_received.clear()
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
