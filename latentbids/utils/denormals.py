"""Flush denormal floats to zero in every thread that runs torch on the CPU.

Why: HD-BET's activations (and an autoencoder's, late in training) decay into denormal floats
(|x| < 1.2e-38 in float32): ~5 % of HD-BET's convolution outputs on an IXI scan.  Intel cores
compute every operation that takes or makes a denormal in microcode, 10-100x slower; one participant
run took 983 s instead of 13-24 s for brain extraction on an Intel Xeon.  Setting the FTZ
(flush-to-zero) and DAZ (denormals-are-zero) bits of the x86 MXCSR register makes them zeros, at a
cost to the results far below float32 precision (see tests/utils/test_utils_denormals.py).

MXCSR is per thread, and that is the trap: ``torch.set_flush_denormal(True)`` sets only the calling
thread.  A thread inherits the register of the thread that creates it, so the intra-op (OpenMP)
threads that torch creates *after* the call flush, and those that already exist do not: they go on
computing denormals, half the work on two threads.  :func:`set_flush_denormal` therefore also runs
one OpenMP parallel region of ``torch.get_num_threads()`` threads (libgomp's ``GOMP_parallel``, the
runtime torch's CPU wheels ship; LLVM's libomp and Intel's libiomp5 export the same entry point)
in which every thread of the caller's team sets its own register.  A forked Nipype worker starts
with its parent's main-thread register and has no OpenMP threads until its first parallel region,
so setting it in the worker before torch runs, as :func:`latentbids.anat.brain_mask.hdbet_brain_mask`
does, covers the worker and every thread it creates.

The setting is scoped (:func:`flush_denormals` restores the previous state): ITK (N4, SyN, Atropos)
and the analysis keep IEEE behaviour, so their results do not depend on which step ran before them
in the same process.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
from pathlib import Path
from typing import Iterator

import numpy as np

LOGGER = logging.getLogger("latentbids")

_OPENMP_NAMES = ("libgomp", "libomp", "libiomp5")
_TEAM_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_runtime: ctypes.CDLL | None | bool = False  # False: not looked up yet; None: not found


def denormals_flushed() -> bool:
    """Whether FTZ is on in the calling thread: a float32 product below the normal range is 0.

    1e-30 * 1e-10 = 1e-40 is a denormal float32 (the smallest normal is 1.2e-38).
    """
    return bool(np.float32(1e-30) * np.float32(1e-10) == 0)


def _openmp_runtime() -> ctypes.CDLL | None:
    """The OpenMP runtime torch's CPU kernels use (the one loaded from torch's own folder first)."""
    global _runtime
    if _runtime is not False:
        return _runtime  # type: ignore[return-value]
    import torch

    torch_lib = str(Path(torch.__file__).parent)
    loaded = []
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                path = line.split()[-1] if line.strip() else ""
                if any(Path(path).name.startswith(name) for name in _OPENMP_NAMES) and path not in loaded:
                    loaded.append(path)
    except OSError:  # not Linux
        pass
    loaded.sort(key=lambda p: not p.startswith(torch_lib))
    _runtime = None
    for path in loaded:
        try:
            lib = ctypes.CDLL(path)
            lib.GOMP_parallel.argtypes = [_TEAM_FN, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
            lib.GOMP_parallel.restype = None
        except (OSError, AttributeError):
            continue
        _runtime = lib
        break
    return _runtime  # type: ignore[return-value]


def set_flush_denormal(enabled: bool = True) -> bool:
    """Set FTZ/DAZ in the calling thread and in every intra-op thread of its OpenMP team.

    Returns False where the CPU has no such mode (torch's answer: non-x86, or no DAZ), True
    otherwise.  Call it from the thread that will run the torch operations (the team is per
    calling thread).
    """
    import torch

    if not torch.set_flush_denormal(enabled):
        return False
    lib = _openmp_runtime()
    n = int(torch.get_num_threads())
    if lib is None or n < 2:
        return True  # no intra-op team to reach (or none found: new threads inherit this one's bits)
    done: list[int] = []

    def each_thread(_data) -> None:
        torch.set_flush_denormal(enabled)
        done.append(threading.get_native_id())

    callback = _TEAM_FN(each_thread)  # kept alive for the duration of the call
    lib.GOMP_parallel(callback, None, n, 0)
    LOGGER.debug("Denormal flushing %s in %d thread(s) of process %d", "on" if enabled else "off",
                 len(set(done)), os.getpid())
    return True


@contextlib.contextmanager
def flush_denormals(active: bool = True) -> Iterator[bool]:
    """Flush denormals (FTZ/DAZ) in this thread and its torch intra-op threads for a block.

    Yields whether flushing is on (False where the CPU has no such mode, or ``active`` is False:
    then nothing is touched, e.g. for a CUDA device).  Afterwards the calling thread and its team
    are back to the calling thread's previous state.
    """
    if not active:
        yield False
        return
    before = denormals_flushed()
    supported = set_flush_denormal(True)
    try:
        yield supported
    finally:
        if supported and not before:
            set_flush_denormal(False)
