"""Small graphs with one deliberate failure each, shared by the integration tests.

Every value the state carries is a canary string: a backend that shows one of
them received state values, which coordgap must never export by default.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel

CANARY = "CANARY-7f3a9c"
"""Prefix of every value put into the state; it must never reach a backend."""


class State(TypedDict, total=False):
    question: str
    docs: list[str]
    summary: str
    log: Annotated[list[str], operator.add]


class Analyzable(BaseModel):
    """The contract on retrieve -> analyze: analyze needs a summary, retrieve gives none."""

    docs: list[str]
    summary: str


def _retrieve(state: State) -> dict[str, Any]:
    return {"docs": [f"{CANARY}-doc-1", f"{CANARY}-doc-2"], "log": [f"{CANARY}-retrieved"]}


def _analyze(state: State) -> dict[str, Any]:
    return {"log": [f"{CANARY}-analyzed"]}


def _explode(state: State) -> dict[str, Any]:
    raise ValueError(f"{CANARY}-exception-message {state.get('question')}")


def _route_nowhere(state: State) -> str:
    return f"{CANARY}-no-such-node"


def handoff_graph() -> tuple[StateGraph, dict[tuple[str, str], Any]]:
    """Return START -> retrieve -> analyze -> END and a handoff contract that retrieve breaks."""
    g = StateGraph(State)
    g.add_node("retrieve", _retrieve)
    g.add_node("analyze", _analyze)
    g.add_edge(START, "retrieve")
    g.add_edge("retrieve", "analyze")
    g.add_edge("analyze", END)
    return g, {("retrieve", "analyze"): Analyzable}


def node_graph() -> StateGraph:
    """Return START -> retrieve -> explode -> END where explode raises ValueError."""
    g = StateGraph(State)
    g.add_node("retrieve", _retrieve)
    g.add_node("explode", _explode)
    g.add_edge(START, "retrieve")
    g.add_edge("retrieve", "explode")
    g.add_edge("explode", END)
    return g


def router_graph() -> StateGraph:
    """Return START -> retrieve -?-> analyze -> END; the router names a node that does not exist."""
    g = StateGraph(State)
    g.add_node("retrieve", _retrieve)
    g.add_node("analyze", _analyze)
    g.add_edge(START, "retrieve")
    g.add_conditional_edges("retrieve", _route_nowhere)
    g.add_edge("analyze", END)
    return g


def initial_state() -> State:
    """Return the input of every run: canaries only."""
    return {"question": f"{CANARY}-question", "log": []}
