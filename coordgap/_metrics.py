"""Sink: OpenTelemetry metrics, read from the ledger when the SDK collects.

The hot path only tallies into the ledger; the counters here are
observable, so exporting costs nothing per event. The one synchronous
instrument is the node-duration histogram (a distribution cannot be
rebuilt from sums).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from . import semconv as sc
from .ledger import Ledger, LedgerSnapshot


def _observations(
    snapshot: Callable[[], LedgerSnapshot],
    pick: Callable[[LedgerSnapshot], Iterable[tuple[int, dict[str, Any]]]],
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        snap = snapshot()
        return [Observation(value, attrs) for value, attrs in pick(snap)]

    return callback


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


def _runs(s: LedgerSnapshot) -> Iterable[tuple[int, dict[str, Any]]]:
    base = {sc.ATTR_GRAPH: s.graph}
    yield s.runs.ok, {**base, sc.ATTR_OUTCOME: "ok"}
    yield s.runs.error, {**base, sc.ATTR_OUTCOME: "error"}
    yield s.runs.interrupted, {**base, sc.ATTR_OUTCOME: "interrupted"}


def _clean(s: LedgerSnapshot) -> Iterable[tuple[int, dict[str, Any]]]:
    yield s.runs.clean, {sc.ATTR_GRAPH: s.graph}


def _internal(s: LedgerSnapshot) -> Iterable[tuple[int, dict[str, Any]]]:
    yield s.internal_errors, {sc.ATTR_GRAPH: s.graph}


def register_metrics(meter_provider: Any, ledger: Ledger) -> Any:
    """Create coordgap's instruments on the provider; return the duration histogram."""
    provider = meter_provider or metrics.get_meter_provider()
    meter = provider.get_meter(sc.SCOPE_NAME)
    snap = ledger.snapshot
    counters = (
        (sc.METRIC_NODE_EXECUTIONS, _node_executions, "Node executions by outcome, after retries."),
        (sc.METRIC_NODE_ATTEMPTS, _node_attempts, "Node attempts by outcome; retries included."),
        (sc.METRIC_HANDOFF_TRANSFERS, _handoffs, "Handoffs by source, target, kind and outcome."),
        (sc.METRIC_ROUTER_DECISIONS, _routers, "Router decisions by outcome."),
        (sc.METRIC_RUN_COMPLETIONS, _runs, "Runs by outcome."),
        (sc.METRIC_RUN_CLEAN, _clean, "Finished runs in which no component failed."),
        (sc.METRIC_INTERNAL_ERRORS, _internal, "Errors inside coordgap, swallowed."),
    )
    for name, pick, description in counters:
        meter.create_observable_counter(
            name,
            callbacks=[_observations(snap, pick)],
            unit=sc.UNIT_COUNT,
            description=description,
        )
    try:
        from ._gauges import register_report_gauges
    except ImportError:
        pass
    else:
        register_report_gauges(meter, lambda: ledger)
    return meter.create_histogram(
        sc.METRIC_NODE_DURATION,
        unit=sc.UNIT_SECONDS,
        description="Duration of node attempts.",
    )
