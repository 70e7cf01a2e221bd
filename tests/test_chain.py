"""The absorbing chain (coordgap._chain) and the figures solved on it (coordgap._predict).

Hand-derived values on small graphs, and hypothesis properties on random chains: the
solution satisfies its equations, the adjoint gradient is the derivative, the shortcut for
``if_perfect`` equals a fresh solve, naive ≥ predicted, the gap shares add up to the gap.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordgap._chain import Chain, Edge, Group, State
from coordgap._ledger import HandoffStats, LedgerSnapshot, NodeStats, RouterStats, RunStats
from coordgap._predict import Param, chain_from_counts, flat_chain, predict
from coordgap._report import report
from coordgap.topology import DeclaredHandoff, Topology

S, E = "__start__", "__end__"
PROPS = settings(max_examples=80, deadline=None, derandomize=True)


def start_to(target: str) -> State:
    return State(S, groups=(Group("each", (Edge(target, 1.0),), fixed=True),))


def measured(key: str, value: float, n: int = 1000, coordination: bool = False) -> Param:
    s = round(value * n)
    return Param.measured(key, "handoff" if coordination else "node", s, n)


# -- hand-derived values -------------------------------------------------------------------


def test_a_linear_chain_is_the_plain_product() -> None:
    chain = Chain(
        S,
        {
            S: start_to("a"),
            "a": State("a", ("n:a",), groups=(Group("each", (Edge("b", 1.0, ("h:ab",)),)),)),
            "b": State("b", ("n:b", "r:b"), groups=(Group("choice", (Edge(E, 1.0),)),)),
        },
    )
    theta = {"n:a": 0.9, "h:ab": 0.97, "n:b": 0.8, "r:b": 0.95}
    assert chain.solve(theta).value(S) == pytest.approx(0.9 * 0.97 * 0.8 * 0.95)
    assert chain.visits() == {S: 1.0, "a": 1.0, "b": 1.0}
    assert all(chain.affine_in(p) for p in theta)


def test_a_branch_is_the_mixture_of_its_paths_not_a_geometric_mean() -> None:
    chain = Chain(
        S,
        {
            S: start_to("a"),
            "a": State("a", ("n:a",), groups=(Group("choice", (Edge("b", 0.3), Edge("c", 0.7))),)),
            "b": State("b", ("n:b",)),
            "c": State("c", ("n:c",)),
        },
    )
    f = chain.solve({"n:a": 0.99, "n:b": 0.9, "n:c": 0.6}).value(S)
    assert f == pytest.approx(0.99 * (0.3 * 0.9 + 0.7 * 0.6))
    assert f > 0.99 * 0.9**0.3 * 0.6**0.7  # Π r^E[visits] is biased low (Jensen)


def test_a_geometric_loop_is_the_sum_of_its_series() -> None:
    # work (r) then back with q through a handoff h: F = r(1 - q) / (1 - q·h·r).
    chain = Chain(
        S,
        {
            S: start_to("work"),
            "work": State(
                "work",
                ("n:work",),
                groups=(Group("choice", (Edge("work", 0.6, ("h:back",)), Edge(E, 0.4))),),
            ),
        },
    )
    r, q, h = 0.8, 0.6, 0.95
    assert chain.solve({"n:work": r, "h:back": h}).value(S) == pytest.approx(
        r * (1 - q) / (1 - q * h * r)
    )
    assert chain.visits()["work"] == pytest.approx(1 / 0.4)
    assert not chain.affine_in("n:work")  # in a cycle: rational, not affine


def test_a_fan_out_and_its_join_multiply_every_branch_once() -> None:
    # a -> (b, c) -> join d: d runs once for two arrivals, each arrival weighs F(d)^½.
    chain = Chain(
        S,
        {
            S: start_to("a"),
            "a": State(
                "a",
                ("n:a",),
                groups=(Group("each", (Edge("b", 1.0, ("h:ab",)), Edge("c", 1.0, ("h:ac",)))),),
            ),
            "b": State("b", ("n:b",), groups=(Group("each", (Edge("d", 1.0, ("h:bd",), 0.5),)),)),
            "c": State("c", ("n:c",), groups=(Group("each", (Edge("d", 1.0, ("h:cd",), 0.5),)),)),
            "d": State("d", ("n:d",)),
        },
    )
    theta = {"n:a": 0.99, "n:b": 0.95, "n:c": 0.9, "n:d": 0.98}
    theta |= {"h:ab": 0.99, "h:ac": 0.99, "h:bd": 0.97, "h:cd": 0.97}
    assert chain.solve(theta).value(S) == pytest.approx(math.prod(theta.values()))
    assert chain.visits()["d"] == pytest.approx(1.0)


def test_a_loop_through_a_fan_out_is_iterated_to_the_least_solution() -> None:
    # a fans out to b and back to itself with probability ½ (Bernoulli): F = r(1 - ½ + ½·F)·r_b,
    # a quadratic made of products of F: solved by monotone iteration from 0.
    chain = Chain(
        S,
        {
            S: start_to("a"),
            "a": State("a", ("n:a",), groups=(Group("each", (Edge("a", 0.5), Edge("b", 1.0))),)),
            "b": State("b", ("n:b",)),
        },
    )
    sol = chain.solve({"n:a": 0.9, "n:b": 0.95})
    r = 0.9 * 0.95  # F = r(0.5 + 0.5 F)  =>  F = 0.5 r / (1 - 0.5 r)
    assert sol.exact
    assert sol.value(S) == pytest.approx(0.5 * r / (1 - 0.5 * r))


def test_a_loop_that_never_exits_is_worth_zero_not_an_error() -> None:
    chain = Chain(
        S,
        {
            S: start_to("a"),
            "a": State("a", ("n:a",), groups=(Group("choice", (Edge("b", 1.0),)),)),
            "b": State("b", ("n:b",), groups=(Group("choice", (Edge("a", 1.0),)),)),
        },
    )
    assert chain.solve({}).value(S) == 0.0


def test_a_subgraph_container_is_worth_its_inner_chain() -> None:
    snap = LedgerSnapshot(
        "g",
        {
            "sub": NodeStats(executions=100, failures=10),
            "sub/x": NodeStats(executions=100),
            "sub/y": NodeStats(executions=100, failures=10),
            "after": NodeStats(executions=90),
        },
        {
            (S, "sub"): HandoffStats(S, "sub", 100, kinds={"edge": 100}),
            ("sub/__start__", "sub/x"): HandoffStats(
                "sub/__start__", "sub/x", 100, kinds={"edge": 100}
            ),
            ("sub/x", "sub/y"): HandoffStats("sub/x", "sub/y", 100, 5, kinds={"edge": 100}),
            ("sub/y", "sub/__end__"): HandoffStats("sub/y", "sub/__end__", 90, kinds={"edge": 90}),
            ("sub", "after"): HandoffStats("sub", "after", 90, kinds={"edge": 90}),
            ("after", E): HandoffStats("after", E, 90, kinds={"edge": 90}),
        },
        {},
        RunStats(runs=100, ok=90, error=10, clean=86),
        Topology("g", ("sub", "sub/x", "sub/y", "after"), subgraphs=("sub",)),
    )
    rep = report(snap)
    assert not rep.nodes["sub"].in_product
    assert rep.predicted == pytest.approx(0.95 * 0.9)  # x → y handoff, then y
    assert rep.nodes["sub"].visits == pytest.approx(1.0)


def test_command_parent_leaves_a_deficit_that_reaches_the_exit() -> None:
    # An inner node that leaves through Command.PARENT writes nothing in its subgraph:
    # the subgraph was entered 100 times; tools ran 140 times and went back to agent 40
    # times, so 100 of its tasks left the subgraph (no write, not a failure).
    counted = [
        _C("node", "s/agent", 140, 0),
        _C("node", "s/tools", 140, 0),
        _C("handoff", "s/__start__ -> s/agent", 100, 0, "s/__start__", "s/agent", {"edge": 100}),
        _C("handoff", "s/agent -> s/tools", 140, 0, "s/agent", "s/tools", {"edge": 140}),
        _C("handoff", "s/tools -> s/agent", 40, 4, "s/tools", "s/agent", {"edge": 40}),
    ]
    chain = chain_from_counts(counted, runs=100).chain
    q = chain.states["s/tools"].groups[0].edges[0].rate
    assert q == pytest.approx(40 / 140)  # measured inside a subgraph, not forced to 1
    # F(agent) = F(tools) = (1 - q) + q·0.9·F(agent)  =>  (1 - q) / (1 - 0.9·q)
    f = chain.solve({"handoff:s/tools -> s/agent": 0.9}).value("s/agent")
    assert f == pytest.approx((1 - q) / (1 - 0.9 * q))


def test_routes_that_named_no_node_are_renormalised_when_made_perfect() -> None:
    # a routes by Command: b 60, c 30, an unknown name 10 times out of 100.
    counted = [
        _C("node", "a", 100, 0),
        _C("node", "b", 60, 6),
        _C("node", "c", 30, 0),
        _C("handoff", "__start__ -> a", 100, 0, S, "a", {"edge": 100}),
        _C("handoff", "a -> b", 60, 0, "a", "b", {"command": 60}),
        _C("handoff", "a -> c", 30, 0, "a", "c", {"command": 30}),
        _C("handoff", "a -> __unknown__", 10, 10, "a", "__unknown__", {"command": 10}),
    ]
    build = chain_from_counts(counted, runs=100)
    u = "handoff:a -> __unknown__"
    assert build.u_base[u] == pytest.approx(0.9)
    params = {u: Param(u, "handoff", 0.9, 0.0, True, 0.9), "node:b": measured("node:b", 0.9)}
    assert build.chain.solve({k: p.theta() for k, p in params.items()}).value(S) == (
        pytest.approx(0.6 * 0.9 + 0.3)
    )
    perfect = {k: p.theta(1.0 if k == u else None) for k, p in params.items()}
    # perfect: the 10 % go where the valid routes go (b 2/3, c 1/3)
    assert build.chain.solve(perfect).value(S) == pytest.approx((0.6 * 0.9 + 0.3) / 0.9)


def test_chain_round_trips_through_its_dict() -> None:
    chain = Chain(
        S,
        {
            S: start_to("a"),
            "a": State(
                "a",
                ("n:a",),
                groups=(Group("choice", (Edge("a", 0.2, ("h",)), Edge(E, 0.7)), "u", 0.1),),
                base=40,
            ),
        },
    )
    assert Chain.from_dict(chain.to_dict()) == chain


def test_flat_chain_is_the_product_of_r_to_the_visits() -> None:
    chain = flat_chain(["a", "b"], {"a": 2.0, "b": 0.5})
    assert chain.solve({"a": 0.9, "b": 0.81}).value(S) == pytest.approx(0.9**2 * 0.9)


class _C:
    """A counted component for chain_from_counts (what the report's drafts provide)."""

    def __init__(
        self,
        kind: str,
        name: str,
        executions: int,
        failures: int,
        source: str | None = None,
        target: str | None = None,
        kinds: dict[str, int] | None = None,
    ) -> None:
        self.kind, self.name = kind, name
        self.executions, self.failures = executions, failures
        self.source, self.target = source, target
        self.kinds = kinds or {}
        self.error_types: dict[str, int] = {}


# -- properties on random chains ----------------------------------------------------------


@st.composite
def chains(draw: st.DrawFn) -> tuple[Chain, dict[str, Param]]:
    """Random chains: up to 5 states, choice and fan-out groups, loops, joins, routers."""
    n = draw(st.integers(1, 5))
    names = [f"s{i}" for i in range(n)]
    states: dict[str, State] = {S: start_to(names[0])}
    params: dict[str, Param] = {}
    targets = [*names, E]
    for name in names:
        node = f"node:{name}"
        params[node] = measured(node, draw(st.floats(0.5, 0.99)), draw(st.integers(20, 3000)))
        own = [node]
        if draw(st.booleans()):
            router = f"router:{name}"
            params[router] = measured(router, draw(st.floats(0.7, 1.0)), 500, True)
            own.append(router)
        groups = []
        k = draw(st.integers(0, min(3, len(targets))))
        if k:
            picks = draw(st.lists(st.sampled_from(targets), min_size=k, max_size=k, unique=True))
            weights = [draw(st.floats(0.05, 1.0)) for _ in picks]
            scale = draw(st.floats(0.5, 1.0)) / sum(weights)
            edges = []
            for t, w in zip(picks, weights, strict=True):
                h = f"handoff:{name} -> {t}"
                params[h] = measured(h, draw(st.floats(0.6, 1.0)), 800, True)
                edges.append(Edge(t, w * scale, (h,)))
            groups.append(Group("choice", tuple(edges)))
        if draw(st.booleans()):
            t = draw(st.sampled_from(targets))
            groups.append(
                Group(
                    "each",
                    (Edge(t, draw(st.floats(0.1, 1.0)), (), draw(st.sampled_from([1.0, 0.5]))),),
                )
            )
        states[name] = State(name, tuple(own), groups=tuple(groups), base=500.0)
    return Chain(S, states), params


@PROPS
@given(chains())
def test_the_solution_satisfies_its_equations(cp: tuple[Chain, dict[str, Param]]) -> None:
    from coordgap._chain import _phi, _rate_reader, _reader

    chain, params = cp
    theta = {k: p.theta() for k, p in params.items()}
    sol = chain.solve(theta)
    for name, st_ in chain.states.items():
        f = sol.value(name)
        assert -1e-12 <= f <= 1.0 + 1e-12
        again = _phi(st_, _reader(dict(sol.values)), lambda p: theta.get(p, 1.0), _rate_reader(st_))
        # 1e-6: a square root (a join) near 0 turns a 1e-16 rounding into 1e-8
        assert again == pytest.approx(f, abs=1e-6)


@PROPS
@given(chains())
def test_the_adjoint_gradient_is_the_derivative(cp: tuple[Chain, dict[str, Param]]) -> None:
    chain, params = cp
    theta = {k: p.theta() for k, p in params.items()}
    grad, rate_grad, _ = chain.gradient(theta)
    eps = 1e-6
    for k in sorted(theta)[:4]:
        up = chain.solve({**theta, k: theta[k] + eps}).value(S)
        down = chain.solve({**theta, k: theta[k] - eps}).value(S)
        assert grad.get(k, 0.0) == pytest.approx((up - down) / (2 * eps), abs=1e-5)
    assert all(math.isfinite(v) for v in rate_grad.values())


@PROPS
@given(chains())
def test_naive_gains_and_gap_shares_are_consistent(cp: tuple[Chain, dict[str, Param]]) -> None:
    chain, params = cp
    pred = predict(chain, params, 1.96)
    assert pred.predicted is not None and pred.naive is not None
    assert pred.naive >= pred.predicted - 1e-12  # handoffs and routers perfect: never lower
    assert pred.predicted_low <= pred.predicted <= pred.predicted_high
    theta = {k: p.theta() for k, p in params.items()}
    for k, perfect in pred.if_perfect.items():
        fresh = chain.solve({**theta, k: 1.0}).value(S)
        assert perfect == pytest.approx(min(1.0, fresh), abs=1e-9)  # shortcut or not
        assert perfect >= pred.predicted - 1e-12
    if pred.gap_share:
        assert sum(pred.gap_share.values()) == pytest.approx(pred.naive - pred.predicted, abs=1e-9)


@PROPS
@given(st.lists(st.floats(0.3, 1.0), min_size=1, max_size=8))
def test_on_a_line_the_chain_is_the_product(rs: list[float]) -> None:
    names = [f"n{i}" for i in range(len(rs))]
    states = {S: start_to(names[0])}
    for i, name in enumerate(names):
        nxt = names[i + 1] if i + 1 < len(names) else E
        states[name] = State(name, (f"p{i}",), groups=(Group("each", (Edge(nxt, 1.0),)),))
    chain = Chain(S, states)
    assert chain.solve({f"p{i}": r for i, r in enumerate(rs)}).value(S) == pytest.approx(
        math.prod(rs)
    )


def test_snapshot_with_a_router_and_a_loop_builds_one_state_per_node() -> None:
    snap = LedgerSnapshot(
        "g",
        {"work": NodeStats(executions=200, failures=20), "check": NodeStats(executions=180)},
        {
            (S, "work"): HandoffStats(S, "work", 100, kinds={"edge": 100}),
            ("work", "check"): HandoffStats("work", "check", 180, kinds={"edge": 180}),
            ("check", "work"): HandoffStats("check", "work", 100, kinds={"conditional": 100}),
            ("check", E): HandoffStats("check", E, 80, kinds={"conditional": 80}),
        },
        {"again": RouterStats("again", "check", 180, 0, targets={"work": 100, E: 80})},
        RunStats(runs=100, ok=80, error=20, clean=80),
        Topology(
            "g",
            ("work", "check"),
            (
                DeclaredHandoff(S, "work", "edge"),
                DeclaredHandoff("work", "check", "edge"),
                DeclaredHandoff("check", "work", "conditional"),
            ),
        ),
    )
    rep = report(snap)
    assert rep.chain is not None and set(rep.chain.states) == {S, "work", "check"}
    q = 100 / 180  # back per router success
    assert rep.predicted == pytest.approx(0.9 * (1 - q) / (1 - q * 0.9))
    assert rep.nodes["work"].visits == pytest.approx(1 / (1 - q))
