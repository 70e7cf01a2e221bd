"""Nothing lost under load: exact counts from many threads and many concurrent asyncio runs.

The graph is small and its outcomes are a pure function of the input ``i``
(``a`` fails when i % 10 == 0, the router sends odd i to ``b`` and even i to
END), so the expected ledger counts, OpenTelemetry metric totals and span
counts are exact numbers. Scale: ``COORDGAP_LOAD`` multiplies the number of
runs (default 1: about 3,300 graph runs plus 12,800 recorder-level runs, under
a minute on two cores; ``COORDGAP_LOAD=4`` runs over 10^4 full graph runs).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import coordgap
from coordgap import semconv as sc

SCALE = max(1, int(os.environ.get("COORDGAP_LOAD", "1")))
THREADS = 32
RUNS_PER_THREAD = 40 * SCALE
CONCURRENT = 1000
WAVES = 2 * SCALE


class State(TypedDict, total=False):
    i: int
    out: str


class Boom(ValueError):
    pass


def _build() -> StateGraph:
    def a(state: State) -> dict[str, Any]:
        if state["i"] % 10 == 0:
            raise Boom("planned")
        return {"out": "a"}

    def b(state: State) -> dict[str, Any]:
        return {"out": "b"}

    def route(state: State) -> str:
        return "b" if state["i"] % 2 else END

    g = StateGraph(State)
    g.add_node("a", a)
    g.add_node("b", b)
    g.add_edge(START, "a")
    g.add_conditional_edges("a", route, ["b", END])
    g.add_edge("b", END)
    return g


def _expected(inputs: list[int]) -> dict[str, int]:
    failed = sum(1 for i in inputs if i % 10 == 0)
    odd = sum(1 for i in inputs if i % 2)
    return {
        "runs": len(inputs),
        "error": failed,
        "ok": len(inputs) - failed,
        "a": len(inputs),
        "a_fail": failed,
        "b": odd,
        "to_b": odd,
        "to_end": len(inputs) - failed - odd,
        "decisions": len(inputs) - failed,
    }


def _metric_sums(reader: InMemoryMetricReader) -> dict[tuple[str, frozenset[Any]], float]:
    sums: dict[tuple[str, frozenset[Any]], float] = Counter()
    data = reader.get_metrics_data()
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:
                        value = point.count  # histogram
                    sums[(metric.name, frozenset((point.attributes or {}).items()))] += value
    return sums


def _metric(sums: Any, name: str, **attrs: Any) -> float:
    want = {(k.replace("_", "."), v) for k, v in attrs.items()}
    return sum(v for (n, a), v in sums.items() if n == name and want <= set(a))


def _check(app: Any, reader: InMemoryMetricReader, spans: InMemorySpanExporter, inputs: list[int]):
    e = _expected(inputs)
    snap = coordgap.ledger(app).snapshot()
    assert snap.internal_errors == 0
    assert (snap.runs.runs, snap.runs.ok, snap.runs.error) == (e["runs"], e["ok"], e["error"])
    assert snap.runs.clean == e["ok"]
    assert (snap.nodes["a"].executions, snap.nodes["a"].failures) == (e["a"], e["a_fail"])
    assert snap.nodes["a"].attempts == e["a"]
    assert snap.nodes["b"].executions == e["b"] and snap.nodes["b"].failures == 0
    assert snap.handoffs[("__start__", "a")].transfers == e["runs"]
    assert snap.handoffs[("a", "b")].transfers == e["to_b"]
    assert snap.handoffs[("b", "__end__")].transfers == e["to_b"]
    assert snap.handoffs[("a", "__end__")].transfers == e["to_end"]
    assert sum(h.failures for h in snap.handoffs.values()) == 0
    (router,) = snap.routers.values()
    assert router.decisions == e["decisions"] and router.failures == 0

    sums = _metric_sums(reader)
    runs = sc.METRIC_RUN_COMPLETIONS
    assert _metric(sums, runs, coordgap_outcome="ok") == e["ok"]
    assert _metric(sums, runs, coordgap_outcome="error") == e["error"]
    node_exec = sc.METRIC_NODE_EXECUTIONS
    assert _metric(sums, node_exec, coordgap_node="a") == e["a"]
    assert _metric(sums, node_exec, coordgap_node="a", coordgap_outcome="error") == e["a_fail"]
    assert _metric(sums, node_exec, coordgap_node="b") == e["b"]
    assert _metric(sums, sc.METRIC_HANDOFF_TRANSFERS) == e["runs"] + 2 * e["to_b"] + e["to_end"]
    assert _metric(sums, sc.METRIC_ROUTER_DECISIONS) == e["decisions"]
    assert _metric(sums, sc.METRIC_NODE_DURATION) == e["a"] + e["b"]  # one per attempt

    # spans="failures": a run span and the failed node's span per failed run, nothing else
    finished = spans.get_finished_spans()
    names = Counter(s.name for s in finished)
    assert names == Counter({sc.SPAN_RUN: e["error"], sc.SPAN_NODE: e["error"]})


def _instrumented() -> tuple[Any, InMemoryMetricReader, InMemorySpanExporter]:
    reader = InMemoryMetricReader()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = coordgap.instrument(
        _build(),
        name="load",
        spans="failures",
        tracer_provider=provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
        durations=True,
    )
    return app, reader, exporter


def test_32_threads_lose_no_count() -> None:
    app, reader, exporter = _instrumented()
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        barrier.wait()
        for k in range(RUNS_PER_THREAD):
            i = t * RUNS_PER_THREAD + k
            try:
                out = app.invoke({"i": i})
                assert out["out"] == ("b" if i % 2 else "a")
            except Boom:
                assert i % 10 == 0
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    _check(app, reader, exporter, list(range(THREADS * RUNS_PER_THREAD)))


def test_1000_concurrent_asyncio_runs_lose_no_count() -> None:
    app, reader, exporter = _instrumented()

    async def one(i: int) -> None:
        try:
            out = await app.ainvoke({"i": i})
            assert out["out"] == ("b" if i % 2 else "a")
        except Boom:
            assert i % 10 == 0

    async def main() -> None:
        for wave in range(WAVES):
            await asyncio.gather(*(one(wave * CONCURRENT + i) for i in range(CONCURRENT)))

    asyncio.run(main())
    _check(app, reader, exporter, list(range(WAVES * CONCURRENT)))


def test_recorder_level_load_over_ten_thousand_runs() -> None:
    """32 threads emit 12,800+ runs of events straight into one recorder: exact totals."""
    from coordgap._ledger import Ledger
    from coordgap._run import Recorder
    from coordgap.events import HandoffOutcome, NodeOutcome, RunOutcome

    reader = InMemoryMetricReader()
    from coordgap._metrics import register_metrics

    ledger = Ledger("rec")
    histogram = register_metrics(MeterProvider(metric_readers=[reader]), ledger, durations=True)
    rec = Recorder(
        graph="rec",
        ledger=ledger,
        sinks=(),
        spans=None,
        on_violation="record",
        capture=None,
        duration_histogram=histogram,
    )
    per_thread = 400 * SCALE
    barrier = threading.Barrier(THREADS)

    def worker(t: int) -> None:
        barrier.wait()
        for k in range(per_thread):
            ok = (t + k) % 7 != 0
            rec.emit(
                None, NodeOutcome("rec", "n", ok, 1, True, 0, 1000, error_type=None if ok else "E")
            )
            rec.record_duration(None, "n", ok, 1e-6, None)
            rec.emit(None, HandoffOutcome("rec", "__start__", "n", "edge", True, 0, 1))
            rec.emit(None, RunOutcome("rec", "ok" if ok else "error", ok, 0, 2000))
            if k % 50 == 0:
                rec.ledger.snapshot()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    total = THREADS * per_thread
    assert total >= 10_000
    failed = sum(1 for t in range(THREADS) for k in range(per_thread) if (t + k) % 7 == 0)
    snap = ledger.snapshot()
    assert snap.runs.runs == total and snap.runs.error == failed
    assert snap.nodes["n"].executions == total and snap.nodes["n"].failures == failed
    assert snap.handoffs[("__start__", "n")].transfers == total
    sums = _metric_sums(reader)
    assert _metric(sums, sc.METRIC_RUN_COMPLETIONS) == total
    assert _metric(sums, sc.METRIC_NODE_EXECUTIONS, coordgap_outcome="error") == failed
    assert _metric(sums, sc.METRIC_NODE_DURATION) == total


@pytest.mark.parametrize("repeat", range(2))
def test_snapshot_and_reset_during_runs_are_consistent(repeat: int) -> None:
    """Snapshots taken while 8 threads run are internally consistent; reset never breaks runs."""
    app, _, _ = _instrumented()
    stop = threading.Event()
    problems: list[str] = []

    def runner(t: int) -> None:
        k = 0
        while not stop.is_set():
            i = 2 * (t * 10_000 + k) + 1  # odd, never a multiple of 10: every run is clean
            try:
                app.invoke({"i": i})
            except BaseException as exc:
                problems.append(repr(exc))
            k += 1

    def watcher() -> None:
        led = coordgap.ledger(app)
        for n in range(300):
            snap = led.snapshot()
            r = snap.runs
            if r.ok + r.error + r.interrupted != r.runs or r.error or r.clean != r.ok:
                problems.append(f"inconsistent runs {r}")
            for name, node in snap.nodes.items():
                if node.failures or node.executions != node.attempts:
                    problems.append(f"inconsistent node {name} {node}")
            if snap.internal_errors:
                problems.append("internal errors")
            if n % 30 == 0:
                led.reset()

    threads = [threading.Thread(target=runner, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    watch = threading.Thread(target=watcher)
    watch.start()
    watch.join()
    stop.set()
    for th in threads:
        th.join()
    assert not problems, problems[:5]
    # after a final reset, counting is exact again
    led = coordgap.ledger(app)
    led.reset()
    for i in range(1, 41, 2):
        app.invoke({"i": i})
    snap = led.snapshot()
    assert snap.runs.runs == 20 and snap.nodes["b"].executions == 20
