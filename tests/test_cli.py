"""The coordgap command (report, diff, audit, watch), the Prometheus reader, the gauges."""

from __future__ import annotations

import json
import random
import sys
import textwrap
from pathlib import Path

import pytest

from coordgap import cli
from coordgap._ledger import Ledger
from coordgap._prometheus import _parse, snapshot_from_prometheus_text
from coordgap._report import report
from coordgap.errors import ConfigurationError
from coordgap.events import HandoffOutcome, NodeOutcome, RouterOutcome, RunOutcome
from coordgap.semconv import (
    METRIC_HANDOFF_TRANSFERS,
    METRIC_NODE_ATTEMPTS,
    METRIC_NODE_EXECUTIONS,
    METRIC_ROUTER_DECISIONS,
    METRIC_RUN_CLEAN,
    METRIC_RUN_COMPLETIONS,
)

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


def prometheus_text_from_otel(ledger: Ledger) -> str:
    """Serve a ledger's counts through OpenTelemetry's real Prometheus exporter."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("coordgap")
    ex = meter.create_counter(METRIC_NODE_EXECUTIONS, unit="{count}")
    at = meter.create_counter(METRIC_NODE_ATTEMPTS, unit="{count}")
    ho = meter.create_counter(METRIC_HANDOFF_TRANSFERS, unit="{count}")
    ro = meter.create_counter(METRIC_ROUTER_DECISIONS, unit="{count}")
    rc = meter.create_counter(METRIC_RUN_COMPLETIONS, unit="{count}")
    cl = meter.create_counter(METRIC_RUN_CLEAN, unit="{count}")
    snap = ledger.snapshot()
    g = {"coordgap.graph": snap.graph}
    for name, s in snap.nodes.items():
        n = {**g, "coordgap.node": name}
        ex.add(
            s.first_attempt_ok, {**n, "coordgap.outcome": "ok", "coordgap.first_attempt": "true"}
        )
        late = s.executions - s.failures - s.first_attempt_ok
        ex.add(late, {**n, "coordgap.outcome": "ok", "coordgap.first_attempt": "false"})
        ex.add(s.failures, {**n, "coordgap.outcome": "error", "coordgap.first_attempt": "false"})
        at.add(s.attempts - s.attempt_failures, {**n, "coordgap.outcome": "ok"})
        at.add(s.attempt_failures, {**n, "coordgap.outcome": "error"})
    for (src, tgt), h in snap.handoffs.items():
        e = {**g, "coordgap.handoff.source": src, "coordgap.handoff.target": tgt}
        kind = next(iter(h.kinds))
        ho.add(h.successes, {**e, "coordgap.handoff.kind": kind, "coordgap.outcome": "ok"})
        ho.add(h.failures, {**e, "coordgap.handoff.kind": kind, "coordgap.outcome": "error"})
    for name, r in snap.routers.items():
        for tgt, count in r.targets.items():
            attrs = {**g, "coordgap.router": name, "coordgap.handoff.source": r.source}
            ro.add(count, {**attrs, "coordgap.handoff.target": tgt, "coordgap.outcome": "ok"})
    runs = snap.runs
    for outcome, count in (
        ("ok", runs.ok),
        ("error", runs.error),
        ("interrupted", runs.interrupted),
    ):
        rc.add(count, {**g, "coordgap.outcome": outcome})
    cl.add(runs.clean, g)
    return generate_latest(registry).decode()


def looping_ledger() -> Ledger:
    rng = random.Random(9)
    ledger = Ledger(G)
    for _ in range(300):
        ledger.record(HandoffOutcome(G, "__start__", "a", "edge", True, 0, 0))
        ok = True
        if rng.random() < 0.2:
            ledger.record(NodeOutcome(G, "a", False, 1, False, 0, 0))
        ledger.record(NodeOutcome(G, "a", True, 1, True, 0, 0))
        while True:
            target = "a" if rng.random() < 0.25 else "b"
            ledger.record(RouterOutcome(G, "route", "a", True, (target,), 0, 0))
            h = rng.random() < 0.97
            ledger.record(HandoffOutcome(G, "a", target, "conditional", h, 0, 0))
            ok &= h
            node_ok = rng.random() < 0.95
            ledger.record(NodeOutcome(G, target, node_ok, 1, True, 0, 0))
            if not node_ok:
                ledger.record(RunOutcome(G, "error", False, 0, 0))
                break
            if target == "b":
                ledger.record(RunOutcome(G, "ok", ok, 0, 0))
                break
    return ledger


def test_snapshot_from_otel_prometheus_exporter_matches_the_ledger() -> None:
    ledger = looping_ledger()
    text = prometheus_text_from_otel(ledger)
    assert "coordgap_node_executions_total{" in text
    snap = snapshot_from_prometheus_text(text)
    direct = ledger.snapshot()
    assert snap.graph == G
    assert snap.runs.runs == direct.runs.runs and snap.runs.clean == direct.runs.clean
    for name, s in direct.nodes.items():
        got = snap.nodes[name]
        assert (got.executions, got.failures, got.first_attempt_ok) == (
            s.executions,
            s.failures,
            s.first_attempt_ok,
        )
        assert (got.attempts, got.attempt_failures) == (s.attempts, s.attempt_failures)
    for key, h in direct.handoffs.items():
        assert (snap.handoffs[key].transfers, snap.handoffs[key].failures) == (
            h.transfers,
            h.failures,
        )
    assert snap.routers["route"].decisions == direct.routers["route"].decisions
    a, b = report(snap), report(direct)
    assert a.predicted == pytest.approx(b.predicted)
    assert a.end_to_end.observed == b.end_to_end.observed


def test_prometheus_samples_from_several_processes_add_up() -> None:
    one = "# TYPE coordgap_run_completions_total counter\n"
    rows = [
        'coordgap_run_completions_total{coordgap_graph="g",coordgap_outcome="ok",instance="a"} 3',
        'coordgap_run_completions_total{coordgap_graph="g",coordgap_outcome="ok",instance="b"} 4',
        'coordgap_run_clean_total{coordgap_graph="g",instance="b"} 4',
    ]
    snap = snapshot_from_prometheus_text(one + "\n".join(rows) + "\n")
    assert (snap.runs.runs, snap.runs.ok, snap.runs.clean) == (7, 7, 4)


def test_prometheus_text_with_several_graphs_needs_a_choice() -> None:
    text = (
        'coordgap_run_clean_total{coordgap_graph="a"} 1\n'
        'coordgap_run_clean_total{coordgap_graph="b"} 2\n'
    )
    with pytest.raises(ConfigurationError, match="several graphs"):
        snapshot_from_prometheus_text(text)
    assert snapshot_from_prometheus_text(text, graph="b").runs.clean == 2


def test_fallback_parser_reads_labels_escapes_and_skips_comments() -> None:
    text = (
        "# HELP x y\n"
        'coordgap_node_executions_total{coordgap_graph="g",'
        'coordgap_node="a \\"q\\"\\\\b"} 2.0 1700\n'
        "plain_metric 3\n"
    )
    rows = list(_parse(text))
    assert rows[0] == (
        "coordgap_node_executions_total",
        {"coordgap_graph": "g", "coordgap_node": 'a "q"\\b'},
        2.0,
    )
    assert rows[1] == ("plain_metric", {}, 3.0)
    with pytest.raises(ConfigurationError, match="not Prometheus text"):
        list(_parse("{{{ nonsense\n"))


def test_watch_once_reads_a_metrics_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics = tmp_path / "metrics.txt"
    metrics.write_text(prometheus_text_from_otel(looping_ledger()))
    assert cli.main(["watch", str(metrics), "--once"]) == 0
    out = capsys.readouterr().out
    assert "coordgap report - graph 'research'" in out and "router   route" in out


def test_watch_once_on_an_unreachable_url_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["watch", "http://127.0.0.1:9/metrics", "--once", "--timeout", "0.5"]) == 2
    assert "coordgap: error" in capsys.readouterr().err


def test_watch_refreshes_in_place_until_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("rich")
    metrics = tmp_path / "metrics.txt"
    good = prometheus_text_from_otel(looping_ledger())
    metrics.write_text(good)
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
    assert "coordgap report - graph 'research'" in frames[0]
    assert "cannot read" in frames[1] and "coordgap report" not in frames[1]
    assert "coordgap report - graph 'research'" in frames[2]
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


# -- gauges ------------------------------------------------------------


def test_report_gauges_are_computed_at_collection_time() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from coordgap._gauges import register_report_gauges

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    ledger = Ledger(G)
    register_report_gauges(provider.get_meter("coordgap"), lambda: ledger)

    def collect() -> dict[str, list[tuple[dict[str, object], float]]]:
        out: dict[str, list[tuple[dict[str, object], float]]] = {}
        data = reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out[m.name] = [(dict(p.attributes), p.value) for p in m.data.data_points]
        return out

    assert collect().get("coordgap.reliability", []) == []
    for i in range(10):
        ledger.record(HandoffOutcome(G, "__start__", "a", "edge", True, 0, 0))
        ledger.record(NodeOutcome(G, "a", i != 0, 1, True, 0, 0))
        ledger.record(RunOutcome(G, "ok" if i else "error", i != 0, 0, 0))
    got = collect()
    rel = {
        (a["coordgap.component"], a.get("coordgap.node")): v for a, v in got["coordgap.reliability"]
    }
    assert rel[("node", "a")] == pytest.approx(0.9)
    e2e = {a["coordgap.estimate"]: v for a, v in got["coordgap.end_to_end"]}
    assert e2e == pytest.approx({"predicted": 0.9, "observed": 0.9, "naive": 0.9})
    assert got["coordgap.gap"][0][1] == pytest.approx(0.0)
    assert got["coordgap.gap"][0][0] == {"coordgap.graph": G}


def test_report_gauges_never_raise_into_the_exporter() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from coordgap._gauges import register_report_gauges

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])

    def broken() -> Ledger:
        raise RuntimeError("boom")

    register_report_gauges(provider.get_meter("coordgap"), broken)
    reader.get_metrics_data()  # no exception
