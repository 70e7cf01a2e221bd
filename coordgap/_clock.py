"""The clock every recorded time comes from: wall time in nanoseconds since the epoch.

One seam, so that a test can put coordgap on a clock of its own (deterministic span and
event times): :func:`use` swaps it, and everything that records a time reads it through
:func:`now_ns` at the moment it records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["now_ns", "use"]

now_ns: Callable[[], int] = time.time_ns
"""Return the current time in nanoseconds (``time.time_ns`` unless a test swapped it)."""


@contextmanager
def use(clock: Callable[[], int]) -> Iterator[None]:
    """Make ``clock`` coordgap's clock for the duration of the ``with`` block.

    Example::

        ticks = itertools.count(1_000_000_000, 1_000)
        with use(lambda: next(ticks)):
            app.invoke({...})
    """
    global now_ns
    previous = now_ns
    now_ns = clock
    try:
        yield
    finally:
        now_ns = previous
