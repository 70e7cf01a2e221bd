"""Every corpus agent behaves the same bare and instrumented.

Outputs (``invoke``, ``ainvoke``), every stream mode at once with and without
``subgraphs=True`` (sync and async), exceptions (type and message), the checkpoint
history and state of every thread, and the drawings. Two bare builds of a case are
compared first, so a difference can only come from instrumentation.
"""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from .corpus import CASES, Case
from .harness import adrive, astream_all, drawings, drive, history, instrumented, stream_all

# Cases today's coordgap cannot instrument at all (each a reproducer of issue 13).


def _case(name: str) -> Case:
    return CASES[name]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COORDGAP_SPANS", "off")


NAMES = sorted(CASES)


@pytest.mark.parametrize("name", NAMES)
def test_invoke_and_ainvoke_outputs_are_identical(name: str) -> None:
    case = _case(name)
    checkpointed = case.threaded
    bare = drive(case.graph(), case, checkpointed)
    assert bare == drive(case.graph(), case, checkpointed), "bare runs differ: fix the case"
    assert drive(instrumented(case), case, checkpointed) == bare
    assert adrive(instrumented(case), case, checkpointed) == adrive(
        case.graph(), case, checkpointed
    )
    if case.raises:
        assert any(o[0] == "raised" for o in bare)


@pytest.mark.parametrize("subgraphs", [True, False], ids=["subgraphs", "flat"])
@pytest.mark.parametrize("name", NAMES)
def test_every_stream_mode_history_and_state_are_identical(name: str, subgraphs: bool) -> None:
    case = _case(name)

    def run(instrument: bool) -> Any:
        graph = instrumented(case, InMemorySaver()) if instrument else case.graph(InMemorySaver())
        return stream_all(graph, case, subgraphs=subgraphs), history(graph, case)

    bare = run(False)
    got = run(True)
    assert got[0] == bare[0]
    assert got[1] == bare[1]


@pytest.mark.parametrize("name", NAMES)
def test_astream_every_mode_is_identical(name: str) -> None:
    case = _case(name)
    bare = astream_all(case.graph(InMemorySaver()), case, subgraphs=True)
    assert astream_all(instrumented(case, InMemorySaver()), case, subgraphs=True) == bare


@pytest.mark.parametrize("name", NAMES)
def test_drawings_are_identical(name: str) -> None:
    case = _case(name)
    assert drawings(instrumented(case)) == drawings(case.graph())
