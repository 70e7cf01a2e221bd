"""The reproducers of issue 13 ("Right on the agents people build"), one test each or more.

Numbered as in the issue. A test that fails on today's code is a strict xfail whose
reason says what goes wrong; a fix flips it (and the marker must then go).
"""

from __future__ import annotations

import asyncio
import json
import operator
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command

import coordgap

from .corpus import (
    CASES,
    HAS_NODE_DEFAULTS,
    HAS_TRACE_POLICY,
    Calls,
    LogState,
    _agent,
    _human,
    add,
    error_handler_builder,
    interrupt_subgraph,
    lookup,
    map_reduce,
    retry_router,
    trace_policy_builder,
)
from .fakes import ScriptedChatModel, call, say
from .harness import both, expected, instrumented, restrict
from .oracle import Oracle, assert_same_ledger, ledger_view


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COORDGAP_SPANS", "off")


def xfail(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=f"issue 13: {reason}")


# -- 1. phantom handoff after Command(graph=Command.PARENT) -----------------------------------


class S(TypedDict, total=False):
    log: Annotated[list[str], operator.add]


def reproducer_1() -> StateGraph[Any]:
    """The issue's graph: a subgraph node leaves through Command.PARENT and has a static
    out-edge (tools -> agent) that LangGraph never writes."""
    inner = StateGraph(S)
    inner.add_node("agent", lambda s: {"log": ["a"]})
    inner.add_node("tools", lambda s: Command(graph=Command.PARENT, goto="worker"))
    inner.add_edge(START, "agent")
    inner.add_edge("agent", "tools")
    inner.add_edge("tools", "agent")
    p = StateGraph(S)
    p.add_node("sup", inner.compile(), destinations=("worker",))
    p.add_node("worker", lambda s: {"log": ["w"]})
    p.add_edge(START, "sup")
    return p


def test_1_no_phantom_handoff_after_command_parent() -> None:
    got, want, _ = both(reproducer_1, [({"log": []}, None)] * 3)
    assert ("sup/tools", "sup/agent") not in got["handoffs"]
    assert_same_ledger(got, want)


def test_1_reproducer_observed_is_one() -> None:
    _, _, app = both(reproducer_1, [({"log": []}, None)] * 3)
    assert coordgap.ledger(app).snapshot().runs.clean == 3


def test_1_swarm_turns_on_one_thread_are_finished_not_interrupted() -> None:
    case = CASES["swarm_prebuilt"]
    app = instrumented(case)
    for run in case.runs:
        app.invoke(run.input, run.config)
    runs = coordgap.ledger(app).snapshot().runs
    assert (runs.runs, runs.ok, runs.interrupted, runs.clean) == (3, 3, 0, 3)


def test_1_supervisor_ghost_is_one_invalid_route_and_the_weakest_link() -> None:
    case = CASES["supervisor_ghost"]
    app = instrumented(case)
    app.invoke(case.runs[0].input)
    snap = coordgap.ledger(app).snapshot()
    failed = {k: dict(h.error_types) for k, h in snap.handoffs.items() if h.failures}
    assert failed == {("supervisor", "__unknown__"): {"InvalidRoute": 1}}
    weakest = coordgap.report(app).weakest
    assert weakest and "__unknown__" in str(weakest[0])


# -- 2. RetryPolicy around a router ---------------------------------------------------------


def test_2_retried_router_failures_are_failed_attempts_not_executions() -> None:
    calls = Calls()
    app = coordgap.instrument(retry_router(None, calls), spans="off", metrics=False)
    app.invoke({"x": 0})  # the router flakes on attempt 1, attempt 2 routes to done
    with pytest.raises(Exception, match="router flaked"):
        app.invoke({"x": 9})  # the router fails on all 3 attempts
    assert calls.counts["work"] == 5
    snap = coordgap.ledger(app).snapshot()
    work = snap.nodes["work"]
    # two tasks; the router's failure on the last attempt of the second is the router's (the
    # node did its work), the three retried failures are failed attempts of the task
    assert (work.executions, work.failures) == (2, 0)
    assert (work.attempts, work.attempt_failures, work.first_attempt_ok) == (5, 3, 0)
    route = snap.routers["route"]
    assert (route.decisions, route.failures, dict(route.error_types)) == (2, 1, {"Flaky": 1})
    assert (snap.runs.ok, snap.runs.clean, snap.runs.error) == (1, 1, 1)
    assert_same_ledger(ledger_view(snap), expected(CASES["retry_router"]))


# -- 3. set_node_defaults(error_handler=...) -------------------------------------------------


needs_node_defaults = pytest.mark.skipif(
    not HAS_NODE_DEFAULTS, reason="this LangGraph has no StateGraph.set_node_defaults"
)


@needs_node_defaults
def test_3_instrument_a_compiled_graph_with_a_default_error_handler() -> None:
    bare = error_handler_builder().compile()
    app = coordgap.instrument(error_handler_builder().compile(), spans="off")
    for x in (0, 1):
        assert app.invoke({"x": x}) == bare.invoke({"x": x})


@needs_node_defaults
def test_3_error_handler_node_is_counted_as_langgraph_runs_it() -> None:
    got, want, _ = both(error_handler_builder, [({"x": 0}, None), ({"x": 1}, None)])
    assert got["nodes"].get("__default_error_handler__") == {"executions": 1, "failures": 0}
    assert_same_ledger(got, want)


# -- 4. TracePolicy seen by a LangChain tracer ----------------------------------------------


def _traced(graph: Any, how: str) -> list[Any]:
    handler = RunCollectorCallbackHandler()
    config: Any = {"callbacks": [handler]}
    if how == "invoke":
        graph.invoke({"x": 0}, config)
    elif how == "stream":
        list(graph.stream({"x": 0}, config, stream_mode=["values", "updates"]))
    else:
        asyncio.run(graph.ainvoke({"x": 0}, config))
    out: list[Any] = []

    def walk(run: Any, depth: int) -> None:
        out.append((depth, run.name, run.inputs, run.outputs, run.error))
        for child in run.child_runs:
            walk(child, depth + 1)

    for run in handler.traced_runs:
        walk(run, 0)
    return out


@pytest.mark.skipif(not HAS_TRACE_POLICY, reason="this LangGraph has no TracePolicy")
@pytest.mark.parametrize("how", ["invoke", "stream", "ainvoke"])
@pytest.mark.parametrize("path", ["builder", "compiled"])
def test_4_tracers_see_exactly_what_they_see_bare(how: str, path: str) -> None:
    bare = _traced(trace_policy_builder().compile(), how)
    assert (1, "private", {"redacted": True}, {"redacted": True}, None) in bare
    graph = trace_policy_builder() if path == "builder" else trace_policy_builder().compile()
    assert _traced(coordgap.instrument(graph, spans="off"), how) == bare


# -- 5. drawings of an instrumented subgraph --------------------------------------------------


def _parent(inner: Any) -> Any:
    p = StateGraph(LogState)
    p.add_node("review", inner)
    p.add_node("after", lambda s: {"log": ["after"]})
    p.add_edge(START, "review")
    p.add_edge("review", "after")
    return p.compile()


def _inner() -> StateGraph[Any]:
    g = StateGraph(LogState)
    g.add_node("step", lambda s: {"log": ["step"]})
    g.add_edge(START, "step")
    return g


def test_5_parent_of_an_instrumented_subgraph_draws_like_bare() -> None:
    bare = _parent(_inner().compile())
    got = _parent(coordgap.instrument(_inner(), spans="off"))
    for xray in (False, True):
        assert got.get_graph(xray=xray).to_json() == bare.get_graph(xray=xray).to_json()
        assert got.get_graph(xray=xray).draw_mermaid() == bare.get_graph(xray=xray).draw_mermaid()
    assert coordgap.instrument(got, spans="off").get_graph().to_json() == (
        bare.get_graph().to_json()
    )


# -- 6. implicit ends ------------------------------------------------------------------------


def implicit_end() -> StateGraph[Any]:
    """A supervisor-like node: Command to a worker, or no Command at all (the run ends)."""

    class St(TypedDict, total=False):
        log: Annotated[list[str], operator.add]

    def sup(state: St) -> Any:
        if "w" in state.get("log", []):
            return {"log": ["done"]}
        return Command(goto="worker", update={"log": ["sup"]})

    b = StateGraph(St)
    b.add_node("sup", sup, destinations=("worker", END))
    b.add_node("worker", lambda s: {"log": ["w"]})
    b.add_edge(START, "sup")
    b.add_edge("worker", "sup")
    return b


def test_6_an_implicit_end_is_counted() -> None:
    got, want, _ = both(implicit_end, [({"log": []}, None)] * 2)
    assert want["handoffs"][("sup", "__end__")]["kinds"] == {"command": 2}
    assert_same_ledger(got, want)


# -- 7. contracts on Send targets -------------------------------------------------------------


@pytest.mark.parametrize("name", ["react_handled", "create_agent_handled"])
def test_7_contract_on_a_send_target_validates_the_state(name: str) -> None:
    case = CASES[name]
    needs_messages = coordgap.Contract(requires=lambda s: "messages" in s, name="has_messages")
    app = instrumented(case, contracts={"tools": needs_messages})
    for run in case.runs:
        app.invoke(run.input, run.config)
    snap = coordgap.ledger(app).snapshot()
    assert sum(h.contract_failures for h in snap.handoffs.values()) == 0
    assert snap.runs.clean == snap.runs.runs == 3


# -- 8. run-level errors named ----------------------------------------------------------------


def _ping_pong_report() -> Any:
    case = CASES["ping_pong"]
    app = instrumented(case)
    with pytest.raises(Exception, match="Recursion limit"):
        app.invoke(case.runs[0].input, case.runs[0].config)
    return app


def test_8_run_level_error_is_named_in_text_markdown_and_json() -> None:
    rep = coordgap.report(_ping_pong_report())
    assert "GraphRecursionError" in rep.to_text(color=False)
    assert "GraphRecursionError" in rep.to_markdown()
    assert "GraphRecursionError" in json.dumps(json.loads(rep.to_json()))


def test_8_run_level_error_says_where_the_run_died() -> None:
    app = _ping_pong_report()
    # six steps ran (researcher, chart_generator, ...); the limit stopped it after chart_generator
    assert dict(coordgap.ledger(app).snapshot().runs.error_at) == {"chart_generator": 1}
    assert (
        "chart_generator" in coordgap.report(app).to_text(color=False).split("GraphRecursion")[-1]
    )


def test_8_run_level_error_is_named_in_html() -> None:
    rep = coordgap.report(_ping_pong_report())
    assert "GraphRecursionError" in rep.to_html()


# -- 9. one name for each thing -------------------------------------------------------------


def _ghost_report() -> Any:
    case = CASES["supervisor_ghost"]
    app = instrumented(case)
    app.invoke(case.runs[0].input)
    return coordgap.report(app)


def test_9_report_spells_an_unknown_target_as_every_api_does() -> None:
    text = _ghost_report().to_text(color=False)
    assert "supervisor -> __unknown__" in text
    assert "-> ?" not in text


def test_9_every_name_the_report_prints_is_accepted_by_what_if(tmp_path: Any) -> None:
    from coordgap import cli
    from coordgap.whatif import what_if

    rep = _ghost_report()
    text = rep.to_text(color=False)
    printed = [
        line.split(None, 1)[1].split("  ")[0].strip()
        for line in text.splitlines()
        if line.startswith(("node ", "handoff ", "router "))
    ]
    assert any("supervisor ->" in name for name in printed)
    path = tmp_path / "rep.json"
    path.write_text(rep.to_json())
    for name in printed:
        what_if(rep, perfect=[name])
        assert cli.main(["what-if", str(path), "--perfect", name]) == 0


def test_9_contracts_address_inner_nodes_by_their_report_name() -> None:
    refuse = coordgap.Contract(requires=lambda s: False, name="refuse")
    app = coordgap.instrument(
        interrupt_subgraph(InMemorySaver()),
        contracts={"review/prepare": refuse},
        spans="off",
    )
    app.invoke({"log": []}, {"configurable": {"thread_id": "t"}})
    snap = coordgap.ledger(app).snapshot()
    assert snap.handoffs[("review/__start__", "review/prepare")].contract_failures == 1


def test_9_faults_address_inner_nodes_by_their_report_name() -> None:
    from coordgap import faults

    faulty = faults.inject(interrupt_subgraph(None).builder, nodes={"review/prepare": 1.0})
    app = coordgap.instrument(faulty, spans="off")
    with pytest.raises(Exception):
        app.invoke({"log": []})
    assert coordgap.ledger(app).snapshot().nodes["review/prepare"].failures == 1


# -- 10. agents called from inside a node; 11. instrumented inside instrumented --------------


def _supervisor(instrument_workers: bool, misroute: bool = False) -> Any:
    from langgraph.prebuilt import create_react_agent
    from langgraph_supervisor import create_supervisor

    research = create_react_agent(
        ScriptedChatModel.of(call("lookup", {"query": "agents"}), say("found it")),
        [lookup],
        name="research_expert",
    )
    if misroute:
        # a hand-written worker whose only step routes to a node that does not exist
        w = StateGraph(MessagesState)
        w.add_node("step", lambda s: Command(goto="nowhere", update={"messages": [("ai", "hm")]}))
        w.add_edge(START, "step")
        math: Any = w.compile(name="math_expert")
    else:
        math = create_react_agent(ScriptedChatModel.of(say("5")), [add], name="math_expert")
    if instrument_workers:
        research = coordgap.instrument(research, name="research_expert", spans="off")
        math = coordgap.instrument(math, name="math_expert", spans="off")
    model = ScriptedChatModel.of(
        call("transfer_to_research_expert"), call("transfer_to_math_expert"), say("done")
    )
    return create_supervisor([research, math], model=model).compile()


@pytest.mark.parametrize("instrument_workers", [False, True], ids=["bare", "instrumented"])
def test_10_supervisor_workers_are_counted_under_the_calling_node(
    instrument_workers: bool,
) -> None:
    oracle = Oracle(_supervisor(False))
    oracle.invoke(_human("q"))
    app = coordgap.instrument(_supervisor(instrument_workers), spans="off")
    app.invoke(_human("q"))
    got = ledger_view(coordgap.ledger(app).snapshot())
    assert "research_expert/agent" in got["nodes"]
    assert_same_ledger(got, oracle.expected())


def test_10_a_workers_failure_makes_the_parent_run_unclean() -> None:
    oracle = Oracle(_supervisor(False, misroute=True))
    oracle.invoke(_human("q"))
    want = oracle.expected()
    assert want["handoffs"][("math_expert/step", "__unknown__")]["failures"] == 1
    app = coordgap.instrument(_supervisor(False, misroute=True), spans="off")
    app.invoke(_human("q"))
    snap = coordgap.ledger(app).snapshot()
    assert (snap.runs.ok, snap.runs.clean) == (1, 0)
    assert_same_ledger(ledger_view(snap), want)


def _swarm(instrument_agents: bool) -> tuple[Any, tuple[Any, ...]]:
    from langgraph_swarm import create_handoff_tool, create_swarm

    alice = _agent(
        "prebuilt",
        "Alice",
        ScriptedChatModel.of(call("transfer_to_bob")),
        [add, create_handoff_tool(agent_name="Bob")],
    )
    bob = _agent(
        "prebuilt",
        "Bob",
        ScriptedChatModel.of(call("add", {"a": 1, "b": 2}), say("3")),
        [add, create_handoff_tool(agent_name="Alice")],
    )
    if instrument_agents:
        alice = coordgap.instrument(alice, name="Alice", spans="off")
        bob = coordgap.instrument(bob, name="Bob", spans="off")
    return create_swarm([alice, bob], default_active_agent="Alice").compile(), (alice, bob)


def test_11_instrumented_agents_inside_an_instrumented_swarm_count_once() -> None:
    oracle = Oracle(_swarm(False)[0])
    oracle.invoke(_human("q"))
    want = oracle.expected()
    swarm, agents = _swarm(True)
    app = coordgap.instrument(swarm, spans="off")
    app.invoke(_human("q"))
    assert_same_ledger(ledger_view(coordgap.ledger(app).snapshot()), want)
    for agent in agents:
        own = ledger_view(coordgap.ledger(agent).snapshot())
        mine = restrict(want, f"{agent.name}/")
        # counted in the parent's run, or in its own ledger too, but whole and once
        assert own["handoffs"] in ({}, mine["handoffs"])
        assert all(row["failures"] == 0 for row in own["handoffs"].values())


# -- 12. audit() of a compiled graph ----------------------------------------------------------

COMPILED = map_reduce(None)
"""A compiled graph for the CLI (``coordgap audit agents.test_reproducers:COMPILED``)."""


def test_12_audit_accepts_a_compiled_graph() -> None:
    want = coordgap.audit(map_reduce(None).builder, nodes=0.9).predicted
    assert coordgap.audit(map_reduce(None), nodes=0.9).predicted == want


def test_12_cli_audit_accepts_a_compiled_graph(capsys: pytest.CaptureFixture[str]) -> None:
    from coordgap.cli import main

    assert main(["audit", "agents.test_reproducers:COMPILED", "--nodes", "0.9"]) == 0
    assert "predicted" in capsys.readouterr().out
