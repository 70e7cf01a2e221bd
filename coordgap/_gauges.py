"""OpenTelemetry observable gauges over the report: reliability, end to end, the gap.

The report is computed lazily, at collection time, from a fresh ledger
snapshot: nothing runs on the hot path, and an exporter that never collects
costs nothing. A failure inside a callback is counted on the ledger as an
internal error and logged once; it never reaches the exporter or the graph.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from ._ledger import Ledger, LedgerSnapshot
from ._report import Report, report
from .semconv import (
    ATTR_COMPONENT,
    ATTR_ESTIMATE,
    ATTR_GRAPH,
    ATTR_NODE,
    ATTR_ROUTER,
    ATTR_SOURCE,
    ATTR_TARGET,
    METRIC_END_TO_END,
    METRIC_GAP,
    METRIC_RELIABILITY,
    SCOPE_NAME,
    UNIT_RATIO,
)

__all__ = ["observe_reports", "register_report_gauges"]

_log = logging.getLogger("coordgap")

LedgerSource = Ledger | LedgerSnapshot | Iterable[Ledger | LedgerSnapshot] | None


def register_report_gauges(
    meter: Meter, ledger_getter: Callable[[], LedgerSource]
) -> tuple[Any, Any, Any]:
    """Register the report gauges on ``meter``; return the three instruments.

    Args:
        meter: an OpenTelemetry meter (from the user's or the global provider).
        ledger_getter: called at every collection; returns the ledger (or a
            snapshot, or several, or None when the graph is gone).

    Gauges: ``coordgap.reliability`` per component (attributes
    ``coordgap.component`` = node | handoff | router and the component's
    names), ``coordgap.end_to_end`` (``coordgap.estimate`` = predicted |
    observed | naive), ``coordgap.gap``; all with ``coordgap.graph``.
    Components without data are not observed.

    Example::

        meter = meter_provider.get_meter("coordgap")
        instruments = register_report_gauges(meter, lambda: ledger)
    """
    warned: list[bool] = [False]
    computed: list[list[Report]] = [[]]

    def compute(_options: CallbackOptions) -> Iterable[Observation]:
        # the first gauge's callback: one report per ledger per collection, shared by all three
        computed[0] = reports()
        return ()

    def reports() -> list[Report]:
        try:
            got = ledger_getter()
        except Exception:  # the getter is ours or the caller's; never raise into the exporter
            _warn_once(warned, None)
            return []
        if got is None:
            return []
        sources = [got] if isinstance(got, Ledger | LedgerSnapshot) else list(got)
        out = []
        for src in sources:
            try:
                out.append(report(src))
            except Exception:
                _warn_once(warned, src if isinstance(src, Ledger) else None)
        return out

    def reliability(_options: CallbackOptions) -> Iterable[Observation]:
        obs = []
        for rep in computed[0]:
            for c in rep.components:
                if c.reliability.value is None:
                    continue
                attrs: dict[str, str] = {ATTR_GRAPH: rep.graph, ATTR_COMPONENT: c.kind}
                if c.kind == "node":
                    attrs[ATTR_NODE] = c.name
                elif c.kind == "handoff":
                    attrs[ATTR_SOURCE] = c.source or ""
                    attrs[ATTR_TARGET] = c.target or ""
                else:
                    attrs[ATTR_ROUTER] = c.name
                    attrs[ATTR_SOURCE] = c.source or ""
                obs.append(Observation(c.reliability.value, attrs))
        return obs

    def end_to_end(_options: CallbackOptions) -> Iterable[Observation]:
        obs = []
        for rep in computed[0]:
            e = rep.end_to_end
            for estimate, value in (
                ("predicted", e.predicted.value),
                ("observed", e.observed.value),
                ("naive", e.naive.value),
            ):
                if value is not None:
                    obs.append(Observation(value, {ATTR_GRAPH: rep.graph, ATTR_ESTIMATE: estimate}))
        return obs

    def gap(_options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(rep.gap, {ATTR_GRAPH: rep.graph})
            for rep in computed[0]
            if rep.gap is not None
        ]

    return (
        meter.create_observable_gauge(
            METRIC_RELIABILITY,
            callbacks=[compute, reliability],
            unit=UNIT_RATIO,
            description="Reliability per component (node, handoff, router): successes / total.",
        ),
        meter.create_observable_gauge(
            METRIC_END_TO_END,
            callbacks=[end_to_end],
            unit=UNIT_RATIO,
            description="End to end reliability: predicted (product over components), observed "
            "(clean runs / finished runs), naive (product over nodes only).",
        ),
        meter.create_observable_gauge(
            METRIC_GAP,
            callbacks=[gap],
            unit=UNIT_RATIO,
            description="The coordination gap: naive minus predicted end to end.",
        ),
    )


def _warn_once(warned: list[bool], ledger: Ledger | None) -> None:
    if ledger is not None:
        ledger.count_internal_error()
    if not warned[0]:
        warned[0] = True
        _log.warning("coordgap: computing the report gauges failed", exc_info=True)


_PROVIDERS: weakref.WeakKeyDictionary[Any, weakref.WeakSet[Ledger]] = weakref.WeakKeyDictionary()
_PROVIDERS_LOCK = threading.Lock()


def observe_reports(meter_provider: Any, ledger: Ledger) -> None:
    """Add ``ledger`` to the report gauges of the provider (registered on its first ledger).

    A gauge exists once per name on a meter (the SDK keeps the first registration's
    callbacks), so every instrumented graph on a provider shares one set of gauges.
    """
    from opentelemetry import metrics

    provider = meter_provider or metrics.get_meter_provider()
    with _PROVIDERS_LOCK:
        ledgers = _PROVIDERS.get(provider)
        if ledgers is None:
            ledgers = _PROVIDERS[provider] = weakref.WeakSet()
            register_report_gauges(provider.get_meter(SCOPE_NAME), lambda: list(ledgers))
        ledgers.add(ledger)
