"""The supported LangGraph range: declared once, checked at instrument(), tested at both ends.

Outside the range instrument() gives one clear RuntimeWarning and works on; inside it, none.
The attempt number coordgap reads from LangGraph has a fallback for the releases that give a
task none (< 1.1.3); where both exist, the two agree.
"""

from __future__ import annotations

import asyncio
import operator
import re
import warnings
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from graphs_basic import linear
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy

import coordgap
from coordgap import _compat as lg

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The once-per-process version check has not run yet."""
    monkeypatch.setattr(lg, "_version_checked", False)


def _installed(monkeypatch: pytest.MonkeyPatch, version: str | None) -> None:
    monkeypatch.setattr(lg, "installed_version", lambda: version)


# -- the warning at instrument() -------------------------------------------------------------


def test_the_installed_langgraph_is_in_the_supported_range() -> None:
    """Both test sessions (newest, lowest) run a supported release: no warning."""
    assert lg.version_warning() is None


@pytest.mark.parametrize("version", ["1.0.0", "1.0.10", "1.1.3", "1.2.24", "1.99.0", "1.0.0rc1"])
def test_a_release_in_the_range_is_not_warned_about(
    monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    _installed(monkeypatch, version)
    assert lg.version_warning() is None


@pytest.mark.parametrize("version", ["0.6.11", "2.0.0", "2.0.0a1", "3.1"])
def test_outside_the_range_instrument_warns_once_and_works_on(
    monkeypatch: pytest.MonkeyPatch, unchecked: None, version: str
) -> None:
    """One RuntimeWarning, naming the range and the installed release, at the user's call."""
    _installed(monkeypatch, version)
    with pytest.warns(RuntimeWarning) as caught:
        app = coordgap.instrument(linear(2))
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "langgraph >= 1.0, < 2" in message and f"langgraph {version} is installed" in message
    assert "pip install 'langgraph>=1.0,<2'" in message
    assert caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process: the next instrument() is quiet
        again = coordgap.instrument(linear(2))
    app.invoke({"n": 0})
    again.invoke({"n": 0})
    assert coordgap.ledger(app).snapshot().nodes["n1"].executions == 1


def _raises() -> str:
    raise RuntimeError("broken metadata")


@pytest.mark.parametrize("lookup", [lambda: None, lambda: "main", lambda: "", _raises])
def test_an_unreadable_version_is_never_a_crash(
    monkeypatch: pytest.MonkeyPatch, unchecked: None, lookup: Any
) -> None:
    """No metadata, a local build's version, a lookup that raises: no warning, no error."""
    monkeypatch.setattr(lg, "installed_version", lookup)
    assert lg.version_warning() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        app = coordgap.instrument(linear(2))
    assert app.invoke({"n": 0})["n"] == 2


def test_the_range_is_declared_once() -> None:
    """pyproject's dependency, _compat.SUPPORTED/LOWEST/BELOW and the lowest session's pin agree."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"langgraph>=1.0,<2"' in pyproject
    assert lg.SUPPORTED == ("langgraph >= 1.0, < 2",)
    assert (lg.LOWEST, lg.BELOW) == ((1, 0, 0), (2,))
    lowest = (ROOT / "tests" / "constraints-lowest.txt").read_text()
    pinned = re.search(r"^langgraph==([\d.]+)$", lowest, re.MULTILINE)
    assert pinned is not None and tuple(map(int, pinned.group(1).split("."))) == lg.LOWEST


# -- the attempt number ------------------------------------------------------------------------


class S(TypedDict, total=False):
    log: Annotated[list[str], operator.add]


_RETRY = RetryPolicy(max_attempts=3, initial_interval=0.0, jitter=False)


def _retrying(is_async: bool) -> StateGraph:
    """Two nodes that fail twice and succeed on the third attempt, one inside a subgraph."""
    calls = {"f": 0, "i": 0}

    def flaky(name: str) -> Any:
        def node(state: S) -> dict[str, Any]:
            calls[name] += 1
            if calls[name] % 3:
                raise ConnectionError(f"{name} {calls[name]}")
            return {"log": [name]}

        async def anode(state: S) -> dict[str, Any]:
            return node(state)

        return anode if is_async else node

    inner = StateGraph(S)
    inner.add_node("i", flaky("i"), retry_policy=_RETRY)
    inner.add_edge(START, "i")
    b = StateGraph(S)
    b.add_node("a", lambda state: {"log": ["a"]})
    b.add_node("f", flaky("f"), retry_policy=_RETRY)
    b.add_node("sub", inner.compile())
    b.add_edge(START, "a")
    b.add_edge("a", "f")
    b.add_edge("f", "sub")
    b.add_edge("sub", END)
    return b


def _counts(mode: str) -> dict[str, Any]:
    app = coordgap.instrument(_retrying(is_async=mode.startswith("a")), spans="off")

    async def astream() -> None:
        async for _ in app.astream({}, subgraphs=True):
            pass

    for _ in range(2):
        if mode == "invoke":
            app.invoke({})
        elif mode == "stream":
            list(app.stream({}, subgraphs=True))
        elif mode == "ainvoke":
            asyncio.run(app.ainvoke({}))
        else:
            asyncio.run(astream())
    snap = coordgap.ledger(app).snapshot()
    return {
        "nodes": {
            name: (s.executions, s.failures, s.attempts, s.attempt_failures, s.first_attempt_ok)
            for name, s in snap.nodes.items()
        },
        "handoffs": {key: (h.transfers, h.failures) for key, h in snap.handoffs.items()},
    }


@pytest.mark.parametrize("mode", ["invoke", "stream", "ainvoke", "astream"])
def test_retried_tasks_count_one_execution_of_three_attempts(mode: str) -> None:
    """On every supported release: 2 runs x 3 attempts, each handoff delivered once."""
    got = _counts(mode)
    assert got["nodes"]["f"] == (2, 0, 6, 4, 0)
    assert got["nodes"]["sub/i"] == (2, 0, 6, 4, 0)
    assert got["handoffs"][("a", "f")] == (2, 0)
    assert got["handoffs"][("f", "sub")] == (2, 0)


@pytest.mark.skipif(
    not lg.HAS_NODE_ATTEMPT, reason="LangGraph < 1.1.3 gives a task no node_attempt to compare with"
)
@pytest.mark.parametrize("mode", ["invoke", "astream"])
def test_the_retry_loop_fallback_agrees_with_node_attempt(
    monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """The fallback for LangGraph < 1.1.3 reads the count node_attempt is made from."""
    native = _counts(mode)
    monkeypatch.setattr(lg, "runtime_attempt", lg._attempt_from_retry_loop)
    assert _counts(mode) == native
