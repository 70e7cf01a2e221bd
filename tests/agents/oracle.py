"""The oracle: the exact ledger a graph's runs should produce, derived from what LangGraph did.

Never from coordgap. :class:`Oracle` runs a *bare* compiled graph and reads two records
LangGraph keeps of every run:

* ``stream_mode="debug", subgraphs=True``: which tasks ran (``task`` events: name, id,
  triggers, step, namespace) and how each ended (``task_result``: ``error``,
  ``interrupts``).
* the writes each task committed. LangGraph hands every finished task's writes to the
  checkpointer (``put_writes``), including the routing writes the debug stream leaves
  out (``branch:to:X``, ``join:...``, ``Send`` packets on ``__pregel_tasks``) and writes
  to channels that do not exist (an invalid route, which LangGraph logs and ignores).
  The oracle gives the graph a :class:`RecordingSaver`: an ``InMemorySaver`` (so threads,
  interrupts and resumes behave exactly as with the in-memory saver) that also keeps the
  live ``(checkpoint_ns, task_id, task_path, writes)`` of every ``put_writes`` call. Live
  values, not ``InMemorySaver.writes``: those are serialised and keyed per checkpoint, so
  an interrupted task and its resumed run share one entry; the call log says which run
  wrote what, and a ``Send`` stays a ``Send``. Subgraphs (added as nodes, or invoked from a
  node with the node's config, like langgraph-supervisor's workers) inherit the
  checkpointer, so their writes arrive with their own ``checkpoint_ns``. A graph that
  has no checkpointer is given one for the oracle's runs (each run on a fresh thread,
  so runs stay independent); LangGraph runs the same tasks with or without one.

The semantics (the ones coordgap's interception implements):

* **Names**: a node of a subgraph is ``outer/inner`` (from the debug namespace
  ``("outer:<task id>", ...)``); a graph's entry is ``__start__`` and exit ``__end__``
  (``outer/__start__``, ``outer/__end__`` in a subgraph); a route naming no node goes to
  ``__unknown__``. Routers are named like coordgap's topology: the path function's name,
  ``name@source`` when two sources share it, with the subgraph prefix.
* **Node executions** are the tasks of a node: one per debug ``task`` event (plus error
  handler tasks, which LangGraph reports with a ``task_result`` only). ``failures`` are
  tasks whose ``task_result.error`` is set. A task that left through an interrupt is no
  outcome (it runs again on resume); a task that left through ``Command.PARENT`` (no
  ``task_result``) succeeded; a cache hit (a ``task`` event, no ``task_result``, writes
  replayed) is an execution that succeeded.
* **Handoffs** come from each task's writes; a task that raised (including one that left
  its subgraph with ``Command.PARENT``) hands off nothing, whatever partial writes were
  saved. ``branch:to:X`` is ``T -> X``; ``join:a+b:X`` is ``T -> X`` kind ``join``; a
  ``Send(X)`` on ``__pregel_tasks`` is ``T -> X`` kind ``send``, one per Send; a write to a
  node that does not exist (channel or Send) is ``T -> __unknown__``, failed
  ``InvalidRoute``; a finished task that wrote none of these went to ``__end__``. The
  kind comes from the declared topology: ``edge`` (static edge), ``conditional`` (a
  router's path map, or a router without one), ``command`` (a declared destination, or
  a ``branch:to`` nothing declares: only a ``Command`` writes that); a kind the topology
  cannot decide is written ``"a|b"`` (see :func:`assert_same_ledger`). A finished task
  that wrote nothing ends by ``edge`` when nothing declares its end (a dead-end node, or
  a swarm agent whose only declarations are handoffs). The ``__start__`` task's writes
  are the ``__start__ -> X`` handoffs.
* **Delivery**: a handoff written at step n is counted when its target's task starts (a
  pull task takes every ``branch:to``/complete ``join`` handoff written before; a push
  task takes one Send). Left pending when the run finished ok: failed ``Undelivered``. In
  an interrupted run pending handoffs wait for the next run on the same thread; in a
  run that raised they are dropped (not counted).
* **Routers**: one decision per finished task of their source node; the targets are the
  node's conditional writes (``__end__`` when it wrote none); an invalid target fails the
  decision (``InvalidRoute``); a failed task whose router raised (LangGraph saved the
  node's own update before the router ran, or the router's code is in the traceback) is a
  failed decision with the exception's type, and a *successful* execution of the node (its
  own work succeeded: one failure, counted once, on the router).
* **Runs**: ``ok``, ``error`` (raised; ``error_types`` by class) or ``interrupted``; a
  resume is a new run. ``clean`` = ok and nothing failed in the run.

Usage::

    oracle = Oracle(bare_compiled_graph)
    oracle.invoke({"messages": [...]})
    want = oracle.expected()
    assert_same_ledger(ledger_view(coordgap.ledger(app).snapshot()), want)
"""

from __future__ import annotations

import asyncio
import itertools
import traceback
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.constants import END, START
from langgraph.types import Send

__all__ = [
    "INVALID_ROUTE",
    "UNDELIVERED",
    "UNKNOWN",
    "Oracle",
    "OracleError",
    "RecordingSaver",
    "assert_same_ledger",
    "diff_ledgers",
    "empty_ledger",
    "ledger_view",
]

UNKNOWN = "__unknown__"
INVALID_ROUTE = "InvalidRoute"
UNDELIVERED = "Undelivered"

_TASKS = "__pregel_tasks"
_BRANCH = "branch:to:"
_JOIN = "join:"
_PUSH_TRIGGER = ("__pregel_push",)
_NULL_TASK_ID = "00000000-0000-0000-0000-000000000000"
_CONTROL = frozenset(
    {
        "__error__",
        "__interrupt__",
        "__resume__",
        "__no_writes__",
        "__return__",
        "__error_source_node__",
    }
)


class OracleError(AssertionError):
    """The oracle met something it cannot derive a count for (a corpus or oracle bug)."""


class RecordingSaver(InMemorySaver):
    """An InMemorySaver that also logs every ``put_writes`` call with the live values."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, str, tuple[Any, ...] | str, list[tuple[str, Any]]]] = []
        self._checkpoint_steps: dict[str, int] = {}
        self._write_checkpoints: dict[tuple[str, str], str] = {}

    def _record(self, config: Any, writes: Sequence[Any], task_id: str, task_path: Any) -> None:
        conf = config.get("configurable", {})
        ns = str(conf.get("checkpoint_ns", ""))
        self.log.append((ns, task_id, task_path, [(w[0], w[1]) for w in writes]))
        if conf.get("checkpoint_id"):
            self._write_checkpoints[(ns, task_id)] = str(conf["checkpoint_id"])

    def task_step(self, ns: str, task_id: str) -> int | None:
        """The superstep a task ran in, from the checkpoint its writes were saved against
        (LangGraph runs step n+1's tasks on the checkpoint it saved with step n)."""
        step = self._checkpoint_steps.get(self._write_checkpoints.get((ns, task_id), ""))
        return None if step is None else step + 1

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        out = super().put(config, checkpoint, metadata, new_versions)
        self._checkpoint_steps[str(checkpoint["id"])] = int(metadata.get("step", -1))
        return out

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        out = await super().aput(config, checkpoint, metadata, new_versions)
        self._checkpoint_steps[str(checkpoint["id"])] = int(metadata.get("step", -1))
        return out

    def put_writes(
        self, config: Any, writes: Sequence[Any], task_id: str, task_path: str = ""
    ) -> None:
        self._record(config, writes, task_id, task_path)
        super().put_writes(config, writes, task_id, task_path)

    async def aput_writes(
        self, config: Any, writes: Sequence[Any], task_id: str, task_path: str = ""
    ) -> None:
        self._record(config, writes, task_id, task_path)
        await super().aput_writes(config, writes, task_id, task_path)


# -- the expected ledger: a plain, comparable structure --------------------------------------


def empty_ledger() -> dict[str, Any]:
    """Return a ledger with nothing counted (the structure :func:`ledger_view` returns)."""
    return {
        "nodes": {},
        "handoffs": {},
        "routers": {},
        "runs": {"runs": 0, "ok": 0, "error": 0, "interrupted": 0, "clean": 0, "error_types": {}},
    }


def _bump(d: dict[str, int], key: str, n: int = 1) -> None:
    d[key] = d.get(key, 0) + n


class _Tally:
    """The expected counts, accumulated over runs; ``failed`` says if this run failed."""

    def __init__(self) -> None:
        self.data = empty_ledger()
        self.failed = False

    def node(self, name: str, ok: bool) -> None:
        row = self.data["nodes"].setdefault(name, {"executions": 0, "failures": 0})
        row["executions"] += 1
        if not ok:
            row["failures"] += 1
            self.failed = True

    def handoff(self, source: str, target: str, kind: str, error: str | None = None) -> None:
        row = self.data["handoffs"].setdefault(
            (source, target), {"transfers": 0, "failures": 0, "kinds": {}, "error_types": {}}
        )
        row["transfers"] += 1
        _bump(row["kinds"], kind)
        if error is not None:
            row["failures"] += 1
            _bump(row["error_types"], error)
            self.failed = True

    def router(self, name: str, source: str, targets: Sequence[str], error: str | None) -> None:
        row = self.data["routers"].setdefault(
            name,
            {"source": source, "decisions": 0, "failures": 0, "targets": {}, "error_types": {}},
        )
        row["decisions"] += 1
        for t in targets:
            _bump(row["targets"], t)
        if error is not None:
            row["failures"] += 1
            _bump(row["error_types"], error)
            self.failed = True

    def run(self, status: str, error_type: str | None) -> None:
        runs = self.data["runs"]
        runs["runs"] += 1
        runs[status] += 1
        if error_type is not None:
            _bump(runs["error_types"], error_type)
        if status == "ok" and not self.failed:
            runs["clean"] += 1
        self.failed = False


def ledger_view(snapshot: Any) -> dict[str, Any]:
    """Return a coordgap ``LedgerSnapshot`` as the oracle's plain structure."""
    out = empty_ledger()
    for name, s in snapshot.nodes.items():
        if s.executions or s.failures:
            out["nodes"][name] = {"executions": s.executions, "failures": s.failures}
    for key, h in snapshot.handoffs.items():
        if h.transfers:
            out["handoffs"][tuple(key)] = {
                "transfers": h.transfers,
                "failures": h.failures,
                "kinds": dict(h.kinds),
                "error_types": dict(h.error_types),
            }
    for name, r in snapshot.routers.items():
        if r.decisions:
            out["routers"][name] = {
                "source": r.source,
                "decisions": r.decisions,
                "failures": r.failures,
                "targets": dict(r.targets),
                "error_types": dict(r.error_types),
            }
    runs = snapshot.runs
    out["runs"] = {
        "runs": runs.runs,
        "ok": runs.ok,
        "error": runs.error,
        "interrupted": runs.interrupted,
        "clean": runs.clean,
        "error_types": dict(runs.error_types),
    }
    return out


def _reconcile_kinds(got: dict[str, int], want: Mapping[str, int]) -> dict[str, int]:
    """Fold got's kinds into want's ambiguous ``"a|b"`` kinds where they fit."""
    got = dict(got)
    for key, n in want.items():
        if "|" not in key:
            continue
        options = key.split("|")
        take = 0
        for option in options:
            while take < n and got.get(option, 0) > 0:
                got[option] -= 1
                take += 1
        got = {k: v for k, v in got.items() if v}
        if take:
            got[key] = got.get(key, 0) + take
    return got


def diff_ledgers(got: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
    """Return one readable line per difference between two ledgers (empty when equal)."""
    lines: list[str] = []
    for section in ("nodes", "handoffs", "routers"):
        g, w = got.get(section, {}), want.get(section, {})
        for key in sorted(set(g) | set(w), key=repr):
            name = " -> ".join(key) if isinstance(key, tuple) else key
            if key not in g:
                lines.append(f"{section} {name}: missing, want {w[key]}")
            elif key not in w:
                lines.append(f"{section} {name}: phantom {g[key]} (LangGraph did not do it)")
            else:
                row_g = dict(g[key])
                if section == "handoffs":
                    row_g["kinds"] = _reconcile_kinds(row_g["kinds"], w[key]["kinds"])
                for field_ in sorted(set(row_g) | set(w[key])):
                    if row_g.get(field_) != w[key].get(field_):
                        lines.append(
                            f"{section} {name}: {field_} {row_g.get(field_)!r}, "
                            f"want {w[key].get(field_)!r}"
                        )
    gr, wr = got.get("runs", {}), want.get("runs", {})
    for field_ in sorted(set(gr) | set(wr)):
        if gr.get(field_) != wr.get(field_):
            lines.append(f"runs: {field_} {gr.get(field_)!r}, want {wr.get(field_)!r}")
    return lines


def assert_same_ledger(got: Mapping[str, Any], want: Mapping[str, Any]) -> None:
    """Assert coordgap's ledger (``got``) equals the oracle's (``want``), with a readable diff."""
    lines = diff_ledgers(got, want)
    if lines:
        raise AssertionError(
            "coordgap's ledger differs from what LangGraph did:\n  " + "\n  ".join(lines)
        )


# -- what LangGraph did in one run -------------------------------------------------------


@dataclass
class _Task:
    ns: str
    id: str
    name: str
    step: float
    order: int
    started: bool = False
    push: bool = False
    result: Mapping[str, Any] | None = None
    writes: list[tuple[str, Any]] | None = None

    @property
    def prefix(self) -> str:
        return _prefix(self.ns)


def _prefix(ns: str) -> str:
    if not ns:
        return ""
    return "/".join(part.split(":")[0] for part in ns.split("|")) + "/"


@dataclass
class _Pending:
    source: str
    kind: str
    channel: str | None = None
    """For a join: its channel; the handoff waits until every source of the join wrote."""
    join_source: str | None = None
    step: float = float("-inf")
    """The superstep it was written in: a task of that same superstep (one resumed after an
    interrupt, say) runs on the state from before it, and does not receive it."""


@dataclass
class _GraphInfo:
    """What the oracle needs of one (sub)graph's declaration."""

    prefix: str
    nodes: frozenset[str]
    edges: frozenset[tuple[str, str]]
    joins: Mapping[str, tuple[str, ...]]
    """join channel -> its sources."""
    branches: Mapping[str, list[tuple[str, Any]]]
    """source -> [(router id, BranchSpec)]."""
    destinations: Mapping[str, tuple[str, ...]]
    router_codes: Mapping[str, frozenset[Any]] = field(default_factory=dict)

    def q(self, raw: str) -> str:
        return self.prefix + raw

    def branch_kinds(self, source: str, target: str) -> set[str]:
        """The declared kinds a ``branch:to:target`` write by ``source`` can be."""
        kinds: set[str] = set()
        if (source, target) in self.edges:
            kinds.add("edge")
        for _, branch in self.branches.get(source, ()):
            ends = branch.ends
            if ends is None or target in ends.values():
                kinds.add("conditional")
        if target in self.destinations.get(source, ()):
            kinds.add("command")
        return kinds or {"command"}

    def invalid_kinds(self, source: str) -> set[str]:
        kinds = {"conditional" for _, b in self.branches.get(source, ()) if b.ends is None}
        if self.destinations.get(source) or not kinds:
            kinds.add("command")
        return kinds

    def end_kinds(self, source: str) -> set[str]:
        kinds: set[str] = set()
        if (source, END) in self.edges:
            kinds.add("edge")
        for _, branch in self.branches.get(source, ()):
            if branch.ends is None or END in branch.ends.values():
                kinds.add("conditional")
        if END in self.destinations.get(source, ()):
            kinds.add("command")
        return kinds or {"edge"}


def _kind(kinds: Iterable[str]) -> str:
    return "|".join(sorted(kinds))


def _graph_info(graph: Any, prefix: str) -> _GraphInfo:
    builder = getattr(graph, "builder", None)
    if builder is None or not hasattr(builder, "branches"):
        raise OracleError(f"subgraph at {prefix!r} has no StateGraph builder")
    shared: dict[str, int] = defaultdict(int)
    for branches in builder.branches.values():
        for bname in branches:
            shared[bname] += 1
    routers: dict[str, list[tuple[str, Any]]] = {}
    codes: dict[str, set[Any]] = {}
    for source, branches in builder.branches.items():
        for bname, branch in branches.items():
            rid = prefix + (bname if shared[bname] == 1 else f"{bname}@{source}")
            routers.setdefault(source, []).append((rid, branch))
            for attr in ("func", "afunc"):
                fn = getattr(branch.path, attr, None)
                code = getattr(fn, "__code__", None)
                if code is not None:
                    codes.setdefault(rid, set()).add(code)
    destinations: dict[str, tuple[str, ...]] = {}
    for name, spec in builder.nodes.items():
        ends = getattr(spec, "ends", None) or ()
        destinations[name] = tuple(ends.keys()) if isinstance(ends, dict) else tuple(ends)
    joins = {
        f"join:{'+'.join(sources)}:{target}": tuple(sources)
        for sources, target in builder.waiting_edges
    }
    return _GraphInfo(
        prefix=prefix,
        nodes=frozenset(graph.nodes) - {START},
        edges=frozenset(builder.edges),
        joins=joins,
        branches=routers,
        destinations=destinations,
        router_codes={k: frozenset(v) for k, v in codes.items()},
    )


class Oracle:
    """Runs a bare compiled graph and accumulates the ledger LangGraph's record implies.

    Runs go through :meth:`invoke` (or :meth:`run`, which returns the exception instead of
    raising it). A config without a ``thread_id`` gets a fresh thread per run.
    """

    def __init__(self, graph: Any) -> None:
        self.saver = RecordingSaver()
        self.graph = graph.copy(update={"checkpointer": self.saver})
        self.tally = _Tally()
        self._threads = itertools.count()
        self._carried: dict[str, dict[tuple[str, str], list[_Pending]]] = {}
        self._finished: dict[str, set[tuple[str, str]]] = {}
        self._infos: dict[str, _GraphInfo] = {}
        self._subgraphs: dict[str, Any] = {"": self.graph}
        self.last_events: list[tuple[tuple[str, ...], dict[str, Any]]] = []

    # -- running ------------------------------------------------------------------------

    def invoke(self, input: Any, config: Mapping[str, Any] | None = None) -> Any:
        """Run once like ``graph.invoke`` (returns the final values, or raises)."""
        out = self.run(input, config)
        if isinstance(out, BaseException):
            raise out
        return out

    def run(self, input: Any, config: Mapping[str, Any] | None = None) -> Any:
        """Run once; return the final values, or the exception the run raised."""
        cfg: dict[str, Any] = dict(config or {})
        conf = dict(cfg.get("configurable", {}))
        if "thread_id" not in conf:
            conf["thread_id"] = f"oracle-{next(self._threads)}"
        cfg["configurable"] = conf
        thread = str(conf["thread_id"])
        start = len(self.saver.log)
        events: list[tuple[tuple[str, ...], dict[str, Any]]] = []
        values: Any = None
        raised: BaseException | None = None
        try:
            for ns, mode, chunk in self.graph.stream(
                input, cfg, stream_mode=["debug", "values"], subgraphs=True
            ):
                if mode == "debug":
                    events.append((ns, chunk))
                elif not ns:
                    values = chunk
        except Exception as exc:
            raised = exc
        self.last_events = events
        writes = self.saver.log[start:]
        if raised is not None:
            status = "error"
        elif self.graph.get_state(cfg).next or _interrupted(events):
            status = "interrupted"
        else:
            status = "ok"
        self._account(thread, events, writes, status)
        self.tally.run(status, None if raised is None else type(raised).__name__)
        return raised if raised is not None else values

    def expected(self) -> dict[str, Any]:
        """Return the expected ledger for every run so far."""
        data = self.tally.data
        return {
            "nodes": {k: dict(v) for k, v in data["nodes"].items()},
            "handoffs": {
                k: {**v, "kinds": dict(v["kinds"]), "error_types": dict(v["error_types"])}
                for k, v in data["handoffs"].items()
            },
            "routers": {
                k: {**v, "targets": dict(v["targets"]), "error_types": dict(v["error_types"])}
                for k, v in data["routers"].items()
            },
            "runs": {**data["runs"], "error_types": dict(data["runs"]["error_types"])},
        }

    # -- deriving the counts of one run ----------------------------------------------------

    def _info(self, prefix: str) -> _GraphInfo:
        info = self._infos.get(prefix)
        if info is None:
            info = self._infos[prefix] = _graph_info(self._graph_at(prefix), prefix)
        return info

    def _graph_at(self, prefix: str) -> Any:
        graph = self._subgraphs.get(prefix)
        if graph is not None:
            return graph
        parent_prefix, _, _ = prefix[:-1].rpartition("/")
        parent_prefix = parent_prefix + "/" if parent_prefix else ""
        name = prefix[len(parent_prefix) : -1]
        parent = self._graph_at(parent_prefix)
        found = dict(parent.get_subgraphs())
        if name not in found:
            raise OracleError(f"no subgraph found for node {parent_prefix}{name}")
        self._subgraphs[prefix] = found[name]
        return found[name]

    def _account(
        self,
        thread: str,
        events: list[tuple[tuple[str, ...], dict[str, Any]]],
        log: list[tuple[str, str, Any, list[tuple[str, Any]]]],
        status: str,
    ) -> None:
        tasks: dict[tuple[str, str], _Task] = {}
        order = itertools.count()
        for ns_tuple, ev in events:
            ns = "|".join(ns_tuple)
            kind, payload = ev["type"], ev["payload"]
            if kind == "task":
                key = (ns, payload["id"])
                if key in tasks:
                    raise OracleError(f"task {payload['name']} started twice in one run")
                tasks[key] = _Task(
                    ns,
                    payload["id"],
                    payload["name"],
                    ev["step"],
                    next(order),
                    started=True,
                    push=tuple(payload.get("triggers") or ()) == _PUSH_TRIGGER,
                )
            elif kind == "task_result":
                key = (ns, payload["id"])
                task = tasks.get(key)
                if task is None:  # an error handler: LangGraph announces no task for it
                    task = tasks[key] = _Task(
                        ns, payload["id"], payload["name"], ev["step"], next(order)
                    )
                task.result = payload
        for ns, task_id, path, writes in log:
            if task_id == _NULL_TASK_ID:
                continue  # resume values and updates given with the input: no task wrote them
            task = tasks.get((ns, task_id))
            if task is None:
                parts = path.split(", ") if isinstance(path, str) else [str(x) for x in path]
                name = parts[1] if len(parts) > 1 else None
                if name == START:
                    task = _Task(ns, task_id, START, float("-inf"), next(order))
                elif status == "error" and name is not None:
                    # the run raised while a subgraph ran: its stream was cut, but the task
                    # started (it wrote); its step is the checkpoint's it wrote against
                    # (unknown: after its graph's others), its outcome what its writes say
                    step = self.saver.task_step(ns, task_id)
                    push = parts[0].lstrip("~") == "__pregel_push"
                    task = _Task(
                        ns,
                        task_id,
                        "" if push else name.lstrip("~"),  # a push path names no node
                        float("inf") if step is None else step,
                        next(order),
                        started=True,
                        push=push,
                    )
                else:
                    raise OracleError(f"writes from a task the debug stream never showed: {path}")
                tasks[(ns, task_id)] = task
            task.writes = (task.writes or []) + list(writes)

        # On resume LangGraph announces the interrupted step's tasks again, also those that
        # had finished (their saved writes are reused, they do not run): not executions.
        finished = self._finished.setdefault(thread, set())
        for key, task in list(tasks.items()):
            if key in finished and task.result is None and task.writes is None:
                del tasks[key]
        for key, task in tasks.items():
            if task.result is not None and not task.result.get("interrupts"):
                finished.add(key)
        pending = self._carried.pop(thread, {})
        for task_ns in dict.fromkeys(t.ns for t in tasks.values()):
            group = sorted(
                (t for t in tasks.values() if t.ns == task_ns), key=lambda t: (t.step, t.order)
            )
            for _, step_tasks in itertools.groupby(group, key=lambda t: t.step):
                step_list = list(step_tasks)
                if status == "error":
                    # a task LangGraph cancelled before it ran, when another task of its
                    # step raised: the debug stream announced it, but it never started
                    step_list = [t for t in step_list if t.result is not None or not _cancelled(t)]
                for task in step_list:
                    if task.push and not task.name:
                        task.name = self._sent_to(task, pending)
                    if task.started:
                        self._deliver(task, pending)
                for task in step_list:
                    if status == "error" and task.result is None and not _finished(task):
                        continue  # cut off by the run's error: no outcome, no handoff
                    self._outcome(task, pending)
        left = [(k, p) for k, ps in pending.items() for p in ps]
        if status == "interrupted":
            if left:
                self._carried[thread] = {k: list(v) for k, v in pending.items() if v}
        elif status == "ok":
            for (_, target), p in left:
                self.tally.handoff(p.source, target, p.kind, UNDELIVERED)

    def _sent_to(self, task: _Task, pending: dict[tuple[str, str], list[_Pending]]) -> str:
        """The node a push task cut from the stream ran: the target of the Send waiting for
        it (one Send of an earlier step in its graph instance, or the oracle cannot tell)."""
        prefix = task.prefix
        targets = {
            target
            for (ns, target), bucket in pending.items()
            if ns == task.ns and any(p.kind == "send" and p.step < task.step for p in bucket)
        }
        if len(targets) != 1:
            raise OracleError(f"a Send task cut from the stream, to one of {sorted(targets)}")
        return targets.pop()[len(prefix) :]

    def _deliver(self, task: _Task, pending: dict[tuple[str, str], list[_Pending]]) -> None:
        info = self._info(task.prefix)
        target = info.q(task.name)
        key = (task.ns, target)
        bucket = pending.get(key)
        if not bucket:
            return
        if task.push:
            for i, p in enumerate(bucket):
                if p.kind == "send" and p.step < task.step:
                    self.tally.handoff(p.source, target, p.kind)
                    del bucket[i]
                    return
            return
        keep: list[_Pending] = []
        complete: set[str] = set()
        for channel, sources in info.joins.items():
            if channel.endswith(f":{task.name}"):
                # the barrier as the task sees it: the checkpoint it runs on holds the sides
                # written before its superstep, not a side a task of its own superstep wrote
                # (as when it is a resumed task whose step's other tasks finished before)
                written = {
                    p.join_source for p in bucket if p.channel == channel and p.step < task.step
                }
                if set(sources) <= written:
                    complete.add(channel)
        for p in bucket:
            if (
                p.kind == "send"
                or (p.channel is not None and p.channel not in complete)
                or p.step >= task.step
            ):
                keep.append(p)
            else:
                self.tally.handoff(p.source, target, p.kind)
        pending[key] = keep

    def _outcome(self, task: _Task, pending: dict[tuple[str, str], list[_Pending]]) -> None:
        info = self._info(task.prefix)
        source = info.q(task.name)
        result = task.result
        if result is not None and result.get("interrupts"):
            return  # paused: it runs again on resume
        if result is not None:
            error = result.get("error")
        else:  # the hidden __start__ task: only its saved writes tell how it ended
            error = next((v for c, v in task.writes or () if c == "__error__"), None)
        # a router runs in its node's task, after the node: when it raised, the node did
        # its work and the decision failed (one failure, counted on the router)
        router_failed = error is not None and self._failed_router(task, info, error)
        if task.name != START:
            self.tally.node(source, error is None or router_failed)
        if error is not None:
            return
        if result is None and task.writes is None:
            return  # left through Command.PARENT (or was never finished): hands off nothing
        routed: list[str] = []
        invalid = False
        any_route = False
        for channel, value in task.writes or ():
            if channel.startswith(_BRANCH):
                any_route = True
                raw = channel[len(_BRANCH) :]
                if raw in info.nodes:
                    kinds = info.branch_kinds(task.name, raw)
                    self._open(pending, task, info.q(raw), _Pending(source, _kind(kinds)))
                    if "conditional" in kinds:
                        routed.append(info.q(raw))
                else:
                    kinds = info.invalid_kinds(task.name)
                    self.tally.handoff(source, UNKNOWN, _kind(kinds), INVALID_ROUTE)
                    if "conditional" in kinds:
                        routed.append(UNKNOWN)
                        invalid = True
            elif channel.startswith(_JOIN) and channel in info.joins:
                any_route = True
                raw = channel.rpartition(":")[2]
                self._open(
                    pending,
                    task,
                    info.q(raw),
                    _Pending(source, "join", channel=channel, join_source=str(value)),
                )
            elif channel == _TASKS and isinstance(value, Send):
                any_route = True
                if value.node in info.nodes:
                    self._open(pending, task, info.q(value.node), _Pending(source, "send"))
                    routed.append(info.q(value.node))
                else:
                    self.tally.handoff(source, UNKNOWN, "send", INVALID_ROUTE)
                    routed.append(UNKNOWN)
                    invalid = True
            elif channel.startswith(_BRANCH.split(":")[0] + ":") or channel.startswith(_JOIN):
                raise OracleError(f"unexpected routing write {channel!r} by {source}")
        if not any_route:
            end = info.q(END)
            kinds = info.end_kinds(task.name)
            self.tally.handoff(source, end, _kind(kinds))
            if "conditional" in kinds:
                routed.append(end)
        for rid, _ in info.branches.get(task.name, ()):
            self.tally.router(rid, source, routed, INVALID_ROUTE if invalid else None)

    def _open(
        self, pending: dict[tuple[str, str], list[_Pending]], task: _Task, target: str, p: _Pending
    ) -> None:
        p.step = task.step
        pending.setdefault((task.ns, target), []).append(p)

    def _failed_router(self, task: _Task, info: _GraphInfo, error: BaseException) -> bool:
        """Tally a failed decision when a router made the task fail; return whether one did."""
        routers = info.branches.get(task.name, ())
        if not routers:
            return False
        frames = {f.f_code for f, _ in traceback.walk_tb(error.__traceback__)}
        for rid, _ in routers:
            if frames & info.router_codes.get(rid, frozenset()):
                self.tally.router(rid, info.q(task.name), (), type(error).__name__)
                return True
        partial = [w for w in task.writes or () if w[0] not in _CONTROL]
        if partial or task.name == START:
            # the node's own update was written (START writes the input), so a later writer,
            # its router, raised
            rid = routers[0][0]
            self.tally.router(rid, info.q(task.name), (), type(error).__name__)
            return True
        return False


def _cancelled(task: _Task) -> bool:
    """Whether a task's only saved write is the ``CancelledError`` LangGraph saves for a
    task it cancelled: a sync task's future cancelled before a thread took it never ran.
    (An async task can be cancelled after it began; sync and async alike are read as not
    started, which is what a task cancelled before its first line is.)"""
    writes = task.writes or ()
    return bool(writes) and all(
        channel == "__error__" and isinstance(value, (asyncio.CancelledError, CancelledError))
        for channel, value in writes
    )


def _finished(task: _Task) -> bool:
    """Whether a task with no ``task_result`` finished, by its saved writes: LangGraph
    waits for a failed superstep's other tasks (a subgraph among them runs to its end)
    and saves their writes, but the debug stream was cut when the run raised."""
    if task.name == START:
        return True
    channels = {c for c, _ in task.writes or ()}
    return bool(channels) and "__interrupt__" not in channels


def _interrupted(events: Iterable[tuple[tuple[str, ...], dict[str, Any]]]) -> bool:
    return any(
        not ns and ev["type"] == "task_result" and ev["payload"].get("interrupts")
        for ns, ev in events
    )
