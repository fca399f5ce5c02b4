"""The process state antspyx reads, set for one block and restored after it.

ITK takes its thread count from an environment variable and antsRegistration its random seed from
a module attribute of antspyx; both are process-wide, so every step sets them for the duration of its
own call only (a Nipype worker runs many steps one after another).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def itk_threads(n: int | None) -> Iterator[None]:
    """Set ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` (read by antspyx/ITK filters) for a block.

    Parameters
    ----------
    n : int or None
        Threads for ITK; ``None`` or < 1 leaves the variable as it is.

    Yields
    ------
    None
        Inside the block ITK uses ``n`` threads; the old value is back after it.
    """
    if not n or n < 1:
        yield
        return
    old = os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(int(n))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", None)
        else:
            os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = old


@contextlib.contextmanager
def ants_seed(seed: int | None) -> Iterator[None]:
    """Fix antspyx's random seed (antsRegistration's random metric sampling) for a block.

    Parameters
    ----------
    seed : int or None
        The seed; ``None`` lets antsRegistration draw one (not reproducible).

    Yields
    ------
    None
        Inside the block antsRegistration uses ``seed``; the old seed is back after it.
    """
    import ants

    old = ants.config._random_seed
    ants.config._random_seed = None if seed is None else int(seed)
    try:
        yield
    finally:
        ants.config._random_seed = old
