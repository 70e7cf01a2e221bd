"""assert_reliability, assert_no_regression, capture_events, LedgerScope, merge_snapshots."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

import coordgap
from coordgap import faults
from coordgap._ledger import Ledger
from coordgap._ledger import merge_snapshots as ledger_merge
from coordgap._report import report, wilson_interval
from coordgap.events import HandoffOutcome, NodeOutcome, RouterOutcome, RunOutcome
from coordgap.testing import (
    Baselines,
    LedgerScope,
    assert_no_regression,
    assert_reliability,
    capture_events,
    checked_probability,
    load_baseline,
    merge_snapshots,
)


class S(TypedDict):
    x: int


def build(rate: float = 0.0, seed: int = 1) -> Any:
    b = StateGraph(S)
    b.add_node("a", lambda s: {"x": s["x"] + 1})
    b.add_node("b", lambda s: {"x": s["x"] * 2})
    b.add_edge(START, "a")
    b.add_edge("a", "b")
    b.add_edge("b", END)
    return faults.inject(b, nodes={"b": rate}, seed=seed) if rate else b


def drive(app: Any, n: int) -> None:
    for i in range(n):
        try:
            app.invoke({"x": i})
        except faults.InjectedFault:
            pass


def ledger_with(clean: int, runs: int, graph: str = "g") -> Ledger:
    """A hand-built ledger: `runs` finished runs of one node, `clean` of them ok."""
    led = Ledger(graph)
    for i in range(runs):
        ok = i < clean
        led.record(NodeOutcome(graph, "a", ok, 1, True, 0, 1))
        led.record(HandoffOutcome(graph, "__start__", "a", "edge", True, 0, 1))
        led.record(RunOutcome(graph, "ok" if ok else "error", ok, 0, 1))
    return led


# -- assert_reliability ----------------------------------------------------------------------


def test_passes_only_when_lower_bound_clears() -> None:
    led = ledger_with(295, 300)  # 0.983, Wilson 95 %: [0.962, 0.993]
    low, _ = wilson_interval(295, 300)
    checks = assert_reliability(led, end_to_end=low - 1e-9)
    assert [c.verdict for c in checks] == ["pass"]
    with pytest.raises(coordgap.ReliabilityError) as info:
        assert_reliability(led, end_to_end=low + 1e-6)
    assert "need about" in str(info.value)
    assert info.value.checks[0].verdict == "undecided"


@settings(max_examples=60, deadline=None)
@given(
    runs=st.integers(min_value=1, max_value=400),
    data=st.data(),
    threshold=st.floats(min_value=0.0, max_value=1.0),
)
def test_verdict_matches_the_interval(runs: int, data: Any, threshold: float) -> None:
    clean = data.draw(st.integers(min_value=0, max_value=runs))
    low, high = wilson_interval(clean, runs, 0.95)
    try:
        (check,) = assert_reliability(ledger_with(clean, runs), end_to_end=threshold)
        assert low >= threshold and check.verdict == "pass"
    except coordgap.ReliabilityError as exc:
        (check,) = exc.checks
        assert low < threshold
        assert check.verdict == ("fail" if high < threshold else "undecided")


def test_more_runs_estimate_is_enough_and_not_wildly_too_much() -> None:
    led = ledger_with(97, 100)  # 0.97, threshold 0.95: lower bound 0.915
    with pytest.raises(coordgap.ReliabilityError) as info:
        assert_reliability(led, end_to_end=0.95)
    more = info.value.checks[0].more_runs
    assert more is not None
    n = 100 + more
    # at the same observed rate, that many runs decide it; a tenth fewer do not
    assert wilson_interval(round(0.97 * n), n)[0] >= 0.95 - 1e-3
    m = 100 + int(more * 0.9)
    assert wilson_interval(round(0.97 * m), m)[0] < 0.95 + 1e-3
    assert f"need about {more} more runs to decide at 95 %" in str(info.value)


def test_more_runs_estimate_is_at_the_observed_rate_not_a_rounded_count() -> None:
    """The estimate searches at the observed rate itself (131/141 against 0.9 needs 268 more,
    the figure of docs/testing.md), not at rounded counts, whose bounds jump by more than they
    move and would put the answer anywhere between about 257 and 290."""
    with pytest.raises(coordgap.ReliabilityError) as info:
        assert_reliability(ledger_with(131, 141), end_to_end=0.9)
    assert info.value.checks[0].more_runs == 268


def test_failure_message_marks_offenders_and_states_figures() -> None:
    app = coordgap.instrument(build(0.3), spans="off", metrics=False)
    drive(app, 120)
    with pytest.raises(coordgap.ReliabilityError) as info:
        assert_reliability(app, end_to_end=0.9, nodes=0.9, handoffs=0.9)
    text = str(info.value)
    assert text.startswith("coordgap: reliability below threshold at 95 % confidence")
    marked = [line for line in text.splitlines() if line.startswith(">>")]
    assert any("end to end" in line and "FAIL" in line for line in marked)
    assert any(" b " in line for line in marked)
    assert not any(" a " in line.split("node")[-1][:4] for line in marked)
    assert "failed: end to end observed:" in text
    assert "upper bound" in text
    assert isinstance(info.value, AssertionError)


def test_per_component_thresholds_override_and_unknown_names_are_refused() -> None:
    app = coordgap.instrument(build(0.3), spans="off", metrics=False)
    drive(app, 120)
    checks = assert_reliability(app, nodes=0.9, per={"b": 0.5, ("a", "b"): 0.9})
    assert {c.component: c.threshold for c in checks if c.kind == "node"} == {"a": 0.9, "b": 0.5}
    with pytest.raises(coordgap.ConfigurationError, match="Did you mean 'b'"):
        assert_reliability(app, per={"bb": 0.5})
    with pytest.raises(coordgap.ConfigurationError, match="no handoff"):
        assert_reliability(app, per={("b", "a"): 0.5})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"end_to_end": 1.5},
        {"nodes": -0.1},
        {"handoffs": 90},
        {"routers": True},
        {"per": {"a": 2.0}},
        {"end_to_end": 0.9, "confidence": 1.0},
        {"end_to_end": 0.9, "confidence": 0},
        {"end_to_end": 0.9, "min_runs": -1},
        {},
    ],
)
def test_bad_thresholds_are_configuration_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(coordgap.ConfigurationError):
        assert_reliability(ledger_with(10, 10), **kwargs)


def test_min_runs_and_no_runs() -> None:
    with pytest.raises(coordgap.ReliabilityError, match="need 50 more runs"):
        assert_reliability(ledger_with(50, 50), end_to_end=0.1, min_runs=100)
    with pytest.raises(coordgap.ReliabilityError, match="no finished runs"):
        assert_reliability(Ledger("empty"), end_to_end=0.1)


def test_accepts_report_snapshot_ledger_and_graph() -> None:
    app = coordgap.instrument(build(), spans="off", metrics=False)
    drive(app, 80)
    led = coordgap.ledger(app)
    for source in (app, led, led.snapshot(), report(app)):
        assert assert_reliability(source, end_to_end=0.9, nodes=0.9)


def test_audit_reports_are_refused() -> None:
    rep = (
        coordgap.audit(build(), nodes={"a": 0.99, "b": 0.99})
        if hasattr(coordgap, "audit")
        else None
    )
    if rep is None:
        from coordgap._audit import audit

        rep = audit(build(), nodes={"a": 0.99, "b": 0.99})
    with pytest.raises(coordgap.ConfigurationError, match="audit"):
        assert_reliability(rep, end_to_end=0.5)


# -- capture_events and LedgerScope --------------------------------------------------------------


def test_capture_events_receives_graphs_built_inside_only() -> None:
    before = coordgap.instrument(build(), spans="off", metrics=False)
    with capture_events() as events:
        inside = coordgap.instrument(build(), spans="off", metrics=False)
        inside.invoke({"x": 1})
        before.invoke({"x": 1})
    inside.invoke({"x": 2})  # after the block: not captured
    kinds = [type(e).__name__ for e in events]
    assert kinds.count("RunOutcome") == 1
    assert kinds.count("NodeOutcome") == 2
    # exactly what a sink passed to instrument() sees
    seen: list[Any] = []
    explicit = coordgap.instrument(build(), spans="off", metrics=False, sinks=[seen.append])
    with capture_events() as again:
        explicit.invoke({"x": 1})
    assert again == []
    assert [type(e).__name__ for e in seen] == kinds


def test_capture_events_is_thread_safe() -> None:
    with capture_events() as events:
        apps = [coordgap.instrument(build(), spans="off", metrics=False) for _ in range(4)]
        threads = [threading.Thread(target=drive, args=(app, 10)) for app in apps]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sum(isinstance(e, RunOutcome) for e in events) == 40


def test_nested_scopes_and_observer_removal() -> None:
    from coordgap import _instrument

    count = len(_instrument._observers)
    with LedgerScope() as outer:
        coordgap.instrument(build(), name="one", spans="off", metrics=False)
        with LedgerScope() as inner:
            two = coordgap.instrument(build(), name="two", spans="off", metrics=False)
    assert [led.graph for led in outer.ledgers] == ["one", "two"]
    assert [led.graph for led in inner.ledgers] == ["two"]
    assert len(_instrument._observers) == count
    drive(two, 3)
    assert report(inner).end_to_end.finished == 3
    with pytest.raises(coordgap.ConfigurationError, match="name the one you mean"):
        outer.ledger()
    assert outer.snapshot("two").runs.runs == 3


def test_merge_snapshots_sums_counts() -> None:
    """merge_snapshots (coordgap.testing's name of the ledger's one merge) adds the counts."""
    a, b = ledger_with(8, 10), ledger_with(5, 6)
    merged = merge_snapshots([a.snapshot(), b.snapshot()])
    assert merged.runs.runs == 16 and merged.runs.clean == 13
    assert merged.nodes["a"].failures == 3
    assert merged.handoffs[("__start__", "a")].transfers == 16
    assert report(merged).end_to_end.observed.value == pytest.approx(13 / 16)
    assert merge_snapshots is ledger_merge  # one merge, however it is imported


def test_merge_snapshots_combines_every_count_by_key_and_keeps_names() -> None:
    """Every number and every per-key count combines (sum or max); names and the graph are
    the first's; a component seen by only one snapshot is taken as it is."""
    one, two = Ledger("g"), Ledger("g")
    one.record(NodeOutcome("g", "a", False, 1, True, 0, 2_000_000_000, error_type="KeyError"))
    one.record(HandoffOutcome("g", "a", "b", "edge", False, 0, 1, error_type="InvalidRoute"))
    one.record(RouterOutcome("g", "route", "a", True, ("b",), 0, 1))
    two.record(NodeOutcome("g", "a", False, 1, True, 0, 1_000_000_000, error_type="KeyError"))
    two.record(NodeOutcome("g", "a", False, 1, True, 0, 1_000_000_000, error_type="ValueError"))
    two.record(HandoffOutcome("g", "a", "b", "command", True, 0, 1))
    two.record(RouterOutcome("g", "route", "a", True, ("c",), 0, 1))
    two.record(NodeOutcome("g", "z", True, 1, True, 0, 1))
    two.count_internal_error()
    total = merge_snapshots([one.snapshot(), two.snapshot()])
    node = total.nodes["a"]
    assert (node.executions, node.failures, node.attempts) == (3, 3, 3)
    assert node.duration_s == pytest.approx(4.0)
    assert dict(node.error_types) == {"KeyError": 2, "ValueError": 1}
    handoff = total.handoffs[("a", "b")]
    assert (handoff.source, handoff.target, handoff.transfers, handoff.failures) == ("a", "b", 2, 1)
    assert dict(handoff.kinds) == {"edge": 1, "command": 1}
    assert dict(handoff.kind_failures) == {"edge": 1}
    router = total.routers["route"]
    assert (router.router, router.source, router.decisions) == ("route", "a", 2)
    assert dict(router.targets) == {"b": 1, "c": 1}
    assert total.nodes["z"] == two.snapshot().nodes["z"]
    assert total.internal_errors == 1 and total.graph == "g"
    most = merge_snapshots([one.snapshot(), two.snapshot()], "max")
    assert (most.nodes["a"].executions, most.nodes["a"].duration_s) == (2, 2.0)
    assert dict(most.nodes["a"].error_types) == {"KeyError": 1, "ValueError": 1}
    assert most.handoffs[("a", "b")].transfers == 1
    with pytest.raises(coordgap.ConfigurationError, match="at least one"):
        merge_snapshots([])
    with pytest.raises(coordgap.ConfigurationError, match="how='avg'"):
        merge_snapshots([one.snapshot()] * 2, "avg")  # type: ignore[arg-type]


# -- assert_no_regression ---------------------------------------------------------------------


def test_no_regression_against_saved_report(tmp_path: Any) -> None:
    base = coordgap.instrument(build(0.02), name="agent", spans="off", metrics=False)
    drive(base, 200)
    path = tmp_path / "baseline.json"
    path.write_text(report(base).to_json())

    same = coordgap.instrument(build(0.02, seed=2), name="agent", spans="off", metrics=False)
    drive(same, 200)
    assert not assert_no_regression(same, baseline=path).regressed

    worse = coordgap.instrument(build(0.3), name="agent", spans="off", metrics=False)
    drive(worse, 200)
    with pytest.raises(coordgap.ReliabilityError) as info:
        assert_no_regression(worse, baseline=str(path))
    text = str(info.value)
    assert "regressed against the baseline" in text
    assert "regressed: end to end observed" in text
    assert "regressed: node b" in text


def test_missing_baseline_says_how_to_make_one(tmp_path: Any) -> None:
    with pytest.raises(coordgap.ConfigurationError, match="--coordgap-save-baseline"):
        assert_no_regression(ledger_with(1, 1), baseline=tmp_path / "nope.json")


def test_multi_graph_baseline_file_is_read_per_graph(tmp_path: Any) -> None:
    from coordgap.testing import load_baseline, write_baseline

    path = tmp_path / "b.json"
    write_baseline(path, [report(ledger_with(9, 10, "x")), report(ledger_with(3, 10, "y"))])
    assert load_baseline(path, "y").end_to_end.clean == 3
    assert not assert_no_regression(ledger_with(9, 10, "x"), baseline=path).regressed
    with pytest.raises(coordgap.ConfigurationError, match="none for graph 'z'"):
        load_baseline(path, "z")


def test_a_failed_end_to_end_gate_names_where_the_reliability_goes() -> None:
    import pickle

    from chain_sim import ROWS, simulate

    snap = simulate(ROWS["linear"], 600, seed=9)
    with pytest.raises(coordgap.ReliabilityError) as info:
        assert_reliability(snap, end_to_end=0.9)
    err = info.value
    rep = report(snap)
    assert err.weakest and err.weakest == tuple((c.label, c.gain) for c in rep.weakest[:3])
    assert all(gain > 0 for _, gain in err.weakest)
    assert [g for _, g in err.weakest] == sorted((g for _, g in err.weakest), reverse=True)
    text = str(err)
    assert (
        f"where the end to end is lost (predicted gain if perfect): {rep.weakest[0].label} (+"
        in text
    )
    assert err.checks and err.checks[0].kind == "end to end"
    # the attributes are declared, and survive pickling (pytest-xdist sends errors around)
    back = pickle.loads(pickle.dumps(err))
    assert back.weakest == err.weakest and back.checks == err.checks and str(back) == text


def test_a_passing_gate_and_a_node_gate_name_no_weakest_links() -> None:
    led = ledger_with(295, 300)
    with pytest.raises(coordgap.ReliabilityError) as info:
        assert_reliability(led, nodes=0.999)
    assert info.value.weakest == ()
    assert "where the end to end" not in str(info.value)


def test_per_names_a_handoff_as_the_report_prints_it() -> None:
    app = coordgap.instrument(build(0.3), spans="off", metrics=False)
    drive(app, 60)
    (check,) = [c for c in assert_reliability(app, per={"a -> b": 0.5}) if c.kind == "handoff"]
    assert check.component == "a -> b" and check.threshold == 0.5
    with pytest.raises(coordgap.ConfigurationError, match="no handoff"):
        assert_reliability(app, per={"a -> c": 0.5})


def test_update_writes_the_baseline_and_compares_nothing(tmp_path: Any) -> None:
    """update=True writes the current report (beside other graphs' in the file) and returns
    None; a Report cannot be updated; the next plain call compares with what was written."""
    path = tmp_path / "nested" / "b.json"
    assert assert_no_regression(ledger_with(9, 10, "x"), path, update=True) is None
    assert load_baseline(path).end_to_end.clean == 9
    assert assert_no_regression(ledger_with(3, 10, "y"), path, update=True) is None
    assert load_baseline(path, "x").end_to_end.clean == 9  # kept beside y
    assert load_baseline(path, "y").end_to_end.clean == 3
    assert assert_no_regression(ledger_with(8, 10, "x"), path, update=True) is None
    assert load_baseline(path, "x").end_to_end.clean == 8  # replaced
    assert not assert_no_regression(ledger_with(8, 10, "x"), path).regressed
    with pytest.raises(coordgap.ConfigurationError, match="not a Report"):
        assert_no_regression(ledger_with(1, 1), report(ledger_with(1, 1)), update=True)


def test_baselines_check_in_its_mode_and_lists_what_it_wrote(tmp_path: Any) -> None:
    """Baselines (the coordgap_baselines fixture) compares by default, writes when updating."""
    path = tmp_path / "b.json"
    refresh = Baselines(update=True)
    assert refresh.check(ledger_with(95, 100, "x"), path) is None
    assert refresh.check(ledger_with(95, 100, "x"), str(path)) is None
    assert refresh.written == (str(path),)
    compare = Baselines()
    result = compare.check(ledger_with(94, 100, "x"), path)
    assert result is not None and not result.regressed
    assert compare.written == ()
    with pytest.raises(coordgap.ReliabilityError, match="regressed"):
        compare.check(ledger_with(50, 100, "x"), path)


@pytest.mark.parametrize("value", [True, "0.9", float("nan"), -0.1, 1.5, None])
def test_checked_probability_refuses_what_is_not_a_probability(value: object) -> None:
    """One check of a user's rate: bools, strings, NaN and values outside [0, 1] are refused,
    with the argument's name and an example in the message."""
    with pytest.raises(
        coordgap.ConfigurationError,
        match=r"^rate=.*a fault rate is a probability in \[0, 1\] \(0.04 for 4 %\)",
    ):
        checked_probability(value, "rate", noun="a fault rate", example="0.04 for 4 %")
    assert checked_probability(0, "rate") == 0.0 and checked_probability(1, "rate") == 1.0


def test_every_rate_argument_goes_through_the_one_check() -> None:
    """coordgap.testing re-exports the bottom layer's one check of a rate; the assertions,
    the audit and fault injection refuse with its message, each naming its kind of value."""
    from coordgap import _checks

    assert checked_probability is _checks.checked_probability
    refused = {
        "threshold": lambda: assert_reliability(ledger_with(9, 10), end_to_end=90),
        "audit": lambda: coordgap.audit(build(0.0), nodes=1.5),
        "fault": lambda: faults.inject(build(0.0), nodes=True),
    }
    said = {}
    for what, call in refused.items():
        with pytest.raises(coordgap.ConfigurationError) as info:
            call()
        said[what] = str(info.value)
    assert said == {
        "threshold": "end_to_end=90: a reliability threshold is a probability in [0, 1] "
        "(0.9 for 90 %).",
        "audit": "nodes=1.5: a reliability is a probability in [0, 1] (0.9 for 90 %).",
        "fault": "nodes=True: a fault rate is a probability in [0, 1] (0.04 for 4 %).",
    }


def test_has_ledger_is_defined_below_the_report_and_re_exported() -> None:
    """coordgap.report() is typed with the ledger layer's HasLedger; testing re-exports it,
    and an instrumented graph and a LedgerScope both carry a ledger the report reads."""
    import coordgap.testing as testing
    from coordgap import _ledger

    assert testing.HasLedger is _ledger.HasLedger
    app = coordgap.instrument(build(), name="typed", spans="off", metrics=False)
    drive(app, 3)
    with testing.LedgerScope() as scope:
        scope.track(app, reset=False)
        assert report(scope).end_to_end.runs == report(app).end_to_end.runs == 3
