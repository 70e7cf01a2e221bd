"""Sink: OpenTelemetry spans for runs, node executions, handoffs and routers.

Three modes:

- ``"all"``: a span per run and per node attempt, started live and made
  current (so the user's own spans nest under them); successful handoffs are
  events on the target node's span; failed handoffs and routers are spans.
- ``"failures"``: nothing on the happy path; when a run had a failure, at its
  end the run span and one span per failed component are created after the
  fact with their recorded start and end times and the right parent.
- ``"off"``: no spans.

Attributes carry names from the graph, exception class names and contract
names only (see ``semconv``); state values appear only with ``capture_values``.
Every span also carries what tracing backends read to show it and to draw the
agent graph: ``openinference.span.kind``, ``graph.node.id`` / ``graph.node.parent_id``,
and, behind one switch while those conventions are in development, the OpenTelemetry
GenAI agent attributes.

**One trace with another tracer.** When a LangChain tracer also traces the graph
(OpenInference's ``LangChainInstrumentor``, OpenLLMetry's ``LangchainInstrumentor``,
or any tracer that makes its span current), coordgap's spans join its trace instead of
starting one of their own. At the run's first task, the run's span of that tracer is
found from the task's LangChain callbacks (its ``parent_run_id`` is the graph's run;
OpenInference keeps a run id -> span map, OpenLLMetry a run id -> holder map), else as
the span made current since the run started. Then:

- a failed handoff is a child of the tracer's span for the graph run (inside a
  subgraph: for the node running that subgraph): a handoff is an edge between two
  nodes, not part of either, and one whose target never starts (an invalid route, an
  undelivered join) has no target span at all;
- a node's coordgap attributes go on the tracer's own span for the node (found from
  inside the node's step, :class:`NodeStep`, the one moment that span is open while
  coordgap runs); a failed attempt, and a failed router of that node, are child spans
  of it; with ``spans="all"`` that span is also made current during the node, as
  coordgap's own node span would be;
- ``spans="failures"`` makes no ``coordgap.run`` span: the tracer's graph span stands
  for the run; ``spans="all"`` keeps its run span, which the tracer's graph span then
  nests under (it starts before LangGraph's run does).

Nothing of this runs when no such tracer is found, and any surprise in a tracer's
internals means "not found": coordgap then behaves as without it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping, Sequence
from contextvars import ContextVar, Token
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
)

from . import semconv as sc
from .events import HandoffOutcome, NodeOutcome, RouterOutcome, RunOutcome

_MAX_DEFERRED = 256  # failures kept per run for "failures" mode; beyond that they are only counted


def _add_failure(attrs: dict[str, Any], e: NodeOutcome | HandoffOutcome) -> None:
    """Add what a failed node attempt or handoff says: error type, contract, fault, capture."""
    attrs[sc.ATTR_ERROR_TYPE] = e.error_type or "Exception"
    if e.contract is not None:
        attrs[sc.ATTR_CONTRACT] = e.contract
        attrs[sc.ATTR_CONTRACT_FIELDS] = list(e.fields)
    if e.fault:
        attrs[sc.ATTR_FAULT] = True
    if e.captured is not None:
        attrs[sc.ATTR_CAPTURED_INPUT] = e.captured


def _node_attributes(e: NodeOutcome) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        sc.ATTR_GRAPH: e.graph,
        sc.ATTR_NODE: e.node,
        sc.ATTR_ATTEMPT: e.attempt,
        sc.ATTR_OUTCOME: "ok" if e.ok else "error",
    }
    if e.step is not None:
        attrs[sc.ATTR_STEP] = e.step
    if not e.ok:
        _add_failure(attrs, e)
    return attrs


def _handoff_attributes(e: HandoffOutcome) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        sc.ATTR_GRAPH: e.graph,
        sc.ATTR_SOURCE: e.source,
        sc.ATTR_TARGET: e.target,
        sc.ATTR_HANDOFF_KIND: e.kind,
        sc.ATTR_OUTCOME: "ok" if e.ok else "error",
        sc.OPENINFERENCE_SPAN_KIND: sc.SPAN_KIND_GUARDRAIL,
        sc.GRAPH_NODE_ID: e.target,
        sc.GRAPH_NODE_PARENT_ID: e.source,
    }
    if not e.ok:
        _add_failure(attrs, e)
    return attrs


def _router_attributes(e: RouterOutcome) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        sc.ATTR_GRAPH: e.graph,
        sc.ATTR_ROUTER: e.router,
        sc.ATTR_SOURCE: e.source,
        sc.ATTR_OUTCOME: "ok" if e.ok else "error",
        sc.OPENINFERENCE_SPAN_KIND: sc.SPAN_KIND_DECISION,
        sc.GRAPH_NODE_ID: e.router,
        sc.GRAPH_NODE_PARENT_ID: e.source,
    }
    if e.targets:
        attrs[sc.ATTR_TARGET] = list(e.targets)
    if not e.ok:
        attrs[sc.ATTR_ERROR_TYPE] = e.error_type or "Exception"
        if e.fault:
            attrs[sc.ATTR_FAULT] = True
    return attrs


def _error_status(error_type: str | None) -> Status:
    return Status(StatusCode.ERROR, error_type or "error")


def node_parent(graph: str, node: str) -> str:
    """Return a node's parent in the agent graph: its container node (``outer`` for
    ``outer/inner``), else the graph."""
    container = node.rpartition("/")[0]
    return container or graph


# -- another tracer's spans ---------------------------------------------------------------


def peer_span(callbacks: Any) -> Any:
    """Return the span another LangChain tracer keeps for the run ``callbacks`` belong to, or None.

    ``callbacks`` is the callback manager LangChain hands a child run: its
    ``parent_run_id`` names the run (the graph's, for a task; the node's, inside a node's
    step). Each tracer is asked through what it keeps per run id: OpenInference's
    ``OpenInferenceTracer.get_span(run_id)``; OpenLLMetry's ``TraceloopCallbackHandler.spans``
    (run id -> a holder with ``.span``). A handler that is neither, or answers anything but
    a valid span, is skipped.
    """
    run_id = getattr(callbacks, "parent_run_id", None)
    if run_id is None:
        return None
    for handler in getattr(callbacks, "handlers", None) or ():
        try:
            get_span = getattr(handler, "get_span", None)
            if callable(get_span):
                span = get_span(run_id)
            else:
                spans = getattr(handler, "spans", None)
                span = getattr(spans.get(run_id), "span", None) if isinstance(spans, dict) else None
            if isinstance(span, trace.Span) and span.get_span_context().is_valid:
                return span
        except Exception:  # a tracer whose internals changed: as if absent
            continue
    return None


def _annotate(span: Any, attributes: Mapping[str, Any]) -> None:
    """Add coordgap's attributes to another tracer's span; never overwrite one it set."""
    if not span.is_recording():
        return
    own = getattr(span, "attributes", None) or {}
    span.set_attributes({k: v for k, v in attributes.items() if k not in own})


def _context_of(span_context: SpanContext) -> Any:
    """Return an OpenTelemetry context whose current span is ``span_context`` (a parent only)."""
    return trace.set_span_in_context(NonRecordingSpan(span_context))


class PeerNode:
    """A node attempt while another tracer traces the run: its coordgap attributes, and the
    other tracer's span for the node once :class:`NodeStep` found it.

    It stands where coordgap's own node span would (``Task.span``), so it answers
    ``get_span_context()`` as a span does (the histogram's exemplars point at it).
    """

    __slots__ = ("attributes", "context", "entered", "live", "run")

    def __init__(self, run: Any, attributes: dict[str, Any], live: bool) -> None:
        self.run = run
        self.attributes = attributes
        self.live = live
        self.entered = False
        self.context: SpanContext = INVALID_SPAN_CONTEXT

    def get_span_context(self) -> SpanContext:
        return self.context


_PEER_NODE: ContextVar[PeerNode | None] = ContextVar("coordgap_peer_node", default=None)
"""The node attempt whose task runs here, set only while another tracer traces the run."""


class NodeStep(Runnable[Any, Any]):
    """Wraps the node's own step inside its task (``_compat.wrap_node_step``): calls it unchanged.

    LangGraph opens the node's callback run just before this step and closes it just after,
    so here, and only here, another tracer's span for the node is open: the step finds it
    from the callbacks LangChain gives the step, puts the node's coordgap attributes on it,
    remembers it (a failed attempt's span becomes its child) and, with ``spans="all"``,
    makes it current while the node runs. With no other tracer it only calls the step.
    """

    def __init__(self, inner: Runnable[Any, Any]) -> None:
        self.inner = inner

    @property
    def name(self) -> str | None:  # type: ignore[override]
        return getattr(self.inner, "name", None)

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        return self.inner.get_name(suffix, name=name)

    @staticmethod
    def _enter(config: Any) -> Any:
        """Find the other tracer's node span; return the context token to detach, or None."""
        node = _PEER_NODE.get()
        if node is None or node.entered:
            return None  # a nested graph's entry step under a node already entered
        node.entered = True
        try:
            span = peer_span(config.get("callbacks") if config else None)
            if span is None:
                return None
            node.context = span.get_span_context()
            _annotate(span, node.attributes)
            if node.live:
                return otel_context.attach(trace.set_span_in_context(span))
        except Exception:  # a tracer whose internals changed: as if absent
            pass
        return None

    @staticmethod
    def _leave(token: Any) -> None:
        try:
            otel_context.detach(token)
        except Exception:
            pass

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        if _PEER_NODE.get() is None:
            return self.inner.invoke(input, config, **kwargs)
        token = self._enter(config)
        try:
            return self.inner.invoke(input, config, **kwargs)
        finally:
            if token is not None:
                self._leave(token)

    def ainvoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Coroutine[Any, Any, Any]:
        if _PEER_NODE.get() is None:
            # the step's own coroutine: no frame of ours between LangGraph and the node
            return self.inner.ainvoke(input, config, **kwargs)
        return self._ainvoke_joined(input, config, **kwargs)

    async def _ainvoke_joined(self, input: Any, config: Any, **kwargs: Any) -> Any:
        token = self._enter(config)
        try:
            return await self.inner.ainvoke(input, config, **kwargs)
        finally:
            if token is not None:
                self._leave(token)

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        token = self._enter(config) if _PEER_NODE.get() is not None else None
        try:
            yield from self.inner.stream(input, config, **kwargs)
        finally:
            if token is not None:
                self._leave(token)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        token = self._enter(config) if _PEER_NODE.get() is not None else None
        try:
            async for chunk in self.inner.astream(input, config, **kwargs):
                yield chunk
        finally:
            if token is not None:
                self._leave(token)

    def __repr__(self) -> str:
        return f"NodeStep({self.inner!r})"


# -- the recorder ------------------------------------------------------------------------


class SpanRecorder:
    """Creates coordgap's spans in the mode asked for; one per instrumented graph."""

    def __init__(
        self, tracer_provider: Any, mode: str, graph: str, *, gen_ai: bool = False
    ) -> None:
        self.mode = mode
        self.graph = graph
        self.live = mode == "all"
        self.gen_ai = gen_ai
        provider = tracer_provider or trace.get_tracer_provider()
        from importlib.metadata import version

        try:
            ver = version("coordgap")
        except Exception:
            ver = "0"
        self.tracer = provider.get_tracer(sc.SCOPE_NAME, ver)
        run_attrs: dict[str, Any] = {
            sc.ATTR_GRAPH: graph,
            sc.OPENINFERENCE_SPAN_KIND: sc.SPAN_KIND_AGENT,
            sc.GRAPH_NODE_ID: graph,
        }
        if gen_ai:
            run_attrs[sc.GEN_AI_OPERATION_NAME] = sc.GEN_AI_INVOKE_WORKFLOW
            run_attrs[sc.GEN_AI_AGENT_NAME] = graph
        self._run_attrs = run_attrs
        self._peer_graph_attrs = {sc.ATTR_GRAPH: graph, sc.GRAPH_NODE_ID: graph}
        self._node_attrs: dict[str, dict[str, Any]] = {}

    def node_step(self, inner: Runnable[Any, Any]) -> NodeStep:
        """Return the wrapper for a node's own step (see :class:`NodeStep`)."""
        return NodeStep(inner)

    def _node_static(self, node: str) -> dict[str, Any]:
        """Return the attributes every span of ``node`` carries besides coordgap's (one dict
        per node, reused)."""
        attrs = self._node_attrs.get(node)
        if attrs is None:
            attrs = {
                sc.OPENINFERENCE_SPAN_KIND: sc.SPAN_KIND_CHAIN,
                sc.GRAPH_NODE_ID: node,
                sc.GRAPH_NODE_PARENT_ID: node_parent(self.graph, node),
            }
            if self.gen_ai:
                attrs[sc.GEN_AI_OPERATION_NAME] = sc.GEN_AI_INVOKE_AGENT
                attrs[sc.GEN_AI_AGENT_NAME] = node
            attrs = self._node_attrs.setdefault(node, attrs)
        return attrs

    # -- runs ---------------------------------------------------------------------

    def run_start(self, run: Any) -> None:
        """Open the run span (live mode) or remember the parent context (failures mode)."""
        if self.live:
            span = self.tracer.start_span(
                sc.SPAN_RUN,
                kind=SpanKind.INTERNAL,
                attributes=self._run_attrs,
                start_time=run.start_ns,
            )
            run.span = span
            run.otel_ctx = trace.set_span_in_context(span)
        else:
            run.parent_ctx = otel_context.get_current()

    def join(self, run: Any, config: Any) -> None:
        """Find another tracer's span for this run of the graph; called once per run, at its
        first task (of the graph itself, not of a subgraph).

        Sets ``run.peer`` to a context whose span is that span (None when nothing else
        traces) and puts the graph's name on it.
        """
        run.peer_checked = True
        try:
            callbacks = config.get("callbacks") if config is not None else None
            span = peer_span(callbacks)
            if span is None:
                span = self._made_current(run)
                if span is None:
                    return
            run.peer = _context_of(span.get_span_context())
            _annotate(span, self._peer_graph_attrs)
        except Exception:  # a tracer whose internals changed: as if absent
            run.peer = None

    def _made_current(self, run: Any) -> Any:
        """Return the span some tracer made current since the run started (a tracer that
        attaches its spans to the context), or None."""
        current = trace.get_current_span()
        found = current.get_span_context()
        if not found.is_valid:
            return None
        own = run.span if run.span is not None else trace.get_current_span(run.parent_ctx)
        if own.get_span_context().span_id == found.span_id:
            return None
        return current

    def run_end_clean(self, run: Any, end_ns: int) -> None:
        """Close the live run span of a run that finished ok with no failure:
        run_end() without building the outcome."""
        self._close_live(run, "ok", True, None, end_ns)

    def _close_live(
        self, run: Any, status: str, clean: bool, error_type: str | None, end_ns: int
    ) -> None:
        span = run.span
        if span is None:
            return
        span.set_attribute(sc.ATTR_OUTCOME, status)
        if status == "error":
            span.set_attribute(sc.ATTR_ERROR_TYPE, error_type or "Exception")
            span.set_status(_error_status(error_type))
        elif not clean and status == "ok":
            span.set_status(Status(StatusCode.ERROR, "a component failed"))
        span.end(end_time=end_ns)

    def run_end(self, run: Any, outcome: RunOutcome) -> None:
        """Close the run span, or, in failures mode, create it with its failed children."""
        if self.live:
            self._close_live(run, outcome.status, outcome.clean, outcome.error_type, outcome.end_ns)
            return
        if run.peer is not None:
            return  # the other tracer's graph span stands for the run; failures are made
        failures = run.failures
        if not failures and outcome.status != "error":
            return
        attrs: dict[str, Any] = {**self._run_attrs, sc.ATTR_OUTCOME: outcome.status}
        if outcome.error_type:
            attrs[sc.ATTR_ERROR_TYPE] = outcome.error_type
        span = self.tracer.start_span(
            sc.SPAN_RUN,
            context=run.parent_ctx,
            kind=SpanKind.INTERNAL,
            attributes=attrs,
            start_time=outcome.start_ns,
        )
        span.set_status(_error_status(outcome.error_type or "a component failed"))
        ctx = trace.set_span_in_context(span)
        for event in failures or ():
            self._failure_span(event, ctx)
        span.end(end_time=outcome.end_ns)

    # -- nodes ---------------------------------------------------------------------

    def node_start(
        self,
        node: str,
        start_ns: int,
        attempt: int | None = None,
        step: int | None = None,
        received: Sequence[tuple[str, str]] = (),
        run: Any = None,
    ) -> tuple[Any, Any]:
        """Start a node span as the current span; return (span, context token).

        ``received`` are the (source, kind) handoffs the node received, recorded as attributes
        (not span events: an event costs about a third of a span in the SDK). When another
        tracer traces ``run``, no span is started: the attributes wait for that tracer's node
        span (a :class:`PeerNode` stands for it, see :class:`NodeStep`).
        """
        # Set at start, the attributes are cleaned once. The outcome is "ok" until the
        # attempt ends otherwise (node_end overwrites it): nothing sees a span before it
        # ends, and the happy path sets no attribute at its end.
        attrs: dict[str, Any] = {
            **self._node_static(node),
            sc.ATTR_GRAPH: self.graph,
            sc.ATTR_NODE: node,
        }
        if attempt is not None:
            attrs[sc.ATTR_ATTEMPT] = attempt
        if step is not None:
            attrs[sc.ATTR_STEP] = step
        if received and self.live:
            attrs[sc.ATTR_RECEIVED_FROM] = [source for source, _ in received]
            attrs[sc.ATTR_RECEIVED_KINDS] = [kind for _, kind in received]
        if run is not None and run.peer is not None:
            # on another tracer's span: its kind and GenAI names are that tracer's to set
            for key in (sc.OPENINFERENCE_SPAN_KIND, sc.GEN_AI_OPERATION_NAME, sc.GEN_AI_AGENT_NAME):
                attrs.pop(key, None)
            peer = PeerNode(run, attrs, self.live)
            return peer, _PEER_NODE.set(peer)
        attrs[sc.ATTR_OUTCOME] = "ok"
        span = self.tracer.start_span(
            sc.SPAN_NODE,
            kind=SpanKind.INTERNAL,
            attributes=attrs,
            start_time=start_ns,
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        return span, token

    def node_end(self, span: Any, token: Any, event: NodeOutcome | None, end_ns: int) -> None:
        """End a node span; ``event`` is None when the node was interrupted (not a failure)."""
        if type(span) is PeerNode:
            _reset_peer_node(token)  # a failed attempt was made a span by failure()
            return
        try:
            otel_context.detach(token)
        finally:
            if event is not None:
                span.set_attributes(_node_attributes(event))
                if not event.ok:
                    span.set_status(_error_status(event.error_type))
            else:
                span.set_attribute(sc.ATTR_OUTCOME, "interrupted")
            span.end(end_time=end_ns)

    def node_end_ok(self, span: Any, token: Any, end_ns: int) -> None:
        """End a node span whose attempt succeeded: node_end() without building the event.

        The span was started with its attempt, step and outcome "ok" (node_start).
        """
        if type(span) is PeerNode:
            _reset_peer_node(token)
            return
        try:
            otel_context.detach(token)
        finally:
            span.end(end_time=end_ns)

    # -- failures and handoffs ---------------------------------------------------------

    def failure(self, run: Any, event: NodeOutcome | HandoffOutcome | RouterOutcome) -> None:
        """A failed component: a span now (live) or at the run's end (failures mode)."""
        peer = run.peer if run is not None else None
        if peer is not None:
            self._joined_failure(run, peer, event)
        elif self.live:
            if isinstance(event, NodeOutcome):
                return  # the live node span carries it
            parent = run.otel_ctx if run is not None else None
            self._failure_span(event, parent)
        elif run is not None:
            if len(run.failures) < _MAX_DEFERRED:
                run.failures.append(event)
        else:
            self._failure_span(event, None)

    def _joined_failure(
        self, run: Any, peer: Any, event: NodeOutcome | HandoffOutcome | RouterOutcome
    ) -> None:
        """A failure while another tracer traces the run: a span now, in that tracer's trace.

        Its parent is the other tracer's span for the node attempt current here, else its
        span for the graph run. A node attempt's failure and a router's (a router runs in
        its source node's task) are current in their node's task. A handoff never is: it
        is read before its target's attempt starts, or after its source's ended; so it goes
        under the graph's span, or, inside a subgraph, under the span of the node running
        that subgraph (the subgraph's run is inside it).
        """
        if len(run.failures) >= _MAX_DEFERRED:
            return
        run.failures.append(event)
        parent = peer
        node = _PEER_NODE.get()
        if node is not None and node.run is run and node.context.is_valid:
            parent = _context_of(node.context)
        self._failure_span(event, parent)

    def _failure_span(self, event: Any, parent: Any) -> None:
        if isinstance(event, NodeOutcome):
            name = sc.SPAN_NODE
            attrs = {**self._node_static(event.node), **_node_attributes(event)}
        elif isinstance(event, HandoffOutcome):
            name, attrs = sc.SPAN_HANDOFF, _handoff_attributes(event)
        else:
            name, attrs = sc.SPAN_ROUTER, _router_attributes(event)
        span = self.tracer.start_span(
            name,
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes=attrs,
            start_time=event.start_ns,
        )
        span.set_status(_error_status(event.error_type))
        span.end(end_time=max(event.end_ns, event.start_ns))


def _reset_peer_node(token: Token[PeerNode | None]) -> None:
    try:
        _PEER_NODE.reset(token)
    except ValueError:  # reset from another context (a stream closed elsewhere)
        _PEER_NODE.set(None)
