"""fleet_snapshot without a real Prometheus: the PromQL, the sums, and a fake HTTP API.

The differential test feeds what coordgap's own metrics export (read with an
in-memory reader, labels renamed as the Prometheus exporter does) through
``snapshot_from_samples`` and expects the ledger's counts back exactly.
"""

from __future__ import annotations

import json
import random
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, TypedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langgraph.graph import END, START, StateGraph
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import coordgap
from coordgap import semconv as sc
from coordgap._ledger import LedgerSnapshot
from coordgap.fleet import fleet_snapshot, promql, snapshot_from_samples


class S(TypedDict, total=False):
    n: int


def _graph(rng: random.Random, p_node: float, p_route: float) -> StateGraph:
    def a(state: S) -> dict[str, Any]:
        if rng.random() < p_node:
            raise KeyError("boom")
        return {"n": 1}

    def route(state: S) -> str:
        return "nowhere" if rng.random() < p_route else "b"

    g = StateGraph(S)
    g.add_node("a", a)
    g.add_node("b", lambda s: {"n": 2})
    g.add_edge(START, "a")
    g.add_conditional_edges("a", route)
    g.add_edge("b", END)
    return g


def _prom_labels(attrs: Any) -> dict[str, str]:
    out = {}
    for k, v in attrs.items():
        out[k.replace(".", "_")] = str(v).lower() if isinstance(v, bool) else str(v)
    return out


def _samples(reader: InMemoryMetricReader) -> list[tuple[str, dict[str, str], float]]:
    rows = []
    data = reader.get_metrics_data()
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for dp in m.data.data_points:
                    if m.name == sc.METRIC_NODE_DURATION:
                        continue  # the opt-in histogram: the decoder reads coordgap.node.time
                    value = dp.value
                    rows.append((m.name, _prom_labels(dp.attributes), float(value)))
    return rows


def _counts(s: LedgerSnapshot) -> dict[str, Any]:
    return {
        "nodes": {
            k: (n.executions, n.failures, n.attempts, n.attempt_failures, n.first_attempt_ok)
            for k, n in s.nodes.items()
        },
        "handoffs": {
            k: (h.transfers, h.failures, dict(h.kinds), dict(h.kind_failures))
            for k, h in s.handoffs.items()
        },
        "routers": {k: (r.source, r.decisions, r.failures) for k, r in s.routers.items()},
        "runs": (s.runs.runs, s.runs.ok, s.runs.error, s.runs.interrupted, s.runs.clean),
        "internal_errors": s.internal_errors,
    }


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    p_node=st.sampled_from([0.0, 0.2, 0.6]),
    p_route=st.sampled_from([0.0, 0.3]),
    runs=st.integers(0, 12),
)
def test_exported_metrics_rebuild_the_ledger_exactly(
    seed: int, p_node: float, p_route: float, runs: int
) -> None:
    reader = InMemoryMetricReader()
    app = coordgap.instrument(
        _graph(random.Random(seed), p_node, p_route),
        name="g",
        spans="off",
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    for _ in range(runs):
        try:
            app.invoke({"n": 0})
        except KeyError:
            pass
    own = coordgap.ledger(app).snapshot()
    rebuilt = snapshot_from_samples("g", _samples(reader))
    assert _counts(rebuilt) == _counts(own)
    for name, n in rebuilt.nodes.items():
        assert n.duration_s == pytest.approx(own.nodes[name].duration_s, rel=1e-9, abs=1e-12)


def test_samples_from_several_workers_add_up() -> None:
    ok = {"coordgap_outcome": "ok"}
    err = {"coordgap_outcome": "error"}
    samples = [
        (sc.METRIC_RUN_COMPLETIONS, {**ok, "instance": "w1"}, 3.0),
        (sc.METRIC_RUN_COMPLETIONS, {**ok, "instance": "w2"}, 4.0),
        (sc.METRIC_RUN_COMPLETIONS, {**err, "instance": "w2"}, 2.0),
        (sc.METRIC_RUN_CLEAN, {"instance": "w1"}, 3.0),
        (sc.METRIC_RUN_CLEAN, {"instance": "w2"}, 3.0),
    ]
    snap = snapshot_from_samples("g", samples)
    assert (snap.runs.runs, snap.runs.ok, snap.runs.error, snap.runs.clean) == (9, 7, 2, 6)


def test_extrapolated_counts_are_rounded_and_kept_consistent() -> None:
    node = {"coordgap_node": "a"}
    samples = [
        (sc.METRIC_NODE_EXECUTIONS, {**node, "coordgap_outcome": "error"}, 5.4),
        (sc.METRIC_NODE_EXECUTIONS, {**node, "coordgap_outcome": "ok",
                                     "coordgap_first_attempt": "true"}, 0.2),
        (sc.METRIC_NODE_ATTEMPTS, {**node, "coordgap_outcome": "error"}, 4.6),
        (sc.METRIC_RUN_COMPLETIONS, {"coordgap_outcome": "ok"}, 1.9),
        (sc.METRIC_RUN_CLEAN, {}, 7.0),
    ]  # fmt: skip
    snap = snapshot_from_samples("g", samples)
    a = snap.nodes["a"]
    assert (a.executions, a.failures, a.first_attempt_ok) == (5, 5, 0)
    assert a.attempts >= a.executions and a.attempt_failures <= a.attempts
    assert snap.runs.clean == snap.runs.finished == 2


def test_promql_sums_by_the_exported_labels() -> None:
    assert promql(sc.METRIC_HANDOFF_TRANSFERS, graph="research", window="1h") == (
        "sum by (coordgap_handoff_source, coordgap_handoff_target, coordgap_handoff_kind, "
        'coordgap_outcome) (increase(coordgap_handoff_transfers_total{coordgap_graph="research"}'
        "[1h]))"
    )
    assert promql(sc.METRIC_RUN_CLEAN, graph="g", window=None) == (
        'sum(coordgap_run_clean_total{coordgap_graph="g"})'
    )
    assert promql(sc.METRIC_NODE_TIME, graph="g", window="5m") == (
        'sum by (coordgap_node) (increase(coordgap_node_time_seconds_total{coordgap_graph="g"}'
        "[5m]))"
    )


def test_promql_quotes_the_graph_name() -> None:
    q = promql(sc.METRIC_RUN_CLEAN, graph='a"b\\c', window=None)
    assert q == 'sum(coordgap_run_clean_total{coordgap_graph="a\\"b\\\\c"})'


@pytest.mark.parametrize("window", ["1 hour", "1h]) or vector(1", "", "h", "-5m"])
def test_promql_rejects_anything_but_a_duration(window: str) -> None:
    with pytest.raises(coordgap.ConfigurationError, match="PromQL duration"):
        promql(sc.METRIC_RUN_CLEAN, graph="g", window=window)


def test_promql_rejects_unknown_metrics() -> None:
    with pytest.raises(coordgap.ConfigurationError, match="not one of coordgap's counters"):
        promql("coordgap.reliability", graph="g")


# -- against a fake Prometheus HTTP API ------------------------------------------------


class _FakePrometheus(BaseHTTPRequestHandler):
    queries: list[dict[str, str]] = []
    results: dict[str, list[dict[str, Any]]] = {}
    error: str | None = None

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        type(self).queries.append(form)
        if self.error:
            body = {"status": "error", "errorType": "bad_data", "error": self.error}
            code = 400
        else:
            result = []
            for needle, rows in self.results.items():
                if needle in form["query"]:
                    result = rows
            body = {"status": "success", "data": {"resultType": "vector", "result": result}}
            code = 200
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_prometheus() -> Iterator[tuple[str, type[_FakePrometheus]]]:
    handler = type("Handler", (_FakePrometheus,), {"queries": [], "results": {}, "error": None})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", handler
    finally:
        server.shutdown()
        server.server_close()


def test_fleet_snapshot_asks_every_metric_at_one_instant(fake_prometheus: Any) -> None:
    url, handler = fake_prometheus
    handler.results = {
        "coordgap_run_completions_total": [
            {"metric": {"coordgap_outcome": "ok"}, "value": [1.0, "5"]},
            {"metric": {"coordgap_outcome": "error"}, "value": [1.0, "1"]},
        ],
        "coordgap_run_clean_total": [{"metric": {}, "value": [1.0, "4"]}],
    }
    snap = fleet_snapshot(url, graph="g", window="30m", at=1234.5)
    assert (snap.runs.ok, snap.runs.error, snap.runs.clean) == (5, 1, 4)
    assert snap.graph == "g" and snap.topology is None
    asked = [q["query"] for q in handler.queries]
    assert asked == [
        promql(m, graph="g", window="30m")
        for m in (
            sc.METRIC_NODE_EXECUTIONS, sc.METRIC_NODE_ATTEMPTS, sc.METRIC_NODE_TIME,
            sc.METRIC_HANDOFF_TRANSFERS, sc.METRIC_ROUTER_DECISIONS, sc.METRIC_ROUTER_CHOICES,
            sc.METRIC_RUN_COMPLETIONS, sc.METRIC_RUN_CLEAN, sc.METRIC_INTERNAL_ERRORS,
        )
    ]  # fmt: skip
    assert {q["time"] for q in handler.queries} == {"1234.500"}


def test_fleet_snapshot_finds_the_only_graph(fake_prometheus: Any) -> None:
    url, handler = fake_prometheus
    handler.results = {"count by": [{"metric": {"coordgap_graph": "solo"}, "value": [1, "2"]}]}
    assert fleet_snapshot(url, window=None).graph == "solo"


def test_fleet_snapshot_needs_a_graph_when_there_are_several(fake_prometheus: Any) -> None:
    url, handler = fake_prometheus
    handler.results = {
        "count by": [
            {"metric": {"coordgap_graph": "x"}, "value": [1, "2"]},
            {"metric": {"coordgap_graph": "y"}, "value": [1, "2"]},
        ]
    }
    with pytest.raises(coordgap.ConfigurationError, match=r"2 coordgap graphs \(x, y\)"):
        fleet_snapshot(url)


def test_fleet_snapshot_reports_prometheus_errors(fake_prometheus: Any) -> None:
    url, handler = fake_prometheus
    handler.error = "parse error"
    with pytest.raises(coordgap.ConfigurationError, match="bad_data: parse error"):
        fleet_snapshot(url, graph="g")


def test_fleet_snapshot_wants_an_http_url() -> None:
    with pytest.raises(coordgap.ConfigurationError, match="http"):
        fleet_snapshot("127.0.0.1:9090", graph="g")
