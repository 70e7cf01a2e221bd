"""Metrics through the SDK's in-memory reader: names, attributes, exact totals."""

from __future__ import annotations

from typing import Any

import pytest
from graphs_basic import linear, looping, retrying

import coordgap
from coordgap import semconv as sc


def points(reader: Any, name: str) -> list[tuple[dict[str, Any], float]]:
    data = reader.get_metrics_data()
    out: list[tuple[dict[str, Any], float]] = []
    if data is None:  # nothing was ever registered
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for p in metric.data.data_points:
                        out.append(
                            (
                                dict(p.attributes),
                                getattr(p, "value", None) or getattr(p, "count", 0),
                            )
                        )
    return out


def total(reader: Any, name: str, **where: Any) -> float:
    return sum(
        v for attrs, v in points(reader, name) if all(attrs.get(k) == w for k, w in where.items())
    )


def test_node_and_handoff_counters_match_the_ledger(
    meter_provider: Any, metric_reader: Any
) -> None:
    """Observable counters report exactly what the ledger holds."""
    app = coordgap.instrument(looping(3), meter_provider=meter_provider, name="loop")
    for _ in range(4):
        app.invoke({"n": 0})
    node_ok = {sc.ATTR_NODE: "work", sc.ATTR_OUTCOME: "ok"}
    assert total(metric_reader, sc.METRIC_NODE_EXECUTIONS, **node_ok) == 12
    assert (
        total(
            metric_reader,
            sc.METRIC_HANDOFF_TRANSFERS,
            **{sc.ATTR_SOURCE: "work", sc.ATTR_TARGET: "work"},
        )
        == 8
    )
    assert total(metric_reader, sc.METRIC_ROUTER_DECISIONS, **{sc.ATTR_ROUTER: "route"}) == 12
    assert total(metric_reader, sc.METRIC_RUN_COMPLETIONS, **{sc.ATTR_OUTCOME: "ok"}) == 4
    assert total(metric_reader, sc.METRIC_RUN_CLEAN) == 4
    graphs = {a[sc.ATTR_GRAPH] for a, _ in points(metric_reader, sc.METRIC_NODE_EXECUTIONS)}
    assert graphs == {"loop"}


def test_first_attempt_and_retries_are_distinguished(
    meter_provider: Any, metric_reader: Any
) -> None:
    """A success after retries is ok with first_attempt false; attempts count every try."""
    app = coordgap.instrument(retrying(fails=2), meter_provider=meter_provider)
    app.invoke({"n": 0})
    ok_later = {sc.ATTR_NODE: "flaky", sc.ATTR_OUTCOME: "ok", sc.ATTR_FIRST_ATTEMPT: False}
    assert total(metric_reader, sc.METRIC_NODE_EXECUTIONS, **ok_later) == 1
    assert (
        total(
            metric_reader,
            sc.METRIC_NODE_ATTEMPTS,
            **{sc.ATTR_NODE: "flaky", sc.ATTR_OUTCOME: "error"},
        )
        == 2
    )


def test_duration_histogram_counts_attempts(meter_provider: Any, metric_reader: Any) -> None:
    """With durations=True the histogram has one sample per node attempt, in seconds."""
    app = coordgap.instrument(linear(3), meter_provider=meter_provider, durations=True)
    app.invoke({"n": 0})
    app.invoke({"n": 0})
    data = metric_reader.get_metrics_data()
    hist = [
        m
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == sc.METRIC_NODE_DURATION
    ]
    (metric,) = hist
    assert metric.unit == "s"
    assert sum(p.count for p in metric.data.data_points) == 6


def test_durations_are_opt_in_and_the_time_counter_is_always_there(
    meter_provider: Any, metric_reader: Any
) -> None:
    """Without durations=True nothing is recorded in the histogram (it costs microseconds per
    attempt at collection); coordgap.node.time carries the total for the mean."""
    app = coordgap.instrument(linear(3), meter_provider=meter_provider)
    app.invoke({"n": 0})
    data = metric_reader.get_metrics_data()
    metrics = {
        m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    hist = metrics.get(sc.METRIC_NODE_DURATION)
    assert hist is None or sum(p.count for p in hist.data.data_points) == 0
    time_counter = metrics[sc.METRIC_NODE_TIME]
    assert time_counter.unit == "s"
    seconds = {p.attributes[sc.ATTR_NODE]: p.value for p in time_counter.data.data_points}
    own = coordgap.ledger(app).snapshot().nodes
    assert seconds == {name: n.duration_s for name, n in own.items()}
    assert all(v > 0 for v in seconds.values())


def test_attribute_values_are_bounded_to_graph_names(
    meter_provider: Any, metric_reader: Any
) -> None:
    """Every attribute value is a node name, a fixed word, an exception class or a number."""
    app = coordgap.instrument(retrying(fails=5), meter_provider=meter_provider)
    with pytest.raises(Exception):
        app.invoke({"n": 0})
    allowed = {
        "a",
        "flaky",
        "__start__",
        "__end__",
        "ok",
        "error",
        "interrupted",
        "edge",
        "TransientError",
        "LangGraph",
        True,
        False,
    }
    for name in (sc.METRIC_NODE_EXECUTIONS, sc.METRIC_HANDOFF_TRANSFERS, sc.METRIC_RUN_COMPLETIONS):
        for attrs, _ in points(metric_reader, name):
            assert set(attrs.values()) <= allowed, attrs


def test_metrics_false_registers_nothing(meter_provider: Any, metric_reader: Any) -> None:
    """metrics=False leaves the meter provider untouched."""
    app = coordgap.instrument(linear(2), metrics=False, meter_provider=meter_provider)
    app.invoke({"n": 0})
    assert points(metric_reader, sc.METRIC_NODE_EXECUTIONS) == []
