"""Spans through the SDK's in-memory exporter: names, parentage, attributes, status, privacy."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from graphs_basic import State, linear, retrying, sending, step, with_subgraph
from opentelemetry.trace import StatusCode
from pydantic import BaseModel

import coordgap
from coordgap import semconv as sc

CANARY = "canary-7f3a-secret"


class NeedsAnswer(BaseModel):
    answer: str
    n: int


def by_name(spans: Any, name: str) -> list[Any]:
    return [s for s in spans if s.name == name]


def test_all_mode_creates_run_and_node_spans_with_received_handoffs(
    tracer_provider: Any, span_exporter: Any
) -> None:
    """spans='all': one run span, a child per node, received handoffs as node attributes."""
    app = coordgap.instrument(linear(3), spans="all", tracer_provider=tracer_provider)
    app.invoke({"n": 0})
    spans = span_exporter.get_finished_spans()
    (run,) = by_name(spans, sc.SPAN_RUN)
    nodes = by_name(spans, sc.SPAN_NODE)
    assert sorted(s.attributes[sc.ATTR_NODE] for s in nodes) == ["n0", "n1", "n2"]
    assert all(s.parent.span_id == run.context.span_id for s in nodes)
    assert all(s.context.trace_id == run.context.trace_id for s in nodes)
    n1 = next(s for s in nodes if s.attributes[sc.ATTR_NODE] == "n1")
    assert list(n1.attributes[sc.ATTR_RECEIVED_FROM]) == ["n0"]
    assert list(n1.attributes[sc.ATTR_RECEIVED_KINDS]) == ["edge"]
    assert run.attributes[sc.ATTR_OUTCOME] == "ok"
    assert by_name(spans, sc.SPAN_HANDOFF) == []


def test_failures_mode_is_silent_on_the_happy_path(
    tracer_provider: Any, span_exporter: Any
) -> None:
    """spans='failures' creates nothing when nothing fails."""
    app = coordgap.instrument(linear(3), spans="failures", tracer_provider=tracer_provider)
    app.invoke({"n": 0})
    assert span_exporter.get_finished_spans() == ()


@pytest.mark.parametrize("mode", ["all", "failures"])
def test_failed_handoff_span_names_source_target_kind_contract(
    mode: str, tracer_provider: Any, span_exporter: Any
) -> None:
    """A broken handoff contract is an ERROR span with source, target, kind, contract, fields."""
    app = coordgap.instrument(
        linear(3),
        spans=mode,
        tracer_provider=tracer_provider,
        handoffs={("n0", "n1"): NeedsAnswer},
    )
    app.invoke({"n": 0})
    spans = span_exporter.get_finished_spans()
    (run,) = by_name(spans, sc.SPAN_RUN)
    (handoff,) = by_name(spans, sc.SPAN_HANDOFF)
    assert handoff.status.status_code == StatusCode.ERROR
    attrs = handoff.attributes
    assert (attrs[sc.ATTR_SOURCE], attrs[sc.ATTR_TARGET]) == ("n0", "n1")
    assert attrs[sc.ATTR_HANDOFF_KIND] == "edge"
    assert attrs[sc.ATTR_CONTRACT] == "NeedsAnswer"
    assert attrs[sc.ATTR_ERROR_TYPE] == "ContractViolation"
    assert list(attrs[sc.ATTR_CONTRACT_FIELDS]) == ["answer"]
    assert handoff.parent.span_id == run.context.span_id
    assert run.status.status_code == StatusCode.ERROR


def test_failures_mode_keeps_recorded_times_and_parent_under_user_span(
    tracer_provider: Any, span_exporter: Any
) -> None:
    """Failure spans made after the fact keep their start times and nest under the user's span."""
    app = coordgap.instrument(retrying(fails=5), spans="failures", tracer_provider=tracer_provider)
    tracer = tracer_provider.get_tracer("user")
    with tracer.start_as_current_span("request") as outer, pytest.raises(Exception):
        app.invoke({"n": 0})
    spans = span_exporter.get_finished_spans()
    (run,) = by_name(spans, sc.SPAN_RUN)
    assert run.parent.span_id == outer.get_span_context().span_id
    nodes = by_name(spans, sc.SPAN_NODE)
    assert [s.attributes[sc.ATTR_ATTEMPT] for s in nodes] == [1, 2, 3]
    assert all(s.status.status_code == StatusCode.ERROR for s in nodes)
    assert all(run.start_time <= s.start_time <= s.end_time <= run.end_time for s in nodes)
    assert {s.attributes[sc.ATTR_ERROR_TYPE] for s in nodes} == {"TransientError"}


def test_all_mode_spans_nest_under_user_span_across_threads_and_tasks(
    tracer_provider: Any, span_exporter: Any
) -> None:
    """Parallel Send tasks (threads, then asyncio tasks) still parent to the run span."""
    app = coordgap.instrument(sending(), spans="all", tracer_provider=tracer_provider)
    tracer = tracer_provider.get_tracer("user")
    with tracer.start_as_current_span("outer") as outer:
        app.invoke({"n": 4})
        asyncio.run(app.ainvoke({"n": 4}))
    spans = span_exporter.get_finished_spans()
    runs = by_name(spans, sc.SPAN_RUN)
    assert len(runs) == 2
    assert all(r.parent.span_id == outer.get_span_context().span_id for r in runs)
    run_ids = {r.context.span_id for r in runs}
    nodes = by_name(spans, sc.SPAN_NODE)
    assert len(nodes) == 2 * (1 + 5 + 1)
    assert all(n.parent.span_id in run_ids for n in nodes)


def test_user_spans_inside_a_node_nest_under_the_node_span(
    tracer_provider: Any, span_exporter: Any
) -> None:
    """A span the node opens itself is a child of coordgap's node span (spans='all')."""
    from peer_scenarios import user_span

    app = user_span("all", tracer_provider)
    app.invoke({"n": 0})
    spans = span_exporter.get_finished_spans()
    (call,) = by_name(spans, "llm.call")
    (node,) = by_name(spans, sc.SPAN_NODE)
    assert call.parent.span_id == node.context.span_id


def test_subgraph_node_spans_nest_under_the_container_node(
    tracer_provider: Any, span_exporter: Any
) -> None:
    """Inner nodes of a subgraph are children of the subgraph node's span."""
    app = coordgap.instrument(with_subgraph(), spans="all", tracer_provider=tracer_provider)
    app.invoke({"n": 0})
    nodes = {
        s.attributes[sc.ATTR_NODE]: s
        for s in by_name(span_exporter.get_finished_spans(), sc.SPAN_NODE)
    }
    assert nodes["sub/n0"].parent.span_id == nodes["sub"].context.span_id


def test_failed_router_is_an_error_span(tracer_provider: Any, span_exporter: Any) -> None:
    """A router naming no node is a router span and a handoff span with status ERROR."""
    from langgraph.graph import START, StateGraph

    def route(state: State) -> str:
        return "nowhere-" + CANARY

    b = StateGraph(State)
    b.add_node("a", step("a"))
    b.add_edge(START, "a")
    b.add_conditional_edges("a", route)
    app = coordgap.instrument(b, spans="failures", tracer_provider=tracer_provider)
    app.invoke({"n": 0})
    spans = span_exporter.get_finished_spans()
    (router,) = by_name(spans, sc.SPAN_ROUTER)
    (handoff,) = by_name(spans, sc.SPAN_HANDOFF)
    assert router.attributes[sc.ATTR_ROUTER] == "route"
    assert router.attributes[sc.ATTR_ERROR_TYPE] == "InvalidRoute"
    assert handoff.attributes[sc.ATTR_TARGET] == "__unknown__"
    assert CANARY not in repr([s.to_json() for s in spans])


def test_no_state_value_in_any_span_by_default(tracer_provider: Any, span_exporter: Any) -> None:
    """Canary values in the state never reach span attributes, events or status."""
    from langgraph.graph import END, START, StateGraph

    def bad(state: State) -> dict[str, Any]:
        raise ValueError("failed")

    b = StateGraph(State)
    b.add_node("a", step("a"))
    b.add_node("bad", bad)
    b.add_edge(START, "a")
    b.add_edge("a", "bad")
    b.add_edge("bad", END)
    app = coordgap.instrument(
        b,
        spans="all",
        tracer_provider=tracer_provider,
        handoffs={("a", "bad"): NeedsAnswer},
    )
    with pytest.raises(ValueError):
        app.invoke({"n": 0, "answer": 5, "log": [CANARY], "items": [1]})  # type: ignore[typeddict-item]
    dump = repr([s.to_json() for s in span_exporter.get_finished_spans()])
    assert "NeedsAnswer" in dump
    assert CANARY not in dump


def test_spans_off_creates_nothing(tracer_provider: Any, span_exporter: Any) -> None:
    """spans='off' never creates a span, even on failures."""
    app = coordgap.instrument(retrying(5), spans="off", tracer_provider=tracer_provider)
    with pytest.raises(Exception):
        app.invoke({"n": 0})
    assert span_exporter.get_finished_spans() == ()


# -- the attributes backends read ----------------------------------------------------------


def test_spans_carry_the_openinference_kind_and_the_agent_graph(
    tracer_provider: Any, span_exporter: Any
) -> None:
    """Run AGENT (the graph, the root); nodes CHAIN under the graph (subgraph nodes under their
    container); a failed handoff GUARDRAIL, the edge source -> target."""
    from langgraph.graph import START, StateGraph

    b = with_subgraph()
    app = coordgap.instrument(
        b,
        name="g",
        spans="all",
        tracer_provider=tracer_provider,
        handoffs={("before", "sub"): NeedsAnswer},
    )
    app.invoke({"n": 0})
    spans = span_exporter.get_finished_spans()
    (run,) = by_name(spans, sc.SPAN_RUN)
    assert run.attributes[sc.OPENINFERENCE_SPAN_KIND] == sc.SPAN_KIND_AGENT
    assert run.attributes[sc.GRAPH_NODE_ID] == "g"
    assert sc.GRAPH_NODE_PARENT_ID not in run.attributes
    nodes = {s.attributes[sc.ATTR_NODE]: s.attributes for s in by_name(spans, sc.SPAN_NODE)}
    before = nodes["before"]
    assert before[sc.OPENINFERENCE_SPAN_KIND] == sc.SPAN_KIND_CHAIN
    assert (before[sc.GRAPH_NODE_ID], before[sc.GRAPH_NODE_PARENT_ID]) == ("before", "g")
    assert (nodes["sub/n0"][sc.GRAPH_NODE_ID], nodes["sub/n0"][sc.GRAPH_NODE_PARENT_ID]) == (
        "sub/n0",
        "sub",
    )
    (handoff,) = by_name(spans, sc.SPAN_HANDOFF)
    assert handoff.attributes[sc.OPENINFERENCE_SPAN_KIND] == sc.SPAN_KIND_GUARDRAIL
    assert handoff.attributes[sc.GRAPH_NODE_ID] == "sub"
    assert handoff.attributes[sc.GRAPH_NODE_PARENT_ID] == "before"
    assert not any(k.startswith("gen_ai.") for s in spans for k in s.attributes)

    def route(state: State) -> str:
        return "nowhere"

    r = StateGraph(State)
    r.add_node("a", step("a"))
    r.add_edge(START, "a")
    r.add_conditional_edges("a", route)
    span_exporter.clear()
    coordgap.instrument(r, tracer_provider=tracer_provider).invoke({"n": 0})
    (router,) = by_name(span_exporter.get_finished_spans(), sc.SPAN_ROUTER)
    assert router.attributes[sc.OPENINFERENCE_SPAN_KIND] == sc.SPAN_KIND_DECISION
    assert (router.attributes[sc.GRAPH_NODE_ID], router.attributes[sc.GRAPH_NODE_PARENT_ID]) == (
        "route",
        "a",
    )


@pytest.mark.parametrize("mode", ["all", "failures"])
def test_gen_ai_attributes_behind_one_switch(
    mode: str, tracer_provider: Any, span_exporter: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gen_ai=True: the run is invoke_workflow of the graph, a node invoke_agent of the node."""
    app = coordgap.instrument(
        retrying(fails=5), name="g", spans=mode, tracer_provider=tracer_provider, gen_ai=True
    )
    with pytest.raises(Exception):
        app.invoke({"n": 0})
    spans = span_exporter.get_finished_spans()
    (run,) = by_name(spans, sc.SPAN_RUN)
    assert run.attributes[sc.GEN_AI_OPERATION_NAME] == sc.GEN_AI_INVOKE_WORKFLOW
    assert run.attributes[sc.GEN_AI_AGENT_NAME] == "g"
    nodes = by_name(spans, sc.SPAN_NODE)
    assert nodes
    for node in nodes:
        assert node.attributes[sc.GEN_AI_OPERATION_NAME] == sc.GEN_AI_INVOKE_AGENT
        assert node.attributes[sc.GEN_AI_AGENT_NAME] == node.attributes[sc.ATTR_NODE]


def test_gen_ai_follows_opentelemetrys_opt_in_unless_told(
    tracer_provider: Any, span_exporter: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def gen_ai_on_run(**options: Any) -> bool:
        span_exporter.clear()
        app = coordgap.instrument(
            linear(1), spans="all", tracer_provider=tracer_provider, **options
        )
        app.invoke({"n": 0})
        (run,) = by_name(span_exporter.get_finished_spans(), sc.SPAN_RUN)
        return sc.GEN_AI_OPERATION_NAME in run.attributes

    monkeypatch.delenv(sc.ENV_SEMCONV_OPT_IN, raising=False)
    assert not gen_ai_on_run()
    monkeypatch.setenv(sc.ENV_SEMCONV_OPT_IN, f"http, {sc.SEMCONV_OPT_IN_GEN_AI}")
    assert gen_ai_on_run()
    assert not gen_ai_on_run(gen_ai=False)
    monkeypatch.setenv(sc.ENV_SEMCONV_OPT_IN, "http")
    assert gen_ai_on_run(gen_ai=True)
    with pytest.raises(coordgap.ConfigurationError, match="gen_ai"):
        coordgap.instrument(linear(1), gen_ai="yes")  # type: ignore[arg-type]


def test_without_another_tracer_the_node_step_changes_nothing(
    tracer_provider: Any, span_exporter: Any
) -> None:
    """No other tracer: coordgap's run span is the root; its failures hang from it."""
    app = coordgap.instrument(
        linear(3),
        spans="failures",
        tracer_provider=tracer_provider,
        handoffs={("n0", "n1"): NeedsAnswer},
    )
    assert app.invoke({"n": 0}) == linear(3).compile().invoke({"n": 0})
    spans = span_exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == [sc.SPAN_HANDOFF, sc.SPAN_RUN]
    (run,) = by_name(spans, sc.SPAN_RUN)
    (handoff,) = by_name(spans, sc.SPAN_HANDOFF)
    assert run.parent is None
    assert handoff.parent.span_id == run.context.span_id
