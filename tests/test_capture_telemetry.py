"""The coordgap_otel fixture (capture_telemetry): exact span trees and metric points."""

from __future__ import annotations

import textwrap
import threading
import time
from typing import Any

import pytest
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel
from typing_extensions import TypedDict

import coordgap
from coordgap import _clock
from coordgap.testing import StepClock, TelemetryCapture, capture_telemetry

pytest_plugins = ["pytester"]

S = 1_000_000_000  # one step of the fixture's clock: 1 s, in nanoseconds


class State(TypedDict, total=False):
    question: str
    docs: list[str]
    answer: str


class Retrieved(BaseModel):
    docs: list[str]


def retrieve(state: State) -> dict[str, Any]:
    return {}  # forgets the documents: the handoff to analyze breaks its contract


def analyze(state: State) -> dict[str, Any]:
    return {"answer": "42"}


def research() -> StateGraph:
    b = StateGraph(State)
    b.add_node("retrieve", retrieve)
    b.add_node("analyze", analyze)
    b.add_edge(START, "retrieve")
    b.add_edge("retrieve", "analyze")
    b.add_edge("analyze", END)
    return b


def run_once(
    otel: TelemetryCapture, spans: str, runs: int = 1, durations: bool = False
) -> coordgap.InstrumentedGraph:
    app = coordgap.instrument(
        research(),
        name="research",
        handoffs={("retrieve", "analyze"): Retrieved},
        spans=spans,  # type: ignore[arg-type]
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
        durations=durations,
    )
    for _ in range(runs):
        app.invoke({"question": "q"})
    return app


BROKEN_HANDOFF = {
    "coordgap.graph": "research",
    "coordgap.handoff.source": "retrieve",
    "coordgap.handoff.target": "analyze",
    "coordgap.handoff.kind": "edge",
    "coordgap.outcome": "error",
    "openinference.span.kind": "GUARDRAIL",
    "graph.node.id": "analyze",
    "graph.node.parent_id": "retrieve",
    "error.type": "ContractViolation",
    "coordgap.contract": "Retrieved",
    "coordgap.contract.fields": ["docs"],
}
RUN = {
    "name": "coordgap.run",
    "trace_id": 1,
    "span_id": 1,
    "parent": None,
    "start_time": 1 * S,
    "end_time": 8 * S,
    "attributes": {
        "coordgap.graph": "research",
        "openinference.span.kind": "AGENT",
        "graph.node.id": "research",
        "coordgap.outcome": "ok",
    },
    "status": "ERROR",
    "status_description": "a component failed",
}


def test_failures_mode_exports_the_run_and_the_broken_handoff_exactly(
    coordgap_otel: TelemetryCapture,
) -> None:
    """spans='failures': the broken handoff is one ERROR span under the run span, with
    counted ids and the times of the stepping clock, and nothing else is exported."""
    run_once(coordgap_otel, "failures")
    assert coordgap_otel.spans() == [
        {
            "name": "coordgap.handoff",
            "trace_id": 1,
            "span_id": 2,
            "parent": 1,
            "start_time": 5 * S,
            "end_time": 6 * S,
            "attributes": BROKEN_HANDOFF,
            "status": "ERROR",
            "status_description": "ContractViolation",
        },
        RUN,
    ]


def test_all_mode_exports_every_node_and_the_broken_handoff_exactly(
    coordgap_otel: TelemetryCapture,
) -> None:
    """spans='all': a span per node, the broken handoff as its own ERROR span, all under the
    run; the node that received the broken handoff does not list it as received."""
    run_once(coordgap_otel, "all")
    assert coordgap_otel.spans() == [
        {
            "name": "coordgap.node",
            "trace_id": 1,
            "span_id": 2,
            "parent": 1,
            "start_time": 4 * S,
            "end_time": 5 * S,
            "attributes": {
                "coordgap.handoff.received_from": ["__start__"],
                "coordgap.handoff.received_kinds": ["edge"],
                "coordgap.graph": "research",
                "coordgap.node": "retrieve",
                "openinference.span.kind": "CHAIN",
                "graph.node.id": "retrieve",
                "graph.node.parent_id": "research",
                "coordgap.attempt": 1,
                "coordgap.outcome": "ok",
                "coordgap.step": 1,
            },
            "status": "UNSET",
            "status_description": None,
        },
        {
            "name": "coordgap.handoff",
            "trace_id": 1,
            "span_id": 3,
            "parent": 1,
            "start_time": 5 * S,
            "end_time": 6 * S,
            "attributes": BROKEN_HANDOFF,
            "status": "ERROR",
            "status_description": "ContractViolation",
        },
        {
            "name": "coordgap.node",
            "trace_id": 1,
            "span_id": 4,
            "parent": 1,
            "start_time": 6 * S,
            "end_time": 7 * S,
            "attributes": {
                "coordgap.graph": "research",
                "coordgap.node": "analyze",
                "openinference.span.kind": "CHAIN",
                "graph.node.id": "analyze",
                "graph.node.parent_id": "research",
                "coordgap.attempt": 1,
                "coordgap.outcome": "ok",
                "coordgap.step": 2,
            },
            "status": "UNSET",
            "status_description": None,
        },
        RUN,
    ]
    # the SDK's own spans agree with the plain form
    (run,) = [s for s in coordgap_otel.finished_spans() if s.name == "coordgap.run"]
    assert (run.start_time, run.end_time) == (1 * S, 8 * S)


def test_metric_points_read_back_with_durations_from_the_clock(
    coordgap_otel: TelemetryCapture,
) -> None:
    """metrics() collects and returns plain points: counters by attributes, and the duration
    histogram whose every attempt took exactly one step of the clock."""
    # keep the graph: its counters are observed from its ledger, which lives as long as it
    app = run_once(coordgap_otel, "off", runs=2, durations=True)
    points = coordgap_otel.metrics()
    transfers = {
        (p["attributes"]["coordgap.handoff.source"], p["attributes"]["coordgap.outcome"]): p[
            "value"
        ]
        for p in points
        if p["name"] == "coordgap.handoff.transfers"
        and p["attributes"]["coordgap.handoff.target"] == "analyze"
    }
    assert transfers == {("retrieve", "ok"): 0, ("retrieve", "error"): 2}
    runs = {
        p["attributes"]["coordgap.outcome"]: p["value"]
        for p in points
        if p["name"] == "coordgap.run.completions"
    }
    assert runs == {"ok": 2, "error": 0, "interrupted": 0}
    durations = {
        p["attributes"]["coordgap.node"]: p for p in points if p["name"] == "coordgap.node.duration"
    }
    assert sorted(durations) == ["analyze", "retrieve"]
    for point in durations.values():
        assert point["unit"] == "s"
        assert (point["count"], point["sum"], point["min"], point["max"]) == (2, 2.0, 1.0, 1.0)
        assert sum(point["bucket_counts"]) == 2
        assert len(point["bucket_counts"]) == len(point["explicit_bounds"]) + 1
    (clean,) = [p for p in points if p["name"] == "coordgap.run.clean"]
    assert clean == {
        "name": "coordgap.run.clean",
        "unit": "{count}",
        "attributes": {"coordgap.graph": "research"},
        "value": 0,
    }
    assert coordgap.ledger(app).snapshot().runs.ok == runs["ok"]  # the counters read its ledger


def test_ids_restart_and_the_clock_is_restored_after_a_capture() -> None:
    """Each capture counts ids from 1 on fresh providers; coordgap's clock is its own
    inside and the wall clock again after."""
    for _ in range(2):
        with capture_telemetry() as otel:
            assert _clock.now_ns is otel.clock
            run_once(otel, "failures")
            assert [(s["span_id"], s["parent"]) for s in otel.spans()] == [(2, 1), (1, None)]
            otel.clear()
            assert otel.spans() == []
        assert _clock.now_ns is time.time_ns


def test_a_clock_of_your_own_sets_every_time() -> None:
    """capture_telemetry(clock=...) puts coordgap on that clock (start and step of your choosing)."""
    with capture_telemetry(clock=StepClock(start_ns=10**18, step_ns=1_000)) as otel:
        run_once(otel, "failures")
        handoff, run = otel.spans()
    assert (handoff["start_time"], handoff["end_time"]) == (10**18 + 5_000, 10**18 + 6_000)
    assert (run["start_time"], run["end_time"]) == (10**18 + 1_000, 10**18 + 8_000)


def test_step_clock_counts_its_readings_from_any_thread() -> None:
    """Readings are start + k·step, k = 1, 2, ..., never repeated between threads."""
    clock = StepClock(step_ns=3)
    seen: list[int] = []

    def read() -> None:
        seen.extend(clock() for _ in range(500))

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == [3 * k for k in range(1, 2001)]
    assert clock.readings == 2000
    with pytest.raises(coordgap.ConfigurationError, match="move forward"):
        StepClock(step_ns=0)


def test_two_tests_using_the_fixture_see_only_their_own_spans(pytester: pytest.Pytester) -> None:
    """Through the plugin: every test gets fresh providers and ids from 1, whatever ran before."""
    pytester.makepyfile(
        test_two=textwrap.dedent(
            """
            import coordgap
            from langgraph.graph import END, START, StateGraph
            from typing_extensions import TypedDict


            class S(TypedDict):
                x: int


            def boom(state):
                raise ValueError("no")


            def build(name):
                b = StateGraph(S)
                b.add_node("a", boom)
                b.add_edge(START, "a")
                b.add_edge("a", END)
                return b


            def run(otel, name):
                app = coordgap.instrument(build(name), name=name, spans="failures",
                                          tracer_provider=otel.tracer_provider,
                                          meter_provider=otel.meter_provider)
                try:
                    app.invoke({"x": 1})
                except ValueError:
                    pass


            def test_one(coordgap_otel):
                run(coordgap_otel, "one")
                run(coordgap_otel, "one")
                assert [s["attributes"]["coordgap.graph"] for s in coordgap_otel.spans()] == ["one"] * 4
                assert [s["trace_id"] for s in coordgap_otel.spans()] == [1, 1, 2, 2]


            def test_two(coordgap_otel):
                run(coordgap_otel, "two")
                spans = coordgap_otel.spans()
                assert [(s["name"], s["attributes"]["coordgap.graph"]) for s in spans] == [
                    ("coordgap.node", "two"), ("coordgap.run", "two")]
                assert [(s["trace_id"], s["span_id"], s["parent"]) for s in spans] == [
                    (1, 2, 1), (1, 1, None)]
                assert spans[1]["start_time"] == 1_000_000_000
            """
        )
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        result = pytester.runpytest("-p", "no:cacheprovider", "-p", "coordgap.pytest_plugin")
    result.assert_outcomes(passed=2)


def test_the_example_in_docs_testing_md_passes_as_written(pytester: pytest.Pytester) -> None:
    """The exact span tree docs/testing.md shows is the one coordgap exports."""
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "testing.md").read_text(encoding="utf-8")
    section = doc.split("### Exact spans and metrics: `coordgap_otel`", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "def test_" in code and "coordgap_otel.spans() ==" in code
    pytester.makepyfile(test_doc=code)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        result = pytester.runpytest("-p", "no:cacheprovider", "-p", "coordgap.pytest_plugin")
    result.assert_outcomes(passed=1)
