"""Failed handoffs, nodes and routers, read back from a real Arize Phoenix over its REST API.

Phoenix runs on 127.0.0.1 (see ``conftest.phoenix``); coordgap exports to it
through ``coordgap.configure_otlp`` over OTLP/HTTP, exactly as a user would.
Each test writes into its own Phoenix project, flushes, then lists the
project's spans through ``GET /v1/projects/{project}/spans`` and checks the
span tree, the attributes, and that no state value (canary) reached Phoenix.
"""

from __future__ import annotations

import itertools
import json
import time
import urllib.parse
import urllib.request
from typing import Any

import pytest

import coordgap
from coordgap import semconv as sc
from coordgap.otlp import configure_otlp

from . import failing_graphs as fg
from .servers import Server

# One server per session: with xdist, run as `--dist loadgroup` so one worker gets them all.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("phoenix")]

_projects = itertools.count()
INGEST_TIMEOUT_S = 60.0


def _project(tag: str) -> str:
    return f"coordgap-{tag}-{next(_projects)}"


def _spans(phoenix: Server, project: str) -> list[dict[str, Any]]:
    url = (
        f"{phoenix.url}/v1/projects/{urllib.parse.quote(project, safe='')}/spans?"
        + urllib.parse.urlencode({"limit": 1000})
    )
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # the project appears with its first span
            return []
        raise
    return list(body["data"])


def _wait_for_spans(phoenix: Server, project: str, count: int) -> list[dict[str, Any]]:
    """Poll until Phoenix has stored ``count`` spans (its ingestion is asynchronous); bounded."""
    deadline = time.monotonic() + INGEST_TIMEOUT_S
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        spans = _spans(phoenix, project)
        if len(spans) >= count:
            time.sleep(0.5)  # let a straggler arrive, so "exactly count" is meaningful
            return _spans(phoenix, project)
        time.sleep(0.25)
    return spans


def _export(phoenix: Server, project: str, app_factory: Any, *, expect_error: bool) -> None:
    tp, mp = configure_otlp(
        phoenix.url,
        service_name="coordgap-integration",
        resource_attributes={"openinference.project.name": project},
        metrics=False,
    )
    try:
        app = app_factory(tp, mp)
        if expect_error:
            with pytest.raises(ValueError, match=fg.CANARY):
                app.invoke(fg.initial_state())
        else:
            app.invoke(fg.initial_state())
        assert tp.force_flush(timeout_millis=30_000)
    finally:
        tp.shutdown()
        mp.shutdown()


def _by_name(spans: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [s for s in spans if s["name"] == name]


def _assert_child_of_run(span: dict[str, Any], spans: list[dict[str, Any]]) -> dict[str, Any]:
    runs = _by_name(spans, sc.SPAN_RUN)
    assert len(runs) == 1, [s["name"] for s in spans]
    run = runs[0]
    assert run["parent_id"] is None
    assert span["parent_id"] == run["context"]["span_id"]
    assert span["context"]["trace_id"] == run["context"]["trace_id"]
    assert run["status_code"] == "ERROR"
    return run


def _assert_no_state_values(spans: list[dict[str, Any]]) -> None:
    dumped = json.dumps(spans)
    assert fg.CANARY not in dumped


@pytest.mark.parametrize("mode", ["failures", "all"])
def test_failed_handoff_span_reaches_phoenix(phoenix: Server, mode: str) -> None:
    project = _project(f"handoff-{mode}")
    builder, handoffs = fg.handoff_graph()
    _export(
        phoenix,
        project,
        lambda tp, mp: coordgap.instrument(
            builder,
            name="handoff-demo",
            handoffs=handoffs,
            spans=mode,
            tracer_provider=tp,
            meter_provider=mp,
        ),
        expect_error=False,
    )
    # failures: run + failed handoff; all: run + 2 node spans + failed handoff.
    spans = _wait_for_spans(phoenix, project, 2 if mode == "failures" else 4)
    handoffs_seen = _by_name(spans, sc.SPAN_HANDOFF)
    assert len(handoffs_seen) == 1, [s["name"] for s in spans]
    span = handoffs_seen[0]
    attrs = span["attributes"]
    assert span["status_code"] == "ERROR"
    assert span["status_message"] == sc.ERROR_CONTRACT
    assert attrs[sc.ATTR_GRAPH] == "handoff-demo"
    assert attrs[sc.ATTR_SOURCE] == "retrieve"
    assert attrs[sc.ATTR_TARGET] == "analyze"
    assert attrs[sc.ATTR_HANDOFF_KIND] == "edge"
    assert attrs[sc.ATTR_OUTCOME] == "error"
    assert attrs[sc.ATTR_ERROR_TYPE] == sc.ERROR_CONTRACT
    assert attrs[sc.ATTR_CONTRACT] == "Analyzable"
    _assert_child_of_run(span, spans)
    if mode == "all":
        nodes = {s["attributes"][sc.ATTR_NODE]: s for s in _by_name(spans, sc.SPAN_NODE)}
        assert set(nodes) == {"retrieve", "analyze"}
        assert all(s["status_code"] != "ERROR" for s in nodes.values())
    else:
        assert len(spans) == 2
    _assert_no_state_values(spans)


def test_failed_node_span_reaches_phoenix(phoenix: Server) -> None:
    project = _project("node")
    builder = fg.node_graph()
    _export(
        phoenix,
        project,
        lambda tp, mp: coordgap.instrument(
            builder, name="node-demo", tracer_provider=tp, meter_provider=mp
        ),
        expect_error=True,
    )
    spans = _wait_for_spans(phoenix, project, 2)
    assert len(spans) == 2, [s["name"] for s in spans]
    (span,) = _by_name(spans, sc.SPAN_NODE)
    attrs = span["attributes"]
    assert span["status_code"] == "ERROR"
    assert attrs[sc.ATTR_GRAPH] == "node-demo"
    assert attrs[sc.ATTR_NODE] == "explode"
    assert attrs[sc.ATTR_OUTCOME] == "error"
    assert attrs[sc.ATTR_ERROR_TYPE] == "ValueError"
    assert attrs[sc.ATTR_ATTEMPT] == 1
    run = _assert_child_of_run(span, spans)
    assert run["attributes"][sc.ATTR_OUTCOME] == "error"
    assert run["attributes"][sc.ATTR_ERROR_TYPE] == "ValueError"
    _assert_no_state_values(spans)  # the exception's message carried a canary too


def test_failed_router_span_reaches_phoenix(phoenix: Server) -> None:
    project = _project("router")
    builder = fg.router_graph()
    _export(
        phoenix,
        project,
        lambda tp, mp: coordgap.instrument(
            builder, name="router-demo", tracer_provider=tp, meter_provider=mp
        ),
        expect_error=False,
    )
    spans = _wait_for_spans(phoenix, project, 3)
    assert len(spans) == 3, [s["name"] for s in spans]
    (router,) = _by_name(spans, sc.SPAN_ROUTER)
    attrs = router["attributes"]
    assert router["status_code"] == "ERROR"
    assert attrs[sc.ATTR_ROUTER] == "_route_nowhere"
    assert attrs[sc.ATTR_SOURCE] == "retrieve"
    assert attrs[sc.ATTR_ERROR_TYPE] == sc.ERROR_INVALID_ROUTE
    _assert_child_of_run(router, spans)
    # The invalid route is also a failed handoff to __unknown__: the name the router
    # returned (a canary) is never exported.
    (handoff,) = _by_name(spans, sc.SPAN_HANDOFF)
    hattrs = handoff["attributes"]
    assert handoff["status_code"] == "ERROR"
    assert hattrs[sc.ATTR_SOURCE] == "retrieve"
    assert hattrs[sc.ATTR_TARGET] == sc.UNKNOWN_TARGET
    assert hattrs[sc.ATTR_HANDOFF_KIND] == "conditional"
    assert hattrs[sc.ATTR_ERROR_TYPE] == sc.ERROR_INVALID_ROUTE
    _assert_child_of_run(handoff, spans)
    _assert_no_state_values(spans)


# -- the attributes Phoenix reads, and one trace with OpenInference ----------------------------


def test_phoenix_returns_coordgap_spans_with_graph_node_id(phoenix: Server) -> None:
    """spans="all": Phoenix shows the run as an AGENT, the nodes as CHAINs and the failed
    handoff as a GUARDRAIL, and returns each span's place in the agent graph."""
    project = _project("graph")
    builder, handoffs = fg.handoff_graph()
    _export(
        phoenix,
        project,
        lambda tp, mp: coordgap.instrument(
            builder,
            name="graph-demo",
            handoffs=handoffs,
            spans="all",
            tracer_provider=tp,
            meter_provider=mp,
        ),
        expect_error=False,
    )
    spans = _wait_for_spans(phoenix, project, 4)
    (run,) = _by_name(spans, sc.SPAN_RUN)
    assert run["span_kind"] == sc.SPAN_KIND_AGENT
    assert run["attributes"][sc.GRAPH_NODE_ID] == "graph-demo"
    assert sc.GRAPH_NODE_PARENT_ID not in run["attributes"]
    nodes = {s["attributes"][sc.ATTR_NODE]: s for s in _by_name(spans, sc.SPAN_NODE)}
    assert set(nodes) == {"retrieve", "analyze"}
    for name, span in nodes.items():
        assert span["span_kind"] == sc.SPAN_KIND_CHAIN
        assert span["attributes"][sc.GRAPH_NODE_ID] == name
        assert span["attributes"][sc.GRAPH_NODE_PARENT_ID] == "graph-demo"
    (handoff,) = _by_name(spans, sc.SPAN_HANDOFF)
    assert handoff["span_kind"] == sc.SPAN_KIND_GUARDRAIL
    assert handoff["attributes"][sc.GRAPH_NODE_ID] == "analyze"
    assert handoff["attributes"][sc.GRAPH_NODE_PARENT_ID] == "retrieve"
    _assert_no_state_values(spans)


@pytest.mark.parametrize("mode", ["failures", "all"])
def test_with_openinference_the_failed_handoff_is_in_the_graph_trace(
    phoenix: Server, mode: str
) -> None:
    """OpenInference traces the graph on the same provider: Phoenix holds one trace, and the
    failed handoff is a child of OpenInference's span for the graph run."""
    oi = pytest.importorskip("openinference.instrumentation.langchain")
    project = _project(f"openinference-{mode}")
    builder, handoffs = fg.handoff_graph()
    tp, mp = configure_otlp(
        phoenix.url,
        service_name="coordgap-integration",
        resource_attributes={"openinference.project.name": project},
        metrics=False,
    )
    instrumentor = oi.LangChainInstrumentor()
    instrumentor.instrument(tracer_provider=tp)
    try:
        app = coordgap.instrument(
            builder,
            name="oi-demo",
            handoffs=handoffs,
            spans=mode,
            tracer_provider=tp,
            meter_provider=mp,
        )
        app.invoke(fg.initial_state())
        assert tp.force_flush(timeout_millis=30_000)
    finally:
        instrumentor.uninstrument()
        tp.shutdown()
        mp.shutdown()
    # OpenInference: the graph and its two nodes; coordgap: the handoff (and its run, "all")
    spans = _wait_for_spans(phoenix, project, 4 if mode == "failures" else 5)
    assert len({s["context"]["trace_id"] for s in spans}) == 1, [
        (s["name"], s["context"]["trace_id"]) for s in spans
    ]
    (graph,) = _by_name(spans, "LangGraph")
    (handoff,) = _by_name(spans, sc.SPAN_HANDOFF)
    assert handoff["parent_id"] == graph["context"]["span_id"]
    assert handoff["status_code"] == "ERROR"
    assert handoff["attributes"][sc.ATTR_CONTRACT] == "Analyzable"
    assert graph["attributes"][sc.GRAPH_NODE_ID] == "oi-demo"
    for node in ("retrieve", "analyze"):  # coordgap's attributes on OpenInference's node spans
        (span,) = _by_name(spans, node)
        assert span["parent_id"] == graph["context"]["span_id"]
        assert span["attributes"][sc.GRAPH_NODE_ID] == node
        assert span["attributes"][sc.ATTR_NODE] == node
    if mode == "failures":
        assert graph["parent_id"] is None
        assert _by_name(spans, sc.SPAN_RUN) == []
    else:
        (run,) = _by_name(spans, sc.SPAN_RUN)
        assert run["parent_id"] is None
        assert graph["parent_id"] == run["context"]["span_id"]
    # OpenInference records the state it sees; coordgap's own spans and names never do
    _assert_no_state_values([s for s in spans if s["name"].startswith("coordgap.")])
    coordgap_values = [
        v
        for s in spans
        for k, v in s["attributes"].items()
        if k.startswith(("coordgap.", "graph."))
    ]
    assert fg.CANARY not in json.dumps(coordgap_values)


def test_phoenix_listens_on_loopback_only(phoenix: Server) -> None:
    from .servers import listening_addresses

    addresses = listening_addresses(phoenix.proc.pid)
    assert addresses, "found no listening socket of the Phoenix process"
    for addr in addresses:
        ip = addr.rsplit(":", 1)[0]
        assert ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1"), addresses
