"""Reliability in unit tests: threshold assertions with confidence, baselines, captured events
and telemetry.

Plain functions, usable with or without the pytest plugin::

    import coordgap
    from coordgap.testing import assert_reliability, assert_no_regression, capture_events

    def test_agent_is_reliable_enough():
        app = coordgap.instrument(build_graph())
        for question in QUESTIONS:
            app.invoke({"question": question})
        assert_reliability(app, end_to_end=0.90, handoffs=0.97, confidence=0.95)

A threshold passes only when the *lower bound* of the Wilson interval clears
it, fails when the upper bound is below it, and otherwise fails as
*undecided*, saying about how many more runs would decide it.
:func:`capture_telemetry` (the plugin's ``coordgap_otel`` fixture) gives
in-memory span and metric providers with counted ids and a stepping clock, so
a test can assert coordgap's exact spans. See ``docs/testing.md``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias, TypedDict, TypeVar, overload

from ._checks import checked_probability
from ._ledger import HasLedger, Ledger, LedgerSnapshot, merge_snapshots
from ._paths import (
    EventLog,
    GraphTrajectory,
    RunPath,
    Visit,
    assert_path,
    assert_visits,
    graph_trajectory,
)
from .errors import ConfigurationError, ReliabilityError
from .events import Event

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        ExponentialHistogramDataPoint,
        HistogramDataPoint,
        InMemoryMetricReader,
        NumberDataPoint,
    )
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    from ._instrument import InstrumentedGraph
    from ._report import Comparison, Report

__all__ = [
    "Baselines",
    "CapturedSpan",
    "EventLog",
    "GraphTrajectory",
    "HasLedger",
    "LedgerScope",
    "MetricPoint",
    "ReliabilitySource",
    "RunPath",
    "StepClock",
    "TelemetryCapture",
    "ThresholdCheck",
    "Visit",
    "assert_no_regression",
    "assert_path",
    "assert_reliability",
    "assert_visits",
    "capture_events",
    "capture_telemetry",
    "checked_probability",
    "graph_trajectory",
    "load_baseline",
    "merge_snapshots",
    "write_baseline",
]

BASELINES_SCHEMA = "coordgap.baselines/1"
"""Schema tag of a baseline file holding reports of several graphs (one per graph name)."""

Verdict = Literal["pass", "fail", "undecided"]


ReliabilitySource: TypeAlias = "Report | Ledger | LedgerSnapshot | HasLedger"
"""What the assertions read: a report, a ledger, a snapshot, an instrumented graph or a scope."""

_Graph = TypeVar("_Graph", bound="InstrumentedGraph")


# -- capturing events and graphs ---------------------------------------------------------------


@contextmanager
def capture_events() -> Iterator[EventLog]:
    """Yield a list that receives every event of the graphs instrumented inside the block.

    Events arrive in the order they are emitted (from any thread); after the
    block ends, the list stops growing. ``events.runs`` is the path of each run
    (:class:`RunPath`: its nodes and handoffs in order), for :func:`assert_path`,
    :func:`assert_visits` and :func:`graph_trajectory`.

    Example::

        with capture_events() as events:
            app = coordgap.instrument(builder)
            app.invoke({"x": 1})
        assert [type(e).__name__ for e in events][-1] == "RunOutcome"
        events.runs[-1].route()   # ('retrieve', 'analyze', '__end__')
    """
    from ._instrument import add_observer

    events = EventLog()
    active = True

    def sink(event: Event) -> None:
        if active:
            events.append(event)  # list.append is atomic: no lock needed between threads

    remove = add_observer(lambda app: (sink,))
    try:
        yield events
    finally:
        remove()
        active = False


class LedgerScope:
    """The graphs instrumented while the scope is open, and their ledgers.

    Every instrumented graph has its own :class:`~coordgap.Ledger`; a scope
    gathers those of the graphs built during one test (the pytest fixture
    ``coordgap_ledger`` is one), so a test can assert on "whatever it
    instrumented" and tests never see each other's counts. A graph
    instrumented elsewhere (a module-level fixture) joins with :meth:`track`,
    which also zeroes its ledger so the test sees only its own runs.

    With exactly one graph, the scope stands for it: ``coordgap.report(scope)``,
    ``scope.snapshot()`` and ``assert_reliability(scope, ...)`` work directly;
    with several, pick one by name (``scope.ledger("research")``).

    Example::

        with LedgerScope() as scope:
            app = coordgap.instrument(builder)
            app.invoke({...})
        scope.snapshot().runs.runs
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._graphs: list[InstrumentedGraph] = []
        self._ledgers: list[Ledger] = []
        self._remove: Callable[[], None] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> LedgerScope:
        """Start gathering graphs instrumented from now on (idempotent)."""
        if self._remove is None:
            from ._instrument import add_observer

            self._remove = add_observer(self._seen)
        return self

    def stop(self) -> None:
        """Stop gathering; the graphs gathered so far stay."""
        if self._remove is not None:
            self._remove()
            self._remove = None

    def __enter__(self) -> LedgerScope:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _seen(self, app: InstrumentedGraph) -> None:
        ledger = app.coordgap_ledger
        if ledger is not None:
            self._add(app, ledger)

    def _add(self, app: InstrumentedGraph, ledger: Ledger) -> None:
        with self._lock:
            if all(known is not ledger for known in self._ledgers):
                self._graphs.append(app)
                self._ledgers.append(ledger)

    def track(self, app: _Graph, *, reset: bool = True) -> _Graph:
        """Add a graph instrumented outside the scope; zero its ledger unless ``reset=False``.

        Returns ``app``, so ``app = coordgap_ledger.track(shared_app)`` reads well.
        """
        from ._instrument import ledger as ledger_of

        found = ledger_of(app)
        if reset:
            found.reset()
        self._add(app, found)
        return app

    # -- what was gathered --------------------------------------------------------------------

    @property
    def graphs(self) -> tuple[InstrumentedGraph, ...]:
        """The instrumented graphs gathered, in the order they were built."""
        with self._lock:
            return tuple(self._graphs)

    @property
    def ledgers(self) -> tuple[Ledger, ...]:
        """Their ledgers, in the same order."""
        with self._lock:
            return tuple(self._ledgers)

    def __len__(self) -> int:
        return len(self.ledgers)

    def ledger(self, graph: str | None = None) -> Ledger:
        """Return the ledger of the only graph, or of the graph named ``graph``.

        Raises:
            ConfigurationError: no graph, several graphs and no name, or no
                graph of that name.
        """
        ledgers = self.ledgers
        if graph is not None:
            named = [led for led in ledgers if led.graph == graph]
            if len(named) == 1:
                return named[0]
            if not named:
                raise ConfigurationError(
                    f"no graph named {graph!r} was instrumented in this scope; "
                    f"the scope has: {', '.join(repr(led.graph) for led in ledgers) or 'none'}."
                )
            raise ConfigurationError(
                f"{len(named)} graphs named {graph!r} were instrumented in this scope; give "
                "them distinct names with coordgap.instrument(..., name=...)."
            )
        if len(ledgers) == 1:
            return ledgers[0]
        if not ledgers:
            raise ConfigurationError(
                "no graph was instrumented in this scope: call coordgap.instrument(...) inside "
                "the test (or its fixtures), or add one with scope.track(app)."
            )
        raise ConfigurationError(
            f"{len(ledgers)} graphs were instrumented in this scope "
            f"({', '.join(repr(led.graph) for led in ledgers)}); name the one you mean."
        )

    @property
    def coordgap_ledger(self) -> Ledger:
        """The only graph's ledger (lets ``coordgap.report(scope)`` work)."""
        return self.ledger()

    def snapshot(self, graph: str | None = None) -> LedgerSnapshot:
        """Return the snapshot of the only graph's ledger (or the one named ``graph``)."""
        return self.ledger(graph).snapshot()

    def report(self, graph: str | None = None, *, confidence: float = 0.95) -> Report:
        """Return the report of the only graph (or the one named ``graph``)."""
        from ._report import report

        return report(self.ledger(graph), confidence=confidence)

    def reset(self) -> None:
        """Zero every gathered ledger."""
        for led in self.ledgers:
            led.reset()

    def __repr__(self) -> str:
        names = ", ".join(repr(led.graph) for led in self.ledgers)
        return f"<coordgap LedgerScope graphs=[{names}]>"


# -- capturing telemetry: in-memory providers, counted ids, a stepping clock ------------------


class StepClock:
    """A clock that moves ``step_ns`` forward each time it is read: reading k is ``start_ns + k·step_ns``.

    Callable like ``time.time_ns`` (thread-safe); :func:`capture_telemetry` puts
    coordgap on one, so every recorded time (span starts and ends, durations) is
    known in advance. With the defaults the readings are 1 s, 2 s, 3 s, ... after the
    epoch, in nanoseconds.

    Example::

        clock = StepClock(step_ns=1_000)
        clock(), clock()   # (1000, 2000)
    """

    def __init__(self, *, start_ns: int = 0, step_ns: int = 1_000_000_000) -> None:
        if step_ns <= 0:
            raise ConfigurationError(f"step_ns={step_ns!r}: a clock must move forward.")
        self.start_ns = start_ns
        self.step_ns = step_ns
        self._readings = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            self._readings += 1
            return self.start_ns + self._readings * self.step_ns

    @property
    def readings(self) -> int:
        """How many times the clock was read."""
        return self._readings


@functools.cache
def _counting_ids_class() -> type[IdGenerator]:
    """Return the SDK id generator whose ids count up (built on first use: the SDK loads late)."""
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class CountingIds(IdGenerator):
        """Trace ids 1, 2, 3, ... and span ids 1, 2, 3, ..., each on a counter of its own."""

        def __init__(self) -> None:
            self._lock = threading.Lock()
            self._trace_id = 0
            self._span_id = 0

        def generate_span_id(self) -> int:
            with self._lock:
                self._span_id += 1
                return self._span_id

        def generate_trace_id(self) -> int:
            with self._lock:
                self._trace_id += 1
                return self._trace_id

    return CountingIds


class _CapturedSpanFields(TypedDict):
    name: str
    trace_id: int
    span_id: int
    parent: int | None
    start_time: int
    end_time: int
    attributes: dict[str, object]
    status: str
    status_description: str | None


class CapturedSpan(_CapturedSpanFields, total=False):
    """A finished span as plain data (:meth:`TelemetryCapture.spans`).

    ``parent`` is the parent's span id (None for a root); times are in nanoseconds;
    ``status`` is ``"UNSET"``, ``"OK"`` or ``"ERROR"``; attribute sequences are lists.
    ``events`` (name, timestamp, attributes) appears only on spans that have some.
    """

    events: list[dict[str, object]]


class _MetricPointFields(TypedDict):
    name: str
    unit: str
    attributes: dict[str, object]


class MetricPoint(_MetricPointFields, total=False):
    """One collected data point as plain data (:meth:`TelemetryCapture.metrics`).

    A counter's or gauge's point has ``value``; a histogram's has ``count``, ``sum``,
    ``min``, ``max``, ``bucket_counts`` and ``explicit_bounds``.
    """

    value: int | float
    count: int
    sum: float
    min: float
    max: float
    bucket_counts: list[int]
    explicit_bounds: list[float]


class TelemetryCapture:
    """In-memory span and metric providers with counted ids, and the clock coordgap is on.

    Pass the providers to :func:`coordgap.instrument`; read back what was exported
    with :meth:`spans` and :meth:`metrics`. Built by :func:`capture_telemetry` (the
    pytest fixture ``coordgap_otel`` is one per test).

    Attributes:
        tracer_provider: an SDK ``TracerProvider`` exporting every span, when it ends,
            to ``exporter`` (``SimpleSpanProcessor``); its trace ids and span ids
            count up from 1, each on a counter of its own.
        meter_provider: an SDK ``MeterProvider`` read by ``reader``.
        exporter: the ``InMemorySpanExporter``.
        reader: the ``InMemoryMetricReader``.
        clock: the :class:`StepClock` coordgap reads every time from.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider,
        meter_provider: MeterProvider,
        exporter: InMemorySpanExporter,
        reader: InMemoryMetricReader,
        clock: StepClock,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.exporter = exporter
        self.reader = reader
        self.clock = clock

    def finished_spans(self) -> tuple[ReadableSpan, ...]:
        """Return the SDK's finished spans, in the order they ended."""
        return tuple(self.exporter.get_finished_spans())

    def spans(self) -> list[CapturedSpan]:
        """Return the finished spans as plain data, in the order they ended.

        Example::

            [(s["name"], s["span_id"], s["parent"]) for s in coordgap_otel.spans()]
            # [("coordgap.handoff", 2, 1), ("coordgap.run", 1, None)]
        """
        return [_span_data(span) for span in self.finished_spans()]

    def metrics(self) -> list[MetricPoint]:
        """Collect now; return every data point as plain data, metric by metric.

        Example::

            {(p["name"], p["attributes"].get("coordgap.node")): p.get("value")
             for p in coordgap_otel.metrics()}
        """
        data = self.reader.get_metrics_data()
        points: list[MetricPoint] = []
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        points.append(_point_data(metric.name, metric.unit or "", point))
        return points

    def clear(self) -> None:
        """Forget the spans exported so far (metrics are cumulative: they stay)."""
        self.exporter.clear()


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def _span_data(span: ReadableSpan) -> CapturedSpan:
    context = span.context
    out: CapturedSpan = {
        "name": span.name,
        "trace_id": context.trace_id if context is not None else 0,
        "span_id": context.span_id if context is not None else 0,
        "parent": span.parent.span_id if span.parent is not None else None,
        "start_time": span.start_time or 0,
        "end_time": span.end_time or 0,
        "attributes": {k: _plain(v) for k, v in (span.attributes or {}).items()},
        "status": span.status.status_code.name,
        "status_description": span.status.description,
    }
    if span.events:
        out["events"] = [
            {
                "name": event.name,
                "timestamp": event.timestamp,
                "attributes": {k: _plain(v) for k, v in (event.attributes or {}).items()},
            }
            for event in span.events
        ]
    return out


def _point_data(
    name: str,
    unit: str,
    point: NumberDataPoint | HistogramDataPoint | ExponentialHistogramDataPoint,
) -> MetricPoint:
    from opentelemetry.sdk.metrics.export import HistogramDataPoint, NumberDataPoint

    out: MetricPoint = {
        "name": name,
        "unit": unit,
        "attributes": {k: _plain(v) for k, v in (point.attributes or {}).items()},
    }
    if isinstance(point, NumberDataPoint):
        out["value"] = point.value
        return out
    out["count"], out["sum"] = point.count, point.sum
    out["min"], out["max"] = point.min, point.max
    if isinstance(point, HistogramDataPoint):
        out["bucket_counts"] = list(point.bucket_counts)
        out["explicit_bounds"] = list(point.explicit_bounds)
    return out


@contextmanager
def capture_telemetry(*, clock: StepClock | None = None) -> Iterator[TelemetryCapture]:
    """Yield in-memory span and metric providers, with coordgap on a stepping clock inside.

    For the block's duration, every time coordgap records (span starts and ends,
    durations) is a reading of ``clock`` (default :class:`StepClock`: 1 s, 2 s, ...),
    and span and trace ids count up from 1; the providers are shut down at its end.
    Spans of your own code on these providers keep the SDK's clock. The pytest
    fixture ``coordgap_otel`` is this, one per test.

    Example::

        with capture_telemetry() as otel:
            app = coordgap.instrument(builder, spans="all",
                                      tracer_provider=otel.tracer_provider,
                                      meter_provider=otel.meter_provider)
            app.invoke({"x": 1})
            [s["name"] for s in otel.spans()]
    """
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from . import _clock

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(id_generator=_counting_ids_class()())
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    ticking = clock if clock is not None else StepClock()
    capture = TelemetryCapture(tracer_provider, meter_provider, exporter, reader, ticking)
    try:
        with _clock.use(ticking):
            yield capture
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()


# -- thresholds ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ThresholdCheck:
    """One threshold checked against one component (or the end to end) of one graph.

    ``verdict`` is ``pass`` (lower bound >= threshold), ``fail`` (upper bound
    < threshold) or ``undecided``; ``more_runs`` estimates how many more runs
    would decide an undecided one (None when more runs cannot help).
    """

    graph: str
    kind: str
    component: str
    threshold: float
    successes: int
    n: int
    low: float
    high: float
    confidence: float
    verdict: Verdict
    more_runs: int | None = None

    @property
    def value(self) -> float | None:
        """The observed reliability (None without data)."""
        return self.successes / self.n if self.n else None

    @property
    def passed(self) -> bool:
        """True when the threshold is cleared at the stated confidence."""
        return self.verdict == "pass"

    def explain(self) -> str:
        """Return one line saying what was measured and why it did not pass."""
        pct = _pct(self.confidence)
        what = f"{self.kind} {self.component}"
        if self.n == 0:
            return f"{what}: no executions recorded (threshold {self.threshold:g})"
        from .render import fmt

        figures = (
            f"{fmt(self.value)} [{fmt(self.low)}, {fmt(self.high)}] ({self.successes}/{self.n})"
        )
        if self.verdict == "pass":
            return f"{what}: {figures}, lower bound {fmt(self.low)} >= {self.threshold:g}"
        if self.verdict == "fail":
            return (
                f"{what}: {figures} is below {self.threshold:g} at {pct} "
                f"(upper bound {fmt(self.high)} < {self.threshold:g})"
            )
        if self.more_runs is None:
            return (
                f"{what}: {figures} cannot be told apart from {self.threshold:g}: the observed "
                "rate equals the threshold"
            )
        return (
            f"{what}: {figures} straddles {self.threshold:g}: need about "
            f"{_more_runs(self.more_runs)} to decide at {pct}"
        )


def _more_runs(n: int) -> str:
    return "1 more run" if n == 1 else f"{n} more runs"


def _pct(confidence: float) -> str:
    return f"{100 * confidence:g} %"


def _more_needed(successes: int, n: int, threshold: float, confidence: float) -> int | None:
    """Return how many more observations, at the observed rate, would decide the threshold."""
    from ._stats import wilson_interval

    if n <= 0:
        return None
    p = successes / n
    if p == threshold:
        return None
    above = p > threshold

    def decided(m: int) -> bool:
        # p·m successes, not rounded to a count: rounding moves the bounds by about 1/m
        # from one m to the next, more than they move, and the search lands tens of runs off
        low, high = wilson_interval(p * m, m, confidence)
        return low >= threshold if above else high < threshold

    hi = max(n, 1)
    while not decided(hi):
        hi *= 2
        if hi > 10**12:
            return None
    lo = n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if decided(mid):
            hi = mid
        else:
            lo = mid
    return max(1, hi - n)


def _threshold(value: float | None, what: str) -> float | None:
    return None if value is None else checked_probability(value, what)


def _reports_of(source: ReliabilitySource, confidence: float) -> list[Report]:
    from ._report import Report, report

    if isinstance(source, Report):
        return [source]
    if isinstance(source, LedgerScope):
        ledgers = source.ledgers
        if not ledgers:
            source.ledger()  # raises the "no graph" message
        return [report(led, confidence=confidence) for led in ledgers]
    return [report(source, confidence=confidence)]


def _check(
    graph: str,
    kind: str,
    name: str,
    successes: int,
    n: int,
    threshold: float,
    confidence: float,
    per_run: float,
) -> ThresholdCheck:
    from ._stats import wilson_interval

    low, high = wilson_interval(successes, n, confidence)
    more = None
    if low >= threshold and n > 0:
        verdict: Verdict = "pass"
    elif high < threshold:
        verdict = "fail"
    else:
        verdict = "undecided"
        extra = _more_needed(successes, n, threshold, confidence)
        if extra is not None:
            more = max(1, math.ceil(extra / per_run)) if per_run > 0 else extra
    return ThresholdCheck(
        graph, kind, name, threshold, successes, n, low, high, confidence, verdict, more
    )


def _checks_for(
    rep: Report,
    *,
    end_to_end: float | None,
    nodes: float | None,
    handoffs: float | None,
    routers: float | None,
    per: Mapping[str | tuple[str, str], float],
    confidence: float,
) -> list[ThresholdCheck]:
    e2e = rep.end_to_end
    runs = e2e.finished or e2e.runs
    out: list[ThresholdCheck] = []
    if end_to_end is not None:
        out.append(
            _check(rep.graph, "end to end", "observed", e2e.clean, e2e.finished,
                   end_to_end, confidence, 1.0)
        )  # fmt: skip
    from .topology import handoff_pair

    named: dict[tuple[str, str | tuple[str, str]], float] = {}
    for key, value in per.items():
        pair = handoff_pair(key, stacklevel=5) if isinstance(key, str) else None
        if pair is not None:
            key = pair  # "source -> target", the name the report prints
        if isinstance(key, tuple):
            if key not in rep.handoffs:
                _unknown(key, [f"{s} -> {t}" for s, t in rep.handoffs], "handoff", rep.graph)
            named[("handoff", key)] = value
        elif key in rep.nodes:
            named[("node", key)] = value
        elif key in rep.routers:
            named[("router", key)] = value
        else:
            _unknown(key, [*rep.nodes, *rep.routers], "node or router", rep.graph)
    for kind, table, default in (
        ("node", rep.nodes, nodes),
        ("handoff", rep.handoffs, handoffs),
        ("router", rep.routers, routers),
    ):
        for key, comp in table.items():
            threshold = named.get((kind, key), default)
            if threshold is None:
                continue
            if comp.executions <= 0 and (kind, key) not in named:
                continue  # never reached in these runs: nothing to judge
            per_run = comp.executions / runs if runs else 0.0
            out.append(
                _check(rep.graph, kind, comp.label, comp.executions - comp.failures,
                       comp.executions, threshold, confidence, per_run)
            )  # fmt: skip
    return out


def _unknown(key: object, known: Sequence[str], what: str, graph: str) -> None:
    import difflib

    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigurationError(
        f"per={{{key!r}: ...}}: graph {graph!r} has no {what} {key!r}.{hint} "
        "Name nodes and routers with a string, handoffs 'source -> target' or (source, target)."
    )


def _table(checks: Sequence[ThresholdCheck]) -> list[str]:
    from .render import fmt, text_table

    pct = _pct(checks[0].confidence) if checks else "95 %"
    header = ["", "kind", "component", "n", "failed", "reliability", f"{pct} interval",
              "threshold", "verdict"]  # fmt: skip
    rows = []
    for c in checks:
        verdict = {"pass": "ok", "fail": "FAIL", "undecided": "UNDECIDED"}[c.verdict]
        if c.verdict == "undecided" and c.more_runs is not None:
            verdict += f" (+{c.more_runs} runs)"
        rows.append(["" if c.passed else ">>", c.kind, c.component, str(c.n),
                     str(c.n - c.successes), fmt(c.value), f"[{fmt(c.low)}, {fmt(c.high)}]",
                     f">= {c.threshold:g}", verdict])  # fmt: skip
    right = [False, False, False, True, True, True, False, False, False]
    return text_table(header, rows, right)


def _failure_message(
    checks: Sequence[ThresholdCheck],
    reports: Sequence[Report],
    confidence: float,
    problems: Sequence[str],
) -> str:
    failed = [c for c in checks if c.verdict == "fail"]
    undecided = [c for c in checks if c.verdict == "undecided"]
    pct = _pct(confidence)
    graphs = ", ".join(repr(r.graph) for r in reports)
    runs = ", ".join(str(r.end_to_end.finished) for r in reports)
    if failed:
        head = f"coordgap: reliability below threshold at {pct} confidence (graph {graphs})"
    elif problems:
        head = f"coordgap: not enough runs to decide at {pct} (graph {graphs})"
    else:
        need = max((c.more_runs or 0) for c in undecided)
        head = (
            f"coordgap: not enough runs to decide at {pct} (graph {graphs}, {runs} finished "
            f"runs): need about {_more_runs(need)} to decide at {pct}"
            if need
            else f"coordgap: cannot decide at {pct} (graph {graphs})"
        )
    lines = [head, ""]
    lines += [f"  {p}" for p in problems]
    if problems:
        lines.append("")
    if checks:
        lines += _table(checks)
        lines.append("")
    lines += [f"failed: {c.explain()}" for c in failed]
    lines += [f"undecided: {c.explain()}" for c in undecided]
    lines += _where_it_goes(checks, reports)
    return "\n".join(lines).rstrip()


def _weakest_of(
    checks: Sequence[ThresholdCheck], reports: Sequence[Report]
) -> list[tuple[str, float]]:
    """The components that cost the most, for graphs whose end-to-end gate did not pass."""
    missed = {c.graph for c in checks if c.kind == "end to end" and not c.passed}
    out: list[tuple[str, float]] = []
    for rep in reports:
        if rep.graph in missed:
            prefix = f"{rep.graph}: " if len(reports) > 1 else ""
            out += [(prefix + c.label, c.gain) for c in rep.weakest[:3]]
    return out


def _where_it_goes(checks: Sequence[ThresholdCheck], reports: Sequence[Report]) -> list[str]:
    """Lines saying where an end to end that missed its gate is lost."""
    from .render import fmt_signed

    missed = {c.graph for c in checks if c.kind == "end to end" and not c.passed}
    lines: list[str] = []
    for rep in reports:
        if rep.graph not in missed:
            continue
        name = f" of {rep.graph!r}" if len(reports) > 1 else ""
        if rep.weakest:
            links = ", ".join(f"{c.label} ({fmt_signed(c.gain)})" for c in rep.weakest[:3])
            lines.append(f"where the end to end{name} is lost (predicted gain if perfect): {links}")
        lines += [f"finding: {f}" for f in rep.findings]
    return ["", *lines] if lines else []


def assert_reliability(
    source: ReliabilitySource,
    *,
    end_to_end: float | None = None,
    nodes: float | None = None,
    handoffs: float | None = None,
    routers: float | None = None,
    per: Mapping[str | tuple[str, str], float] | None = None,
    confidence: float = 0.95,
    min_runs: int | None = None,
) -> tuple[ThresholdCheck, ...]:
    """Return the checks made; raise ReliabilityError unless every threshold is cleared.

    A threshold is cleared when the lower bound of the reliability's Wilson
    interval at ``confidence`` is at or above it. When the upper bound is
    below it, the component fails; in between, the check is *undecided* and
    fails too, saying about how many more runs (at the observed rate) would
    decide it.

    Args:
        source: an instrumented graph, a Ledger, a LedgerSnapshot, a Report,
            or a :class:`LedgerScope` (every graph in it is checked).
        end_to_end: threshold on observed end to end reliability (clean runs
            / finished runs).
        nodes: threshold for every node that ran.
        handoffs: threshold for every handoff that happened.
        routers: threshold for every router that decided.
        per: thresholds for single components, overriding the above: a node
            or router by name, a handoff by ``"source -> target"`` (the name the
            report prints) or ``(source, target)``.
        confidence: the level of every interval (0.95: 95 %).
        min_runs: fail unless at least this many runs finished.

    Raises:
        ReliabilityError: a threshold is not cleared (its message is the table
            of checked components, the offending ones marked ``>>``, and, when the
            end to end missed, the weakest links with their gains); its ``checks``
            attribute holds every :class:`ThresholdCheck`, ``weakest`` the
            ``(component, gain)`` pairs.
        ConfigurationError: a threshold outside [0, 1], a bad confidence, or
            an unknown component in ``per``.

    Example::

        coordgap.assert_reliability(app, end_to_end=0.90, handoffs=0.97, confidence=0.95)
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not ours
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, (int, float))
        or not (0.0 < confidence < 1.0)
    ):
        raise ConfigurationError(
            f"confidence={confidence!r}: use a level strictly between 0 and 1, e.g. 0.95."
        )
    thresholds = {
        "end_to_end": _threshold(end_to_end, "end_to_end"),
        "nodes": _threshold(nodes, "nodes"),
        "handoffs": _threshold(handoffs, "handoffs"),
        "routers": _threshold(routers, "routers"),
    }
    per_checked: dict[str | tuple[str, str], float] = {}
    for key, value in (per or {}).items():
        if value is None:
            raise ConfigurationError(f"per[{key!r}]=None: give the component a threshold.")
        per_checked[key] = checked_probability(value, f"per[{key!r}]")
    if min_runs is not None and (
        isinstance(min_runs, bool) or not isinstance(min_runs, int) or min_runs < 0
    ):
        raise ConfigurationError(f"min_runs={min_runs!r}: pass a non-negative int.")
    if all(v is None for v in thresholds.values()) and not per_checked and min_runs is None:
        raise ConfigurationError(
            "assert_reliability() was given no threshold: pass end_to_end=, nodes=, "
            "handoffs=, routers=, per= or min_runs=."
        )

    reports = _reports_of(source, confidence)
    checks: list[ThresholdCheck] = []
    problems: list[str] = []
    for rep in reports:
        if rep.basis != "ledger":
            raise ConfigurationError(
                f"the report of {rep.graph!r} is an audit (assumed reliabilities, no counts); "
                "assert_reliability() needs measured runs."
            )
        finished = rep.end_to_end.finished
        if min_runs is not None and finished < min_runs:
            problems.append(
                f"graph {rep.graph!r}: only {finished} finished runs, min_runs={min_runs} asks "
                f"for at least {min_runs} (need {min_runs - finished} more runs)"
            )
        elif finished == 0:
            problems.append(
                f"graph {rep.graph!r}: no finished runs recorded, nothing to decide on "
                "(was the graph invoked after coordgap.instrument()?)"
            )
        checks += _checks_for(
            rep,
            end_to_end=thresholds["end_to_end"],
            nodes=thresholds["nodes"],
            handoffs=thresholds["handoffs"],
            routers=thresholds["routers"],
            per=per_checked,
            confidence=confidence,
        )
    if problems or any(not c.passed for c in checks):
        raise ReliabilityError(
            _failure_message(checks, reports, confidence, problems),
            checks=checks,
            problems=problems,
            weakest=_weakest_of(checks, reports),
        )
    return tuple(checks)


# -- baselines -----------------------------------------------------------------------------------


def load_baseline(path: str | os.PathLike[str], graph: str | None = None) -> Report:
    """Return the report saved at ``path`` (for ``graph`` when the file holds several).

    Raises:
        ConfigurationError: the file is missing, is not a coordgap report, or
            holds no report for ``graph``.
    """
    from ._report import Report

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(
            f"no baseline at {str(p)!r}: write one with `pytest --coordgap-save-baseline "
            f"{p}`, with assert_no_regression(..., update=True) (the coordgap_baselines "
            "fixture does under --coordgap-save-baseline), or save "
            "coordgap.report(app).to_json() there."
        ) from None
    data = _baseline_reports(text)
    if data is not None:
        if graph is None and len(data) == 1:
            graph = next(iter(data))
        if graph not in data:
            raise ConfigurationError(
                f"baseline {str(p)!r} holds reports for {', '.join(map(repr, data))}, "
                f"none for graph {graph!r}."
            )
        return Report.from_json(json.dumps(data[graph]))
    return Report.from_json(text)


def _baseline_reports(text: str) -> dict[str, object] | None:
    """Return the reports of a several-graph baseline file by graph, None for another file."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict) and data.get("schema") == BASELINES_SCHEMA:
        reports = data.get("reports")
        return dict(reports) if isinstance(reports, dict) else {}
    return None


def write_baseline(path: str | os.PathLike[str], reports: Sequence[Report]) -> None:
    """Write reports as a baseline: one report as is, several keyed by graph name."""
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    if len(reports) == 1:
        p.write_text(reports[0].to_json() + "\n", encoding="utf-8")
        return
    data = {"schema": BASELINES_SCHEMA, "reports": {r.graph: r.to_dict() for r in reports}}
    p.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _update_baseline(path: str | os.PathLike[str], rep: Report) -> None:
    """Write ``rep`` as the baseline of its graph at ``path``, keeping other graphs' reports."""
    from ._report import Report

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        write_baseline(p, [rep])
        return
    others = _baseline_reports(text)
    if others is None:
        try:
            others = {Report.from_json(text).graph: json.loads(text)}
        except (ValueError, ConfigurationError):
            others = {}  # not a report: replaced
    others.pop(rep.graph, None)
    if not others:
        write_baseline(p, [rep])
        return
    data = {"schema": BASELINES_SCHEMA, "reports": {**others, rep.graph: rep.to_dict()}}
    p.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


@overload
def assert_no_regression(
    source: ReliabilitySource,
    baseline: str | os.PathLike[str] | Report,
    *,
    confidence: float | None = None,
    update: Literal[False] = False,
) -> Comparison: ...


@overload
def assert_no_regression(
    source: ReliabilitySource,
    baseline: str | os.PathLike[str] | Report,
    *,
    confidence: float | None = None,
    update: bool,
) -> Comparison | None: ...


def assert_no_regression(
    source: ReliabilitySource,
    baseline: str | os.PathLike[str] | Report,
    *,
    confidence: float | None = None,
    update: bool = False,
) -> Comparison | None:
    """Return the comparison with a saved report; raise ReliabilityError on a significant drop.

    A drop is significant when the interval of the difference (Newcombe's
    method, at the baseline's confidence unless ``confidence`` is given) lies
    entirely below zero, for any component or for the observed end to end.

    With ``update=True`` nothing is compared: the current report is written to the
    file ``baseline`` (beside the reports of other graphs it holds) and None is
    returned. The pytest fixture ``coordgap_baselines`` passes ``update=True`` under
    ``pytest --coordgap-save-baseline``; a plain call always compares.

    Raises:
        ReliabilityError: a significant drop; ``comparison`` holds the comparison.
        ConfigurationError: no baseline file (the message says how to write one), or
            ``update=True`` with a Report as ``baseline`` (there is no file to write).

    Example::

        coordgap.assert_no_regression(app, baseline="tests/reliability-baseline.json")
    """
    __tracebackhide__ = True
    from ._report import Report, report
    from .render import fmt

    def current_report(level: float) -> Report:
        if isinstance(source, Report):
            return source
        target = source.ledger() if isinstance(source, LedgerScope) else source
        return report(target, confidence=level)

    if update:
        if isinstance(baseline, Report):
            raise ConfigurationError(
                "assert_no_regression(..., update=True) writes the baseline file: pass its "
                "path, not a Report."
            )
        _update_baseline(baseline, current_report(confidence or 0.95))
        return None
    if isinstance(baseline, Report):
        base = baseline
    else:
        if isinstance(source, Report):
            graph = source.graph
        elif isinstance(source, LedgerScope):
            graph = source.ledger().graph
        else:
            graph = report(source).graph
        base = load_baseline(baseline, graph)
    level = confidence if confidence is not None else base.confidence
    current = current_report(level)
    cmp = current.compare(base)
    if cmp.regressed:
        lines = [
            f"coordgap: reliability regressed against the baseline ({len(cmp.regressions)} "
            f"significant drop(s) at {_pct(level)}; graph {current.graph!r})",
            "",
            str(cmp),
            "",
        ]
        for c in cmp.regressions:
            diff = (
                ""
                if c.difference is None
                else (f", difference [{c.difference[0]:+.3f}, {c.difference[1]:+.3f}] below 0")
            )
            old, new = fmt(c.old.value), fmt(c.new.value)
            lines.append(f"regressed: {c.kind} {c.name}: {old} -> {new}{diff}")
        raise ReliabilityError("\n".join(lines).rstrip(), comparison=cmp)
    return cmp


class Baselines:
    """``assert_no_regression`` in one explicit mode: compare with the baselines, or refresh them.

    The pytest fixture ``coordgap_baselines`` is the session's one: it refreshes
    (``update=True``) under ``pytest --coordgap-save-baseline`` and compares otherwise,
    and the session summary lists every file it wrote.

    Example::

        def test_no_regression(coordgap_baselines):
            app = coordgap.instrument(build_graph(), name="research")
            run_questions(app)
            coordgap_baselines.check(app, "tests/reliability-baseline.json")
    """

    def __init__(self, *, update: bool = False) -> None:
        self.update = update
        self._lock = threading.Lock()
        self._written: list[str] = []

    def check(
        self,
        source: ReliabilitySource,
        baseline: str | os.PathLike[str] | Report,
        *,
        confidence: float | None = None,
    ) -> Comparison | None:
        """Return ``assert_no_regression(source, baseline, ..., update=self.update)``."""
        __tracebackhide__ = True
        result = assert_no_regression(source, baseline, confidence=confidence, update=self.update)
        from ._report import Report

        if self.update and not isinstance(baseline, Report):
            path = os.fspath(baseline)
            with self._lock:
                if path not in self._written:
                    self._written.append(path)
        return result

    @property
    def written(self) -> tuple[str, ...]:
        """The baseline files written so far (update mode), in order."""
        with self._lock:
            return tuple(self._written)

    def __repr__(self) -> str:
        return f"<coordgap Baselines update={self.update}>"
