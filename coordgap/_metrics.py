"""Sink: OpenTelemetry metrics, read from the ledger when the SDK collects.

The hot path only tallies into the ledger; the counters here are
observable, so exporting costs nothing per event. The one synchronous
instrument is the node-duration histogram (a distribution cannot be
rebuilt from sums). Recording into the SDK costs several times a whole
coordgap probe, so durations are queued and handed to the histogram when a
reader collects (the callback of the first observable counter drains the
queue); the exported distribution is the same. When a sampled span is
current, its context is queued with the duration and passed to the SDK at
drain time, so exemplars still point at that span (their timestamp is the
drain's). A duration is recorded at once when its queue is full.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

from . import semconv as sc
from ._ledger import Ledger, LedgerSnapshot

DURATION_BUCKETS_S = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
"""Histogram boundaries in seconds (the SDK's defaults are meant for milliseconds)."""


def _duration_histogram(meter: Any) -> Any:
    try:
        return meter.create_histogram(
            sc.METRIC_NODE_DURATION,
            unit=sc.UNIT_SECONDS,
            description="Duration of node attempts.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
    except TypeError:  # opentelemetry-api before 1.23 has no advisory parameter
        return meter.create_histogram(
            sc.METRIC_NODE_DURATION, unit=sc.UNIT_SECONDS, description="Duration of node attempts."
        )


def _node_executions(s: LedgerSnapshot) -> Iterable[tuple[int, dict[str, Any]]]:
    for name, n in s.nodes.items():
        base = {sc.ATTR_GRAPH: s.graph, sc.ATTR_NODE: name}
        yield n.first_attempt_ok, {**base, sc.ATTR_OUTCOME: "ok", sc.ATTR_FIRST_ATTEMPT: True}
        yield (
            n.successes - n.first_attempt_ok,
            {**base, sc.ATTR_OUTCOME: "ok", sc.ATTR_FIRST_ATTEMPT: False},
        )
        yield n.failures, {**base, sc.ATTR_OUTCOME: "error", sc.ATTR_FIRST_ATTEMPT: False}


def _node_attempts(s: LedgerSnapshot) -> Iterable[tuple[int, dict[str, Any]]]:
    for name, n in s.nodes.items():
        base = {sc.ATTR_GRAPH: s.graph, sc.ATTR_NODE: name}
        yield n.attempts - n.attempt_failures, {**base, sc.ATTR_OUTCOME: "ok"}
        yield n.attempt_failures, {**base, sc.ATTR_OUTCOME: "error"}


def _handoffs(s: LedgerSnapshot) -> Iterable[tuple[int, dict[str, Any]]]:
    for h in s.handoffs.values():
        for kind, count in h.kinds.items():
            failed = h.kind_failures.get(kind, 0)
            base = {
                sc.ATTR_GRAPH: s.graph,
                sc.ATTR_SOURCE: h.source,
                sc.ATTR_TARGET: h.target,
                sc.ATTR_HANDOFF_KIND: kind,
            }
            yield count - failed, {**base, sc.ATTR_OUTCOME: "ok"}
            yield failed, {**base, sc.ATTR_OUTCOME: "error"}


def _routers(s: LedgerSnapshot) -> Iterable[tuple[int, dict[str, Any]]]:
    for name, r in s.routers.items():
        base = {sc.ATTR_GRAPH: s.graph, sc.ATTR_ROUTER: name, sc.ATTR_SOURCE: r.source}
        yield r.successes, {**base, sc.ATTR_OUTCOME: "ok"}
        yield r.failures, {**base, sc.ATTR_OUTCOME: "error"}


def _node_time(s: LedgerSnapshot) -> Iterable[tuple[float, dict[str, Any]]]:
    for name, n in s.nodes.items():
        yield n.duration_s, {sc.ATTR_GRAPH: s.graph, sc.ATTR_NODE: name}


def _router_choices(s: LedgerSnapshot) -> Iterable[tuple[int, dict[str, Any]]]:
    for name, r in s.routers.items():
        base = {sc.ATTR_GRAPH: s.graph, sc.ATTR_ROUTER: name, sc.ATTR_SOURCE: r.source}
        for target, count in r.targets.items():
            yield count, {**base, sc.ATTR_TARGET: target}


def _runs(s: LedgerSnapshot) -> Iterable[tuple[int, dict[str, Any]]]:
    base = {sc.ATTR_GRAPH: s.graph}
    yield s.runs.ok, {**base, sc.ATTR_OUTCOME: "ok"}
    yield s.runs.error, {**base, sc.ATTR_OUTCOME: "error"}
    yield s.runs.interrupted, {**base, sc.ATTR_OUTCOME: "interrupted"}


def _clean(s: LedgerSnapshot) -> Iterable[tuple[int, dict[str, Any]]]:
    yield s.runs.clean, {sc.ATTR_GRAPH: s.graph}


def _internal(s: LedgerSnapshot) -> Iterable[tuple[int, dict[str, Any]]]:
    yield s.internal_errors, {sc.ATTR_GRAPH: s.graph}


_COUNTERS = (
    (sc.METRIC_NODE_EXECUTIONS, _node_executions, "Node executions by outcome, after retries."),
    (sc.METRIC_NODE_ATTEMPTS, _node_attempts, "Node attempts by outcome; retries included."),
    (sc.METRIC_NODE_TIME, _node_time, "Seconds spent in node attempts."),
    (sc.METRIC_HANDOFF_TRANSFERS, _handoffs, "Handoffs by source, target, kind and outcome."),
    (sc.METRIC_ROUTER_DECISIONS, _routers, "Router decisions by outcome."),
    (sc.METRIC_ROUTER_CHOICES, _router_choices, "Targets chosen by routers, by target."),
    (sc.METRIC_RUN_COMPLETIONS, _runs, "Runs by outcome."),
    (sc.METRIC_RUN_CLEAN, _clean, "Finished runs in which no component failed."),
    (sc.METRIC_INTERNAL_ERRORS, _internal, "Errors inside coordgap, swallowed."),
)


def meter_of(meter_provider: Any) -> Any:
    """Return coordgap's meter on a provider (OpenTelemetry's global one when None)."""
    provider = meter_provider or metrics.get_meter_provider()
    return provider.get_meter(sc.SCOPE_NAME)


class ProviderInstruments:
    """coordgap's instruments on one meter provider, observing every ledger registered on it.

    An instrument exists once per name on a meter: the SDK keeps the first registration's
    callbacks, so every instrumented graph on a provider shares one set. A collection reads
    each ledger once (the first counter's callback takes the snapshots, the others reuse
    them), so the counters of one scrape are of one moment.
    """

    def __init__(self, meter: Any) -> None:
        self.durations = DeferredHistogram(_duration_histogram(meter))
        self._ledgers: weakref.WeakSet[Ledger] = weakref.WeakSet()
        self._snapshots: list[LedgerSnapshot] = []
        for i, (name, pick, description) in enumerate(_COUNTERS):
            callbacks = [self._observe(pick)]
            if i == 0:
                callbacks.insert(0, self._collect)
            unit = sc.UNIT_SECONDS if name == sc.METRIC_NODE_TIME else sc.UNIT_COUNT
            meter.create_observable_counter(
                name, callbacks=callbacks, unit=unit, description=description
            )

    def add(self, ledger: Ledger) -> None:
        self._ledgers.add(ledger)

    def _collect(self, options: CallbackOptions) -> Iterable[Observation]:
        self.durations.drain()
        self._snapshots = [ledger.snapshot() for ledger in list(self._ledgers)]
        return ()

    def _observe(
        self, pick: Callable[[LedgerSnapshot], Iterable[tuple[float, dict[str, Any]]]]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(v, a) for snap in self._snapshots for v, a in pick(snap)]

        return callback


_PROVIDERS: weakref.WeakKeyDictionary[Any, ProviderInstruments] = weakref.WeakKeyDictionary()
_PROVIDERS_LOCK = threading.Lock()


def register_metrics(
    meter_provider: Any, ledger: Ledger, durations: bool = False
) -> DeferredHistogram | None:
    """Observe ``ledger`` with coordgap's counters on the provider; return the duration
    histogram its node attempts are recorded in, when ``durations``, else None.

    The histogram is opt-in: recording a duration into the SDK costs several microseconds
    per node attempt at collection, more than the rest of coordgap's work on a task; the
    counter ``coordgap.node.time`` (always exported) gives the mean duration for free.

    The report gauges (``coordgap._gauges``) compute a report at each collection; they
    are registered beside these by ``instrument()``, not here: a sink does not reach up
    into the report.
    """
    provider = meter_provider or metrics.get_meter_provider()
    with _PROVIDERS_LOCK:
        instruments = _PROVIDERS.get(provider)
        if instruments is None:
            instruments = _PROVIDERS[provider] = ProviderInstruments(meter_of(provider))
    instruments.add(ledger)
    return instruments.durations if durations else None


_MAX_QUEUED = 4096
"""Durations queued per attribute set; beyond that they are recorded at once."""

_MAX_QUEUES = 1024
"""Attribute sets with a queue; beyond that durations are recorded at once."""


class DeferredHistogram:
    """The node-duration histogram, fed from per-attribute-set queues at collection time.

    ``record(seconds, attributes)`` keeps the duration in a queue keyed by the
    attributes object (the recorder passes one cached dict per node and
    outcome); ``drain()`` hands every queued duration to the SDK histogram.
    deque append and popleft are atomic, so recording takes no lock and a
    drain racing with records loses nothing.
    """

    __slots__ = ("_histogram", "_lock", "_queues")

    def __init__(self, histogram: Any) -> None:
        self._histogram = histogram
        self._queues: dict[int, tuple[Any, deque[Any]]] = {}
        self._lock = threading.Lock()

    def record(self, seconds: float, attributes: Any) -> None:
        """Queue one duration (or record it now; see the module docstring)."""
        entry = self._queues.get(id(attributes))
        if entry is None:
            with self._lock:
                entry = self._queues.get(id(attributes))
                if entry is None:
                    if len(self._queues) >= _MAX_QUEUES:
                        self._histogram.record(seconds, attributes)
                        return
                    # holding the dict keeps its id from being reused by another dict
                    entry = self._queues[id(attributes)] = (attributes, deque())
        queue = entry[1]
        if len(queue) >= _MAX_QUEUED:
            self._histogram.record(seconds, attributes)
            return
        ctx = otel_context.get_current()
        if ctx and trace.get_current_span(ctx).get_span_context().trace_flags.sampled:
            queue.append((seconds, ctx))  # the exemplar keeps pointing at this span
        else:
            queue.append(seconds)

    def record_batch(self, durations: list[tuple[dict[str, Any], float, Any]]) -> None:
        """Queue a run's node durations: (attributes, seconds, span or None) each.

        The probes collect a run's durations in a list and hand them over at its end
        (one call per run instead of one per node); with a live node span, the
        exemplar points at it, else at whatever span is current now.
        """
        current: Any = otel_context.get_current()
        if not (current and trace.get_current_span(current).get_span_context().trace_flags.sampled):
            current = None
        for attributes, seconds, span in durations:
            ctx = current
            if span is not None and span.get_span_context().trace_flags.sampled:
                ctx = trace.set_span_in_context(span)
            entry = self._queues.get(id(attributes))
            if entry is None or len(entry[1]) >= _MAX_QUEUED:
                self.record(seconds, attributes)
                continue
            entry[1].append(seconds if ctx is None else (seconds, ctx))

    def drain(self) -> None:
        """Record every queued duration into the SDK histogram."""
        record = self._histogram.record
        for attributes, queue in list(self._queues.values()):
            pop = queue.popleft
            while queue:
                try:
                    item = pop()
                except IndexError:
                    break
                if type(item) is tuple:
                    record(item[0], attributes, item[1])
                else:
                    record(item, attributes)

    def drain_callback(self, options: CallbackOptions) -> Iterable[Observation]:
        """Observable-instrument callback: runs before the SDK collects the histogram."""
        self.drain()
        return ()
