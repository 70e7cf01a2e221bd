"""The coordgap command: report, diff, audit, watch (its decoder: test_prometheus.py)."""

from __future__ import annotations

import json
import random
import sys
import textwrap
from pathlib import Path

import pytest
from exposition import Exporter, carried, everything_app, run

import coordgap
from coordgap import cli
from coordgap._ledger import Ledger, LedgerSnapshot
from coordgap._report import report
from coordgap.events import HandoffOutcome, NodeOutcome, RunOutcome

G = "research"


def ledger_with(p_analyze: float, runs: int = 400, seed: int = 1) -> Ledger:
    rng = random.Random(seed)
    ledger = Ledger(G)
    for _ in range(runs):
        ledger.record(HandoffOutcome(G, "__start__", "retrieve", "edge", True, 0, 0))
        ledger.record(NodeOutcome(G, "retrieve", True, 1, True, 0, 0))
        ledger.record(HandoffOutcome(G, "retrieve", "analyze", "edge", True, 0, 0))
        ok = rng.random() < p_analyze
        ledger.record(NodeOutcome(G, "analyze", ok, 1, True, 0, 0))
        ledger.record(RunOutcome(G, "ok" if ok else "error", ok, 0, 0))
    return ledger


@pytest.fixture
def reports(tmp_path: Path) -> tuple[Path, Path, Path]:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(report(ledger_with(0.99)).to_json())
    bad.write_text(report(ledger_with(0.85)).to_json())
    snap = tmp_path / "snapshot.json"
    snap.write_text(json.dumps(ledger_with(0.99).snapshot().to_dict()))
    return good, bad, snap


# -- report and diff -------------------------------------------------------------------------


def test_report_prints_a_saved_report(
    reports: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["report", str(reports[0])]) == 0
    out = capsys.readouterr().out
    assert "coordgap report - graph 'research' - 400 runs" in out
    assert "\x1b[" not in out


def test_report_reads_a_ledger_snapshot_too(
    reports: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["report", str(reports[2]), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["schema"] == "coordgap.report/2"


@pytest.mark.parametrize(
    "fmt, start", [("markdown", "## coordgap report"), ("mermaid", "flowchart LR")]
)
def test_report_formats(
    reports: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str], fmt: str, start: str
) -> None:
    assert cli.main(["report", str(reports[0]), "-f", fmt]) == 0
    assert capsys.readouterr().out.startswith(start)


def test_report_of_a_missing_or_corrupt_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["report", str(tmp_path / "nope.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "coordgap.report/9"}')
    assert cli.main(["report", str(bad)]) == 2
    assert "coordgap.report/9" in capsys.readouterr().err


def test_diff_exits_1_on_a_significant_drop(
    reports: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad, _ = reports
    assert cli.main(["diff", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert "significant drop" in out and "analyze" in out
    assert cli.main(["diff", str(good), str(good)]) == 0
    assert "no significant drop" in capsys.readouterr().out
    assert cli.main(["diff", str(bad), str(good)]) == 0  # it got better


def test_diff_json(reports: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["diff", str(reports[0]), str(reports[1]), "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["regressed"] is True
    assert any(c["name"] == "analyze" and c["significant"] for c in data["changes"])


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert cli.main(["report"]) == 2
    assert cli.main(["--help"]) == 0


# -- audit ---------------------------------------------------------------------------------------


@pytest.fixture
def graph_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "my_agent_graph.py").write_text(
        textwrap.dedent(
            """
            from coordgap.topology import DeclaredHandoff as H, Topology

            def build():
                names = ["retrieve", "analyze", "cross_check", "synthesize"]
                path = ["__start__", *names, "__end__"]
                return Topology("research", tuple(names),
                                tuple(H(a, b, "edge") for a, b in zip(path, path[1:])))

            topology = build()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_agent_graph"
    sys.modules.pop("my_agent_graph", None)


def test_audit_prints_the_research_agent_figures(
    graph_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(
        [
            "audit",
            f"{graph_module}:topology",
            "--nodes",
            "retrieve=0.98,analyze=0.96,cross_check=0.97,synthesize=0.95",
            "--handoffs",
            "0.97",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "naive             0.867" in out
    assert "predicted         0.791" in out
    assert "coordination gap  0.076" in out


def test_audit_calls_a_factory_and_emits_json(
    graph_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["audit", f"{graph_module}:build", "--nodes", "0.97", "-f", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert round(data["end_to_end"]["predicted"]["value"], 3) == round(0.97**4, 3)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["audit", "nocolon"], "module:attribute"),
        (["audit", "no_such_module_xyz:b"], "cannot import"),
        (["audit", "my_agent_graph:missing"], "no attribute"),
        (["audit", "my_agent_graph:topology", "--nodes", "a=high"], "--nodes takes"),
        (["audit", "my_agent_graph:topology", "--nodes", "nope=0.9"], "does not have"),
    ],
)
def test_audit_errors_exit_2_with_a_message(
    graph_module: str, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


# -- Prometheus text and watch ----------------------------------------


def served_metrics(path: Path) -> LedgerSnapshot:
    """Run a graph, write what its /metrics serves (the real exporter) to ``path``; return
    the ledger's own snapshot."""
    exporter = Exporter()
    app = everything_app(exporter.meter_provider)
    run(app, range(14))
    path.write_text(exporter.text())
    return coordgap.ledger(app).snapshot()


def _router_line(text: str) -> str:
    (line,) = [line for line in text.splitlines() if line.startswith("router ")]
    return line


def test_watch_once_shows_the_router_as_the_ledger_counts_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """exporter -> /metrics text -> coordgap watch: the router line is the ledger's own."""
    metrics = tmp_path / "metrics.txt"
    own = served_metrics(metrics)
    assert cli.main(["watch", str(metrics), "--once", "--no-color"]) == 0
    out = capsys.readouterr().out
    assert _router_line(out) == _router_line(report(own).to_text(color=False))
    assert _router_line(out).split()[:4] == ["router", "route", "12", "3"]
    # everything else the counters carry comes out as the ledger's report says too
    assert out == report(carried(own, durations=True)).to_text(color=False)

    assert cli.main(["watch", str(metrics), "--once", "--format", "json"]) == 0
    (router,) = [
        c for c in json.loads(capsys.readouterr().out)["components"] if c["kind"] == "router"
    ]
    assert (router["name"], router["source"], router["executions"], router["failures"]) == (
        "route",
        "check",
        12,
        3,
    )
    # the chosen targets, as the ledger counted them (coordgap.router.choices)
    assert router["targets"] == dict(own.routers["route"].targets)


def test_watch_once_reads_a_metrics_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics = tmp_path / "metrics.txt"
    served_metrics(metrics)
    assert cli.main(["watch", str(metrics), "--once"]) == 0
    out = capsys.readouterr().out
    assert "coordgap report - graph 'everything' - 14 runs" in out


def test_watch_once_on_an_unreachable_url_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["watch", "http://127.0.0.1:9/metrics", "--once", "--timeout", "0.5"]) == 2
    assert "coordgap: error" in capsys.readouterr().err


def test_watch_refreshes_in_place_until_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("rich")
    metrics = tmp_path / "metrics.txt"
    served_metrics(metrics)
    good = metrics.read_text()
    ticks = []

    def sleep(_seconds: float) -> None:
        ticks.append(_seconds)
        if len(ticks) == 1:
            metrics.write_text("garbage {{{\n")  # the endpoint breaks: keep watching
        elif len(ticks) == 2:
            metrics.write_text(good)  # and comes back
        else:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli.time, "sleep", sleep)
    assert cli.main(["watch", str(metrics), "--interval", "0.01"]) == 0
    out = capsys.readouterr().out
    # Off a terminal every frame is printed in turn: good, broken, good again.
    frames = out.split("Ctrl-C to stop")
    assert len(frames) == 4 and frames[-1].strip() == ""
    assert "coordgap report - graph 'everything'" in frames[0]
    assert "cannot read" in frames[1] and "coordgap report" not in frames[1]
    assert "coordgap report - graph 'everything'" in frames[2]
    assert len(ticks) == 3


def test_watch_off_a_terminal_says_at_once_that_the_endpoint_is_down(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("rich")

    def sleep(_seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.time, "sleep", sleep)
    assert cli.main(["watch", "http://127.0.0.1:9/metrics", "--timeout", "0.5"]) == 0
    assert "cannot read http://127.0.0.1:9/metrics" in capsys.readouterr().out


def test_watch_without_rich_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "rich.live", None)
    assert cli.main(["watch", str(tmp_path / "m.txt")]) == 2
    assert "pip install 'coordgap[cli]'" in capsys.readouterr().err
