"""Probes: what coordgap runs around each task LangGraph executes, and around each router.

A :class:`TaskProbe` wraps the runnable LangGraph executes for a node's task: the
node itself followed by its writers (state updates, static edges, joins, routers,
``Command`` and ``Send`` handling). It calls it with exactly the arguments LangGraph
gave and returns (or raises) exactly what it returned (or raised); around that call:

- when the task starts, the handoffs written into this node are delivered, and the
  state it receives is checked against the node's ``requires`` and edge contracts;
- when the task ends, its outcome is counted, and **its handoffs are read from what
  it wrote**: LangGraph collects a task's writes in one buffer (``branch:to:X``, join
  barriers, ``Send`` packets), and a handoff exists exactly when the task wrote it. A
  task that wrote no successor handed off to the graph's END. A task that raised
  wrote nothing (LangGraph discards its writes).

A :class:`RouterProbe` wraps a conditional edge's path function. It runs inside its
source node's task (after the node), so it only leaves its decision on the task;
the task probe counts it with the task's outcome: a router failure on an attempt
that LangGraph's ``RetryPolicy`` retries is a failed attempt of the task, not a
failed decision.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

from . import _compat as lg
from . import semconv as sc
from ._ledger import count_handoff, count_node, count_router
from ._run import CURRENT_RUN, CURRENT_TASK, Pending, Recorder, Run, Task
from .contracts import Check, Violation
from .errors import ContractViolation
from .events import HandoffKind, HandoffOutcome, NodeOutcome, RouterOutcome

_time_ns = time.time_ns

_BRANCH = lg.BRANCH_PREFIX
_SEND = object()
"""Marks the channel a ``Send`` is written to in :attr:`GraphSites.routes`."""


# -- sites: what a probe knows about its place in the graph -----------------------------


@dataclass
class GraphSites:
    """Static facts about one (sub)graph, shared by its probes."""

    recorder: Recorder
    prefix: str
    nodes: frozenset[str]
    """The graph's raw node names (LangGraph's, error handlers included)."""
    routes: dict[str, Any] = field(default_factory=dict)
    """Per channel a task may write to hand off: the raw target (``branch:to:X``, a join's
    barrier), or :data:`_SEND` for Send packets."""

    def __post_init__(self) -> None:
        for raw in self.nodes:
            self.routes[_BRANCH + raw] = raw
        self.routes[lg.TASKS_CHANNEL] = _SEND

    @property
    def end_name(self) -> str:
        """This graph's END as a handoff target (``outer/__end__`` in a subgraph)."""
        return self.prefix + sc.END

    def qualify(self, raw: str) -> str:
        if raw == lg.END:
            return self.end_name
        if raw == lg.START:
            return self.prefix + sc.START
        return self.prefix + raw


@dataclass(eq=False)
class NodeSite:
    """One node (or the graph's entry): its names, contracts, edges, retry policies, rows."""

    graph: GraphSites
    raw: str
    static: Mapping[str, str] = field(default_factory=dict)
    """Raw target -> kind (``edge`` or ``join``) of each static out-edge into a node."""
    end_kind: HandoffKind | None = None
    """The declared kind of this node's handoff into END (None: not declared)."""
    requires: Check | None = None
    ensures: Check | None = None
    edge_checks: Mapping[str, Check] = field(default_factory=dict)
    policies: tuple[Any, ...] = ()
    corrupt: Callable[..., tuple[Any, bool]] | None = None
    """Injected handoff faults (``coordgap.faults``): corrupts the state delivered here."""
    joins: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """The barrier channel of each join into this node, and the (qualified) sources it waits for."""
    # Bound once here so a task looks nothing up:
    name: str = field(init=False)
    is_entry: bool = field(init=False)
    row: Any = field(init=False)
    """The ledger row counting this node."""
    end_row: Any = field(init=False)
    """The ledger row counting this node's handoffs into END."""
    out_rows: dict[str, Any] = field(init=False)
    """Raw target -> the ledger row of this node's handoff into it (filled as seen)."""
    check_requires: Callable[[Any], Violation | None] | None = field(init=False)
    check_ensures: Callable[[Any], Violation | None] | None = field(init=False)
    checks_handoffs: bool = field(init=False)
    """Anything to check or corrupt when a handoff is delivered here."""
    ok_attributes: dict[str, Any] = field(init=False)
    """The duration histogram's attributes for this node's successful attempts."""
    probe: TaskProbe | None = field(init=False, default=None)
    """The probe around this node's tasks (set when it is installed)."""

    def __post_init__(self) -> None:
        graph = self.graph
        ledger = graph.recorder.ledger
        self.is_entry = self.raw == lg.START
        self.name = graph.qualify(self.raw)
        self.row = None if self.is_entry else ledger.node_row(self.name)
        self.end_row = ledger.handoff_row(self.name, graph.end_name)
        self.out_rows = {t: ledger.handoff_row(self.name, graph.qualify(t)) for t in self.static}
        self.check_requires = self.requires.validate if self.requires is not None else None
        self.check_ensures = self.ensures.validate if self.ensures is not None else None
        self.checks_handoffs = bool(
            self.requires is not None or self.edge_checks or self.corrupt is not None
        )
        self.ok_attributes = graph.recorder.duration_attributes(self.name, True)

    def cache_hit(self, run: Run, graph_ns: str, writes: Any) -> None:
        """Count a task LangGraph answered from its cache: delivered, ok, its writes replayed."""
        probe = self.probe
        if probe is None:
            return
        now = _time_ns()
        call = _Call(run, Task(run, self, self.name + "/"), now, 1, graph_ns)
        with run.ledger.lock:
            for p in run.take_locked(graph_ns, self.name, False, None, None, self.joins):
                count_handoff(p[4], True, p[1])
        outs, invalid, end_kind = probe._handoffs_written(call.task, writes)
        if run.quiet:
            probe._count_quiet(call, run, now, outs, end_kind)
        else:
            probe._count_events(call, run, now, outs, end_kind, None, None)
        for kind in invalid:
            _invalid_route(self.graph.recorder, run, self.name, kind, now)

    def out_row_locked(self, raw: str) -> Any:
        """Return the row of this node's handoff into ``raw``; the caller holds the lock."""
        row = self.out_rows.get(raw)
        if row is None:
            graph = self.graph
            row = self.out_rows[raw] = graph.recorder.ledger.handoff_row_locked(
                self.name, graph.qualify(raw)
            )
        return row


@dataclass(eq=False)
class RouterSite:
    """One router: its id, its source node, its path map, its ledger row."""

    graph: GraphSites
    router: str
    source_raw: str
    ends: Mapping[Any, str] | None
    source: str = field(init=False)
    row: Any = field(init=False)

    def __post_init__(self) -> None:
        self.source = self.graph.qualify(self.source_raw)
        self.row = self.graph.recorder.ledger.router_row(self.router, self.source)

    def targets(self, result: Any) -> tuple[tuple[str, ...], bool]:
        """Return the qualified targets a path function's result names, and whether each is a
        node (or END) LangGraph will route to."""
        results = result if isinstance(result, (list, tuple)) else [result]
        graph = self.graph
        out: list[str] = []
        valid = True
        for item in results:
            dest = item
            if isinstance(item, lg.Send):
                dest = item.node
            elif self.ends is not None:
                try:
                    dest = self.ends[item]
                except (KeyError, TypeError):
                    dest = None  # LangGraph raises KeyError here
            named = isinstance(dest, str) and (dest in graph.nodes or dest == lg.END)
            if named and not (isinstance(item, lg.Send) and dest == lg.END):
                out.append(graph.qualify(dest))
                continue
            out.append(sc.UNKNOWN_TARGET)
            valid = False
        return tuple(out), valid


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
    """A runnable standing in for LangGraph's: named as it is, calling it unchanged."""

    inner: Runnable[Any, Any]

    @property
    def name(self) -> str | None:  # type: ignore[override]
        return getattr(self.inner, "name", None)

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        return self.inner.get_name(suffix, name=name)


# -- the task probe --------------------------------------------------------------------


class _Call:
    """One attempt of a task in flight, from _begin to _end / _fail."""

    __slots__ = (
        "attempt",
        "graph_ns",
        "received",
        "run",
        "span",
        "span_token",
        "start_ns",
        "step",
        "task",
        "task_token",
    )

    def __init__(
        self,
        run: Run | None,
        task: Task,
        start_ns: int,
        attempt: int,
        graph_ns: str = "",
        step: int | None = None,
    ) -> None:
        self.run = run
        self.task = task
        self.start_ns = start_ns
        self.attempt = attempt
        self.graph_ns = graph_ns
        """The namespace of the graph instance the task runs in ("" at the top)."""
        self.step = step
        """The superstep the task runs in (of its graph instance)."""
        self.received: list[tuple[str, str]] = []
        """(source, kind) of the handoffs delivered intact (for the live node span)."""
        self.span: Any = None
        self.span_token: Any = None
        self.task_token: Any = None


class TaskProbe(_Probe):
    """Wraps the runnable LangGraph executes for one node's tasks (node and writers)."""

    def __init__(self, inner: Runnable[Any, Any], site: NodeSite) -> None:
        self.inner = inner
        self.site = site
        site.probe = self

    # -- begin: the handoffs into this node are delivered ------------------------------

    def _begin(self, input: Any, config: Any) -> tuple[_Call | None, Any]:
        """Start an attempt; return it (None when coordgap failed open) and the input the
        task runs on (LangGraph's, unless an injected handoff fault corrupted it)."""
        site = self.site
        rec = site.graph.recorder
        try:
            run = CURRENT_RUN.get()
            now = _time_ns()
            try:
                attempt = lg.runtime_attempt(config[lg.CONF][lg.CONFIG_KEY_RUNTIME])
            except Exception:
                attempt = 1
            # The graph instance a task runs in is named by the task running that (sub)graph:
            # its namespace (a task's own namespace can sit under another task's, as an error
            # handler's does under the failed task's).
            outer = CURRENT_TASK.get()
            graph_ns = outer.ns if outer is not None and outer.run is run else ""
            task = Task(run, site, site.name + "/", lg.task_namespace(config))
            call = _Call(run, task, now, attempt, graph_ns, lg.step_of(config))
            if run is not None:
                if run.deferred:
                    flush_deferred(run, graph_ns=graph_ns, step=call.step)
                if not site.is_entry and not site.graph.prefix:
                    run.last_node = site.name  # where a run-level error died (top level)
                if attempt == 1 and not site.is_entry:
                    # a retry's handoffs were delivered to the first attempt
                    input = self._deliver(run, call, input, config)
            if rec.live and not site.is_entry:
                # started after the handoffs were checked, so what it received is set in one go
                call.span, call.span_token = rec.spans.node_start(
                    site.name, now, attempt, lg.step_of(config), call.received
                )
            call.task_token = CURRENT_TASK.set(task)
            return call, input
        except ContractViolation:
            raise
        except Exception as exc:
            rec.internal_error(f"node {site.name}", exc)
            return None, input

    def _deliver(self, run: Run, call: _Call, input: Any, config: Any) -> Any:
        site = self.site
        push = run.has_sends and lg.is_push(config)
        ledger = run.ledger
        if run.quiet and not site.checks_handoffs:
            # the happy path: nothing to check, nobody wants events: count and go
            lock = ledger.lock
            lock.acquire()
            try:
                for p in run.take_locked(
                    call.graph_ns, site.name, push, input, call.step, site.joins
                ):
                    count_handoff(p[4], True, p[1])
            finally:
                lock.release()
            return input
        with ledger.lock:
            delivered = run.take_locked(
                call.graph_ns, site.name, push, input, call.step, site.joins
            )
        return self._check_delivered(run, call, input, config, delivered, push)

    def _check_delivered(
        self,
        run: Run,
        call: _Call,
        input: Any,
        config: Any,
        delivered: list[Pending],
        push: bool,
    ) -> Any:
        """Check (and count as events) the handoffs into this node; return the input."""
        site = self.site
        rec = site.graph.recorder
        faulted = False
        if site.corrupt is not None and delivered:
            input, faulted = site.corrupt(
                input, [p[0] for p in delivered], site.requires, site.edge_checks
            )
        state = lg.send_state(input, config) if push and site.checks_handoffs else input
        requires = site.check_requires(state) if site.check_requires is not None else None
        violation: ContractViolation | None = None
        for source, kind, start_ns, _, row, _ in delivered:
            broken = requires
            edge = site.edge_checks.get(source)
            if broken is None and edge is not None:
                broken = edge.validate(state)
            if broken is None:
                call.received.append((source, kind))
                if run.quiet:
                    with run.ledger.lock:
                        count_handoff(row, True, kind)
                    continue
            rec.emit(
                run,
                HandoffOutcome(
                    graph=rec.graph,
                    source=source,
                    target=site.name,
                    kind=kind,
                    ok=broken is None,
                    start_ns=start_ns,
                    end_ns=call.start_ns,
                    error_type=None if broken is None else sc.ERROR_CONTRACT,
                    contract=None if broken is None else broken.contract,
                    fields=() if broken is None else broken.fields,
                    fault=faulted and broken is not None,
                    run_id=run.run_id,
                    captured=None
                    if broken is None or rec.capture is None
                    else rec.capture.render(state),
                ),
            )
            if broken is not None and violation is None:
                violation = _violation_error(broken, where="handoff", node=site.name, source=source)
        if requires is not None and not delivered:
            # The state broke `requires` but no handoff was traced here (a resumed run)
            rec.emit(
                run,
                HandoffOutcome(
                    graph=rec.graph,
                    source=sc.UNKNOWN_TARGET,
                    target=site.name,
                    kind="edge",
                    ok=False,
                    start_ns=call.start_ns,
                    end_ns=call.start_ns,
                    error_type=sc.ERROR_CONTRACT,
                    contract=requires.contract,
                    fields=requires.fields,
                    run_id=run.run_id,
                ),
            )
            violation = _violation_error(requires, where="requires", node=site.name, source=None)
        if violation is not None and rec.raise_on_violation:
            raise violation
        return input

    # -- end: the attempt's outcome, and the handoffs the task wrote ---------------------

    def _leave(self, call: _Call) -> None:
        try:
            CURRENT_TASK.reset(call.task_token)
        except Exception:  # reset from another context (a stream closed elsewhere)
            pass

    def _end(self, call: _Call | None, config: Any) -> None:
        if call is None:
            return
        self._leave(call)
        site = self.site
        rec = site.graph.recorder
        try:
            end = _time_ns()
            run = call.run
            writes = lg.task_writes(config)
            outs, invalid, end_kind = self._handoffs_written(call.task, writes)
            broken = None
            if site.check_ensures is not None and writes is not None:
                broken = site.check_ensures(_update_of(writes))
            if run is not None and run.deferred:
                flush_deferred(run, ended=call.task.ns)
            if run is not None and run.quiet and broken is None:
                self._count_quiet(call, run, end, outs, end_kind)
            else:
                self._count_events(call, run, end, outs, end_kind, broken, config)
            for kind in invalid:
                _invalid_route(rec, run, site.name, kind, end)
        except Exception as exc:
            rec.internal_error(f"node {site.name}", exc)
            return
        if broken is not None and rec.raise_on_violation:
            raise _violation_error(broken, where="ensures", node=site.name, source=None)

    def _handoffs_written(
        self, task: Task, writes: Any
    ) -> tuple[list[tuple[str, HandoffKind, Any]], list[HandoffKind], HandoffKind | None]:
        """Return what the task wrote: (raw target, kind, Send payload) per handoff into a
        node, the kind of each write that named no node, and the kind of the handoff into
        END (None when the task handed off to some node)."""
        site = self.site
        routes = site.graph.routes
        static = site.static
        routed = task.routed
        chosen: list[str] | None = None
        if routed:
            chosen = [t for _, targets, _, _, _ in routed for t in targets]
        outs: list[tuple[str, HandoffKind, Any]] = []
        invalid: list[HandoffKind] = []
        claimed: set[str] | None = None
        for channel, value in writes or ():
            raw = routes.get(channel)
            if raw is None:
                if channel.startswith(_BRANCH):
                    # LangGraph logs "wrote to unknown channel" and drops it
                    if chosen is not None and sc.UNKNOWN_TARGET in chosen:
                        chosen.remove(sc.UNKNOWN_TARGET)
                        invalid.append("conditional")
                    else:
                        invalid.append("command")
                continue
            if raw is _SEND:
                if isinstance(value, lg.Send) and value.node in site.graph.nodes:
                    outs.append((value.node, "send", value.arg))
                else:  # LangGraph logs "Ignoring unknown node name" and drops it
                    invalid.append("send")
                continue
            kind: HandoffKind
            if channel.startswith(lg.JOIN_PREFIX):
                outs.append((raw, "join", channel))  # its side of the barrier
                continue
            if raw in static and (claimed is None or raw not in claimed):
                kind = static[raw]  # type: ignore[assignment]
                if claimed is None:
                    claimed = set()
                claimed.add(raw)
            elif chosen is not None and site.graph.qualify(raw) in chosen:
                chosen.remove(site.graph.qualify(raw))
                kind = "conditional"
            else:
                kind = "command"
            outs.append((raw, kind, None))
        end_kind: HandoffKind | None = None
        if not outs and not invalid:
            if chosen is not None and site.graph.end_name in chosen:
                end_kind = "conditional"
            else:
                end_kind = site.end_kind or "edge"
        return outs, invalid, end_kind

    def _count_quiet(
        self,
        call: _Call,
        run: Run,
        end: int,
        outs: list[tuple[str, HandoffKind, Any]],
        end_kind: HandoffKind | None,
    ) -> None:
        """Count a successful attempt, its router decisions and its handoffs; no event."""
        site = self.site
        ledger = run.ledger
        routed = call.task.routed
        lock = ledger.lock
        lock.acquire()
        try:
            if site.row is not None:
                count_node(site.row, True, call.attempt, True, end - call.start_ns)
            if routed:
                for router, targets, valid, _, _ in routed:
                    if valid:  # a failed decision is an event (below)
                        count_router(router.row, True, targets)
            for raw, kind, arg in outs:
                run.open_locked(
                    call.graph_ns,
                    site.graph.qualify(raw),
                    (site.name, kind, end, arg, site.out_row_locked(raw), call.step),
                )
            if end_kind is not None:
                count_handoff(site.end_row, True, end_kind)
        finally:
            lock.release()
        if routed:
            for router, targets, valid, start, stop in routed:
                if not valid:
                    _router_failed_event(
                        site.graph.recorder, run, router, targets, start, stop, None
                    )
        if site.row is not None:
            site.graph.recorder.record_duration(
                run, site.name, True, (end - call.start_ns) / 1e9, call.span
            )
        if call.span is not None:
            site.graph.recorder.spans.node_end_ok(call.span, call.span_token, end)

    def _count_events(
        self,
        call: _Call,
        run: Run | None,
        end: int,
        outs: list[tuple[str, HandoffKind, Any]],
        end_kind: HandoffKind | None,
        broken: Violation | None,
        config: Any,
    ) -> None:
        """Count a finished attempt as events (sinks, live spans, linked or failed)."""
        site = self.site
        rec = site.graph.recorder
        run_id = run.run_id if run is not None else 0
        event = None
        if site.row is not None:
            event = NodeOutcome(
                graph=rec.graph,
                node=site.name,
                ok=broken is None,
                attempt=call.attempt,
                final=True,
                start_ns=call.start_ns,
                end_ns=end,
                step=lg.step_of(config),
                error_type=None if broken is None else sc.ERROR_CONTRACT,
                contract=None if broken is None else broken.contract,
                fields=() if broken is None else broken.fields,
                run_id=run_id,
            )
            rec.emit(run, event)
            rec.record_duration(
                run, site.name, broken is None, (end - call.start_ns) / 1e9, call.span
            )
        for router, targets, valid, start, stop in call.task.routed or ():
            if valid:
                rec.emit(
                    run,
                    RouterOutcome(
                        graph=rec.graph,
                        router=router.router,
                        source=router.source,
                        ok=True,
                        targets=targets,
                        start_ns=start,
                        end_ns=stop,
                        run_id=run_id,
                    ),
                )
            else:
                _router_failed_event(rec, run, router, targets, start, stop, None)
        if run is not None:
            with run.ledger.lock:
                for raw, kind, arg in outs:
                    run.open_locked(
                        call.graph_ns,
                        site.graph.qualify(raw),
                        (site.name, kind, end, arg, site.out_row_locked(raw), call.step),
                    )
        if end_kind is not None:
            rec.emit(
                run,
                HandoffOutcome(
                    graph=rec.graph,
                    source=site.name,
                    target=site.graph.end_name,
                    kind=end_kind,
                    ok=True,
                    start_ns=end,
                    end_ns=end,
                    run_id=run_id,
                ),
            )
        if call.span is not None:
            rec.spans.node_end(call.span, call.span_token, event, end)

    def _fail(self, call: _Call | None, exc: BaseException, config: Any) -> None:
        if call is None:
            return
        self._leave(call)
        try:
            self._failed(call, exc, config)
        except Exception as inner:
            self.site.graph.recorder.internal_error(f"node {self.site.name}", inner)

    def _failed(self, call: _Call, exc: BaseException, config: Any) -> None:
        site = self.site
        rec = site.graph.recorder
        run = call.run
        end = _time_ns()
        task = call.task
        if run is not None and run.deferred:
            flush_deferred(run, ended=task.ns)
        if isinstance(exc, lg.ParentCommand):
            # The node left its graph through a Command to an ancestor: its own work succeeded.
            # When this graph is the one addressed, LangGraph runs the task's writers with the
            # Command right after this returns: read what they write once the step is over.
            if run is not None and lg.parent_command_targets_this_graph(exc, config, site.raw):
                cmd = lg.command_of(exc)
                writes = lg.task_writes(config)
                if writes is not None:
                    run.deferred.append((call.graph_ns, call.step, self, writes, cmd, end))
            task.routed = None
            self._count_events_or_quiet(call, run, end, config)
            return
        if lg.is_control_flow(exc):
            # interrupts and cancellation are control flow, not failures
            if run is not None and isinstance(exc, lg.GraphBubbleUp):
                run.interrupted = True
            if call.span is not None:
                rec.spans.node_end(call.span, call.span_token, None, end)
            return
        final = not lg.will_retry(site.policies, exc, call.attempt)
        router_error = task.router_error
        invalid = None
        if router_error is None and task.routed:
            # LangGraph raises after a path function named no node (KeyError outside the
            # path map, ValueError for None, InvalidUpdateError for a Send to END)
            invalid = next((r for r in task.routed if not r[2]), None)
        if final and (router_error is not None or invalid is not None):
            # the router failed on the task's last attempt: the node did its work, the
            # decision failed
            task.routed = None
            self._count_events_or_quiet(call, run, end, config)
            if router_error is not None:
                router, error, start, stop = router_error
                _router_failed_event(rec, run, router, (), start, stop, error)
            elif invalid is not None:
                # LangGraph raised for the route that named no node: nothing was written
                router, _, _, start, stop = invalid
                _router_failed_event(rec, run, router, (), start, stop, exc)
            return
        if site.row is None:
            return
        event = NodeOutcome(
            graph=rec.graph,
            node=site.name,
            ok=False,
            attempt=call.attempt,
            final=final,
            start_ns=call.start_ns,
            end_ns=end,
            step=lg.step_of(config),
            error_type=rec.error_type(exc),
            fault=bool(getattr(exc, "__coordgap_fault__", False)),
            run_id=run.run_id if run is not None else 0,
        )
        rec.emit(run, event)
        rec.record_duration(run, site.name, False, (end - call.start_ns) / 1e9, call.span)
        if call.span is not None:
            rec.spans.node_end(call.span, call.span_token, event, end)

    def _count_events_or_quiet(self, call: _Call, run: Run | None, end: int, config: Any) -> None:
        """Count the node's successful attempt with no handoff (its writes come later, or never)."""
        if run is not None and run.quiet:
            site = self.site
            if site.row is not None:
                with run.ledger.lock:
                    count_node(site.row, True, call.attempt, True, end - call.start_ns)
            if call.span is not None:
                site.graph.recorder.spans.node_end_ok(call.span, call.span_token, end)
            return
        self._count_events(call, run, end, [], None, None, config)

    def count_deferred(self, run: Run, entry: tuple[Any, ...]) -> None:
        """Count the handoffs LangGraph wrote for this node after its probe returned (the
        writers it ran with a parent command addressed to this graph)."""
        graph_ns, step, _, writes, cmd, end = entry
        site = self.site
        rec = site.graph.recorder
        gotos = lg.goto_targets(cmd) if cmd is not None else []
        outs, invalid, end_kind = self._handoffs_written(Task(run, site, ""), writes)
        with run.ledger.lock:
            for raw, kind, arg in outs:
                if kind == "command" and raw not in gotos:
                    kind = "conditional"  # not the Command's: a router's (run outside the task)
                run.open_locked(
                    graph_ns,
                    site.graph.qualify(raw),
                    (site.name, kind, end, arg, site.out_row_locked(raw), step),
                )
        if end_kind is not None:
            rec.emit(
                run,
                HandoffOutcome(
                    graph=rec.graph,
                    source=site.name,
                    target=site.graph.end_name,
                    kind="command",
                    ok=True,
                    start_ns=end,
                    end_ns=end,
                    run_id=run.run_id,
                ),
            )
        for kind in invalid:
            _invalid_route(rec, run, site.name, kind, end)

    # -- the Runnable interface: exactly the inner call in between -------------------------

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        call, input = self._begin(input, config)
        try:
            output = self.inner.invoke(input, config, **kwargs)
        except BaseException as exc:
            self._fail(call, exc, config)
            raise
        self._end(call, config)
        return output

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        call, input = self._begin(input, config)
        try:
            output = await self.inner.ainvoke(input, config, **kwargs)
        except BaseException as exc:
            self._fail(call, exc, config)
            raise
        self._end(call, config)
        return output

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        call, input = self._begin(input, config)
        try:
            yield from self.inner.stream(input, config, **kwargs)
        except BaseException as exc:
            self._fail(call, exc, config)
            raise
        self._end(call, config)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        call, input = self._begin(input, config)
        try:
            async for chunk in self.inner.astream(input, config, **kwargs):
                yield chunk
        except BaseException as exc:
            self._fail(call, exc, config)
            raise
        self._end(call, config)

    def __repr__(self) -> str:
        return f"TaskProbe({self.site.name!r}, {self.inner!r})"


def _update_of(writes: Any) -> dict[str, Any]:
    """Return the state update a task wrote (what ``ensures`` checks): its state channels."""
    update: dict[str, Any] = {}
    for channel, value in writes:
        if channel.startswith(("branch:", "join:", "__")):
            continue
        update[channel] = value
    return update


def _invalid_route(
    rec: Recorder, run: Run | None, source: str, kind: HandoffKind, now: int
) -> None:
    rec.emit(
        run,
        HandoffOutcome(
            graph=rec.graph,
            source=source,
            target=sc.UNKNOWN_TARGET,
            kind=kind,
            ok=False,
            start_ns=now,
            end_ns=now,
            error_type=sc.ERROR_INVALID_ROUTE,
            run_id=run.run_id if run is not None else 0,
        ),
    )


def _router_failed_event(
    rec: Recorder,
    run: Run | None,
    router: RouterSite,
    targets: tuple[str, ...],
    start: int,
    stop: int,
    exc: BaseException | None,
) -> None:
    rec.emit(
        run,
        RouterOutcome(
            graph=rec.graph,
            router=router.router,
            source=router.source,
            ok=False,
            targets=targets,
            start_ns=start,
            end_ns=stop,
            error_type=sc.ERROR_INVALID_ROUTE if exc is None else rec.error_type(exc),
            fault=bool(getattr(exc, "__coordgap_fault__", False)),
            run_id=run.run_id if run is not None else 0,
        ),
    )


def flush_deferred(
    run: Run, *, graph_ns: str = "", step: int | None = None, ended: str | None = None
) -> None:
    """Count the handoffs LangGraph wrote after a task's probe returned, once all are written:
    when a task of a later superstep of that graph instance begins (``graph_ns``, ``step``),
    or when the task running that graph ends (``ended``: its namespace)."""
    if ended is not None:
        ready = [d for d in run.deferred if d[0].startswith(ended)]
    else:
        ready = [
            d
            for d in run.deferred
            if d[0] == graph_ns and (step is None or d[1] is None or d[1] < step)
        ]
    if not ready:
        return
    taken = {id(d) for d in ready}
    run.deferred = [d for d in run.deferred if id(d) not in taken]
    for entry in ready:
        entry[2].count_deferred(run, entry)


# -- the cache probe ---------------------------------------------------------------------


class CacheProbe(lg.BaseCache):  # type: ignore[type-arg]
    """Stands in for the graph's cache: a task LangGraph answers from it runs no probe, so the
    hits are counted here, from the writes the cache replays.

    LangGraph passes a graph's cache down to its subgraphs, so the probe on the instrumented
    graph sees the hits of every level; the task running a subgraph names its level.
    """

    def __init__(self, inner: Any, recorder: Recorder) -> None:
        super().__init__(serde=getattr(inner, "serde", None))
        self.inner = inner
        self.coordgap_inner = inner  # what the user gave (re-instrumenting reads it)
        self.recorder = recorder

    def get(self, keys: Any) -> Any:
        found = self.inner.get(keys)
        if found:
            self._hits(found)
        return found

    async def aget(self, keys: Any) -> Any:
        found = await self.inner.aget(keys)
        if found:
            self._hits(found)
        return found

    def set(self, pairs: Any) -> None:
        self.inner.set(pairs)

    async def aset(self, pairs: Any) -> None:
        await self.inner.aset(pairs)

    def clear(self, namespaces: Any = None) -> None:
        self.inner.clear(namespaces)

    async def aclear(self, namespaces: Any = None) -> None:
        await self.inner.aclear(namespaces)

    def _hits(self, found: Mapping[Any, Any]) -> None:
        try:
            run = CURRENT_RUN.get()
            if run is None or run.recorder is not self.recorder:
                return
            task = CURRENT_TASK.get()
            # inside a subgraph, the task running it names the level (and the graph instance)
            prefix, graph_ns = (
                ("", "") if task is None or task.run is not run else (task.prefix, task.ns)
            )
            for key, writes in found.items():
                node = lg.cached_node(key)
                site = self.recorder.sites.get(prefix + node) if node is not None else None
                if site is not None:
                    site.cache_hit(run, graph_ns, writes)
        except Exception as exc:
            self.recorder.internal_error("cache", exc)


# -- the router probe --------------------------------------------------------------------


class RouterProbe(_Probe):
    """Wraps a router's path function: leaves its decision on the task it runs in."""

    def __init__(self, inner: Runnable[Any, Any], site: RouterSite) -> None:
        self.inner = inner
        self.site = site

    def _task(self) -> Task | None:
        task = CURRENT_TASK.get()
        if (
            task is not None
            and task.site.graph is self.site.graph
            and task.site.raw == self.site.source_raw
        ):
            return task
        return None

    def _routed(self, result: Any, start: int) -> None:
        try:
            site = self.site
            targets, valid = site.targets(result)
            task = self._task()
            now = _time_ns()
            if task is None:
                # run outside its node's task (writers replaying a parent command): count now
                run = CURRENT_RUN.get()
                rec = site.graph.recorder
                if valid:
                    rec.emit(
                        run,
                        RouterOutcome(
                            graph=rec.graph,
                            router=site.router,
                            source=site.source,
                            ok=True,
                            targets=targets,
                            start_ns=start,
                            end_ns=now,
                            run_id=run.run_id if run is not None else 0,
                        ),
                    )
                else:
                    _router_failed_event(rec, run, site, targets, start, now, None)
                return
            if task.routed is None:
                task.routed = []
            task.routed.append((site, targets, valid, start, now))
        except Exception as exc:
            self.site.graph.recorder.internal_error(f"router {self.site.router}", exc)

    def _failed(self, exc: BaseException, start: int) -> None:
        if lg.is_control_flow(exc):
            return
        try:
            task = self._task()
            now = _time_ns()
            if task is not None:
                task.router_error = (self.site, exc, start, now)
                return
            run = CURRENT_RUN.get()
            _router_failed_event(self.site.graph.recorder, run, self.site, (), start, now, exc)
        except Exception as inner:
            self.site.graph.recorder.internal_error(f"router {self.site.router}", inner)

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
        return f"RouterProbe({self.site.router!r}, {self.inner!r})"
