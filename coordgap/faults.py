"""Seeded fault injection: make nodes, routers and handoffs fail at chosen rates.

:func:`inject` returns a *new* ``StateGraph`` builder (the user's is never
changed) whose components fail at the given rates, so retries, fallbacks,
contracts and reliability gates can be exercised without an unreliable model::

    from coordgap import faults

    faulty = faults.inject(
        build_research_agent(),
        nodes={"analyze": 0.04},
        handoffs={("retrieve", "analyze"): 0.03},
        seed=7,
    )
    app = coordgap.instrument(faulty)

What a fault does:

- a **node** or **router** fault raises :class:`InjectedFault` before the
  user's function runs, so a ``RetryPolicy`` retries it (each attempt draws
  again) and the run fails when no retry saves it;
- a **handoff** fault corrupts the state the target receives: the fields the
  handoff's contracts require are dropped (every field, when no contract names
  them), so the contract fails, is recorded, and the run goes on. A handoff
  runs no code of its own, so corruption is its only failure; it takes effect
  when the graph is instrumented (contracts are checked there).

Every injected failure is flagged as a fault in the events, the ledger
(``faults`` counts) and the spans (attribute ``coordgap.fault``), so a real
failure is never mistaken for an injected one.

Determinism: each decision is a pure function of ``(seed, component, n)``,
where ``n`` counts that component's draws, so the same seed on a freshly
injected builder gives the same faults, and parallel supersteps of different
components cannot reorder each other's draws. (When one node runs several
times in the same superstep, e.g. a ``Send`` fan-out, the number of faults in
the superstep is fixed but which of its payloads gets one follows thread
scheduling.)
"""

from __future__ import annotations

import difflib
import hashlib
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from langchain_core.runnables import Runnable, RunnableConfig

from . import _compat as lg
from . import semconv as sc
from ._checks import checked_probability
from .errors import ConfigurationError
from .topology import parse_handoff

__all__ = ["FaultPlan", "InjectedFault", "inject"]

FaultKind = Literal["raise", "corrupt"]


class InjectedFault(Exception):
    """The exception a node or router fault raises; flagged so it is counted as a fault.

    Attributes:
        component: ``"node analyze"`` or ``"router route"``.
        draw: the component's draw number that fired (0-based).
    """

    __coordgap_fault__ = True

    def __init__(self, component: str, draw: int) -> None:
        self.component = component
        self.draw = draw
        super().__init__(f"fault injected by coordgap.faults into {component} (draw {draw})")

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (InjectedFault, (self.component, self.draw))


def draw(seed: int, component: str, n: int) -> float:
    """Return the uniform number in [0, 1) for the n-th draw of a component under a seed.

    A hash, not a random stream: the value depends on nothing but its three arguments.

    Example::

        >>> draw(7, "node:analyze", 0) == draw(7, "node:analyze", 0)
        True
    """
    digest = hashlib.blake2b(f"{seed}\x00{component}\x00{n}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class FaultPlan:
    """The rates of one :func:`inject` call and the per-component draw counters.

    Available on the returned builder as ``builder.coordgap_faults``; ``counts``
    tells how many draws and faults each component has had so far.
    """

    def __init__(
        self,
        *,
        seed: int,
        nodes: Mapping[str, float],
        routers: Mapping[str, float],
        handoffs: Mapping[tuple[str, str], float],
        handoff_default: float | None,
    ) -> None:
        self.seed = seed
        self.nodes = dict(nodes)
        self.routers = dict(routers)
        self.handoffs = dict(handoffs)
        self.handoff_default = handoff_default
        self._lock = threading.Lock()
        self._draws: dict[str, int] = {}
        self._fired: dict[str, int] = {}
        self._required: dict[int, frozenset[str] | None] = {}

    def decide(self, component: str, rate: float) -> tuple[bool, int]:
        """Return (fault?, draw number) for the next draw of ``component``."""
        with self._lock:
            n = self._draws.get(component, 0)
            self._draws[component] = n + 1
        fired = rate > 0.0 and draw(self.seed, component, n) < rate
        if fired:
            with self._lock:
                self._fired[component] = self._fired.get(component, 0) + 1
        return fired, n

    def handoff_rate(self, source: str, target: str) -> float:
        """Return the fault rate of the handoff ``source -> target``."""
        rate = self.handoffs.get((source, target))
        if rate is not None:
            return rate
        if self.handoff_default is not None and not _is_start(source):
            return self.handoff_default
        return 0.0

    def touches(self, prefix: str) -> bool:
        """Return True when a fault is planned for a component named ``prefix...``."""
        if self.handoff_default:
            return True
        return any(n.startswith(prefix) for n in (*self.nodes, *self.routers)) or any(
            t.startswith(prefix) for _, t in self.handoffs
        )

    def corrupt(
        self,
        node: str,
        input: Any,
        sources: Sequence[str],
        requires: Any,
        edge_checks: Mapping[str, Any],
    ) -> tuple[Any, bool]:
        """Return (the input ``node`` receives, whether a fault corrupted it).

        Called by the task probe with the sources of the handoffs being delivered
        (``__start__`` for the entry) and the target's checks.
        """
        drop: set[str] = set()
        everything = False
        fired_any = False
        for source in sources:
            rate = self.handoff_rate(source, node)
            if rate <= 0.0:
                continue
            fired, _ = self.decide(f"handoff:{source}->{node}", rate)
            if not fired:
                continue
            fired_any = True
            checks = [c for c in (requires, edge_checks.get(source)) if c is not None]
            for check in checks:
                fields = self._required_fields(check)
                if fields:
                    drop |= fields
                else:
                    everything = True
            if not checks:
                everything = True
        if not fired_any:
            return input, False
        return _without(input, None if everything or not drop else drop), True

    def uncheckable(
        self, contracts: Mapping[str, tuple[Any, Mapping[str, Any]]]
    ) -> list[tuple[str, str]]:
        """Return the handoffs given a fault rate that no contract checks (per target node,
        its requires check and its edge checks by source)."""
        out = []
        for source, target in self.handoffs:
            if self.handoffs[(source, target)] <= 0.0:
                continue
            requires, edges = contracts.get(target, (None, {}))
            if requires is None and source not in edges:
                out.append((source, target))
        return out

    def _required_fields(self, check: Any) -> frozenset[str] | None:
        """Top-level fields a check reports missing on an empty state (None: unknown)."""
        key = id(check)
        with self._lock:
            if key in self._required:
                return self._required[key]
        found: frozenset[str] | None = None
        try:
            violation = check({})
            if violation is not None:
                names = {
                    f.split(".")[0]
                    for f, kind in zip(violation.fields, violation.error_types, strict=False)
                    if f and kind == "missing"
                }
                found = frozenset(names) or None
        except Exception:
            found = None
        with self._lock:
            self._required[key] = found
        return found

    @property
    def counts(self) -> dict[str, tuple[int, int]]:
        """Per component key (``node:analyze``, ``handoff:a->b``, ``router:r``): (draws, faults)."""
        with self._lock:
            return {k: (n, self._fired.get(k, 0)) for k, n in self._draws.items()}

    def fired(self) -> int:
        """Return how many faults the plan has fired so far, all components together."""
        with self._lock:
            return sum(self._fired.values())

    def __repr__(self) -> str:
        return (
            f"FaultPlan(seed={self.seed}, nodes={self.nodes}, routers={self.routers}, "
            f"handoffs={self.handoffs}, handoff_default={self.handoff_default})"
        )


# -- wrappers ---------------------------------------------------------------------------


class _FaultyNode(Runnable[Any, Any]):
    """A node's runnable that may raise before calling it.

    Input corruption is applied by coordgap's task probe (:meth:`FaultPlan.corrupt`),
    which knows which handoffs are being delivered and checks the contracts on
    the corrupted state.
    """

    def __init__(self, inner: Runnable[Any, Any], plan: FaultPlan, node: str) -> None:
        self.inner = inner
        self.plan = plan
        self.node = node
        self.rate = plan.nodes.get(node, 0.0)
        self.name = getattr(inner, "name", None)

    # the user's function stays reachable (declared contracts are read from it)
    @property
    def func(self) -> Any:
        return getattr(self.inner, "func", None)

    @property
    def afunc(self) -> Any:
        return getattr(self.inner, "afunc", None)

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        return self.inner.get_name(suffix, name=name)

    def _maybe_raise(self) -> None:
        if self.rate > 0.0:
            fired, n = self.plan.decide(f"node:{self.node}", self.rate)
            if fired:
                raise InjectedFault(f"node {self.node!r}", n)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        self._maybe_raise()
        return self.inner.invoke(input, config, **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        self._maybe_raise()
        return await self.inner.ainvoke(input, config, **kwargs)

    def __repr__(self) -> str:
        return f"faults._FaultyNode({self.node!r}, {self.inner!r})"


class _FaultyRouter(Runnable[Any, Any]):
    """A router's path function that may raise before deciding."""

    def __init__(self, inner: Runnable[Any, Any], plan: FaultPlan, router: str) -> None:
        self.inner = inner
        self.plan = plan
        self.router = router
        self.rate = plan.routers.get(router, 0.0)
        self.name = getattr(inner, "name", None)

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        return self.inner.get_name(suffix, name=name)

    def _maybe_raise(self) -> None:
        fired, n = self.plan.decide(f"router:{self.router}", self.rate)
        if fired:
            raise InjectedFault(f"router {self.router!r}", n)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        self._maybe_raise()
        return self.inner.invoke(input, config, **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        self._maybe_raise()
        return await self.inner.ainvoke(input, config, **kwargs)

    def __repr__(self) -> str:
        return f"faults._FaultyRouter({self.router!r}, {self.inner!r})"


def _without(value: Any, drop: set[str] | frozenset[str] | None) -> Any:
    """Return a copy of a state without the fields in ``drop`` (None: without any field)."""
    if isinstance(value, Mapping):
        return {k: v for k, v in value.items() if drop is not None and k not in drop}
    try:
        from pydantic import BaseModel
    except ImportError:  # pragma: no cover - pydantic is a dependency
        BaseModel = None  # type: ignore[assignment,misc]
    if BaseModel is not None and isinstance(value, BaseModel):
        kept = {k: v for k, v in dict(value).items() if drop is not None and k not in drop}
        return type(value).model_construct(**kept)
    return {}


# -- inject() ------------------------------------------------------------------------------


def _rate(value: Any, what: str) -> float:
    return checked_probability(value, what, noun="a fault rate", example="0.04 for 4 %")


def _check_name(name: Any, known: Iterable[str], what: str) -> None:
    known = list(known)
    if name not in known:
        close = difflib.get_close_matches(str(name), known, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigurationError(
            f"{what}: the graph has no {name!r}.{hint} It has: {', '.join(sorted(known)) or '-'}."
        )


def _per_component(
    value: Mapping[Any, Any] | float | None, known: Sequence[str], what: str
) -> dict[str, float]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        out = {}
        for name, rate in value.items():
            _check_name(name, known, what)
            out[name] = _rate(rate, f"{what}[{name!r}]")
        return out
    rate = _rate(value, what)
    return dict.fromkeys(known, rate)


def inject(
    builder: Any,
    *,
    nodes: Mapping[str, float] | float | None = None,
    handoffs: Mapping[tuple[str, str], float] | float | None = None,
    routers: Mapping[str, float] | float | None = None,
    seed: int = 0,
    kind: FaultKind | None = None,
) -> Any:
    """Return a copy of a ``StateGraph`` builder whose components fail at the given rates.

    Args:
        builder: a ``StateGraph`` builder (not compiled); it is not changed.
        nodes: per node name, the probability that an attempt raises
            :class:`InjectedFault`; or one rate for every node.
        handoffs: per ``(source, target)``, the probability that the state
            the target receives is corrupted (``START`` is a valid source); or
            one rate for every handoff between two nodes (not from ``START``).
        routers: per router name (its path function's name, as in the
            report), the probability that a decision raises; or one rate for all.
        seed: the seed every decision derives from.
        kind: ``"raise"`` to allow only raising faults (nodes, routers) or
            ``"corrupt"`` to allow only corrupting ones (handoffs); ``None``
            (default) gives each component its natural fault.

    Raises:
        ConfigurationError: an unknown component, a rate outside [0, 1], a
            compiled graph, a subgraph node, or a fault of the wrong ``kind``.

    Example::

        faulty = faults.inject(builder, nodes={"analyze": 0.04}, handoffs=0.03, seed=7)
        app = coordgap.instrument(faulty, handoffs={("retrieve", "analyze"): Retrieved})
    """
    if isinstance(builder, lg.CompiledStateGraph) or not isinstance(builder, lg.StateGraph):
        raise ConfigurationError(
            "faults.inject() takes the StateGraph builder (before compile()), not "
            f"{type(builder).__name__}; for a compiled graph pass its .builder."
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigurationError(f"seed={seed!r}: pass an int.")
    if kind not in (None, "raise", "corrupt"):
        raise ConfigurationError(f"kind={kind!r}: use 'raise', 'corrupt' or None.")
    if kind == "corrupt" and (nodes or routers):
        raise ConfigurationError(
            "kind='corrupt' applies to handoffs; node and router faults raise InjectedFault "
            "(leave kind unset to inject both)."
        )
    if kind == "raise" and handoffs:
        raise ConfigurationError(
            "kind='raise' applies to nodes and routers: a handoff runs no code of its own, "
            "its faults corrupt the state the target receives (leave kind unset, or use "
            "kind='corrupt')."
        )

    topology = lg.topology_of(builder, "faults")
    containers = set(topology.subgraphs)
    names = [n for n in topology.nodes if n not in containers]
    for given in (nodes, handoffs):
        if isinstance(given, Mapping):
            for key in given:
                named = key if isinstance(key, str) else None
                if isinstance(key, tuple) and len(key) == 2:
                    named = key[1]
                if named in containers:
                    raise ConfigurationError(
                        f"faults.inject(): {named!r} is a subgraph; name the inner node the "
                        f"report prints instead ({named}/<node>)."
                    )
    node_rates = _per_component(nodes, names, "nodes")
    router_rates = _per_component(routers, [r.name for r in topology.routers], "routers")
    handoff_rates: dict[tuple[str, str], float] = {}
    handoff_default: float | None = None
    if isinstance(handoffs, Mapping):
        for key, rate in handoffs.items():
            pair = key if isinstance(key, tuple) and len(key) == 2 else parse_handoff(key)
            if pair is None:
                raise ConfigurationError(
                    f"handoffs key {key!r}: use a (source, target) tuple of node names, or "
                    "'source -> target'."
                )
            source, target = (sc.START if pair[0] == lg.START else pair[0]), pair[1]
            if not _is_start(source):
                _check_name(source, names, "handoffs source")
            if target == lg.END or target.endswith("/" + sc.END):
                raise ConfigurationError(
                    f"handoffs[({source!r}, END)]: a handoff into END has no receiving node "
                    "whose state could be corrupted."
                )
            _check_name(target, names, "handoffs target")
            handoff_rates[(source, target)] = _rate(rate, f"handoffs[{key!r}]")
    elif handoffs is not None:
        handoff_default = _rate(handoffs, "handoffs")

    plan = FaultPlan(
        seed=seed,
        nodes=node_rates,
        routers=router_rates,
        handoffs=handoff_rates,
        handoff_default=handoff_default,
    )
    return _injected(builder, plan, "")


def _is_start(name: str) -> bool:
    return name == sc.START or name.endswith("/" + sc.START)


def _injected(builder: Any, plan: FaultPlan, prefix: str) -> Any:
    """Return a copy of ``builder`` with the plan's faults, subgraphs rebuilt where they get some."""
    work = lg.copy_builder(builder)
    for raw in list(work.nodes):
        name = prefix + raw
        spec = work.nodes[raw]
        sub = lg.subgraph_of(spec)
        called = [] if sub is not None else lg.called_subgraphs(spec)[:1]
        inner = f"{name}/"
        for graph in [sub] if sub is not None else called:
            if not plan.touches(inner):
                continue
            faulty = _compiled_like(_injected(lg.builder_of(graph), plan, inner), graph)
            if sub is not None:
                lg.set_node_runnable(work, raw, faulty)
            else:
                lg.set_node_runnable(
                    work, raw, lg.with_called_subgraphs(spec.runnable, {id(graph): faulty})
                )
        if sub is None and plan.nodes.get(name, 0.0) > 0.0:
            lg.set_node_runnable(work, raw, _FaultyNode(lg.node_runnable(work, raw), plan, name))
    ids = lg.router_ids(work)
    for source, bname, path, _ in lg.router_paths(work):
        router = prefix + ids[(source, bname)]
        if plan.routers.get(router, 0.0) > 0.0:
            lg.set_router_path(work, source, bname, _FaultyRouter(path, plan, router))
    work.coordgap_faults = plan  # type: ignore[attr-defined]
    return work


def _compiled_like(builder: Any, graph: Any) -> Any:
    """Compile ``builder`` with the options and settings ``graph`` was compiled with."""
    compiled = builder.compile(**lg.compile_options(graph))
    for key, value in lg.graph_level_settings(graph).items():
        setattr(compiled, key, value)
    return compiled
