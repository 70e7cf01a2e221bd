"""The run lifecycle: one run per invoke/stream, its pending handoffs, and how outcomes leave.

A :class:`Recorder` belongs to one instrumented graph. It starts a run around
each call of the graph (``invoke`` as one call, ``stream`` step by step), keeps
the handoffs LangGraph wrote and that wait for their target, and turns what the
probes (``_probes``) saw into counts and events. Pending handoffs outlive a run
only when LangGraph really paused it (an interrupt or a static breakpoint), and
then only on the same thread.

How outcomes leave is chosen once, at ``instrument()``: with no sink, the probes
count successes straight into the ledger with its counting primitives and build no
event ("quiet"; live spans are started and ended on that path too), and failures
are events; with a sink every outcome is an event for the ledger, the sinks and
the span recorder. A run of an instrumented graph invoked inside a task
of *another* instrumented graph is linked to that task: its events are also
forwarded, renamed under the calling node, to the outer graph.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context

from . import _clock
from . import _compat as lg
from . import semconv as sc
from ._failopen import guard, report_internal_error
from ._ledger import Ledger, count_run
from .contracts import Capture
from .events import (
    Event,
    HandoffKind,
    HandoffOutcome,
    NodeOutcome,
    RouterOutcome,
    RunOutcome,
    RunStatus,
)

_MAX_THREADS_REMEMBERED = 10_000
_MAX_ERROR_TYPES = 64

Pending = tuple[str, HandoffKind, int, Any, Any, "int | None"]
"""A handoff LangGraph wrote, waiting for its target to start:
``(source, kind, start_ns, arg, row, step)``; arg is a Send's payload or a join's barrier
channel (else None), row the ledger row it is counted on, step the superstep it was
written in. A tuple: one is built per handoff, and a tuple costs a fraction of an
instance."""


class Task:
    """One attempt of a task, current while LangGraph runs it (the node and its writers).

    Routers run inside their source node's task, after the node: they leave their
    decisions here, and the task probe counts them with the task's outcome. A graph
    invoked during the task finds here the node that called it.
    """

    __slots__ = (
        "_ns",
        "attempt",
        "config",
        "graph_ns",
        "received",
        "routed",
        "router_error",
        "run",
        "site",
        "span",
        "span_token",
        "start_ns",
        "step",
        "token",
    )

    def __init__(
        self,
        run: Run | None,
        site: Any,
        config: Any,
        start_ns: int,
        attempt: int = 1,
        graph_ns: str = "",
        step: int | None = None,
    ) -> None:
        self.run = run
        self.site = site
        self.config = config
        self.start_ns = start_ns
        self.attempt = attempt
        self.graph_ns = graph_ns
        """The namespace of the graph instance the task runs in ("" at the top)."""
        self.step = step
        """The superstep the task runs in (its graph instance's)."""
        self.routed: list[tuple[Any, tuple[str, ...], bool, int, int]] | None = None
        """(router, targets, valid, start_ns, end_ns) per decision of this attempt."""
        self.router_error: tuple[Any, BaseException, int, int] | None = None
        """(router, exception, start_ns, end_ns) when a router raised in this attempt."""
        self.received: list[tuple[str, str]] | None = None
        """(source, kind) of the handoffs delivered intact (for a live node span)."""
        self.span: Any = None
        self.span_token: Any = None
        self.token: Any = None
        self._ns: str | None = None

    @property
    def prefix(self) -> str:
        """This task's node followed by ``/``: how the graphs it runs name their nodes."""
        return str(self.site.child_prefix)

    @property
    def ns(self) -> str:
        """The task's checkpoint namespace: that of the graph instance a subgraph it runs is."""
        ns = self._ns
        if ns is None:
            ns = self._ns = lg.task_namespace(self.config) if self.config is not None else ""
        return ns


CURRENT_RUN: ContextVar[Run | None] = ContextVar("coordgap_run", default=None)
CURRENT_TASK: ContextVar[Task | None] = ContextVar("coordgap_task", default=None)


def _reinit_locks_after_fork() -> None:
    # A lock held by another thread at fork time would stay locked forever in the child.
    for recorder in list(_RECORDERS):
        recorder.threads_lock = threading.Lock()


_RECORDERS: weakref.WeakSet[Recorder] = weakref.WeakSet()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_locks_after_fork)


@dataclasses.dataclass(frozen=True, slots=True)
class Link:
    """Where a run of a nested instrumented graph is reported in the outer graph too."""

    run: Run
    prefix: str


class Run:
    """Everything coordgap tracks for one run; shared by the run's subgraphs.

    Its pending handoffs are guarded by the ledger's lock (see :class:`Ledger`), so a
    probe delivers handoffs and counts them under one acquisition.
    """

    __slots__ = (
        "deferred",
        "durations",
        "failed",
        "failures",
        "fault_finals",
        "fault_retries",
        "has_joins",
        "has_sends",
        "interrupted",
        "last_node",
        "ledger",
        "link",
        "otel_ctx",
        "parent_ctx",
        "peer",
        "peer_checked",
        "pending",
        "quiet",
        "recorder",
        "run_id",
        "span",
        "start_ns",
        "thread",
    )

    def __init__(
        self, recorder: Recorder, run_id: int, thread: tuple[str, str] | None, link: Link | None
    ) -> None:
        self.recorder = recorder
        self.ledger = recorder.ledger
        self.run_id = run_id
        self.start_ns = _clock.now_ns()
        self.thread = thread
        self.link = link
        self.quiet = recorder.quiet and link is None
        """Count without events (chosen at instrument time; a linked run forwards events)."""
        self.failed = False
        self.interrupted = False
        self.pending: dict[tuple[str, str], list[Pending]] = {}
        """Per (graph instance namespace, target): the handoffs written to it, not delivered."""
        self.has_sends = False
        self.has_joins = False
        self.last_node: str | None = None
        self.deferred: list[Any] = []
        """Writes LangGraph makes after a task's probe returned (a parent command
        handled by this graph): read once the superstep is over."""
        # successful attempts' (histogram attributes, seconds, live span), recorded at the end
        self.durations: list[tuple[dict[str, Any], float, Any]] = []
        self.span: Any = None
        self.otel_ctx: Any = None
        self.parent_ctx: Any = None
        self.peer: Any = None
        """Another tracer's span for this run of the graph, as a context (see ``_spans``)."""
        self.peer_checked = False
        """Whether the run's first task looked for that span (``SpanRecorder.join``)."""
        self.failures: list[Event] = []
        self.fault_retries: dict[str, int] | None = None
        """Per node, injected faults on attempts LangGraph retries: their fate is the
        node's next outcome (a successful attempt: the retry recovered them)."""
        self.fault_finals = 0
        """Injected faults no retry saved: the run's end tells who met them."""

    def open_locked(self, graph_ns: str, target: str, pending: Pending) -> None:
        """Add a handoff waiting for ``target`` in the graph instance ``graph_ns`` (a
        subgraph's namespace; "" at the top); the caller holds the ledger's lock."""
        key = (graph_ns, target)
        bucket = self.pending.get(key)
        if bucket is None:
            self.pending[key] = [pending]
        else:
            bucket.append(pending)
        kind = pending[1]
        if kind == "send":
            self.has_sends = True
        elif kind == "join":
            self.has_joins = True

    def take_locked(
        self,
        graph_ns: str,
        target: str,
        push: bool,
        arg: Any,
        step: int | None,
        joins: Mapping[str, frozenset[str]],
    ) -> list[Pending]:
        """Remove and return the handoffs a task of ``target`` receives, as LangGraph
        delivers them: a push task its own ``Send``; a pull task every other handoff written
        in an earlier superstep, a join's only once every side of the barrier has written."""
        key = (graph_ns, target)
        bucket = self.pending.pop(key, None)
        if bucket is None:
            return []
        last = bucket[-1][5]
        if (
            not self.has_sends
            and not self.has_joins
            and (step is None or last is None or last < step)
        ):
            return bucket  # the usual case: all written before this superstep, all pulled
        taken: list[Pending] = []
        keep: list[Pending] = []
        if push:
            # its own Send, written in an earlier superstep (a resumed push task took its
            # packet in the run it was interrupted in)
            sends = [
                p
                for p in bucket
                if p[1] == "send" and (step is None or p[5] is None or p[5] < step)
            ]
            chosen = next((p for p in sends if p[3] is arg), sends[0] if sends else None)
            for p in bucket:
                (taken if p is chosen else keep).append(p)
        else:
            barriers: dict[Any, list[Pending]] = {}
            for p in bucket:
                if p[1] == "send" or (step is not None and p[5] is not None and p[5] >= step):
                    keep.append(p)  # a Send's own task takes it; this superstep's comes later
                elif p[1] == "join":
                    barriers.setdefault(p[3], []).append(p)
                else:
                    taken.append(p)
            for channel, sides in barriers.items():
                needed = joins.get(channel)
                if needed is None or {p[0] for p in sides} >= needed:
                    taken.extend(sides)
                else:
                    keep.extend(sides)  # the barrier waits for its other side
        if keep:
            self.pending[key] = keep
        return taken

    def take_all_keyed(self) -> list[tuple[tuple[str, str], Pending]]:
        """Remove and return every pending handoff as ((graph namespace, target), pending)."""
        with self.ledger.lock:
            left = [(k, p) for k, bucket in self.pending.items() for p in bucket]
            self.pending.clear()
        return left


class Recorder:
    """Turns what the probes see into counts and events, run by run, for one graph."""

    def __init__(
        self,
        *,
        graph: str,
        ledger: Ledger,
        sinks: Sequence[Callable[[Event], None]],
        spans: Any,
        on_violation: str,
        capture: Capture | None,
        duration_histogram: Any = None,
    ) -> None:
        self.graph = graph
        self.ledger = ledger
        self.spans = spans
        self.live = spans is not None and spans.live
        self.sinks: tuple[Callable[[Event], None], ...] = ()
        self.quiet = True
        self.add_sinks(sinks)
        self.raise_on_violation = on_violation == "raise"
        self.capture = capture
        self.duration_histogram = duration_histogram
        self._duration_attrs: dict[tuple[str, bool], dict[str, Any]] = {}
        self._run_ids = itertools.count(1)
        self._threads: OrderedDict[tuple[str, str], list[tuple[tuple[str, str], Pending]]] = (
            OrderedDict()
        )
        self.threads_lock = threading.Lock()
        self._error_types: set[str] = set()
        self.paused_before: frozenset[str] = frozenset()
        """Qualified nodes a static breakpoint pauses the run before (``interrupt_before``)."""
        self.paused_after: frozenset[str] = frozenset()
        """Qualified nodes a static breakpoint pauses the run after (``interrupt_after``)."""
        self.sites: dict[str, Any] = {}
        """Qualified node name -> its site (every graph level of this recorder)."""
        _RECORDERS.add(self)

    def add_sinks(self, sinks: Sequence[Callable[[Event], None]]) -> None:
        self.sinks = (*self.sinks, *sinks)
        # quiet: no sink wants event objects, so the probes count successes straight into
        # the ledger (live node spans are ended on that path too); failures are still events
        self.quiet = not self.sinks

    # -- plumbing -----------------------------------------------------------------

    def internal_error(self, where: str, exc: BaseException) -> None:
        report_internal_error(where, exc, self.ledger.count_internal_error)

    def emit(self, run: Run | None, event: Event) -> None:
        """Hand one event to the ledger, the sinks, the spans (failures) and a linked outer run."""
        count = self.ledger.count_internal_error
        with guard("ledger", count):
            self.ledger.record(event)
        if (
            run is not None
            and isinstance(event, (NodeOutcome, RouterOutcome))
            and (event.fault or (isinstance(event, NodeOutcome) and event.attempt > 1))
        ):
            with guard("fault fates", count):
                self._track_fault(run, event)
        for sink in self.sinks:
            with guard(f"sink {sink!r}", count):
                sink(event)
        if not isinstance(event, RunOutcome) and not event.ok:
            if run is not None and (not isinstance(event, NodeOutcome) or event.final):
                run.failed = True  # a retried attempt is not a failed run
            if self.spans is not None:
                with guard("spans", count):
                    self.spans.failure(run, event)
        link = run.link if run is not None else None
        if link is not None and not isinstance(event, RunOutcome):
            outer = link.run
            with guard("linked run", count):
                outer.recorder.emit(
                    outer, _renamed(event, link.prefix, outer.recorder.graph, outer.run_id)
                )

    def _track_fault(self, run: Run, event: NodeOutcome | RouterOutcome) -> None:
        """Follow an injected node or router fault to the guard that meets it."""
        with self.ledger.lock:
            if isinstance(event, RouterOutcome):
                run.fault_finals += 1  # a router fails for good (a retried one is its node's)
                return
            retries = run.fault_retries
            pending = retries.pop(event.node, 0) if retries else 0
            if event.ok or event.error_type == sc.ERROR_CONTRACT:
                if pending:  # a later attempt ran through: the retries recovered them
                    self.ledger.count_fault_fate_locked("retry", pending)
                return
            if event.fault and not event.final:
                if run.fault_retries is None:
                    run.fault_retries = {}
                run.fault_retries[event.node] = pending + 1
                return
            run.fault_finals += pending + event.fault

    def recovered(self, run: Run, node: str) -> None:
        """A retried attempt of ``node`` succeeded (counted without an event)."""
        with guard("fault fates", self.ledger.count_internal_error), self.ledger.lock:
            retries = run.fault_retries
            pending = retries.pop(node, 0) if retries else 0
            if pending:
                self.ledger.count_fault_fate_locked("retry", pending)

    def unrecovered(self, run: Run, node: str) -> None:
        """The last attempt of ``node``'s task failed after all: its retried faults were
        not recovered (their fate is the run's)."""
        with guard("fault fates", self.ledger.count_internal_error), self.ledger.lock:
            retries = run.fault_retries
            if retries:
                run.fault_finals += retries.pop(node, 0)

    def _settle_faults(self, run: Run, status: RunStatus) -> None:
        """At a run's end, the faults no retry saved: the caller met them when the run
        raised, an error handler (or a caller of a subgraph) when it went on."""
        with self.ledger.lock:
            left = run.fault_finals + sum((run.fault_retries or {}).values())
            run.fault_finals = 0
            run.fault_retries = None
            if left:
                fate = "caller" if status == "error" else "error_handler"
                self.ledger.count_fault_fate_locked(fate, left)

    def error_type(self, exc_or_name: BaseException | str) -> str:
        """Return a bounded error.type: the class name, or ``other`` past the cap."""
        name = exc_or_name if isinstance(exc_or_name, str) else type(exc_or_name).__name__
        if name in self._error_types:
            return name
        with self.threads_lock:  # check-and-add must be atomic, or threads overshoot the cap
            if name in self._error_types or len(self._error_types) < _MAX_ERROR_TYPES:
                self._error_types.add(name)
                return name
        return sc.OTHER_ERROR_TYPE

    def duration_attributes(self, node: str, ok: bool) -> dict[str, Any]:
        """Return the histogram's attributes for a node and outcome (one dict each, reused)."""
        key = (node, ok)
        attrs = self._duration_attrs.get(key)
        if attrs is None:
            attrs = self._duration_attrs.setdefault(
                key,
                {
                    sc.ATTR_GRAPH: self.graph,
                    sc.ATTR_NODE: node,
                    sc.ATTR_OUTCOME: "ok" if ok else "error",
                },
            )
        return attrs

    def record_duration(
        self, run: Run | None, node: str, ok: bool, seconds: float, span: Any
    ) -> None:
        hist = self.duration_histogram
        if hist is None:
            return
        attrs = self.duration_attributes(node, ok)
        if run is not None:
            run.durations.append((attrs, seconds, span))
        else:
            hist.record(seconds, attrs)

    # -- runs -----------------------------------------------------------------------

    def start_run(self, config: Any, graph_config: Any, outer: Run | None) -> Run:
        thread = lg.thread_key(config, graph_config)
        link = None
        if outer is not None:
            task = CURRENT_TASK.get()
            if task is not None and task.run is outer:
                link = Link(outer, task.prefix)
                outer.ledger.add_container(task.site.name)
        run = Run(self, next(self._run_ids), thread, link)
        if thread is not None:
            with self.threads_lock:
                carried = self._threads.pop(thread, None)
            if carried:
                with self.ledger.lock:
                    for (graph_ns, target), pending in carried:
                        run.open_locked(graph_ns, target, pending)
        if self.spans is not None:
            with guard("spans", self.ledger.count_internal_error):
                self.spans.run_start(run)
        return run

    def end_run(self, run: Run, exc: BaseException | None, abandoned: bool = False) -> None:
        with guard("end of run", self.ledger.count_internal_error):
            self._end_run(run, exc, abandoned)

    def _end_run(self, run: Run, exc: BaseException | None, abandoned: bool) -> None:
        if run.deferred:
            deferred, run.deferred = run.deferred, []
            if exc is None or isinstance(exc, lg.GraphBubbleUp):
                for entry in deferred:  # the writes of the run's last superstep
                    entry[2].count_deferred(run, entry)
            # else the run raised: LangGraph discarded those writes
        end_ns = _clock.now_ns()
        left = run.take_all_keyed()
        if run.durations and self.duration_histogram is not None:
            self.duration_histogram.record_batch(run.durations)
        error_type = error_at = None
        status: RunStatus
        if exc is not None and not isinstance(exc, lg.GraphBubbleUp):
            status = "error"
            error_type = self.error_type(exc)
            if not run.failed:
                error_at = run.last_node  # no failed component explains it: say where it died
        elif abandoned or run.interrupted or exc is not None or self._paused(left):
            status = "interrupted"
        else:
            status = "ok"
        if left and status == "ok":
            self._undelivered(run, left, end_ns)
        elif left and status == "interrupted" and run.thread is not None:
            # LangGraph paused the run: the next run of this thread delivers them
            with self.threads_lock:
                self._threads[run.thread] = left
                self._threads.move_to_end(run.thread)
                while len(self._threads) > _MAX_THREADS_REMEMBERED:
                    self._threads.popitem(last=False)
        clean = status == "ok" and not run.failed
        if run.fault_finals or run.fault_retries:
            self._settle_faults(run, status)
        spans = self.spans
        if run.quiet and (
            spans is None or (clean if self.live else status != "error" and not run.failures)
        ):
            # nobody needs the event (a clean run's live span only ends; in failures mode
            # spans.run_end would return at once): count and go
            ledger = self.ledger
            with ledger.lock:
                count_run(
                    ledger.runs_row, status, clean, end_ns - run.start_ns, error_type, error_at
                )
            if spans is not None and self.live:
                spans.run_end_clean(run, end_ns)
            return
        outcome = RunOutcome(
            graph=self.graph,
            status=status,
            clean=clean,
            start_ns=run.start_ns,
            end_ns=end_ns,
            error_type=error_type,
            run_id=run.run_id,
            error_at=error_at,
        )
        self.emit(run, outcome)
        if self.spans is not None:
            self.spans.run_end(run, outcome)

    def _paused(self, left: list[tuple[tuple[str, str], Pending]]) -> bool:
        """Return True when a static breakpoint explains the handoffs left pending."""
        return any(
            target in self.paused_before or pending[0] in self.paused_after
            for (_, target), pending in left
        )

    def _undelivered(
        self, run: Run, left: list[tuple[tuple[str, str], Pending]], end_ns: int
    ) -> None:
        # The run finished yet these targets never started: LangGraph dropped the handoff
        # (a join whose other side never came).
        for (_, target), (source, kind, start_ns, _, _, _) in left:
            self.emit(
                run,
                HandoffOutcome(
                    graph=self.graph,
                    source=source,
                    target=target,
                    kind=kind,
                    ok=False,
                    start_ns=start_ns,
                    end_ns=end_ns,
                    error_type=sc.ERROR_UNDELIVERED,
                    run_id=run.run_id,
                ),
            )

    # -- driving a call of the graph as one run ------------------------------------------

    def _own(self) -> tuple[bool, Run | None]:
        """Return (inside one of this graph's runs, the current run)."""
        run = CURRENT_RUN.get()
        return run is not None and run.recorder is self, run

    def in_run(self) -> bool:
        """Return True inside one of this graph's runs (a subgraph call, or invoke's stream)."""
        return self._own()[0]

    def _enter(self, run: Run) -> tuple[Any, Any]:
        """Make ``run`` current (and its span, when live); return what _leave needs."""
        return CURRENT_RUN.set(run), otel_context.attach(run.otel_ctx) if self.live else None

    def _leave(self, tokens: tuple[Any, Any]) -> None:
        token, otel_token = tokens
        if otel_token is not None:
            otel_context.detach(otel_token)
        CURRENT_RUN.reset(token)

    def call(
        self,
        fn: Callable[..., Any],
        input: Any,
        config: Any,
        kwargs: dict[str, Any],
        graph_config: Any,
    ) -> Any:
        """Call a graph's ``invoke`` as one run, the run current for the whole call."""
        own, outer = self._own()
        if own:
            return fn(input, config, **kwargs)  # a subgraph of this graph: the outer run's
        run = self.start_run(config, graph_config, outer)
        tokens = self._enter(run)
        try:
            result = fn(input, config, **kwargs)
        except BaseException as exc:
            self.end_run(run, exc)
            raise
        finally:
            self._leave(tokens)
        self.end_run(run, None)
        return result

    async def acall(
        self,
        fn: Callable[..., Any],
        input: Any,
        config: Any,
        kwargs: dict[str, Any],
        graph_config: Any,
    ) -> Any:
        """Async twin of :meth:`call` (``ainvoke``)."""
        own, outer = self._own()
        if own:
            return await fn(input, config, **kwargs)
        run = self.start_run(config, graph_config, outer)
        tokens = self._enter(run)
        try:
            result = await fn(input, config, **kwargs)
        except asyncio.CancelledError:
            self.end_run(run, None, abandoned=True)
            raise
        except BaseException as exc:
            self.end_run(run, exc)
            raise
        finally:
            self._leave(tokens)
        self.end_run(run, None)
        return result

    def drive(self, inner: Iterator[Any], config: Any, graph_config: Any) -> Iterator[Any]:
        """Iterate a graph's stream as one run, with the run set as current per step
        (``stream()`` drives only outside this graph's runs)."""
        run = self.start_run(config, graph_config, CURRENT_RUN.get())
        try:
            while True:
                tokens = self._enter(run)
                try:
                    chunk = next(inner)
                except StopIteration:
                    break
                finally:
                    self._leave(tokens)
                yield chunk
        except GeneratorExit:
            close = getattr(inner, "close", None)
            if close is not None:
                close()
            self.end_run(run, None, abandoned=True)
            raise
        except BaseException as exc:
            self.end_run(run, exc)
            raise
        self.end_run(run, None)

    async def adrive(
        self, inner: AsyncIterator[Any], config: Any, graph_config: Any
    ) -> AsyncIterator[Any]:
        """Async twin of :meth:`drive`."""
        run = self.start_run(config, graph_config, CURRENT_RUN.get())
        try:
            while True:
                tokens = self._enter(run)
                try:
                    chunk = await inner.__anext__()
                except StopAsyncIteration:
                    break
                finally:
                    self._leave(tokens)
                yield chunk
        except GeneratorExit:
            await _aclose(inner)
            self.end_run(run, None, abandoned=True)
            raise
        except asyncio.CancelledError:
            await _aclose(inner)
            self.end_run(run, None, abandoned=True)
            raise
        except BaseException as exc:
            self.end_run(run, exc)
            raise
        self.end_run(run, None)


async def _aclose(inner: Any) -> None:
    close = getattr(inner, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:
            pass


def _qualify(name: str, prefix: str) -> str:
    return name if name == sc.UNKNOWN_TARGET else prefix + name


def _renamed(event: Event, prefix: str, graph: str, run_id: int) -> Event:
    """Return an event of a nested graph as the outer graph names it (``caller/inner``), in
    the outer run."""
    if isinstance(event, NodeOutcome):
        return dataclasses.replace(event, graph=graph, node=prefix + event.node, run_id=run_id)
    if isinstance(event, HandoffOutcome):
        return dataclasses.replace(
            event,
            graph=graph,
            run_id=run_id,
            source=_qualify(event.source, prefix),
            target=_qualify(event.target, prefix),
        )
    if isinstance(event, RouterOutcome):
        return dataclasses.replace(
            event,
            graph=graph,
            run_id=run_id,
            router=prefix + event.router,
            source=_qualify(event.source, prefix),
            targets=tuple(_qualify(t, prefix) for t in event.targets),
        )
    return event
