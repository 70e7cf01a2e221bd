"""Fail open: an error inside coordgap is counted and logged once, never raised into the graph.

Set ``COORDGAP_RAISE_INTERNAL=1`` to re-raise instead (coordgap's own test
suite does, so its bugs fail loudly there and silently nowhere else).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

logger = logging.getLogger("coordgap")

_logged: set[str] = set()
_logged_lock = threading.Lock()


def raise_internal() -> bool:
    """Return True when internal errors must be re-raised (coordgap's own tests)."""
    return os.environ.get("COORDGAP_RAISE_INTERNAL", "") in ("1", "true", "yes")


def report_internal_error(where: str, exc: BaseException, count: Callable[[], None] | None) -> None:
    """Count an internal error and log it the first time it happens at ``where``."""
    if count is not None:
        try:
            count()
        except Exception:  # noqa: BLE001 - counting must not fail the graph either
            pass
    with _logged_lock:
        first = where not in _logged
        _logged.add(where)
    if first:
        logger.warning(
            "coordgap: internal error in %s (%s: %s). Your graph ran on unchanged, with less "
            "telemetry; this is counted in coordgap.internal.errors. Please report it.",
            where,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
    if raise_internal():
        raise exc
