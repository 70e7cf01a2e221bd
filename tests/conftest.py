"""Shared fixtures: in-memory OpenTelemetry providers; coordgap bugs raise loudly here."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from coordgap.testing import TelemetryCapture

# An internal error inside coordgap is swallowed in production; in our own suite it fails the test.
os.environ.setdefault("COORDGAP_RAISE_INTERNAL", "1")

# The four fixtures below are the parts of the plugin's coordgap_otel (one
# coordgap.testing.capture_telemetry() per test: ids counting up, coordgap on a stepping
# clock), under the names the tests ask for; a test that asks for several gets one capture.


@pytest.fixture
def span_exporter(coordgap_otel: TelemetryCapture) -> InMemorySpanExporter:
    return coordgap_otel.exporter


@pytest.fixture
def tracer_provider(coordgap_otel: TelemetryCapture) -> TracerProvider:
    return coordgap_otel.tracer_provider


@pytest.fixture
def metric_reader(coordgap_otel: TelemetryCapture) -> InMemoryMetricReader:
    return coordgap_otel.reader


@pytest.fixture
def meter_provider(coordgap_otel: TelemetryCapture) -> MeterProvider:
    return coordgap_otel.meter_provider
