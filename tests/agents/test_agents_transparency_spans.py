"""Every corpus agent behaves the same bare and instrumented with spans on, another tracer or not.

With spans="failures" (the default) or "all", coordgap wraps the node's own step of every
task (``_spans.NodeStep``, where another tracer's node span can be found). The corpus runs
with spans="off" elsewhere; here it runs in both span modes, alone and with OpenInference's
LangChain instrumentor active (bare and instrumented both under it): outputs of ``invoke``
and ``ainvoke``, every stream mode with subgraphs (sync and async), checkpoint history, and
the drawings are those of the bare graph, and coordgap counts no internal error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import coordgap

from .corpus import CASES
from .harness import adrive, astream_all, drawings, drive, history, stream_all

NAMES = sorted(CASES)


COMBOS = [("failures", "alone"), ("failures", "openinference"), ("all", "openinference")]
"""(span mode, other tracer): the default mode alone, and both modes joined to another
tracer (spans="all" alone is what tests/test_transparency.py's graphs cover)."""


@contextlib.contextmanager
def tracing(other: str) -> Iterator[TracerProvider]:
    """A tracer provider; with "openinference", OpenInference traces LangChain onto it."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    if other == "alone":
        yield provider
        return
    module = pytest.importorskip("openinference.instrumentation.langchain")
    instrumentor = module.LangChainInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield provider
    finally:
        instrumentor.uninstrument()


@pytest.mark.parametrize(("spans", "other"), COMBOS, ids=["-".join(c) for c in COMBOS])
@pytest.mark.parametrize("name", NAMES)
def test_outputs_streams_history_and_drawings_are_identical(
    name: str, spans: str, other: str
) -> None:
    with tracing(other) as tracer:
        _check(name, spans, tracer)


def _check(name: str, spans: str, tracer: TracerProvider) -> None:
    case = CASES[name]
    apps: list[Any] = []

    def instrumented(checkpointer: Any = None) -> Any:
        app = coordgap.instrument(
            case.graph(checkpointer), spans=spans, tracer_provider=tracer, metrics=False
        )
        apps.append(app)
        return app

    checkpointed = case.threaded
    bare = drive(case.graph(), case, checkpointed)
    assert drive(instrumented(), case, checkpointed) == bare
    assert adrive(instrumented(), case, checkpointed) == adrive(case.graph(), case, checkpointed)

    def streamed(instrument: bool) -> Any:
        saver = InMemorySaver()
        graph = instrumented(saver) if instrument else case.graph(saver)
        return stream_all(graph, case, subgraphs=True), history(graph, case)

    assert streamed(True) == streamed(False)
    assert astream_all(instrumented(InMemorySaver()), case, subgraphs=True) == astream_all(
        case.graph(InMemorySaver()), case, subgraphs=True
    )
    assert drawings(instrumented()) == drawings(case.graph())
    for app in apps:
        assert coordgap.ledger(app).snapshot().internal_errors == 0
