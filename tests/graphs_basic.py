"""Small hand-built graphs whose exact counts are known, shared by the foundation tests."""

from __future__ import annotations

import itertools
import operator
from typing import Annotated, Any, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, RetryPolicy, Send, interrupt


class State(TypedDict, total=False):
    n: int
    log: Annotated[list[str], operator.add]
    items: list[int]
    answer: str


def step(name: str):
    def node(state: State) -> dict[str, Any]:
        return {"n": state.get("n", 0) + 1, "log": [name]}

    node.__name__ = name
    return node


def linear(k: int = 4) -> StateGraph:
    b = StateGraph(State)
    names = [f"n{i}" for i in range(k)]
    for n in names:
        b.add_node(n, step(n))
    b.add_edge(START, names[0])
    for a, c in itertools.pairwise(names):
        b.add_edge(a, c)
    b.add_edge(names[-1], END)
    return b


def looping(limit: int = 3) -> StateGraph:
    def route(state: State) -> Literal["work", "done"]:
        return "work" if state["n"] < limit else "done"

    b = StateGraph(State)
    b.add_node("work", step("work"))
    b.add_node("done", step("done"))
    b.add_edge(START, "work")
    b.add_conditional_edges("work", route)
    b.add_edge("done", END)
    return b


def log_only(name: str):
    def node(state: State) -> dict[str, Any]:
        return {"log": [name]}

    node.__name__ = name
    return node


def fan_out_in() -> StateGraph:
    b = StateGraph(State)
    for n in ("a", "b", "c", "d"):
        b.add_node(n, log_only(n))
    b.add_edge(START, "a")
    b.add_edge("a", "b")
    b.add_edge("a", "c")
    b.add_edge(["b", "c"], "d")
    b.add_edge("d", END)
    return b


def commanding() -> StateGraph:
    def a(state: State) -> Command[Literal["b", "c"]]:
        return Command(goto="b" if state.get("n", 0) % 2 == 0 else "c", update={"log": ["a"]})

    b = StateGraph(State)
    b.add_node("a", a)
    b.add_node("b", step("b"))
    b.add_node("c", step("c"))
    b.add_edge(START, "a")
    b.add_edge("b", END)
    b.add_edge("c", END)
    return b


def sending(width: int = 3) -> StateGraph:
    def fan(state: State) -> list[Send]:
        return [Send("work", {"n": i}) for i in range(state.get("n", width))]

    def work(state: State) -> dict[str, Any]:
        return {"log": [f"w{state['n']}"]}

    b = StateGraph(State)
    b.add_node("start", step("start"))
    b.add_node("work", work)
    b.add_node("gather", step("gather"))
    b.add_edge(START, "start")
    b.add_conditional_edges("start", fan, ["work"])
    b.add_edge("work", "gather")
    b.add_edge("gather", END)
    return b


def with_subgraph() -> StateGraph:
    inner = linear(2).compile()
    b = StateGraph(State)
    b.add_node("before", step("before"))
    b.add_node("sub", inner)
    b.add_node("after", step("after"))
    b.add_edge(START, "before")
    b.add_edge("before", "sub")
    b.add_edge("sub", "after")
    b.add_edge("after", END)
    return b


class TransientError(Exception):
    """Retried by LangGraph's default retry_on (RuntimeError and ValueError are not)."""


class Flaky:
    """Fails the first ``fails`` calls, then succeeds (per instance)."""

    def __init__(self, fails: int, exc: type[Exception] = TransientError) -> None:
        self.fails = fails
        self.calls = 0
        self.exc = exc

    def __call__(self, state: State) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.fails:
            raise self.exc(f"boom {self.calls}")
        return {"n": state.get("n", 0) + 1, "log": ["flaky"]}


def retrying(fails: int, attempts: int = 3) -> StateGraph:
    b = StateGraph(State)
    b.add_node("a", step("a"))
    b.add_node(
        "flaky",
        Flaky(fails),
        retry_policy=RetryPolicy(max_attempts=attempts, initial_interval=0.0, jitter=False),
    )
    b.add_edge(START, "a")
    b.add_edge("a", "flaky")
    b.add_edge("flaky", END)
    return b


def interrupting() -> StateGraph:
    def ask(state: State) -> dict[str, Any]:
        answer = interrupt("question?")
        return {"answer": str(answer), "log": ["ask"]}

    b = StateGraph(State)
    b.add_node("prep", step("prep"))
    b.add_node("ask", ask)
    b.add_node("end", step("end"))
    b.add_edge(START, "prep")
    b.add_edge("prep", "ask")
    b.add_edge("ask", "end")
    b.add_edge("end", END)
    return b
