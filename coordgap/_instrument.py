"""instrument(): checks the graph and the options, wires interception to the sinks."""

from __future__ import annotations

import difflib
import functools
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, cast

from . import _compat as lg
from . import semconv as sc
from ._failopen import report_internal_error
from ._intercept import (
    Capture,
    GraphSites,
    NodeProbe,
    NodeSite,
    Recorder,
    RouterProbe,
    StartProbe,
    probe_steps,
)
from .contracts import Check, Contract, compile_check, declared_contract
from .errors import ConfigurationError
from .events import Event
from .ledger import Ledger
from .topology import Topology

__all__ = ["InstrumentedGraph", "instrument", "ledger", "uninstrument"]

SpanMode = Literal["all", "failures", "off"]
_SPAN_MODES = ("all", "failures", "off")


class InstrumentedGraph(lg.CompiledStateGraph):  # type: ignore[type-arg]
    """A LangGraph compiled graph whose runs coordgap records.

    It *is* a ``CompiledStateGraph``: every method works as before; ``stream``
    and ``astream`` (which ``invoke``, ``ainvoke``, ``batch`` and the event
    streams go through) additionally track the run.
    """

    def __init__(self, *, coordgap_state: _State | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.coordgap_state = coordgap_state

    def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        state = self.coordgap_state
        if state is None:
            return super().invoke(input, config, **kwargs)
        # one run around the whole call: stream() below sees it and adds no layer per step
        return state.recorder.call(super().invoke, input, config, kwargs, self.config)

    async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        state = self.coordgap_state
        if state is None:
            return await super().ainvoke(input, config, **kwargs)
        return await state.recorder.acall(super().ainvoke, input, config, kwargs, self.config)

    def stream(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        inner = super().stream(input, config, **kwargs)
        state = self.coordgap_state
        if state is None or state.recorder.in_run():
            return inner
        return state.recorder.drive(inner, config, self.config)

    def astream(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        inner = super().astream(input, config, **kwargs)
        state = self.coordgap_state
        if state is None or state.recorder.in_run():
            return inner
        return state.recorder.adrive(inner, config, self.config)


class _State:
    """What instrument() built for one graph, kept on the instrumented graph."""

    def __init__(self, recorder: Recorder, ledger: Ledger, bare: Any) -> None:
        self.recorder = recorder
        self.ledger = ledger
        self.bare = bare


def _resolve_spans(spans: SpanMode | None) -> str:
    mode = spans if spans is not None else os.environ.get(sc.ENV_SPANS, "failures")
    if mode not in _SPAN_MODES:
        raise ConfigurationError(
            f"spans={mode!r} is not a span mode: use 'all', 'failures' or 'off'"
            + (f" (from ${sc.ENV_SPANS})" if spans is None else "")
            + "."
        )
    return mode


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _check_node_name(name: Any, known: Sequence[str], what: str) -> None:
    if not isinstance(name, str):
        raise ConfigurationError(f"{what}: node names are strings, got {name!r}.")
    if name not in known:
        raise ConfigurationError(
            f"{what}: the graph has no node {name!r}.{_suggest(name, known)} "
            f"Its nodes are: {', '.join(sorted(known))}."
        )


def _capture_option(value: Any) -> Capture | None:
    if value is None or value is False:
        return None
    if value is True:
        return Capture()
    if isinstance(value, Capture):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return Capture(max_chars=value)
    if callable(value):
        return Capture(redact=value)
    raise ConfigurationError(
        f"capture_values={value!r}: pass True, a maximum length (int > 0), a redaction "
        "callable, or coordgap.Capture(max_chars=..., redact=...)."
    )


def instrument(
    graph: Any,
    *,
    name: str | None = None,
    contracts: Mapping[str, Contract] | None = None,
    handoffs: Mapping[tuple[str, str], Any] | None = None,
    on_violation: Literal["record", "raise"] = "record",
    spans: SpanMode | None = None,
    metrics: bool = True,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    sinks: Sequence[Callable[[Event], None]] = (),
    capture_values: Any = False,
) -> InstrumentedGraph:
    """Return the graph compiled with every node, handoff, router and run recorded.

    Args:
        graph: a ``StateGraph`` builder, or a graph compiled from one (its
            checkpointer, store, cache, interrupts, name and config are kept).
            The user's builder is never changed; a copy is compiled.
        name: the graph's name in telemetry (default: the compiled graph's name).
        contracts: per node, a :class:`coordgap.Contract` (``requires`` / ``ensures``),
            in addition to those declared with ``@coordgap.contract``.
        handoffs: per ``(source, target)`` edge, a contract on the state the target receives.
        on_violation: ``"record"`` (the graph runs on, as before) or ``"raise"``
            (a broken contract raises :class:`coordgap.ContractViolation`).
        spans: ``"all"``, ``"failures"`` (default, or ``$COORDGAP_SPANS``) or ``"off"``.
        metrics: register OpenTelemetry instruments on the meter provider.
        tracer_provider: defaults to OpenTelemetry's global provider.
        meter_provider: defaults to OpenTelemetry's global provider.
        sinks: extra callables that receive every event.
        capture_values: opt in to recording state values on failures (development only):
            True, a maximum length, a redaction callable, or :class:`coordgap.Capture`.

    Example::

        app = coordgap.instrument(builder, name="research")
        app.invoke({"question": "..."})
        coordgap.ledger(app).snapshot().nodes["retrieve"].executions
    """
    if isinstance(graph, InstrumentedGraph) and graph.coordgap_state is not None:
        warnings.warn(
            "coordgap.instrument(): this graph is already instrumented; returning it unchanged "
            "(instrumenting twice would count everything twice).",
            stacklevel=2,
        )
        return graph
    if on_violation not in ("record", "raise"):
        raise ConfigurationError(
            f"on_violation={on_violation!r}: use 'record' (default) or 'raise'."
        )
    span_mode = _resolve_spans(spans)
    if not isinstance(metrics, bool):
        raise ConfigurationError(f"metrics={metrics!r}: pass True or False.")
    for sink in sinks:
        if not callable(sink):
            raise ConfigurationError(f"sinks: {sink!r} is not callable; a sink is sink(event).")
    capture = _capture_option(capture_values)

    builder, compile_kwargs, extra = _builder_and_options(graph)
    graph_name = name if name is not None else compile_kwargs.get("name") or "LangGraph"
    if not isinstance(graph_name, str) or not graph_name:
        raise ConfigurationError(f"name={name!r}: pass a non-empty string.")

    topology = lg.topology_of(builder, graph_name)
    ledger_ = Ledger(graph_name, topology)
    span_recorder = None
    if span_mode != "off":
        from ._spans import SpanRecorder

        try:
            span_recorder = SpanRecorder(tracer_provider, span_mode, graph_name)
        except Exception as exc:
            # a broken provider costs spans, never the graph
            report_internal_error("tracer provider", exc, ledger_.count_internal_error)
    histogram = None
    if metrics:
        from ._metrics import register_metrics

        try:
            histogram = register_metrics(meter_provider, ledger_)
        except Exception as exc:
            # a broken provider costs metrics, never the graph
            report_internal_error("meter provider", exc, ledger_.count_internal_error)
    recorder = Recorder(
        graph=graph_name,
        ledger=ledger_,
        sinks=sinks,
        spans=span_recorder,
        on_violation=on_violation,
        capture=capture,
        duration_histogram=histogram,
    )
    node_contracts = _node_contracts(builder, contracts)
    edge_contracts = _edge_contracts(builder, topology, handoffs)
    app = _build(builder, compile_kwargs, extra, recorder, "", node_contracts, edge_contracts)
    app.coordgap_state = _State(recorder, ledger_, graph)
    _announce(app, recorder, ledger_)
    return app


# -- observers: code that wants to know about every graph instrumented from now on -------------

Observer = Callable[["InstrumentedGraph"], "Iterable[Callable[[Event], None]] | None"]
"""Called with each newly instrumented graph; may return extra sinks for it."""

_observers: tuple[Observer, ...] = ()
_observers_lock = threading.Lock()


def add_observer(observer: Observer) -> Callable[[], None]:
    """Call ``observer(app)`` for every graph instrumented from now on; return its remover.

    The observer may return sinks, which then receive every event of that
    graph (``coordgap.testing.capture_events`` and the pytest plugin use this).
    Thread-safe; an observer that raises is counted as an internal error.
    """
    global _observers
    with _observers_lock:
        _observers = (*_observers, observer)

    def remove() -> None:
        global _observers
        with _observers_lock:
            _observers = tuple(o for o in _observers if o is not observer)

    return remove


def _announce(app: InstrumentedGraph, recorder: Recorder, ledger_: Ledger) -> None:
    observers = _observers  # one read of an immutable tuple: no lock on the common path
    if not observers:
        return
    from ._failopen import report_internal_error

    extra: list[Callable[[Event], None]] = []
    for observer in observers:
        try:
            sinks = observer(app)
            if sinks:
                extra.extend(sinks)
        except Exception as exc:
            report_internal_error("instrument observer", exc, ledger_.count_internal_error)
    if extra:
        recorder.add_sinks(extra)


def _builder_and_options(graph: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    if isinstance(graph, lg.StateGraph):
        return graph, {}, {}
    if isinstance(graph, lg.CompiledStateGraph):
        builder = getattr(graph, "builder", None)
        if not isinstance(builder, lg.StateGraph):
            raise ConfigurationError(
                "instrument() needs the StateGraph this graph was compiled from, and this "
                "compiled graph has none (.builder). Pass the StateGraph builder instead."
            )
        return builder, lg.compile_options(graph), lg.graph_level_settings(graph)
    if isinstance(graph, lg.Pregel):
        raise ConfigurationError(
            "instrument() supports graphs built with langgraph.graph.StateGraph; this is a "
            f"{type(graph).__name__} (functional API or raw Pregel), which has no builder to "
            "read nodes and edges from. Build it with StateGraph, or instrument its StateGraph "
            "subgraphs."
        )
    raise ConfigurationError(
        f"instrument() takes a langgraph StateGraph builder or a graph compiled from one, "
        f"not {type(graph).__name__}. Example: coordgap.instrument(StateGraph(State)...)."
    )


def _node_contracts(
    builder: Any, contracts: Mapping[str, Contract] | None
) -> dict[str, tuple[Check | None, Check | None]]:
    known = lg.node_names(builder)
    declared: dict[str, Contract] = {}
    for node in known:
        found = declared_contract(builder.nodes[node].runnable)
        if found is not None:
            declared[node] = found
    if contracts is not None:
        if not isinstance(contracts, Mapping):
            raise ConfigurationError(
                f"contracts= takes a dict of node name -> coordgap.Contract, not {contracts!r}."
            )
        for node, value in contracts.items():
            _check_node_name(node, known, "contracts")
            if not isinstance(value, Contract):
                raise ConfigurationError(
                    f"contracts[{node!r}]={value!r}: wrap it as coordgap.Contract(requires=..., "
                    "ensures=...)."
                )
            declared[node] = value
    compiled: dict[str, tuple[Check | None, Check | None]] = {}
    for node, c in declared.items():
        requires = compile_check(c.requires, role="requires", name=c.name) if c.requires else None
        ensures = compile_check(c.ensures, role="ensures", name=c.name) if c.ensures else None
        compiled[node] = (requires, ensures)
    return compiled


def _edge_contracts(
    builder: Any, topology: Topology, handoffs: Mapping[tuple[str, str], Any] | None
) -> dict[str, dict[str, Check]]:
    if not handoffs:
        return {}
    if not isinstance(handoffs, Mapping):
        raise ConfigurationError(
            f"handoffs= takes a dict of (source, target) -> contract, not {handoffs!r}."
        )
    known = lg.node_names(builder)
    connected = {(h.source, h.target) for h in topology.handoffs}
    open_routers = {r.source for r in topology.routers if r.targets is None}
    out: dict[str, dict[str, Check]] = {}
    for key, spec in handoffs.items():
        if not (isinstance(key, tuple) and len(key) == 2):
            raise ConfigurationError(
                f"handoffs key {key!r}: use a (source, target) tuple of node names."
            )
        source, target = key
        if source != lg.START:
            _check_node_name(source, known, "handoffs")
        if target == lg.END:
            raise ConfigurationError(
                f"handoffs[({source!r}, END)]: a handoff into END has no receiving node; "
                f"check the update with contracts={{{source!r}: Contract(ensures=...)}} instead."
            )
        _check_node_name(target, known, "handoffs")
        if (source, target) not in connected and source not in open_routers:
            commands = {h.source for h in topology.handoffs if h.kind == "command"}
            raise ConfigurationError(
                f"handoffs[({source!r}, {target!r})]: the graph declares no edge from "
                f"{source!r} to {target!r}. Add the edge, or declare a Command destination "
                f"(add_node(..., destinations=(...))) if {source!r} routes with Command"
                + (" (it already declares some)." if source in commands else ".")
            )
        qualified_source = sc.START if source == lg.START else source
        out.setdefault(target, {})[qualified_source] = compile_check(spec, role="handoff")
    return out


def _build(
    builder: Any,
    compile_kwargs: dict[str, Any],
    extra: dict[str, Any],
    recorder: Recorder,
    prefix: str,
    node_contracts: Mapping[str, tuple[Check | None, Check | None]],
    edge_contracts: Mapping[str, Mapping[str, Check]],
) -> InstrumentedGraph:
    work = lg.copy_builder(builder)
    sites = GraphSites(recorder=recorder, prefix=prefix, nodes=frozenset(lg.node_names(builder)))
    ids = lg.router_ids(builder)
    for source, branches in list(work.branches.items()):
        for bname, branch in list(branches.items()):
            router = prefix + ids[(source, bname)]
            probe = RouterProbe(branch.path, sites, router, sites.qualify(source), branch.ends)
            branches[bname] = branch._replace(path=probe)
    compiled = cast(InstrumentedGraph, work.compile(**compile_kwargs))
    for key, value in extra.items():
        setattr(compiled, key, value)
    compiled.__class__ = InstrumentedGraph  # same layout, plus run tracking in stream/astream
    compiled.coordgap_state = None

    static: dict[str, list[tuple[str, str]]] = {}
    for source, target in work.edges:
        static.setdefault(source, []).append((target, "edge"))
    for sources, target in work.waiting_edges:
        for source in sources:
            static.setdefault(source, []).append((target, "join"))
    pregel_nodes = lg.pregel_nodes(compiled)
    for raw in lg.node_names(builder):
        pregel_node = pregel_nodes.get(raw)
        if pregel_node is None:
            continue
        requires, ensures = node_contracts.get(raw, (None, None))
        edge_checks = {
            (sites.qualify(src) if src != sc.START else sites.qualify(lg.START)): check
            for src, check in edge_contracts.get(raw, {}).items()
        }
        site = NodeSite(
            graph=sites,
            name=sites.qualify(raw),
            raw=raw,
            static_targets=tuple(static.get(raw, ())),
            requires=requires,
            ensures=ensures,
            edge_checks=edge_checks,
            policies=lg.retry_policies(pregel_node, compiled),
        )
        if compiled.cache is not None and (pregel_node.cache_policy or compiled.cache_policy):
            recorder.cached_nodes.add(site.name)
        sub = lg.subgraph_of(builder.nodes[raw])

        def wrap(bound: Any, site: NodeSite = site, sub: Any = sub) -> Any:
            inner = bound
            if sub is not None and bound is sub:
                inner = _build(
                    sub.builder,
                    lg.compile_options(sub),
                    lg.graph_level_settings(sub),
                    recorder,
                    f"{site.name}/",
                    {},
                    {},
                )
            return NodeProbe(inner, site)

        lg.install_node_runnable(
            pregel_node,
            wrap,
            wrap_steps=functools.partial(_probe_sequence, site=site),
        )
    start = pregel_nodes.get(lg.START)
    if start is not None and static.get(lg.START):
        targets = tuple(t for t, _ in static[lg.START])
        lg.install_node_runnable(
            start, lambda first: StartProbe(first, sites, targets), wrap_first_writer=True
        )
    return compiled


def _probe_sequence(steps: list[Any], *, site: NodeSite) -> list[Any]:
    return probe_steps(steps, NodeProbe(None, site))


def _state_of(graph: Any) -> _State:
    state = getattr(graph, "coordgap_state", None)
    if not isinstance(state, _State):
        raise ConfigurationError(
            f"{type(graph).__name__} is not instrumented: pass the graph returned by "
            "coordgap.instrument(...)."
        )
    return state


def ledger(graph: Any) -> Ledger:
    """Return the ledger of an instrumented graph (or pass a Ledger through).

    Example::

        coordgap.ledger(app).snapshot().runs.clean
    """
    if isinstance(graph, Ledger):
        return graph
    return _state_of(graph).ledger


def ledger_of(obj: Any) -> Ledger:
    """Return the ledger behind an instrumented graph or a Ledger (for report())."""
    return ledger(obj)


def uninstrument(graph: Any) -> Any:
    """Return what was instrumented (the builder or the compiled graph), untouched.

    Example::

        bare = coordgap.uninstrument(app)
    """
    return _state_of(graph).bare
