"""Graph coverage and topology drift: what was declared, what actually ran.

The builder declares a graph: its nodes, static edges, joins, the path maps of
its routers and the destinations of annotated ``Command`` returns (see
:class:`~coordgap.topology.Topology`). The ledger knows every handoff that
really happened. Comparing the two answers three questions:

- **coverage** -- which declared nodes, edges and router targets were
  exercised at least once, and which never were ("the fallback
  ``cross_check -> retrieve`` was never taken in 500 runs");
- **drift** -- which transitions happened although nothing declares them: an
  unannotated ``Command(goto=...)``, a router without a path map, a ``Send``
  target. They are invisible in ``get_graph()`` drawings;
- **failed routes** -- routes to a node that does not exist (target
  ``__unknown__``, ``error.type`` ``InvalidRoute``) and handoffs whose target
  never started (``Undelivered``).

Pure: a function of a :class:`~coordgap.ledger.LedgerSnapshot` (and the
topology it carries), no I/O, no LangGraph import::

    cov = coordgap.coverage(app)           # or a Ledger, or a LedgerSnapshot
    print(cov.to_text())
    cov.percent, cov.missed_edges, cov.drift
    Path("graph.mmd").write_text(cov.to_mermaid())

The overall percentage counts nodes and declared edges (each distinct
``(source, target)`` pair once, whatever its kinds); router targets are
reported on their own line, as a refinement of the conditional edges.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ._ledger import (
    Ledger,
    LedgerSnapshot,
)
from .errors import ConfigurationError
from .semconv import END, ERROR_INVALID_ROUTE, ERROR_UNDELIVERED, START, UNKNOWN_TARGET
from .topology import Topology, handoff_name

__all__ = [
    "Coverage",
    "CoverageRatio",
    "EdgeCoverage",
    "FailedRoute",
    "RouterTargetCoverage",
    "coverage",
]

SCHEMA: str = "coordgap.coverage/1"
"""Version tag of :meth:`Coverage.to_dict` output."""

_EMPTY: Mapping[str, int] = MappingProxyType({})

# Why a transition of this kind can be undeclared (shown next to drift).
_DRIFT_CAUSE = {
    "command": "Command(goto=...) without a Command[Literal[...]] return annotation",
    "send": "Send(...) to a target no path map declares",
    "conditional": "router without a path map",
    "edge": "not in the builder",
    "join": "not in the builder",
}


# -- values ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CoverageRatio:
    """``covered`` of ``total`` declared items were exercised at least once."""

    covered: int
    total: int

    @property
    def fraction(self) -> float:
        """covered / total; 1.0 when nothing is declared (nothing to miss)."""
        return self.covered / self.total if self.total else 1.0

    @property
    def percent(self) -> float:
        """The fraction as a percentage."""
        return 100.0 * self.fraction

    def __str__(self) -> str:
        return f"{self.covered}/{self.total} {self.percent:5.1f} %"


@dataclass(frozen=True, slots=True)
class EdgeCoverage:
    """One ``(source, target)`` transition: what declares it, how often it was taken.

    ``declared_kinds`` is empty for an undeclared transition (drift);
    ``observed_kinds`` counts transfers per kind of edge.
    """

    source: str
    target: str
    declared_kinds: tuple[str, ...] = ()
    transfers: int = 0
    failures: int = 0
    observed_kinds: Mapping[str, int] = field(default_factory=lambda: _EMPTY)

    @property
    def key(self) -> tuple[str, str]:
        """The ``(source, target)`` pair, as in ``LedgerSnapshot.handoffs``."""
        return (self.source, self.target)

    @property
    def label(self) -> str:
        """``source -> target``, as every report and API spells a handoff."""
        return handoff_name(self.source, self.target)

    @property
    def exercised(self) -> bool:
        """True when the transition was taken at least once."""
        return self.transfers > 0

    @property
    def declared(self) -> bool:
        """True when the builder declares this pair (as any kind)."""
        return bool(self.declared_kinds)

    @property
    def undeclared_kinds(self) -> tuple[str, ...]:
        """Kinds this pair was taken as that nothing declares (drift when non-empty)."""
        return tuple(k for k in self.observed_kinds if not _kind_declared(k, self.declared_kinds))

    @property
    def cause(self) -> str:
        """Why an undeclared transition is invisible (empty for a declared one)."""
        return "; ".join(_DRIFT_CAUSE.get(k, "not in the builder") for k in self.undeclared_kinds)


@dataclass(frozen=True, slots=True)
class RouterTargetCoverage:
    """One target of a router's path map and how often the router chose it."""

    router: str
    source: str
    target: str
    chosen: int = 0

    @property
    def exercised(self) -> bool:
        """True when the router chose this target at least once."""
        return self.chosen > 0

    @property
    def label(self) -> str:
        """``router: source -> target``."""
        return f"{self.router}: {handoff_name(self.source, self.target)}"


@dataclass(frozen=True, slots=True)
class FailedRoute:
    """Routes out of ``source`` that failed or were silently dropped.

    ``target`` is ``__unknown__`` for a route naming no node (``InvalidRoute``,
    which LangGraph ignores silently without a path map), or the real target of
    a handoff that never arrived (``Undelivered``). For a router that raised
    (e.g. ``KeyError`` for a name outside its path map) ``router`` is set.
    """

    source: str
    target: str
    error_type: str
    count: int
    kinds: tuple[str, ...] = ()
    router: str | None = None

    @property
    def label(self) -> str:
        """``source -> target`` (``__unknown__`` for a route that named no node), with the
        router if one failed."""
        target = self.target
        via = f" (router {self.router})" if self.router is not None else ""
        return f"{handoff_name(self.source, target)}{via}"


@dataclass(frozen=True)
class Coverage:
    """Declared versus observed topology of one graph; build it with :func:`coverage`.

    Example::

        cov = coordgap.coverage(app)
        assert cov.percent >= 90, cov.to_text()
        [e.label for e in cov.missed_edges]   # ['cross_check -> retrieve']
        [e.label for e in cov.drift]          # ['analyze -> cross_check']
    """

    graph: str
    runs: int
    nodes: Mapping[str, int]
    """Every declared node and its executions (0: never exercised)."""
    edges: tuple[EdgeCoverage, ...]
    """Every declared ``(source, target)`` pair, exercised or not."""
    router_targets: tuple[RouterTargetCoverage, ...]
    """Every target of every router with a path map."""
    drift: tuple[EdgeCoverage, ...]
    """Transitions taken as a kind nothing declares (most: pairs not declared at all)."""
    failed_routes: tuple[FailedRoute, ...] = ()
    unmapped_routers: tuple[str, ...] = ()
    """Routers declared without a path map (their targets are drift by construction)."""
    has_topology: bool = True

    # -- ratios ----------------------------------------------------------------------

    @property
    def node_coverage(self) -> CoverageRatio:
        """Declared nodes executed at least once."""
        return CoverageRatio(sum(1 for n in self.nodes.values() if n > 0), len(self.nodes))

    @property
    def edge_coverage(self) -> CoverageRatio:
        """Declared ``(source, target)`` pairs taken at least once."""
        return CoverageRatio(sum(1 for e in self.edges if e.exercised), len(self.edges))

    @property
    def router_target_coverage(self) -> CoverageRatio:
        """Path-map targets chosen at least once."""
        return CoverageRatio(
            sum(1 for t in self.router_targets if t.exercised), len(self.router_targets)
        )

    @property
    def total(self) -> CoverageRatio:
        """Nodes and declared edges together (the figure ``--coordgap-coverage`` gates on)."""
        n, e = self.node_coverage, self.edge_coverage
        return CoverageRatio(n.covered + e.covered, n.total + e.total)

    @property
    def percent(self) -> float:
        """:attr:`total` as a percentage (100 when nothing is declared)."""
        return self.total.percent

    # -- what was missed -------------------------------------------------------------

    @property
    def missed_nodes(self) -> tuple[str, ...]:
        """Declared nodes never executed."""
        return tuple(n for n, c in self.nodes.items() if c <= 0)

    @property
    def missed_edges(self) -> tuple[EdgeCoverage, ...]:
        """Declared edges never taken."""
        return tuple(e for e in self.edges if not e.exercised)

    @property
    def missed_router_targets(self) -> tuple[RouterTargetCoverage, ...]:
        """Path-map targets never chosen."""
        return tuple(t for t in self.router_targets if not t.exercised)

    @property
    def undeclared(self) -> tuple[EdgeCoverage, ...]:
        """Drift restricted to pairs the builder does not declare at all."""
        return tuple(e for e in self.drift if not e.declared)

    # -- renderings ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (schema ``coordgap.coverage/1``)."""

        def ratio(r: CoverageRatio) -> dict[str, Any]:
            return {"covered": r.covered, "total": r.total, "percent": round(r.percent, 3)}

        def edge(e: EdgeCoverage) -> dict[str, Any]:
            return {
                "source": e.source,
                "target": e.target,
                "declared_kinds": list(e.declared_kinds),
                "transfers": e.transfers,
                "failures": e.failures,
                "observed_kinds": dict(e.observed_kinds),
            }

        return {
            "schema": SCHEMA,
            "graph": self.graph,
            "runs": self.runs,
            "has_topology": self.has_topology,
            "percent": round(self.percent, 3),
            "total": ratio(self.total),
            "nodes": ratio(self.node_coverage),
            "edges": ratio(self.edge_coverage),
            "router_targets": ratio(self.router_target_coverage),
            "node_executions": dict(self.nodes),
            "missed": {
                "nodes": list(self.missed_nodes),
                "edges": [[e.source, e.target] for e in self.missed_edges],
                "router_targets": [[t.router, t.target] for t in self.missed_router_targets],
            },
            "declared_edges": [edge(e) for e in self.edges],
            "router_target_choices": [
                {"router": t.router, "source": t.source, "target": t.target, "chosen": t.chosen}
                for t in self.router_targets
            ],
            "drift": [{**edge(e), "cause": e.cause} for e in self.drift],
            "failed_routes": [
                {
                    "source": f.source,
                    "target": f.target,
                    "error_type": f.error_type,
                    "count": f.count,
                    "kinds": list(f.kinds),
                    "router": f.router,
                }
                for f in self.failed_routes
            ],
            "unmapped_routers": list(self.unmapped_routers),
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """Return :meth:`to_dict` as JSON."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    def to_text(self) -> str:
        """Return a plain-text summary: ratios, what was never exercised, drift, failed routes."""
        runs = f"{self.runs} run" + ("" if self.runs == 1 else "s")
        lines = [f"graph coverage of {self.graph!r} over {runs}: {self.percent:.1f} %"]
        if not self.has_topology:
            lines.append("  (no declared topology in this snapshot: nothing to compare with)")
        for title, r in (
            ("nodes", self.node_coverage),
            ("edges", self.edge_coverage),
            ("router targets", self.router_target_coverage),
        ):
            lines.append(f"  {title:<15}{r.covered:>4}/{r.total:<4}{r.percent:6.1f} %")
        missed: list[str] = [f"  node  {n}" for n in self.missed_nodes]
        missed += [f"  edge  {e.label}  ({', '.join(e.declared_kinds)})" for e in self.missed_edges]
        missed += [f"  route {t.label}" for t in self.missed_router_targets]
        if missed:
            lines.append(f"never exercised in {runs}:")
            lines += missed
        if self.drift:
            lines.append("drift (taken but not declared; invisible in get_graph()):")
            for e in self.drift:
                kinds = ", ".join(f"{k} x{e.observed_kinds[k]}" for k in e.undeclared_kinds)
                also = f" (declared as {', '.join(e.declared_kinds)})" if e.declared else ""
                lines.append(f"  {e.label}  {kinds}{also}: {e.cause}")
        if self.unmapped_routers:
            lines.append("routers without a path map: " + ", ".join(self.unmapped_routers))
        if self.failed_routes:
            lines.append("failed or dropped routes:")
            for f in self.failed_routes:
                lines.append(f"  {f.label}  {f.error_type} x{f.count}")
        return "\n".join(lines)

    def to_mermaid(self) -> str:
        """Return a Mermaid flowchart: unexercised parts greyed and dashed, drift in red.

        Declared edges that were taken are solid and labelled with their count;
        declared edges never taken are grey and dashed; undeclared transitions
        are thick red arrows labelled ``undeclared``; failed routes point at a
        red ``?`` node.
        """
        ids: dict[str, str] = {}

        def nid(name: str) -> str:
            if name not in ids:
                ids[name] = f"n{len(ids)}"
            return ids[name]

        lines = ["flowchart TD"]
        names: list[str] = list(self.nodes)
        for e in (*self.edges, *self.drift):
            for n in (e.source, e.target):
                if n not in names:
                    names.append(n)
        for f in self.failed_routes:
            if f.source not in names:
                names.append(f.source)
        for name in names:
            i = nid(name)
            if name.endswith(START) or name.endswith(END):
                lines.append(f'    {i}(["{_mermaid_text(name)}"])')
            else:
                lines.append(f'    {i}["{_mermaid_text(name)}"]')
        link = 0
        grey: list[int] = []
        red: list[int] = []
        for e in self.edges:
            if e.exercised:
                lines.append(f'    {nid(e.source)} -->|"{e.transfers}"| {nid(e.target)}')
            else:
                lines.append(f'    {nid(e.source)} -.->|"never"| {nid(e.target)}')
                grey.append(link)
            link += 1
        for e in self.drift:
            kinds = " ".join(e.undeclared_kinds)
            lines.append(
                f'    {nid(e.source)} ==>|"undeclared {kinds} {e.transfers}"| {nid(e.target)}'
            )
            red.append(link)
            link += 1
        failed_sources = [f for f in self.failed_routes if f.target == UNKNOWN_TARGET]
        if failed_sources:
            lines.append('    unknown(("?"))')
            for f in failed_sources:
                lines.append(f'    {nid(f.source)} -.->|"{f.error_type} {f.count}"| unknown')
                red.append(link)
                link += 1
            lines.append("    class unknown failed")
        lines.append("    classDef unexercised fill:#eeeeee,stroke:#bbbbbb,color:#999999")
        lines.append("    classDef failed fill:#ffdddd,stroke:#cc0000,color:#cc0000")
        for name in self.missed_nodes:
            lines.append(f"    class {nid(name)} unexercised")
        if grey:
            lines.append(f"    linkStyle {','.join(map(str, grey))} stroke:#bbbbbb,color:#999999")
        if red:
            lines.append(f"    linkStyle {','.join(map(str, red))} stroke:#cc0000,color:#cc0000")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def _mermaid_text(name: str) -> str:
    return name.replace('"', "#quot;")


def _kind_declared(kind: str, declared: tuple[str, ...]) -> bool:
    if kind in declared:
        return True
    # A router's path map declares its targets whether it returns names or Send packets.
    return kind == "send" and "conditional" in declared


# -- observations: the part of a snapshot coverage reads ----------------------------------


@dataclass(slots=True)
class _Handoff:
    transfers: int = 0
    failures: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    error_types: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Router:
    source: str
    decisions: int = 0
    failures: int = 0
    targets: dict[str, int] = field(default_factory=dict)
    error_types: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Observed:
    """What happened: the counts of a snapshot that coverage reads."""

    graph: str
    topology: Topology | None
    runs: int = 0
    nodes: dict[str, int] = field(default_factory=dict)
    handoffs: dict[tuple[str, str], _Handoff] = field(default_factory=dict)
    routers: dict[str, _Router] = field(default_factory=dict)

    @classmethod
    def of(cls, snap: LedgerSnapshot) -> _Observed:
        obs = cls(snap.graph, snap.topology, snap.runs.runs)
        for name, st in snap.nodes.items():
            obs.nodes[name] = max(st.executions, st.attempts)
        for key, h in snap.handoffs.items():
            obs.handoffs[key] = _Handoff(
                h.transfers, h.failures, dict(h.kinds), dict(h.error_types)
            )
        for name, r in snap.routers.items():
            obs.routers[name] = _Router(
                r.source, r.decisions, r.failures, dict(r.targets), dict(r.error_types)
            )
        return obs


# -- building -------------------------------------------------------------------------------


def coverage(source: object) -> Coverage:
    """Return the graph coverage, drift and failed routes of an instrumented graph.

    Args:
        source: a :class:`~coordgap.ledger.LedgerSnapshot`, a
            :class:`~coordgap.ledger.Ledger`, a graph returned by
            ``coordgap.instrument(...)``, or a report that keeps its snapshot.

    A snapshot without a topology (e.g. rebuilt from Prometheus) has nothing
    declared to compare with: every observed transition is listed, none is
    called drift, and ``has_topology`` is False.

    Raises:
        ConfigurationError: ``source`` carries no coordgap ledger.

    Example::

        app = coordgap.instrument(builder)
        for q in questions:
            app.invoke({"question": q})
        cov = coordgap.coverage(app)
        print(cov.to_text())
    """
    return _coverage_of(_Observed.of(_snapshot_of(source)))


def _snapshot_of(source: object) -> LedgerSnapshot:
    if isinstance(source, LedgerSnapshot):
        return source
    if isinstance(source, Ledger):
        return source.snapshot()
    kept = getattr(source, "snapshot", None)  # a Report that keeps the snapshot it was built from
    if isinstance(kept, LedgerSnapshot):
        return kept
    if type(source).__name__ == "Report":
        raise ConfigurationError(
            "this report carries no ledger snapshot (it was audited or loaded from JSON); "
            "pass the instrumented graph, its Ledger or a LedgerSnapshot to coverage()"
        )
    ledger = getattr(source, "coordgap_ledger", None)  # an instrumented graph's
    if isinstance(ledger, Ledger):
        return ledger.snapshot()
    raise ConfigurationError(
        f"{type(source).__name__} carries no coordgap ledger; pass the graph returned by "
        "coordgap.instrument(...), a coordgap Ledger or a LedgerSnapshot"
    )


def _coverage_of(obs: _Observed) -> Coverage:
    topo = obs.topology
    declared: dict[tuple[str, str], list[str]] = {}
    node_names: list[str] = []
    router_targets: list[RouterTargetCoverage] = []
    unmapped: list[str] = []
    if topo is not None:
        node_names = list(topo.nodes)
        for dh in topo.handoffs:
            pair_kinds = declared.setdefault((dh.source, dh.target), [])
            if dh.kind not in pair_kinds:
                pair_kinds.append(dh.kind)
        for dr in topo.routers:
            if dr.targets is None:
                unmapped.append(dr.name)
                continue
            seen = obs.routers.get(dr.name)
            for t in dr.targets:
                chosen = 0 if seen is None else seen.targets.get(t, 0)
                router_targets.append(RouterTargetCoverage(dr.name, dr.source, t, chosen))
    else:
        node_names = list(obs.nodes)

    def edge_of(key: tuple[str, str], kinds: Iterable[str]) -> EdgeCoverage:
        h = obs.handoffs.get(key, _Handoff())
        return EdgeCoverage(
            key[0],
            key[1],
            tuple(kinds),
            h.transfers,
            h.failures,
            MappingProxyType({k: v for k, v in h.kinds.items() if v > 0}),
        )

    edges = tuple(edge_of(key, kinds) for key, kinds in declared.items())
    drift: list[EdgeCoverage] = []
    failed: list[FailedRoute] = []
    # A router's failure is also recorded as a handoff to __unknown__ out of its source:
    # list it once, named by the router.
    router_errors: dict[tuple[str, str], list[list[Any]]] = {}
    for name, r in obs.routers.items():
        for et, n in r.error_types.items():
            router_errors.setdefault((r.source, et), []).append([name, n])
    for key, h in obs.handoffs.items():
        src, tgt = key
        if tgt == UNKNOWN_TARGET:
            kinds = tuple(sorted(h.kinds))
            errors = dict(h.error_types) or (
                {ERROR_INVALID_ROUTE: h.failures} if h.failures else {}
            )
            for et, n in sorted(errors.items()):
                for entry in router_errors.get((src, et), ()):
                    taken = min(n, entry[1])
                    if taken > 0:
                        failed.append(FailedRoute(src, tgt, et, taken, kinds, entry[0]))
                        entry[1] -= taken
                        n -= taken
                if n > 0:
                    failed.append(FailedRoute(src, tgt, et, n, kinds))
            continue
        undelivered = h.error_types.get(ERROR_UNDELIVERED, 0)
        if undelivered:
            kinds = tuple(sorted(h.kinds))
            failed.append(FailedRoute(src, tgt, ERROR_UNDELIVERED, undelivered, kinds))
        if src == UNKNOWN_TARGET or topo is None or h.transfers <= 0:
            continue  # a contract failure of unknown origin (a resumed run) is no transition
        taken_edge = edge_of(key, declared.get(key, ()))
        if taken_edge.undeclared_kinds:
            drift.append(taken_edge)
    for (src, et), entries in router_errors.items():
        for name, n in entries:
            if n > 0:  # a router failure with no matching handoff record
                failed.append(FailedRoute(src, UNKNOWN_TARGET, et, n, ("conditional",), name))
    drift.sort(key=lambda e: (-e.transfers, e.source, e.target))
    failed.sort(key=lambda f: (-f.count, f.source, f.error_type))
    return Coverage(
        graph=obs.graph,
        runs=obs.runs,
        nodes=MappingProxyType({n: obs.nodes.get(n, 0) for n in node_names}),
        edges=edges,
        router_targets=tuple(router_targets),
        drift=tuple(drift),
        failed_routes=tuple(failed),
        unmapped_routers=tuple(unmapped),
        has_topology=topo is not None,
    )
