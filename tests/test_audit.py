"""The static audit: figures from the topology and assumed reliabilities, before any run."""

from __future__ import annotations

import itertools

import pytest

from coordgap._audit import audit
from coordgap.errors import ConfigurationError
from coordgap.topology import DeclaredHandoff as H
from coordgap.topology import DeclaredRouter as R
from coordgap.topology import Topology

RESEARCH = Topology(
    "research",
    ("retrieve", "analyze", "cross_check", "synthesize"),
    (
        H("__start__", "retrieve", "edge"),
        H("retrieve", "analyze", "edge"),
        H("analyze", "cross_check", "edge"),
        H("cross_check", "synthesize", "edge"),
        H("synthesize", "__end__", "edge"),
    ),
    entry=("retrieve",),
)
RESEARCH_NODES = {"retrieve": 0.98, "analyze": 0.96, "cross_check": 0.97, "synthesize": 0.95}


def linear(n: int) -> Topology:
    names = [f"step{i}" for i in range(n)]
    path = ["__start__", *names, "__end__"]
    return Topology(
        "linear", tuple(names), tuple(H(a, b, "edge") for a, b in itertools.pairwise(path))
    )


LOOP = Topology(
    "loop",
    ("analyze", "check", "synthesize"),
    (
        H("__start__", "analyze", "edge"),
        H("analyze", "check", "edge"),
        H("check", "analyze", "conditional"),
        H("check", "synthesize", "conditional"),
        H("synthesize", "__end__", "edge"),
    ),
    (R("route_after_check", "check", ("analyze", "synthesize")),),
)


def test_research_agent_figures() -> None:
    rep = audit(RESEARCH, nodes=RESEARCH_NODES, handoffs=0.97)
    # 0.98 x 0.96 x 0.97 x 0.95 = 0.86695; x 0.97^3 = 0.79124. (The issue quotes 0.870 /
    # 0.795 / 0.075, which rounds the naive figure before multiplying; see docs/report.md.)
    assert f"{rep.naive:.3f}" == "0.867"
    assert f"{rep.predicted:.3f}" == "0.791"
    assert f"{rep.gap:.3f}" == "0.076"
    assert rep.predicted == pytest.approx(0.98 * 0.96 * 0.97 * 0.95 * 0.97**3, abs=1e-12)
    assert rep.end_to_end.observed.value is None


def test_research_agent_counts_three_handoffs_not_the_boundary() -> None:
    rep = audit(RESEARCH, nodes=RESEARCH_NODES, handoffs=0.97)
    assert sorted(rep.handoffs) == [
        ("analyze", "cross_check"),
        ("cross_check", "synthesize"),
        ("retrieve", "analyze"),
    ]
    with_boundary = audit(RESEARCH, nodes=RESEARCH_NODES, handoffs=0.97, boundary=True)
    assert len(with_boundary.handoffs) == 5
    assert with_boundary.predicted == pytest.approx(rep.predicted * 0.97**2)  # type: ignore[operator]


def test_six_steps_at_097_without_handoff_loss() -> None:
    rep = audit(linear(6), nodes=0.97)
    assert f"{rep.predicted:.3f}" == "0.833"
    assert rep.gap == 0.0


def test_handoffs_come_from_the_real_edges() -> None:
    # A fan-out: a -> b, a -> c, b -> d, c -> d: 4 handoffs among 4 nodes (not len(nodes) - 1).
    topo = Topology(
        "fan",
        ("a", "b", "c", "d"),
        (
            H("__start__", "a", "edge"),
            H("a", "b", "edge"),
            H("a", "c", "edge"),
            H("b", "d", "join"),
            H("c", "d", "join"),
            H("d", "__end__", "edge"),
        ),
    )
    rep = audit(topo, nodes=0.99, handoffs=0.98)
    assert len(rep.handoffs) == 4
    assert rep.nodes["d"].visits == pytest.approx(1.0)  # a join runs its target once
    assert rep.predicted == pytest.approx(0.99**4 * 0.98**4)


def test_per_component_dicts_with_defaults() -> None:
    rep = audit(
        RESEARCH,
        nodes={"analyze": 0.9},
        handoffs={("retrieve", "analyze"): 0.95, "analyze->cross_check": 0.96},
        default=0.99,
    )
    assert rep.nodes["analyze"].reliability.value == 0.9
    assert rep.nodes["retrieve"].reliability.value == 0.99
    assert rep.handoffs[("cross_check", "synthesize")].reliability.value == 0.99
    assert rep.predicted == pytest.approx(0.9 * 0.99**3 * 0.95 * 0.96 * 0.99)


def test_unknown_names_and_bad_values_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="'analyse', which the graph does not have"):
        audit(RESEARCH, nodes={"analyse": 0.9})
    with pytest.raises(ConfigurationError, match="retrieve -> synthesize"):
        audit(RESEARCH, handoffs={"retrieve->synthesize": 0.9})
    with pytest.raises(
        ConfigurationError, match=r"^nodes=1.2: a reliability is a probability in \[0, 1\]"
    ):
        audit(RESEARCH, nodes=1.2)
    with pytest.raises(ConfigurationError, match="source -> target"):
        audit(RESEARCH, handoffs={"retrieve": 0.9})


def test_a_cycle_needs_branch_probabilities_or_visits() -> None:
    with pytest.raises(ConfigurationError, match="has a cycle"):
        audit(LOOP, nodes=0.97)


def test_branch_probabilities_give_expected_visits_on_a_loop() -> None:
    rep = audit(LOOP, nodes=0.97, handoffs=0.99, routers=0.995, branches={"check->analyze": 0.2})
    assert rep.nodes["analyze"].visits == pytest.approx(1.25)
    assert rep.nodes["check"].visits == pytest.approx(1.25)
    assert rep.nodes["synthesize"].visits == pytest.approx(1.0)
    assert rep.routers["route_after_check"].visits == pytest.approx(1.25)
    assert rep.handoffs[("check", "analyze")].visits == pytest.approx(0.25)
    # By hand, F = probability that all goes well from a node on:
    # F(check) = .97·.995·(.2·.99·F(analyze) + .8·.99·F(synthesize)), F(synthesize) = .97,
    # F(analyze) = .97·.99·F(check)  =>  F(check) = a·d / (1 - a·b).
    a, b, d = 0.97 * 0.995, 0.2 * 0.99 * 0.97 * 0.99, 0.8 * 0.99 * 0.97
    f_check = a * d / (1 - a * b)
    assert rep.predicted == pytest.approx(0.97 * 0.99 * f_check)
    # Π r^E[visits] would be below it (Jensen): the old formula's bias on loops.
    old = 0.97 ** (1.25 + 1.25 + 1) * 0.99 ** (1.25 + 0.25 + 1) * 0.995**1.25
    assert old < rep.predicted


def test_a_loop_that_never_exits_is_an_error_not_a_hang() -> None:
    with pytest.raises(ConfigurationError, match="never exits"):
        audit(LOOP, nodes=0.97, branches={"check->analyze": 1.0})


def test_visits_given_directly() -> None:
    rep = audit(
        LOOP,
        nodes=0.97,
        visits={"analyze": 2.0, "check": 2.0, "synthesize": 1.0, "check->analyze": 1.0},
    )
    assert rep.nodes["analyze"].visits == 2.0
    assert rep.handoffs[("check", "analyze")].visits == 1.0
    assert rep.predicted == pytest.approx(0.97**5)


def test_uneven_branches_without_probabilities_are_split_evenly_with_a_note() -> None:
    topo = Topology(
        "branch",
        ("a", "b", "c"),
        (
            H("__start__", "a", "edge"),
            H("a", "b", "conditional"),
            H("a", "c", "conditional"),
            H("b", "__end__", "edge"),
            H("c", "__end__", "edge"),
        ),
        (R("pick", "a", ("b", "c")),),
    )
    rep = audit(topo, nodes={"b": 0.9, "c": 0.8})
    assert rep.nodes["b"].visits == 0.5
    assert rep.predicted == pytest.approx(0.5 * 0.9 + 0.5 * 0.8)  # not sqrt(0.9 · 0.8)
    assert any("split evenly" in n for n in rep.notes)


def test_weakest_link_and_sensitivity() -> None:
    rep = audit(RESEARCH, nodes=RESEARCH_NODES, handoffs=0.97)
    assert rep.weakest[0].name == "synthesize"
    top = rep.weakest[0]
    assert top.if_perfect == pytest.approx(rep.predicted / 0.95)  # type: ignore[operator]


def test_audit_renders_as_text() -> None:
    text = audit(RESEARCH, nodes=RESEARCH_NODES, handoffs=0.97).to_text(color=False)
    assert "coordgap audit" in text
    assert "0.867" in text and "0.791" in text and "0.076" in text
    assert "observed" not in text


def test_audit_of_a_real_state_graph() -> None:
    compat = pytest.importorskip("coordgap._compat")
    if not hasattr(compat, "topology_of"):
        pytest.skip("coordgap._compat.topology_of not written yet")
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class S(TypedDict):
        x: int

    b = StateGraph(S)
    for name in RESEARCH_NODES:
        b.add_node(name, lambda s: s)
    b.add_edge(START, "retrieve")
    b.add_edge("retrieve", "analyze")
    b.add_edge("analyze", "cross_check")
    b.add_edge("cross_check", "synthesize")
    b.add_edge("synthesize", END)
    rep = audit(b, nodes=RESEARCH_NODES, handoffs=0.97)
    assert len(rep.handoffs) == 3
    assert f"{rep.naive:.3f} {rep.predicted:.3f} {rep.gap:.3f}" == "0.867 0.791 0.076"
