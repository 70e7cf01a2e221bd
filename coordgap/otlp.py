"""Send coordgap's spans and metrics to any OTLP backend (Phoenix, Jaeger, Tempo, a Collector).

:func:`configure_otlp` builds an OpenTelemetry ``TracerProvider`` and
``MeterProvider`` that export over OTLP/HTTP and hands them back; pass them to
:func:`coordgap.instrument`. It never touches OpenTelemetry's global
providers unless asked to (``set_global=True``)::

    tp, mp = coordgap.configure_otlp("http://127.0.0.1:6006", service_name="research-agent")
    app = coordgap.instrument(builder, tracer_provider=tp, meter_provider=mp)
    ...
    tp.shutdown(); mp.shutdown()   # flush before the process exits

The standard OpenTelemetry environment variables are enough on their own:
with ``endpoint=None`` the exporters read ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the
base URL; ``/v1/traces`` and ``/v1/metrics`` are appended),
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``
(full URLs), ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_EXPORTER_OTLP_TIMEOUT`` and
``OTEL_EXPORTER_OTLP_COMPRESSION``; the resource reads ``OTEL_SERVICE_NAME``
and ``OTEL_RESOURCE_ATTRIBUTES``; the metric interval reads
``OTEL_METRIC_EXPORT_INTERVAL``. An explicit argument wins over its variable.

Needs the OTLP exporter: ``pip install 'coordgap[otlp]'``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import ConfigurationError

__all__ = ["configure_otlp"]

_INSTALL_HINT = "pip install 'coordgap[otlp]'"


def _signal_url(endpoint: str, path: str) -> str:
    base = endpoint.rstrip("/")
    for suffix in ("/v1/traces", "/v1/metrics"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return f"{base}/{path}"


def configure_otlp(
    endpoint: str | None = None,
    *,
    service_name: str | None = None,
    headers: Mapping[str, str] | None = None,
    resource_attributes: Mapping[str, str] | None = None,
    metrics: bool = True,
    metric_interval_s: float | None = None,
    set_global: bool = False,
) -> tuple[Any, Any]:
    """Return a ``(TracerProvider, MeterProvider)`` pair that exports over OTLP/HTTP.

    Args:
        endpoint: the backend's OTLP/HTTP base URL (``http://127.0.0.1:6006`` for a
            local Phoenix, ``http://localhost:4318`` for a Collector); ``/v1/traces``
            and ``/v1/metrics`` are appended. A URL already ending in one of them is
            accepted. ``None``: the ``OTEL_EXPORTER_OTLP_*`` variables decide.
        service_name: the resource's ``service.name``; ``None``: ``OTEL_SERVICE_NAME``
            or OpenTelemetry's default.
        headers: extra HTTP headers (API keys); ``None``: ``OTEL_EXPORTER_OTLP_HEADERS``.
        resource_attributes: more resource attributes, e.g.
            ``{"openinference.project.name": "agents"}`` to pick a Phoenix project.
        metrics: export metrics too. Trace-only backends such as Phoenix answer
            ``/v1/metrics`` with an error: pass ``False`` there (the meter provider
            is then built without a reader, so instruments cost next to nothing).
        metric_interval_s: seconds between metric exports; ``None``:
            ``OTEL_METRIC_EXPORT_INTERVAL`` or the SDK's 60 s.
        set_global: also install both providers as OpenTelemetry's globals.

    Spans go through a ``BatchSpanProcessor``: call ``force_flush()`` or
    ``shutdown()`` on the providers before the process exits.

    Raises:
        ImportError: the OTLP exporter is not installed (``pip install 'coordgap[otlp]'``).
        ConfigurationError: ``endpoint`` is not an http(s) URL.

    Example::

        tp, mp = coordgap.configure_otlp("http://127.0.0.1:6006", metrics=False)
        app = coordgap.instrument(builder, tracer_provider=tp, meter_provider=mp)
    """
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise ImportError(
            f"coordgap.configure_otlp needs the OTLP exporter: {_INSTALL_HINT}"
        ) from exc
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"endpoint must be an http(s) URL such as 'http://127.0.0.1:4318' (got {endpoint!r})"
        )
    attrs: dict[str, str] = dict(resource_attributes or {})
    if service_name is not None:
        attrs[SERVICE_NAME] = service_name
    resource = Resource.create(attrs)  # merges OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES
    header_dict = None if headers is None else dict(headers)

    span_exporter = OTLPSpanExporter(
        endpoint=None if endpoint is None else _signal_url(endpoint, "v1/traces"),
        headers=header_dict,
    )
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))

    readers = []
    if metrics:
        metric_exporter = OTLPMetricExporter(
            endpoint=None if endpoint is None else _signal_url(endpoint, "v1/metrics"),
            headers=header_dict,
        )
        interval = None if metric_interval_s is None else metric_interval_s * 1000.0
        readers.append(
            PeriodicExportingMetricReader(metric_exporter, export_interval_millis=interval)
        )
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)

    if set_global:
        from opentelemetry import metrics as otel_metrics
        from opentelemetry import trace as otel_trace

        otel_trace.set_tracer_provider(tracer_provider)
        otel_metrics.set_meter_provider(meter_provider)
    return tracer_provider, meter_provider
