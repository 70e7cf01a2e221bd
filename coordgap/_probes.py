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

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

from . import _clock
from . import _compat as lg
from . import semconv as sc
from ._ledger import count_handoff, count_node, count_router
from ._run import CURRENT_RUN, CURRENT_TASK, Pending, Recorder, Run, Task
from .contracts import Check, Violation
from .errors import ContractViolation
from .events import HandoffKind, HandoffOutcome, NodeOutcome, RouterOutcome

_BRANCH = lg.BRANCH_PREFIX
_ROUTING = (lg.BRANCH_PREFIX, lg.TASKS_CHANNEL)
"""Channels a write hands off through that are not a node's static edges."""
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
    join_channels: Mapping[str, str] = field(default_factory=dict)
    """Raw target -> the barrier channel this node writes its side of a join into."""
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
    top_level: bool = field(init=False)
    """A node of the instrumented graph itself (not of a subgraph, not the entry)."""
    row: Any = field(init=False)
    """The ledger row counting this node."""
    end_row: Any = field(init=False)
    """The ledger row counting this node's handoffs into END."""
    out_rows: dict[str, Any] = field(init=False)
    """Raw target -> the ledger row of this node's handoff into it (filled as seen)."""
    static_routes: dict[str, tuple[str, HandoffKind, str, Any]] = field(init=False)
    """Channel of each static out-edge and join side -> (raw target, kind, target, row)."""
    child_prefix: str = field(init=False)
    """``name/``: how a graph run inside this node's tasks names its nodes."""
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
        self.top_level = not self.is_entry and not graph.prefix
        self.name = graph.qualify(self.raw)
        self.row = None if self.is_entry else ledger.node_row(self.name)
        self.end_row = ledger.handoff_row(self.name, graph.end_name)
        self.out_rows = {t: ledger.handoff_row(self.name, graph.qualify(t)) for t in self.static}
        self.static_routes = {
            (self.join_channels[target] if kind == "join" else _BRANCH + target): (
                target,
                "join" if kind == "join" else "edge",
                graph.qualify(target),
                self.out_rows[target],
            )
            for target, kind in self.static.items()
        }
        self.child_prefix = self.name + "/"
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
        now = _clock.now_ns()
        task = Task(run, self, None, now, 1, graph_ns)
        with run.ledger.lock:
            for p in run.take_locked(graph_ns, self.name, False, None, None, self.joins):
                count_handoff(p[4], True, p[1])
        outs, invalid, end_kind = probe._handoffs_written(task, writes)
        if run.quiet:
            probe._count_quiet(task, run, now, outs, end_kind)
        else:
            probe._count_events(task, run, now, outs, end_kind, None, None)
        for kind in invalid or ():
            _invalid_route(self.graph.recorder, run, self.name, kind, now)

    def out_route_locked(self, raw: str) -> tuple[str, Any]:
        """Return (qualified target, ledger row) of this node's handoff into ``raw``; the
        caller holds the ledger's lock."""
        row = self.out_rows.get(raw)
        graph = self.graph
        if row is None:
            row = self.out_rows[raw] = graph.recorder.ledger.handoff_row_locked(
                self.name, graph.qualify(raw)
            )
        return graph.qualify(raw), row


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


Written = tuple[str, HandoffKind, Any, str, Any]
"""A handoff a task wrote: (raw target, kind, Send payload or join channel, target, row)."""


class TaskProbe(_Probe):
    """Wraps the runnable LangGraph executes for one node's tasks (node and writers)."""

    def __init__(self, inner: Runnable[Any, Any], site: NodeSite) -> None:
        self.inner = inner
        self.site = site
        site.probe = self

    # -- begin: the handoffs into this node are delivered ------------------------------
    # The hot path keeps to few functions: in a graph run every call into coordgap is code
    # and data gone cold since the node's last task, and costs more than it seems.

    def _begin(self, input: Any, config: Any) -> tuple[Task | None, Any]:
        """Start an attempt; return it (None when coordgap failed open) and the input the
        task runs on (LangGraph's, unless an injected handoff fault corrupted it)."""
        site = self.site
        try:
            run = CURRENT_RUN.get()
            try:
                attempt = lg.runtime_attempt(config[lg.CONF][lg.CONFIG_KEY_RUNTIME])
            except Exception:
                attempt = 1
            try:
                step = config["metadata"]["langgraph_step"]
            except Exception:
                step = None
            # The graph instance a task runs in is named by the task that runs that (sub)graph
            # (a task's own namespace can sit under another task's: an error handler's does).
            outer = CURRENT_TASK.get()
            graph_ns = outer.ns if outer is not None and outer.run is run else ""
            task = Task(run, site, config, _clock.now_ns(), attempt, graph_ns, step)
            rec = site.graph.recorder
            spans = rec.spans
            if run is not None:
                if spans is not None and not run.peer_checked and not graph_ns:
                    spans.join(run, config)  # once per run: does another tracer trace it?
                if run.deferred:
                    flush_deferred(run, graph_ns=graph_ns, step=step)
                if site.top_level:
                    run.last_node = site.name  # where a run-level error died
                if attempt == 1 and site.row is not None:
                    # a retry's handoffs were delivered to its first attempt
                    input = self._deliver(run, task, input, config)
            if (
                spans is not None
                and site.row is not None
                and (rec.live or (run is not None and run.peer is not None))
            ):
                # started after the handoffs were checked, so what it received is set in one go
                task.span, task.span_token = spans.node_start(
                    site.name, task.start_ns, attempt, step, task.received or (), run
                )
            task.token = CURRENT_TASK.set(task)
            return task, input
        except ContractViolation:
            raise
        except Exception as exc:
            site.graph.recorder.internal_error(f"node {site.name}", exc)
            return None, input

    def _deliver(self, run: Run, task: Task, input: Any, config: Any) -> Any:
        site = self.site
        push = run.has_sends and lg.is_push(config)
        ledger = run.ledger
        if run.quiet and not site.checks_handoffs:
            # nothing to check, nobody wants events: count and go
            live = site.graph.recorder.live
            lock = ledger.lock
            lock.acquire()
            try:
                taken = run.take_locked(
                    task.graph_ns, site.name, push, input, task.step, site.joins
                )
                for p in taken:
                    count_handoff(p[4], True, p[1])
            finally:
                lock.release()
            if live and taken:
                task.received = [(p[0], p[1]) for p in taken]
            return input
        with ledger.lock:
            delivered = run.take_locked(
                task.graph_ns, site.name, push, input, task.step, site.joins
            )
        return self._check_delivered(run, task, input, config, delivered, push)

    def _check_delivered(
        self,
        run: Run,
        task: Task,
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
        received = task.received = []
        for source, kind, start_ns, _, row, _ in delivered:
            broken = requires
            edge = site.edge_checks.get(source)
            if broken is None and edge is not None:
                broken = edge.validate(state)
            if broken is None:
                received.append((source, kind))
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
                    end_ns=task.start_ns,
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
                    start_ns=task.start_ns,
                    end_ns=task.start_ns,
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

    def _end(self, task: Task | None, config: Any) -> None:
        if task is None:
            return
        try:
            CURRENT_TASK.reset(task.token)
        except Exception:  # reset from another context (a stream closed elsewhere)
            pass
        site = self.site
        broken = None
        try:
            end = _clock.now_ns()
            run = task.run
            writes = lg.task_writes(config)
            if (
                run is not None
                and run.quiet
                and task.routed is None
                and site.check_ensures is None
                and not run.deferred
                and writes is not None
                and self._count_static_quiet(task, run, end, writes)
            ):
                return  # the usual task: no router, its static edges written once each
            if task.routed is None:
                outs, invalid, end_kind = self._written_statically(writes)
            else:
                outs, invalid, end_kind = self._handoffs_written(task, writes)
            if site.check_ensures is not None and writes is not None:
                broken = site.check_ensures(_update_of(writes))
            if run is not None and run.deferred:
                flush_deferred(run, ended=task.ns)
            if run is not None and run.quiet and broken is None:
                self._count_quiet(task, run, end, outs, end_kind)
            else:
                self._count_events(task, run, end, outs, end_kind, broken, config)
            if invalid:
                rec = site.graph.recorder
                for kind in invalid:
                    _invalid_route(rec, run, site.name, kind, end)
        except Exception as exc:
            site.graph.recorder.internal_error(f"node {site.name}", exc)
            return
        if broken is not None and site.graph.recorder.raise_on_violation:
            raise _violation_error(broken, where="ensures", node=site.name, source=None)

    def _count_static_quiet(self, task: Task, run: Run, end: int, writes: Any) -> bool:
        """Count the usual task in one pass, building nothing but its pending handoffs:
        LangGraph wrote each of the node's static edges once, and no other route. Return
        False (having counted nothing) for any other task."""
        site = self.site
        static = site.static_routes
        seen = 0
        for channel, _ in writes:
            if channel in static:
                seen += 1
            elif channel.startswith(_ROUTING):
                return False  # a Command, a Send, a route to no node
        if seen != len(static):
            return False  # a static edge written twice (once by a Command)
        graph_ns = task.graph_ns
        step = task.step
        name = site.name
        lock = run.ledger.lock
        lock.acquire()
        try:
            if site.row is not None:
                count_node(site.row, True, task.attempt, True, end - task.start_ns)
            if static:
                for channel, (_, kind, target, row) in static.items():
                    run.open_locked(
                        graph_ns,
                        target,
                        (name, kind, end, channel if kind == "join" else None, row, step),
                    )
            else:
                count_handoff(site.end_row, True, site.end_kind or "edge")
        finally:
            lock.release()
        rec = site.graph.recorder
        if task.attempt > 1 and run.fault_retries:
            rec.recovered(run, name)
        if site.row is not None and rec.duration_histogram is not None:
            rec.record_duration(run, name, True, (end - task.start_ns) / 1e9, task.span)
        if task.span is not None:
            rec.spans.node_end_ok(task.span, task.span_token, end)
        return True

    def _written_statically(
        self, writes: Any
    ) -> tuple[list[Written], list[HandoffKind] | None, HandoffKind | None]:
        """:meth:`_handoffs_written` for a task no router decided in (the usual case)."""
        site = self.site
        static = site.static_routes
        outs: list[Written] = []
        dynamic = False
        for channel, _ in writes or ():
            hit = static.get(channel)
            if hit is None:
                if channel.startswith(_ROUTING):
                    dynamic = True  # a Command, a Send, a route to no node: the full reading
                continue
            if outs and any(o[0] == hit[0] and o[1] == hit[1] for o in outs):
                dynamic = True  # written twice: once by a Command
                continue
            outs.append((hit[0], hit[1], channel if hit[1] == "join" else None, hit[2], hit[3]))
        if dynamic:
            return self._handoffs_written(None, writes)
        if outs:
            return outs, None, None
        return outs, None, site.end_kind or "edge"

    def _handoffs_written(
        self, task: Task | None, writes: Any
    ) -> tuple[list[Written], list[HandoffKind] | None, HandoffKind | None]:
        """Return what the task wrote: each handoff into a node, the kind of each write that
        named no node, and the kind of the handoff into END (None when the task handed off
        to some node)."""
        site = self.site
        graph = site.graph
        routes = graph.routes
        static = site.static
        routed = task.routed if task is not None else None
        chosen: list[str] | None = None
        if routed:
            chosen = [t for _, targets, _, _, _ in routed for t in targets]
        outs: list[Written] = []
        invalid: list[HandoffKind] = []
        claimed: list[str] = []
        ledger = graph.recorder.ledger
        with ledger.lock:  # rows of handoffs seen for the first time are created here
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
                    if isinstance(value, lg.Send) and value.node in graph.nodes:
                        target, row = site.out_route_locked(value.node)
                        outs.append((value.node, "send", value.arg, target, row))
                    else:  # LangGraph logs "Ignoring unknown node name" and drops it
                        invalid.append("send")
                    continue
                target, row = site.out_route_locked(raw)
                kind: HandoffKind
                if channel.startswith(lg.JOIN_PREFIX):
                    outs.append((raw, "join", channel, target, row))  # its side of the barrier
                    continue
                if raw in static and raw not in claimed:
                    kind = "edge"
                    claimed.append(raw)
                elif chosen is not None and target in chosen:
                    chosen.remove(target)
                    kind = "conditional"
                else:
                    kind = "command"
                outs.append((raw, kind, None, target, row))
        end_kind: HandoffKind | None = None
        if not outs and not invalid:
            if chosen is not None and graph.end_name in chosen:
                end_kind = "conditional"
            else:
                end_kind = site.end_kind or "edge"
        return outs, invalid, end_kind

    def _count_quiet(
        self,
        task: Task,
        run: Run,
        end: int,
        outs: list[Written],
        end_kind: HandoffKind | None,
    ) -> None:
        """Count a successful attempt, its router decisions and its handoffs; no event."""
        site = self.site
        routed = task.routed
        lock = run.ledger.lock
        graph_ns = task.graph_ns
        step = task.step
        name = site.name
        lock.acquire()
        try:
            if site.row is not None:
                count_node(site.row, True, task.attempt, True, end - task.start_ns)
            if routed:
                for router, targets, valid, _, _ in routed:
                    if valid:  # a failed decision is an event (below)
                        count_router(router.row, True, targets)
            for _, kind, arg, target, row in outs:
                run.open_locked(graph_ns, target, (name, kind, end, arg, row, step))
            if end_kind is not None:
                count_handoff(site.end_row, True, end_kind)
        finally:
            lock.release()
        rec = site.graph.recorder
        if task.attempt > 1 and run.fault_retries:
            rec.recovered(run, name)
        if routed:
            for router, targets, valid, start, stop in routed:
                if not valid:
                    _router_failed_event(rec, run, router, targets, start, stop, None)
        if site.row is not None and rec.duration_histogram is not None:
            rec.record_duration(run, name, True, (end - task.start_ns) / 1e9, task.span)
        if task.span is not None:
            rec.spans.node_end_ok(task.span, task.span_token, end)

    def _count_events(
        self,
        task: Task,
        run: Run | None,
        end: int,
        outs: list[Written],
        end_kind: HandoffKind | None,
        broken: Violation | None,
        config: Any,
    ) -> None:
        """Count a finished attempt as events (sinks, a linked outer run, a broken contract)."""
        site = self.site
        rec = site.graph.recorder
        run_id = run.run_id if run is not None else 0
        event = None
        if site.row is not None:
            event = NodeOutcome(
                graph=rec.graph,
                node=site.name,
                ok=broken is None,
                attempt=task.attempt,
                final=True,
                start_ns=task.start_ns,
                end_ns=end,
                step=task.step,
                error_type=None if broken is None else sc.ERROR_CONTRACT,
                contract=None if broken is None else broken.contract,
                fields=() if broken is None else broken.fields,
                run_id=run_id,
            )
            rec.emit(run, event)
            rec.record_duration(
                run, site.name, broken is None, (end - task.start_ns) / 1e9, task.span
            )
        for router, targets, valid, start, stop in task.routed or ():
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
                for _, kind, arg, target, row in outs:
                    run.open_locked(
                        task.graph_ns, target, (site.name, kind, end, arg, row, task.step)
                    )
        if end_kind is not None:
            _ended(rec, run, site, end_kind, end)
        if task.span is not None:
            rec.spans.node_end(task.span, task.span_token, event, end)

    def _fail(self, task: Task | None, exc: BaseException, config: Any) -> None:
        if task is None:
            return
        try:
            CURRENT_TASK.reset(task.token)
        except Exception:  # reset from another context (a stream closed elsewhere)
            pass
        try:
            self._failed(task, exc, config)
        except Exception as inner:
            self.site.graph.recorder.internal_error(f"node {self.site.name}", inner)

    def _failed(self, task: Task, exc: BaseException, config: Any) -> None:
        site = self.site
        rec = site.graph.recorder
        run = task.run
        end = _clock.now_ns()
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
                    run.deferred.append((task.graph_ns, task.step, self, writes, cmd, end))
            task.routed = None
            self._count_node_only(task, run, end, config)
            return
        if lg.is_control_flow(exc):
            # interrupts and cancellation are control flow, not failures
            if run is not None and isinstance(exc, lg.GraphBubbleUp):
                run.interrupted = True
            if task.span is not None:
                rec.spans.node_end(task.span, task.span_token, None, end)
            return
        final = not lg.will_retry(site.policies, exc, task.attempt)
        router_error = task.router_error
        invalid = None
        if router_error is None and task.routed:
            # LangGraph raises after a path function named no node (KeyError outside the
            # path map, ValueError for None, InvalidUpdateError for a Send to END)
            invalid = next((r for r in task.routed if not r[2]), None)
        if final and (router_error is not None or invalid is not None):
            # the router failed on the task's last attempt: the node did its work, the
            # decision failed (and, LangGraph having raised, nothing was written)
            task.routed = None
            if run is not None and run.fault_retries:
                rec.unrecovered(run, site.name)  # the retries saved the node, not the task
            self._count_node_only(task, run, end, config)
            if router_error is not None:
                router, error, start, stop = router_error
                _router_failed_event(rec, run, router, (), start, stop, error)
            elif invalid is not None:
                router, _, _, start, stop = invalid
                _router_failed_event(rec, run, router, (), start, stop, exc)
            return
        if site.row is None:
            return
        event = NodeOutcome(
            graph=rec.graph,
            node=site.name,
            ok=False,
            attempt=task.attempt,
            final=final,
            start_ns=task.start_ns,
            end_ns=end,
            step=task.step,
            error_type=rec.error_type(exc),
            fault=bool(getattr(exc, "__coordgap_fault__", False)),
            run_id=run.run_id if run is not None else 0,
        )
        rec.emit(run, event)
        rec.record_duration(run, site.name, False, (end - task.start_ns) / 1e9, task.span)
        if task.span is not None:
            rec.spans.node_end(task.span, task.span_token, event, end)

    def _count_node_only(self, task: Task, run: Run | None, end: int, config: Any) -> None:
        """Count the node's successful attempt with no handoff (its writes come later, or never)."""
        if run is not None and run.quiet:
            self._count_quiet(task, run, end, [], None)
            return
        self._count_events(task, run, end, [], None, None, config)

    def count_deferred(self, run: Run, entry: tuple[Any, ...]) -> None:
        """Count the handoffs LangGraph wrote for this node after its probe returned (the
        writers it ran with a parent command addressed to this graph)."""
        graph_ns, step, _, writes, cmd, end = entry
        site = self.site
        rec = site.graph.recorder
        gotos = lg.goto_targets(cmd) if cmd is not None else []
        outs, invalid, end_kind = self._handoffs_written(None, writes)
        with run.ledger.lock:
            for raw, kind, arg, target, row in outs:
                if kind == "command" and raw not in gotos:
                    kind = "conditional"  # not the Command's: a router's (run outside the task)
                run.open_locked(graph_ns, target, (site.name, kind, end, arg, row, step))
        if end_kind is not None:
            _ended(rec, run, site, "command", end)
        for kind in invalid or ():
            _invalid_route(rec, run, site.name, kind, end)

    # -- the Runnable interface: exactly the inner call in between -------------------------

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        task, input = self._begin(input, config)
        try:
            output = self.inner.invoke(input, config, **kwargs)
        except BaseException as exc:
            self._fail(task, exc, config)
            raise
        self._end(task, config)
        return output

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        task, input = self._begin(input, config)
        try:
            output = await self.inner.ainvoke(input, config, **kwargs)
        except BaseException as exc:
            self._fail(task, exc, config)
            raise
        self._end(task, config)
        return output

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        task, input = self._begin(input, config)
        try:
            yield from self.inner.stream(input, config, **kwargs)
        except BaseException as exc:
            self._fail(task, exc, config)
            raise
        self._end(task, config)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        task, input = self._begin(input, config)
        try:
            async for chunk in self.inner.astream(input, config, **kwargs):
                yield chunk
        except BaseException as exc:
            self._fail(task, exc, config)
            raise
        self._end(task, config)

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


def _ended(rec: Recorder, run: Run | None, site: NodeSite, kind: HandoffKind, now: int) -> None:
    """Emit the handoff of a task that handed off to nobody: into its graph's END."""
    rec.emit(
        run,
        HandoffOutcome(
            graph=rec.graph,
            source=site.name,
            target=site.graph.end_name,
            kind=kind,
            ok=True,
            start_ns=now,
            end_ns=now,
            run_id=run.run_id if run is not None else 0,
        ),
    )


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
            now = _clock.now_ns()
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
            now = _clock.now_ns()
            if task is not None:
                task.router_error = (self.site, exc, start, now)
                return
            run = CURRENT_RUN.get()
            _router_failed_event(self.site.graph.recorder, run, self.site, (), start, now, exc)
        except Exception as inner:
            self.site.graph.recorder.internal_error(f"router {self.site.router}", inner)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        start = _clock.now_ns()
        try:
            result = self.inner.invoke(input, config, **kwargs)
        except BaseException as exc:
            self._failed(exc, start)
            raise
        self._routed(result, start)
        return result

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        start = _clock.now_ns()
        try:
            result = await self.inner.ainvoke(input, config, **kwargs)
        except BaseException as exc:
            self._failed(exc, start)
            raise
        self._routed(result, start)
        return result

    def __repr__(self) -> str:
        return f"RouterProbe({self.site.router!r}, {self.inner!r})"
