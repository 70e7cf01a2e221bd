"""The pytest options --coordgap-coverage, -fail-under and -file, through pytester (subprocess)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

HERE = Path(__file__).parent

# Two tests: the fallback route of the research agent is never taken (9 of 10 declared
# nodes and edges exercised), and an unannotated Command makes drift in a second graph
# (8 of 9: its analyze -> cross_check is undeclared). Total 17/19 = 89.47 %.
TESTS = """
import coordgap
from coverage_graphs import research_agent

APP = coordgap.instrument(research_agent(), name="research")  # built at collection time


def test_research():
    for i in range(5):
        APP.invoke({"run": i})


def test_drifting():
    app = coordgap.instrument(research_agent(command="unannotated"), name="drifting")
    app.invoke({"run": 0})
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    shutil.copy(HERE / "coverage_graphs.py", pytester.path / "coverage_graphs.py")
    pytester.makepyfile(test_agent=TESTS)
    return pytester


def run(suite: pytest.Pytester, *args: str) -> pytest.RunResult:
    # A subprocess: the collector is process-wide and must not see this session's graphs.
    # The options come from the installed plugin (entry point pytest11 coordgap).
    # Third-party plugins that are slow to import are left out (phoenix alone takes ~40 s here).
    return suite.runpytest_subprocess(
        *("-p", "no:cacheprovider", "-p", "no:phoenix", "-p", "no:langsmith_plugin"),
        *args,
        timeout=300,
    )


def test_coverage_prints_per_graph_table(suite: pytest.Pytester) -> None:
    result = run(suite, "--coordgap-coverage")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*coordgap graph coverage*",
            "graph*runs*nodes*edges*routes*cover*drift*missing",
            "drifting*1*4/4*4/5*1/2*88.9%*1*cross_check -> retrieve",
            "research*5*4/4*5/6*1/2*90.0%*0*cross_check -> retrieve",
            "TOTAL*17/19 declared nodes and edges: 89.5%",
            "drift in drifting: analyze -> cross_check (command): Command(goto=...)*",
        ]
    )


def test_without_the_option_nothing_is_printed(suite: pytest.Pytester) -> None:
    result = run(suite)
    assert result.ret == 0
    assert "graph coverage" not in result.stdout.str()


def test_fail_under_above_the_total_fails_the_session(suite: pytest.Pytester) -> None:
    result = run(suite, "--coordgap-coverage-fail-under=90")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*2 passed*"])
    result.stdout.fnmatch_lines(
        ["FAIL Required graph coverage of 90% not reached. Total coverage: 89.47%"]
    )


def test_fail_under_at_the_total_passes(suite: pytest.Pytester) -> None:
    result = run(suite, "--coordgap-coverage-fail-under=89.4")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        ["Required graph coverage of 89.4% reached. Total coverage: 89.47%"]
    )


def test_failing_tests_keep_their_own_exit_status(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_broken="def test_broken():\n    assert False\n")
    result = run(suite, "--coordgap-coverage-fail-under=99")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*FAIL Required graph coverage of 99% not reached*"])


def test_json_file_for_ci(suite: pytest.Pytester) -> None:
    out = suite.path / "graph-coverage.json"
    result = run(suite, f"--coordgap-coverage-file={out}")
    assert result.ret == 0
    data = json.loads(out.read_text())
    assert data["schema"] == "coordgap.coverage-session/1"
    assert (data["covered"], data["total"], data["percent"]) == (17, 19, 89.474)
    graphs = {g["graph"]: g for g in data["graphs"]}
    assert set(graphs) == {"research", "drifting"}
    assert graphs["research"]["runs"] == 5
    assert graphs["research"]["missed"]["edges"] == [["cross_check", "retrieve"]]
    assert [(d["source"], d["target"]) for d in graphs["drifting"]["drift"]] == [
        ("analyze", "cross_check")
    ]
    result.stdout.fnmatch_lines([f"graph coverage JSON written to {out}"])


def test_under_xdist_the_workers_counts_add_up_to_the_same_coverage(
    suite: pytest.Pytester,
) -> None:
    pytest.importorskip("xdist")
    alone, spread = suite.path / "alone.json", suite.path / "spread.json"
    assert run(suite, f"--coordgap-coverage-file={alone}").ret == 0
    result = run(suite, "-n", "2", f"--coordgap-coverage-file={spread}")
    assert result.ret == 0
    assert json.loads(spread.read_text()) == json.loads(alone.read_text())
    result.stdout.fnmatch_lines(["TOTAL*17/19 declared nodes and edges: 89.5%"])
