"""Fail open: faults inside coordgap or its exporters never change what the graph does.

Every test compares the instrumented graph's result with the bare graph's, and
checks that the fault was counted (``internal_errors``) and logged once. The
suite normally re-raises internal errors (COORDGAP_RAISE_INTERNAL=1 in
conftest); these tests unset it to see production behaviour.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import pytest
from graphs_basic import State, linear
from langgraph.graph import END, START, StateGraph
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel, model_validator

import coordgap
from coordgap import _failopen

INPUT = {"n": 0, "log": []}
EXPECTED = linear().compile().invoke(INPUT)


@pytest.fixture(autouse=True)
def production(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behave as in production: swallow, count and log internal errors; fresh log-once memory."""
    monkeypatch.delenv("COORDGAP_RAISE_INTERNAL", raising=False)
    monkeypatch.setattr(_failopen, "_logged", set())


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "coordgap" and r.levelno >= logging.WARNING]


def _internal(app: Any) -> int:
    return coordgap.ledger(app).snapshot().internal_errors


# -- sinks ---------------------------------------------------------------------------------


def test_a_raising_sink_is_counted_per_event_and_logged_once(caplog) -> None:
    seen: list[Any] = []

    def sink(event: Any) -> None:
        seen.append(event)
        raise RuntimeError("sink down")

    app = coordgap.instrument(linear(), sinks=[sink], metrics=False, spans="off")
    with caplog.at_level(logging.WARNING, logger="coordgap"):
        results = [app.invoke(INPUT) for _ in range(5)]
    assert results == [EXPECTED] * 5
    assert _internal(app) == len(seen) > 0
    assert len(_warnings(caplog)) == 1
    # the counts in the ledger are not affected by the failing sink
    snap = coordgap.ledger(app).snapshot()
    assert snap.runs.runs == 5 and snap.runs.clean == 5
    assert snap.nodes["n0"].executions == 5


def test_the_log_line_says_what_happened_and_what_to_do(caplog) -> None:
    def sink(event: Any) -> None:
        raise RuntimeError("sink down")

    app = coordgap.instrument(linear(), sinks=[sink], metrics=False, spans="off")
    with caplog.at_level(logging.WARNING, logger="coordgap"):
        app.invoke(INPUT)
    (record,) = _warnings(caplog)
    text = record.getMessage()
    assert "coordgap.internal.errors" in text
    assert "unchanged" in text


# -- exporters -------------------------------------------------------------------------------


class _RaisingExporter(SpanExporter):
    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.calls += 1
        raise ConnectionError("collector unreachable")

    def shutdown(self) -> None:
        pass


class _BlockingExporter(SpanExporter):
    """Hangs in export until released (a collector that never answers)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.entered.set()
        self.release.wait(30)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


@pytest.mark.parametrize("mode", ["all", "failures"])
def test_an_exporter_that_raises_does_not_change_the_result(mode: str) -> None:
    exporter = _RaisingExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = coordgap.instrument(linear(), tracer_provider=provider, spans=mode, metrics=False)
    assert [app.invoke(INPUT) for _ in range(3)] == [EXPECTED] * 3
    assert coordgap.ledger(app).snapshot().runs.clean == 3
    if mode == "all":
        assert exporter.calls > 0


def test_an_exporter_that_hangs_does_not_block_the_graph() -> None:
    # With the batch processor (the production setting) export runs off the graph's threads.
    exporter = _BlockingExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1))
    app = coordgap.instrument(linear(), tracer_provider=provider, spans="all", metrics=False)
    try:
        results = [app.invoke(INPUT) for _ in range(20)]
        assert exporter.entered.wait(10)  # the exporter is stuck while the graph ran on
        results += [app.invoke(INPUT) for _ in range(20)]
    finally:
        exporter.release.set()
        provider.shutdown()
    assert results == [EXPECTED] * 40
    assert coordgap.ledger(app).snapshot().runs.runs == 40


def test_a_slow_exporter_does_not_change_results_or_counts() -> None:
    class Slow(InMemorySpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            time.sleep(0.001)
            return super().export(spans)

    exporter = Slow()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = coordgap.instrument(linear(), tracer_provider=provider, spans="all", metrics=False)
    assert [app.invoke(INPUT) for _ in range(5)] == [EXPECTED] * 5
    # one run span and four node spans per run, all exported despite the delay
    assert len(exporter.get_finished_spans()) == 5 * 5


# -- providers -------------------------------------------------------------------------------


class _RaisingTracerProvider:
    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("tracer provider down")


class _RaisingMeterProvider:
    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("meter provider down")


class _RaisingTracer:
    def start_span(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("tracer down")

    start_as_current_span = start_span


class _ProviderOfRaisingTracers:
    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        return _RaisingTracer()


class _RaisingInstrumentsMeter:
    """A meter whose instruments cannot be created."""

    def __getattr__(self, name: str) -> Any:
        def create(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"{name} down")

        return create


class _ProviderOfRaisingMeters:
    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        return _RaisingInstrumentsMeter()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tracer_provider": _RaisingTracerProvider(), "spans": "all", "metrics": False},
        {"tracer_provider": _RaisingTracerProvider(), "spans": "failures", "metrics": False},
        {"tracer_provider": _ProviderOfRaisingTracers(), "spans": "all", "metrics": False},
        {"meter_provider": _RaisingMeterProvider(), "spans": "off"},
        {"meter_provider": _ProviderOfRaisingMeters(), "spans": "off"},
    ],
    ids=["provider-all", "provider-failures", "tracer", "meter-provider", "instruments"],
)
def test_a_raising_provider_costs_telemetry_not_the_graph(kwargs: dict[str, Any], caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="coordgap"):
        app = coordgap.instrument(linear(), **kwargs)
        assert [app.invoke(INPUT) for _ in range(3)] == [EXPECTED] * 3
        assert asyncio.run(app.ainvoke(INPUT)) == EXPECTED
    assert _internal(app) > 0
    assert coordgap.ledger(app).snapshot().runs.runs == 4
    # logged once per place, not once per event
    where = [r.args[0] for r in _warnings(caplog) if r.args]
    assert len(where) == len(set(where))


def test_a_raising_tracer_on_a_failing_run_keeps_the_users_exception() -> None:
    def boom(state: State) -> dict[str, Any]:
        raise KeyError("the user's own error")

    def build() -> StateGraph:
        b = StateGraph(State)
        b.add_node("boom", boom)
        b.add_edge(START, "boom")
        b.add_edge("boom", END)
        return b

    for mode in ("all", "failures"):
        app = coordgap.instrument(
            build(), tracer_provider=_ProviderOfRaisingTracers(), spans=mode, metrics=False
        )
        with pytest.raises(KeyError) as caught:
            app.invoke(INPUT)
        with pytest.raises(KeyError) as bare:
            build().compile().invoke(INPUT)
        assert str(caught.value) == str(bare.value)
        assert coordgap.ledger(app).snapshot().runs.error == 1


# -- contracts ----------------------------------------------------------------------------------


class _Exploding(BaseModel):
    n: int

    @model_validator(mode="before")
    @classmethod
    def explode(cls, data: Any) -> Any:
        raise RuntimeError("a bug in the user's validator")


def test_a_contract_that_raises_unexpectedly_is_counted_not_raised() -> None:
    app = coordgap.instrument(
        linear(),
        contracts={
            "n1": coordgap.Contract(requires=_Exploding),
            "n2": coordgap.Contract(ensures=_Exploding),
        },
        handoffs={("n2", "n3"): _Exploding},
        metrics=False,
        spans="off",
    )
    assert [app.invoke(INPUT) for _ in range(3)] == [EXPECTED] * 3
    assert _internal(app) >= 3


def test_a_contract_that_raises_unexpectedly_never_raises_even_in_raise_mode() -> None:
    app = coordgap.instrument(
        linear(),
        contracts={"n1": coordgap.Contract(requires=_Exploding)},
        on_violation="raise",
        metrics=False,
        spans="off",
    )
    assert app.invoke(INPUT) == EXPECTED
    assert _internal(app) >= 1


def test_a_slow_contract_delays_but_does_not_change_the_run() -> None:
    calls = []

    def slow(state: Any) -> bool:
        calls.append(1)
        time.sleep(0.02)
        return True

    app = coordgap.instrument(
        linear(), contracts={"n1": coordgap.Contract(requires=slow)}, metrics=False, spans="off"
    )
    assert app.invoke(INPUT) == EXPECTED
    assert calls == [1]
    assert _internal(app) == 0
    assert coordgap.ledger(app).snapshot().runs.clean == 1


# -- states coordgap cannot render -----------------------------------------------------------


class _Unprintable:
    """A value whose repr, str, equality and attributes all raise."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")

    __hash__ = object.__hash__

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("no attributes")


class _Needs(BaseModel):
    n: str  # the state holds an int: every check fails, so values would be captured


def _opaque_graph() -> StateGraph:
    from typing import TypedDict

    class S(TypedDict, total=False):
        n: int
        blob: Any
        log: list[str]

    def a(state: S) -> dict[str, Any]:
        return {"blob": _Unprintable(), "n": 1}

    def b(state: S) -> dict[str, Any]:
        return {"n": 2}

    g = StateGraph(S)
    g.add_node("a", a)
    g.add_node("b", b)
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", END)
    return g


@pytest.mark.parametrize("capture", [False, True, 10])
def test_a_state_that_cannot_be_rendered_or_validated_runs_unchanged(capture: Any) -> None:
    app = coordgap.instrument(
        _opaque_graph(),
        contracts={"b": coordgap.Contract(requires=_Needs, ensures=_Needs)},
        capture_values=capture,
        metrics=False,
        spans="all",
        tracer_provider=TracerProvider(),
    )
    out = app.invoke({"n": 0})
    assert out["n"] == 2 and isinstance(out["blob"], _Unprintable)
    snap = coordgap.ledger(app).snapshot()
    assert snap.runs.runs == 1


def test_a_redaction_callable_that_raises_is_counted_not_raised() -> None:
    def redact(value: Any) -> Any:
        raise RuntimeError("redaction bug")

    app = coordgap.instrument(
        linear(),
        contracts={"n1": coordgap.Contract(requires=_Needs)},
        capture_values=redact,
        metrics=False,
        spans="off",
    )
    assert app.invoke(INPUT) == EXPECTED
    assert _internal(app) >= 1


# -- memory ------------------------------------------------------------------------------------


class _Big:
    def __init__(self, size: int) -> None:
        self.payload = "x" * size

    def __repr__(self) -> str:
        return f"_Big({self.payload})"


def test_huge_states_are_not_retained_and_captures_are_truncated() -> None:
    from typing import TypedDict

    class S(TypedDict, total=False):
        n: int
        big: Any

    def a(state: S) -> dict[str, Any]:
        return {"n": 1}

    def b(state: S) -> dict[str, Any]:
        return {"n": 2}

    def build() -> StateGraph:
        g = StateGraph(S)
        g.add_node("a", a)
        g.add_node("b", b)
        g.add_edge(START, "a")
        g.add_edge("a", "b")
        g.add_edge("b", END)
        return g

    captured: list[Any] = []
    app = coordgap.instrument(
        build(),
        contracts={"b": coordgap.Contract(requires=_Needs)},
        capture_values=coordgap.Capture(max_chars=100),
        sinks=[captured.append],
        metrics=False,
        spans="failures",
        tracer_provider=TracerProvider(),
    )
    refs = []
    for _ in range(5):
        big = _Big(5_000_000)
        refs.append(weakref.ref(big))
        out = app.invoke({"n": 0, "big": big})
        assert out["n"] == 2
        del big, out
    gc.collect()
    assert all(r() is None for r in refs), "coordgap kept a reference to a state"
    texts = [e.captured for e in captured if getattr(e, "captured", None)]
    assert texts and all(len(t) <= 100 + 3 for t in texts)
