"""The static audit: compounded reliability from the topology alone, before any run.

Give the graph and the reliability you expect of each node, handoff and
router; the audit composes them over the graph's real edges with the same
absorbing chain as the live report (``coordgap._chain``; branch probabilities
given instead of counted) and returns a :class:`~coordgap.report.Report` with
no observed side, so every renderer works on it.

Handoffs from ``START`` and to ``END`` are *not* counted by default: they are
the graph's boundary, not transfers between two nodes (pass ``boundary=True``
to include them). A linear graph of four nodes therefore has three handoffs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._chain import Chain, Diverged, Edge, Group, State, sccs_in_topological_order
from ._checks import checked_probability
from ._predict import flat_chain, param_key
from ._report import _NO_DATA, EndToEnd, Report, _assemble, _Draft, _params
from .errors import ConfigurationError
from .semconv import END, START
from .topology import Topology, handoff_name, handoff_pair

__all__ = ["audit"]

Reliabilities = float | Mapping[Any, float] | None

_STATIC = frozenset({"edge", "join"})
_SUB_START = "/" + START


def audit(
    graph: object,
    *,
    nodes: Reliabilities = None,
    handoffs: Reliabilities = None,
    routers: Reliabilities = None,
    default: float = 1.0,
    branches: Mapping[Any, float] | None = None,
    visits: Mapping[Any, float] | None = None,
    boundary: bool = False,
    name: str | None = None,
) -> Report:
    """Return the predicted end to end of a graph from assumed reliabilities, before any run.

    Args:
        graph: a ``StateGraph`` builder, a compiled graph, or a
            :class:`~coordgap.topology.Topology`.
        nodes: one reliability for every node, or a dict per node name.
        handoffs: one reliability for every handoff between nodes, or a dict
            keyed by ``(source, target)`` or ``"source -> target"``.
        routers: one reliability for every router, or a dict per router name.
        default: the reliability of any component not given (1.0: not modelled).
        branches: probability that a router (or ``Command``) at ``source``
            picks ``target``, keyed like ``handoffs``; choices not given are
            split evenly among the source's remaining targets.
        visits: how many times each node (or handoff) runs in *every* run,
            overriding the chain: the prediction is then the plain product
            ``Π r^visits`` (exact when the visits do not vary between runs).
        boundary: also count handoffs from ``START`` and to ``END``.
        name: the graph's name in the report (default: the graph's own).

    Predicted end to end is the probability of reaching ``END`` with no failure in
    the graph's absorbing chain: exact for branches and loops whose choices follow
    ``branches`` independently of the run's history. A graph with a cycle needs
    ``branches`` or ``visits``; a loop that can never exit is a
    :class:`~coordgap.errors.ConfigurationError`, never iterated on.

    Raises:
        ConfigurationError: a name that is not in the graph, a reliability or
            probability outside [0, 1], or a cycle without branch probabilities.

    Example::

        rep = coordgap.audit(
            builder,
            nodes={"retrieve": 0.98, "analyze": 0.96, "cross_check": 0.97, "synthesize": 0.95},
            handoffs=0.97,
        )
        print(f"{rep.naive:.3f} {rep.predicted:.3f} {rep.gap:.3f}")  # 0.867 0.791 0.076
    """
    topo = _topology(graph, name)
    checked_probability(default, "default", noun="a reliability")
    notes: list[str] = []
    containers = set(topo.subgraphs)
    node_names = list(topo.nodes)
    node_set = set(node_names)

    pairs: dict[tuple[str, str], set[str]] = {}
    for h in topo.handoffs:
        pairs.setdefault((h.source, h.target), set()).add(h.kind)
    for r in topo.routers:
        for t in r.targets or ():
            pairs.setdefault((r.source, t), set()).add("conditional")

    def counted(pair: tuple[str, str]) -> bool:
        return boundary or (pair[0] != START and pair[1] != END)

    node_rate = _rates("nodes", nodes, node_names, default, str)
    handoff_rate = _rates(
        "handoffs", handoffs, [p for p in pairs if counted(p)], default, _pair_key
    )
    router_rate = _rates("routers", routers, [r.name for r in topo.routers], default, str)
    probs = _branch_probabilities(pairs, branches, node_set, notes)

    # A k-way join runs its target once for its k arrivals: each arrival weighs F^(1/k).
    join_arity: dict[str, int] = {}
    for (_s, t), kinds in pairs.items():
        if kinds == {"join"}:
            join_arity[t] = join_arity.get(t, 0) + 1
    succ: dict[str, list[tuple[str, float]]] = {}
    for (s, t), w in probs.items():
        if t in node_set and w > 0:
            succ.setdefault(s, []).append((t, w))
    cyclic = any(
        len(scc) > 1 or any(t == scc[0] for t, _ in succ.get(scc[0], ()))
        for scc in sccs_in_topological_order([START, *node_names], succ)
    )
    if cyclic and branches is None and visits is None:
        raise ConfigurationError(
            f"graph {topo.graph!r} has a cycle, so visits per run depend on how often it loops; "
            "pass branches={('check', 'retry'): 0.2, ...} or visits={'analyze': 1.25, ...}"
        )

    routers_at: dict[str, list[str]] = {}
    for r in topo.routers:
        routers_at.setdefault(r.source, []).append(param_key("router", r.name))
    by_source: dict[str, list[tuple[str, str]]] = {}
    for pair in pairs:
        by_source.setdefault(pair[0], []).append(pair)
    inner_starts = {s for s in by_source if s.endswith(_SUB_START)}
    states: dict[str, State] = {}
    for s in {START, *node_names, *inner_starts}:
        static: list[Edge] = []
        choice: list[Edge] = []
        for pair in by_source.get(s, ()):
            t = pair[1]
            hp = (param_key("handoff", handoff_name(*pair)),) if counted(pair) else ()
            k = join_arity.get(t, 0) if pairs[pair] == {"join"} else 0
            edge = Edge(t, probs.get(pair, 0.0), hp, 1.0 / k if k > 1 else 1.0)
            (static if pairs[pair] & _STATIC else choice).append(edge)
        groups = []
        if static:
            groups.append(Group("each", tuple(static), fixed=True))
        if choice:
            groups.append(Group("choice", tuple(choice), fixed=True))
        params: list[str] = []
        calls: tuple[str, ...] = ()
        if s in node_set:
            if s in containers and s + _SUB_START in inner_starts:
                calls = (s + _SUB_START,)
            else:
                params.append(param_key("node", s))
            params += routers_at.get(s, ())
        states[s] = State(s, tuple(params), calls, tuple(groups))
    chain = Chain(START, states)
    try:
        v = chain.visits()
    except Diverged as exc:
        if visits is None:
            raise ConfigurationError(
                f"with these branch probabilities the loop through {sorted(exc.args[0])} never "
                "exits; lower the probability of staying in it or pass visits={...}"
            ) from None
        v = {}

    given_node_visits: dict[str, float] = {}
    given_handoff_visits: dict[tuple[str, str], float] = {}
    for key, x in (visits or {}).items():
        if isinstance(x, bool) or not isinstance(x, int | float) or x < 0:
            raise ConfigurationError(f"visits[{key!r}] must be a number >= 0 (got {x!r})")
        if isinstance(key, str) and key in node_set:
            given_node_visits[key] = float(x)
        else:
            pair = _pair_key(key)
            if pair not in pairs:
                raise ConfigurationError(
                    f"visits names {key!r}, which is neither a node nor a handoff of "
                    f"{topo.graph!r}; nodes: {', '.join(node_names)}"
                )
            given_handoff_visits[pair] = float(x)
    v.update(given_node_visits)
    v[START] = 1.0

    drafts: list[_Draft] = []
    for n in node_names:
        inner = n in containers and n + _SUB_START in inner_starts
        drafts.append(_Draft("node", n, 0, 0, not inner, given=node_rate[n], visits=v.get(n, 0.0)))
    for pair in pairs:
        if not counted(pair):
            continue
        s, t = pair
        hv = given_handoff_visits.get(pair, v.get(s, 0.0) * probs.get(pair, 0.0))
        drafts.append(
            _Draft(
                "handoff",
                handoff_name(s, t),
                0,
                0,
                True,
                s,
                t,
                {"kinds": {k: 0 for k in sorted(pairs[pair])}},
                visits=hv,
                given=handoff_rate[pair],
            )
        )
    for r in topo.routers:
        drafts.append(
            _Draft(
                "router",
                r.name,
                0,
                0,
                True,
                r.source,
                given=router_rate[r.name],
                visits=v.get(r.source, 0.0),
            )
        )
    if visits is not None:
        # Visits given: the plain product of r^visits over every component.
        chain = flat_chain(
            (d.param for d in drafts if d.in_product), {d.param: d.visits for d in drafts}
        )
        notes.append(
            "visits given: predicted is the product of r^visits, exact when every run makes "
            "exactly these visits (for loops that exit at random, give branches= instead)"
        )
    return _assemble(
        graph=topo.graph,
        basis="audit",
        confidence=0.95,
        drafts=drafts,
        chain=chain,
        params=_params(drafts, {}),
        end_to_end=EndToEnd(
            observed=_NO_DATA, predicted=_NO_DATA, naive=_NO_DATA, run_errors=_NO_DATA
        ),
        visits_method="given",
        notes=tuple(notes),
        internal_errors=0,
    )


def _topology(graph: object, name: str | None) -> Topology:
    if isinstance(graph, Topology):
        return graph
    from ._compat import topology_of  # lazy: LangGraph is only needed for a real graph

    graph_name = name or getattr(graph, "name", None) or "LangGraph"
    return topology_of(graph, graph_name)


def _pair_key(key: object) -> tuple[str, str]:
    if isinstance(key, tuple) and len(key) == 2:
        return (str(key[0]), str(key[1]))
    pair = handoff_pair(key, stacklevel=4)
    if pair is None:
        raise ConfigurationError(
            f"a handoff is named ('source', 'target') or 'source -> target' (got {key!r})"
        )
    return pair


def _rates(
    what: str,
    given: Reliabilities,
    known: list[Any],
    default: float,
    keyer: Any,
) -> dict[Any, float]:
    if given is None:
        return dict.fromkeys(known, default)
    if not isinstance(given, Mapping):
        rate = checked_probability(given, what, noun="a reliability")
        return dict.fromkeys(known, rate)
    out = dict.fromkeys(known, default)
    for key, x in given.items():
        k = keyer(key)
        if k not in out:
            shown = ", ".join(_show(p) for p in known) or "(none)"
            raise ConfigurationError(
                f"{what} names {_show(k)!r}, which the graph does not have; it has: {shown}"
            )
        out[k] = checked_probability(x, f"{what}[{_show(k)!r}]", noun="a reliability")
    return out


def _show(key: object) -> str:
    if isinstance(key, tuple):
        return handoff_name(str(key[0]), str(key[1]))
    return str(key)


def _branch_probabilities(
    pairs: Mapping[tuple[str, str], set[str]],
    branches: Mapping[Any, float] | None,
    nodes: set[str],
    notes: list[str],
) -> dict[tuple[str, str], float]:
    """Return the expected transfers per visit of the source, for every declared pair."""
    given: dict[tuple[str, str], float] = {}
    for key, x in (branches or {}).items():
        pair = _pair_key(key)
        if pair not in pairs:
            raise ConfigurationError(
                f"branches names {_show(pair)!r}, which is not an edge of the graph; edges: "
                + ", ".join(_show(p) for p in pairs)
            )
        given[pair] = checked_probability(
            x, f"branches[{_show(pair)!r}]", noun="a branch probability", example="0.3 for 30 %"
        )
    out: dict[tuple[str, str], float] = {}
    choices: dict[str, list[tuple[str, str]]] = {}
    for pair, kinds in pairs.items():
        if kinds & _STATIC:
            out[pair] = 1.0  # a static edge fires on every visit (fan-out fires all of them)
        else:
            choices.setdefault(pair[0], []).append(pair)
    for source, options in choices.items():
        fixed = sum(given.get(p, 0.0) for p in options)
        if fixed > 1.0 + 1e-9:
            raise ConfigurationError(
                f"branch probabilities out of {source!r} add up to {fixed:.3f}, more than 1"
            )
        rest = [p for p in options if p not in given]
        if len(rest) > 1:
            notes.append(
                f"branch probabilities out of {source!r} not given for "
                f"{', '.join(p[1] for p in rest)}: the remaining probability is split evenly"
            )
        for p in options:
            out[p] = given[p] if p in given else (1.0 - fixed) / len(rest)
    return out
