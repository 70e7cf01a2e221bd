"""Interception: probes around nodes, routers and the entry, and the run driver.

Every probe calls the user's runnable with exactly the arguments LangGraph
gave it and returns (or raises) exactly what it returned (or raised); around
that call it records outcomes as events. Handoffs are opened at the source
(static edges and joins from the builder, the router's return value, a
Command's goto, a Send) and closed when the target starts, where the target's
``requires`` contract and the edge's contract are checked against the state
it receives.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig
from opentelemetry import context as otel_context

from . import _compat as lg
from . import semconv as sc
from ._failopen import report_internal_error
from .contracts import Check, Violation, update_of
from .errors import ContractViolation
from .events import Event, HandoffOutcome, NodeOutcome, RouterOutcome, RunOutcome
from .ledger import Ledger

_time_ns = time.time_ns

_CURRENT_RUN: ContextVar[_Run | None] = ContextVar("coordgap_run", default=None)

_MAX_THREADS_REMEMBERED = 10_000
_MAX_ERROR_TYPES = 64


def _reinit_locks_after_fork() -> None:
    # A lock held by another thread at fork time would stay locked forever in the child.
    for recorder in list(_RECORDERS):
        recorder._threads_lock = threading.Lock()


_RECORDERS: weakref.WeakSet[Recorder] = weakref.WeakSet()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_locks_after_fork)


_Pending = tuple[str, str, int, Any, Any]
"""A handoff opened at its source, waiting for its target to start:
``(source, kind, start_ns, arg, row)``; arg is a Send's payload (else None), row
the ledger row it is counted on when bound in advance (else None). A tuple:
static edges open one per node call, and a tuple costs a fraction of an instance."""


class _Run:
    """Everything coordgap tracks for one run; shared by the run's subgraphs.

    Its pending handoffs are guarded by the ledger's lock (see :class:`Ledger`), so
    a probe delivers handoffs and counts them under one acquisition.
    """

    __slots__ = (
        "durations",
        "failed",
        "failures",
        "has_sends",
        "interrupted",
        "ledger",
        "otel_ctx",
        "parent_ctx",
        "pending",
        "recorder",
        "run_id",
        "span",
        "start_ns",
        "thread",
    )

    def __init__(self, recorder: Recorder, run_id: int, thread: tuple[str, str] | None) -> None:
        self.recorder = recorder
        self.ledger = recorder.ledger
        self.run_id = run_id
        self.start_ns = _time_ns()
        self.thread = thread
        self.failed = False
        self.interrupted = False
        self.pending: dict[str, list[_Pending]] = {}
        self.has_sends = False
        # successful attempts' (histogram attributes, seconds, live span), recorded at the end
        self.durations: list[tuple[dict[str, Any], float, Any]] = []
        self.span: Any = None
        self.otel_ctx: Any = None
        self.parent_ctx: Any = None
        self.failures: list[Event] = []

    # The hot paths take the lock with acquire()/release(): `with lock:` costs about four
    # times as much in CPython (its __exit__ parses arguments).

    def open(self, target: str, pending: _Pending) -> None:
        lock = self.ledger.lock
        lock.acquire()
        try:
            bucket = self.pending.get(target)
            if bucket is None:
                self.pending[target] = [pending]
            else:
                bucket.append(pending)
            if pending[1] == "send":
                self.has_sends = True
        finally:
            lock.release()

    def open_locked(self, source: str, targets: tuple[tuple[str, str, Any], ...], now: int) -> None:
        """Open a handoff from ``source`` per static (target, kind, ledger row); the caller
        holds the lock (a node's end, the entry)."""
        pending = self.pending
        for target, kind, row in targets:
            bucket = pending.get(target)
            if bucket is None:
                pending[target] = [(source, kind, now, None, row)]
            else:
                bucket.append((source, kind, now, None, row))

    def deliver(self, target: str, config: Any, arg: Any) -> list[_Pending]:
        """Close the handoffs into ``target``: one Send for a push, every other kind otherwise."""
        lock = self.ledger.lock
        lock.acquire()
        try:
            bucket = self.pending.pop(target, None)
            if bucket is None:
                return []
            if not self.has_sends:
                return bucket  # no Send in this run: every call is a pull, it takes them all
            if lg.is_push(config):
                sends = [p for p in bucket if p[1] == "send"]
                if not sends:
                    self.pending[target] = bucket
                    return []
                chosen = next((p for p in sends if p[3] is arg), sends[0])
                bucket.remove(chosen)
                delivered = [chosen]
            else:
                delivered = [p for p in bucket if p[1] != "send"]
                bucket = [p for p in bucket if p[1] == "send"]
            if bucket:
                self.pending[target] = bucket
            return delivered
        finally:
            lock.release()

    def take_all(self) -> list[tuple[str, _Pending]]:
        """Remove and return every pending handoff as (target, pending)."""
        with self.ledger.lock:
            left = [(t, p) for t, bucket in self.pending.items() for p in bucket]
            self.pending.clear()
        return left


@dataclass
class Capture:
    """Opt-in capture of state values on failures (development only).

    Args:
        max_chars: the captured text is cut to this length.
        redact: called with the value before it is rendered; return what may be recorded.
    """

    max_chars: int = 1024
    redact: Callable[[Any], Any] | None = None

    def render(self, value: Any) -> str:
        if self.redact is not None:
            value = self.redact(value)
        text = repr(value)
        return text if len(text) <= self.max_chars else text[: self.max_chars] + "..."


class Recorder:
    """Turns what the probes see into events and hands them to the sinks."""

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
        self._threads: OrderedDict[tuple[str, str], list[tuple[str, _Pending]]] = OrderedDict()
        self._threads_lock = threading.Lock()
        self._error_types: set[str] = set()
        # nodes LangGraph may answer from its cache without running them (no probe sees it)
        self.cached_nodes: set[str] = set()
        _RECORDERS.add(self)

    def add_sinks(self, sinks: Sequence[Callable[[Event], None]]) -> None:
        self.sinks = (*self.sinks, *sinks)
        # quiet: no sink wants event objects and no span is live, so the probes only count
        self.quiet = not self.sinks and not self.live

    # -- plumbing -----------------------------------------------------------------

    def internal_error(self, where: str, exc: BaseException) -> None:
        report_internal_error(where, exc, self.ledger.count_internal_error)

    def emit(self, event: Event) -> None:
        try:
            self.ledger.record(event)
        except Exception as exc:
            self.internal_error("ledger", exc)
        for sink in self.sinks:
            try:
                sink(event)
            except Exception as exc:
                self.internal_error(f"sink {sink!r}", exc)

    def error_type(self, exc_or_name: BaseException | str) -> str:
        """Return a bounded error.type: the class name, or ``other`` past the cap."""
        name = exc_or_name if isinstance(exc_or_name, str) else type(exc_or_name).__name__
        if name in self._error_types:
            return name
        with self._threads_lock:  # check-and-add must be atomic, or threads overshoot the cap
            if name in self._error_types or len(self._error_types) < _MAX_ERROR_TYPES:
                self._error_types.add(name)
                return name
        return sc.OTHER_ERROR_TYPE

    def failed(self, run: _Run | None, event: NodeOutcome | HandoffOutcome | RouterOutcome) -> None:
        if run is not None:
            run.failed = True
        if self.spans is not None:
            try:
                self.spans.failure(run, event)
            except Exception as exc:
                self.internal_error("spans", exc)

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

    def record_duration(self, node: str, ok: bool, seconds: float) -> None:
        hist = self.duration_histogram
        if hist is not None:
            hist.record(seconds, self.duration_attributes(node, ok))

    # -- runs -----------------------------------------------------------------------

    def start_run(self, config: Any, graph_config: Any) -> _Run:
        thread = lg.thread_key(config, graph_config)
        run = _Run(self, next(self._run_ids), thread)
        if thread is not None:
            with self._threads_lock:
                carried = self._threads.pop(thread, None)
            for target, pending in carried or ():
                run.open(target, pending)
        if self.spans is not None:
            try:
                self.spans.run_start(run)
            except Exception as exc:
                self.internal_error("spans", exc)
        return run

    def end_run(self, run: _Run, exc: BaseException | None, abandoned: bool = False) -> None:
        try:
            self._end_run(run, exc, abandoned)
        except Exception as inner:
            self.internal_error("end of run", inner)

    def _end_run(self, run: _Run, exc: BaseException | None, abandoned: bool) -> None:
        end_ns = _time_ns()
        left = run.take_all()
        if run.durations and self.duration_histogram is not None:
            self.duration_histogram.record_batch(run.durations)
        error_type = None
        if exc is not None and not isinstance(exc, lg.GraphBubbleUp):
            status = "error"
            error_type = self.error_type(exc)
        elif abandoned or run.interrupted or exc is not None or (left and run.thread is not None):
            status = "interrupted"
        else:
            status = "ok"
        if left and status == "ok":
            # The run finished yet these targets never started: LangGraph dropped the handoff,
            # unless the target was answered from LangGraph's cache (its writes replayed).
            for target, (source, kind, start_ns, _, _) in left:
                if target in self.cached_nodes:
                    self.emit(
                        HandoffOutcome(
                            graph=self.graph,
                            source=source,
                            target=target,
                            kind=kind,  # type: ignore[arg-type]
                            ok=True,
                            start_ns=start_ns,
                            end_ns=end_ns,
                            run_id=run.run_id,
                        )
                    )
                    continue
                event = HandoffOutcome(
                    graph=self.graph,
                    source=source,
                    target=target,
                    kind=kind,  # type: ignore[arg-type]
                    ok=False,
                    start_ns=start_ns,
                    end_ns=end_ns,
                    error_type=sc.ERROR_UNDELIVERED,
                    run_id=run.run_id,
                )
                self.emit(event)
                self.failed(run, event)
        elif left and run.thread is not None:
            with self._threads_lock:
                self._threads[run.thread] = left
                self._threads.move_to_end(run.thread)
                while len(self._threads) > _MAX_THREADS_REMEMBERED:
                    self._threads.popitem(last=False)
        if (
            status == "ok"
            and not self.sinks
            and (self.spans is None or (not self.live and not run.failures))
        ):
            # the happy path: nobody needs the event (spans.run_end would return at once)
            self.ledger.run_ok(not run.failed, end_ns - run.start_ns)
            return
        outcome = RunOutcome(
            graph=self.graph,
            status=status,  # type: ignore[arg-type]
            clean=status == "ok" and not run.failed,
            start_ns=run.start_ns,
            end_ns=end_ns,
            error_type=error_type,
            run_id=run.run_id,
            span=run.span,
        )
        self.emit(outcome)
        if self.spans is not None:
            self.spans.run_end(run, outcome)

    def in_run(self) -> bool:
        """Return True inside one of this graph's runs (a subgraph call, or invoke's stream)."""
        run = _CURRENT_RUN.get()
        return run is not None and run.recorder is self

    def _enter(self, run: _Run) -> tuple[Any, Any]:
        """Make ``run`` current (and its span, when live); return what _leave needs."""
        return _CURRENT_RUN.set(run), otel_context.attach(run.otel_ctx) if self.live else None

    def _leave(self, tokens: tuple[Any, Any]) -> None:
        token, otel_token = tokens
        if otel_token is not None:
            otel_context.detach(otel_token)
        _CURRENT_RUN.reset(token)

    def call(
        self,
        fn: Callable[..., Any],
        input: Any,
        config: Any,
        kwargs: dict[str, Any],
        graph_config: Any,
    ) -> Any:
        """Call a graph's ``invoke`` as one run, the run current for the whole call."""
        if self.in_run():
            return fn(input, config, **kwargs)  # a subgraph of this graph: the parent's run
        run = self.start_run(config, graph_config)
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
        if self.in_run():
            return await fn(input, config, **kwargs)
        run = self.start_run(config, graph_config)
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
        run = self.start_run(config, graph_config)
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
        run = self.start_run(config, graph_config)
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


# -- sites: what a probe knows about its place in the graph -----------------------------


@dataclass
class GraphSites:
    """Static facts about one (sub)graph, shared by its probes."""

    recorder: Recorder
    prefix: str
    nodes: frozenset[str]
    """The graph's raw node names."""

    @property
    def end_name(self) -> str:
        """This graph's END as a handoff target (``outer/__end__`` in a subgraph)."""
        return self.prefix + sc.END if self.prefix else sc.END

    def qualify(self, raw: str) -> str:
        if raw == lg.END:
            return self.end_name
        if raw == lg.START:
            return self.prefix + sc.START if self.prefix else sc.START
        return self.prefix + raw

    def route(
        self, run: _Run | None, source: str, dest: Any, kind: str, now: int
    ) -> tuple[str, bool]:
        """Open a handoff from ``source`` to one destination; return (target, valid)."""
        rec = self.recorder
        if isinstance(dest, lg.Send):
            raw, kind, arg = dest.node, "send", dest.arg
            valid = raw in self.nodes
        else:
            raw, arg = dest, None
            valid = isinstance(raw, str) and (raw in self.nodes or raw == lg.END)
        if not valid:
            event = HandoffOutcome(
                graph=rec.graph,
                source=source,
                target=sc.UNKNOWN_TARGET,
                kind=kind,  # type: ignore[arg-type]
                ok=False,
                start_ns=now,
                end_ns=now,
                error_type=sc.ERROR_INVALID_ROUTE,
                run_id=run.run_id if run is not None else 0,
            )
            rec.emit(event)
            rec.failed(run, event)
            return sc.UNKNOWN_TARGET, False
        target = self.qualify(raw)
        if raw == lg.END and not rec.sinks:
            rec.ledger.handoff_ok(source, target, kind)  # the happy path: no event to build
        elif raw == lg.END:
            rec.emit(
                HandoffOutcome(
                    graph=rec.graph,
                    source=source,
                    target=target,
                    kind=kind,  # type: ignore[arg-type]
                    ok=True,
                    start_ns=now,
                    end_ns=now,
                    run_id=run.run_id if run is not None else 0,
                )
            )
        elif run is not None:
            run.open(target, (source, kind, now, arg, None))
        return target, True


@dataclass
class NodeSite:
    """One node: its name, contracts, outgoing static edges and retry policies."""

    graph: GraphSites
    name: str
    raw: str
    static_targets: tuple[tuple[str, str], ...] = ()
    requires: Check | None = None
    ensures: Check | None = None
    edge_checks: Mapping[str, Check] = field(default_factory=dict)
    policies: tuple[Any, ...] = ()
    # Bound once here so a node call looks nothing up:
    row: Any = field(init=False)
    """The ledger row counting this node."""
    static_pending: tuple[tuple[str, str, Any], ...] = field(init=False)
    """(qualified target, kind, ledger row) per static edge other than into END."""
    end_rows: tuple[tuple[str, Any], ...] = field(init=False)
    """(kind, ledger row) per static edge into END."""
    check_requires: Callable[[Any], Violation | None] | None = field(init=False)
    check_ensures: Callable[[Any], Violation | None] | None = field(init=False)
    ok_attributes: dict[str, Any] = field(init=False)
    """The duration histogram's attributes for this node's successful attempts."""

    def __post_init__(self) -> None:
        ledger = self.graph.recorder.ledger
        self.row = ledger.node_row(self.name)
        self.static_pending = tuple(
            (self.graph.qualify(t), k, ledger.handoff_row(self.name, self.graph.qualify(t)))
            for t, k in self.static_targets
            if t != lg.END
        )
        self.end_rows = tuple(
            (k, ledger.handoff_row(self.name, self.graph.end_name))
            for t, k in self.static_targets
            if t == lg.END
        )
        self.check_requires = self.requires.validate if self.requires is not None else None
        self.check_ensures = self.ensures.validate if self.ensures is not None else None
        self.ok_attributes = self.graph.recorder.duration_attributes(self.name, True)


_UNCHANGED: Any = object()

_Call = tuple[_Run | None, int, int, Any, Any, Any]
"""A node call in flight, from _begin to _finish / _fail:
``(run, start_ns, attempt, span, token, input)``; span and token are the live
node span and its context token (None unless ``spans="all"``), input is what
the node runs on instead of LangGraph's input (_UNCHANGED unless an injected
handoff fault replaced it). A tuple: one is built per node call, and a tuple
costs a fraction of an instance."""


def _violation_error(
    v: Violation, *, where: str, node: str, source: str | None
) -> ContractViolation:
    return ContractViolation(
        contract=v.contract,
        where=where,
        node=node,
        source=source,
        fields=v.fields,
        error_types=v.error_types,
    )


class _Probe(Runnable[Any, Any]):
    """A runnable standing in for the user's: named as it is, calling it unchanged."""

    inner: Runnable[Any, Any]

    @property
    def name(self) -> str | None:  # type: ignore[override]
        return getattr(self.inner, "name", None)

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        return self.inner.get_name(suffix, name=name)


class NodeProbe(_Probe):
    """Wraps a node's runnable: counts the attempt, checks contracts, opens its handoffs."""

    def __init__(self, inner: Runnable[Any, Any] | None, site: NodeSite) -> None:
        # inner is None for a sequence node: its StepProbes call the steps themselves
        self.inner: Runnable[Any, Any] = inner  # type: ignore[assignment]
        self.site = site
        self._inflight: dict[str, _Call] = {}  # sequence nodes: the open call per task
        self._lock = threading.Lock()
        # set by coordgap.faults on a node whose incoming handoffs get corrupted
        self.corrupt = getattr(inner, "coordgap_corrupt", None)
        # nothing to check per incoming handoff: a quiet recorder only counts them
        self._counts_only = self.corrupt is None and not site.edge_checks

    # -- begin: the handoffs into this node are delivered ------------------------------

    def _begin(self, input: Any, config: Any) -> _Call | None:
        # The hot path keeps to this one function: in a graph run, every further call is
        # code and data gone cold since the node's last call, and costs more than it seems.
        site = self.site
        rec = site.graph.recorder
        try:
            run = _CURRENT_RUN.get()
            now = _time_ns()
            try:
                attempt = lg.runtime_attempt(config[lg.CONF][lg.CONFIG_KEY_RUNTIME])
            except Exception:
                attempt = 1
            if self._counts_only and rec.quiet and run is not None and not run.has_sends:
                # nobody needs an event or a live span: if the state is fine, count and go
                check = site.check_requires
                if check is None or check(input) is None:
                    if attempt == 1:  # a retry's handoffs were delivered to the first attempt
                        ledger = run.ledger
                        lock = ledger.lock
                        lock.acquire()
                        try:
                            bucket = run.pending.pop(site.name, None)
                            if bucket is not None:
                                ledger.transfers_ok_locked(site.name, bucket)
                        finally:
                            lock.release()
                    return (run, now, attempt, None, None, _UNCHANGED)
            if attempt > 1 or run is None:
                delivered: list[_Pending] = []
            else:
                delivered = run.deliver(site.name, config, input)
            return self._begin_recorded(run, now, attempt, input, config, delivered)
        except ContractViolation:
            raise
        except Exception as exc:
            rec.internal_error(f"node {site.name}", exc)
            return None

    def _begin_recorded(
        self,
        run: _Run | None,
        now: int,
        attempt: int,
        input: Any,
        config: Any,
        delivered: list[_Pending],
    ) -> _Call:
        """Check and record the handoffs into this node as events (and start its live span)."""
        site = self.site
        rec = site.graph.recorder
        violation: ContractViolation | None = None
        faulted = False
        given = _UNCHANGED
        if self.corrupt is not None and delivered:
            input, faulted = self.corrupt(
                input, [p[0] for p in delivered], site.requires, site.edge_checks
            )
            given = input
        requires = site.check_requires(input) if site.check_requires is not None else None
        received: list[tuple[str, str]] | None = [] if rec.live else None
        for source, kind, start_ns, _, _ in delivered:
            broken = requires
            edge = site.edge_checks.get(source)
            if broken is None and edge is not None:
                broken = edge.validate(input)
            if broken is None and received is not None:
                received.append((source, kind))
            if broken is None and not rec.sinks:
                rec.ledger.handoff_ok(source, site.name, kind)
                continue
            event = HandoffOutcome(
                graph=rec.graph,
                source=source,
                target=site.name,
                kind=kind,  # type: ignore[arg-type]
                ok=broken is None,
                start_ns=start_ns,
                end_ns=now,
                error_type=None if broken is None else sc.ERROR_CONTRACT,
                contract=None if broken is None else broken.contract,
                fields=() if broken is None else broken.fields,
                fault=faulted and broken is not None,
                run_id=run.run_id if run is not None else 0,
                captured=None
                if broken is None or rec.capture is None
                else rec.capture.render(input),
            )
            rec.emit(event)
            if broken is not None:
                rec.failed(run, event)
                if violation is None:
                    violation = _violation_error(
                        broken, where="handoff", node=site.name, source=source
                    )
        span = token = None
        if received is not None:
            # started after the handoffs were checked, so what it received is set in one go
            span, token = rec.spans.node_start(
                site.name, now, attempt, lg.step_of(config), received
            )
        if requires is not None and not delivered and attempt == 1:
            # The state broke `requires` but no handoff was traced here (a resumed run)
            event = HandoffOutcome(
                graph=rec.graph,
                source=sc.UNKNOWN_TARGET,
                target=site.name,
                kind="edge",
                ok=False,
                start_ns=now,
                end_ns=now,
                error_type=sc.ERROR_CONTRACT,
                contract=requires.contract,
                fields=requires.fields,
                run_id=run.run_id if run is not None else 0,
            )
            rec.emit(event)
            rec.failed(run, event)
            violation = _violation_error(requires, where="requires", node=site.name, source=None)
        if violation is not None and rec.raise_on_violation:
            if span is not None:
                rec.spans.node_end(span, token, None, _time_ns())
            raise violation
        return (run, now, attempt, span, token, given)

    # -- end: the attempt's outcome and the handoffs out of this node ---------------------

    def _fail(self, call: _Call | None, exc: BaseException, config: Any) -> None:
        if call is None:
            return
        try:
            self._fail_unguarded(call, exc, config)
        except Exception as inner:
            self.site.graph.recorder.internal_error(f"node {self.site.name}", inner)

    def _fail_unguarded(self, call: _Call, exc: BaseException, config: Any) -> None:
        site = self.site
        rec = site.graph.recorder
        run, start, attempt, span, token, _ = call
        end = _time_ns()
        if isinstance(exc, lg.ParentCommand):
            # A subgraph (or the node) handed control to an ancestor graph: the node succeeded.
            self._succeeded(call, config, end, None)
            if lg.parent_command_targets_this_graph(exc, config, site.raw):
                self._open_commands([exc.args[0]], run, end, addressed_here=True)
            return
        if isinstance(exc, lg.GraphBubbleUp) or not isinstance(exc, Exception):
            # interrupts and cancellation are control flow, not failures
            if run is not None and isinstance(exc, lg.GraphBubbleUp):
                run.interrupted = True
            if span is not None:
                rec.spans.node_end(span, token, None, end)
            return
        final = not lg.will_retry(site.policies, exc, attempt)
        event = NodeOutcome(
            graph=rec.graph,
            node=site.name,
            ok=False,
            attempt=attempt,
            final=final,
            start_ns=start,
            end_ns=end,
            step=lg.step_of(config),
            error_type=rec.error_type(exc),
            fault=bool(getattr(exc, "__coordgap_fault__", False)),
            run_id=run.run_id if run is not None else 0,
        )
        self._finish_event(call, event, end)

    def _finish(self, call: _Call | None, output: Any, config: Any) -> None:
        if call is None:
            return
        site = self.site
        rec = site.graph.recorder
        try:
            end = _time_ns()
            check = site.check_ensures
            broken = check(update_of(output)) if check is not None else None
            run, start, attempt, span, token, _ = call
            if broken is None and not rec.sinks:
                # the happy path (kept in this function, see _begin): count the attempt,
                # open the static edges (targets known valid at instrument time) and count
                # those into END, under one lock; no event is built
                ledger = rec.ledger
                lock = ledger.lock
                lock.acquire()
                try:
                    ledger.node_ok_locked(site.row, attempt, end - start, site.end_rows)
                    if run is not None and site.static_pending:
                        run.open_locked(site.name, site.static_pending, end)
                finally:
                    lock.release()
                if rec.duration_histogram is not None:
                    if run is not None:
                        run.durations.append((site.ok_attributes, (end - start) / 1e9, span))
                    else:
                        rec.duration_histogram.record((end - start) / 1e9, site.ok_attributes)
                if span is not None:
                    rec.spans.node_end_ok(span, token, end)
            else:
                self._succeeded(call, config, end, broken)
                for target, kind in site.static_targets:
                    site.graph.route(run, site.name, target, kind, end)
            if type(output) is not dict:  # a plain update holds no Command or Send
                commands = list(lg.command_gotos(output))
                if commands:
                    self._open_commands(commands, run, end)
                elif isinstance(output, lg.Send):
                    site.graph.route(run, site.name, output, "send", end)
        except Exception as exc:
            rec.internal_error(f"node {site.name}", exc)
            return
        if broken is not None and rec.raise_on_violation:
            raise _violation_error(broken, where="ensures", node=site.name, source=None)

    def _succeeded(self, call: _Call, config: Any, end: int, broken: Violation | None) -> None:
        site = self.site
        rec = site.graph.recorder
        run, start, attempt, span, token, _ = call
        if broken is None and not rec.sinks:
            with rec.ledger.lock:
                rec.ledger.node_ok_locked(site.row, attempt, end - start, ())
            rec.record_duration(site.name, True, (end - start) / 1e9)
            if span is not None:
                rec.spans.node_end_ok(span, token, end)
            return
        event = NodeOutcome(
            graph=rec.graph,
            node=site.name,
            ok=broken is None,
            attempt=attempt,
            final=True,
            start_ns=start,
            end_ns=end,
            step=lg.step_of(config),
            error_type=None if broken is None else sc.ERROR_CONTRACT,
            contract=None if broken is None else broken.contract,
            fields=() if broken is None else broken.fields,
            run_id=run.run_id if run is not None else 0,
        )
        self._finish_event(call, event, end)

    def _finish_event(self, call: _Call, event: NodeOutcome, end: int) -> None:
        rec = self.site.graph.recorder
        run, start, _, span, token, _ = call
        rec.emit(event)
        rec.record_duration(event.node, event.ok, (end - start) / 1e9)
        if not event.ok:
            if event.final:
                rec.failed(run, event)
            elif rec.spans is not None and not rec.live:
                rec.spans.failure(run, event)
        if span is not None:
            rec.spans.node_end(span, token, event, end)

    def _open_commands(
        self, commands: Sequence[Any], run: _Run | None, now: int, addressed_here: bool = False
    ) -> None:
        site = self.site
        for cmd in commands:
            if cmd.graph is not None and not addressed_here:
                continue  # Command.PARENT: the graph it is addressed to records it
            for dest in lg.goto_list(cmd):
                site.graph.route(run, site.name, dest, "command", now)

    # -- the Runnable interface: exactly the inner call in between -------------------------

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        call = self._begin(input, config)
        if call is not None and call[5] is not _UNCHANGED:
            input = call[5]  # an injected handoff fault replaced LangGraph's input
        try:
            output = self.inner.invoke(input, config, **kwargs)
        except BaseException as exc:
            self._fail(call, exc, config)
            raise
        self._finish(call, output, config)
        return output

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        call = self._begin(input, config)
        if call is not None and call[5] is not _UNCHANGED:
            input = call[5]  # an injected handoff fault replaced LangGraph's input
        try:
            output = await self.inner.ainvoke(input, config, **kwargs)
        except BaseException as exc:
            self._fail(call, exc, config)
            raise
        self._finish(call, output, config)
        return output

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        call = self._begin(input, config)
        if call is not None and call[5] is not _UNCHANGED:
            input = call[5]  # an injected handoff fault replaced LangGraph's input
        final: Any = None
        started = False
        try:
            for chunk in self.inner.stream(input, config, **kwargs):
                final = _accumulate(final, chunk, started)
                started = True
                yield chunk
        except BaseException as exc:
            self._fail(call, exc, config)
            raise
        self._finish(call, final, config)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        call = self._begin(input, config)
        if call is not None and call[5] is not _UNCHANGED:
            input = call[5]  # an injected handoff fault replaced LangGraph's input
        final: Any = None
        started = False
        try:
            async for chunk in self.inner.astream(input, config, **kwargs):
                final = _accumulate(final, chunk, started)
                started = True
                yield chunk
        except BaseException as exc:
            self._fail(call, exc, config)
            raise
        self._finish(call, final, config)

    def __repr__(self) -> str:
        return f"NodeProbe({self.site.name!r}, {self.inner!r})"


def _accumulate(final: Any, chunk: Any, started: bool) -> Any:
    if not started:
        return chunk
    try:
        return final + chunk
    except Exception:
        return chunk


class StepProbe(_Probe):
    """Wraps one step of a node that is a sequence (``prompt | model``).

    LangGraph flattens a sequence into the node's own steps; wrapping each
    step in place (instead of the sequence as a whole) keeps the callback
    tree, and so ``astream_events`` and LangSmith traces, exactly as bare.
    The first step opens the call, the last closes it, any step can fail it;
    the call is found again by the task's checkpoint namespace.
    """

    def __init__(self, inner: Runnable[Any, Any], node: NodeProbe, first: bool, last: bool) -> None:
        self.inner = inner
        self.node = node
        self.first = first
        self.last = last

    def _open(self, input: Any, config: Any) -> None:
        if self.first:
            call = self.node._begin(input, config)
            if call is not None:
                with self.node._lock:
                    self.node._inflight[lg.task_key(config) or ""] = call

    def _take(self, config: Any) -> _Call | None:
        with self.node._lock:
            return self.node._inflight.pop(lg.task_key(config) or "", None)

    def _failed(self, exc: BaseException, config: Any) -> None:
        self.node._fail(self._take(config), exc, config)

    def _done(self, output: Any, config: Any) -> None:
        if self.last:
            self.node._finish(self._take(config), output, config)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        self._open(input, config)
        try:
            output = self.inner.invoke(input, config, **kwargs)
        except BaseException as exc:
            self._failed(exc, config)
            raise
        self._done(output, config)
        return output

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        self._open(input, config)
        try:
            output = await self.inner.ainvoke(input, config, **kwargs)
        except BaseException as exc:
            self._failed(exc, config)
            raise
        self._done(output, config)
        return output

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        self._open(input, config)
        yield from self._watch(self.inner.stream(input, config, **kwargs), config)

    def transform(
        self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        yield from self._watch(self.inner.transform(input, config, **kwargs), config)

    def _watch(self, chunks: Iterator[Any], config: Any) -> Iterator[Any]:
        final: Any = None
        started = False
        try:
            for chunk in chunks:
                final = _accumulate(final, chunk, started)
                started = True
                yield chunk
        except BaseException as exc:
            self._failed(exc, config)
            raise
        self._done(final, config)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        self._open(input, config)
        async for chunk in self._awatch(self.inner.astream(input, config, **kwargs), config):
            yield chunk

    async def atransform(
        self, input: AsyncIterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async for chunk in self._awatch(self.inner.atransform(input, config, **kwargs), config):
            yield chunk

    async def _awatch(self, chunks: AsyncIterator[Any], config: Any) -> AsyncIterator[Any]:
        final: Any = None
        started = False
        try:
            async for chunk in chunks:
                final = _accumulate(final, chunk, started)
                started = True
                yield chunk
        except BaseException as exc:
            self._failed(exc, config)
            raise
        self._done(final, config)


def probe_steps(steps: list[Runnable[Any, Any]], node: NodeProbe) -> list[Runnable[Any, Any]]:
    """Wrap each step of a sequence node (see :class:`StepProbe`)."""
    last = len(steps) - 1
    return [StepProbe(step, node, i == 0, i == last) for i, step in enumerate(steps)]


class StartProbe(_Probe):
    """Wraps the entry's first writer: opens the START handoffs of a fresh run."""

    def __init__(
        self, inner: Runnable[Any, Any], graph: GraphSites, targets: tuple[str, ...]
    ) -> None:
        self.inner = inner
        self.graph = graph
        self.targets = targets
        self.source = graph.qualify(lg.START)
        ledger = graph.recorder.ledger
        # (qualified target, kind, ledger row) per entry edge into a node, bound once
        self.into_nodes = tuple(
            (graph.qualify(t), "edge", ledger.handoff_row(self.source, graph.qualify(t)))
            for t in targets
            if t != lg.END
        )
        self.into_end = tuple(t for t in targets if t == lg.END)

    def _open(self) -> None:
        try:
            run = _CURRENT_RUN.get()
            now = _time_ns()
            if run is None or self.graph.recorder.sinks:
                for target in self.targets:
                    self.graph.route(run, self.source, target, "edge", now)
                return
            with run.ledger.lock:
                run.open_locked(self.source, self.into_nodes, now)
            for target in self.into_end:
                self.graph.route(run, self.source, target, "edge", now)
        except Exception as exc:
            self.graph.recorder.internal_error("entry", exc)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        self._open()
        return self.inner.invoke(input, config, **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        self._open()
        return await self.inner.ainvoke(input, config, **kwargs)

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        self._open()
        yield from self.inner.stream(input, config, **kwargs)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        self._open()
        async for chunk in self.inner.astream(input, config, **kwargs):
            yield chunk

    def transform(
        self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        self._open()
        yield from self.inner.transform(input, config, **kwargs)

    async def atransform(
        self, input: AsyncIterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        self._open()
        async for chunk in self.inner.atransform(input, config, **kwargs):
            yield chunk


class RouterProbe(_Probe):
    """Wraps a router's path function: counts the decision and opens its handoffs."""

    def __init__(
        self,
        inner: Runnable[Any, Any],
        graph: GraphSites,
        router: str,
        source: str,
        ends: Mapping[Any, str] | None,
    ) -> None:
        self.inner = inner
        self.graph = graph
        self.router = router
        self.source = source
        self.ends = ends

    def _failed(self, exc: BaseException, start: int) -> None:
        if isinstance(exc, lg.GraphBubbleUp) or not isinstance(exc, Exception):
            return
        try:
            rec = self.graph.recorder
            run = _CURRENT_RUN.get()
            now = _time_ns()
            error_type = rec.error_type(exc)
            event = RouterOutcome(
                graph=rec.graph,
                router=self.router,
                source=self.source,
                ok=False,
                targets=(),
                start_ns=start,
                end_ns=now,
                error_type=error_type,
                fault=bool(getattr(exc, "__coordgap_fault__", False)),
                run_id=run.run_id if run is not None else 0,
            )
            rec.emit(event)
            rec.failed(run, event)
            handoff = HandoffOutcome(
                graph=rec.graph,
                source=self.source,
                target=sc.UNKNOWN_TARGET,
                kind="conditional",
                ok=False,
                start_ns=start,
                end_ns=now,
                error_type=error_type,
                fault=event.fault,
                run_id=event.run_id,
            )
            rec.emit(handoff)
            rec.failed(run, handoff)
        except Exception as inner:
            self.graph.recorder.internal_error(f"router {self.router}", inner)

    def _routed(self, result: Any, start: int) -> None:
        try:
            rec = self.graph.recorder
            run = _CURRENT_RUN.get()
            now = _time_ns()
            results = result if isinstance(result, (list, tuple)) else [result]
            targets: list[str] = []
            ok = True
            for item in results:
                dest = item
                if self.ends is not None and not isinstance(item, lg.Send):
                    try:
                        dest = self.ends[item]
                    except (KeyError, TypeError):
                        dest = None  # LangGraph raises KeyError here
                if dest is None or dest == lg.START:
                    target, valid = self.graph.route(run, self.source, object(), "conditional", now)
                else:
                    target, valid = self.graph.route(run, self.source, dest, "conditional", now)
                ok = ok and valid
                targets.append(target)
            if ok and not rec.sinks:
                rec.ledger.router_ok(self.router, self.source, tuple(targets))
                return
            event = RouterOutcome(
                graph=rec.graph,
                router=self.router,
                source=self.source,
                ok=ok,
                targets=tuple(targets),
                start_ns=start,
                end_ns=now,
                error_type=None if ok else sc.ERROR_INVALID_ROUTE,
                run_id=run.run_id if run is not None else 0,
            )
            rec.emit(event)
            if not ok:
                rec.failed(run, event)
        except Exception as exc:
            self.graph.recorder.internal_error(f"router {self.router}", exc)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        start = _time_ns()
        try:
            result = self.inner.invoke(input, config, **kwargs)
        except BaseException as exc:
            self._failed(exc, start)
            raise
        self._routed(result, start)
        return result

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        start = _time_ns()
        try:
            result = await self.inner.ainvoke(input, config, **kwargs)
        except BaseException as exc:
            self._failed(exc, start)
            raise
        self._routed(result, start)
        return result

    def __repr__(self) -> str:
        return f"RouterProbe({self.router!r}, {self.inner!r})"
