"""One trace with the tracing users already run: coordgap's spans join the real OpenInference
and OpenLLMetry LangChain instrumentors' traces (instrumentor and graph in one process, one
tracer provider, an in-memory exporter), sync and async, in spans="failures" and "all".

The matrix runs in a child process per instrumentor (``peer_scenarios.py``): each patches
LangChain for its whole process, and OpenLLMetry cannot be taken back out. The tests below it
run OpenInference in this process (it uninstruments cleanly) and check that coordgap fails
open: with no other tracer, or one whose internals changed, its spans are as before.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from graphs_basic import linear
from pydantic import BaseModel

import coordgap
from coordgap import semconv as sc


class NeedsAnswer(BaseModel):
    answer: str


# -- the matrix: every scenario x peer x mode x sync/async, each peer in a child process -----

PEER_NODE_NAME = {"openinference": "{}", "openllmetry": "execute_task {}"}
"""The name each instrumentor gives its span for node n."""
PEER_MODULE = {
    "openinference": "openinference.instrumentation.langchain",
    "openllmetry": "opentelemetry.instrumentation.langchain",
}


@pytest.fixture(scope="module", params=sorted(PEER_NODE_NAME))
def traces(request: pytest.FixtureRequest) -> dict[str, Any]:
    """{scenario/mode/call: spans...} from tests/peer_scenarios.py, run with the peer active."""
    peer = request.param
    pytest.importorskip(PEER_MODULE[peer])
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("peer_scenarios.py")), peer],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data: dict[str, Any] = json.loads(proc.stdout)
    data["peer"] = peer
    return data


class Tree:
    """The spans of one invoke, as the child process exported them."""

    def __init__(self, traces: dict[str, Any], key: str) -> None:
        entry = traces[key]
        self.peer: str = traces["peer"]
        self.spans: list[dict[str, Any]] = entry["spans"]
        self.out = entry["out"]
        self.raised = entry["raised"]
        assert entry["internal_errors"] == 0
        self.by_id = {s["id"]: s for s in self.spans}

    def named(self, name: str) -> list[dict[str, Any]]:
        return [s for s in self.spans if s["name"] == name]

    def one(self, name: str) -> dict[str, Any]:
        found = self.named(name)
        assert len(found) == 1, (name, [s["name"] for s in self.spans])
        return found[0]

    def node(self, node: str) -> dict[str, Any]:
        """The peer's own span for ``node``."""
        return self.one(PEER_NODE_NAME[self.peer].format(node))

    def parent(self, span: dict[str, Any]) -> dict[str, Any]:
        assert span["parent"] is not None, f"{span['name']} is a root"
        return self.by_id[span["parent"]]

    def assert_one_trace(self) -> None:
        assert len({s["trace"] for s in self.spans}) == 1, [
            (s["name"], s["trace"]) for s in self.spans
        ]
        roots = [s for s in self.spans if s["parent"] not in self.by_id]
        assert len(roots) == 1, [s["name"] for s in roots]


MATRIX = [(mode, call) for mode in ("failures", "all") for call in ("sync", "async")]


@pytest.mark.parametrize(("mode", "call"), MATRIX)
def test_failed_handoff_joins_the_other_tracers_trace_under_its_graph_span(
    traces: dict[str, Any], mode: str, call: str
) -> None:
    """One invoke, one trace: the failed handoff is a child of the other tracer's graph span."""
    t = Tree(traces, f"handoff/{mode}/{call}")
    assert t.out == 3 and t.raised is None  # the outputs are those of the bare graph
    t.assert_one_trace()
    handoff = t.one(sc.SPAN_HANDOFF)
    assert handoff["status"] == "ERROR"
    attrs = handoff["attrs"]
    assert (attrs[sc.ATTR_SOURCE], attrs[sc.ATTR_TARGET]) == ("n0", "n1")
    assert attrs[sc.OPENINFERENCE_SPAN_KIND] == sc.SPAN_KIND_GUARDRAIL
    assert (attrs[sc.GRAPH_NODE_PARENT_ID], attrs[sc.GRAPH_NODE_ID]) == ("n0", "n1")
    graph = t.parent(handoff)
    for node in ("n0", "n1", "n2"):  # the graph span is the one the node spans hang from
        assert t.parent(t.node(node)) is graph
    assert graph["name"] == {"openinference": "LangGraph"}.get(t.peer, "LangGraph.workflow")
    assert graph["attrs"][sc.GRAPH_NODE_ID] == "LangGraph"
    if mode == "failures":
        assert t.named(sc.SPAN_RUN) == []  # the other tracer's graph span stands for the run
    else:
        root = t.one(sc.SPAN_RUN)  # coordgap's run started first: the other trace nests in it
        assert root["parent"] is None
        assert root["attrs"][sc.OPENINFERENCE_SPAN_KIND] == sc.SPAN_KIND_AGENT
        assert t.named(sc.SPAN_NODE) == []  # the node attributes went on the peer's node spans


@pytest.mark.parametrize(("mode", "call"), MATRIX)
def test_node_attributes_go_on_the_other_tracers_node_spans(
    traces: dict[str, Any], mode: str, call: str
) -> None:
    t = Tree(traces, f"clean/{mode}/{call}")
    t.assert_one_trace()
    for node in ("n0", "n1"):
        attrs = t.node(node)["attrs"]
        assert attrs[sc.ATTR_NODE] == node
        assert attrs[sc.ATTR_GRAPH] == "LangGraph"
        assert attrs[sc.ATTR_ATTEMPT] == 1
        assert attrs[sc.GRAPH_NODE_ID] == node
        assert attrs[sc.GRAPH_NODE_PARENT_ID] == "LangGraph"
        assert attrs.get(sc.OPENINFERENCE_SPAN_KIND) in (None, sc.SPAN_KIND_CHAIN)  # theirs
    if mode == "all":
        assert t.node("n1")["attrs"][sc.ATTR_RECEIVED_FROM] == ["n0"]
        assert [s["name"] for s in t.spans if s["name"].startswith("coordgap.")] == [sc.SPAN_RUN]
    else:
        assert [s for s in t.spans if s["name"].startswith("coordgap.")] == []


@pytest.mark.parametrize(("mode", "call"), MATRIX)
def test_failed_node_attempt_is_a_child_of_the_other_tracers_node_span(
    traces: dict[str, Any], mode: str, call: str
) -> None:
    t = Tree(traces, f"node_error/{mode}/{call}")
    assert t.raised == "ValueError"
    t.assert_one_trace()
    failed = t.one(sc.SPAN_NODE)
    assert failed["status"] == "ERROR"
    assert failed["attrs"][sc.ATTR_ERROR_TYPE] == "ValueError"
    assert failed["attrs"][sc.OPENINFERENCE_SPAN_KIND] == sc.SPAN_KIND_CHAIN
    assert failed["attrs"][sc.GRAPH_NODE_ID] == "bad"
    assert t.parent(failed) is t.node("bad")


@pytest.mark.parametrize(("mode", "call"), MATRIX)
def test_failed_router_is_a_child_of_its_source_nodes_span(
    traces: dict[str, Any], mode: str, call: str
) -> None:
    """A router runs in its source node's task: its failure hangs from that node's span; the
    invalid route it wrote is a failed handoff under the graph's span."""
    t = Tree(traces, f"router/{mode}/{call}")
    t.assert_one_trace()
    router, handoff, node = t.one(sc.SPAN_ROUTER), t.one(sc.SPAN_HANDOFF), t.node("a")
    assert t.parent(router) is node
    assert t.parent(handoff) is t.parent(node)
    assert router["attrs"][sc.OPENINFERENCE_SPAN_KIND] == sc.SPAN_KIND_DECISION
    assert handoff["attrs"][sc.GRAPH_NODE_PARENT_ID] == "a"
    assert handoff["attrs"][sc.ATTR_TARGET] == sc.UNKNOWN_TARGET


@pytest.mark.parametrize(("mode", "call"), MATRIX)
def test_subgraph_nodes_name_their_container_as_parent(
    traces: dict[str, Any], mode: str, call: str
) -> None:
    t = Tree(traces, f"subgraph/{mode}/{call}")
    t.assert_one_trace()
    inner = [s for s in t.spans if s["attrs"].get(sc.ATTR_NODE) == "sub/n0"]
    assert len(inner) == 1
    assert inner[0]["attrs"][sc.GRAPH_NODE_PARENT_ID] == "sub"
    container = [s for s in t.spans if s["attrs"].get(sc.ATTR_NODE) == "sub"]
    assert len(container) == 1
    assert container[0]["attrs"][sc.GRAPH_NODE_PARENT_ID] == "LangGraph"


@pytest.mark.parametrize(("mode", "call"), MATRIX)
def test_a_failed_handoff_inside_a_subgraph_is_under_the_node_running_it(
    traces: dict[str, Any], mode: str, call: str
) -> None:
    t = Tree(traces, f"subgraph_handoff/{mode}/{call}")
    t.assert_one_trace()
    handoff = t.one(sc.SPAN_HANDOFF)
    assert (handoff["attrs"][sc.ATTR_SOURCE], handoff["attrs"][sc.ATTR_TARGET]) == (
        "sub/n0",
        "sub/n1",
    )
    assert t.parent(handoff) is t.node("sub")


@pytest.mark.parametrize("call", ["sync", "async"])
def test_user_spans_in_a_node_nest_under_the_node_span_in_all_mode(
    traces: dict[str, Any], call: str
) -> None:
    """spans="all" makes the node's span current while the node runs, as its own would be."""
    t = Tree(traces, f"user_span/all/{call}")
    t.assert_one_trace()
    assert t.parent(t.one("llm.call")) is t.node("llm")


# -- in this process: OpenInference (its uninstrument() takes it back out) ------------------


class OpenInference:
    """OpenInference's instrumentor, active on ``tracer_provider`` until close()."""

    def __init__(self, tracer_provider: Any) -> None:
        module = pytest.importorskip("openinference.instrumentation.langchain")
        self.instrumentor = module.LangChainInstrumentor()
        self.instrumentor.instrument(tracer_provider=tracer_provider)

    def close(self) -> None:
        self.instrumentor.uninstrument()


def by_name(spans: Any, name: str) -> list[Any]:
    return [s for s in spans if s.name == name]


def test_instrumenting_the_other_tracer_after_coordgap_also_joins(
    tracer_provider: Any, span_exporter: Any
) -> None:
    app = coordgap.instrument(
        linear(2), tracer_provider=tracer_provider, handoffs={("n0", "n1"): NeedsAnswer}
    )
    peer = OpenInference(tracer_provider)
    try:
        app.invoke({"n": 0})
    finally:
        peer.close()
    spans = span_exporter.get_finished_spans()
    assert len({s.context.trace_id for s in spans}) == 1
    (handoff,) = by_name(spans, sc.SPAN_HANDOFF)
    (graph,) = by_name(spans, "LangGraph")
    assert handoff.parent.span_id == graph.context.span_id
    assert graph.parent is None


# -- failing open: a tracer that is absent, gone, or changed ------------------------------


def test_after_uninstrument_coordgap_is_the_root_again(
    tracer_provider: Any, span_exporter: Any
) -> None:
    OpenInference(tracer_provider).close()
    app = coordgap.instrument(
        linear(2), tracer_provider=tracer_provider, handoffs={("n0", "n1"): NeedsAnswer}
    )
    app.invoke({"n": 0})
    spans = span_exporter.get_finished_spans()
    assert {s.name for s in spans} == {sc.SPAN_RUN, sc.SPAN_HANDOFF}
    (root,) = by_name(spans, sc.SPAN_RUN)
    assert root.parent is None


class _ChangedTracer:
    """A callback handler shaped like a tracer whose internals changed."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.spans = {"not": "holders"}

    def get_span(self, run_id: Any) -> Any:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize("answer", [RuntimeError("changed"), "not a span", None])
@pytest.mark.parametrize("mode", ["failures", "all"])
def test_a_changed_tracer_leaves_coordgaps_spans_as_they_are(
    answer: Any, mode: str, tracer_provider: Any, span_exporter: Any
) -> None:
    from langchain_core.callbacks import BaseCallbackHandler

    class Handler(BaseCallbackHandler, _ChangedTracer):
        def __init__(self) -> None:
            BaseCallbackHandler.__init__(self)
            _ChangedTracer.__init__(self, answer)

    app = coordgap.instrument(
        linear(3), spans=mode, tracer_provider=tracer_provider, handoffs={("n0", "n1"): NeedsAnswer}
    )
    out = app.invoke({"n": 0}, {"callbacks": [Handler()]})
    assert out["n"] == 3
    spans = span_exporter.get_finished_spans()
    (root,) = by_name(spans, sc.SPAN_RUN)
    (handoff,) = by_name(spans, sc.SPAN_HANDOFF)
    assert root.parent is None
    assert handoff.parent.span_id == root.context.span_id
    assert coordgap.ledger(app).snapshot().internal_errors == 0
