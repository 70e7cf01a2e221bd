"""The report's math: intervals, the visit-weighted product, the gap, sensitivities."""

from __future__ import annotations

import math
import random
import threading
import time
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordgap._ledger import HandoffStats, Ledger, LedgerSnapshot, NodeStats, RunStats
from coordgap._report import Estimate, Report, _solve_visits, report, wilson_interval
from coordgap.errors import ConfigurationError
from coordgap.events import HandoffOutcome, NodeOutcome, RouterOutcome, RunOutcome
from coordgap.topology import DeclaredHandoff, Topology

G = "g"


def node(name: str, ok: bool, attempt: int = 1, final: bool = True) -> NodeOutcome:
    return NodeOutcome(G, name, ok, attempt, final, 0, 1000)


def handoff(source: str, target: str, ok: bool = True, kind: str = "edge") -> HandoffOutcome:
    return HandoffOutcome(
        G, source, target, kind, ok, 0, 0, error_type=None if ok else "ContractViolation"
    )  # type: ignore[arg-type]


def run(ok: bool, clean: bool) -> RunOutcome:
    return RunOutcome(G, "ok" if ok else "error", clean, 0, 0)


def simulate_chain(
    ledger: Ledger,
    rng: random.Random,
    runs: int,
    nodes: list[tuple[str, float]],
    handoff_p: float,
) -> None:
    """A linear graph: a failed node raises (the run stops); a broken handoff still delivers."""
    for _ in range(runs):
        prev, clean, ok = "__start__", True, True
        for name, p in nodes:
            h = prev == "__start__" or rng.random() < handoff_p
            ledger.record(handoff(prev, name, h))
            clean &= h
            n = rng.random() < p
            ledger.record(node(name, n))
            if not n:
                ok = False
                break
            prev = name
        if ok:
            ledger.record(handoff(prev, "__end__"))
        ledger.record(run(ok, ok and clean))


def simulate_loop(ledger: Ledger, rng: random.Random, runs: int, retry: float) -> float:
    """retrieve -> analyze -> check -(router)-> analyze (retry) | synthesize -> END.

    Returns the exact probability of a clean run under this model.
    """
    p = {"retrieve": 0.99, "analyze": 0.97, "check": 0.98, "synthesize": 0.96}
    hp, rp = 0.98, 0.99
    for _ in range(runs):
        clean = ok = True

        def step(name: str, src: str) -> bool:
            nonlocal clean, ok
            h = rng.random() < hp if src != "__start__" else True
            ledger.record(handoff(src, name, h, "conditional" if src == "check" else "edge"))
            clean &= h
            n = rng.random() < p[name]
            ledger.record(node(name, n))
            ok &= n
            return n

        if step("retrieve", "__start__") and step("analyze", "retrieve"):
            while ok and step("check", "analyze"):
                r_ok = rng.random() < rp
                target = "analyze" if rng.random() < retry else "synthesize"
                ledger.record(RouterOutcome(G, "route", "check", r_ok, (target,), 0, 0))
                clean &= r_ok
                if target == "analyze":
                    if not step("analyze", "check"):
                        break
                    continue
                if step("synthesize", "check"):
                    ledger.record(handoff("synthesize", "__end__"))
                break
        ledger.record(run(ok, ok and clean))
    # Per pass of the loop: check, router, handoffs; exact value by summing the geometric series.
    per_loop = p["check"] * rp * hp
    head = p["retrieve"] * hp * p["analyze"]
    back = retry * hp * p["analyze"]
    out = (1 - retry) * hp * p["synthesize"]
    return head * per_loop * out / (1 - per_loop * back)


# -- intervals ------------------------------------------------------------------------------


@given(st.integers(0, 10_000), st.integers(1, 10_000), st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_wilson_interval_is_inside_unit_and_contains_point(s: int, n: int, conf: float) -> None:
    s = min(s, n)
    low, high = wilson_interval(s, n, conf)
    assert 0.0 <= low <= s / n <= high <= 1.0


@given(st.integers(0, 500), st.integers(1, 500))
def test_wilson_interval_is_monotone_in_successes(s: int, n: int) -> None:
    s = min(s, n - 1)
    a, b = wilson_interval(s, n), wilson_interval(s + 1, n)
    assert b[0] >= a[0] and b[1] >= a[1]


@given(st.integers(1, 200), st.integers(1, 50))
def test_wilson_interval_narrows_with_more_data(n: int, k: int) -> None:
    a = wilson_interval(9 * n, 10 * n)
    b = wilson_interval(9 * n * k, 10 * n * k)
    assert (b[1] - b[0]) <= (a[1] - a[0]) + 1e-12


def test_wilson_without_data_is_the_whole_unit_interval() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_confidence_outside_unit_interval_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="between 0 and 1"):
        wilson_interval(1, 2, 1.5)


def test_wilson_covers_the_truth_at_the_stated_rate() -> None:
    rng = random.Random(20240501)
    hits = 0
    trials = 2000
    for _ in range(trials):
        p = rng.choice([0.9, 0.95, 0.98])
        n = rng.choice([50, 200, 1000])
        s = sum(rng.random() < p for _ in range(n))
        low, high = wilson_interval(s, n)
        hits += low <= p <= high
    assert 0.93 <= hits / trials <= 0.97


# -- the product -----------------------------------------------------------------------------


def chain_snapshot(nodes: list[tuple[int, int]], handoffs: list[int]) -> LedgerSnapshot:
    """A linear chain where each node i ran n_i times and failed f_i; runs stop on failure.

    ``handoffs[i]`` failures on the handoff from node i to node i+1 (delivered anyway).
    """
    names = [f"n{i}" for i in range(len(nodes))]
    runs = nodes[0][0]
    ns = {}
    hs = {("__start__", names[0]): HandoffStats("__start__", names[0], runs)}
    for i, (n, f) in enumerate(nodes):
        ns[names[i]] = NodeStats(executions=n, failures=f, attempts=n, first_attempt_ok=n - f)
        if i + 1 < len(nodes):
            hs[(names[i], names[i + 1])] = HandoffStats(
                names[i], names[i + 1], transfers=n - f, failures=handoffs[i]
            )
    clean = 0  # not used by the product
    return LedgerSnapshot(
        G,
        MappingProxyType(ns),
        MappingProxyType(hs),
        MappingProxyType({}),
        RunStats(runs=runs, ok=runs, clean=clean),
    )


@st.composite
def chains(draw: st.DrawFn) -> tuple[list[tuple[int, int]], list[int]]:
    k = draw(st.integers(1, 8))
    n = draw(st.integers(1, 5000))
    nodes, hand = [], []
    for i in range(k):
        f = draw(st.integers(0, n))
        if i + 1 < k and n - f == 0:
            f = n - 1 if n > 1 else 0
        nodes.append((n, f))
        if i + 1 < k:
            hand.append(draw(st.integers(0, n - f)))
            n = n - f
            if n == 0:
                break
    return nodes[: len(hand) + 1], hand[: len(nodes) - 1]


@settings(max_examples=100)
@given(chains())
def test_product_identity_on_a_linear_graph(chain: tuple[list[tuple[int, int]], list[int]]) -> None:
    nodes, hand = chain
    rep = report(chain_snapshot(nodes, hand))
    expected_naive = math.prod((n - f) / n for n, f in nodes)
    expected = expected_naive * math.prod(
        1 - g / (n - f) for (n, f), g in zip(nodes[:-1], hand, strict=True)
    )
    # Every component of a linear graph is visited once per run, failures or not.
    assert all(math.isclose(c.visits, 1.0) for c in rep.components if c.executions)
    assert rep.naive == pytest.approx(expected_naive, rel=1e-9, abs=1e-12)
    assert rep.predicted == pytest.approx(expected, rel=1e-9, abs=1e-12)


@settings(max_examples=100)
@given(chains())
def test_bounds_gap_and_sensitivities(chain: tuple[list[tuple[int, int]], list[int]]) -> None:
    rep = report(chain_snapshot(*chain))
    e = rep.end_to_end
    assert e.predicted.value is not None and rep.gap is not None
    assert 0.0 <= e.predicted.low <= e.predicted.value <= e.predicted.high <= 1.0
    assert 0.0 <= e.predicted.value <= e.naive.value <= 1.0  # type: ignore[operator]
    assert rep.gap >= -1e-12
    shares = [c.gap_share for c in rep.components if c.gap_share is not None]
    assert sum(shares) == pytest.approx(rep.gap, abs=1e-9)
    for c in rep.components:
        if c.in_product:
            assert c.if_perfect is not None
            assert c.if_perfect >= e.predicted.value - 1e-12
            assert c.gain == pytest.approx(max(0.0, c.if_perfect - e.predicted.value))
    gains = [c.gain for c in rep.weakest]
    assert gains == sorted(gains, reverse=True) and all(g > 0 for g in gains)


@settings(max_examples=100)
@given(chains(), st.data())
def test_one_more_failure_never_raises_the_prediction(
    chain: tuple[list[tuple[int, int]], list[int]], data: st.DataObject
) -> None:
    nodes, hand = chain
    i = data.draw(st.integers(0, len(nodes) - 1))
    n, f = nodes[i]
    if f == n:
        return
    worse = [*nodes[:i], (n, f + 1), *nodes[i + 1 :]]
    if i < len(hand):  # one fewer transfer out of node i: its handoff cannot fail more often
        hand = [*hand[:i], min(hand[i], n - f - 1), *hand[i + 1 :]]
    before = report(chain_snapshot(nodes, chain[1])).predicted
    after = report(chain_snapshot(worse, hand)).predicted
    assert after is not None and before is not None
    assert after <= before + 1e-12


def test_predicted_interval_covers_the_truth_at_the_stated_rate() -> None:
    rng = random.Random(7)
    nodes = [("a", 0.98), ("b", 0.95), ("c", 0.97)]
    truth = math.prod(p for _, p in nodes) * 0.97 ** (len(nodes) - 1)
    hits = trials = 0
    for _ in range(200):
        ledger = Ledger(G)
        simulate_chain(ledger, rng, 300, nodes, 0.97)
        pred = report(ledger).end_to_end.predicted
        hits += pred.contains(truth)
        trials += 1
    assert 0.91 <= hits / trials <= 0.99


def test_observed_and_predicted_agree_on_a_simulated_linear_graph() -> None:
    ledger = Ledger(G)
    nodes = [("retrieve", 0.98), ("analyze", 0.96), ("cross_check", 0.97), ("synthesize", 0.95)]
    simulate_chain(ledger, random.Random(11), 20_000, nodes, 0.97)
    rep = report(ledger)
    e = rep.end_to_end
    truth = 0.98 * 0.96 * 0.97 * 0.95 * 0.97**3
    assert e.observed.contains(truth)
    assert e.predicted.contains(truth)
    assert e.predicted.low <= e.observed.value <= e.predicted.high  # type: ignore[operator]
    assert rep.naive == pytest.approx(0.98 * 0.96 * 0.97 * 0.95, abs=0.01)
    assert rep.gap == pytest.approx(0.98 * 0.96 * 0.97 * 0.95 * (1 - 0.97**3), abs=0.01)


def test_visits_are_those_of_a_run_in_which_nothing_fails() -> None:
    # A failure ends the run, so later components run less than once per run: raw
    # executions / runs shows that; the flow visits (and the chain) do not depend on it.
    ledger = Ledger(G)
    nodes = [("a", 0.9), ("b", 0.9), ("c", 0.9), ("d", 0.9)]
    simulate_chain(ledger, random.Random(3), 20_000, nodes, 1.0)
    flow, raw = report(ledger), report(ledger, visits="raw")
    assert flow.end_to_end.predicted.contains(0.9**4)
    assert raw.nodes["d"].visits == pytest.approx(0.9**3, abs=0.01)
    assert flow.nodes["d"].visits == pytest.approx(1.0)
    assert raw.predicted == flow.predicted  # the prediction is the chain's either way


def test_observed_and_predicted_agree_on_a_graph_with_a_loop_and_a_router() -> None:
    ledger = Ledger(G)
    truth = simulate_loop(ledger, random.Random(5), 20_000, retry=0.3)
    rep = report(ledger)
    e = rep.end_to_end
    assert rep.nodes["analyze"].visits == pytest.approx(1 / 0.7, rel=0.03)
    assert rep.routers["route"].visits == pytest.approx(1 / 0.7, rel=0.03)
    assert rep.handoffs[("check", "analyze")].visits == pytest.approx(0.3 / 0.7, rel=0.05)
    assert e.observed.contains(truth)
    # The absorbing chain is exact on a loop whose router does not remember the run.
    assert e.predicted.contains(truth)
    assert e.predicted.contains(e.observed.value)  # type: ignore[arg-type]
    assert not rep.findings


# -- special components --------------------------------------------------------------------------


def test_invalid_routes_are_weighted_per_source_and_not_counted_twice_with_the_router() -> None:
    ledger = Ledger(G)
    rng = random.Random(1)
    for _ in range(1000):
        ledger.record(handoff("__start__", "a"))
        ledger.record(node("a", True))
        bad = rng.random() < 0.05
        ledger.record(
            RouterOutcome(G, "route", "a", not bad, ("__unknown__",) if bad else ("b",), 0, 0)
        )
        if bad:
            ledger.record(handoff("a", "__unknown__", False, "conditional"))
            ledger.record(run(True, False))
            continue
        ledger.record(handoff("a", "b", True, "conditional"))
        ledger.record(node("b", True))
        ledger.record(run(True, True))
    rep = report(ledger)
    unknown = rep.handoffs[("a", "__unknown__")]
    assert unknown.label == "a -> __unknown__"
    assert unknown.failures == 0 and not unknown.in_product  # the router line carries them
    assert rep.end_to_end.predicted.contains(rep.end_to_end.observed.value)  # type: ignore[arg-type]
    assert rep.weakest[0].kind == "router"


def test_invalid_command_routes_without_router_form_one_component_per_source() -> None:
    ledger = Ledger(G)
    for i in range(1000):
        ledger.record(handoff("__start__", "a"))
        ledger.record(node("a", True))
        if i % 20 == 0:
            ledger.record(handoff("a", "__unknown__", False, "command"))
            ledger.record(run(True, False))
        else:
            ledger.record(handoff("a", "b", True, "command"))
            ledger.record(node("b", True))
            ledger.record(run(True, True))
    rep = report(ledger)
    unknown = rep.handoffs[("a", "__unknown__")]
    assert (unknown.executions, unknown.failures) == (1000, 50)
    assert unknown.reliability.value == pytest.approx(0.95)
    assert rep.predicted == pytest.approx(0.95)


def test_retries_report_first_attempt_and_eventual_reliability() -> None:
    ledger = Ledger(G)
    for i in range(100):
        if i % 4 == 0:
            ledger.record(node("a", False, attempt=1, final=False))
            ledger.record(node("a", True, attempt=2))
        else:
            ledger.record(node("a", True))
        ledger.record(run(True, True))
    c = report(ledger).nodes["a"]
    assert c.retried and c.attempts == 125
    assert c.reliability.value == 1.0
    assert c.first_attempt is not None and c.first_attempt.value == pytest.approx(0.75)


def test_subgraph_containers_are_not_in_the_product() -> None:
    topo = Topology(G, ("outer", "outer/x", "outer/y"), subgraphs=("outer",))
    ledger = Ledger(G, topo)
    for i in range(100):
        ok = i % 10 != 0
        ledger.record(node("outer/x", True))
        ledger.record(node("outer/y", ok))
        ledger.record(node("outer", ok))
        ledger.record(run(ok, ok))
    rep = report(ledger)
    assert not rep.nodes["outer"].in_product
    assert rep.predicted == pytest.approx(0.9)


def test_declared_but_unseen_components_are_listed_without_data() -> None:
    topo = Topology(
        G,
        ("a", "b"),
        (DeclaredHandoff("a", "b", "edge"), DeclaredHandoff("__start__", "a", "edge")),
    )
    rep = report(Ledger(G, topo))
    assert rep.nodes["b"].reliability.value is None and not rep.nodes["b"].in_product
    assert ("a", "b") in rep.handoffs
    assert rep.predicted is None and rep.gap is None
    assert rep.end_to_end.observed.value is None


def test_without_runs_every_component_weighs_one_visit() -> None:
    ledger = Ledger(G)
    for i in range(10):
        ledger.record(node("a", i != 0))
    rep = report(ledger)
    assert rep.predicted == pytest.approx(0.9)
    assert any("no finished runs" in n for n in rep.notes)


def loop_snapshot(executions: int, failures: int, self_transfers: int) -> LedgerSnapshot:
    hs = {
        ("a", "a"): HandoffStats("a", "a", transfers=self_transfers),
        ("__start__", "a"): HandoffStats("__start__", "a", 10),
    }
    return LedgerSnapshot(
        G,
        MappingProxyType({"a": NodeStats(executions=executions, failures=failures)}),
        MappingProxyType(hs),
        MappingProxyType({}),
        RunStats(runs=10, ok=10, clean=10),
    )


def test_a_self_loop_is_solved_to_the_recorded_visits() -> None:
    rep = report(loop_snapshot(40, 0, 30))
    assert rep.nodes["a"].visits == pytest.approx(4.0)
    assert rep.handoffs[("a", "a")].visits == pytest.approx(3.0)


def test_counts_implying_a_loop_that_never_exits_fall_back_to_recorded_visits() -> None:
    # More transfers out than successes (e.g. a scrape taken mid-update): never spin on it.
    rep = report(loop_snapshot(40, 30, 30))
    assert rep.nodes["a"].visits == pytest.approx(4.0)
    assert any("never exits" in n and "executions per run" in n for n in rep.notes)
    assert rep.predicted == 0.0  # the chain's answer for a loop that is never left


def test_solve_visits_handles_loops_exactly() -> None:
    v = _solve_visits(
        {"__start__": 1.0}, [("__start__", "a", 1.0), ("a", "b", 1.0), ("b", "a", 0.5)]
    )
    assert v["a"] == pytest.approx(2.0) and v["b"] == pytest.approx(2.0)


def test_solve_visits_on_a_deep_chain_does_not_recurse() -> None:
    edges = [(f"n{i}", f"n{i + 1}", 1.0) for i in range(5000)]
    v = _solve_visits({"n0": 1.0}, edges)
    assert v["n5000"] == 1.0


# -- entry points ----------------------------------------------------------------------------------


def test_report_accepts_ledger_snapshot_and_instrumented_object() -> None:
    ledger = Ledger(G)
    ledger.record(node("a", True))
    ledger.record(run(True, True))

    class App:
        coordgap_ledger = ledger

    for src in (ledger, ledger.snapshot(), App()):
        assert report(src).nodes["a"].executions == 1
    assert Report.from_snapshot(ledger.snapshot()).nodes["a"].executions == 1


def test_report_of_something_without_a_ledger_says_how_to_get_one() -> None:
    with pytest.raises(ConfigurationError, match=r"coordgap\.instrument"):
        report(object())


def test_estimate_converts_to_float() -> None:
    assert float(Estimate(0.5, 0.4, 0.6)) == 0.5
    assert math.isnan(float(Estimate(None, 0.0, 1.0)))


def test_report_while_eight_threads_record_does_not_block_them() -> None:
    ledger = Ledger(G)
    per_thread = 3000
    stop_reports = threading.Event()
    done = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(per_thread):
            ok = rng.random() < 0.9
            ledger.record(handoff("__start__", "a"))
            ledger.record(node("a", ok))
            ledger.record(run(ok, ok))
        done.append(seed)

    reports: list[Report] = []

    def reporter() -> None:
        while not stop_reports.is_set():
            reports.append(report(ledger))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    r = threading.Thread(target=reporter)
    r.start()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    elapsed = time.perf_counter() - t0
    stop_reports.set()
    r.join(timeout=10)
    assert len(done) == 8, "a recording thread was blocked"
    assert elapsed < 30
    assert reports
    last = 0
    for rep in reports:
        a = rep.nodes.get("a")
        if a is None:
            continue
        assert 0 <= a.failures <= a.executions
        assert a.executions >= last  # counts only grow: each report saw one moment
        last = a.executions
        assert rep.predicted is None or 0.0 <= rep.predicted <= 1.0
    final = report(ledger)
    assert final.nodes["a"].executions == 8 * per_thread
    assert final.end_to_end.runs == 8 * per_thread
