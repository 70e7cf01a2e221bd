"""configure_otlp: the providers it builds, where they export, and what it leaves alone.

Exports go to a tiny OTLP/HTTP receiver on 127.0.0.1 that records each
request's path and headers, so the tests see what a backend would see.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

import coordgap
from coordgap.otlp import configure_otlp


class _Receiver(BaseHTTPRequestHandler):
    seen: list[tuple[str, dict[str, str]]]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, dict[str, str]]]]]:
    seen: list[tuple[str, dict[str, str]]] = []
    server = HTTPServer(("127.0.0.1", 0), type("R", (_Receiver,), {"seen": seen}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


class S(TypedDict, total=False):
    n: int


def _failing_run(tp: Any, mp: Any) -> None:
    def boom(state: S) -> dict[str, Any]:
        raise ValueError("x")

    g = StateGraph(S)
    g.add_node("boom", boom)
    g.add_edge(START, "boom")
    g.add_edge("boom", END)
    app = coordgap.instrument(g, name="otlp", tracer_provider=tp, meter_provider=mp)
    with pytest.raises(ValueError):
        app.invoke({"n": 0})
    assert tp.force_flush(timeout_millis=10_000)


def test_returns_providers_without_touching_the_globals(receiver: Any) -> None:
    url, seen = receiver
    before = (trace.get_tracer_provider(), metrics.get_meter_provider())
    tp, mp = configure_otlp(url + "/", service_name="svc", metrics=False)
    try:
        assert isinstance(tp, TracerProvider) and isinstance(mp, MeterProvider)
        assert (trace.get_tracer_provider(), metrics.get_meter_provider()) == before
        assert tp.resource.attributes["service.name"] == "svc"
        _failing_run(tp, mp)
        assert mp.force_flush()
        assert [path for path, _ in seen] == ["/v1/traces"]  # metrics=False: none sent
    finally:
        tp.shutdown()
        mp.shutdown()


@pytest.mark.parametrize("suffix", ["", "/v1/traces", "/v1/metrics"])
def test_signal_paths_are_appended_once(receiver: Any, suffix: str) -> None:
    url, seen = receiver
    tp, mp = configure_otlp(url + suffix, headers={"x-api-key": "k1"}, metric_interval_s=3600)
    try:
        _failing_run(tp, mp)
        assert mp.force_flush(timeout_millis=10_000)
        assert sorted(path for path, _ in seen) == ["/v1/metrics", "/v1/traces"]
        assert all(headers.get("x-api-key") == "k1" for _, headers in seen)
    finally:
        tp.shutdown()
        mp.shutdown(timeout_millis=1000)


def test_standard_environment_variables_are_enough(
    receiver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=from-env")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "env-svc")
    tp, mp = configure_otlp(metrics=False)
    try:
        assert tp.resource.attributes["service.name"] == "env-svc"
        _failing_run(tp, mp)
        assert seen and seen[0][0] == "/v1/traces"
        assert seen[0][1].get("x-api-key") == "from-env"
    finally:
        tp.shutdown()
        mp.shutdown()


def test_explicit_arguments_win_over_the_environment(
    receiver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")  # nothing there
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=from-env")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "env-svc")
    tp, mp = configure_otlp(
        url, service_name="arg-svc", headers={"x-api-key": "arg"}, metrics=False,
        resource_attributes={"openinference.project.name": "p"},
    )  # fmt: skip
    try:
        assert tp.resource.attributes["service.name"] == "arg-svc"
        assert tp.resource.attributes["openinference.project.name"] == "p"
        _failing_run(tp, mp)
        assert [(p, h.get("x-api-key")) for p, h in seen] == [("/v1/traces", "arg")]
    finally:
        tp.shutdown()
        mp.shutdown()


def test_rejects_an_endpoint_that_is_not_a_url() -> None:
    with pytest.raises(coordgap.ConfigurationError, match="http"):
        configure_otlp("127.0.0.1:4318")


def test_missing_exporter_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ImportError, match=r"pip install 'coordgap\[otlp\]'"):
        configure_otlp("http://127.0.0.1:4318")
