"""Which guard met each injected fault: a contract, a retry, an error handler, the caller.

The expected fates are derived by hand from the fault plan's draws (``faults.draw`` is a
pure function of seed, component and draw number), replaying what LangGraph does with
them: a node or router fault fails the attempt, ``RetryPolicy`` tries again with the
next draw, three faulty attempts in a row end the run (or go to the error handler); a
handoff fault corrupts the state and the handoff's contract catches it. Never read off
coordgap's own counts.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy
from langgraph_features import needs_error_handler
from typing_extensions import NotRequired, TypedDict

import coordgap
from coordgap import faults
from coordgap.faults import InjectedFault

RETRY = RetryPolicy(max_attempts=3, initial_interval=0.0, jitter=False, retry_on=InjectedFault)
RUNS = 60


class S(TypedDict):
    x: int
    y: NotRequired[int]
    log: NotRequired[list[str]]


class HasY(TypedDict):
    y: int


def graph(*, handler: bool) -> StateGraph:
    """START -> a (3 attempts; router ``route``) -> b (error handler ``h`` if asked) -> END."""

    def a(state: S) -> dict[str, Any]:
        return {"y": state["x"] + 1}

    def route(state: S) -> str:
        return "b"

    def b(state: S) -> dict[str, Any]:
        return {"log": ["b"]}

    def h(state: S) -> dict[str, Any]:
        return {"log": ["handled"]}

    builder = StateGraph(S)
    builder.add_node("a", a, retry_policy=RETRY)
    builder.add_conditional_edges("a", route, ["b", END])
    if handler:
        builder.add_node("b", b, error_handler=h)
    else:
        builder.add_node("b", b)
    builder.add_edge(START, "a")
    builder.add_edge("b", END)
    return builder


def expected_fates(
    seed: int, rates: dict[str, float], runs: int, *, handler: bool
) -> tuple[Counter[str], int]:
    """Replay the draws as LangGraph consumes them; return (fates, faults injected)."""
    drawn: Counter[str] = Counter()

    def fires(component: str) -> bool:
        rate = rates.get(component, 0.0)
        if rate <= 0.0:
            return False
        n = drawn[component]
        drawn[component] += 1
        return faults.draw(seed, component, n) < rate

    fates: Counter[str] = Counter()
    injected = 0
    for _ in range(runs):
        failed_attempts = 0
        for _attempt in range(3):
            # the node's fault raises before its function; the router runs after it
            if fires("node:a") or fires("router:route"):
                failed_attempts += 1
                continue
            break
        injected += failed_attempts
        if failed_attempts == 3:
            fates["caller"] += 3  # no attempt got through: the run raised
            continue
        fates["retry"] += failed_attempts
        if fires("handoff:a->b"):
            injected += 1
            fates["contract"] += 1
        if fires("node:b"):
            injected += 1
            fates["error_handler" if handler else "caller"] += 1
    return fates, injected


def run_all(app: Any, runs: int, *, is_async: bool = False) -> None:
    async def arun() -> None:
        for i in range(runs):
            try:
                await app.ainvoke({"x": i})
            except InjectedFault:
                pass

    if is_async:
        asyncio.run(arun())
        return
    for i in range(runs):
        try:
            app.invoke({"x": i})
        except InjectedFault:
            pass


def campaign(seed: int, rates: dict[str, float], *, handler: bool, **options: Any) -> Any:
    nodes = {k[5:]: v for k, v in rates.items() if k.startswith("node:")}
    routers = {k[7:]: v for k, v in rates.items() if k.startswith("router:")}
    handoffs = {("a", "b"): rates.get("handoff:a->b", 0.0)}
    faulty = faults.inject(
        graph(handler=handler), nodes=nodes, routers=routers, handoffs=handoffs, seed=seed
    )
    options.setdefault("spans", "off")
    options.setdefault("metrics", False)
    return coordgap.instrument(faulty, handoffs={"a -> b": HasY}, **options)


rate = st.sampled_from([0.0, 0.2, 0.5, 0.8])
rates_strategy = st.fixed_dictionaries(
    {"node:a": rate, "router:route": rate, "handoff:a->b": rate, "node:b": rate}
)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), rates=rates_strategy)
def test_each_fault_is_met_by_the_guard_the_draws_say(seed: int, rates: dict[str, float]) -> None:
    want, injected = expected_fates(seed, rates, RUNS, handler=False)
    app = campaign(seed, rates, handler=False)
    run_all(app, RUNS)
    fd = coordgap.report(app).fault_detection
    assert fd is not None
    assert fd.injected == injected
    assert {g: n for g, n in fd.met.items() if n} == dict(+want)
    assert fd.unnoticed == 0


@needs_error_handler
@pytest.mark.parametrize("path", ["quiet", "events", "async"])
def test_error_handler_recovers_what_no_retry_saved(path: str) -> None:
    rates = {"node:a": 0.5, "router:route": 0.2, "handoff:a->b": 0.3, "node:b": 0.4}
    want, injected = expected_fates(11, rates, RUNS, handler=True)
    assert want["error_handler"] and want["retry"] and want["caller"] and want["contract"]
    seen: list[Any] = []
    options = {"sinks": [seen.append]} if path == "events" else {}
    app = campaign(11, rates, handler=True, **options)
    run_all(app, RUNS, is_async=path == "async")
    fd = coordgap.report(app).fault_detection
    assert fd is not None
    assert (fd.injected, dict(fd.met)) == (injected, {g: want[g] for g in fd.met})
    if path == "events":
        assert seen  # the events path was the one taken
    assert fd.recovered.value == pytest.approx((want["retry"] + want["error_handler"]) / injected)


def test_a_corrupted_handoff_no_contract_checks_is_unnoticed() -> None:
    faulty = faults.inject(graph(handler=False), handoffs={("a", "b"): 1.0}, seed=3)
    with pytest.warns(UserWarning, match="no contract"):
        app = coordgap.instrument(faulty, spans="off", metrics=False)
    run_all(app, 10)
    fd = coordgap.report(app).fault_detection
    assert fd is not None
    assert (fd.injected, fd.unnoticed, sum(fd.met.values())) == (10, 10, 0)
    assert fd.rate("unnoticed").value == 1.0


def test_the_table_is_in_every_rendering_and_survives_json() -> None:
    rates = {"node:a": 0.5, "handoff:a->b": 0.5}
    app = campaign(5, rates, handler=False)
    run_all(app, 30)
    rep = coordgap.report(app)
    fd = rep.fault_detection
    assert fd is not None and fd.injected > 0
    text = rep.to_text(color=False)
    assert f"injected faults: {fd.injected}" in text
    for guard in ("contract", "retry", "caller"):
        assert any(line.startswith(guard) for line in text.splitlines())
    assert f"**Injected faults: {fd.injected}**" in rep.to_markdown()
    assert "Which guard met each injected fault" in rep.to_html()
    back = coordgap.Report.from_json(rep.to_json())
    assert back.fault_detection == fd


def test_reset_starts_a_new_campaign_and_graphs_without_faults_have_no_table() -> None:
    app = campaign(5, {"node:a": 0.5}, handler=False)
    run_all(app, 20)
    coordgap.ledger(app).reset()
    fd = coordgap.report(app).fault_detection
    assert fd is not None and (fd.injected, sum(fd.met.values())) == (0, 0)
    run_all(app, 20)
    fd = coordgap.report(app).fault_detection
    assert fd is not None and fd.injected == sum(fd.met.values()) > 0

    plain = coordgap.instrument(graph(handler=False), spans="off", metrics=False)
    run_all(plain, 3)
    rep = coordgap.report(plain)
    assert rep.fault_detection is None
    assert "injected faults" not in rep.to_text(color=False)
    with pytest.raises(coordgap.ConfigurationError, match="a guard is one of"):
        coordgap.FaultDetection(1, {}).rate("fallback")
