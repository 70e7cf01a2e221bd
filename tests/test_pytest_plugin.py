"""The pytest plugin, exercised on generated test files with pytester."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest_plugins = ["pytester"]

GRAPH = """
import pytest
import coordgap
from coordgap import faults
from langgraph.graph import StateGraph, START, END
from typing_extensions import TypedDict


class S(TypedDict):
    x: int


def build(rate=0.0, name="g"):
    b = StateGraph(S)
    b.add_node("a", lambda s: {"x": s["x"] + 1})
    b.add_node("b", lambda s: {"x": s["x"] * 2})
    b.add_edge(START, "a")
    b.add_edge("a", "b")
    b.add_edge("b", END)
    if rate:
        b = faults.inject(b, nodes={"b": rate}, seed=1)
    return coordgap.instrument(b, name=name, spans="off", metrics=False)


def drive(app, n):
    for i in range(n):
        try:
            app.invoke({"x": i})
        except faults.InjectedFault:
            pass
"""


def make(pytester: pytest.Pytester, body: str) -> None:
    pytester.makepyfile(test_gen=GRAPH + textwrap.dedent(body))


@pytest.fixture(autouse=True)
def _only_our_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    # In-process runs load only coordgap's plugin: other installed plugins that import
    # numpy cannot be imported twice in one process (pytester restores sys.modules).
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    # Loaded here, LangGraph and coordgap's core outlive every in-process run: pytester drops
    # the modules a run imported, but the coordgap package would keep its attributes to
    # them, and a later run would check its fresh LangGraph classes against stale ones.
    import coordgap._instrument  # noqa: F401


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run pytest in-process with coordgap's plugin (loaded by module, as the entry point does)."""
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "coordgap.pytest_plugin", *args)


def run_installed(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run pytest in a subprocess with plugins found through their entry points."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=600)


def test_passing_and_failing_assertions_in_a_test_file(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        """
        def test_reliable(coordgap_ledger):
            app = build(0.0)
            drive(app, 60)
            coordgap.testing.assert_reliability(app, end_to_end=0.9, nodes=0.9)

        def test_unreliable(coordgap_ledger):
            app = build(0.3)
            drive(app, 60)
            coordgap.testing.assert_reliability(app, end_to_end=0.9, nodes=0.9)
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*ReliabilityError: coordgap: reliability below threshold at 95 % confidence*",
            "*>>*end to end*observed*60*FAIL*",
            "*>>*node*b*FAIL*",
            "*failed: end to end observed: * is below 0.9 at 95 % (upper bound*",
        ]
    )
    # the passing node is listed but not marked
    assert any(" node " in line and " a " in line and ">>" not in line for line in result.outlines)


def test_too_few_runs_is_its_own_failure(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        """
        def test_few():
            app = build(0.0)
            drive(app, 10)
            coordgap.testing.assert_reliability(app, end_to_end=0.9)
        """,
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*not enough runs to decide at 95 %*need about * more runs to decide at 95 %*"]
    )


def test_marker_passes_fails_and_sets_runs(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        """
        @pytest.mark.reliability(end_to_end=0.9, runs=60)
        def test_marked_ok(coordgap_runs):
            assert coordgap_runs == 60
            drive(build(0.0), coordgap_runs)

        @pytest.mark.reliability(end_to_end=0.9, runs=60)
        def test_marked_bad(coordgap_runs):
            drive(build(0.3), coordgap_runs)

        @pytest.mark.reliability(end_to_end=0.5, runs=60)
        def test_marked_short(coordgap_runs):
            drive(build(0.0), 20)

        @pytest.mark.reliability(end_to_end=0.5)
        def test_marked_nothing():
            pass

        def test_default_runs(coordgap_runs):
            assert coordgap_runs == 35
        """,
    )
    result = run(pytester, "--coordgap-runs=35", "-rf")
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines_random(
        [
            "@pytest.mark.reliability: coordgap: reliability below threshold*",
            "*only 20 finished runs, min_runs=60*need 40 more runs*",
            "*no graph was instrumented in this scope*",
        ]
    )


def test_marker_keywords_override_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ncoordgap_runs = 7\ncoordgap_confidence = 0.5\n")
    make(
        pytester,
        """
        @pytest.mark.reliability(end_to_end=0.9, runs=12)
        def test_marker_wins(coordgap_runs):
            assert coordgap_runs == 12
            drive(build(0.0), coordgap_runs)  # 12/12 clears 0.9 only at the ini's 50 %

        @pytest.mark.reliability(end_to_end=0.9, runs=12, confidence=0.95)
        def test_marker_confidence_wins(coordgap_runs):
            drive(build(0.0), coordgap_runs)

        def test_ini(coordgap_runs):
            assert coordgap_runs == 7
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_marker_confidence_wins*", "*need about*at 95 %*"])


def test_bad_marker_is_a_usage_error(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        """
        @pytest.mark.reliability(end_too_end=0.9)
        def test_typo():
            pass
        """,
    )
    result = run(pytester)
    result.stdout.fnmatch_lines(["*unknown keyword(s) end_too_end*"])
    assert result.ret != 0


def test_threshold_outside_unit_interval_is_a_configuration_error(
    pytester: pytest.Pytester,
) -> None:
    make(
        pytester,
        """
        @pytest.mark.reliability(end_to_end=90)
        def test_percent():
            drive(build(0.0), 3)
        """,
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ConfigurationError: end_to_end=90*[0, 1]*"])


def test_fixture_isolates_tests_and_track_adopts_shared_graphs(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        """
        SHARED = build(0.0, name="shared")

        def test_one(coordgap_ledger):
            drive(build(0.0, name="mine"), 5)
            assert [g.coordgap_state.ledger.graph for g in coordgap_ledger.graphs] == ["mine"]
            assert coordgap_ledger.snapshot().runs.runs == 5

        def test_two(coordgap_ledger):
            drive(build(0.0, name="mine"), 3)
            assert coordgap_ledger.snapshot().runs.runs == 3

        def test_shared(coordgap_ledger):
            drive(SHARED, 4)
            coordgap_ledger.track(SHARED)
            drive(SHARED, 2)
            assert coordgap_ledger.snapshot("shared").runs.runs == 2
        """,
    )
    run(pytester).assert_outcomes(passed=3)


def test_report_option_prints_summary_and_writes_files(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        """
        def test_a():
            drive(build(0.0, name="alpha"), 30)

        def test_b():
            drive(build(0.2, name="beta"), 40)

        def test_b_again():
            drive(build(0.2, name="beta"), 10)
        """,
    )
    result = run(pytester, "--coordgap-report", "--coordgap-report-file=out/r.json")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*coordgap reliability*",
            "graph*runs*observed end to end*predicted*gap*weakest*",
            "alpha*30*1.000 [[]*",
            "beta*50*",
            "coordgap reports written to out/r.json",
        ]
    )
    data = json.loads((pytester.path / "out" / "r.json").read_text())
    assert data["schema"] == "coordgap.session/1"
    assert [r["graph"] for r in data["reports"]] == ["alpha", "beta"]

    result = run(pytester, "--coordgap-report-file=r.md")
    assert (
        "## " in (pytester.path / "r.md").read_text() or "|" in (pytester.path / "r.md").read_text()
    )
    assert "coordgap reliability" not in result.stdout.str()


def test_save_baseline_then_no_regression(pytester: pytest.Pytester) -> None:
    """--coordgap-save-baseline makes coordgap_baselines write instead of compare, and says so
    at the top and the end of the session; without it the same test compares."""
    make(
        pytester,
        """
        import os

        def test_agent(coordgap_baselines):
            app = build(float(os.environ.get("RATE", "0")), name="agent")
            drive(app, 150)
            coordgap_baselines.check(app, "baselines/agent.json")
        """,
    )
    saved = run(pytester, "--coordgap-save-baseline=baseline.json")
    saved.assert_outcomes(passed=1)
    saved.stdout.fnmatch_lines(
        [
            "coordgap: SAVING BASELINES to baseline.json (--coordgap-save-baseline)*",
            "*",
            "*= coordgap: baselines SAVED (--coordgap-save-baseline), no regression checked =*",
            "coordgap baseline written to baseline.json (graphs 'agent')",
            "coordgap baseline refreshed by coordgap_baselines: baselines/agent.json",
        ]
    )
    assert (pytester.path / "baseline.json").exists()
    assert (pytester.path / "baselines" / "agent.json").exists()
    same = run(pytester)
    same.assert_outcomes(passed=1)
    assert "SAVING BASELINES" not in same.stdout.str()
    assert "SAVED" not in same.stdout.str()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RATE", "0.3")
        worse = run(pytester)
    worse.assert_outcomes(failed=1)
    worse.stdout.fnmatch_lines(
        ["*reliability regressed against the baseline*", "*regressed: end to end observed*"]
    )


def test_a_plain_assert_no_regression_compares_even_when_saving(
    pytester: pytest.Pytester,
) -> None:
    """No process-wide switch: under --coordgap-save-baseline a plain assert_no_regression()
    still compares (here with a file that does not exist yet), and update=True writes."""
    make(
        pytester,
        """
        from coordgap.testing import assert_no_regression

        def test_plain():
            app = build(0.0, name="plain")
            drive(app, 20)
            assert_no_regression(app, "plain.json")

        def test_explicit():
            app = build(0.0, name="explicit")
            drive(app, 20)
            assert assert_no_regression(app, "explicit.json", update=True) is None
        """,
    )
    result = run(pytester, "--coordgap-save-baseline=session.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*ConfigurationError: no baseline at 'plain.json'*"])
    assert not (pytester.path / "plain.json").exists()
    assert (pytester.path / "explicit.json").exists()
    data = json.loads((pytester.path / "session.json").read_text())
    assert sorted(data["reports"]) == ["explicit", "plain"]


def test_disabled_with_no_coordgap(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        """
        @pytest.mark.reliability(end_to_end=0.99)
        def test_marker_ignored():
            drive(build(0.5), 5)

        def test_plain_helpers_still_work():
            import coordgap.testing
            app = build(0.0)
            drive(app, 60)
            coordgap.testing.assert_reliability(app, end_to_end=0.9)

        def test_no_fixture(coordgap_ledger):
            pass
        """,
    )
    result = run_installed(pytester, "-p", "no:coordgap")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*fixture 'coordgap_ledger' not found*"])
    assert "coordgap reliability" not in result.stdout.str()
    bad = run_installed(pytester, "-p", "no:coordgap", "--coordgap-report")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR


def test_xdist_workers_are_isolated_and_the_summary_merges_them(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("xdist")
    make(
        pytester,
        """
        @pytest.mark.parametrize("i", range(4))
        def test_each(i, coordgap_ledger):
            drive(build(0.0, name="g"), 10 + i)
            assert len(coordgap_ledger.graphs) == 1
            assert coordgap_ledger.snapshot().runs.runs == 10 + i
        """,
    )
    # by entry point name, without autoloading every other installed plugin (slow to start)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "coordgap", "-p", "xdist", "-n", "2",
        "--coordgap-report", timeout=600,
    )  # fmt: skip
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*coordgap reliability*", "g*46*1.000*"])


def test_loading_the_plugin_imports_nothing_heavy() -> None:
    """Loading the plugin (every pytest session does) imports neither LangGraph nor coordgap's core."""
    code = (
        "import sys, coordgap.pytest_plugin; "
        "print([m for m in ('langgraph', 'opentelemetry.sdk', 'coordgap.testing') "
        "if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
