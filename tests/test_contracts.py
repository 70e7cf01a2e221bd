"""Contracts at handoffs and node boundaries: models, TypedDicts, callables; record and raise."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

import pytest
from graphs_basic import State, linear, step
from hypothesis import given, settings
from hypothesis import strategies as st
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from pydantic import BaseModel

import coordgap


class HasAnswer(BaseModel):
    answer: str


class HasN(TypedDict):
    n: int


def answering(value: Any) -> StateGraph:
    def write(state: State) -> dict[str, Any]:
        return {"answer": value}

    b = StateGraph(State)
    b.add_node("write", write)
    b.add_node("read", step("read"))
    b.add_edge(START, "write")
    b.add_edge("write", "read")
    b.add_edge("read", END)
    return b


def test_requires_contract_passes_and_fails_on_the_handoff_into_the_node() -> None:
    """requires on 'read' is checked on the state read receives: a failed handoff, run goes on."""
    contracts = {"read": coordgap.Contract(requires=HasAnswer)}
    ok = coordgap.instrument(answering("yes"), contracts=contracts)
    ok.invoke({"n": 0})
    assert coordgap.ledger(ok).snapshot().handoffs[("write", "read")].failures == 0

    bad = coordgap.instrument(answering(None), contracts=contracts)
    out = bad.invoke({"n": 0})
    assert out["log"] == ["read"]  # record mode: the graph ran on
    handoff = coordgap.ledger(bad).snapshot().handoffs[("write", "read")]
    assert (handoff.failures, handoff.contract_failures) == (1, 1)
    assert handoff.error_types == {"ContractViolation": 1}
    assert coordgap.ledger(bad).snapshot().runs.clean == 0


def test_ensures_failure_is_a_node_failure() -> None:
    """ensures checks the update a node returns; a broken one fails the node, not the handoff."""
    app = coordgap.instrument(
        answering(3), contracts={"write": coordgap.Contract(ensures=HasAnswer)}
    )
    app.invoke({"n": 0})
    snap = coordgap.ledger(app).snapshot()
    assert (snap.nodes["write"].failures, snap.nodes["write"].contract_failures) == (1, 1)
    assert snap.handoffs[("write", "read")].failures == 0


def test_decorator_declares_contract_without_changing_the_function() -> None:
    """@coordgap.contract leaves the function callable as before and is picked up."""

    @coordgap.contract(ensures=HasAnswer)
    def write(state: State) -> dict[str, Any]:
        return {"answer": 1}

    assert write({"n": 0}) == {"answer": 1}
    b = StateGraph(State)
    b.add_node("write", write)
    b.add_edge(START, "write")
    b.add_edge("write", END)
    app = coordgap.instrument(b)
    app.invoke({"n": 0})
    assert coordgap.ledger(app).snapshot().nodes["write"].contract_failures == 1


def test_edge_contract_only_applies_to_its_edge() -> None:
    """A handoffs={(a, b): ...} contract is checked on a -> b only."""
    app = coordgap.instrument(linear(3), handoffs={("n1", "n2"): HasAnswer})
    app.invoke({"n": 0})
    snap = coordgap.ledger(app).snapshot()
    assert snap.handoffs[("n1", "n2")].failures == 1
    assert snap.handoffs[("n0", "n1")].failures == 0


def test_typeddict_and_callable_contracts() -> None:
    """TypedDicts validate through pydantic; callables fail by returning False or raising."""
    app = coordgap.instrument(
        linear(3),
        handoffs={
            ("n0", "n1"): HasN,
            ("n1", "n2"): lambda s: s["n"] > 100,
        },
    )
    app.invoke({"n": 0})
    snap = coordgap.ledger(app).snapshot()
    assert snap.handoffs[("n0", "n1")].failures == 0
    assert snap.handoffs[("n1", "n2")].failures == 1


def test_typing_extensions_typeddict_is_a_contract() -> None:
    """typing_extensions.TypedDict (pydantic's ask before 3.12) checks like typing's."""
    import typing_extensions

    class Big(typing_extensions.TypedDict):
        n: int
        answer: str

    app = coordgap.instrument(linear(3), handoffs={("n0", "n1"): Big, ("n1", "n2"): HasN})
    app.invoke({"n": 0})
    snap = coordgap.ledger(app).snapshot()
    assert snap.handoffs[("n0", "n1")].contract_failures == 1  # no answer
    assert snap.handoffs[("n1", "n2")].contract_failures == 0


def test_raise_mode_raises_contract_violation_naming_handoff_and_fields() -> None:
    """on_violation='raise' raises ContractViolation (a ValueError) naming the handoff and fields."""
    app = coordgap.instrument(
        answering(None),
        contracts={"read": coordgap.Contract(requires=HasAnswer)},
        on_violation="raise",
    )
    with pytest.raises(coordgap.ContractViolation) as info:
        app.invoke({"n": 0})
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.source, err.node, err.contract, err.fields) == (
        "write",
        "read",
        "HasAnswer",
        ("answer",),
    )
    assert "'write' -> 'read'" in str(err) and "answer (string_type)" in str(err)


def test_send_payload_is_checked_against_requires() -> None:
    """A Send's payload is what the target receives: requires is checked on it."""

    class Item(BaseModel):
        n: int

    def fan(state: State) -> list[Send]:
        return [Send("work", {"n": 1}), Send("work", {"m": 2})]

    def work(state: dict[str, Any]) -> dict[str, Any]:
        return {"log": ["w"]}

    b = StateGraph(State)
    b.add_node("start", step("start"))
    b.add_node("work", work)
    b.add_edge(START, "start")
    b.add_conditional_edges("start", fan, ["work"])
    b.add_edge("work", END)
    app = coordgap.instrument(b, contracts={"work": coordgap.Contract(requires=Item)})
    app.invoke({"n": 0})
    handoff = coordgap.ledger(app).snapshot().handoffs[("start", "work")]
    assert (handoff.transfers, handoff.failures) == (2, 1)


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.text(max_size=5), st.integers(), st.none()), min_size=1, max_size=8
    )
)
def test_contract_failures_count_exactly_the_bad_values(values: list[Any]) -> None:
    """Over any sequence of values, failed handoffs equal the values that are not strings."""
    app = coordgap.instrument(
        answering_from_input(),
        contracts={"read": coordgap.Contract(requires=HasAnswer)},
        spans="off",
        metrics=False,
    )
    for v in values:
        app.invoke({"n": 0, "answer": v})  # type: ignore[typeddict-item]
    handoff = coordgap.ledger(app).snapshot().handoffs[("write", "read")]
    assert handoff.failures == sum(not isinstance(v, str) for v in values)


def answering_from_input() -> StateGraph:
    b = StateGraph(State)
    b.add_node("write", step("write"))
    b.add_node("read", step("read"))
    b.add_edge(START, "write")
    b.add_edge("write", "read")
    b.add_edge("read", END)
    return b


def test_contract_violation_pickles() -> None:
    """ContractViolation survives pickling (e.g. across process pools)."""
    import pickle

    err = coordgap.ContractViolation(
        contract="C", where="handoff", node="b", source="a", fields=("x",), error_types=("missing",)
    )
    again = pickle.loads(pickle.dumps(err))
    assert (str(again), again.fields) == (str(err), err.fields)


def test_literal_router_graph_with_contracts_on_conditional_handoff() -> None:
    """Edge contracts work on conditional edges declared by a Literal return hint."""

    def route(state: State) -> Literal["read"]:
        return "read"

    b = StateGraph(State)
    b.add_node("write", step("write"))
    b.add_node("read", step("read"))
    b.add_edge(START, "write")
    b.add_conditional_edges("write", route)
    b.add_edge("read", END)
    app = coordgap.instrument(b, handoffs={("write", "read"): HasAnswer})
    app.invoke({"n": 0})
    handoff = coordgap.ledger(app).snapshot().handoffs[("write", "read")]
    assert (handoff.failures, dict(handoff.kinds)) == (1, {"conditional": 1})
