"""Fail open: an error inside coordgap is counted and logged once, never raised into the graph.

The log line names where it happened, the exception's class and the code
frames, never the exception's message: a message may quote the graph's state.

Set ``COORDGAP_RAISE_INTERNAL=1`` to re-raise instead (coordgap's own test
suite does, so its bugs fail loudly there and silently nowhere else).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import traceback
from collections.abc import Callable
from typing import Any

from .semconv import ENV_RAISE_INTERNAL

logger = logging.getLogger("coordgap")

_logged: set[str] = set()
_logged_lock = threading.Lock()


def raise_internal() -> bool:
    """Return True when internal errors must be re-raised (coordgap's own tests)."""
    return os.environ.get(ENV_RAISE_INTERNAL, "") in ("1", "true", "yes")


def report_internal_error(where: str, exc: BaseException, count: Callable[[], None] | None) -> None:
    """Count an internal error and log it the first time it happens at ``where``."""
    if count is not None:
        try:
            count()
        except Exception:
            pass
    with _logged_lock:
        first = where not in _logged
        _logged.add(where)
    if first:
        frames = "".join(traceback.format_tb(exc.__traceback__)) if exc.__traceback__ else ""
        logger.warning(
            "coordgap: internal error in %s (%s). Your graph ran on unchanged, with less "
            "telemetry; this is counted in coordgap.internal.errors and logged once. "
            "Set %s=1 to raise it with its message.\n%s",
            where,
            type(exc).__name__,
            ENV_RAISE_INTERNAL,
            frames,
        )
    if raise_internal():
        raise exc


class guard:
    """Fail open around code that is not on the hot path: an exception inside is counted and
    logged once (:func:`report_internal_error`), never raised into the user's graph.

    Usable as a context manager or as a decorator (then the function returns None when it
    failed). The probes keep their own inline ``try`` (a context manager costs a call on
    every task); everything else goes through here.

    Example::

        with guard("spans", ledger.count_internal_error):
            spans.run_end(run, outcome)
    """

    __slots__ = ("count", "where")

    def __init__(self, where: str, count: Callable[[], None] | None = None) -> None:
        self.where = where
        self.count = count

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> bool:
        if isinstance(exc, Exception):
            report_internal_error(self.where, exc, self.count)
            return True  # swallowed (report_internal_error re-raises in coordgap's own tests)
        return False

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)
            return None

        return guarded


def _reset_after_fork() -> None:
    # a lock held by another thread at fork time would stay locked forever in the child
    global _logged_lock
    _logged_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
