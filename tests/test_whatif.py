"""What-if planning: the model's math (hypothesis properties), recommend, the CLI."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import coordgap
from coordgap import cli
from coordgap._audit import audit
from coordgap._ledger import Ledger
from coordgap._report import Report, report
from coordgap.errors import ConfigurationError
from coordgap.events import NodeOutcome, RunOutcome
from coordgap.semconv import END, START
from coordgap.topology import DeclaredHandoff, Topology
from coordgap.whatif import recommend, retried, what_if

PROPS = settings(max_examples=60, deadline=None, derandomize=True)
DESIGN = {"retrieve": 0.98, "analyze": 0.96, "cross_check": 0.97, "synthesize": 0.95}


def chain(names: list[str]) -> Topology:
    hops = [START, *names, END]
    return Topology(
        graph="chain",
        nodes=tuple(names),
        handoffs=tuple(DeclaredHandoff(a, b, "edge") for a, b in itertools.pairwise(hops)),
    )


def audited(nodes: dict[str, float], handoffs: float | dict) -> Report:
    return audit(chain(list(nodes)), nodes=nodes, handoffs=handoffs)


def design() -> Report:
    return audited(DESIGN, 0.97)


rates = st.floats(min_value=0.05, max_value=1.0)
chains = st.lists(rates, min_size=1, max_size=5).flatmap(
    lambda ns: st.tuples(st.just(ns), st.lists(rates, min_size=len(ns) - 1, max_size=len(ns) - 1))
)


def from_rates(ns: list[float], hs: list[float]) -> Report:
    names = [f"n{i}" for i in range(len(ns))]
    handoffs = {(a, b): r for (a, b), r in zip(itertools.pairwise(names), hs, strict=True)}
    return audited(dict(zip(names, ns, strict=True)), handoffs)


# -- the design's numbers -------------------------------------------------------------


def test_design_numbers_and_one_change_each() -> None:
    rep = design()
    assert rep.predicted == pytest.approx(0.867 * 0.97**3, abs=1e-3)
    w = what_if(
        rep,
        retries={"analyze": 3},
        perfect=["retrieve -> analyze"],
        reliability={"synthesize": 0.99},
    )
    after = 0.98 * retried(0.96, 3) * 0.97 * 0.99 * 0.97**2
    assert w.predicted == pytest.approx(after)
    assert w.naive == pytest.approx(0.98 * retried(0.96, 3) * 0.97 * 0.99)
    assert w.gap == pytest.approx(w.naive - after)
    by = {c.kind: c for c in w.changes}
    assert by["retries"].after == pytest.approx(1 - 0.04**3)
    assert by["retries"].predicted == pytest.approx(rep.predicted / 0.96 * (1 - 0.04**3))
    assert by["perfect"].predicted == pytest.approx(rep.predicted / 0.97)
    assert by["perfect"].delta_gap == pytest.approx(rep.predicted - by["perfect"].predicted)
    assert by["reliability"].delta_predicted == pytest.approx(rep.predicted * (0.99 / 0.95 - 1))
    assert w.delta_predicted == pytest.approx(after - rep.predicted)
    assert any("independent" in a for a in w.assumptions)
    text = w.to_text()
    assert "analyze with 3 attempts" in text and "retrieve -> analyze perfect" in text
    json.dumps(w.to_dict())


@pytest.mark.parametrize(
    "name",
    ["retrieve -> analyze", "retrieve->analyze", " retrieve -> analyze ", ("retrieve", "analyze")],
)
def test_handoff_spellings_are_the_same_component(name: object) -> None:
    w = what_if(design(), perfect=[name])  # type: ignore[list-item]
    assert w.predicted == pytest.approx(design().predicted / 0.97)


def test_the_old_arrow_still_works_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match="retrieve -> analyze"):
        w = what_if(design(), perfect=["retrieve→analyze"])
    assert w.predicted == pytest.approx(design().predicted / 0.97)


def test_unknown_names_and_bad_values_are_configuration_errors() -> None:
    rep = design()
    with pytest.raises(ConfigurationError, match="known: analyze"):
        what_if(rep, perfect=["analyse"])
    with pytest.raises(ConfigurationError, match="retries apply to nodes"):
        what_if(rep, retries={"retrieve->analyze": 2})
    with pytest.raises(ConfigurationError, match="attempts >= 1"):
        what_if(rep, retries={"analyze": 0})
    with pytest.raises(
        ConfigurationError,
        match=r"^reliability\['analyze'\]=1.2: a reliability is a probability in \[0, 1\]",
    ):
        what_if(rep, reliability={"analyze": 1.2})
    with pytest.raises(ConfigurationError, match="path from retrieve to analyze"):
        what_if(rep, fallback={"retrieve->analyze": "analyze->retrieve"})
    with pytest.raises(ConfigurationError, match="no measured reliability for node 'cache'"):
        what_if(rep, fallback={"retrieve->analyze": "retrieve->cache->analyze"})


def test_fallback_adds_its_alternative_path() -> None:
    rep = design()
    w = what_if(rep, fallback={"analyze": 0.9})
    assert w.changes[0].after == pytest.approx(0.96 + 0.04 * 0.9)
    alt = what_if(
        rep,
        fallback={"retrieve -> analyze": "retrieve -> cache -> analyze"},
        reliability={"cache": 0.99, "retrieve -> cache": 0.98},
    )
    r_alt = 0.99 * 0.98  # cache->analyze is neither measured nor given: not modelled (1)
    assert alt.changes[0].after == pytest.approx(0.97 + 0.03 * r_alt)
    assert alt.predicted == pytest.approx(rep.predicted / 0.97 * (0.97 + 0.03 * r_alt))


def test_retries_use_the_measured_first_attempt_reliability() -> None:
    ledger = Ledger("g", chain(["a"]))
    for i in range(100):
        if i < 90:
            ledger.record(NodeOutcome("g", "a", True, 1, True, 0, 1))
        else:
            ledger.record(NodeOutcome("g", "a", False, 1, False, 0, 1, error_type="E"))
            ok = i < 98
            ledger.record(NodeOutcome("g", "a", ok, 2, True, 0, 1, error_type=None if ok else "E"))
        ledger.record(RunOutcome("g", "ok" if i < 98 else "error", i < 98, 0, 1))
    rep = report(ledger)
    assert rep.nodes["a"].reliability.value == pytest.approx(0.98)
    assert rep.nodes["a"].first_attempt.value == pytest.approx(0.90)  # type: ignore[union-attr]
    w = what_if(rep, retries={"a": 3})
    assert w.changes[0].after == pytest.approx(1 - 0.1**3)
    # One attempt is a what-if too: the node without its current retries.
    assert what_if(rep, retries={"a": 1}).predicted == pytest.approx(0.90)
    # The what-if report is a full report: every renderer works on it.
    assert "a" in w.report.to_text(color=False) and w.report.basis == "what-if"


def test_live_report_of_the_research_agent() -> None:
    from coverage_graphs import research_agent

    app = coordgap.instrument(research_agent(fallback_every=4), name="research")
    for i in range(12):
        app.invoke({"run": i})
    rep = coordgap.report(app)
    assert rep.predicted == pytest.approx(1.0)
    w = what_if(rep, reliability={"synthesize": 0.9, "cross_check->retrieve": 0.5})
    # 12 runs, every 4th goes back once: 3 of 15 decisions of the router go back (0.2).
    # F(cross_check) = 0.2·0.5·F(cross_check) + 0.8·0.9  =>  0.72 / 0.9 = 0.8 (by hand).
    assert rep.routers["verdict"].targets == {"retrieve": 3, "synthesize": 12}
    assert w.predicted == pytest.approx(0.8 * 0.9 / (1 - 0.2 * 0.5))


# -- properties -------------------------------------------------------------------------


@PROPS
@given(chains, st.data())
def test_more_retries_never_lower_the_prediction(rs: tuple, data: st.DataObject) -> None:
    rep = from_rates(*rs)
    node = data.draw(st.sampled_from(sorted(rep.nodes)))
    k1 = data.draw(st.integers(1, 6))
    k2 = data.draw(st.integers(k1, 8))
    low = what_if(rep, retries={node: k1}).predicted
    high = what_if(rep, retries={node: k2}).predicted
    assert high >= low - 1e-12
    assert what_if(rep, retries={node: 1}).predicted == pytest.approx(rep.predicted)


@PROPS
@given(chains, st.data())
def test_perfect_components_give_the_product_of_the_rest(rs: tuple, data: st.DataObject) -> None:
    ns, hs = rs
    rep = from_rates(ns, hs)
    names = [f"n{i}" for i in range(len(ns))]
    comps = [*names, *(f"{a}->{b}" for a, b in itertools.pairwise(names))]
    chosen = data.draw(st.lists(st.sampled_from(comps), unique=True))
    rest = [r for n, r in zip(comps, [*ns, *hs], strict=True) if n not in chosen]
    w = what_if(rep, perfect=chosen)
    assert w.predicted == pytest.approx(math.prod(rest))
    assert w.report.predicted == w.predicted  # report.py's own product agrees


@PROPS
@given(chains, st.floats(0.5, 1.0))
def test_recommend_reaches_the_target_under_its_own_model(rs: tuple, target: float) -> None:
    rep = from_rates(*rs)
    plan = recommend(rep, target)
    if not plan.steps:
        assert rep.predicted >= target - 1e-9 or not plan.reached
    after = what_if(rep, **plan.as_kwargs())
    assert after.predicted == pytest.approx(plan.after)
    assert plan.reached == (plan.after >= target - 1e-9)
    costs = [s.cost for s in plan.steps]
    assert costs == sorted(costs)  # cheapest first
    assert plan.cost == pytest.approx(sum(costs))


def brute_force_cost(rep: Report, target: float, max_attempts: int = 5) -> float | None:
    """The cheapest plan by enumerating every combination (small graphs only)."""
    groups = []
    for c in rep.components:
        if not (c.in_product and c.visits > 0):
            continue
        r = c.reliability.value
        opts = [(0.0, {})]
        if c.kind == "node":
            for k in range(2, max_attempts + 1):
                if retried(r, k) > r:
                    opts.append((k - 1.0, {"retries": {c.name: k}}))
        elif r < 1:
            opts.append((3.0, {"perfect": [(c.source, c.target)]}))
        groups.append(opts)
    best = None
    for combo in itertools.product(*groups):
        cost = sum(o[0] for o in combo)
        if best is not None and cost >= best:
            continue
        kw: dict = {"retries": {}, "perfect": []}
        for _, o in combo:
            kw["retries"].update(o.get("retries", {}))
            kw["perfect"] += o.get("perfect", [])
        if what_if(rep, **kw).predicted >= target - 1e-9:
            best = cost
    return best


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    st.lists(st.floats(0.5, 1.0), min_size=1, max_size=3).flatmap(
        lambda ns: st.tuples(
            st.just(ns), st.lists(st.floats(0.5, 1.0), min_size=len(ns) - 1, max_size=len(ns) - 1)
        )
    ),
    st.floats(0.6, 0.999),
)
def test_recommend_is_the_cheapest_plan(rs: tuple, target: float) -> None:
    rep = from_rates(*rs)
    plan = recommend(rep, target)
    best = brute_force_cost(rep, target)
    if best is None:
        assert not plan.reached
    else:
        assert plan.reached and plan.cost == pytest.approx(best)


def test_recommend_on_the_design_agent() -> None:
    rep = design()
    plan = recommend(rep, 0.95)
    assert plan.reached and plan.after >= 0.95
    assert all(s.kind in ("retries", "harden") for s in plan.steps)
    assert "plan reaches 0.950" in plan.to_text()
    assert recommend(rep, 0.5).steps == ()  # already there
    json.dumps(plan.to_dict())


def test_recommend_cannot_fix_a_node_that_always_fails() -> None:
    rep = audited({"a": 0.0, "b": 0.9}, 0.9)
    plan = recommend(rep, 0.5)
    assert not plan.reached and plan.after == 0.0
    with pytest.raises(ConfigurationError):
        recommend(rep, 0.0)


# -- command line --------------------------------------------------------------------------


def test_cli_what_if_on_a_saved_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "report.json"
    path.write_text(design().to_json())
    code = cli.main(
        [
            "what-if",
            str(path),
            "--retries",
            "analyze=3",
            "--perfect",
            "retrieve->analyze",
            "--target",
            "0.95",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "analyze with 3 attempts" in out and "plan reaches 0.950" in out
    code = cli.main(["what-if", str(path), "--reliability", "synthesize=0.99", "-f", "json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["what_if"]["after"]["predicted"] == pytest.approx(design().predicted * 0.99 / 0.95)


def test_cli_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "report.json"
    path.write_text(design().to_json())
    assert cli.main(["what-if", str(path), "--retries", "analyze"]) == 2
    assert cli.main(["what-if", str(path), "--retries", "nope=2"]) == 2
    assert cli.main(["what-if", str(tmp_path / "missing.json")]) == 2
    assert "error" in capsys.readouterr().err


# -- the audit's D2, D4, D5 ---------------------------------------------------------------


def test_retries_know_a_router_is_retried_with_its_node() -> None:
    # D2: a router (0.5) on node a with RetryPolicy(max_attempts=5): truth 1 - 0.5⁵ = 0.969.
    from chain_sim import ROWS, simulate

    rep = report(simulate(ROWS["retried router"], 2000, seed=11))
    a = rep.nodes["a"]
    assert a.max_attempts == 5 and a.first_attempt is not None
    p1 = a.first_attempt.value
    assert p1 == pytest.approx(0.5, abs=0.04)  # a failed router is a failed attempt of a
    assert rep.end_to_end.predicted.contains(1 - 0.5**5)
    same = what_if(rep, retries={"a": 5})
    assert same.predicted == pytest.approx(retried(p1, 5))  # the router is part of a's task
    assert same.interval.contains(1 - 0.5**5)
    assert same.report.routers["to_b"].reliability.value == 1.0
    fewer = what_if(rep, retries={"a": 3})
    assert fewer.predicted == pytest.approx(retried(p1, 3))
    assert fewer.interval.contains(1 - 0.5**3)


def test_recommend_breaks_ties_by_fewer_changes() -> None:
    # D4: nodes .934/.989/.942, handoff n0 -> n1 .952, target .886: n0 with 3 attempts
    # (cost 2, one change, 0.8867) beats n0 and n2 with 2 attempts each (cost 2, two changes).
    rep = audited({"n0": 0.934, "n1": 0.989, "n2": 0.942}, {("n0", "n1"): 0.952})
    plan = recommend(rep, 0.886)
    assert plan.reached and plan.cost == 2
    assert [(s.component, s.attempts) for s in plan.steps] == [("n0", 3)]
    assert plan.after == pytest.approx(retried(0.934, 3) * 0.989 * 0.942 * 0.952)


def _plan_at_truth(plan: coordgap.whatif.Plan) -> float:
    """The true end to end of the seed's agent with a plan applied (by hand: a product)."""
    out = 1.0
    retries = plan.as_kwargs().get("retries", {})
    hardened = set(plan.as_kwargs().get("perfect", []))
    for name, r in DESIGN.items():
        out *= retried(r, retries[name]) if name in retries else r
    names = list(DESIGN)
    for a, b in itertools.pairwise(names):
        out *= 1.0 if f"{a} -> {b}" in hardened else 0.97
    return out


def test_plans_on_the_lower_bound_reach_their_target_at_the_true_rates() -> None:
    # D5: plans from 300-run reports, judged at the true rates. On the point estimate they
    # miss about as often as they reach; on the lower bound they almost always reach.
    import random as _random

    from chain_sim import ROWS, sample

    rng = _random.Random(21)
    reached = {"low": 0, "point": 0}
    trials = 40
    for _ in range(trials):
        rep = report(sample(ROWS["linear"], 300, rng))
        for on in reached:
            plan = recommend(rep, 0.90, on=on)  # type: ignore[arg-type]
            reached[on] += _plan_at_truth(plan) >= 0.90
    assert reached["low"] / trials >= 0.9
    assert reached["point"] < reached["low"]


def test_no_runs_means_no_data_not_a_plan_on_nothing() -> None:
    from coordgap._ledger import Ledger as _Ledger

    empty = report(_Ledger("empty"))
    plan = recommend(empty, 0.9)
    assert plan.no_data and not plan.reached and plan.steps == ()
    assert "no data" in plan.to_text() and "1.000" not in plan.to_text()
    w = what_if(empty, retries={})
    assert w.predicted is None and "no data" in w.to_text()


def test_what_if_intervals_come_from_the_counts() -> None:
    from chain_sim import ROWS, simulate

    rep = report(simulate(ROWS["linear"], 500, seed=4))
    w = what_if(rep, retries={"synthesize": 3})
    est = w.interval
    assert est.method == "delta-log" and est.low < est.value < est.high  # type: ignore[operator]
    # never narrower than the data allows: about as wide as the report's own interval
    base = rep.end_to_end.predicted
    assert (est.high - est.low) > 0.5 * (base.high - base.low)
    change = w.changes[0]
    assert change.predicted_low is not None and change.predicted_low < change.predicted  # type: ignore[operator]
    assert "[" in w.to_text()
    data = w.to_dict()
    assert data["after"]["low"] == pytest.approx(est.low)


def test_what_if_on_a_loop_re_solves_the_chain() -> None:
    # The looped research agent (cross_check -> retrieve 10 % of the time): a retry on a node
    # in the loop, by hand from the chain's equations, not Π r^visits.
    topo = Topology(
        "loop",
        ("retrieve", "analyze", "cross_check", "synthesize"),
        (
            DeclaredHandoff(START, "retrieve", "edge"),
            DeclaredHandoff("retrieve", "analyze", "edge"),
            DeclaredHandoff("analyze", "cross_check", "edge"),
            DeclaredHandoff("cross_check", "retrieve", "conditional"),
            DeclaredHandoff("cross_check", "synthesize", "conditional"),
            DeclaredHandoff("synthesize", END, "edge"),
        ),
    )
    rep = audit(topo, nodes=DESIGN, handoffs=0.97, branches={("cross_check", "retrieve"): 0.1})

    def truth(analyze: float) -> float:
        # one pass s = retrieve·h·analyze·h·cross_check; back with 0.1 through h, else on
        s = 0.98 * 0.97 * analyze * 0.97 * 0.97
        return s * 0.9 * 0.97 * 0.95 / (1 - s * 0.1 * 0.97)

    assert rep.predicted == pytest.approx(truth(0.96))
    # the figures docs/what-if.md quotes
    assert f"{rep.predicted:.3f} {rep.naive:.3f} {rep.gap:.3f}" == "0.777 0.859 0.082"
    assert what_if(rep, retries={"analyze": 3}).predicted == pytest.approx(truth(retried(0.96, 3)))
