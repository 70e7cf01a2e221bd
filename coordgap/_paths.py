"""The path each run took, read off coordgap's events: nodes and handoffs in order.

A test that pins a route ("supervisor -> researcher -> supervisor -> END") asserts on a
:class:`RunPath`; :func:`graph_trajectory` writes paths in the graph-trajectory form of
LangChain's ``agentevals`` (``{"inputs", "results", "steps"}``), so trajectory evaluators
written for LangSmith keep working on them.

Built from events only (:class:`~coordgap.NodeOutcome`, :class:`~coordgap.HandoffOutcome`,
:class:`~coordgap.RunOutcome`), so it needs no graph and holds no state values::

    with capture_events() as events:
        app.invoke({"messages": [...]})
    events.runs[-1].route()        # ('supervisor', 'researcher', 'supervisor', '__end__')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeAlias, TypedDict

from .errors import ConfigurationError
from .events import Event, HandoffOutcome, NodeOutcome, RunOutcome, RunStatus
from .semconv import END, START

__all__ = [
    "EventLog",
    "GraphTrajectory",
    "RunPath",
    "Visit",
    "assert_path",
    "assert_visits",
    "graph_trajectory",
    "run_paths",
]

INTERRUPT = "__interrupt__"
"""The step agentevals writes after a node that paused the run on an interrupt."""


@dataclass(frozen=True, slots=True)
class Visit:
    """One execution of one node in a run (its retried attempts are one visit).

    ``ok`` is None when the node paused the run (an interrupt): it runs again on resume,
    where it is a ``resumed`` visit. ``received`` names the sources of the handoffs
    delivered to it.
    """

    node: str
    ok: bool | None
    start_ns: int
    attempts: int = 1
    received: tuple[str, ...] = ()
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class RunPath:
    """The path of one run: its visits in the order they started, its handoffs in the
    order they were delivered.

    Nodes of subgraphs are named ``outer/inner`` and come after the node that runs them.
    ``status`` is None while the run has not ended (or its end was not captured).
    """

    graph: str
    run_id: int
    status: RunStatus | None
    visits: tuple[Visit, ...]
    handoffs: tuple[HandoffOutcome, ...]

    @property
    def started(self) -> bool:
        """True when the run began from an input (not a resume): its entry handed off."""
        return any(h.source == START for h in self.handoffs)

    @property
    def ended(self) -> bool:
        """True when a handoff into the graph's ``__end__`` was delivered."""
        return any(h.target == END and h.ok for h in self.handoffs)

    def route(self, *, subgraphs: bool = False) -> tuple[str, ...]:
        """The nodes visited in order, then ``__end__`` when the run reached it, or
        ``__interrupt__`` after a node that paused it.

        Args:
            subgraphs: include the nodes of subgraphs (``outer/inner``) after their node.
        """
        out: list[str] = []
        for v in self.visits:
            if subgraphs or "/" not in v.node:
                out.append(v.node)
                if v.ok is None:
                    out.append(INTERRUPT)
        if self.ended:
            out.append(END)
        return tuple(out)

    def visit_counts(self) -> dict[str, int]:
        """Visits per node (subgraph nodes by their ``outer/inner`` name)."""
        counts: dict[str, int] = {}
        for v in self.visits:
            counts[v.node] = counts.get(v.node, 0) + 1
        return counts

    def steps(self) -> list[str]:
        """This run as one list of agentevals' ``steps``: ``__start__`` for a run from an
        input, each node, ``outer:inner`` for a subgraph's (with ``outer:__start__``
        where the subgraph began), ``__interrupt__`` after a node that paused the run."""
        out: list[str] = [START] if self.started else []
        for v in self.visits:
            if v.resumed:
                continue  # agentevals lists it in the run it paused (before __interrupt__)
            outer, _, _ = v.node.partition("/")
            if "/" in v.node:
                if any(s.endswith("/" + START) for s in v.received):
                    out.append(f"{outer}:{START}")
                out.append(f"{outer}:{v.node.rpartition('/')[2]}")
            else:
                out.append(v.node)
            if v.ok is None:
                out.append(INTERRUPT)
        return out

    def __str__(self) -> str:
        return " -> ".join(self.route())


class GraphTrajectory(TypedDict):
    """agentevals' ``GraphTrajectory``: one ``steps`` list and one ``results`` dict per run."""

    inputs: list[Any]
    results: list[dict[str, Any]]
    steps: list[list[str]]


class EventLog(list[Event]):
    """The events captured by :func:`coordgap.testing.capture_events` (a list), and the
    path of each run they tell."""

    @property
    def runs(self) -> tuple[RunPath, ...]:
        """The path of every run, in the order the runs began."""
        return run_paths(self)


_Source: TypeAlias = "RunPath | Iterable[Event]"


def run_paths(events: Iterable[Event]) -> tuple[RunPath, ...]:
    """Group events by run (graph, run id) and return each run's path, in the order the
    runs began."""
    order: dict[tuple[str, int], _Draft] = {}
    for event in list(events):
        key = (event.graph, event.run_id)
        draft = order.get(key)
        if draft is None:
            draft = order[key] = _Draft()
        draft.add(event)
    return tuple(d.path(graph, run_id) for (graph, run_id), d in order.items())


class _Draft:
    """One run's events, folded into visits as they come."""

    def __init__(self) -> None:
        self.visits: list[tuple[int, int, Visit]] = []  # (start, emission order, visit)
        self.handoffs: list[HandoffOutcome] = []
        self.waiting: dict[str, list[HandoffOutcome]] = {}  # delivered, no outcome yet
        self.retried: dict[str, tuple[int, int]] = {}  # node -> (first start, attempts)
        self.status: RunStatus | None = None

    def add(self, event: Event) -> None:
        if isinstance(event, HandoffOutcome):
            self.handoffs.append(event)
            if event.ok and event.target != END:
                self.waiting.setdefault(event.target, []).append(event)
        elif isinstance(event, NodeOutcome):
            first, tries = self.retried.pop(event.node, (event.start_ns, 0))
            if not event.final:
                self.retried[event.node] = (first, tries + 1)
                return
            received = self.waiting.pop(event.node, [])
            visit = Visit(
                node=event.node,
                ok=event.ok,
                start_ns=first,
                attempts=tries + 1,
                received=tuple(h.source for h in received),
            )
            self.visits.append((first, len(self.visits), visit))
        elif isinstance(event, RunOutcome):
            self.status = event.status

    def path(self, graph: str, run_id: int) -> RunPath:
        visits = list(self.visits)
        if self.status == "interrupted":
            # delivered but never finished: the node paused the run
            for node, received in self.waiting.items():
                start = min(h.end_ns for h in received)
                paused = Visit(node, None, start, 1, tuple(h.source for h in received))
                visits.append((start, len(visits), paused))
        visits.sort(key=lambda t: (t[0], t[1]))
        if not any(h.source == START for h in self.handoffs):
            # a resume: the nodes that run again before any handoff is delivered are the
            # ones that paused the last run
            first = min((h.end_ns for h in self.handoffs if h.ok), default=None)
            visits = [
                (t, i, replace(v, resumed=True))
                if not v.received and (first is None or t <= first)
                else (t, i, v)
                for t, i, v in visits
            ]
        return RunPath(
            graph=graph,
            run_id=run_id,
            status=self.status,
            visits=tuple(v for _, _, v in visits),
            handoffs=tuple(self.handoffs),
        )


def _paths_of(source: _Source, graph: str | None) -> tuple[RunPath, ...]:
    if isinstance(source, RunPath):
        return (source,)
    if isinstance(source, str | bytes) or not isinstance(source, Iterable):
        raise ConfigurationError(
            f"{type(source).__name__} is not a run path: pass the events of "
            "coordgap.testing.capture_events() (or a RunPath from its .runs)."
        )
    events = list(source)
    paths = run_paths(events)
    if graph is not None:
        chosen = tuple(p for p in paths if p.graph == graph)
        if not chosen:
            seen = sorted({p.graph for p in paths})
            raise ConfigurationError(
                f"graph={graph!r}: no run of that graph was captured (graphs: {seen or 'none'})."
            )
        return chosen
    graphs = {p.graph for p in paths}
    if len(graphs) > 1:
        # a graph that ran another instrumented graph reports its nodes too: the outermost
        # run is the one that ended last
        last = next(
            (e.graph for e in reversed(events) if isinstance(e, RunOutcome)), paths[-1].graph
        )
        return tuple(p for p in paths if p.graph == last)
    return paths


def _pick(source: _Source, run: int, graph: str | None) -> RunPath:
    paths = _paths_of(source, graph)
    if not paths:
        raise AssertionError("no run was captured: was the graph instrumented inside the block?")
    try:
        return paths[run]
    except IndexError:
        raise ConfigurationError(
            f"run={run}: {len(paths)} run(s) were captured; pass an index in range."
        ) from None


def assert_path(
    source: _Source,
    expected: Sequence[str],
    *,
    run: int = -1,
    graph: str | None = None,
    subgraphs: bool = False,
) -> RunPath:
    """Assert the route one run took, node by node, and return its path.

    ``expected`` lists node names and may end with ``END`` (``"__end__"``: the run reached
    the end) or contain ``"__interrupt__"`` after a node that paused; it may begin with
    ``START`` (``"__start__"``: the run began from an input, not a resume). Subgraph nodes
    (``outer/inner``) are compared only with ``subgraphs=True``.

    Args:
        source: the events of :func:`capture_events` (or one :class:`RunPath`).
        run: which run, by index in the order runs began (default: the last).
        graph: whose runs, when several instrumented graphs ran (default: the graph whose
            run ended last, the outermost one).

    Example::

        with capture_events() as events:
            team.invoke({"messages": [("user", "find the figures")]})
        assert_path(events, ["supervisor", "researcher", "supervisor", END])
    """
    path = _pick(source, run, graph)
    want = [str(n) for n in expected]
    got = list(path.route(subgraphs=subgraphs))
    if want[:1] == [START]:
        if not path.started:
            raise AssertionError(
                f"run {path.run_id} of graph {path.graph!r} did not begin from an input "
                f"(a resume): its route is {_arrows(got)}"
            )
        want = want[1:]
    if got != want:
        at = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
        if at is None:
            at = min(len(got), len(want))
        where = f"first difference at step {at + 1}: took {_at(got, at)}, expected {_at(want, at)}"
        raise AssertionError(
            f"run {path.run_id} of graph {path.graph!r} took {_arrows(got)}\n"
            f"  expected {_arrows(want)}\n  {where}"
        )
    return path


def assert_visits(
    source: _Source,
    expected: Mapping[str, int | range],
    *,
    run: int | None = -1,
    graph: str | None = None,
) -> dict[str, int]:
    """Assert how many times nodes ran: exactly ``n``, or a number in a ``range``; return
    the counts of every node.

    Args:
        source: the events of :func:`capture_events` (or one :class:`RunPath`).
        expected: node -> visits (``{"researcher": 1, "supervisor": range(1, 4)}``); a
            node not named is not checked (name it with 0 to forbid it).
        run: which run (default the last); None adds up every run of the graph.
        graph: whose runs, when several instrumented graphs ran.

    Example::

        assert_visits(events, {"researcher": 1, "writer": 0, "supervisor": range(2, 4)})
    """
    if run is None:
        paths = _paths_of(source, graph)
        label = f"{len(paths)} runs"
    else:
        paths = (_pick(source, run, graph),)
        label = f"run {paths[0].run_id}"
    counts: dict[str, int] = {}
    for p in paths:
        for node, n in p.visit_counts().items():
            counts[node] = counts.get(node, 0) + n
    wrong = []
    for node, want in expected.items():
        if not isinstance(want, int | range) or isinstance(want, bool):
            raise ConfigurationError(
                f"expected[{node!r}]={want!r}: give a number of visits or a range of them."
            )
        n = counts.get(node, 0)
        if (n not in want) if isinstance(want, range) else (n != want):
            wrong.append(f"{node}: ran {n}, expected {_spell(want)}")
    if wrong:
        graph_name = paths[0].graph if paths else graph
        raise AssertionError(
            f"visits in {label} of graph {graph_name!r}: " + "; ".join(wrong) + f" (all: {counts})"
        )
    return counts


def graph_trajectory(source: _Source, *, graph: str | None = None) -> GraphTrajectory:
    """Return the runs as agentevals' graph trajectory: one ``steps`` list per run.

    ``results`` holds one empty dict per run: coordgap keeps no state values. Feed it to
    agentevals' graph-trajectory evaluators as ``outputs`` (``graph_trajectory_strict_match``,
    the LLM judge).

    Example::

        from agentevals.graph_trajectory.strict import graph_trajectory_strict_match
        graph_trajectory_strict_match(
            outputs=graph_trajectory(events),
            reference_outputs={"results": [{}], "steps": [["__start__", "agent", "tools", "agent"]]},
        )
    """
    paths = _paths_of(source, graph)
    return {
        "inputs": [],
        "results": [{} for _ in paths],
        "steps": [p.steps() for p in paths],
    }


def _arrows(names: Sequence[str]) -> str:
    return " -> ".join(names) if names else "(no node)"


def _at(names: Sequence[str], i: int) -> str:
    return repr(names[i]) if i < len(names) else "nothing (the route ends there)"


def _spell(want: int | range) -> str:
    if isinstance(want, int):
        return str(want)
    if want.step == 1:
        return f"{want.start} to {want.stop - 1}"
    return repr(want)
