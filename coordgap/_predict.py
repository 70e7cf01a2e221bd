"""From counts to the chain, and from the chain to every predicted figure of a report.

Two halves, both pure (no I/O, no LangGraph, no OpenTelemetry):

- :func:`chain_from_counts` builds the absorbing chain (``coordgap._chain``) of a graph from
  what the ledger counted: a state per node, its reliability and its routers'; transitions
  with their routing rates per *completed* task of the source (a task whose node and
  routers succeeded), the handoff's reliability on each.
- :func:`predict` solves it: predicted end to end with its delta-method interval, the naive
  figure (handoffs and routers perfect), each component's ``if_perfect`` and share of the
  coordination gap, and the expected visits of a run in which nothing fails.

Parameters are named ``node:<name>``, ``handoff:<source> -> <target>`` and
``router:<name>``; :func:`param_key` builds them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ._chain import Chain, Diverged, Edge, Group, State
from ._stats import jeffreys, log_variance
from .semconv import END, ERROR_UNDELIVERED, START, UNKNOWN_TARGET
from .topology import handoff_name

if TYPE_CHECKING:
    from ._report import Report

__all__ = [
    "Param",
    "Prediction",
    "chain_from_counts",
    "flat_chain",
    "param_key",
    "predict",
]

_CHOICE = frozenset({"conditional", "command"})
_STATIC = frozenset({"edge", "join"})
SUB_START = "/" + START
SUB_END = "/" + END


def param_key(kind: str, name: str) -> str:
    """Return the chain's name for a component's reliability: ``node:analyze``, ...

    Example::

        >>> param_key("handoff", "a -> b")
        'handoff:a -> b'
    """
    return f"{kind}:{name}"


class Counted(Protocol):
    """What the chain is built from: a component with its counts (a draft or a report line)."""

    @property
    def kind(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def executions(self) -> int: ...

    @property
    def failures(self) -> int: ...

    @property
    def source(self) -> str | None: ...

    @property
    def target(self) -> str | None: ...

    @property
    def kinds(self) -> Mapping[str, int]: ...

    @property
    def error_types(self) -> Mapping[str, int]: ...


@dataclass(frozen=True, slots=True)
class Param:
    """One reliability the chain reads: its value and how uncertain the estimate is.

    ``var`` is the variance of the estimate of ``value`` (0 when given); ``u_base`` marks
    the routes that named no node: the chain reads ``(value - u_base) / (1 - u_base)``,
    the share of those routes that would have been valid.
    """

    key: str
    kind: str
    value: float
    var: float = 0.0
    coordination: bool = False
    u_base: float | None = None
    successes: float = 0.0
    n: float = 0.0
    """The counts behind a measured value (0: given)."""

    @classmethod
    def measured(
        cls, key: str, kind: str, successes: float, n: float, *, u_base: float | None = None
    ) -> Param:
        """Return the parameter of ``successes`` out of ``n`` (Jeffreys-smoothed variance)."""
        value = successes / n
        # Var(r̂) = r̂² · Var(log r̂): keeps a component with no failure yet uncertain.
        var = value * value * log_variance(successes, n)
        return cls(key, kind, value, var, kind != "node", u_base, successes, n)

    def smoothed(self) -> Param:
        """Return this parameter at its Jeffreys posterior mean (never exactly 0)."""
        if self.n <= 0:
            return self
        p = jeffreys(self.successes, self.n)
        var = p * p * log_variance(self.successes, self.n)
        return Param(
            self.key, self.kind, p, var, self.coordination, self.u_base, self.successes, self.n
        )

    def theta(self, value: float | None = None) -> float:
        """Return what the chain reads for ``value`` (default: this parameter's own)."""
        x = self.value if value is None else value
        if self.u_base is None:
            return x
        if self.u_base >= 1.0:
            return 1.0
        return min(1.0, max(0.0, (x - self.u_base) / (1.0 - self.u_base)))


@dataclass(frozen=True, slots=True)
class ChainBuild:
    """A chain built from counts, and what the report should say about it."""

    chain: Chain
    u_base: Mapping[str, float]
    notes: tuple[str, ...] = ()


# -- building the chain from counts ----------------------------------------------------


def chain_from_counts(
    components: Iterable[Counted],
    *,
    runs: int,
    containers: Iterable[str] = (),
    static: Iterable[tuple[str, str]] = (),
    router_sources: Mapping[str, str] | None = None,
    router_targets: Mapping[str, Mapping[str, int]] | None = None,
) -> ChainBuild:
    """Return the chain of a graph from its counts.

    Args:
        components: nodes, handoffs and routers with their counts. A handoff to
            ``__unknown__`` carries the raw counts of the invalid routes in ``kinds``.
        runs: finished runs (the routing base of ``__start__``).
        containers: subgraph container nodes; a container is worth its inner chain
            (``outer/__start__``), not its own reliability.
        static: declared static edges (``edge``/``join``): LangGraph writes them on every
            completed task, so their rate is 1, not an estimate (a shortfall is a run that
            raised elsewhere in the same step). Inside a subgraph the rate is measured: a
            node there may leave through ``Command.PARENT`` and write nothing.
        router_sources: router name -> source node (routers given in ``components`` use
            their ``source``).
    """
    comps = list(components)
    nodes = {c.name: c for c in comps if c.kind == "node" and c.executions > 0}
    routers = [c for c in comps if c.kind == "router" and c.executions > 0]
    handoffs = [c for c in comps if c.kind == "handoff" and c.executions > 0]
    container_set = set(containers)
    for h in handoffs:  # a subgraph shows itself by its inner entry
        src = h.source or ""
        if src.endswith(SUB_START):
            container_set.add(src[: -len(SUB_START)])
    static_set = set(static)
    notes: list[str] = []

    routers_at: dict[str, list[str]] = {}
    router_failures: dict[str, int] = {}
    for r in routers:
        src = r.source or (router_sources or {}).get(r.name, "")
        routers_at.setdefault(src, []).append(param_key("router", r.name))
        router_failures[src] = router_failures.get(src, 0) + r.failures

    def completed(state: str) -> float:
        if state == START:
            return float(runs)
        if state.endswith(SUB_START):
            outer = nodes.get(state[: -len(SUB_START)])
            if outer is not None:
                return float(outer.executions)
            return float(max((h.executions for h in handoffs if h.source == state), default=0))
        st = nodes.get(state)
        if st is None:
            return 0.0
        return float(max(0, st.executions - st.failures - router_failures.get(state, 0)))

    delivered: dict[str, int] = {}
    join_sources: dict[str, set[str]] = {}
    for h in handoffs:
        if h.target in nodes:
            if h.kinds.get("join"):
                join_sources.setdefault(h.target or "", set()).add(h.source or "")
                continue
            n = h.executions - h.error_types.get(ERROR_UNDELIVERED, 0)
            delivered[h.target or ""] = delivered.get(h.target or "", 0) + max(0, n)

    def power(source: str, target: str, kinds: Mapping[str, int]) -> float:
        # Executions of the target per transfer: behind a k-way join the k arrivals share
        # one execution (F^(1/k) each: F once in all). Without a join, LangGraph also runs a
        # target once for several writes in one step (a fan-in); a small shortfall is runs
        # that ended between the write and the target, not a fan-in.
        if kinds.get("join"):
            arity = len(join_sources.get(target, ()))
            return 1.0 / arity if arity > 1 else 1.0
        n = delivered.get(target, 0)
        st = nodes.get(target)
        if st is None or n <= 0:
            return 1.0
        share = st.executions / n
        return share if share < 0.75 else 1.0

    by_source: dict[str, list[Counted]] = {}
    for h in handoffs:
        by_source.setdefault(h.source or "", []).append(h)

    u_base: dict[str, float] = {}
    states: dict[str, State] = {}
    sources = {START, *nodes, *(s for s in by_source if s.endswith(SUB_START))}
    for s in sources:
        base = completed(s)
        groups: list[Group] = []
        static_edges: list[Edge] = []
        fixed_static = True
        choice_edges: list[Edge] = []
        send_edges: list[Edge] = []
        u_choice = u_send = 0.0
        u_param: str | None = None
        for h in by_source.get(s, ()):
            t = h.target or ""
            hp = param_key("handoff", handoff_name(s, t))
            kinds = dict(h.kinds) or {"edge": h.executions}
            if t == UNKNOWN_TARGET:
                n_choice = max(0, kinds.get("conditional", 0) - router_failures.get(s, 0))
                n_choice += kinds.get("command", 0) + kinds.get("edge", 0) + kinds.get("join", 0)
                n_send = kinds.get("send", 0)
                if base > 0 and (n_choice or n_send):
                    u_param = hp
                    u_choice, u_send = n_choice / base, n_send / base
                    total = sum(c.executions for c in by_source.get(s, ()) if c.target != t)
                    total += n_choice + n_send
                    u_base[hp] = 1.0 - (n_choice + n_send) / total if total else 0.0
                continue
            if base <= 0:
                continue
            pw = power(s, t, kinds)
            n_static = sum(v for k, v in kinds.items() if k in _STATIC)
            n_choice = sum(v for k, v in kinds.items() if k in _CHOICE)
            n_send = sum(v for k, v in kinds.items() if k not in _STATIC and k not in _CHOICE)
            if n_static:
                if (s, t) in static_set and "/" not in s:
                    static_edges.append(Edge(t, 1.0, (hp,), pw))
                else:
                    fixed_static = False
                    static_edges.append(Edge(t, min(1.0, n_static / base), (hp,), pw))
            if n_choice:
                choice_edges.append(Edge(t, n_choice / base, (hp,), pw))
            if n_send:
                send_edges.append(Edge(t, n_send / base, (hp,), pw))
        if static_edges:
            groups.append(Group("each", tuple(static_edges), fixed=fixed_static))
        if choice_edges or u_choice > 0:
            q = sum(e.rate for e in choice_edges) + u_choice
            if q <= 1.0 + 1e-9:
                groups.append(
                    Group(
                        "choice",
                        tuple(choice_edges),
                        u_param if u_choice > 0 else None,
                        u_choice,
                    )
                )
            else:
                # Several targets per task (a router returning a list, or a router and a
                # Command together): each target is then counted on its own.
                notes.append(
                    f"routes out of {s!r} name several targets per task ({q:.2f} on "
                    "average): each target is weighted on its own"
                )
                groups.append(
                    Group(
                        "each",
                        tuple(
                            Edge(e.target, min(1.0, e.rate), e.params, e.power)
                            for e in choice_edges
                        ),
                        u_param if u_choice > 0 else None,
                        min(1.0, u_choice),
                    )
                )
        if send_edges or u_send > 0:
            groups.append(Group("each", tuple(send_edges), u_param if u_send > 0 else None, u_send))
        params: list[str] = []
        calls: tuple[str, ...] = ()
        if s in nodes:
            inner = s + SUB_START
            if s in container_set and inner in by_source:
                calls = (inner,)  # the container is worth its inner chain
            elif s in container_set and any(n.startswith(s + "/") for n in nodes):
                pass  # no inner handoffs recorded: its inner nodes count on their own
            else:
                params.append(param_key("node", s))
            params.extend(routers_at.get(s, ()))
        states[s] = State(s, tuple(params), calls, tuple(groups), base)

    # Nodes that ran but received no delivered handoff (entered on resume, or counts with no
    # handoff data): attached to the start, weighted by executions per finished run.
    reached = _reachable(states)
    loose = [
        n
        for n in nodes
        if n not in reached and not any(n.startswith(c + "/") for c in container_set)
    ]
    loose += [
        n
        for n in nodes
        if n not in reached and any(n.startswith(c + "/") for c in container_set) and n not in loose
    ]
    if loose and runs > 0:
        start = states[START]
        extra = Group(
            "each",
            tuple(Edge(n, nodes[n].executions / runs) for n in sorted(loose)),
            fixed=True,
        )
        states[START] = State(START, start.params, start.calls, (*start.groups, extra), start.base)
        if any(h.source == START for h in handoffs):
            notes.append(
                f"{len(loose)} node(s) ran without a recorded handoff into them (e.g. resumed "
                f"after an interrupt): weighted by executions per run ({', '.join(sorted(loose))})"
            )
    return ChainBuild(Chain(START, states), u_base, tuple(notes))


def _reachable(states: Mapping[str, State]) -> set[str]:
    seen = {START}
    todo = [START]
    while todo:
        st = states.get(todo.pop())
        if st is None:
            continue
        nexts = [*st.calls, *(e.target for g in st.groups for e in g.edges)]
        for t in nexts:
            if t not in seen:
                seen.add(t)
                todo.append(t)
    return seen


def flat_chain(params: Iterable[str], visits: Mapping[str, float] | None = None) -> Chain:
    """Return a chain that is the plain product of ``params``, each to its ``visits`` (1).

    Used when nothing says how the components connect (no finished run, visits given to an
    audit, a report saved before it carried its chain): ``Π θ^v``, exact when every run
    visits each component exactly ``v`` times.
    """
    edges = []
    for p in params:
        v = 1.0 if visits is None else visits.get(p, 1.0)
        if v > 0:
            edges.append(Edge(END, v, (p,)))
    group = Group("power", tuple(edges), fixed=True)
    return Chain(START, {START: State(START, groups=(group,) if edges else ())})


# -- solving: every predicted figure ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prediction:
    """Every figure the chain gives a report."""

    predicted: float | None
    predicted_low: float = 0.0
    predicted_high: float = 1.0
    naive: float | None = None
    naive_low: float = 0.0
    naive_high: float = 1.0
    if_perfect: Mapping[str, float] = field(default_factory=dict)
    gap_share: Mapping[str, float] = field(default_factory=dict)
    state_visits: Mapping[str, float] | None = None
    exact: bool = True


def predict(
    chain: Chain, params: Mapping[str, Param], z: float, *, given: bool = False
) -> Prediction:
    """Return the predicted figures of ``chain`` with reliabilities ``params``.

    Args:
        chain: the graph's chain.
        params: every measured (or given) reliability, by parameter key.
        z: the normal quantile of the report's confidence.
        given: the reliabilities are assumptions (an audit): no interval.
    """
    theta = {k: p.theta() for k, p in params.items()}
    sol = chain.solve(theta)
    value = sol.value(chain.start)
    coord = [k for k, p in params.items() if p.coordination]
    naive_theta = dict(theta)
    for k in coord:
        naive_theta[k] = 1.0
    naive_sol = chain.solve(naive_theta)
    naive = naive_sol.value(chain.start)
    grad, rate_grad, _ = chain.gradient(theta, sol)
    naive_grad, naive_rate_grad, _ = chain.gradient(naive_theta, naive_sol)

    if given:
        low, high = value, value
        nlow, nhigh = naive, naive
    else:
        low, high = _interval(chain, params, theta, value, grad, rate_grad, z)
        nlow, nhigh = _interval(
            chain,
            {k: p for k, p in params.items() if not p.coordination},
            naive_theta,
            naive,
            naive_grad,
            naive_rate_grad,
            z,
        )

    used = chain.params()
    if_perfect: dict[str, float] = {}
    for k in params:
        if k not in used:
            continue
        if theta[k] >= 1.0:
            if_perfect[k] = value
            continue
        if chain.affine_in(k):
            if_perfect[k] = min(1.0, value + (1.0 - theta[k]) * grad.get(k, 0.0))
        else:
            if_perfect[k] = min(1.0, chain.solve({**theta, k: 1.0}).value(chain.start))

    gap = naive - value
    losses: dict[str, float] = {}
    for k in coord:
        if k not in used:
            continue
        if theta[k] >= 1.0:
            losses[k] = 0.0
            continue
        if chain.affine_in(k):
            alone = naive + (theta[k] - 1.0) * naive_grad.get(k, 0.0)
        else:
            alone = chain.solve({**naive_theta, k: theta[k]}).value(chain.start)
        if alone <= 0.0 or naive <= 0.0:
            losses[k] = math.inf
        else:
            losses[k] = max(0.0, math.log(naive) - math.log(alone))
    shares: dict[str, float] = {}
    infinite = [k for k, x in losses.items() if x == math.inf]
    if infinite:
        shares = {k: (gap / len(infinite) if k in infinite else 0.0) for k in losses}
    else:
        total = sum(losses.values())
        shares = {k: (gap * x / total if total > 0 else 0.0) + 0.0 for k, x in losses.items()}

    try:
        visits: dict[str, float] | None = chain.visits()
    except Diverged:
        visits = None
    return Prediction(
        predicted=value,
        predicted_low=low,
        predicted_high=high,
        naive=naive,
        naive_low=nlow,
        naive_high=nhigh,
        if_perfect=if_perfect,
        gap_share=shares,
        state_visits=visits,
        exact=sol.exact,
    )


def log_variance_of(
    chain: Chain,
    params: Mapping[str, Param],
    value: float,
    grad: Mapping[str, float],
    rate_grad: Mapping[tuple[str, int, int], float],
) -> float:
    """Return Var(log F(start)) by the delta method: reliabilities and routing rates.

    Reliabilities are independent binomial estimates (``Param.var``). The routing rates of
    a ``choice`` group are one multinomial draw per completed task of the source,
    ``Cov(q̂) = (diag q - q qᵀ)/n``; those of an ``each`` group are binomial (a rate above 1,
    a ``Send`` fan-out, Poisson: ``m/n``). Rates that are known (static edges, given
    probabilities) have no variance.
    """
    if value <= 0.0:
        return 0.0
    var = 0.0
    for k, p in params.items():
        d = grad.get(k)
        if d and p.var > 0.0 and p.u_base is None:
            var += d * d * p.var
    for name, st in chain.states.items():
        n = st.base
        if n <= 0:
            continue
        for gi, g in enumerate(st.groups):
            if g.fixed:
                continue
            cats = [(ei, e.rate) for ei, e in enumerate(g.edges)]
            if g.u_param is not None:
                cats.append((-1, g.u_rate))
            if g.kind == "choice":
                m1 = m2 = 0.0
                for ei, q in cats:
                    d = rate_grad.get((name, gi, ei), 0.0)
                    m1 += d * q
                    m2 += d * d * q
                var += max(0.0, m2 - m1 * m1) / n
            else:
                for ei, m in cats:
                    d = rate_grad.get((name, gi, ei), 0.0)
                    var += d * d * (m * (1.0 - m) if m <= 1.0 else m) / n
    return var / (value * value)


def _interval(
    chain: Chain,
    params: Mapping[str, Param],
    theta: Mapping[str, float],
    value: float,
    grad: Mapping[str, float],
    rate_grad: Mapping[tuple[str, int, int], float],
    z: float,
) -> tuple[float, float]:
    if value > 0.0:
        sd = math.sqrt(log_variance_of(chain, params, value, grad, rate_grad))
        return max(0.0, value * math.exp(-z * sd)), min(1.0, value * math.exp(z * sd))
    # A component that never succeeded (or a loop never left): the point is 0; the upper
    # bound comes from the same chain with every measured reliability Jeffreys-smoothed.
    smooth = {k: p.smoothed() for k, p in params.items()}
    th = {k: p.theta() for k, p in smooth.items()}
    for k in theta:
        th.setdefault(k, theta[k])
    sol = chain.solve(th)
    v = sol.value(chain.start)
    if v <= 0.0:
        return 0.0, 1.0
    g, rg, _ = chain.gradient(th, sol)
    sd = math.sqrt(log_variance_of(chain, smooth, v, g, rg))
    return 0.0, min(1.0, v * math.exp(z * sd))


# -- a report's chain and parameters (what-if and planning re-solve them) -------------------


def chain_of(rep: Report) -> Chain:
    """Return the chain of a report, rebuilding it for a report saved before it carried one.

    A ``coordgap.report/1`` file has counts and visits but no chain: a ledger report's
    chain is rebuilt from its counts, an audit's is the product of ``r^visits``.
    """
    if rep.chain is not None:
        return rep.chain
    comps = list(rep.components)
    if rep.basis == "ledger" and rep.end_to_end.finished > 0:
        return chain_from_counts(comps, runs=rep.end_to_end.finished).chain
    return flat_chain(
        {param_key(c.kind, c.name): c.visits for c in comps if c.in_product}.keys(),
        {param_key(c.kind, c.name): c.visits for c in comps if c.in_product},
    )


def params_of(rep: Report) -> dict[str, Param]:
    """Return the chain parameters of a report's components (counts, or given values)."""
    out: dict[str, Param] = {}
    for c in rep.components:
        key = param_key(c.kind, c.name)
        r = c.reliability
        if r.value is None:
            continue
        if r.method == "given" or c.executions <= 0:
            out[key] = Param(key, c.kind, r.value, 0.0, c.kind != "node")
        elif c.target == UNKNOWN_TARGET:
            out[key] = Param(key, c.kind, r.value, 0.0, True, r.value)
        else:
            out[key] = Param.measured(key, c.kind, c.executions - c.failures, c.executions)
    return out
