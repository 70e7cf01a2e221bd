"""The ledger: in-process, thread-safe tally of every outcome; the single source of truth.

Memory is constant in the number of runs: it holds one row of counters per
component (node, handoff, router) and per error type, never per run. One lock
guards the counters; it is held for a few dictionary updates per event, so
many threads and asyncio tasks can record without contention mattering.

Usage::

    app = coordgap.instrument(builder)
    app.invoke({...})
    snap = coordgap.ledger(app).snapshot()
    snap.nodes["analyze"].executions
    snap.handoffs[("retrieve", "analyze")].failures
"""

from __future__ import annotations

import dataclasses
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol, TypeVar

from .errors import ConfigurationError
from .events import Event, HandoffOutcome, NodeOutcome, RouterOutcome, RunOutcome
from .topology import Topology

__all__ = [
    "HandoffStats",
    "HasLedger",
    "Ledger",
    "LedgerSnapshot",
    "NodeStats",
    "RouterStats",
    "RunStats",
    "merge_snapshots",
]

_EMPTY: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class NodeStats:
    """Counts for one node. An execution is final (after retries); an attempt is one call."""

    executions: int = 0
    failures: int = 0
    attempts: int = 0
    attempt_failures: int = 0
    first_attempt_ok: int = 0
    contract_failures: int = 0
    faults: int = 0
    duration_s: float = 0.0
    """Sum of attempt durations, seconds."""
    error_types: Mapping[str, int] = field(default_factory=lambda: _EMPTY)

    @property
    def successes(self) -> int:
        """Executions that ended ok (after retries)."""
        return self.executions - self.failures


@dataclass(frozen=True, slots=True)
class HandoffStats:
    """Counts for one (source, target) pair, with the kinds of edge it was seen as."""

    source: str
    target: str
    transfers: int = 0
    failures: int = 0
    contract_failures: int = 0
    faults: int = 0
    kinds: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    """Transfers per kind of edge (edge, join, conditional, command, send)."""
    kind_failures: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    """Failed transfers per kind of edge."""
    error_types: Mapping[str, int] = field(default_factory=lambda: _EMPTY)

    @property
    def successes(self) -> int:
        """Transfers that succeeded."""
        return self.transfers - self.failures


@dataclass(frozen=True, slots=True)
class RouterStats:
    """Counts for one router: decisions, failures (raised or invalid), chosen targets."""

    router: str
    source: str
    decisions: int = 0
    failures: int = 0
    faults: int = 0
    targets: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    error_types: Mapping[str, int] = field(default_factory=lambda: _EMPTY)

    @property
    def successes(self) -> int:
        """Decisions that produced a valid route."""
        return self.decisions - self.failures


@dataclass(frozen=True, slots=True)
class RunStats:
    """Counts of runs. ``clean`` runs finished ok with no failed component."""

    runs: int = 0
    ok: int = 0
    error: int = 0
    interrupted: int = 0
    clean: int = 0
    duration_s: float = 0.0
    error_types: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    """Run-level errors (the run raised) per exception class."""
    error_at: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    """Runs that raised with no failed component to blame, per node that ran last
    (a ``GraphRecursionError`` in a loop names the nodes of the step it died in)."""

    @property
    def finished(self) -> int:
        """Runs that ran to the end (ok or error); interrupted runs are paused, not finished."""
        return self.ok + self.error


@dataclass(frozen=True, slots=True)
class LedgerSnapshot:
    """An immutable copy of a ledger at one moment; the input of every report."""

    graph: str
    nodes: Mapping[str, NodeStats]
    handoffs: Mapping[tuple[str, str], HandoffStats]
    routers: Mapping[str, RouterStats]
    runs: RunStats
    topology: Topology | None = None
    internal_errors: int = 0
    fault_fates: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    """Injected faults (``coordgap.faults``) by the guard that met them: ``contract`` (a
    contract caught the corrupted state), ``retry`` (a later attempt succeeded),
    ``error_handler`` (the node's error handler took over and the run went on), ``caller``
    (the run raised it)."""
    faults_injected: int | None = None
    """Faults the graph's fault plan fired (None when it has none): those no guard met are
    the difference."""

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict (the counts, the topology)."""
        return {
            "graph": self.graph,
            "nodes": {k: _stats_dict(v) for k, v in self.nodes.items()},
            "handoffs": [_stats_dict(v) for v in self.handoffs.values()],
            "routers": {k: _stats_dict(v) for k, v in self.routers.items()},
            "runs": _stats_dict(self.runs),
            "topology": None if self.topology is None else self.topology.to_dict(),
            "internal_errors": self.internal_errors,
            "fault_fates": dict(self.fault_fates),
            "faults_injected": self.faults_injected,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> LedgerSnapshot:
        """Rebuild a snapshot from :meth:`to_dict` output."""
        raw: Any = data
        nodes = {k: NodeStats(**_frozen(v)) for k, v in raw["nodes"].items()}
        handoffs = {}
        for v in raw["handoffs"]:
            h = HandoffStats(**_frozen(v))
            handoffs[(h.source, h.target)] = h
        routers = {k: RouterStats(**_frozen(v)) for k, v in raw["routers"].items()}
        topo = data.get("topology")
        return cls(
            graph=str(data["graph"]),
            nodes=MappingProxyType(nodes),
            handoffs=MappingProxyType(handoffs),
            routers=MappingProxyType(routers),
            runs=RunStats(**_frozen(data["runs"])),  # type: ignore[arg-type]
            topology=None if topo is None else Topology.from_dict(topo),  # type: ignore[arg-type]
            internal_errors=int(data.get("internal_errors", 0)),  # type: ignore[call-overload]
            fault_fates=MappingProxyType(dict(raw.get("fault_fates") or {})),
            faults_injected=raw.get("faults_injected"),
        )


def _stats_dict(stats: object) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in stats.__slots__:  # type: ignore[attr-defined]
        value = getattr(stats, name)
        out[name] = dict(value) if isinstance(value, Mapping) else value
    return out


def _frozen(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: MappingProxyType(dict(v)) if isinstance(v, Mapping) else v for k, v in data.items()}


_Stats = TypeVar("_Stats", NodeStats, HandoffStats, RouterStats, RunStats)


def merge_snapshots(
    snapshots: Iterable[LedgerSnapshot], how: Literal["sum", "max"] = "sum"
) -> LedgerSnapshot:
    """Return one snapshot whose every count combines those of several snapshots.

    ``how="sum"`` adds the counts of several ledgers of one graph (one per test, one
    per worker process); ``how="max"`` keeps, count by count, the larger of two moments
    of one ledger (so a count that a later ``Ledger.reset()`` zeroed is still seen).
    Counts per key (error types, kinds, targets) combine key by key. The graph name is
    the first snapshot's, the topology the first one given.

    Raises:
        ConfigurationError: no snapshot.

    Example::

        total = merge_snapshots([ledger_a.snapshot(), ledger_b.snapshot()])
    """
    snaps = list(snapshots)
    if not snaps:
        raise ConfigurationError("merge_snapshots() needs at least one snapshot.")
    if how not in ("sum", "max"):
        raise ConfigurationError(f"how={how!r}: use 'sum' (several ledgers) or 'max'.")
    op: Callable[[Any, Any], Any] = _add if how == "sum" else max
    first = snaps[0]
    if len(snaps) == 1:
        return first
    nodes, handoffs, routers = dict(first.nodes), dict(first.handoffs), dict(first.routers)
    runs, internal = first.runs, first.internal_errors
    topology = first.topology
    fates, injected = dict(first.fault_fates), first.faults_injected
    for snap in snaps[1:]:
        _merge_into(nodes, snap.nodes, op)
        _merge_into(handoffs, snap.handoffs, op)
        _merge_into(routers, snap.routers, op)
        runs = _merge_stats(runs, snap.runs, op)
        internal = op(internal, snap.internal_errors)
        topology = topology if topology is not None else snap.topology
        fates = {
            k: op(fates.get(k, 0), snap.fault_fates.get(k, 0))
            for k in {**fates, **snap.fault_fates}
        }
        if snap.faults_injected is not None:
            injected = (
                snap.faults_injected if injected is None else op(injected, snap.faults_injected)
            )
    return LedgerSnapshot(
        graph=first.graph,
        nodes=MappingProxyType(nodes),
        handoffs=MappingProxyType(handoffs),
        routers=MappingProxyType(routers),
        runs=runs,
        topology=topology,
        internal_errors=internal,
        fault_fates=MappingProxyType(fates),
        faults_injected=injected,
    )


def _add(x: Any, y: Any) -> Any:
    return x + y


_Key = TypeVar("_Key")


def _merge_into(
    into: dict[_Key, _Stats], more: Mapping[_Key, _Stats], op: Callable[[Any, Any], Any]
) -> None:
    for key, stats in more.items():
        known = into.get(key)
        into[key] = stats if known is None else _merge_stats(known, stats, op)


def _merge_stats(a: _Stats, b: _Stats, op: Callable[[Any, Any], Any]) -> _Stats:
    """Combine two rows of one component: numbers and per-key counts by ``op``, names kept."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, Mapping):
            values[f.name] = MappingProxyType({k: op(x.get(k, 0), y.get(k, 0)) for k in {**x, **y}})
        elif isinstance(x, int | float) and not isinstance(x, bool):
            values[f.name] = op(x, y)
    return dataclasses.replace(a, **values)


class _Row:
    """Mutable counters for one component; only touched under the ledger's lock."""

    __slots__ = ("counts", "error_types", "failed_labels", "labels", "seconds")

    def __init__(self, size: int) -> None:
        self.counts = [0] * size
        self.seconds = 0.0
        self.error_types: dict[str, int] = {}
        self.labels: dict[str, int] = {}
        self.failed_labels: dict[str, int] = {}

    def zero(self) -> None:
        """Zero in place: the probes hold rows bound at instrument time."""
        self.counts = [0] * len(self.counts)
        self.seconds = 0.0
        self.error_types = {}
        self.labels = {}
        self.failed_labels = {}


# Indexes into _Row.counts, per component type.
_N_EXEC, _N_FAIL, _N_ATT, _N_ATT_FAIL, _N_FIRST_OK, _N_CONTRACT, _N_FAULT = range(7)
_H_TRANSFERS, _H_FAIL, _H_CONTRACT, _H_FAULT = range(4)
_R_DECISIONS, _R_FAIL, _R_FAULT = range(3)
_RUN_RUNS, _RUN_OK, _RUN_ERROR, _RUN_INTERRUPTED, _RUN_CLEAN = range(5)


# -- the counting primitives: one per component kind --------------------------------------
# Ledger.record() and the probes' quiet path both count through these, on a row, while
# holding the ledger's lock; positional arguments, because the probes call them per task.


def count_node(
    row: _Row,
    ok: bool,
    attempt: int,
    final: bool,
    duration_ns: int,
    error_type: str | None = None,
    contract: bool = False,
    fault: bool = False,
) -> None:
    """Count one attempt of a node (and its execution when ``final``)."""
    c = row.counts
    c[_N_ATT] += 1
    row.seconds += duration_ns / 1e9
    if not ok:
        c[_N_ATT_FAIL] += 1
        if error_type is not None:
            row.error_types[error_type] = row.error_types.get(error_type, 0) + 1
        if fault:
            c[_N_FAULT] += 1
    if final:
        c[_N_EXEC] += 1
        if ok:
            if attempt == 1:
                c[_N_FIRST_OK] += 1
        else:
            c[_N_FAIL] += 1
            if contract:
                c[_N_CONTRACT] += 1


def count_handoff(
    row: _Row,
    ok: bool,
    kind: str,
    error_type: str | None = None,
    contract: bool = False,
    fault: bool = False,
) -> None:
    """Count one transfer of a handoff."""
    row.counts[_H_TRANSFERS] += 1
    labels = row.labels
    labels[kind] = labels.get(kind, 0) + 1
    if not ok:
        c = row.counts
        c[_H_FAIL] += 1
        row.failed_labels[kind] = row.failed_labels.get(kind, 0) + 1
        if contract:
            c[_H_CONTRACT] += 1
        if fault:
            c[_H_FAULT] += 1
        if error_type is not None:
            row.error_types[error_type] = row.error_types.get(error_type, 0) + 1


def count_router(
    row: _Row,
    ok: bool,
    targets: tuple[str, ...],
    error_type: str | None = None,
    fault: bool = False,
) -> None:
    """Count one decision of a router and the targets it chose."""
    c = row.counts
    c[_R_DECISIONS] += 1
    labels = row.labels
    for target in targets:
        labels[target] = labels.get(target, 0) + 1
    if not ok:
        c[_R_FAIL] += 1
        if fault:
            c[_R_FAULT] += 1
        if error_type is not None:
            row.error_types[error_type] = row.error_types.get(error_type, 0) + 1


def count_run(
    row: _Row,
    status: str,
    clean: bool,
    duration_ns: int,
    error_type: str | None = None,
    error_at: str | None = None,
) -> None:
    """Count one run; ``error_at`` names where a run-level error (no failed component) died."""
    c = row.counts
    c[_RUN_RUNS] += 1
    row.seconds += duration_ns / 1e9
    if status == "ok":
        c[_RUN_OK] += 1
    elif status == "error":
        c[_RUN_ERROR] += 1
        if error_type is not None:
            row.error_types[error_type] = row.error_types.get(error_type, 0) + 1
        if error_at is not None:
            row.labels[error_at] = row.labels.get(error_at, 0) + 1
    else:
        c[_RUN_INTERRUPTED] += 1
    if clean:
        c[_RUN_CLEAN] += 1


_LEDGERS: weakref.WeakSet[Ledger] = weakref.WeakSet()


class Ledger:
    """Thread-safe aggregate of outcomes for one instrumented graph.

    ``record`` is the sink the interceptors feed; ``snapshot`` returns an
    immutable :class:`LedgerSnapshot`; ``reset`` zeroes every count (the
    topology stays).
    """

    def __init__(self, graph: str, topology: Topology | None = None) -> None:
        self.graph = graph
        self.topology = topology
        self.lock = threading.Lock()
        """Guards every count. The recorder also guards its runs' pending handoffs with it,
        so a node's begin (or end) takes one lock for its handoffs and its counts."""
        self._nodes: dict[str, _Row] = {}
        self._handoffs: dict[tuple[str, str], _Row] = {}
        self._routers: dict[str, _Row] = {}
        self._router_sources: dict[str, str] = {}
        self._runs = _Row(5)
        self._internal_errors = 0
        self._fault_fates: dict[str, int] = {}
        self.faults_fired: Callable[[], int] | None = None
        """How many faults the graph's fault plan fired so far (set by instrument())."""
        self._faults_before = 0  # fired before the last reset()
        self._callers: tuple[str, ...] = ()
        _LEDGERS.add(self)

    def __call__(self, event: Event) -> None:
        """Record one event (the ledger is itself a sink)."""
        self.record(event)

    def record(self, event: Event) -> None:
        """Add one event to the counts."""
        with self.lock:
            if type(event) is NodeOutcome:
                count_node(
                    self._node_row_locked(event.node),
                    event.ok,
                    event.attempt,
                    event.final,
                    event.end_ns - event.start_ns,
                    event.error_type,
                    event.contract is not None,
                    event.fault,
                )
            elif type(event) is HandoffOutcome:
                count_handoff(
                    self.handoff_row_locked(event.source, event.target),
                    event.ok,
                    event.kind,
                    event.error_type,
                    event.contract is not None,
                    event.fault,
                )
            elif type(event) is RouterOutcome:
                count_router(
                    self._router_row_locked(event.router, event.source),
                    event.ok,
                    event.targets,
                    event.error_type,
                    event.fault,
                )
            elif type(event) is RunOutcome:
                count_run(
                    self._runs,
                    event.status,
                    event.clean,
                    event.end_ns - event.start_ns,
                    event.error_type,
                    event.error_at,
                )

    # -- rows, bound once so the hot path looks nothing up ------------------------------
    # The probes bind rows at instrument time (or when a dynamic handoff is first seen)
    # and count on them with the primitives below while holding ``lock``.

    def node_row(self, node: str) -> _Row:
        """Return the row counting ``node`` (created empty; shown once counted)."""
        with self.lock:
            return self._node_row_locked(node)

    def handoff_row(self, source: str, target: str) -> _Row:
        """Return the row counting the (source, target) handoff (created empty)."""
        with self.lock:
            return self.handoff_row_locked(source, target)

    def router_row(self, router: str, source: str) -> _Row:
        """Return the row counting a router (created empty)."""
        with self.lock:
            return self._router_row_locked(router, source)

    def _node_row_locked(self, node: str) -> _Row:
        row = self._nodes.get(node)
        if row is None:
            row = self._nodes[node] = _Row(7)
        return row

    def _router_row_locked(self, router: str, source: str) -> _Row:
        row = self._routers.get(router)
        if row is None:
            row = self._routers[router] = _Row(3)
            self._router_sources[router] = source
        return row

    def handoff_row_locked(self, source: str, target: str) -> _Row:
        """Return the row counting the (source, target) handoff; the caller holds ``lock``."""
        row = self._handoffs.get((source, target))
        if row is None:
            row = self._handoffs[(source, target)] = _Row(4)
        return row

    @property
    def runs_row(self) -> _Row:
        """The row counting runs."""
        return self._runs

    def add_container(self, node: str) -> None:
        """Mark ``node`` as a container: it called an instrumented graph whose components
        are counted under ``node/`` (the report does not count the node on top of them)."""
        if node in self._callers or self.topology is None or node in self.topology.subgraphs:
            return
        with self.lock:
            if node not in self._callers:
                self._callers = (*self._callers, node)

    def count_fault_fate_locked(self, fate: str, n: int) -> None:
        """Count ``n`` injected faults met by a guard other than a contract (see
        ``LedgerSnapshot.fault_fates``); the caller holds the lock."""
        self._fault_fates[fate] = self._fault_fates.get(fate, 0) + n

    def count_internal_error(self) -> None:
        """Count one error inside coordgap (swallowed so the graph ran on)."""
        with self.lock:
            self._internal_errors += 1

    def snapshot(self) -> LedgerSnapshot:
        """Return an immutable, consistent copy of every count."""
        # rows bound in advance but never counted are not shown: nothing was observed there
        with self.lock:
            nodes = {
                name: NodeStats(
                    executions=r.counts[_N_EXEC],
                    failures=r.counts[_N_FAIL],
                    attempts=r.counts[_N_ATT],
                    attempt_failures=r.counts[_N_ATT_FAIL],
                    first_attempt_ok=r.counts[_N_FIRST_OK],
                    contract_failures=r.counts[_N_CONTRACT],
                    faults=r.counts[_N_FAULT],
                    duration_s=r.seconds,
                    error_types=MappingProxyType(dict(r.error_types)),
                )
                for name, r in self._nodes.items()
                if r.counts[_N_ATT]
            }
            handoffs = {
                key: HandoffStats(
                    source=key[0],
                    target=key[1],
                    transfers=r.counts[_H_TRANSFERS],
                    failures=r.counts[_H_FAIL],
                    contract_failures=r.counts[_H_CONTRACT],
                    faults=r.counts[_H_FAULT],
                    kinds=MappingProxyType(dict(r.labels)),
                    kind_failures=MappingProxyType(dict(r.failed_labels)),
                    error_types=MappingProxyType(dict(r.error_types)),
                )
                for key, r in self._handoffs.items()
                if r.counts[_H_TRANSFERS]
            }
            routers = {
                name: RouterStats(
                    router=name,
                    source=self._router_sources[name],
                    decisions=r.counts[_R_DECISIONS],
                    failures=r.counts[_R_FAIL],
                    faults=r.counts[_R_FAULT],
                    targets=MappingProxyType(dict(r.labels)),
                    error_types=MappingProxyType(dict(r.error_types)),
                )
                for name, r in self._routers.items()
                if r.counts[_R_DECISIONS]
            }
            rc = self._runs.counts
            runs = RunStats(
                runs=rc[_RUN_RUNS],
                ok=rc[_RUN_OK],
                error=rc[_RUN_ERROR],
                interrupted=rc[_RUN_INTERRUPTED],
                clean=rc[_RUN_CLEAN],
                duration_s=self._runs.seconds,
                error_types=MappingProxyType(dict(self._runs.error_types)),
                error_at=MappingProxyType(dict(self._runs.labels)),
            )
            internal = self._internal_errors
            fates = dict(self._fault_fates)
            # a fault a contract caught is a handoff fault: the ledger counted it there
            caught = sum(h.faults for h in handoffs.values())
        if caught:
            fates = {"contract": caught, **fates}
        fired = self.faults_fired
        injected = None if fired is None else fired() - self._faults_before
        return LedgerSnapshot(
            graph=self.graph,
            nodes=MappingProxyType(nodes),
            handoffs=MappingProxyType(handoffs),
            routers=MappingProxyType(routers),
            runs=runs,
            topology=self._topology_now(),
            internal_errors=internal,
            fault_fates=MappingProxyType(fates),
            faults_injected=injected,
        )

    def _topology_now(self) -> Topology | None:
        topology, callers = self.topology, self._callers
        if topology is None or not callers:
            return topology
        return dataclasses.replace(topology, subgraphs=(*topology.subgraphs, *callers))

    def reset(self) -> None:
        """Zero every count; the topology is kept."""
        with self.lock:
            for row in (*self._nodes.values(), *self._handoffs.values(), *self._routers.values()):
                row.zero()
            self._runs.zero()
            self._internal_errors = 0
            self._fault_fates = {}
            self._faults_before = self.faults_fired() if self.faults_fired is not None else 0

    def __repr__(self) -> str:
        return f"<coordgap.Ledger graph={self.graph!r}>"


class HasLedger(Protocol):
    """Anything that carries a coordgap ledger: an instrumented graph, a ``LedgerScope``.

    What ``coordgap.report()`` and the assertions read a ledger from, besides a
    :class:`Ledger` or a :class:`LedgerSnapshot` themselves.
    """

    @property
    def coordgap_ledger(self) -> Ledger | None:
        """The ledger its runs are counted in (None: a subgraph copy, counted by its parent)."""


def _reinit_locks_after_fork() -> None:
    # A lock held by another thread at fork time would stay locked forever in the child.
    for ledger in list(_LEDGERS):
        ledger.lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_locks_after_fork)
