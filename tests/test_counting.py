"""Exact counts per node, handoff, router and run on graphs where they are known."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Literal

import pytest
from graphs_basic import (
    State,
    commanding,
    fan_out_in,
    interrupting,
    linear,
    looping,
    retrying,
    sending,
    step,
    with_subgraph,
)
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Send
from langgraph_features import needs_error_handler, needs_node_timeout

import coordgap


def counts(app: Any) -> tuple[dict[str, tuple[int, int]], dict[tuple[str, str], tuple[int, int]]]:
    snap = coordgap.ledger(app).snapshot()
    nodes = {k: (v.executions, v.failures) for k, v in snap.nodes.items()}
    handoffs = {k: (v.transfers, v.failures) for k, v in snap.handoffs.items()}
    return nodes, handoffs


def test_linear_graph_counts_every_node_and_handoff_once_per_run() -> None:
    """A linear graph of k nodes has k executions and k+1 handoffs per run."""
    app = coordgap.instrument(linear(4))
    for _ in range(5):
        app.invoke({"n": 0})
    nodes, handoffs = counts(app)
    assert nodes == {f"n{i}": (5, 0) for i in range(4)}
    assert handoffs == {
        ("__start__", "n0"): (5, 0),
        ("n0", "n1"): (5, 0),
        ("n1", "n2"): (5, 0),
        ("n2", "n3"): (5, 0),
        ("n3", "__end__"): (5, 0),
    }
    runs = coordgap.ledger(app).snapshot().runs
    assert (runs.runs, runs.ok, runs.clean) == (5, 5, 5)


def test_loop_counts_visits_and_router_decisions() -> None:
    """A loop of 3 visits counts 3 work executions and 3 router decisions per run."""
    app = coordgap.instrument(looping(3))
    app.invoke({"n": 0})
    snap = coordgap.ledger(app).snapshot()
    assert snap.nodes["work"].executions == 3
    assert snap.routers["route"].decisions == 3
    assert dict(snap.routers["route"].targets) == {"work": 2, "done": 1}
    assert snap.handoffs[("work", "work")].kinds == {"conditional": 2}


def test_join_handoffs_are_kind_join() -> None:
    """Fan-in edges are counted once per source as kind join."""
    app = coordgap.instrument(fan_out_in())
    app.invoke({"n": 0})
    snap = coordgap.ledger(app).snapshot()
    assert dict(snap.handoffs[("b", "d")].kinds) == {"join": 1}
    assert dict(snap.handoffs[("c", "d")].kinds) == {"join": 1}
    assert snap.nodes["d"].executions == 1


def test_command_goto_is_a_command_handoff() -> None:
    """Command(goto=...) opens a command handoff to the chosen node."""
    app = coordgap.instrument(commanding())
    app.invoke({"n": 0})
    app.invoke({"n": 1})
    snap = coordgap.ledger(app).snapshot()
    assert snap.handoffs[("a", "b")].kinds == {"command": 1}
    assert snap.handoffs[("a", "c")].kinds == {"command": 1}


@pytest.mark.parametrize("width", [1, 3, 8])
def test_send_fan_out_counts_one_handoff_per_send(width: int) -> None:
    """Each Send is one send handoff and one execution of its target."""
    app = coordgap.instrument(sending())
    app.invoke({"n": width})
    snap = coordgap.ledger(app).snapshot()
    assert snap.handoffs[("start", "work")].transfers == width + 1
    assert snap.nodes["work"].executions == width + 1
    assert snap.handoffs[("start", "work")].kinds == {"send": width + 1}


def test_subgraph_nodes_are_namespaced_and_the_run_counted_once() -> None:
    """A compiled subgraph's nodes appear as sub/n0, sub/n1; the run is counted once."""
    app = coordgap.instrument(with_subgraph())
    app.invoke({"n": 0})
    snap = coordgap.ledger(app).snapshot()
    assert {"sub/n0", "sub/n1", "sub"} <= set(snap.nodes)
    assert snap.runs.runs == 1
    assert ("sub/n0", "sub/n1") in snap.handoffs
    assert "sub" in snap.topology.subgraphs


def test_retries_count_attempts_and_first_attempt_success() -> None:
    """With a RetryPolicy, each attempt is counted; the execution succeeds eventually."""
    app = coordgap.instrument(retrying(fails=2, attempts=3))
    app.invoke({"n": 0})
    flaky = coordgap.ledger(app).snapshot().nodes["flaky"]
    assert (flaky.executions, flaky.failures, flaky.attempts, flaky.attempt_failures) == (
        1,
        0,
        3,
        2,
    )
    assert flaky.first_attempt_ok == 0
    assert coordgap.ledger(app).snapshot().runs.clean == 1


def test_retries_exhausted_is_one_failed_execution() -> None:
    """When every attempt fails the node has one failed execution and the run errors."""
    app = coordgap.instrument(retrying(fails=5, attempts=3))
    with pytest.raises(Exception, match="boom 3"):
        app.invoke({"n": 0})
    snap = coordgap.ledger(app).snapshot()
    flaky = snap.nodes["flaky"]
    assert (flaky.executions, flaky.failures, flaky.attempts) == (1, 1, 3)
    assert flaky.error_types == {"TransientError": 3}
    assert (snap.runs.error, snap.runs.clean) == (1, 0)


def test_interrupt_is_not_a_failure_and_resume_is_a_new_run() -> None:
    """interrupt() makes an interrupted run, not a failure; the resumed run delivers the handoff."""
    app = coordgap.instrument(interrupting().compile(checkpointer=InMemorySaver()))
    cfg = {"configurable": {"thread_id": "t"}}
    app.invoke({"n": 0}, cfg)
    app.invoke(Command(resume="ok"), cfg)
    snap = coordgap.ledger(app).snapshot()
    assert all(n.failures == 0 for n in snap.nodes.values())
    assert snap.nodes["ask"].executions == 1
    assert snap.handoffs[("ask", "end")].transfers == 1
    assert (snap.runs.runs, snap.runs.interrupted, snap.runs.ok) == (2, 1, 1)


def _router_graph(route: Any, path_map: Any = None) -> StateGraph:
    b = StateGraph(State)
    b.add_node("a", step("a"))
    b.add_node("b", step("b"))
    b.add_edge(START, "a")
    b.add_conditional_edges("a", route, path_map)
    b.add_edge("b", END)
    return b


def test_router_returning_unknown_node_is_a_failed_handoff_though_langgraph_ignores_it() -> None:
    """A router without a path map naming no node: LangGraph ends quietly, coordgap counts it."""

    def route(state: State) -> str:
        return "nope"

    bare = _router_graph(route).compile()
    app = coordgap.instrument(_router_graph(route))
    assert bare.invoke({"n": 0}) == app.invoke({"n": 0})
    snap = coordgap.ledger(app).snapshot()
    assert snap.routers["route"].failures == 1
    assert snap.handoffs[("a", "__unknown__")].error_types == {"InvalidRoute": 1}
    assert snap.runs.clean == 0 and snap.runs.ok == 1


def test_router_outside_path_map_raises_keyerror_and_is_counted() -> None:
    """A label outside an explicit path map raises KeyError in LangGraph; counted as invalid."""

    def route(state: State) -> str:
        return "zzz"

    app = coordgap.instrument(_router_graph(route, {"go": "b"}))
    with pytest.raises(KeyError):
        app.invoke({"n": 0})
    snap = coordgap.ledger(app).snapshot()
    assert snap.routers["route"].failures == 1
    assert snap.runs.error == 1


def test_router_that_raises_is_a_router_failure_and_writes_no_handoff() -> None:
    """An exception in the router counts against the router (the node did its work); the
    task raised, so LangGraph wrote no handoff out of it. The exception propagates."""

    def route(state: State) -> str:
        raise LookupError("router broke")

    app = coordgap.instrument(_router_graph(route))
    with pytest.raises(LookupError, match="router broke"):
        app.invoke({"n": 0})
    snap = coordgap.ledger(app).snapshot()
    assert snap.routers["route"].error_types == {"LookupError": 1}
    assert snap.nodes["a"].failures == 0 and snap.nodes["a"].executions == 1
    assert not [h for h in snap.handoffs if h[0] == "a"]


def test_command_goto_unknown_is_counted_though_langgraph_ignores_it() -> None:
    """Command(goto='unknown') is dropped silently by LangGraph; coordgap counts a failed handoff."""

    def a(state: State) -> Command:
        return Command(goto="missing", update={"n": 1})

    def build() -> StateGraph:
        b = StateGraph(State)
        b.add_node("a", a)
        b.add_node("b", step("b"))
        b.add_edge(START, "a")
        b.add_edge("b", END)
        return b

    app = coordgap.instrument(build())
    assert build().compile().invoke({"n": 0}) == app.invoke({"n": 0})
    snap = coordgap.ledger(app).snapshot()
    assert snap.handoffs[("a", "__unknown__")].kinds == {"command": 1}
    assert snap.handoffs[("a", "__unknown__")].failures == 1


def test_send_to_unknown_node_is_counted() -> None:
    """Send('missing', ...) is ignored by LangGraph; coordgap counts a failed send handoff."""

    def fan(state: State) -> list[Send]:
        return [Send("missing", {"n": 1})]

    app = coordgap.instrument(_router_graph(fan))
    app.invoke({"n": 0})
    snap = coordgap.ledger(app).snapshot()
    assert snap.handoffs[("a", "__unknown__")].kinds == {"send": 1}


def test_parent_command_from_subgraph_is_a_command_handoff_in_the_parent() -> None:
    """Command(graph=PARENT, goto=...) inside a subgraph counts as a handoff of the parent."""

    def escape(state: State) -> Command:
        return Command(graph=Command.PARENT, goto="after", update={"log": ["escape"]})

    inner = StateGraph(State)
    inner.add_node("escape", escape)
    inner.add_edge(START, "escape")
    sub = inner.compile()

    def build() -> StateGraph:
        b = StateGraph(State)
        b.add_node("sub", sub, destinations=("after",))
        b.add_node("after", step("after"))
        b.add_edge(START, "sub")
        b.add_edge("after", END)
        return b

    app = coordgap.instrument(build())
    assert build().compile().invoke({"n": 0}) == app.invoke({"n": 0})
    snap = coordgap.ledger(app).snapshot()
    assert snap.handoffs[("sub", "after")].kinds == {"command": 1}
    assert snap.nodes["sub/escape"].failures == 0
    assert all(v.failures == 0 for v in snap.handoffs.values())


def test_concurrent_threads_lose_no_count() -> None:
    """32 threads x 20 invokes: every execution and handoff is counted exactly."""
    app = coordgap.instrument(linear(3), spans="off", metrics=False)
    barrier = threading.Barrier(32)

    def worker() -> None:
        barrier.wait()
        for _ in range(20):
            app.invoke({"n": 0})

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    nodes, handoffs = counts(app)
    assert nodes == {f"n{i}": (640, 0) for i in range(3)}
    assert all(t == 640 for t, _ in handoffs.values())
    assert coordgap.ledger(app).snapshot().runs.clean == 640


def test_concurrent_asyncio_runs_lose_no_count() -> None:
    """200 concurrent ainvoke runs are each counted once."""
    app = coordgap.instrument(sending(), spans="off", metrics=False)

    async def main() -> None:
        await asyncio.gather(*(app.ainvoke({"n": 2}) for _ in range(200)))

    asyncio.run(main())
    snap = coordgap.ledger(app).snapshot()
    assert snap.runs.runs == 200
    assert snap.nodes["work"].executions == 600
    assert snap.handoffs[("start", "work")].transfers == 600


def test_abandoned_stream_is_an_interrupted_run() -> None:
    """Breaking out of stream() early records the run as interrupted, not ok."""
    app = coordgap.instrument(linear(3))
    for _chunk in app.stream({"n": 0}):
        break
    runs = coordgap.ledger(app).snapshot().runs
    assert (runs.runs, runs.interrupted, runs.ok) == (1, 1, 0)


def test_conditional_entry_point_is_counted_from_start() -> None:
    """A router on START opens handoffs from __start__."""

    def entry(state: State) -> Literal["a", "b"]:
        return "b"

    b = StateGraph(State)
    b.add_node("a", step("a"))
    b.add_node("b", step("b"))
    b.add_conditional_edges(START, entry)
    b.add_edge("a", END)
    b.add_edge("b", END)
    app = coordgap.instrument(b)
    app.invoke({"n": 0})
    snap = coordgap.ledger(app).snapshot()
    assert snap.handoffs[("__start__", "b")].kinds == {"conditional": 1}
    assert snap.routers["entry"].source == "__start__"


def test_reset_zeroes_counts_and_keeps_topology() -> None:
    """reset() empties the counts; the topology stays."""
    app = coordgap.instrument(linear(2))
    app.invoke({"n": 0})
    coordgap.ledger(app).reset()
    snap = coordgap.ledger(app).snapshot()
    assert snap.nodes == {} and snap.runs.runs == 0
    assert snap.topology is not None and snap.topology.nodes == ("n0", "n1")


def test_counting_after_reset_starts_from_zero_on_the_bound_rows() -> None:
    """The probes count on rows bound at instrument time: reset() zeroes them in place,
    and a snapshot shows only what was counted (no empty rows before the first run)."""
    app = coordgap.instrument(linear(3), spans="off", metrics=False)
    fresh = coordgap.ledger(app).snapshot()
    assert fresh.nodes == {} and fresh.handoffs == {}
    for _ in range(3):
        app.invoke({"n": 0})
    coordgap.ledger(app).reset()
    app.invoke({"n": 0})
    snap = coordgap.ledger(app).snapshot()
    assert {n: s.executions for n, s in snap.nodes.items()} == {"n0": 1, "n1": 1, "n2": 1}
    assert {k: h.transfers for k, h in snap.handoffs.items()} == {
        ("__start__", "n0"): 1,
        ("n0", "n1"): 1,
        ("n1", "n2"): 1,
        ("n2", "__end__"): 1,
    }
    assert snap.runs.runs == snap.runs.clean == 1


def test_instrumenting_twice_does_not_double_count() -> None:
    """instrument(app) on an instrumented graph warns and returns it unchanged."""
    app = coordgap.instrument(linear(2))
    with pytest.warns(UserWarning, match="already instrumented"):
        again = coordgap.instrument(app)
    assert again is app
    again.invoke({"n": 0})
    assert coordgap.ledger(app).snapshot().nodes["n0"].executions == 1


def test_defer_and_cache_nodes() -> None:
    """defer and cache_policy keep their behaviour and counts.

    A node answered from LangGraph's cache runs no code: the hit is read from the graph's
    cache and counted as a successful execution, its handoff into it delivered.
    """
    from langgraph.cache.memory import InMemoryCache
    from langgraph.types import CachePolicy

    async def slow(state: State) -> dict[str, Any]:
        await asyncio.sleep(0.001)
        return {"log": ["slow"]}

    def build() -> StateGraph:
        b = StateGraph(State)
        b.add_node("a", step("a"))
        b.add_node("late", step("late"), defer=True)
        b.add_node("cached", step("cached"), cache_policy=CachePolicy())
        b.add_node("slow", slow)
        b.add_edge(START, "a")
        for target in ("late", "cached"):
            b.add_edge("a", target)
        b.add_edge("cached", "slow")
        b.add_edge("slow", END)
        b.add_edge("late", END)
        return b

    async def twice(graph: Any) -> list[list[str]]:
        return [sorted((await graph.ainvoke({"n": 0}))["log"]) for _ in range(2)]

    bare = build().compile(cache=InMemoryCache())
    app = coordgap.instrument(build().compile(cache=InMemoryCache()))
    assert asyncio.run(twice(bare)) == asyncio.run(twice(app))
    snap = coordgap.ledger(app).snapshot()
    assert snap.nodes["cached"].executions == 2  # the second run's is a cache hit
    assert snap.handoffs[("cached", "slow")].transfers == 2  # its replayed writes hand off
    assert (snap.handoffs[("a", "cached")].transfers, snap.handoffs[("a", "cached")].failures) == (
        2,
        0,
    )
    assert snap.nodes["late"].executions == 2
    assert (snap.runs.ok, snap.runs.clean) == (2, 2)


@needs_error_handler
@needs_node_timeout
def test_error_handler_and_timeout_nodes() -> None:
    """error_handler and timeout keep their behaviour and counts."""

    def boom(state: State) -> dict[str, Any]:
        raise KeyError("boom")

    def handler(state: State) -> dict[str, Any]:
        return {"log": ["handled"]}

    async def slow(state: State) -> dict[str, Any]:
        await asyncio.sleep(0.001)
        return {"log": ["slow"]}

    def build() -> StateGraph:
        b = StateGraph(State)
        b.add_node("a", step("a"))
        b.add_node("boom", boom, error_handler=handler)
        b.add_node("slow", slow, timeout=5.0)
        b.add_edge(START, "a")
        for target in ("boom", "slow"):
            b.add_edge("a", target)
        b.add_edge("slow", END)
        return b

    async def twice(graph: Any) -> list[list[str]]:
        return [sorted((await graph.ainvoke({"n": 0}))["log"]) for _ in range(2)]

    bare = build().compile()
    app = coordgap.instrument(build().compile())
    assert asyncio.run(twice(bare)) == asyncio.run(twice(app))
    snap = coordgap.ledger(app).snapshot()
    assert (snap.nodes["boom"].executions, snap.nodes["boom"].failures) == (2, 2)
    assert (snap.nodes["slow"].executions, snap.nodes["slow"].failures) == (2, 0)
    assert (snap.runs.ok, snap.runs.clean) == (2, 0)  # the handled failure still dirties the run


def test_join_into_end_is_counted_as_a_join() -> None:
    """add_edge([b, c], END): each source's handoff into END has kind join, like any join."""
    from graphs_basic import log_only

    b = StateGraph(State)
    for n in ("a", "b", "c"):
        b.add_node(n, log_only(n))
    b.add_edge(START, "a")
    b.add_edge("a", "b")
    b.add_edge("a", "c")
    b.add_edge(["b", "c"], END)
    app = coordgap.instrument(b)
    assert b.compile().invoke({"n": 0}) == app.invoke({"n": 0})
    snap = coordgap.ledger(app).snapshot()
    assert dict(snap.handoffs[("b", "__end__")].kinds) == {"join": 1}
    assert dict(snap.handoffs[("c", "__end__")].kinds) == {"join": 1}
