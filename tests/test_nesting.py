"""Graphs inside graphs: each graph counts its own handoffs exactly once, however nested.

A compiled graph added as a node, or held in a node function's closure, is rebuilt with
the outer graph (``outer/inner`` names, the outer run). An instrumented graph the outer
graph cannot reach that way (a module global here) keeps its own ledger and is linked to
the task that called it: its components also appear in the outer report, under the
calling node, and its failures make the outer run not clean.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any

import pytest
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

import coordgap


class S(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    fail: bool


def _inner() -> StateGraph[Any]:
    def check(state: S) -> dict[str, Any]:
        if state.get("fail"):
            raise RuntimeError("inner check failed")
        return {"log": ["check"]}

    b = StateGraph(S)
    b.add_node("draft", lambda s: {"log": ["draft"]})
    b.add_node("check", check)
    b.add_edge(START, "draft")
    b.add_edge("draft", "check")
    b.add_edge("check", END)
    return b


CHILD: Any = None  # a global: the outer graph cannot see it in a closure


def _outer() -> StateGraph[Any]:
    def writer(state: S) -> dict[str, Any]:
        out = CHILD.invoke({"log": [], "fail": state.get("fail", False)})
        return {"log": [f"wrote {len(out['log'])}"]}

    b = StateGraph(S)
    b.add_node("plan", lambda s: {"log": ["plan"]})
    b.add_node("writer", writer)
    b.add_edge(START, "plan")
    b.add_edge("plan", "writer")
    b.add_edge("writer", END)
    return b


@pytest.fixture
def child() -> Any:
    global CHILD
    CHILD = coordgap.instrument(_inner(), name="child", spans="off", metrics=False)
    yield CHILD
    CHILD = None


def test_an_instrumented_graph_called_from_a_task_is_linked_to_it(child: Any) -> None:
    outer = coordgap.instrument(_outer(), name="outer", spans="off", metrics=False)
    for _ in range(3):
        outer.invoke({"log": []})
    mine = coordgap.ledger(child).snapshot()
    assert mine.runs.runs == 3 and mine.runs.clean == 3  # its own ledger: its own runs
    assert mine.handoffs[("draft", "check")].transfers == 3
    theirs = coordgap.ledger(outer).snapshot()
    assert theirs.runs.runs == 3 and theirs.runs.clean == 3  # one run per outer invoke
    assert theirs.nodes["writer/draft"].executions == 3
    assert theirs.handoffs[("writer/__start__", "writer/draft")].transfers == 3
    assert theirs.handoffs[("writer/draft", "writer/check")].transfers == 3
    assert theirs.handoffs[("writer/check", "writer/__end__")].transfers == 3
    assert ("draft", "check") not in theirs.handoffs  # never under the inner graph's names


def test_a_linked_graphs_failure_makes_the_outer_run_not_clean(child: Any) -> None:
    outer = coordgap.instrument(_outer(), name="outer", spans="off", metrics=False)
    with pytest.raises(RuntimeError, match="inner check failed"):
        outer.invoke({"log": [], "fail": True})
    outer.invoke({"log": []})
    theirs = coordgap.ledger(outer).snapshot()
    assert theirs.nodes["writer/check"].failures == 1
    assert theirs.nodes["writer"].failures == 1  # the exception reached the calling node
    # the calling node became a container: the report counts the failure once, inside it
    assert "writer" in theirs.topology.subgraphs
    report = coordgap.report(outer)
    assert not report.nodes["writer"].in_product and report.nodes["writer/check"].in_product
    assert (theirs.runs.error, theirs.runs.ok, theirs.runs.clean) == (1, 1, 1)
    assert coordgap.ledger(child).snapshot().runs.error == 1


def test_a_bare_subgraph_and_its_instrumented_twin_count_the_same() -> None:
    """Instrumenting a parent rebuilds an instrumented subgraph from its bare builder:
    every handoff once, and the subgraph's own ledger untouched by the parent's runs."""
    sub = coordgap.instrument(_inner(), name="sub", spans="off", metrics=False)

    def parent(inner: Any) -> StateGraph[Any]:
        b = StateGraph(S)
        b.add_node("team", inner)
        b.add_edge(START, "team")
        b.add_edge("team", END)
        return b

    bare_parent = coordgap.instrument(parent(_inner().compile()), spans="off", metrics=False)
    nested = coordgap.instrument(parent(sub), spans="off", metrics=False)
    for app in (bare_parent, nested):
        app.invoke({"log": []})
    a = coordgap.ledger(bare_parent).snapshot()
    b = coordgap.ledger(nested).snapshot()
    assert {k: h.transfers for k, h in a.handoffs.items()} == {
        k: h.transfers for k, h in b.handoffs.items()
    }
    assert all(h.failures == 0 for h in b.handoffs.values())
    assert b.routers == a.routers
    assert coordgap.ledger(sub).snapshot().runs.runs == 0
