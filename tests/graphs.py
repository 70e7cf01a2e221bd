"""Hypothesis strategies for random valid LangGraph StateGraphs, and a differential runner.

A graph is drawn as a frozen :class:`GraphSpec` (plain data, so hypothesis can
shrink and print it) and turned into a fresh ``StateGraph`` by :func:`build`
each time it is needed: a bare build and an instrumented build never share a
node function, a retry counter or a checkpointer.

What the strategy covers: 1-6 nodes, static edges (forward and back, so loops
that end in ``GraphRecursionError``), conditional edges with and without a
path map (including invalid routes), ``Send`` fan-out, ``Command`` routing,
joins (``add_edge([a, b], c)``), subgraphs (one level), sync and async nodes,
nodes that raise, flaky nodes under a ``RetryPolicy``, ``interrupt()`` with
resume, and custom stream writes.

Profiles: ``fuzz_settings()`` returns the hypothesis settings for the fuzzing
tests: profile ``"ci"`` (bounded, the default) or ``"soak"`` (selected with
``COORDGAP_FUZZ=soak``). The profiles are registered but not loaded, so other
test modules keep hypothesis's defaults.

Usage::

    from graphs import graph_specs, build, fuzz_settings

    @fuzz_settings()
    @given(graph_specs())
    def test_something(spec):
        bare = build(spec).compile()
        app = coordgap.instrument(build(spec))
"""

from __future__ import annotations

import asyncio
import dataclasses
import operator
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from langgraph.config import get_stream_writer
from langgraph.constants import END, START
from langgraph.graph import StateGraph
from langgraph.types import Command, RetryPolicy, Send, interrupt

__all__ = [
    "EdgeSpec",
    "Flaky",
    "GraphSpec",
    "NodeSpec",
    "State",
    "build",
    "fuzz_settings",
    "graph_specs",
    "normalize",
    "without_async",
]

settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "soak",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


def fuzz_settings(**overrides: Any) -> settings:
    """Return the settings of the active fuzz profile (``$COORDGAP_FUZZ``, default ``ci``)."""
    profile = os.environ.get("COORDGAP_FUZZ", "ci")
    return settings(settings.get_profile(profile), **overrides)


class State(TypedDict, total=False):
    x: Annotated[int, operator.add]
    log: Annotated[list[str], operator.add]
    answer: str


class Flaky(Exception):
    """Raised by a flaky node on its first attempt at a given state; retried."""


class Boom(ValueError):
    """Raised by a node that fails for good (a ValueError: not retried by default)."""


@dataclass(frozen=True)
class NodeSpec:
    name: str
    is_async: bool = False
    raises_at: int | None = None
    """Raise Boom when the state's ``x`` modulo 7 equals this."""
    flaky: bool = False
    interrupts: bool = False
    custom: bool = False
    command: tuple[str, ...] | None = None
    """Return Command(goto=command[x % len]) (destinations declared)."""
    subgraph: GraphSpec | None = None


@dataclass(frozen=True)
class EdgeSpec:
    source: str
    kind: str
    """'static', 'conditional', 'send'."""
    targets: tuple[str, ...]
    path_map: bool = False
    multi: bool = False
    """For conditional: return a list of two targets (fan-out)."""


@dataclass(frozen=True)
class GraphSpec:
    nodes: tuple[NodeSpec, ...]
    entry: tuple[str, ...]
    edges: tuple[EdgeSpec, ...] = ()
    joins: tuple[tuple[tuple[str, ...], str], ...] = ()
    entry_router: bool = False

    @property
    def has_async(self) -> bool:
        return any(
            n.is_async or (n.subgraph is not None and n.subgraph.has_async) for n in self.nodes
        )

    @property
    def has_interrupts(self) -> bool:
        return any(
            n.interrupts or (n.subgraph is not None and n.subgraph.has_interrupts)
            for n in self.nodes
        )

    @property
    def parallel(self) -> bool:
        """True when two tasks may run in one superstep (their order is then not fixed)."""
        out: dict[str, int] = {}
        for e in self.edges:
            width = 2 if e.kind == "send" or e.multi else 1
            out[e.source] = out.get(e.source, 0) + width
        return (
            len(self.entry) > 1
            or any(v > 1 for v in out.values())
            or bool(self.joins)
            or any(n.subgraph is not None and n.subgraph.parallel for n in self.nodes)
            or any(n.command is not None and n.name in out for n in self.nodes)
        )


# -- strategies --------------------------------------------------------------------------


@st.composite
def _node_specs(draw: Any, name: str, names: list[str], allow_sub: bool) -> NodeSpec:
    is_async = draw(st.booleans())
    raises_at = draw(st.one_of(st.none(), st.none(), st.integers(0, 6)))
    flaky = draw(st.booleans())
    interrupts = draw(st.integers(0, 5)) == 0
    custom = draw(st.booleans())
    command = None
    if draw(st.integers(0, 4)) == 0:
        command = tuple(draw(st.lists(st.sampled_from([*names, END]), min_size=1, max_size=3)))
    sub = None
    if allow_sub and draw(st.integers(0, 4)) == 0:
        sub = draw(graph_specs(max_nodes=3, allow_sub=False, prefix=f"{name}_"))
    return NodeSpec(name, is_async, raises_at, flaky, interrupts, custom, command, sub)


@st.composite
def graph_specs(
    draw: Any, max_nodes: int = 6, allow_sub: bool = True, prefix: str = "n"
) -> GraphSpec:
    """Draw a random valid StateGraph description."""
    size = draw(st.integers(1, max_nodes))
    names = [f"{prefix}{i}" for i in range(size)]
    nodes = tuple(draw(_node_specs(n, names, allow_sub)) for n in names)
    entry_router = draw(st.integers(0, 5)) == 0
    entry = tuple(draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True)))
    edges: list[EdgeSpec] = []
    for node in nodes:
        if node.command is not None and draw(st.booleans()):
            continue  # routed by Command only
        kind = draw(
            st.sampled_from(["none", "static", "static", "conditional", "conditional", "send"])
        )
        if kind == "none":
            continue
        pool = [*names, END]
        if kind == "static":
            target = draw(st.sampled_from(pool))
            edges.append(EdgeSpec(node.name, "static", (target,)))
        elif kind == "conditional":
            targets = tuple(draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3)))
            # an unknown name: silently ignored without a path map, KeyError with one
            if draw(st.integers(0, 6)) == 0:
                targets = (*targets, "nowhere")
            edges.append(
                EdgeSpec(
                    node.name,
                    "conditional",
                    targets,
                    path_map=draw(st.booleans()),
                    multi=draw(st.integers(0, 3)) == 0,
                )
            )
        else:
            targets = tuple(draw(st.lists(st.sampled_from(names), min_size=1, max_size=2)))
            edges.append(EdgeSpec(node.name, "send", targets))
    joins: list[tuple[tuple[str, ...], str]] = []
    if size >= 3 and draw(st.integers(0, 3)) == 0:
        sources = tuple(
            sorted(draw(st.lists(st.sampled_from(names), min_size=2, max_size=2, unique=True)))
        )
        joins.append((sources, draw(st.sampled_from(names))))
    return GraphSpec(nodes, entry, tuple(edges), tuple(joins), entry_router)


def without_async(spec: GraphSpec) -> GraphSpec:
    """Return the spec with every node made synchronous."""
    nodes = tuple(
        dataclasses.replace(
            n, is_async=False, subgraph=None if n.subgraph is None else without_async(n.subgraph)
        )
        for n in spec.nodes
    )
    return dataclasses.replace(spec, nodes=nodes)


# -- building -------------------------------------------------------------------------------


def _x(state: Any) -> int:
    try:
        return int(state.get("x", 0))
    except Exception:
        return 0


def _make_node(
    spec: NodeSpec, attempts: dict[Any, int], lock: threading.Lock
) -> Callable[..., Any]:
    def body(state: Any) -> Any:
        x = _x(state)
        if spec.interrupts:
            answer = interrupt({"node": spec.name, "x": x})
            update_extra = {"answer": str(answer)}
        else:
            update_extra = {}
        if spec.custom:
            get_stream_writer()({"node": spec.name, "x": x})
        if spec.flaky:
            key = (spec.name, x, len(state.get("log", ()) or ()))
            with lock:
                attempts[key] = attempts.get(key, 0) + 1
                first = attempts[key] == 1
            if first:
                raise Flaky(f"{spec.name} flaked at x={x}")
        if spec.raises_at is not None and x % 7 == spec.raises_at:
            raise Boom(f"{spec.name} failed at x={x}")
        update = {"x": 1, "log": [spec.name], **update_extra}
        if spec.command is not None:
            return Command(goto=spec.command[x % len(spec.command)], update=update)
        return update

    if spec.is_async:

        async def anode(state: State) -> Any:
            await asyncio.sleep(0)
            return body(state)

        anode.__name__ = spec.name
        return anode

    def node(state: State) -> Any:
        return body(state)

    node.__name__ = spec.name
    return node


def _router(edge: EdgeSpec) -> Callable[[Any], Any]:
    targets = edge.targets

    def route(state: Any) -> Any:
        x = _x(state)
        if edge.kind == "send":
            return [Send(t, {"x": x, "log": []}) for t in targets]
        first = targets[x % len(targets)]
        if edge.multi:
            second = targets[(x + 1) % len(targets)]
            return [first, second] if second != first else [first]
        return first

    route.__name__ = f"route_{edge.source}"
    return route


def build(spec: GraphSpec, checkpointer: Any = None, compile_sub: bool = True) -> StateGraph[Any]:
    """Return a fresh StateGraph for the spec (nothing shared with any other build)."""
    attempts: dict[Any, int] = {}
    lock = threading.Lock()
    g: StateGraph[Any] = StateGraph(State)
    retry = RetryPolicy(max_attempts=3, initial_interval=0.0, jitter=False, retry_on=Flaky)
    for node in spec.nodes:
        if node.subgraph is not None:
            runnable: Any = build(node.subgraph).compile()
            g.add_node(node.name, runnable)
            continue
        fn = _make_node(node, attempts, lock)
        kwargs: dict[str, Any] = {}
        if node.flaky:
            kwargs["retry_policy"] = retry
        if node.command is not None:
            kwargs["destinations"] = tuple(node.command)
        g.add_node(node.name, fn, **kwargs)
    if spec.entry_router:
        entry = spec.entry

        def route_entry(state: Any) -> Any:
            return entry[_x(state) % len(entry)]

        g.add_conditional_edges(START, route_entry, list(entry))
    else:
        for name in spec.entry:
            g.add_edge(START, name)
    for edge in spec.edges:
        if edge.kind == "static":
            g.add_edge(edge.source, edge.targets[0])
        elif edge.kind == "send":
            g.add_conditional_edges(edge.source, _router(edge), list(dict.fromkeys(edge.targets)))
        elif edge.path_map:
            known = [t for t in dict.fromkeys(edge.targets) if t != "nowhere"]
            g.add_conditional_edges(edge.source, _router(edge), {t: t for t in known})
        else:
            g.add_conditional_edges(edge.source, _router(edge))
    for sources, target in spec.joins:
        g.add_edge(list(sources), target)
    return g


# -- comparing runs ---------------------------------------------------------------------------

_MASKS = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<hex>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?"), "<ts>"),
    (re.compile(r"0x[0-9a-f]+"), "<addr>"),
]
_MASK_KEYS = frozenset(
    {
        "id",
        "checkpoint_id",
        "parent_checkpoint_id",
        "ts",
        "timestamp",
        "created_at",
        "task_id",
        "run_id",
    }
)


def _mask(text: str) -> str:
    for pattern, repl in _MASKS:
        text = pattern.sub(repl, text)
    return text


def normalize(value: Any) -> Any:
    """Return a comparable, id- and time-free rendering of a run's output, chunk or state."""
    if isinstance(value, BaseException):
        return ("exception", type(value).__name__, _mask(str(value)))
    if isinstance(value, dict):
        return {
            _mask(str(k)): ("<masked>" if k in _MASK_KEYS else normalize(v))
            for k, v in value.items()
        }
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return (type(value).__name__, normalize(value._asdict()))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return (type(value).__name__, normalize(fields))
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    if isinstance(value, str):
        return _mask(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _mask(repr(value))
