"""The cheap happy path counts exactly what the event path counts; queued durations all arrive."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from hypothesis import given, settings
from hypothesis import strategies as st
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from pydantic import BaseModel, Field

import coordgap


class State(TypedDict):
    i: int
    out: Annotated[list[int], operator.add]


class HasI(BaseModel):
    i: int


def _builder(loops: int, fan: int) -> StateGraph[Any, Any, Any, Any]:
    def step(state: State) -> dict[str, Any]:
        return {"i": state["i"] + 1}

    def again(state: State) -> Any:
        if state["i"] < loops:
            return "step"
        return [Send("work", {"i": k}) for k in range(fan)] or END

    def work(payload: dict[str, int]) -> dict[str, Any]:
        if payload["i"] == 3:
            return {"out": "not a list"}  # the reducer raises: runs with fan > 3 end in error
        return {"out": [payload["i"]]}

    b = StateGraph(State)
    b.add_node("step", step)
    b.add_node("work", work)
    b.add_edge(START, "step")
    b.add_conditional_edges("step", again, ["step", "work", END])
    b.add_edge("work", END)
    return b


def _counts(app: Any) -> dict[str, Any]:
    snap = coordgap.ledger(app).snapshot().to_dict()
    for node in snap["nodes"].values():  # type: ignore[attr-defined]
        node.pop("duration_s")
    snap["runs"].pop("duration_s")  # type: ignore[attr-defined]
    snap.pop("topology")
    return snap


@settings(max_examples=15, deadline=None)
@given(
    loops=st.integers(1, 6),
    fan=st.integers(0, 3),
    runs=st.integers(1, 3),
    mode=st.sampled_from(["off", "failures", "all"]),
)
def test_fast_path_counts_equal_event_path(loops: int, fan: int, runs: int, mode: str) -> None:
    """Without sinks the probes count through Ledger.node_ok & co; with one, through events."""
    contracts = {"work": coordgap.Contract(requires=HasI)}
    fast = coordgap.instrument(
        _builder(loops, fan),
        spans=mode,
        metrics=False,  # type: ignore[arg-type]
        contracts=contracts,
    )
    seen: list[Any] = []
    slow = coordgap.instrument(
        _builder(loops, fan),
        spans=mode,
        metrics=False,  # type: ignore[arg-type]
        contracts=contracts,
        sinks=[seen.append],
    )
    for app in (fast, slow):
        for _ in range(runs):
            try:
                app.invoke({"i": 0, "out": []})
            except Exception:  # the same failure in both graphs
                pass
    assert seen  # the slow graph really went through events
    assert _counts(fast) == _counts(slow)


def test_queued_durations_reach_every_reader_once() -> None:
    readers = [InMemoryMetricReader(), InMemoryMetricReader()]
    provider = MeterProvider(metric_readers=readers)
    app = coordgap.instrument(_builder(3, 0), spans="off", meter_provider=provider, durations=True)
    for _ in range(5):
        app.invoke({"i": 0, "out": []})

    def count(reader: InMemoryMetricReader) -> int:
        data = reader.get_metrics_data()
        total = 0
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == "coordgap.node.duration":
                        total += sum(p.count for p in metric.data.data_points)
        return total

    attempts = coordgap.ledger(app).snapshot().nodes["step"].attempts
    assert attempts == 15
    assert count(readers[0]) == attempts  # drained at the first reader's collection...
    assert count(readers[1]) == attempts  # ...into the histogram every reader sees
    app.invoke({"i": 0, "out": []})
    assert count(readers[1]) == attempts + 3  # cumulative, nothing lost or doubled


def _span_tree(capture: Any) -> list[tuple[Any, ...]]:
    """The spans as (name, parent's name, attributes, status), ids and times left out."""
    spans = capture.spans()
    names = {s["span_id"]: s["name"] for s in spans}
    return sorted(
        (
            s["name"],
            names.get(s["parent"]),
            sorted((k, repr(v)) for k, v in s["attributes"].items()),
            s["status"],
            s["status_description"],
        )
        for s in spans
    )


@settings(max_examples=10, deadline=None)
@given(
    loops=st.integers(1, 5),
    fan=st.integers(0, 4),
    mode=st.sampled_from(["failures", "all"]),
)
def test_fast_path_spans_equal_event_path(loops: int, fan: int, mode: str) -> None:
    """Live node and run spans end on the quiet path too: the span tree is the one the
    event path makes, failures (a broken contract, a raising reducer) included."""
    from coordgap.testing import capture_telemetry

    class SmallI(BaseModel):
        i: int = Field(le=3)  # broken on the loop's fifth visit and after

    contracts = {
        "work": coordgap.Contract(requires=HasI),
        "step": coordgap.Contract(requires=SmallI),
    }
    trees = []
    for sinks in ([], [lambda event: None]):
        with capture_telemetry() as otel:
            app = coordgap.instrument(
                _builder(loops, fan),
                spans=mode,  # type: ignore[arg-type]
                metrics=False,
                contracts=contracts,
                sinks=sinks,
                tracer_provider=otel.tracer_provider,
            )
            for _ in range(2):
                try:
                    app.invoke({"i": 0, "out": []})
                except Exception:  # fan > 3: the reducer raises, in both graphs
                    pass
            trees.append(_span_tree(otel))
    assert trees[0] == trees[1]
    if mode == "all" or loops > 4 or fan > 3:  # a span exists: the comparison compared
        assert any(name == "coordgap.run" for name, *_ in trees[0])
