"""Bounded cardinality: attribute values come only from the graph, class names and contracts.

A graph that raises 100 distinct exception classes (and has 100 distinct
values flowing through its state) must not create more than 64 distinct
``error.type`` values (the overflow is folded into ``other``), and every
attribute value on every span and metric data point must be one of: the
graph's name, its node/router names (qualified), the fixed sources and
targets (``__start__``, ``__end__``, ``__unknown__``), handoff kinds, outcomes,
exception class names, contract names, booleans and small integers.
"""

from __future__ import annotations

import typing
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel

import coordgap
from coordgap import semconv as sc
from coordgap._run import _MAX_ERROR_TYPES
from coordgap.events import HandoffKind

ERRORS = [type(f"Error{i:03d}", (Exception,), {}) for i in range(100)]


class State(TypedDict, total=False):
    i: int
    text: str


class NeedsInt(BaseModel):
    text: int


def _build() -> StateGraph:
    def pick(state: State) -> dict[str, Any]:
        return {"text": f"value-{state['i']}"}

    def fail(state: State) -> dict[str, Any]:
        raise ERRORS[state["i"] % len(ERRORS)](f"message {state['i']}")

    def router(state: State) -> str:
        if state["i"] % 3 == 0:
            return f"nowhere-{state['i']}"  # an invalid route with a unique name each time
        return "fail"

    b = StateGraph(State)
    b.add_node("pick", pick)
    b.add_node("fail", fail)
    b.add_edge(START, "pick")
    b.add_conditional_edges("pick", router)
    b.add_edge("fail", END)
    return b


def _attribute_values(telemetry: Any) -> list[Any]:
    values: list[Any] = []
    exporter, reader = telemetry
    for span in exporter.get_finished_spans():
        values.extend((span.attributes or {}).values())
        for ev in span.events:
            values.extend((ev.attributes or {}).values())
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    values.extend((point.attributes or {}).values())
    flat: list[Any] = []
    for v in values:
        flat.extend(v if isinstance(v, (list, tuple)) else [v])
    return flat


def test_error_types_are_capped_and_attribute_values_bounded(
    tracer_provider, span_exporter, meter_provider, metric_reader
) -> None:
    app = coordgap.instrument(
        _build(),
        name="bounded",
        contracts={"fail": coordgap.Contract(requires=NeedsInt)},
        spans="all",
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    )
    raised = set()
    for i in range(300):
        try:
            app.invoke({"i": i})
        except Exception as exc:
            raised.add(type(exc).__name__)
    assert len(raised) == 100  # the user's exceptions themselves are unchanged
    snap = coordgap.ledger(app).snapshot()
    node_types = set(snap.nodes["fail"].error_types)
    run_types = set(snap.runs.error_types)
    assert sc.OTHER_ERROR_TYPE in node_types
    assert len(node_types) <= _MAX_ERROR_TYPES + 1
    assert len(run_types) <= _MAX_ERROR_TYPES + 1
    # nothing lost in the fold: every failure is still counted
    assert sum(snap.nodes["fail"].error_types.values()) == snap.nodes["fail"].attempt_failures
    assert snap.runs.error == 200

    allowed_strings = {
        "bounded",
        "pick",
        "fail",
        "router",
        # report gauges: component kinds and estimate names
        "node",
        "handoff",
        "predicted",
        "observed",
        "naive",
        sc.START,
        sc.END,
        sc.UNKNOWN_TARGET,
        sc.OTHER_ERROR_TYPE,
        sc.ERROR_CONTRACT,
        sc.ERROR_INVALID_ROUTE,
        sc.ERROR_UNDELIVERED,
        "NeedsInt",
        "text",  # contract field path
        "ok",
        "error",
        "interrupted",
        *typing.get_args(HandoffKind),
        *(e.__name__ for e in ERRORS),
        # the span kinds backends read (openinference.span.kind), a fixed vocabulary
        sc.SPAN_KIND_AGENT,
        sc.SPAN_KIND_CHAIN,
        sc.SPAN_KIND_GUARDRAIL,
        sc.SPAN_KIND_DECISION,
    }
    values = _attribute_values((span_exporter, metric_reader))
    assert values
    strings = {v for v in values if isinstance(v, str)}
    assert strings <= allowed_strings, strings - allowed_strings
    error_types = {v for v in strings if v.startswith("Error") or v == sc.OTHER_ERROR_TYPE}
    assert len(error_types) <= _MAX_ERROR_TYPES + 1
    others = [v for v in values if not isinstance(v, (str, bool))]
    assert all(isinstance(v, (int, float)) for v in others)


def test_router_names_and_targets_come_from_the_graph(
    tracer_provider, span_exporter, meter_provider, metric_reader
) -> None:
    app = coordgap.instrument(
        _build(),
        name="bounded",
        spans="failures",
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    )
    for i in range(0, 60, 3):  # every run routes to a new unknown name
        app.invoke({"i": i})
    snap = coordgap.ledger(app).snapshot()
    assert set(snap.routers["router"].targets) == {sc.UNKNOWN_TARGET}
    assert {k[1] for k in snap.handoffs} <= {"pick", sc.UNKNOWN_TARGET}
    strings = {v for v in _attribute_values((span_exporter, metric_reader)) if isinstance(v, str)}
    assert not any(s.startswith("nowhere") for s in strings)


def test_the_error_type_cap_holds_under_threads() -> None:
    import threading

    from coordgap._ledger import Ledger
    from coordgap._run import Recorder

    for _ in range(20):
        rec = Recorder(
            graph="g", ledger=Ledger("g"), sinks=(), spans=None, on_violation="record", capture=None
        )
        barrier = threading.Barrier(8)
        seen: list[str] = []

        def work(
            offset: int, rec: Recorder = rec, barrier: Any = barrier, seen: list[str] = seen
        ) -> None:
            barrier.wait()
            for i in range(40):
                seen.append(rec.error_type(f"E{offset}-{i}"))

        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        names = set(seen) - {sc.OTHER_ERROR_TYPE}
        assert len(names) == _MAX_ERROR_TYPES
