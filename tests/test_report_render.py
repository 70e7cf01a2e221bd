"""Renderers: text (snapshot), Markdown, JSON (round trip, schema checks), Mermaid, diff."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordgap._ledger import Ledger
from coordgap._report import Report, render_json, report
from coordgap.errors import ConfigurationError
from coordgap.events import HandoffOutcome, NodeOutcome, RouterOutcome, RunOutcome
from coordgap.render import render_mermaid, render_text

G = "research"


def small_ledger(retrieve_failures: tuple[int, ...] = (3,)) -> Ledger:
    """20 runs of START -> retrieve -> analyze -(route)-> END with a few known failures."""
    ledger = Ledger(G)
    for i in range(20):
        ledger.record(HandoffOutcome(G, "__start__", "retrieve", "edge", True, 0, 0))
        ok = i not in retrieve_failures
        ledger.record(NodeOutcome(G, "retrieve", ok, 1, True, 0, 0))
        if not ok:
            ledger.record(RunOutcome(G, "error", False, 0, 0))
            continue
        handoff_ok = i != 5
        ledger.record(HandoffOutcome(G, "retrieve", "analyze", "edge", handoff_ok, 0, 0))
        if i == 7:
            ledger.record(NodeOutcome(G, "analyze", False, 1, False, 0, 0))
        ledger.record(NodeOutcome(G, "analyze", True, 2 if i == 7 else 1, True, 0, 0))
        ledger.record(RouterOutcome(G, "route", "analyze", True, ("__end__",), 0, 0))
        ledger.record(HandoffOutcome(G, "analyze", "__end__", "conditional", True, 0, 0))
        ledger.record(RunOutcome(G, "ok", handoff_ok, 0, 0))
    return ledger


TEXT_SNAPSHOT = """\
coordgap report - graph 'research' - 20 runs (20 finished, 0 interrupted)

end to end        value  95 % interval
observed          0.900  [0.699, 0.972]  clean runs / finished runs (18 / 20)
predicted         0.900  [0.717, 1.000]  absorbing chain over 6 components, delta method
naive             0.950  [0.825, 1.000]  the same with handoffs, routers perfect
coordination gap  0.050                  handoffs 0.050, routers 0.000
run errors        0.050  [0.009, 0.236]  runs that raised (1 / 20)

kind     component               n  failed  reliability  95 % interval   first try  visits    gain
node     retrieve               20       1        0.950  [0.764, 0.991]          -    1.00  +0.047
node     analyze                19       0        1.000  [0.832, 1.000]      0.947    1.00  +0.000
handoff  __start__ -> retrieve  20       0        1.000  [0.839, 1.000]          -    1.00  +0.000
handoff  retrieve -> analyze    19       1        0.947  [0.754, 0.991]          -    1.00  +0.050
handoff  analyze -> __end__     19       0        1.000  [0.832, 1.000]          -    1.00  +0.000
router   route                  19       0        1.000  [0.832, 1.000]          -    1.00  +0.000

weakest: retrieve -> analyze (+0.050), retrieve (+0.047)

gap = naive - predicted: what handoffs and routers cost end to end
visits = executions per run when nothing fails; gain = predicted end to end if the component never failed, minus predicted now
first try = tasks that succeeded on their first attempt (nodes with retries)
"""


def test_text_snapshot() -> None:
    assert render_text(report(small_ledger()), color=False) == TEXT_SNAPSHOT


def test_text_is_coloured_only_when_asked_or_on_a_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    rep = report(small_ledger())
    assert "\x1b[" in rep.to_text(color=True)
    assert "\x1b[" not in str(rep)  # pytest's captured stdout is not a TTY
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in render_text(rep)


def test_markdown_has_the_summary_and_component_tables() -> None:
    md = report(small_ledger()).to_markdown()
    assert md.startswith("## coordgap report: `research`")
    assert "| observed (clean / finished) | 0.900 | [0.699, 0.972] |" in md
    assert "| **coordination gap** | **0.050** |" in md
    assert "| handoff | `retrieve -> analyze` | 19 | 1 | 0.947 |" in md
    assert "**Weakest links:** `retrieve -> analyze` (+0.050)" in md


def test_json_round_trips() -> None:
    rep = report(small_ledger())
    text = rep.to_json()
    data = json.loads(text)
    assert data["schema"] == "coordgap.report/2"
    assert data["gap"] == pytest.approx(0.05)
    back = Report.from_json(text)
    assert back == rep
    assert back.handoffs[("retrieve", "analyze")].failures == 1
    assert back.weakest[0] is back.handoffs[("retrieve", "analyze")]
    assert back.to_json() == text
    assert render_text(back, color=False) == TEXT_SNAPSHOT


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_json_round_trips_for_random_ledgers(seed: int) -> None:
    rng = random.Random(seed)
    failures = tuple(i for i in range(20) if rng.random() < 0.3)
    rep = report(small_ledger(failures), confidence=rng.choice([0.9, 0.95, 0.99]))
    assert Report.from_json(rep.to_json(indent=None)) == rep


def test_json_of_another_schema_version_names_the_fix() -> None:
    data = json.loads(report(small_ledger()).to_json())
    data["schema"] = "coordgap.report/3"
    with pytest.raises(
        ConfigurationError, match=r"coordgap\.report/3.*install the coordgap version"
    ):
        Report.from_json(json.dumps(data))


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[]",
        '{"graph": "g"}',
        '{"schema": "coordgap.report/1", "graph": "g"}',
        '{"schema": "coordgap.report/1", "graph": "g", "components": [{"kind": "node"}]}',
    ],
)
def test_corrupt_json_is_a_configuration_error(text: str) -> None:
    with pytest.raises(ConfigurationError, match=r"Report\.to_json"):
        Report.from_json(text)


def test_json_weakest_must_name_a_component() -> None:
    data = json.loads(report(small_ledger()).to_json())
    data["weakest"] = [["node", "nope"]]
    with pytest.raises(ConfigurationError, match="weakest"):
        Report.from_json(json.dumps(data))


def test_json_never_writes_nan() -> None:
    empty = report(Ledger("empty"))
    data = json.loads(render_json(empty))
    assert data["end_to_end"]["observed"]["value"] is None
    assert Report.from_json(render_json(empty)) == empty


def test_mermaid_shape() -> None:
    mm = render_mermaid(report(small_ledger()), threshold=0.96)
    lines = mm.splitlines()
    assert lines[0] == "flowchart LR"
    assert '  n0["retrieve<br/>0.950"]' in lines
    assert '  n1["analyze<br/>1.000"]' in lines
    assert '  n2(["START"])' in lines
    assert '  n0 -->|"0.947"| n1' in lines
    assert any(line.startswith("  r0{") and "route" in line for line in lines)
    assert "  n1 -.- r0" in lines
    assert any(line.startswith("  classDef failing") for line in lines)
    assert "  class n0 failing" in lines
    assert "  linkStyle 1 stroke:#c62828,stroke-width:2px" in lines  # retrieve -> analyze


def test_mermaid_escapes_quotes_and_marks_invalid_routes() -> None:
    ledger = Ledger(G)
    ledger.record(NodeOutcome(G, 'say "hi"', True, 1, True, 0, 0))
    ledger.record(HandoffOutcome(G, 'say "hi"', "__unknown__", "command", False, 0, 0))
    ledger.record(RunOutcome(G, "ok", False, 0, 0))
    mm = report(ledger).to_mermaid()
    assert "say #quot;hi#quot;" in mm
    assert '[/"invalid route"/]' in mm


def test_compare_flags_a_significant_drop() -> None:
    good = Ledger(G)
    bad = Ledger(G)
    rng = random.Random(2)
    for ledger, p in ((good, 0.99), (bad, 0.85)):
        for _ in range(500):
            ok = rng.random() < p
            ledger.record(NodeOutcome(G, "a", ok, 1, True, 0, 0))
            ledger.record(NodeOutcome(G, "b", True, 1, True, 0, 0))
            ledger.record(RunOutcome(G, "ok" if ok else "error", ok, 0, 0))
    cmp = report(bad).compare(report(good))
    assert cmp.regressed
    names = {(c.kind, c.name) for c in cmp.regressions}
    assert ("node", "a") in names and ("end to end", "observed") in names
    assert ("node", "b") not in names
    assert cmp.changes[0].worse
    text = str(cmp)
    assert "significant drop" in text and "!" in text
    same = report(good).compare(report(good))
    assert not same.regressed and not same.worse


def test_compare_lists_added_and_removed_components() -> None:
    a = report(small_ledger())
    ledger = small_ledger()
    ledger.record(NodeOutcome(G, "extra", True, 1, True, 0, 0))
    cmp = report(ledger).compare(a)
    assert cmp.added == ("extra",)
    assert cmp.removed == ()


# -- digits: a figure never hides a failure ----------------------------------------------


def rare_failures(failures: int, runs: int = 10_000) -> Ledger:
    ledger = Ledger(G)
    for i in range(runs):
        ok = i >= failures
        ledger.record(HandoffOutcome(G, "__start__", "a", "edge", True, 0, 0))
        ledger.record(NodeOutcome(G, "a", ok, 1, True, 0, 0))
        if ok:
            ledger.record(HandoffOutcome(G, "a", "__end__", "edge", True, 0, 0))
        ledger.record(RunOutcome(G, "ok" if ok else "error", ok, 0, 0))
    return ledger


def test_four_failures_in_ten_thousand_do_not_print_as_one() -> None:
    rep = report(rare_failures(4))
    text = rep.to_text(color=False)
    assert rep.nodes["a"].reliability.value == 0.9996
    assert "0.9996" in text.split("observed", 1)[1].splitlines()[0]  # observed
    assert "0.9996" in text.split("predicted", 1)[1].splitlines()[0]  # predicted
    row = next(line for line in text.splitlines() if line.startswith("node"))
    assert "0.9996" in row and "1.000 " not in row.split("[")[0]
    assert "+0.0004" in row  # the gain of the weakest link, not +0.000
    assert "weakest: a (+0.0004)" in text
    md = rep.to_markdown()
    assert "| 0.9996 |" in md


def test_no_failure_in_9994_shows_a_lower_bound_below_one() -> None:
    rep = report(rare_failures(0, 9994))
    text = rep.to_text(color=False)
    assert "[1.000, 1.000]" not in text
    assert "[0.9996, 1.000]" in text


@pytest.mark.parametrize(
    ("x", "shown"),
    [(0.9996, "0.9996"), (0.99996, "0.99996"), (0.97, "0.970"), (1.0, "1.000"), (0.0, "0.000"),
     (0.00004, "0.00004"), (None, "-")],
)  # fmt: skip
def test_fmt_shows_enough_digits(x: float | None, shown: str) -> None:
    from coordgap.render import fmt

    assert fmt(x) == shown


def test_first_try_column_only_with_retry_data_and_a_legend() -> None:
    ledger = rare_failures(3, 200)
    text = report(ledger).to_text(color=False)
    assert "first try" not in text.split("gap =")[0]
    assert "gap = naive - predicted" in text and "visits = executions per run" in text
    assert "first try" in report(small_ledger()).to_text(color=False)


def test_the_measured_gap_has_the_same_digits_as_the_rest() -> None:
    rep = report(small_ledger())
    line = next(x for x in rep.to_text(color=False).splitlines() if x.startswith("coordination"))
    assert "0.050" in line


# -- run-level errors: named, and the report does not look perfect ----------------------------


def recursion_ledger() -> Ledger:
    """A ping-pong that raises GraphRecursionError with no component failing, 3 runs in 5."""
    ledger = Ledger(G)
    for i in range(5):
        ledger.record(HandoffOutcome(G, "__start__", "researcher", "edge", True, 0, 0))
        for _ in range(3 if i < 3 else 1):
            ledger.record(NodeOutcome(G, "researcher", True, 1, True, 0, 0))
            ledger.record(HandoffOutcome(G, "researcher", "chart", "command", True, 0, 0))
            ledger.record(NodeOutcome(G, "chart", True, 1, True, 0, 0))
            ledger.record(HandoffOutcome(G, "chart", "researcher", "command", True, 0, 0))
        if i >= 3:
            ledger.record(NodeOutcome(G, "researcher", True, 1, True, 0, 0))
            ledger.record(HandoffOutcome(G, "researcher", "__end__", "command", True, 0, 0))
            ledger.record(RunOutcome(G, "ok", True, 0, 0))
        else:
            ledger.record(RunOutcome(G, "error", False, 0, 0, error_type="GraphRecursionError"))
    return ledger


def test_runs_that_raised_with_no_component_failing_are_named_everywhere() -> None:
    import dataclasses

    from coordgap._ledger import RunStats

    snap = recursion_ledger().snapshot()
    runs = dataclasses.replace(snap.runs, error_at={"researcher": 3})
    assert isinstance(runs, RunStats)
    rep = report(dataclasses.replace(snap, runs=runs))
    assert rep.findings and "3 runs raised GraphRecursionError" in rep.findings[0]
    assert "last node: researcher" in rep.findings[0]
    text, md, data = rep.to_text(color=False), rep.to_markdown(), json.loads(rep.to_json())
    assert "finding: 3 runs raised GraphRecursionError" in text
    assert "GraphRecursionError 3" in text  # the run errors row
    assert "GraphRecursionError" in md and "**Finding:**" in md
    assert data["end_to_end"]["error_types"] == {"GraphRecursionError": 3}
    assert data["end_to_end"]["error_at"] == {"researcher": 3}
    assert any("GraphRecursionError" in f for f in data["findings"])
    assert "weakest: no component: 3 run(s) raised" in text
    back = Report.from_json(rep.to_json())
    assert back == rep and back.findings == rep.findings


def test_a_report_of_schema_1_is_still_read_and_planned_on() -> None:
    from coordgap.whatif import recommend, what_if

    rep = report(small_ledger())
    data = json.loads(rep.to_json())
    data["schema"] = "coordgap.report/1"
    for key in ("chain", "findings"):
        data.pop(key)
    for key in ("error_types", "error_at"):
        data["end_to_end"].pop(key)
    for c in data["components"]:
        c.pop("max_attempts")
    old = Report.from_json(json.dumps(data))
    assert old.chain is None and old.predicted == rep.predicted
    w = what_if(old, perfect=["retrieve -> analyze"])
    assert w.predicted == pytest.approx(what_if(rep, perfect=["retrieve -> analyze"]).predicted)
    assert recommend(old, 0.95).to_text()
