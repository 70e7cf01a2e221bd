"""instrument(): checks the graph and the options, wires interception to the sinks."""

from __future__ import annotations

import difflib
import functools
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, cast

from . import _compat as lg
from . import semconv as sc
from ._failopen import guard
from ._ledger import Ledger
from ._probes import CacheProbe, GraphSites, NodeSite, RouterProbe, RouterSite, TaskProbe
from ._run import Recorder
from .contracts import Capture, Check, Contract, ContractSpec, compile_check, declared_contract
from .errors import ConfigurationError
from .events import Event, HandoffKind, Sink
from .topology import Topology, handoff_name, parse_handoff

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = ["InstrumentedGraph", "instrument", "ledger", "uninstrument"]

SpanMode = Literal["all", "failures", "off"]
Instrumentable: TypeAlias = (
    "lg.StateGraph[Any, Any, Any, Any] | lg.CompiledStateGraph[Any, Any, Any, Any]"
)
"""What instrument() takes and uninstrument() gives back: a builder or a compiled graph."""
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

    @property
    def coordgap_ledger(self) -> Ledger | None:
        """The ledger this graph's runs are counted in (None for a subgraph copy)."""
        state = self.coordgap_state
        return state.ledger if state is not None else None

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

    def __init__(self, recorder: Recorder, ledger: Ledger, bare: Instrumentable) -> None:
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


def _resolve_gen_ai(gen_ai: bool | None) -> bool:
    if gen_ai is None:
        opted = os.environ.get(sc.ENV_SEMCONV_OPT_IN, "")
        return sc.SEMCONV_OPT_IN_GEN_AI in {part.strip() for part in opted.split(",")}
    if not isinstance(gen_ai, bool):
        raise ConfigurationError(
            f"gen_ai={gen_ai!r}: pass True or False (None: from ${sc.ENV_SEMCONV_OPT_IN})."
        )
    return gen_ai


def _suggest(name: str, known: Iterable[str]) -> str:
    # compared without case: 'A' for 'a' is the likeliest typo of a short name
    by_lower: dict[str, str] = {}
    for k in known:
        by_lower.setdefault(k.lower(), k)
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(by_lower[c]) for c in close)}?" if close else ""


def _check_node_name(name: Any, known: Sequence[str], what: str) -> None:
    if not isinstance(name, str):
        raise ConfigurationError(f"{what}: node names are strings, got {name!r}.")
    if name not in known:
        raise ConfigurationError(
            f"{what}: the graph has no node {name!r}.{_suggest(name, known)} "
            f"Its nodes are: {', '.join(sorted(known))}."
        )


CaptureOption: TypeAlias = bool | int | Capture | Callable[[Any], Any]
"""``capture_values=``: False (default), True, a maximum length, a redaction callable, or a
:class:`coordgap.Capture`."""


def _capture_option(value: object) -> Capture | None:
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
    graph: Instrumentable,
    *,
    name: str | None = None,
    contracts: Mapping[str, Contract] | None = None,
    handoffs: Mapping[tuple[str, str] | str, ContractSpec] | None = None,
    on_violation: Literal["record", "raise"] = "record",
    spans: SpanMode | None = None,
    metrics: bool = True,
    durations: bool = False,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    sinks: Sequence[Sink] = (),
    capture_values: CaptureOption = False,
    gen_ai: bool | None = None,
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
        metrics: register OpenTelemetry instruments on the meter provider (counters, the
            report gauges).
        durations: also record every node attempt's duration in the histogram
            ``coordgap.node.duration`` (its distribution, with exemplars pointing at the
            spans). Off by default: it costs several microseconds per node attempt at
            collection; the counter ``coordgap.node.time`` gives the mean for free.
        tracer_provider: defaults to OpenTelemetry's global provider.
        meter_provider: defaults to OpenTelemetry's global provider.
        sinks: extra callables that receive every event.
        capture_values: opt in to recording state values on failures (development only):
            True, a maximum length, a redaction callable, or :class:`coordgap.Capture`.
        gen_ai: also put the OpenTelemetry GenAI agent attributes (``gen_ai.operation.name``,
            ``gen_ai.agent.name``; conventions still in development) on coordgap's spans.
            Default: on when ``$OTEL_SEMCONV_STABILITY_OPT_IN`` lists
            ``gen_ai_latest_experimental``, OpenTelemetry's own opt-in.

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
    gen_ai_attributes = _resolve_gen_ai(gen_ai)
    if not isinstance(metrics, bool):
        raise ConfigurationError(f"metrics={metrics!r}: pass True or False.")
    if not isinstance(durations, bool):
        raise ConfigurationError(f"durations={durations!r}: pass True or False.")
    for sink in sinks:
        if not callable(sink):
            raise ConfigurationError(f"sinks: {sink!r} is not callable; a sink is sink(event).")
    capture = _capture_option(capture_values)

    builder, compile_kwargs, extra = _builder_and_options(graph)
    graph_name = name if name is not None else compile_kwargs.get("name") or "LangGraph"
    if not isinstance(graph_name, str) or not graph_name:
        raise ConfigurationError(f"name={name!r}: pass a non-empty string.")
    lg.warn_unsupported_version()

    topology = lg.topology_of(builder, graph_name)
    node_contracts = _node_contracts(builder, topology, contracts)
    edge_contracts = _edge_contracts(topology, handoffs)
    _warn_unchecked_faults(builder, topology, node_contracts, edge_contracts)
    ledger_ = Ledger(graph_name, topology)
    plan = getattr(builder, "coordgap_faults", None)
    if plan is not None:
        ledger_.faults_fired = plan.fired
    span_recorder = None
    if span_mode != "off":
        from ._spans import SpanRecorder

        # a broken provider costs spans (or metrics), never the graph
        with guard("tracer provider", ledger_.count_internal_error):
            span_recorder = SpanRecorder(
                tracer_provider, span_mode, graph_name, gen_ai=gen_ai_attributes
            )
    histogram = None
    if metrics:
        from ._gauges import observe_reports
        from ._metrics import register_metrics

        with guard("meter provider", ledger_.count_internal_error):
            histogram = register_metrics(meter_provider, ledger_, durations)
            observe_reports(meter_provider, ledger_)
    recorder = Recorder(
        graph=graph_name,
        ledger=ledger_,
        sinks=sinks,
        spans=span_recorder,
        on_violation=on_violation,
        capture=capture,
        duration_histogram=histogram,
    )
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

    extra: list[Callable[[Event], None]] = []
    for observer in observers:
        with guard("instrument observer", ledger_.count_internal_error):
            sinks = observer(app)
            if sinks:
                extra.extend(sinks)
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
    builder: Any, topology: Topology, contracts: Mapping[str, Contract] | None
) -> dict[str, tuple[Check | None, Check | None]]:
    """Return the compiled (requires, ensures) per node, by the name the report prints."""
    known = [n for n in topology.nodes if n not in topology.subgraphs]
    declared: dict[str, Contract] = {}
    for node, runnable in _node_runnables(builder, ""):
        found = declared_contract(runnable)
        if found is not None:
            declared[node] = found
    if contracts is not None:
        if not isinstance(contracts, Mapping):
            raise ConfigurationError(
                f"contracts= takes a dict of node name -> coordgap.Contract, not {contracts!r}."
            )
        for node, value in contracts.items():
            _check_node_name(node, [*known, *topology.subgraphs], "contracts")
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


def _node_runnables(builder: Any, prefix: str) -> Iterable[tuple[str, Any]]:
    """Yield (qualified name, runnable) of every node, inner nodes of subgraphs included."""
    for raw, spec in builder.nodes.items():
        yield prefix + raw, spec.runnable
        sub = lg.subgraph_of(spec)
        inner = [sub] if sub is not None else lg.called_subgraphs(spec)[:1]
        for graph in inner:
            sub_builder = lg.builder_of(graph)
            if sub_builder is not None:
                yield from _node_runnables(sub_builder, f"{prefix}{raw}/")


def _edge_contracts(
    topology: Topology, handoffs: Mapping[Any, Any] | None
) -> dict[str, dict[str, Check]]:
    """Return the compiled edge contracts: per target node, per source (qualified names)."""
    if not handoffs:
        return {}
    if not isinstance(handoffs, Mapping):
        raise ConfigurationError(
            f"handoffs= takes a dict of (source, target) -> contract, not {handoffs!r}."
        )
    known = list(topology.nodes)
    connected = {(h.source, h.target) for h in topology.handoffs}
    open_routers = {r.source for r in topology.routers if r.targets is None}
    out: dict[str, dict[str, Check]] = {}
    for key, spec in handoffs.items():
        pair = key if isinstance(key, tuple) and len(key) == 2 else parse_handoff(key)
        if pair is None:
            raise ConfigurationError(
                f"handoffs key {key!r}: use a (source, target) tuple of node names, or "
                "'source -> target'."
            )
        source, target = (sc.START if pair[0] == lg.START else pair[0]), pair[1]
        if not source.endswith(sc.START):
            _check_node_name(source, known, "handoffs")
        if target == lg.END or target.endswith("/" + sc.END):
            raise ConfigurationError(
                f"handoffs[({source!r}, END)]: a handoff into END has no receiving node; "
                f"check the update with contracts={{{source!r}: Contract(ensures=...)}} instead."
            )
        _check_node_name(target, known, "handoffs")
        sub_open = source.rpartition("/")[0] + "/" if "/" in source else ""
        if (
            (source, target) not in connected
            and source not in open_routers
            and not (source.endswith(sc.START) and target.startswith(sub_open))
        ):
            commands = {h.source for h in topology.handoffs if h.kind == "command"}
            raise ConfigurationError(
                f"handoffs[({source!r}, {target!r})]: the graph declares no edge from "
                f"{source!r} to {target!r}. Add the edge, or declare a Command destination "
                f"(add_node(..., destinations=(...))) if {source!r} routes with Command"
                + (" (it already declares some)." if source in commands else ".")
            )
        out.setdefault(target, {})[source] = compile_check(spec, role="handoff")
    return out


def _warn_unchecked_faults(
    builder: Any,
    topology: Topology,
    node_contracts: Mapping[str, tuple[Check | None, Check | None]],
    edge_contracts: Mapping[str, Mapping[str, Check]],
) -> None:
    """Warn at instrument() about injected handoff faults that no contract can notice."""
    plan = getattr(builder, "coordgap_faults", None)
    if plan is None:
        return
    declared = {(h.source, h.target) for h in topology.handoffs if h.target in topology.nodes}
    unchecked = []
    for source, target in sorted(declared):
        if plan.handoff_rate(source, target) <= 0.0:
            continue
        if node_contracts.get(target, (None, None))[0] is None and source not in edge_contracts.get(
            target, {}
        ):
            unchecked.append(handoff_name(source, target))
    if unchecked:
        shown = ", ".join(unchecked[:5]) + (
            f" and {len(unchecked) - 5} more" if len(unchecked) > 5 else ""
        )
        first = parse_handoff(unchecked[0]) or ("source", "target")
        warnings.warn(
            f"coordgap.faults: faults are injected into the handoffs {shown}, but no contract "
            "checks them, so nothing can notice the corrupted state. Declare a requires "
            f"contract on the target, or pass handoffs={{{first!r}: Model}} to "
            "coordgap.instrument().",
            stacklevel=3,
        )


def _build(
    builder: Any,
    compile_kwargs: dict[str, Any],
    extra: dict[str, Any],
    recorder: Recorder,
    prefix: str,
    node_contracts: Mapping[str, tuple[Check | None, Check | None]],
    edge_contracts: Mapping[str, Mapping[str, Check]],
) -> InstrumentedGraph:
    """Compile a copy of ``builder`` whose tasks and routers are probed into ``recorder``.

    Subgraphs (nodes that are compiled graphs, and graphs a node's function holds in
    its closure) are rebuilt the same way from their own, bare builders, named
    ``prefix + node + "/"``, so every graph is probed exactly once.
    """
    work = lg.copy_builder(builder)
    raw_nodes = frozenset(work.nodes) | frozenset(lg.error_handler_names(work))
    sites = GraphSites(recorder=recorder, prefix=prefix, nodes=raw_nodes)
    joins = lg.join_channels(work)
    sites.routes.update({channel: target for channel, (target, _) in joins.items()})
    for raw, spec in list(work.nodes.items()):
        inner_prefix = f"{prefix}{raw}/"
        sub = lg.subgraph_of(spec)
        if sub is not None:
            built_sub = _build_subgraph(sub, recorder, inner_prefix, node_contracts, edge_contracts)
            lg.set_node_runnable(work, raw, built_sub)
            continue
        called = lg.called_subgraphs(spec)
        if called:
            built = {
                id(g): _build_subgraph(g, recorder, inner_prefix, node_contracts, edge_contracts)
                for g in called[:1]
            }
            lg.set_node_runnable(work, raw, lg.with_called_subgraphs(spec.runnable, built))
    ids = lg.router_ids(work)
    end_kinds: dict[str, HandoffKind] = {}
    for source, bname, path, ends in lg.router_paths(work):
        router = RouterSite(sites, prefix + ids[(source, bname)], source, ends)
        lg.set_router_path(work, source, bname, RouterProbe(path, router))
        if ends is not None and lg.END in ends.values():
            end_kinds.setdefault(source, "conditional")
    for raw, spec in work.nodes.items():
        if lg.END in lg.command_destinations(spec):
            end_kinds[raw] = "command"
    static: dict[str, dict[str, str]] = {}
    for source, target, kind in lg.static_edges(work):
        if target == lg.END:
            end_kinds[source] = "join" if kind == "join" else "edge"
        else:
            static.setdefault(source, {})[target] = kind

    compiled = cast(InstrumentedGraph, work.compile(**compile_kwargs))
    for key, value in extra.items():
        setattr(compiled, key, value)
    if compiled.cache is not None:
        # a task answered from the cache runs no probe: the cache tells (subgraphs inherit it)
        compiled.cache = CacheProbe(compiled.cache, recorder)
    compiled.__class__ = InstrumentedGraph  # same layout, plus run tracking in stream/astream
    lg.serialize_as_compiled_graph(compiled)  # drawn as bare, wherever it is drawn
    compiled.coordgap_state = None
    compiled.builder = builder  # the user's graph, as given: re-instrumenting reads it, not ours

    before, after = lg.interrupt_nodes(compiled)
    recorder.paused_before |= {sites.qualify(n) for n in before}
    recorder.paused_after |= {sites.qualify(n) for n in after}
    plan = getattr(builder, "coordgap_faults", None)
    for raw, pregel_node in lg.pregel_nodes(compiled).items():
        requires, ensures = node_contracts.get(sites.qualify(raw), (None, None))
        edge_checks = edge_contracts.get(sites.qualify(raw), {})
        site = NodeSite(
            graph=sites,
            raw=raw,
            static=static.get(raw, {}),
            end_kind=end_kinds.get(raw),
            requires=requires,
            ensures=ensures,
            edge_checks=edge_checks,
            policies=lg.retry_policies(pregel_node, compiled),
            corrupt=functools.partial(plan.corrupt, sites.qualify(raw))
            if plan is not None
            else None,
            joins={
                channel: frozenset(sites.qualify(source) for source in sources)
                for channel, (target, sources) in joins.items()
                if target == raw
            },
            join_channels={
                target: channel for channel, (target, sources) in joins.items() if raw in sources
            },
        )
        if recorder.spans is not None:  # where another tracer's node span is open
            lg.wrap_node_step(pregel_node, recorder.spans.node_step)
        lg.wrap_task_runnable(pregel_node, functools.partial(TaskProbe, site=site))
        recorder.sites[site.name] = site
    return compiled


def _build_subgraph(
    graph: Any,
    recorder: Recorder,
    prefix: str,
    node_contracts: Mapping[str, tuple[Check | None, Check | None]],
    edge_contracts: Mapping[str, Mapping[str, Check]],
) -> InstrumentedGraph:
    """Rebuild a subgraph (bare or instrumented on its own) from its bare builder."""
    return _build(
        lg.builder_of(graph),
        lg.compile_options(graph),
        lg.graph_level_settings(graph),
        recorder,
        prefix,
        node_contracts,
        edge_contracts,
    )


def _state_of(graph: object) -> _State:
    state = getattr(graph, "coordgap_state", None)
    if not isinstance(state, _State):
        raise ConfigurationError(
            f"{type(graph).__name__} is not instrumented: pass the graph returned by "
            "coordgap.instrument(...)."
        )
    return state


def ledger(graph: InstrumentedGraph | Ledger) -> Ledger:
    """Return the ledger of an instrumented graph (or pass a Ledger through).

    Example::

        coordgap.ledger(app).snapshot().runs.clean
    """
    if isinstance(graph, Ledger):
        return graph
    return _state_of(graph).ledger


def uninstrument(graph: InstrumentedGraph) -> Instrumentable:
    """Return what was instrumented (the builder or the compiled graph), untouched.

    Example::

        bare = coordgap.uninstrument(app)
    """
    return _state_of(graph).bare
