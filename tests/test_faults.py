"""Seeded fault injection: rates, determinism, isolation, async, Send, retries, spans."""

from __future__ import annotations

import asyncio
import operator
import warnings
from typing import Annotated, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy, Send
from pydantic import BaseModel
from typing_extensions import NotRequired, TypedDict

import coordgap
from coordgap import faults
from coordgap._report import wilson_interval
from coordgap.faults import FaultPlan, InjectedFault

FAST_RETRY = RetryPolicy(max_attempts=3, initial_interval=0.0, jitter=False, retry_on=InjectedFault)


class S(TypedDict):
    x: int
    y: NotRequired[int]
    z: NotRequired[int]


class HasY(BaseModel):
    y: int


def chain(*, retry: RetryPolicy | None = None, a_raises: bool = False) -> StateGraph:
    """START -> a -> b -> END; b requires y (checked by a contract)."""

    def a(state: S) -> dict[str, Any]:
        if a_raises and state["x"] % 4 == 0:
            raise ValueError("a real failure")
        return {"y": state["x"] + 1}

    @coordgap.contract(requires=HasY)
    def b(state: S) -> dict[str, Any]:
        return {"z": state.get("y", -1) * 2}

    builder = StateGraph(S)
    builder.add_node("a", a, retry_policy=retry)
    builder.add_node("b", b)
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", END)
    return builder


def run(app: Any, n: int) -> list[str]:
    """Invoke n times; return one outcome per run: 'ok' or the exception's class name."""
    out = []
    for i in range(n):
        try:
            app.invoke({"x": i})
            out.append("ok")
        except Exception as exc:
            out.append(type(exc).__name__)
    return out


def within_binomial(hits: int, n: int, rate: float, confidence: float = 0.999) -> bool:
    low, high = wilson_interval(hits, n, confidence)
    return low <= rate <= high


def instrumented(builder: StateGraph, **kwargs: Any) -> Any:
    kwargs.setdefault("spans", "off")
    kwargs.setdefault("metrics", False)
    return coordgap.instrument(builder, **kwargs)


# -- the draws ------------------------------------------------------------------------------


@given(seed=st.integers(), component=st.text(max_size=20), n=st.integers(min_value=0))
def test_draw_is_a_pure_function_in_unit_interval(seed: int, component: str, n: int) -> None:
    value = faults.draw(seed, component, n)
    assert 0.0 <= value < 1.0
    assert value == faults.draw(seed, component, n)


@pytest.mark.parametrize("rate", [0.01, 0.04, 0.3, 0.9])
def test_plan_meets_rate_within_binomial_interval(rate: float) -> None:
    plan = FaultPlan(seed=7, nodes={}, routers={}, handoffs={}, handoff_default=None)
    n = 20_000
    hits = sum(plan.decide("node:x", rate)[0] for _ in range(n))
    assert within_binomial(hits, n, rate), (hits, n, rate)
    assert plan.counts["node:x"] == (n, hits)


def test_rate_zero_and_one_are_exact() -> None:
    plan = FaultPlan(seed=1, nodes={}, routers={}, handoffs={}, handoff_default=None)
    assert not any(plan.decide("a", 0.0)[0] for _ in range(1000))
    assert all(plan.decide("b", 1.0)[0] for _ in range(1000))


@settings(max_examples=25)
@given(seed=st.integers(min_value=0, max_value=2**31))
def test_components_draw_independently_of_interleaving(seed: int) -> None:
    # Draw order across components must not matter: parallel supersteps interleave freely.
    one = FaultPlan(seed=seed, nodes={}, routers={}, handoffs={}, handoff_default=None)
    two = FaultPlan(seed=seed, nodes={}, routers={}, handoffs={}, handoff_default=None)
    a1 = [one.decide("node:a", 0.3)[0] for _ in range(50)]
    b1 = [one.decide("node:b", 0.3)[0] for _ in range(50)]
    a2, b2 = [], []
    for _ in range(50):
        b2.append(two.decide("node:b", 0.3)[0])
        a2.append(two.decide("node:a", 0.3)[0])
    assert (a1, b1) == (a2, b2)


# -- on a graph -------------------------------------------------------------------------------


def test_node_faults_meet_rate_and_are_counted_as_faults() -> None:
    faulty = faults.inject(chain(), nodes={"a": 0.2}, seed=3)
    app = instrumented(faulty)
    outcomes = run(app, 400)
    raised = outcomes.count("InjectedFault")
    assert set(outcomes) == {"ok", "InjectedFault"}
    assert within_binomial(raised, 400, 0.2)
    snap = coordgap.ledger(app).snapshot()
    a = snap.nodes["a"]
    assert a.failures == a.faults == raised
    assert dict(a.error_types) == {"InjectedFault": raised}
    assert snap.runs.error == raised
    assert faulty.coordgap_faults.counts["node:a"] == (400, raised)


def test_same_seed_same_faults_different_seed_different_faults() -> None:
    first = run(faults.inject(chain(), nodes={"a": 0.3}, seed=11).compile(), 120)
    again = run(faults.inject(chain(), nodes={"a": 0.3}, seed=11).compile(), 120)
    other = run(faults.inject(chain(), nodes={"a": 0.3}, seed=12).compile(), 120)
    assert first == again
    assert first != other


def test_nothing_injected_where_not_asked_and_user_builder_untouched() -> None:
    builder = chain()
    runnables = {name: spec.runnable for name, spec in builder.nodes.items()}
    faulty = faults.inject(builder, nodes={"a": 0.5}, seed=5)
    assert faulty is not builder
    assert {name: spec.runnable for name, spec in builder.nodes.items()} == runnables
    assert not hasattr(builder, "coordgap_faults")
    # the bare builder never fails
    assert set(run(builder.compile(), 50)) == {"ok"}
    app = instrumented(faulty)
    run(app, 200)
    snap = coordgap.ledger(app).snapshot()
    assert snap.nodes["b"].failures == 0
    assert all(h.failures == 0 for h in snap.handoffs.values())
    assert set(faulty.coordgap_faults.counts) == {"node:a"}


def test_rate_zero_is_transparent() -> None:
    bare = chain().compile()
    faulty = faults.inject(chain(), nodes=0.0, handoffs=0.0, seed=1).compile()
    for i in range(20):
        assert faulty.invoke({"x": i}) == bare.invoke({"x": i})


def test_real_failures_are_not_faults() -> None:
    app = instrumented(faults.inject(chain(a_raises=True), nodes={"a": 0.2}, seed=3))
    outcomes = run(app, 200)
    a = coordgap.ledger(app).snapshot().nodes["a"]
    assert outcomes.count("ValueError") == a.failures - a.faults > 0
    assert outcomes.count("InjectedFault") == a.faults > 0


def test_handoff_corruption_breaks_the_contract_and_the_run_goes_on() -> None:
    faulty = faults.inject(chain(), handoffs={("a", "b"): 0.25}, seed=9)
    app = instrumented(faulty)
    outcomes = run(app, 400)
    assert set(outcomes) == {"ok"}  # corruption never raises
    snap = coordgap.ledger(app).snapshot()
    h = snap.handoffs[("a", "b")]
    fired = faulty.coordgap_faults.counts["handoff:a->b"][1]
    assert h.failures == h.faults == h.contract_failures == fired
    assert within_binomial(fired, 400, 0.25)
    assert snap.nodes["b"].failures == 0
    assert snap.runs.clean == 400 - fired


def test_corrupted_state_is_what_the_target_receives() -> None:
    faulty = faults.inject(chain(), handoffs={("a", "b"): 1.0}, seed=0)
    out = instrumented(faulty).invoke({"x": 1})
    assert out["z"] == -2  # b saw no y


def test_handoff_rate_for_all_skips_start() -> None:
    faulty = faults.inject(chain(), handoffs=1.0, seed=0)
    app = instrumented(faulty)
    run(app, 10)
    snap = coordgap.ledger(app).snapshot()
    assert snap.handoffs[("__start__", "a")].failures == 0
    assert snap.handoffs[("a", "b")].faults == 10


def test_handoff_fault_without_contract_warns_at_instrument_time() -> None:
    builder = StateGraph(S)
    builder.add_node("a", lambda s: {"y": 1})
    builder.add_node("b", lambda s: {"z": 2})
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", END)
    faulty = faults.inject(builder, handoffs={("a", "b"): 1.0}, seed=0)
    with pytest.warns(UserWarning, match=r"a -> b, but no contract checks them"):
        app = instrumented(faulty)  # before any fault fires
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        app.invoke({"x": 1})  # and never again per fault
    checked = faults.inject(builder, handoffs={("a", "b"): 1.0}, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        coordgap.instrument(checked, handoffs={("a", "b"): lambda s: "y" in s})


def test_retry_policy_retries_injected_faults_and_each_attempt_draws_again() -> None:
    faulty = faults.inject(chain(retry=FAST_RETRY), nodes={"a": 0.5}, seed=21)
    app = instrumented(faulty)
    outcomes = run(app, 300)
    a = coordgap.ledger(app).snapshot().nodes["a"]
    draws, fired = faulty.coordgap_faults.counts["node:a"]
    assert a.attempts == draws > 300
    assert a.attempt_failures == a.faults == fired
    assert a.failures == outcomes.count("InjectedFault")
    # eventual failure needs three faults in a row: 0.125
    assert within_binomial(a.failures, 300, 0.125)


def test_router_faults_raise_and_are_counted() -> None:
    def route(state: S) -> str:
        return "b"

    builder = StateGraph(S)
    builder.add_node("a", lambda s: {"y": 1})
    builder.add_node("b", lambda s: {"z": 2})
    builder.add_edge(START, "a")
    builder.add_conditional_edges("a", route, ["b", END])
    builder.add_edge("b", END)
    faulty = faults.inject(builder, routers={"route": 0.3}, seed=4)
    app = instrumented(faulty)
    outcomes = run(app, 200)
    r = coordgap.ledger(app).snapshot().routers["route"]
    assert r.failures == r.faults == outcomes.count("InjectedFault") > 0
    assert within_binomial(r.faults, 200, 0.3)


def test_faults_are_flagged_on_spans(tracer_provider: Any, span_exporter: Any) -> None:
    faulty = faults.inject(chain(), nodes={"a": 0.5}, handoffs={("a", "b"): 1.0}, seed=2)
    app = coordgap.instrument(faulty, spans="failures", tracer_provider=tracer_provider)
    run(app, 10)
    failed = [s for s in span_exporter.get_finished_spans() if s.name != "coordgap.run"]
    assert failed
    assert all(s.attributes.get("coordgap.fault") is True for s in failed)


def test_real_failure_spans_carry_no_fault_flag(tracer_provider: Any, span_exporter: Any) -> None:
    app = coordgap.instrument(
        chain(a_raises=True), spans="failures", tracer_provider=tracer_provider
    )
    run(app, 8)
    nodes = [s for s in span_exporter.get_finished_spans() if s.name == "coordgap.node"]
    assert nodes
    assert not any("coordgap.fault" in s.attributes for s in nodes)


# -- async and Send ---------------------------------------------------------------------------


def async_chain() -> StateGraph:
    async def a(state: S) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"y": state["x"] + 1}

    @coordgap.contract(requires=HasY)
    def b(state: S) -> dict[str, Any]:  # sync node under ainvoke
        return {"z": state.get("y", -1) * 2}

    builder = StateGraph(S)
    builder.add_node("a", a)
    builder.add_node("b", b)
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", END)
    return builder


def test_async_graph_gets_the_same_faults_as_sync() -> None:
    rates = {"nodes": {"a": 0.2, "b": 0.1}, "handoffs": {("a", "b"): 0.2}}
    sync_app = instrumented(faults.inject(chain(), seed=8, **rates))
    async_app = instrumented(faults.inject(async_chain(), seed=8, **rates))
    expected = run(sync_app, 150)

    async def go() -> list[str]:
        out = []
        for i in range(150):
            try:
                await async_app.ainvoke({"x": i})
                out.append("ok")
            except Exception as exc:
                out.append(type(exc).__name__)
        return out

    assert asyncio.run(go()) == expected
    s1 = coordgap.ledger(sync_app).snapshot()
    s2 = coordgap.ledger(async_app).snapshot()
    assert (s1.runs.clean, s1.runs.error) == (s2.runs.clean, s2.runs.error)
    assert s1.handoffs[("a", "b")].faults == s2.handoffs[("a", "b")].faults > 0
    assert s1.nodes["b"].faults == s2.nodes["b"].faults


class Fan(TypedDict):
    items: list[int]
    results: Annotated[list[int], operator.add]


class Item(BaseModel):
    item: int


def fan_out() -> StateGraph:
    def plan(state: Fan) -> dict[str, Any]:
        return {}

    def spread(state: Fan) -> list[Send]:
        return [Send("worker", {"item": i}) for i in state["items"]]

    @coordgap.contract(requires=Item)
    def worker(payload: dict[str, Any]) -> dict[str, Any]:
        return {"results": [payload.get("item", -1)]}

    builder = StateGraph(Fan)
    builder.add_node("plan", plan)
    builder.add_node("worker", worker)
    builder.add_edge(START, "plan")
    builder.add_conditional_edges("plan", spread, ["worker"])
    builder.add_edge("worker", END)
    return builder


def test_send_payloads_are_corrupted_and_workers_fault() -> None:
    def go() -> tuple[Any, Any]:
        faulty = faults.inject(
            fan_out(), nodes={"worker": 0.1}, handoffs={("plan", "worker"): 0.2}, seed=5
        )
        app = instrumented(faulty)
        for _ in range(40):
            try:
                app.invoke({"items": list(range(6)), "results": []})
            except InjectedFault:
                pass
        return coordgap.ledger(app).snapshot(), faulty.coordgap_faults.counts

    for _ in range(2):
        snap, counts = go()
        h = snap.handoffs[("plan", "worker")]
        assert dict(h.kinds) == {"send": h.transfers}
        assert h.faults == h.failures == counts["handoff:plan->worker"][1] > 0
        assert snap.nodes["worker"].faults == counts["node:worker"][1] > 0
        # per-component counters: a component's n-th draw decides the same way whichever
        # thread takes it. (How many Sends of a superstep start before a failing one cancels
        # the rest is LangGraph's thread timing, so the number of draws may differ run to run.)
        for component, rate in (("node:worker", 0.1), ("handoff:plan->worker", 0.2)):
            draws, fired = counts[component]
            assert fired == sum(faults.draw(5, component, n) < rate for n in range(draws))


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"nodes": {"a": 1.5}}, r"^nodes\['a'\]=1.5: a fault rate is a probability in \[0, 1\]"),
        ({"nodes": {"a": -0.1}}, r"a fault rate is a probability in \[0, 1\] \(0.04 for 4 %\)"),
        ({"nodes": {"aa": 0.1}}, "Did you mean 'a'"),
        ({"routers": {"nope": 0.1}}, "no 'nope'"),
        ({"handoffs": {("a", END): 0.1}}, "END"),
        ({"handoffs": {("a", "c"): 0.1}}, "no 'c'"),
        ({"handoffs": {"a": 0.1}}, "tuple"),
        ({"nodes": {"a": 0.1}, "kind": "corrupt"}, "corrupt"),
        ({"handoffs": 0.1, "kind": "raise"}, "raise"),
        ({"nodes": 0.1, "seed": "7"}, "seed"),
        ({"nodes": True}, "fault rate"),
    ],
)
def test_bad_arguments_are_configuration_errors(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(coordgap.ConfigurationError, match=match):
        faults.inject(chain(), **kwargs)


def test_compiled_graph_is_refused() -> None:
    with pytest.raises(coordgap.ConfigurationError, match="builder"):
        faults.inject(chain().compile(), nodes=0.1)


def test_injected_fault_pickles_and_is_flagged() -> None:
    import pickle

    exc = pickle.loads(pickle.dumps(InjectedFault("node 'a'", 3)))
    assert exc.component == "node 'a'" and exc.draw == 3
    assert exc.__coordgap_fault__ is True
