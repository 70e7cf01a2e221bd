"""Predicted end to end against graphs with known rates: bias, interval coverage, findings.

The graphs, their processes and their hand-derived truths are in ``chain_sim.py`` (no
LangGraph, no coordgap math). Each test draws ledger snapshots of simulated runs, builds
reports, and compares them with the truth.

The default profile is fast (a few seconds, a fixed seed). The long profile behind the
table in docs/report.md -- 1 000 reports per row at 200 and at 2 000 runs, coverage 93-97 %
asked of every history-free row -- runs with::

    COORDGAP_SIM=long .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_predictions.py -s
"""

from __future__ import annotations

import math
import os
import random
import statistics

import pytest
from chain_sim import ROWS, Row, sample, simulate, truth_by_enumeration

from coordgap._report import NOT_INDEPENDENT, Report, report

LONG = os.environ.get("COORDGAP_SIM") == "long"
HISTORY_FREE = [name for name, row in ROWS.items() if row.history_free]


def _reports(row: Row, runs: int, reps: int, seed: int) -> list[Report]:
    rng = random.Random(seed)
    return [report(sample(row, runs, rng)) for _ in range(reps)]


def _finding(rep: Report) -> bool:
    return any(NOT_INDEPENDENT in f for f in rep.findings)


@pytest.mark.parametrize("name", list(ROWS))
def test_each_process_matches_its_hand_derived_truth(name: str) -> None:
    # Enumerating every way one run can go is independent of the closed form in the docstring.
    assert truth_by_enumeration(ROWS[name]) == pytest.approx(ROWS[name].truth, abs=1e-5)


@pytest.mark.parametrize("name", list(ROWS))
def test_sampled_snapshots_count_like_played_runs(name: str) -> None:
    # The multinomial shortcut and run-by-run play give the same kind of snapshot.
    played = simulate(ROWS[name], 400, seed=3)
    drawn = sample(ROWS[name], 400, random.Random(3))
    assert played.runs.runs == drawn.runs.runs == 400
    assert set(played.nodes) <= set(ROWS[name].topology.nodes)
    assert set(drawn.nodes) <= set(ROWS[name].topology.nodes)


@pytest.mark.parametrize(("runs", "reps"), [(200, 40), (2000, 50)])
def test_history_free_rows_are_unbiased_and_their_intervals_cover_the_truth(
    runs: int, reps: int
) -> None:
    reps = 400 if LONG else reps
    hits = total = 0
    for i, name in enumerate(HISTORY_FREE):
        row = ROWS[name]
        reps_ = _reports(row, runs, reps, seed=100 + i + runs)
        preds = [r.end_to_end.predicted for r in reps_]
        values = [p.value for p in preds if p.value is not None]
        mean, sd = statistics.mean(values), statistics.stdev(values)
        # unbiased: the mean of the predictions is within 4 standard errors of the truth
        assert abs(mean - row.truth) < 4 * sd / math.sqrt(len(values)) + 1e-4, name
        hits += sum(p.contains(row.truth) for p in preds)
        total += len(preds)
        assert not any(_finding(r) for r in reps_[:10]), name
    # 95 % intervals; pooled over the rows so that the fast profile can say something.
    assert 0.92 <= hits / total <= 0.985, hits / total


def test_the_router_in_front_of_a_node_gives_0_64_not_0_667() -> None:
    # D1 of the audit: routing rates per router success, so the router's failures are not
    # counted a second time as visits that did not happen after it.
    rep = report(simulate(ROWS["router first"], 20_000, seed=5))
    assert rep.end_to_end.predicted.contains(0.64)
    assert rep.predicted == pytest.approx(0.64, abs=0.01)
    assert rep.nodes["b"].visits == pytest.approx(1.0)


def test_a_loop_that_exits_on_a_counter_is_reported_as_not_independent() -> None:
    row = ROWS["counter loop"]
    found = [_finding(r) for r in _reports(row, 2000, 40 if not LONG else 400, seed=7)]
    assert sum(found) / len(found) >= 0.8
    rep = report(sample(row, 2000, random.Random(8)))
    text, md, data = rep.to_text(color=False), rep.to_markdown(), rep.to_dict()
    if _finding(rep):
        assert "finding: observed" in text and NOT_INDEPENDENT in text
        assert "**Finding:**" in md and NOT_INDEPENDENT in md
        assert any(NOT_INDEPENDENT in f for f in data["findings"])
        assert any(NOT_INDEPENDENT in n for n in rep.notes)


def test_history_free_rows_seldom_make_the_finding() -> None:
    made = total = 0
    for i, name in enumerate(HISTORY_FREE):
        reps_ = _reports(ROWS[name], 2000, 30, seed=300 + i)
        made += sum(_finding(r) for r in reps_)
        total += len(reps_)
    assert made / total <= 0.05


@pytest.mark.slow
@pytest.mark.skipif(not LONG, reason="the long profile: COORDGAP_SIM=long")
def test_long_profile_coverage_per_row_at_200_and_2000_runs() -> None:
    lines = ["| row | truth | runs | predicted (mean) | coverage | finding |"]
    for i, (name, row) in enumerate(ROWS.items()):
        for runs in (200, 2000):
            reps_ = _reports(row, runs, 1000, seed=1000 * runs + i)
            preds = [r.end_to_end.predicted for r in reps_]
            cover = sum(p.contains(row.truth) for p in preds) / len(preds)
            mean = statistics.mean(p.value for p in preds if p.value is not None)
            finding = sum(_finding(r) for r in reps_) / len(reps_)
            lines.append(
                f"| {name} | {row.truth:.4f} | {runs} | {mean:.4f} | {cover:.1%} | {finding:.1%} |"
            )
            if row.history_free and runs == 2000:
                assert 0.93 <= cover <= 0.97, (name, cover)
            if not row.history_free and runs == 2000:
                assert finding >= 0.9, (name, finding)
    print("\n" + "\n".join(lines))
