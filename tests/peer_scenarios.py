"""Run coordgap next to a real LangChain instrumentor and print every trace as JSON.

    python tests/peer_scenarios.py openinference|openllmetry

The instrumentor (OpenInference's ``LangChainInstrumentor`` or OpenLLMetry's
``LangchainInstrumentor``) and the instrumented graphs run in this one process, on one
``TracerProvider`` with an in-memory exporter. ``tests/test_spans_peers.py`` runs this in a
child process: an instrumentor patches LangChain for its whole process, and OpenLLMetry's
``uninstrument()`` does not take its callback handler back out (measured on 0.62.4: the
handler stays in every new callback manager, still bound to the first provider), so it must
not run inside the test session's own processes.

Output: ``{"<scenario>/<mode>/<call>": {"spans": [...], "out": ..., "raised": ...}}`` with
each span as ``{"name", "id", "parent", "trace", "status", "attrs"}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from graphs_basic import State, linear, step, with_subgraph
from langgraph.graph import END, START, StateGraph
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from pydantic import BaseModel

import coordgap

PEERS = {
    "openinference": ("openinference.instrumentation.langchain", "LangChainInstrumentor"),
    "openllmetry": ("opentelemetry.instrumentation.langchain", "LangchainInstrumentor"),
}
MODES = ("failures", "all")
CALLS = ("sync", "async")


class NeedsAnswer(BaseModel):
    answer: str


def _bad(state: State) -> dict[str, Any]:
    raise ValueError("nope")


def _nowhere(state: State) -> str:
    return "nowhere"


def handoff(mode: str, tp: Any) -> Any:
    """n0 -> n1 -> n2, the handoff n0 -> n1 breaks its contract."""
    return coordgap.instrument(
        linear(3), spans=mode, tracer_provider=tp, handoffs={("n0", "n1"): NeedsAnswer}
    )


def clean(mode: str, tp: Any) -> Any:
    """n0 -> n1, nothing fails."""
    return coordgap.instrument(linear(2), spans=mode, tracer_provider=tp)


def node_error(mode: str, tp: Any) -> Any:
    """a -> bad, bad raises ValueError."""
    b = StateGraph(State)
    b.add_node("a", step("a"))
    b.add_node("bad", _bad)
    b.add_edge(START, "a")
    b.add_edge("a", "bad")
    b.add_edge("bad", END)
    return coordgap.instrument(b, spans=mode, tracer_provider=tp)


def router(mode: str, tp: Any) -> Any:
    """a's router names a node that does not exist."""
    b = StateGraph(State)
    b.add_node("a", step("a"))
    b.add_edge(START, "a")
    b.add_conditional_edges("a", _nowhere)
    return coordgap.instrument(b, spans=mode, tracer_provider=tp)


def subgraph(mode: str, tp: Any) -> Any:
    """sub is a compiled subgraph (sub/n0 ...)."""
    return coordgap.instrument(with_subgraph(), spans=mode, tracer_provider=tp)


def subgraph_handoff(mode: str, tp: Any) -> Any:
    """sub is a compiled subgraph; its inner handoff sub/n0 -> sub/n1 breaks its contract."""
    return coordgap.instrument(
        with_subgraph(),
        spans=mode,
        tracer_provider=tp,
        handoffs={("sub/n0", "sub/n1"): NeedsAnswer},
    )


def user_span(mode: str, tp: Any) -> Any:
    """llm opens a span of its own."""
    tracer = tp.get_tracer("user")

    def llm(state: State) -> dict[str, Any]:
        with tracer.start_as_current_span("llm.call"):
            return {"n": 1}

    b = StateGraph(State)
    b.add_node("llm", llm)
    b.add_edge(START, "llm")
    b.add_edge("llm", END)
    return coordgap.instrument(b, spans=mode, tracer_provider=tp)


SCENARIOS: dict[str, Callable[[str, Any], Any]] = {
    "handoff": handoff,
    "clean": clean,
    "node_error": node_error,
    "router": router,
    "subgraph": subgraph,
    "subgraph_handoff": subgraph_handoff,
    "user_span": user_span,
}


def _value(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _span(s: Any) -> dict[str, Any]:
    return {
        "name": s.name,
        "id": format(s.context.span_id, "016x"),
        "parent": format(s.parent.span_id, "016x") if s.parent is not None else None,
        "trace": format(s.context.trace_id, "032x"),
        "status": s.status.status_code.name,
        "attrs": {k: _value(v) for k, v in (s.attributes or {}).items()},
    }


def collect(peer: str) -> dict[str, Any]:
    """Run every scenario in every mode, sync and async, with ``peer`` instrumented."""
    import importlib

    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    module, cls = PEERS[peer]
    instrumentor = getattr(importlib.import_module(module), cls)()
    instrumentor.instrument(tracer_provider=tp)
    out: dict[str, Any] = {}
    for name, build in SCENARIOS.items():
        for mode in MODES:
            for call in CALLS:
                exporter.clear()
                app = build(mode, tp)
                result: Any = None
                raised = None
                try:
                    if call == "async":
                        result = asyncio.run(app.ainvoke({"n": 0}))
                    else:
                        result = app.invoke({"n": 0})
                except Exception as exc:
                    raised = type(exc).__name__
                out[f"{name}/{mode}/{call}"] = {
                    "spans": [_span(s) for s in exporter.get_finished_spans()],
                    "out": result.get("n") if isinstance(result, dict) else None,
                    "raised": raised,
                    "internal_errors": coordgap.ledger(app).snapshot().internal_errors,
                }
    return out


if __name__ == "__main__":
    json.dump(collect(sys.argv[1]), sys.stdout)
