"""Sink: OpenTelemetry spans for runs, node executions, handoffs and routers.

Three modes:

- ``"all"``: a span per run and per node attempt, started live and made
  current (so the user's own spans nest under them); successful handoffs are
  events on the target node's span; failed handoffs and routers are spans.
- ``"failures"``: nothing on the happy path; when a run had a failure, at its
  end the run span and one span per failed component are created after the
  fact with their recorded start and end times and the right parent.
- ``"off"``: no spans.

Attributes carry names from the graph, exception class names and contract
names only (see ``semconv``); state values appear only with ``capture_values``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import semconv as sc
from .events import HandoffOutcome, NodeOutcome, RouterOutcome, RunOutcome

_MAX_DEFERRED = 256  # failures kept per run for "failures" mode; beyond that they are only counted


def _add_failure(attrs: dict[str, Any], e: NodeOutcome | HandoffOutcome) -> None:
    """Add what a failed node attempt or handoff says: error type, contract, fault, capture."""
    attrs[sc.ATTR_ERROR_TYPE] = e.error_type or "Exception"
    if e.contract is not None:
        attrs[sc.ATTR_CONTRACT] = e.contract
        attrs[sc.ATTR_CONTRACT_FIELDS] = list(e.fields)
    if e.fault:
        attrs[sc.ATTR_FAULT] = True
    if e.captured is not None:
        attrs[sc.ATTR_CAPTURED_INPUT] = e.captured


def _node_attributes(e: NodeOutcome) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        sc.ATTR_GRAPH: e.graph,
        sc.ATTR_NODE: e.node,
        sc.ATTR_ATTEMPT: e.attempt,
        sc.ATTR_OUTCOME: "ok" if e.ok else "error",
    }
    if e.step is not None:
        attrs[sc.ATTR_STEP] = e.step
    if not e.ok:
        _add_failure(attrs, e)
    return attrs


def _handoff_attributes(e: HandoffOutcome) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        sc.ATTR_GRAPH: e.graph,
        sc.ATTR_SOURCE: e.source,
        sc.ATTR_TARGET: e.target,
        sc.ATTR_HANDOFF_KIND: e.kind,
        sc.ATTR_OUTCOME: "ok" if e.ok else "error",
    }
    if not e.ok:
        _add_failure(attrs, e)
    return attrs


def _router_attributes(e: RouterOutcome) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        sc.ATTR_GRAPH: e.graph,
        sc.ATTR_ROUTER: e.router,
        sc.ATTR_SOURCE: e.source,
        sc.ATTR_OUTCOME: "ok" if e.ok else "error",
    }
    if e.targets:
        attrs[sc.ATTR_TARGET] = list(e.targets)
    if not e.ok:
        attrs[sc.ATTR_ERROR_TYPE] = e.error_type or "Exception"
        if e.fault:
            attrs[sc.ATTR_FAULT] = True
    return attrs


def _error_status(error_type: str | None) -> Status:
    return Status(StatusCode.ERROR, error_type or "error")


class SpanRecorder:
    """Creates coordgap's spans in the mode asked for; one per instrumented graph."""

    def __init__(self, tracer_provider: Any, mode: str, graph: str) -> None:
        self.mode = mode
        self.graph = graph
        self.live = mode == "all"
        provider = tracer_provider or trace.get_tracer_provider()
        from importlib.metadata import version

        try:
            ver = version("coordgap")
        except Exception:
            ver = "0"
        self.tracer = provider.get_tracer(sc.SCOPE_NAME, ver)

    # -- runs ---------------------------------------------------------------------

    def run_start(self, run: Any) -> None:
        """Open the run span (live mode) or remember the parent context (failures mode)."""
        if self.live:
            span = self.tracer.start_span(
                sc.SPAN_RUN,
                kind=SpanKind.INTERNAL,
                attributes={sc.ATTR_GRAPH: self.graph},
                start_time=run.start_ns,
            )
            run.span = span
            run.otel_ctx = trace.set_span_in_context(span)
        else:
            run.parent_ctx = otel_context.get_current()

    def run_end(self, run: Any, outcome: RunOutcome) -> None:
        """Close the run span, or, in failures mode, create it with its failed children."""
        if self.live:
            span = run.span
            if span is None:
                return
            span.set_attribute(sc.ATTR_OUTCOME, outcome.status)
            if outcome.status == "error":
                span.set_attribute(sc.ATTR_ERROR_TYPE, outcome.error_type or "Exception")
                span.set_status(_error_status(outcome.error_type))
            elif not outcome.clean and outcome.status == "ok":
                span.set_status(Status(StatusCode.ERROR, "a component failed"))
            span.end(end_time=outcome.end_ns)
            return
        failures = run.failures
        if not failures and outcome.status != "error":
            return
        attrs: dict[str, Any] = {sc.ATTR_GRAPH: self.graph, sc.ATTR_OUTCOME: outcome.status}
        if outcome.error_type:
            attrs[sc.ATTR_ERROR_TYPE] = outcome.error_type
        span = self.tracer.start_span(
            sc.SPAN_RUN,
            context=run.parent_ctx,
            kind=SpanKind.INTERNAL,
            attributes=attrs,
            start_time=outcome.start_ns,
        )
        span.set_status(_error_status(outcome.error_type or "a component failed"))
        ctx = trace.set_span_in_context(span)
        for event in failures or ():
            self._failure_span(event, ctx)
        span.end(end_time=outcome.end_ns)

    # -- nodes (live mode) -----------------------------------------------------------

    def node_start(
        self,
        node: str,
        start_ns: int,
        attempt: int | None = None,
        step: int | None = None,
        received: Sequence[tuple[str, str]] = (),
    ) -> tuple[Any, Any]:
        """Start a node span as the current span; return (span, context token).

        ``received`` are the (source, kind) handoffs the node received, recorded as attributes
        (not span events: an event costs about a third of a span in the SDK).
        """
        # Set at start, the attributes are cleaned once. The outcome is "ok" until the
        # attempt ends otherwise (node_end overwrites it): nothing sees a span before it
        # ends, and the happy path sets no attribute at its end.
        attrs: dict[str, Any] = {
            sc.ATTR_GRAPH: self.graph,
            sc.ATTR_NODE: node,
            sc.ATTR_OUTCOME: "ok",
        }
        if attempt is not None:
            attrs[sc.ATTR_ATTEMPT] = attempt
        if step is not None:
            attrs[sc.ATTR_STEP] = step
        if received:
            attrs[sc.ATTR_RECEIVED_FROM] = [source for source, _ in received]
            attrs[sc.ATTR_RECEIVED_KINDS] = [kind for _, kind in received]
        span = self.tracer.start_span(
            sc.SPAN_NODE,
            kind=SpanKind.INTERNAL,
            attributes=attrs,
            start_time=start_ns,
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        return span, token

    def node_end(self, span: Any, token: Any, event: NodeOutcome | None, end_ns: int) -> None:
        """End a node span; ``event`` is None when the node was interrupted (not a failure)."""
        try:
            otel_context.detach(token)
        finally:
            if event is not None:
                span.set_attributes(_node_attributes(event))
                if not event.ok:
                    span.set_status(_error_status(event.error_type))
            else:
                span.set_attribute(sc.ATTR_OUTCOME, "interrupted")
            span.end(end_time=end_ns)

    def node_end_ok(self, span: Any, token: Any, end_ns: int) -> None:
        """End a node span whose attempt succeeded: node_end() without building the event.

        The span was started with its attempt, step and outcome "ok" (node_start).
        """
        try:
            otel_context.detach(token)
        finally:
            span.end(end_time=end_ns)

    # -- failures and handoffs ---------------------------------------------------------

    def failure(self, run: Any, event: NodeOutcome | HandoffOutcome | RouterOutcome) -> None:
        """A failed component: a span now (live) or at the run's end (failures mode)."""
        if self.live:
            if isinstance(event, NodeOutcome):
                return  # the live node span carries it
            parent = run.otel_ctx if run is not None else None
            self._failure_span(event, parent)
        elif run is not None:
            if len(run.failures) < _MAX_DEFERRED:
                run.failures.append(event)
        else:
            self._failure_span(event, None)

    def _failure_span(self, event: Any, parent: Any) -> None:
        if isinstance(event, NodeOutcome):
            name, attrs = sc.SPAN_NODE, _node_attributes(event)
        elif isinstance(event, HandoffOutcome):
            name, attrs = sc.SPAN_HANDOFF, _handoff_attributes(event)
        else:
            name, attrs = sc.SPAN_ROUTER, _router_attributes(event)
        span = self.tracer.start_span(
            name,
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes=attrs,
            start_time=event.start_ns,
        )
        span.set_status(_error_status(event.error_type))
        span.end(end_time=max(event.end_ns, event.start_ns))
