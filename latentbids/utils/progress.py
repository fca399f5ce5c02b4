"""One log line when a long step starts and one with its duration when it ends.

The group analysis runs for minutes between the last training epoch and the report; a user
watching the console should see which test is running, on what size, and how long each took.
"""

from __future__ import annotations

import contextlib
import logging
import time


@contextlib.contextmanager
def step(logger: logging.Logger, what: str):
    """Log ``what`` now and ``what: done in N s`` when the block ends without an error."""
    logger.info("%s ...", what)
    start = time.perf_counter()
    yield
    logger.info("%s: done in %.1f s", what, time.perf_counter() - start)
