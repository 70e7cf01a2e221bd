"""Fork safety: a child process forked while other threads hold coordgap's locks still works.

A lock held by another thread at ``os.fork()`` stays held forever in the
child (only the forking thread survives); coordgap re-creates its locks in the
child (``os.register_at_fork``). Each child arms an alarm so that a deadlock
shows up as a failed exit code, never as a hung test run.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from graphs_basic import linear

import coordgap

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

DEADLOCK = 3
FAILED = 4


def _in_child(body: Callable[[], bool]) -> int:
    """Run ``body`` in a forked child; return its exit code (0 when body returned True)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded, fork() may deadlock"
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = FAILED
        try:
            signal.signal(signal.SIGALRM, lambda *a: os._exit(DEADLOCK))
            signal.alarm(10)
            code = 0 if body() else FAILED
        except BaseException:
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _holding(lock: Any) -> tuple[threading.Event, threading.Thread]:
    """Hold ``lock`` in another thread until the returned event is set."""
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(10)
    return release, thread


def _config() -> dict[str, Any]:
    return {"configurable": {"thread_id": "fork"}}


def test_the_child_counts_on_its_own_copy() -> None:
    app = coordgap.instrument(linear(), metrics=False, spans="off")
    app.invoke({"n": 0})

    def child() -> bool:
        app.invoke({"n": 0})
        app.invoke({"n": 0})
        return coordgap.ledger(app).snapshot().runs.runs == 3

    assert _in_child(child) == 0
    assert coordgap.ledger(app).snapshot().runs.runs == 1  # the parent's count is its own


def test_a_ledger_lock_held_at_fork_does_not_deadlock_the_child() -> None:
    app = coordgap.instrument(linear(), metrics=False, spans="off")
    led = coordgap.ledger(app)
    release, thread = _holding(led.lock)
    try:

        def child() -> bool:
            led.snapshot()
            app.invoke({"n": 0})
            led.reset()
            app.invoke({"n": 0})
            return led.snapshot().runs.runs == 1

        assert _in_child(child) == 0
    finally:
        release.set()
        thread.join()
    app.invoke({"n": 0})
    assert led.snapshot().runs.runs == 1


def test_a_recorder_lock_held_at_fork_does_not_deadlock_the_child() -> None:
    app = coordgap.instrument(linear(), metrics=False, spans="off")
    recorder = app.coordgap_state.recorder
    release, thread = _holding(recorder.threads_lock)
    try:

        def child() -> bool:
            app.invoke({"n": 0}, _config())  # a run with a thread id takes this lock
            recorder.error_type("SomeNewError")
            return coordgap.ledger(app).snapshot().runs.runs == 1

        assert _in_child(child) == 0
    finally:
        release.set()
        thread.join()


def test_the_log_once_lock_held_at_fork_does_not_deadlock_the_child(monkeypatch) -> None:
    from coordgap import _failopen

    monkeypatch.delenv("COORDGAP_RAISE_INTERNAL", raising=False)

    def sink(event: Any) -> None:
        raise RuntimeError("sink down")

    app = coordgap.instrument(linear(), metrics=False, spans="off", sinks=[sink])
    release, thread = _holding(_failopen._logged_lock)
    try:

        def child() -> bool:
            out = app.invoke({"n": 0})
            return out["n"] == 4 and coordgap.ledger(app).snapshot().internal_errors > 0

        assert _in_child(child) == 0
    finally:
        release.set()
        thread.join()
