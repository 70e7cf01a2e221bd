"""Graph coverage and drift on real instrumented LangGraph graphs with known differences."""

from __future__ import annotations

import gc
import json
from typing import Any

import pytest
from coverage_graphs import research_agent
from graphs_basic import State, step
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

import coordgap
from coordgap._coverage import Coverage, coverage
from coordgap._coverage_pytest import _COLLECTOR, _Collector, coverages_of
from coordgap._ledger import LedgerSnapshot, merge_snapshots
from coordgap.errors import ConfigurationError


def run(builder: StateGraph, runs: int = 20, name: str = "research") -> Any:
    app = coordgap.instrument(builder, name=name)
    for i in range(runs):
        app.invoke({"run": i})
    return app


def labels(items: Any) -> list[str]:
    return sorted(x.label for x in items)


def test_never_taken_fallback_is_the_one_missed_edge() -> None:
    cov = coverage(run(research_agent(), runs=50))
    assert cov.runs == 50
    assert labels(cov.missed_edges) == ["cross_check -> retrieve"]
    assert [(t.router, t.target) for t in cov.missed_router_targets] == [("verdict", "retrieve")]
    assert cov.missed_nodes == ()
    assert (cov.node_coverage.covered, cov.node_coverage.total) == (4, 4)
    assert (cov.edge_coverage.covered, cov.edge_coverage.total) == (5, 6)
    assert cov.percent == pytest.approx(90.0)
    assert cov.drift == () and cov.failed_routes == ()
    assert "never exercised in 50 runs" in cov.to_text()
    assert "cross_check -> retrieve" in cov.to_text()


def test_taken_fallback_gives_full_coverage() -> None:
    cov = coverage(run(research_agent(fallback_every=5)))
    assert cov.percent == 100.0
    assert cov.missed_edges == () and cov.missed_router_targets == ()
    back = {e.key: e for e in cov.edges}[("cross_check", "retrieve")]
    assert back.transfers == 4  # runs 0, 5, 10, 15
    assert "never exercised" not in cov.to_text()


def test_unannotated_command_is_drift_and_annotated_is_not() -> None:
    bare = coverage(run(research_agent(command="unannotated")))
    annotated = coverage(run(research_agent(command="annotated")))
    assert labels(bare.drift) == ["analyze -> cross_check"]
    (d,) = bare.drift
    assert not d.declared and d.undeclared_kinds == ("command",) and d.transfers == 20
    assert "Command(goto=...)" in d.cause
    assert ("analyze", "cross_check") not in {e.key for e in bare.edges}
    assert annotated.drift == ()
    declared = {e.key: e for e in annotated.edges}[("analyze", "cross_check")]
    assert declared.declared_kinds == ("command",) and declared.transfers == 20


def test_send_through_a_router_without_path_map_is_drift() -> None:
    unmapped = coverage(run(research_agent(sends=True), runs=5))
    mapped = coverage(run(research_agent(sends=True, path_map=True), runs=5))
    (d,) = unmapped.drift
    assert d.key == ("synthesize", "cite") and d.observed_kinds == {"send": 10}
    assert unmapped.unmapped_routers == ("fan",)
    assert "Send" in d.cause
    assert mapped.drift == () and mapped.unmapped_routers == ()
    assert {e.key: e.transfers for e in mapped.edges}[("synthesize", "cite")] == 10


def test_static_edge_plus_unannotated_command_is_kind_drift() -> None:
    def a(state: State):
        return Command(goto="b", update={"log": ["a"]})

    b = StateGraph(State)
    b.add_node("a", a)
    b.add_node("b", step("b"))
    b.add_edge(START, "a")
    b.add_edge("a", "b")
    b.add_edge("b", END)
    cov = coverage(run(b, runs=3))
    (d,) = cov.drift
    assert d.key == ("a", "b") and d.declared and d.declared_kinds == ("edge",)
    assert d.undeclared_kinds == ("command",)
    assert cov.undeclared == ()
    assert "declared as edge" in cov.to_text()


def invalid_routes(kind: str) -> StateGraph:
    def go_nowhere(state: State):
        return Command(goto="nowhere", update={"log": ["a"]})

    def route(state: State) -> str:
        return "nowhere"

    b = StateGraph(State)
    b.add_node("a", go_nowhere if kind == "command" else step("a"))
    b.add_node("b", step("b"))
    b.add_edge(START, "a")
    if kind == "router":
        b.add_conditional_edges("a", route)
    elif kind == "mapped":
        b.add_conditional_edges("a", route, {"b": "b"})
    b.add_edge("b", END)
    return b


@pytest.mark.parametrize("kind", ["command", "router"])
def test_silently_dropped_routes_are_failed_routes(kind: str) -> None:
    cov = coverage(run(invalid_routes(kind), runs=4))
    (f,) = cov.failed_routes
    assert (f.source, f.target, f.error_type, f.count) == ("a", "__unknown__", "InvalidRoute", 4)
    assert f.router == (None if kind == "command" else "route")
    assert f.label.startswith("a -> __unknown__")
    assert cov.drift == ()
    assert cov.missed_nodes == ("b",)
    assert "InvalidRoute x4" in cov.to_text()


def test_name_outside_the_path_map_is_a_failed_route() -> None:
    app = coordgap.instrument(invalid_routes("mapped"), name="research")
    for i in range(3):
        with pytest.raises(KeyError):
            app.invoke({"run": i})
    (f,) = coverage(app).failed_routes
    # LangGraph raised (KeyError): nothing was written, the router's decision failed
    assert (f.error_type, f.count, f.kinds) == ("KeyError", 3, ("conditional",))
    assert f.label == "a -> __unknown__ (router route)"


def test_router_that_raises_is_a_failed_route_named_by_router() -> None:
    def route(state: State) -> str:
        raise RuntimeError("coordinator down")

    b = StateGraph(State)
    b.add_node("a", step("a"))
    b.add_node("b", step("b"))
    b.add_edge(START, "a")
    b.add_conditional_edges("a", route, {"b": "b"})
    b.add_edge("b", END)
    app = coordgap.instrument(b, name="research")
    for i in range(2):
        with pytest.raises(RuntimeError):
            app.invoke({"run": i})
    cov = coverage(app)
    (f,) = cov.failed_routes
    assert (f.router, f.source, f.error_type, f.count) == ("route", "a", "RuntimeError", 2)
    assert f.label == "a -> __unknown__ (router route)"
    assert {e.key for e in cov.missed_edges} == {("a", "b"), ("b", "__end__")}


def test_mermaid_greys_unexercised_and_marks_undeclared() -> None:
    cov = coverage(run(research_agent(command="unannotated", sends=True), runs=3))
    text = cov.to_mermaid()
    assert text.startswith("flowchart TD")
    assert '-.->|"never"|' in text  # cross_check -> retrieve
    assert '==>|"undeclared command 3"|' in text
    assert '==>|"undeclared send 6"|' in text
    assert "linkStyle" in text and "stroke:#bbbbbb" in text and "stroke:#cc0000" in text


def test_mermaid_marks_unexercised_nodes_and_failed_routes() -> None:
    text = coverage(run(invalid_routes("router"), runs=2)).to_mermaid()
    b_id = next(line.split("[")[0].strip() for line in text.splitlines() if '["b"]' in line)
    assert f"class {b_id} unexercised" in text
    assert 'unknown(("?"))' in text and "InvalidRoute 2" in text


def test_to_dict_is_json_and_matches_the_ratios() -> None:
    cov = coverage(run(research_agent(command="unannotated"), runs=5))
    data = json.loads(json.dumps(cov.to_dict()))
    assert data["schema"] == "coordgap.coverage/1"
    assert data["graph"] == "research" and data["runs"] == 5
    assert data["edges"] == {"covered": 4, "total": 5, "percent": 80.0}
    assert data["missed"]["edges"] == [["cross_check", "retrieve"]]
    assert [(d["source"], d["target"]) for d in data["drift"]] == [("analyze", "cross_check")]
    assert data["percent"] == pytest.approx(cov.percent, abs=1e-3)


def test_coverage_from_a_saved_snapshot_equals_live() -> None:
    app = run(research_agent(command="unannotated", sends=True), runs=4)
    snap = coordgap.ledger(app).snapshot()
    saved = LedgerSnapshot.from_dict(json.loads(json.dumps(snap.to_dict())))
    assert coverage(saved).to_dict() == coverage(app).to_dict() == coverage(snap).to_dict()


def test_without_topology_nothing_is_drift() -> None:
    snap = coordgap.ledger(run(research_agent(command="unannotated"), runs=2)).snapshot()
    bare = LedgerSnapshot(snap.graph, snap.nodes, snap.handoffs, snap.routers, snap.runs)
    cov = coverage(bare)
    assert not cov.has_topology and cov.drift == () and cov.edges == ()
    assert cov.percent == 100.0 and "no declared topology" in cov.to_text()


def test_no_runs_is_zero_coverage_of_everything() -> None:
    cov = coverage(coordgap.instrument(research_agent(), name="research"))
    assert cov.runs == 0 and cov.total.covered == 0 and cov.percent == 0.0
    assert len(cov.missed_nodes) == 4


def test_not_instrumented_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="no coordgap ledger"):
        coverage(research_agent().compile())


def test_collector_keeps_graphs_that_died_and_counts_that_were_reset() -> None:
    if _COLLECTOR.active:
        pytest.skip("this session itself runs with --coordgap-coverage")
    _COLLECTOR.start()
    try:

        def short_lived() -> None:
            run(research_agent(), runs=2, name="collected")

        short_lived()
        gc.collect()
        kept = run(research_agent(fallback_every=1), runs=1, name="collected")
        _COLLECTOR.checkpoint()
        coordgap.ledger(kept).reset()  # the fallback it took must still count
        other = coordgap.instrument(invalid_routes("router"), name="collected")
        other.invoke({"run": 0})
    finally:
        found: list[Coverage] = coverages_of(_COLLECTOR.stop())
    assert not _COLLECTOR.active
    by_name = {c.graph: c for c in found}
    assert {"collected", "collected #2"} <= set(by_name)
    ours = [by_name["collected"], by_name["collected #2"]]
    # One name, two topologies: two entries; the two research ledgers are summed (3 runs).
    research = next(c for c in ours if "retrieve" in c.nodes)
    other_cov = next(c for c in ours if "retrieve" not in c.nodes)
    assert research.runs == 3
    assert research.missed_edges == ()  # the fallback came from the ledger that was reset
    assert other_cov.failed_routes[0].error_type == "InvalidRoute"
    # After stop, new ledgers are not collected.
    coordgap.instrument(research_agent(), name="collected")
    assert _COLLECTOR.stop() == []


def test_collector_reads_coverage_once_off_the_merged_snapshots() -> None:
    """The collector keeps snapshots (max over the moments of one ledger, sum over the
    ledgers of one graph) and builds coverage once: coverage() of their merge."""
    collector = _Collector()  # a collector of its own: the session's may be running
    collector.start()
    try:
        a = run(research_agent(), runs=2, name="merged")
        collector.checkpoint()
        a.invoke({"run": 2})
        b = run(research_agent(fallback_every=1), runs=1, name="merged")
        expected = coverage(
            merge_snapshots([coordgap.ledger(a).snapshot(), coordgap.ledger(b).snapshot()])
        )
    finally:
        found = coverages_of(collector.stop())
    assert [c for c in found if c.graph == "merged"] == [expected]
    assert expected.runs == 4 and expected.missed_edges == ()


def test_a_report_without_its_snapshot_is_a_configuration_error() -> None:
    from coordgap._report import report

    rep = report(run(research_agent(), runs=1))
    if isinstance(getattr(rep, "snapshot", None), LedgerSnapshot):
        assert coverage(rep).runs == 1  # report.py keeps the snapshot: coverage works on it
    else:
        with pytest.raises(ConfigurationError, match="carries no ledger snapshot"):
            coverage(rep)
