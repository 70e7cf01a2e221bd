"""The absorbing Markov chain of a graph (Cheung's user-oriented reliability model).

R. C. Cheung, "A User-Oriented Software Reliability Model", IEEE TSE SE-6(2), 1980:
components are the states of an absorbing Markov chain, transitions carry routing
probabilities, every state and every transition multiplies its reliability, and the
system's reliability is the probability of reaching the exit with no failure.

Here a *state* is a node (or ``__start__``, or a subgraph's ``outer/__start__``). Its value
``F(s)`` is the probability that everything from the moment ``s`` is entered -- ``s`` itself,
its routers, its handoffs and every state they lead to -- succeeds::

    F(s) = Π θ(state params) · Π F(calls) · Π_g G_g
    choice group  G = Σ_e q_e·y_e · (1 + u·θ_u/Q) + (1 - Q - u)⁺      (one target per task)
    each group    G = Π_e b(m_e, y_e) · b(u, θ_u)                     (every edge on its own)
    power group   G = Π_e y_e^(m_e)                  (given visits: an audit's ``visits=``)
    y_e = Π θ(edge params) · F(target)^κ_e,   b(m, y) = 1 - m + m·y (m ≤ 1) or y^m (m > 1)

``θ`` are reliabilities (node, handoff, router; ``1`` where not modelled), ``q``/``m`` routing
rates per completed task of ``s``, ``κ`` executions of the target per transfer (``1/k`` behind
a ``k``-way join), ``u`` the rate of routes that named no node with ``θ_u`` the share of them
that would have reached a real target (0 as measured, 1 when made perfect). A target that is
not a state (``__end__``, ``outer/__end__``) is worth 1. The missing mass of a group
(``(1 - Q - u)⁺``, or ``1 - m`` in ``b``) is a task that handed off to nobody in this graph
(e.g. it left a subgraph through ``Command.PARENT``): it reached the exit.

The equations are solved exactly, one strongly connected component at a time from the
exit backwards (Tarjan, iterative): a state outside a cycle is one evaluation; a cycle whose
equations are affine in its own values (every loop of a single-token graph) is a small
dense linear system (Gaussian elimination); only a cycle through a fan-out is iterated
(monotone fixed-point iteration from 0, which converges to the least solution, the
probability). The gradient of ``F(start)`` with respect to every reliability and routing
rate comes from one adjoint solve of the same systems, transposed.

Pure Python and the standard library: no LangGraph, no OpenTelemetry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

__all__ = [
    "Chain",
    "Diverged",
    "Edge",
    "Group",
    "Solution",
    "State",
    "gauss",
    "sccs_in_topological_order",
    "solve_visits",
]

GroupKind: TypeAlias = Literal["choice", "each", "power"]
RateKey: TypeAlias = tuple[str, int, int]
"""A routing rate: (state, group index, edge index); edge index -1 is the group's ``u``."""

_KLEENE_SWEEPS = 200_000
_TOL = 1e-15


@dataclass(frozen=True, slots=True)
class Edge:
    """A transition: ``rate`` transfers per completed task, to ``target``, through ``params``."""

    target: str
    rate: float
    params: tuple[str, ...] = ()
    power: float = 1.0
    """``κ``: executions of the target per transfer (``1/k`` behind a ``k``-way join)."""


@dataclass(frozen=True, slots=True)
class Group:
    """Transitions that fire together: ``choice`` (one of them) or ``each`` (independently).

    ``power`` weighs each edge ``y^m`` for ``m`` given visits (no randomness in them).
    """

    kind: GroupKind
    edges: tuple[Edge, ...]
    u_param: str | None = None
    """The parameter of the routes that named no node (their share that would be valid)."""
    u_rate: float = 0.0
    """Routes per completed task that named no node."""
    fixed: bool = False
    """The rates are known (a static edge, a given probability), not estimated: no variance."""


@dataclass(frozen=True, slots=True)
class State:
    """A node of the chain, with the reliabilities it multiplies and its transitions."""

    name: str
    params: tuple[str, ...] = ()
    calls: tuple[str, ...] = ()
    """States whose value multiplies this one (a subgraph container calls ``outer/__start__``)."""
    groups: tuple[Group, ...] = ()
    base: float = 0.0
    """Completed tasks the routing rates were counted on (their sample size; 0: given)."""


class Diverged(Exception):
    """The visit equations have no finite, non-negative solution (a loop that never exits)."""


@dataclass(frozen=True, slots=True)
class Solution:
    """The value ``F`` of every state, and whether every cycle was solved exactly."""

    values: Mapping[str, float]
    exact: bool = True

    def value(self, state: str) -> float:
        """Return ``F(state)`` (1 for a state not in the chain: an exit)."""
        return self.values.get(state, 1.0)


@dataclass(frozen=True)
class Chain:
    """The absorbing chain of a graph; see the module docstring for the equations.

    Example::

        chain = Chain("__start__", {
            "__start__": State("__start__", groups=(Group("each", (Edge("a", 1.0),), fixed=True),)),
            "a": State("a", params=("node:a",)),
        })
        chain.solve({"node:a": 0.9}).value("__start__")   # 0.9
    """

    start: str
    states: Mapping[str, State]
    _plan: _Plan = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_plan", _Plan.of(self))

    # -- solving -------------------------------------------------------------------------

    def solve(self, theta: Mapping[str, float]) -> Solution:
        """Return ``F`` for every state with reliabilities ``theta`` (missing params: 1)."""
        plan = self._plan
        values: dict[str, float] = {}
        exact = True

        def th(p: str) -> float:
            return theta.get(p, 1.0)

        for scc, cyclic, affine in zip(plan.order, plan.cyclic, plan.affine, strict=True):
            if not cyclic:
                s = scc[0]
                values[s] = _phi(self.states[s], _reader(values), th, _rate_reader(self.states[s]))
                continue
            solved = self._solve_affine(scc, values, th) if affine else None
            if solved is None:
                solved, converged = self._solve_iterated(scc, values, th)
                exact = exact and converged
            values.update(solved)
        return Solution(values, exact)

    def _solve_affine(
        self, scc: Sequence[str], known: Mapping[str, float], th: Callable[[str], float]
    ) -> dict[str, float] | None:
        # Φ is affine in the cycle's own values: read its coefficients off evaluations
        # (all zero, then one unit vector at a time) and solve (I - A) F = c exactly.
        k = len(scc)
        index = {s: i for i, s in enumerate(scc)}
        trial: dict[str, float] = dict.fromkeys(scc, 0.0)
        read = _reader(known, trial)
        c = [_phi(self.states[s], read, th, _rate_reader(self.states[s])) for s in scc]
        a = [[1.0 if i == j else 0.0 for j in range(k)] for i in range(k)]
        for s in scc:
            for t in self._plan.deps[s]:
                if t not in index:
                    continue
                trial[t] = 1.0
                coef = _phi(self.states[s], read, th, _rate_reader(self.states[s])) - c[index[s]]
                trial[t] = 0.0
                a[index[s]][index[t]] -= coef
        x = gauss(a, c)
        if x is None or any(not math.isfinite(v) or v < -1e-9 or v > 1.0 + 1e-9 for v in x):
            return None
        return {s: _clip(v) for s, v in zip(scc, x, strict=True)}

    def _solve_iterated(
        self, scc: Sequence[str], known: Mapping[str, float], th: Callable[[str], float]
    ) -> tuple[dict[str, float], bool]:
        # Monotone from 0: the iterates increase to the least fixed point, which is the
        # probability (a loop that never exits stays at 0 instead of blowing up).
        trial: dict[str, float] = dict.fromkeys(scc, 0.0)
        read = _reader(known, trial)
        for _ in range(_KLEENE_SWEEPS):
            delta = 0.0
            for s in scc:
                v = _phi(self.states[s], read, th, _rate_reader(self.states[s]))
                delta = max(delta, abs(v - trial[s]))
                trial[s] = v
            if delta <= _TOL:
                return {s: _clip(v) for s, v in trial.items()}, True
        return trial, False

    # -- the gradient ------------------------------------------------------------------------

    def gradient(
        self, theta: Mapping[str, float], solution: Solution | None = None
    ) -> tuple[dict[str, float], dict[RateKey, float], dict[str, float]]:
        """Return ∂F(start)/∂θ per param, ∂F(start)/∂rate per routing rate, and the adjoint.

        The adjoint ``λ_s = ∂F(start)/∂Φ_s`` solves ``λ = e_start + Jᵀλ`` (``J`` the
        Jacobian of the equations in ``F``), SCC by SCC from the start; each gradient is
        then ``Σ_s λ_s · ∂Φ_s/∂x``, with the local partials taken exactly (forward-mode
        dual numbers over one evaluation of each state).
        """
        sol = solution if solution is not None else self.solve(theta)
        plan = self._plan
        jac: dict[str, dict[str, float]] = {}
        dparam: dict[str, dict[str, float]] = {}
        drate: dict[str, dict[RateKey, float]] = {}
        for name, st in self.states.items():
            jac[name], dparam[name], drate[name] = _local_partials(st, sol, theta, self.states)
        lam: dict[str, float] = {}
        incoming: dict[str, float] = {}
        for scc, cyclic in zip(reversed(plan.order), reversed(plan.cyclic), strict=True):
            rhs = [(1.0 if s == self.start else 0.0) + incoming.get(s, 0.0) for s in scc]
            if not cyclic:
                lam[scc[0]] = rhs[0]
            else:
                k = len(scc)
                index = {s: i for i, s in enumerate(scc)}
                a = [[1.0 if i == j else 0.0 for j in range(k)] for i in range(k)]
                for s in scc:
                    for t, d in jac[s].items():
                        if t in index:
                            a[index[t]][index[s]] -= d
                x = gauss(a, rhs)
                if x is None:  # a critical cycle: no finite sensitivity; say none
                    x = [0.0] * k
                lam.update(zip(scc, x, strict=True))
            for s in scc:
                ls = lam[s]
                if ls:
                    for t, d in jac[s].items():
                        if t not in scc:
                            incoming[t] = incoming.get(t, 0.0) + ls * d
        gp: dict[str, float] = {}
        gr: dict[RateKey, float] = {}
        for s, ls in lam.items():
            if not ls:
                continue
            for param, d in dparam[s].items():
                gp[param] = gp.get(param, 0.0) + ls * d
            for key, d in drate[s].items():
                gr[key] = gr.get(key, 0.0) + ls * d
        return gp, gr, lam

    # -- structure ------------------------------------------------------------------------

    def affine_in(self, param: str) -> bool:
        """Return True when ``F(start)`` is an affine function of ``param`` alone.

        Then ``F(start)`` with ``param`` at ``x`` is ``F + (x - θ)·∂F/∂θ`` exactly, which saves
        a solve per component on large graphs: true on single-token graphs (no fan-out, no
        join, no subgraph) for a parameter used once, outside any cycle.
        """
        plan = self._plan
        where = plan.occurrences.get(param, ())
        return plan.single_token and len(where) == 1 and where[0] not in plan.cyclic_states

    def visits(self) -> dict[str, float]:
        """Return the expected visits per run of every state when nothing fails.

        Raises:
            Diverged: the routing rates describe a loop that never exits.
        """
        direct = {self.start: 1.0}
        edges: list[tuple[str, str, float]] = []
        for name, st in self.states.items():
            for c in st.calls:
                if c in self.states:
                    edges.append((name, c, 1.0))
            for g in st.groups:
                for e in g.edges:
                    if e.target in self.states:
                        edges.append((name, e.target, e.rate * e.power))
        return solve_visits(direct, edges)

    def params(self) -> set[str]:
        """Return every parameter the chain reads."""
        return set(self._plan.occurrences)

    def rate(self, key: RateKey) -> float:
        """Return the routing rate at ``key`` (state, group, edge; edge -1 is ``u``)."""
        g = self.states[key[0]].groups[key[1]]
        return g.u_rate if key[2] < 0 else g.edges[key[2]].rate

    # -- serialisation ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict; :meth:`from_dict` reads it back."""
        return {
            "start": self.start,
            "states": [
                {
                    "name": st.name,
                    "params": list(st.params),
                    "calls": list(st.calls),
                    "base": st.base,
                    "groups": [
                        {
                            "kind": g.kind,
                            "fixed": g.fixed,
                            "u": None if g.u_param is None else [g.u_param, g.u_rate],
                            "edges": [[e.target, e.rate, list(e.params), e.power] for e in g.edges],
                        }
                        for g in st.groups
                    ],
                }
                for st in self.states.values()
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Chain:
        """Rebuild a chain from :meth:`to_dict` output."""
        states: dict[str, State] = {}
        for s in data["states"]:
            groups = []
            for g in s["groups"]:
                kind = g["kind"]
                if kind not in ("choice", "each", "power"):
                    raise ValueError(f"unknown group kind {kind!r}")
                u = g.get("u")
                groups.append(
                    Group(
                        kind,
                        tuple(
                            Edge(str(t), float(r), tuple(str(p) for p in ps), float(k))
                            for t, r, ps, k in g["edges"]
                        ),
                        None if u is None else str(u[0]),
                        0.0 if u is None else float(u[1]),
                        bool(g.get("fixed", False)),
                    )
                )
            name = str(s["name"])
            states[name] = State(
                name,
                tuple(str(p) for p in s.get("params", ())),
                tuple(str(c) for c in s.get("calls", ())),
                tuple(groups),
                float(s.get("base", 0.0)),
            )
        return cls(str(data["start"]), states)


# -- evaluation ---------------------------------------------------------------------------------


def _clip(v: float) -> float:
    # Elimination leaves ~1e-15 of rounding: a probability that is 1 must print as 1.
    if v >= 1.0 - 1e-12:
        return 1.0
    return 0.0 if v <= 1e-15 else v


def _reader(
    known: Mapping[str, float], trial: Mapping[str, float] | None = None
) -> Callable[[str], float]:
    if trial is None:
        return lambda s: known.get(s, 1.0)

    def read(s: str) -> float:
        v = trial.get(s)
        return known.get(s, 1.0) if v is None else v

    return read


def _rate_reader(st: State) -> Callable[[int, int], float]:
    groups = st.groups

    def rate(g: int, e: int) -> float:
        grp = groups[g]
        return grp.u_rate if e < 0 else grp.edges[e].rate

    return rate


def _phi(
    st: State,
    f: Callable[[str], Any],
    th: Callable[[str], Any],
    rate: Callable[[int, int], Any],
) -> Any:
    """Φ_s: works on floats and on dual numbers alike (same operators)."""
    val: Any = 1.0
    for p in st.params:
        val = val * th(p)
    for c in st.calls:
        val = val * f(c)
    for gi, g in enumerate(st.groups):
        val = val * _group(g, gi, f, th, rate)
    return val


def _y(e: Edge, f: Callable[[str], Any], th: Callable[[str], Any]) -> Any:
    y: Any = 1.0
    for p in e.params:
        y = y * th(p)
    x = f(e.target)
    if e.power != 1.0:
        x = _power(x, e.power)
    return y * x


def _group(
    g: Group,
    gi: int,
    f: Callable[[str], Any],
    th: Callable[[str], Any],
    rate: Callable[[int, int], Any],
) -> Any:
    theta_u: Any = th(g.u_param) if g.u_param is not None else 0.0
    u: Any = rate(gi, -1) if g.u_param is not None else 0.0
    if g.kind == "choice":
        s: Any = 0.0
        q: Any = 0.0
        for ei, e in enumerate(g.edges):
            r = rate(gi, ei)
            s = s + r * _y(e, f, th)
            q = q + r
        rest = 1.0 - q - u
        if _value(rest) <= 0.0:
            rest = 0.0
        if _value(q) > 0.0:
            return s * (1.0 + u * theta_u / q) + rest
        return u * theta_u + rest
    out: Any = 1.0
    if g.kind == "power":
        for ei, e in enumerate(g.edges):
            out = out * _power(_y(e, f, th), rate(gi, ei))
        return out
    for ei, e in enumerate(g.edges):
        out = out * _bernoulli(rate(gi, ei), _y(e, f, th))
    if g.u_param is not None:
        out = out * _bernoulli(u, theta_u)
    return out


def _bernoulli(m: Any, y: Any) -> Any:
    """b(m, y): an edge that fires m times per task on average (independently of the rest)."""
    if _value(m) <= 1.0:
        return 1.0 - m + m * y
    # More than once per task (Send): y^m, the mean number of copies (Jensen: E[y^K] ≥ y^E[K]).
    return _power(y, m)


def _power(x: Any, m: Any) -> Any:
    if isinstance(x, _Dual) or isinstance(m, _Dual):
        return _Dual.lift(x) ** m
    if x <= 0.0:
        return 0.0
    return float(x**m)


def _value(x: Any) -> float:
    return x.v if isinstance(x, _Dual) else float(x)


class _Dual:
    """A value with its partial derivatives (forward mode), for the local Jacobian."""

    __slots__ = ("d", "v")

    def __init__(self, v: float, d: dict[Hashable, float]) -> None:
        self.v = v
        self.d = d

    @staticmethod
    def lift(x: Any) -> _Dual:
        if isinstance(x, _Dual):
            return x
        return _Dual(float(x), {})

    def __add__(self, o: Any) -> _Dual:
        if isinstance(o, _Dual):
            d = dict(self.d)
            for k, b in o.d.items():
                d[k] = d.get(k, 0.0) + b
            return _Dual(self.v + o.v, d)
        return _Dual(self.v + o, self.d)

    __radd__ = __add__

    def __neg__(self) -> _Dual:
        return _Dual(-self.v, {k: -a for k, a in self.d.items()})

    def __sub__(self, o: Any) -> _Dual:
        return self + _Dual.lift(o).__neg__()

    def __rsub__(self, o: Any) -> _Dual:
        return self.__neg__().__add__(o)

    def __mul__(self, o: Any) -> _Dual:
        if isinstance(o, _Dual):
            d = {k: a * o.v for k, a in self.d.items()}
            for k, b in o.d.items():
                d[k] = d.get(k, 0.0) + b * self.v
            return _Dual(self.v * o.v, d)
        return _Dual(self.v * o, {k: a * o for k, a in self.d.items()})

    __rmul__ = __mul__

    def __truediv__(self, o: Any) -> _Dual:
        if isinstance(o, _Dual):
            return self * _Dual(1.0 / o.v, {k: -b / (o.v * o.v) for k, b in o.d.items()})
        return self * (1.0 / float(o))

    def __rtruediv__(self, o: Any) -> _Dual:
        return _Dual.lift(o) / self

    def __pow__(self, m: Any) -> _Dual:
        x = self.v
        if isinstance(m, _Dual):
            mv = m.v
            if x <= 0.0:
                return _Dual(0.0, {})
            val = x**mv
            d = {k: a * mv * x ** (mv - 1.0) for k, a in self.d.items()}
            for k, b in m.d.items():
                d[k] = d.get(k, 0.0) + b * val * math.log(x)
            return _Dual(val, d)
        if x <= 0.0:
            # x^m at 0: the derivative is 0 for m > 1 and unbounded below 1; say 0.
            return _Dual(0.0, {k: (a if m == 1.0 else 0.0) for k, a in self.d.items()})
        return _Dual(x**m, {k: a * m * x ** (m - 1.0) for k, a in self.d.items()})


def _local_partials(
    st: State, sol: Solution, theta: Mapping[str, float], states: Mapping[str, State]
) -> tuple[dict[str, float], dict[str, float], dict[RateKey, float]]:
    """∂Φ_s/∂F_t, ∂Φ_s/∂θ_p and ∂Φ_s/∂rate for one state, from one dual evaluation."""

    def f(name: str) -> Any:
        if name in states:
            return _Dual(sol.value(name), {("F", name): 1.0})
        return 1.0

    def th(p: str) -> Any:
        return _Dual(theta.get(p, 1.0), {("p", p): 1.0})

    def rate(g: int, e: int) -> Any:
        grp = st.groups[g]
        v = grp.u_rate if e < 0 else grp.edges[e].rate
        return _Dual(v, {("r", g, e): 1.0})

    out = _Dual.lift(_phi(st, f, th, rate))
    jac: dict[str, float] = {}
    dp: dict[str, float] = {}
    dr: dict[RateKey, float] = {}
    for key, d in out.d.items():
        assert isinstance(key, tuple)
        if key[0] == "F":
            jac[key[1]] = d
        elif key[0] == "p":
            dp[key[1]] = d
        else:
            dr[(st.name, key[1], key[2])] = d
    return jac, dp, dr


# -- structure: the order of solving -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plan:
    order: list[list[str]]
    """Strongly connected components, exits first (the order of solving)."""
    cyclic: list[bool]
    affine: list[bool]
    deps: dict[str, list[str]]
    cyclic_states: frozenset[str]
    single_token: bool
    occurrences: dict[str, tuple[str, ...]]
    """Per parameter, the states using it (once per factor it appears in)."""

    @classmethod
    def of(cls, chain: Chain) -> _Plan:
        states = chain.states
        deps: dict[str, list[str]] = {}
        for name, st in states.items():
            ds: list[str] = []
            for c in st.calls:
                if c in states and c not in ds:
                    ds.append(c)
            for g in st.groups:
                for e in g.edges:
                    if e.target in states and e.target not in ds:
                        ds.append(e.target)
            deps[name] = ds
        succ = {n: [(d, 1.0) for d in ds] for n, ds in deps.items()}
        order = sccs_in_topological_order(list(states), succ)
        order.reverse()  # exits first
        cyclic = [len(s) > 1 or s[0] in deps.get(s[0], ()) for s in order]
        affine = [
            (not c) or all(_affine_factors(states[s], set(scc)) <= 1 for s in scc)
            for scc, c in zip(order, cyclic, strict=True)
        ]
        cyclic_states = frozenset(s for scc, c in zip(order, cyclic, strict=True) if c for s in scc)
        every = set(states)
        single = all(_affine_factors(st, every) <= 1 for st in states.values())
        # One entry per factor a parameter multiplies; a power (an edge firing more than
        # once per task) counts twice, so that such a parameter is never taken as affine.
        occ: dict[str, list[str]] = {}
        for name, st in states.items():
            for p in st.params:
                occ.setdefault(p, []).append(name)
            for g in st.groups:
                if g.kind == "choice":
                    used = {p for e in g.edges for p in e.params}
                    if g.u_param is not None:
                        used.add(g.u_param)
                    for p in used:
                        occ.setdefault(p, []).append(name)
                    continue
                for e in g.edges:
                    nonlinear = e.rate > 1.0 or (g.kind == "power" and e.rate != 1.0)
                    for p in e.params:
                        occ.setdefault(p, []).extend([name] * (2 if nonlinear else 1))
                if g.u_param is not None:
                    occ.setdefault(g.u_param, []).extend([name] * (2 if g.u_rate > 1.0 else 1))
        return cls(
            order=order,
            cyclic=cyclic,
            affine=affine,
            deps=deps,
            cyclic_states=cyclic_states,
            single_token=single,
            occurrences={p: tuple(v) for p, v in occ.items()},
        )


def _affine_factors(st: State, within: set[str]) -> int:
    """How many factors of Φ_s depend on ``within``; > 1 (or a power) means not affine."""
    n = sum(1 for c in st.calls if c in within)
    for g in st.groups:
        hits = [e for e in g.edges if e.target in within]
        if not hits:
            continue
        if any(e.power != 1.0 for e in hits):
            return 99
        if g.kind == "choice":
            n += 1
        else:
            if any(e.rate > 1.0 or (g.kind == "power" and e.rate != 1.0) for e in hits):
                return 99
            n += len(hits)
    return n


# -- linear algebra and the visit equations ----------------------------------------------------


def gauss(a: list[list[float]], b: list[float]) -> list[float] | None:
    """Return x with a·x = b (partial pivoting), or None when ``a`` is singular."""
    k = len(b)
    m = [[*row, b[i]] for i, row in enumerate(a)]
    for col in range(k):
        piv = max(range(col, k), key=lambda r: abs(m[r][col]))
        if abs(m[piv][col]) < 1e-12:
            return None
        m[col], m[piv] = m[piv], m[col]
        for r in range(col + 1, k):
            f = m[r][col] / m[col][col]
            if f:
                for c in range(col, k + 1):
                    m[r][c] -= f * m[col][c]
    x = [0.0] * k
    for r in range(k - 1, -1, -1):
        x[r] = (m[r][k] - sum(m[r][c] * x[c] for c in range(r + 1, k))) / m[r][r]
    return x


def solve_visits(
    direct: Mapping[str, float], edges: Iterable[tuple[str, str, float]]
) -> dict[str, float]:
    """Solve v_t = direct_t + Σ_s v_s · w(s, t) exactly, strongly connected part by part.

    A graph without cycles is solved in one pass in topological order; each
    cycle (a strongly connected component) is a small dense linear system.
    Nothing iterates to convergence, so a loop that never exits is reported
    (:class:`Diverged`), never spun on.

    Example::

        >>> solve_visits({"a": 1.0}, [("a", "b", 1.0), ("b", "a", 0.5)])["a"]
        2.0
    """
    succ: dict[str, list[tuple[str, float]]] = {}
    pred: dict[str, list[tuple[str, float]]] = {}
    nodes: dict[str, None] = dict.fromkeys(direct)
    for s, t, w in edges:
        if w == 0:
            continue
        nodes.setdefault(s)
        nodes.setdefault(t)
        succ.setdefault(s, []).append((t, w))
        pred.setdefault(t, []).append((s, w))
    v: dict[str, float] = {}
    for scc in sccs_in_topological_order(list(nodes), succ):
        members = set(scc)
        inflow = []
        for t in scc:
            x = direct.get(t, 0.0)
            for s, w in pred.get(t, ()):
                if s not in members:
                    x += v.get(s, 0.0) * w
            inflow.append(x)
        cyclic = len(scc) > 1 or any(t == scc[0] for t, _ in succ.get(scc[0], ()))
        if not cyclic:
            v[scc[0]] = inflow[0]
            continue
        index = {name: i for i, name in enumerate(scc)}
        k = len(scc)
        # (I - W^T) v = inflow, restricted to this component.
        a = [[1.0 if i == j else 0.0 for j in range(k)] for i in range(k)]
        for s in scc:
            for t, w in succ.get(s, ()):
                if t in index:
                    a[index[t]][index[s]] -= w
        solved = gauss(a, inflow)
        if solved is None or any(x < -1e-9 or x > 1e9 for x in solved):
            raise Diverged(scc)
        for name, x in zip(scc, solved, strict=True):
            v[name] = max(0.0, x)
    return v


def sccs_in_topological_order(
    nodes: list[str], succ: Mapping[str, Sequence[tuple[str, float]]]
) -> list[list[str]]:
    """Tarjan's algorithm, iterative (deep graphs must not hit the recursion limit).

    Returns the strongly connected components, sources first.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = succ.get(node, ())
            recursed = False
            while i < len(children):
                child = children[i][0]
                i += 1
                if child not in index:
                    work.append((node, i))
                    work.append((child, 0))
                    recursed = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if recursed:
                continue
            if low[node] == index[node]:
                scc = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    scc.append(w)
                    if w == node:
                        break
                out.append(scc)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    out.reverse()  # Tarjan emits sinks first
    return out
