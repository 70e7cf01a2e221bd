"""The report gauges (coordgap._gauges): computed at collection time, never raising."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from coordgap import _gauges
from coordgap._gauges import register_report_gauges
from coordgap._ledger import Ledger
from coordgap.events import HandoffOutcome, NodeOutcome, RunOutcome

G = "research"


def collect(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], float]]]:
    """Every data point the reader collects now, by metric name."""
    out: dict[str, list[tuple[dict[str, Any], float]]] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                points = [(dict(p.attributes or {}), p.value) for p in m.data.data_points]
                out.setdefault(m.name, []).extend(points)
    return out


def test_report_gauges_are_computed_at_collection_time() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    ledger = Ledger(G)
    register_report_gauges(provider.get_meter("coordgap"), lambda: ledger)

    assert collect(reader).get("coordgap.reliability", []) == []
    for i in range(10):
        ledger.record(HandoffOutcome(G, "__start__", "a", "edge", True, 0, 0))
        ledger.record(NodeOutcome(G, "a", i != 0, 1, True, 0, 0))
        ledger.record(RunOutcome(G, "ok" if i else "error", i != 0, 0, 0))
    got = collect(reader)
    rel = {
        (a["coordgap.component"], a.get("coordgap.node")): v for a, v in got["coordgap.reliability"]
    }
    assert rel[("node", "a")] == pytest.approx(0.9)
    e2e = {a["coordgap.estimate"]: v for a, v in got["coordgap.end_to_end"]}
    assert e2e == pytest.approx({"predicted": 0.9, "observed": 0.9, "naive": 0.9})
    assert got["coordgap.gap"][0][1] == pytest.approx(0.0)
    assert got["coordgap.gap"][0][0] == {"coordgap.graph": G}


def test_a_failing_ledger_getter_leaves_the_gauges_empty_and_the_rest_exported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("coordgap")
    meter.create_counter("beside").add(2)

    def broken() -> Ledger:
        raise RuntimeError("boom")

    register_report_gauges(meter, broken)
    with caplog.at_level(logging.WARNING, logger="coordgap"):
        first, second = collect(reader), collect(reader)
    for got in (first, second):
        assert got["beside"] == [({}, 2)]
        for name in ("coordgap.reliability", "coordgap.end_to_end", "coordgap.gap"):
            assert got.get(name, []) == []
    # logged once, with the cause, however often the exporter collects
    (record,) = [r for r in caplog.records if "report gauges failed" in r.getMessage()]
    assert record.exc_info is not None and str(record.exc_info[1]) == "boom"


def test_a_report_that_fails_counts_an_internal_error_on_its_ledger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader = InMemoryMetricReader()
    ledger = Ledger(G)
    ledger.record(NodeOutcome(G, "a", True, 1, True, 0, 0))

    def report(_src: Any) -> Any:
        raise ZeroDivisionError("inside the report")

    monkeypatch.setattr(_gauges, "report", report)
    register_report_gauges(
        MeterProvider(metric_readers=[reader]).get_meter("coordgap"), lambda: ledger
    )
    got = collect(reader)
    assert all(got.get(name, []) == [] for name in ("coordgap.reliability", "coordgap.end_to_end"))
    # the three gauges share one report per collection: one failure, counted once
    assert ledger.snapshot().internal_errors == 1
    collect(reader)
    assert ledger.snapshot().internal_errors == 2
