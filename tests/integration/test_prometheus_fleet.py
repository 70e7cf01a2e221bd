"""Fleet-wide reliability through a real Prometheus: three workers, one summed snapshot.

Three worker processes (``fleet_worker.py``) run the same instrumented graph
with different seeded fault rates and serve coordgap's metrics on their own
loopback ports; Prometheus scrapes them every second. Each worker writes its
own final ledger; the fleet snapshot built from PromQL must equal their sum
exactly, field by field on everything the metrics carry, and so must every
reliability. The same decoder reads each worker's ``/metrics`` text (what
``coordgap watch`` does): it must give back that worker's own ledger.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from exposition import assert_decoded

import coordgap
from coordgap import cli
from coordgap._ledger import LedgerSnapshot
from coordgap._report import report
from coordgap.fleet import fleet_snapshot, snapshot_from_text
from coordgap.testing import merge_snapshots

from . import servers

# One fleet per module: with xdist, run as `--dist loadgroup` so one worker gets them all.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("prometheus")]

WORKER = Path(__file__).with_name("fleet_worker.py")
GRAPH = "fleet-demo"
WORKERS = [  # (seed, fault rate of the node "check", runs)
    (11, 0.05, 60),
    (22, 0.25, 60),
    (33, 0.50, 60),
]
CONVERGE_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Fleet:
    prometheus: servers.Server
    ledgers: list[LedgerSnapshot]
    """Each worker's own final ledger."""
    metrics: list[str]
    """Each worker's /metrics URL (the worker has finished its runs and keeps serving)."""

    @property
    def total(self) -> LedgerSnapshot:
        """The workers' ledgers summed."""
        return merge_snapshots(self.ledgers)


@pytest.fixture(scope="module")
def fleet(prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Three workers (finished, still serving) and a Prometheus scraping them."""
    work = tmp_path_factory.mktemp("fleet")
    procs: list[subprocess.Popen[bytes]] = []
    prometheus: servers.Server | None = None
    try:
        targets, outs = [], []
        for i, (seed, rate, runs) in enumerate(WORKERS):
            port = servers.free_port()
            out = work / f"worker-{i}.json"
            log = (work / f"worker-{i}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(WORKER), "--port", str(port), "--seed", str(seed),
                     "--fault-rate", str(rate), "--runs", str(runs), "--out", str(out)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env={**os.environ, "COORDGAP_RAISE_INTERNAL": "1"},
                    start_new_session=True,
                )
            )  # fmt: skip
            log.close()
            targets.append(f"{servers.HOST}:{port}")
            outs.append(out)
        try:
            prometheus = servers.start_prometheus(prometheus_binary, work / "prom", targets)
        except Exception as exc:
            servers.unavailable(f"Prometheus did not start: {exc}")
        ledgers = [_wait_for_ledger(out, proc) for out, proc in zip(outs, procs, strict=True)]
        assert prometheus is not None
        yield Fleet(prometheus, ledgers, [f"http://{t}/metrics" for t in targets])
    finally:
        servers.stop_fleet(prometheus, procs)


def _wait_for_ledger(out: Path, proc: subprocess.Popen[bytes]) -> LedgerSnapshot:
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while not out.exists():
        if proc.poll() is not None:
            log = out.with_suffix(".log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"worker exited with {proc.returncode}:\n{log}")
        if time.monotonic() > deadline:
            raise AssertionError(f"worker did not finish its runs in {CONVERGE_TIMEOUT_S}s")
        time.sleep(0.1)
    return LedgerSnapshot.from_dict(json.loads(out.read_text()))


def _converged(url: str, expected_runs: int) -> LedgerSnapshot:
    """Poll until Prometheus has scraped every worker's final counters (bounded)."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    snap = None
    while time.monotonic() < deadline:
        snap = fleet_snapshot(url, graph=GRAPH, window=None)
        if snap.runs.runs == expected_runs:
            return fleet_snapshot(url, graph=GRAPH, window=None)
        time.sleep(0.5)
    raise AssertionError(
        f"Prometheus never saw all {expected_runs} runs; last: {snap and snap.runs}"
    )


def test_fleet_snapshot_equals_sum_of_worker_ledgers(fleet: Fleet) -> None:
    expected = fleet.total
    assert expected.runs.runs == sum(runs for _, _, runs in WORKERS)
    # The seeded faults really differ between workers, and some of each kind happened.
    fails = [s.nodes["check"].failures + s.nodes["check"].attempt_failures for s in fleet.ledgers]
    assert fails[0] < fails[2], fails
    assert expected.handoffs[("retrieve", "check")].kind_failures["edge"] > 0
    assert expected.handoffs[("check", "__unknown__")].kind_failures["conditional"] > 0
    assert expected.routers["route"].failures > 0
    assert expected.nodes["check"].attempts > expected.nodes["check"].executions

    fleet_snap = _converged(fleet.prometheus.url, expected.runs.runs)
    assert_decoded(fleet_snap, expected)


def test_each_workers_metrics_text_decodes_to_its_ledger(fleet: Fleet) -> None:
    """The text path: one worker's /metrics, read as coordgap watch reads it."""
    for url, own in zip(fleet.metrics, fleet.ledgers, strict=True):
        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read().decode()
        assert_decoded(snapshot_from_text(text), own)
        assert_decoded(snapshot_from_text(text, graph=GRAPH), own)


def test_watch_once_on_a_live_worker_shows_its_router_line(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["watch", fleet.metrics[2], "--once", "--no-color"]) == 0
    out = capsys.readouterr().out
    want = report(fleet.ledgers[2]).to_text(color=False)
    router = [line for line in out.splitlines() if line.startswith("router ")]
    assert router == [line for line in want.splitlines() if line.startswith("router ")]
    assert router[0].split()[1] == "route"


def test_fleet_reliabilities_match_the_summed_ledgers(fleet: Fleet) -> None:
    expected = fleet.total
    fleet_rep = report(_converged(fleet.prometheus.url, expected.runs.runs))
    own_rep = report(expected)
    got = {(c.kind, c.name): c.reliability for c in fleet_rep.components}
    want = {(c.kind, c.name): c.reliability for c in own_rep.components}
    assert got == want
    assert fleet_rep.end_to_end.observed == own_rep.end_to_end.observed
    assert fleet_rep.predicted == pytest.approx(own_rep.predicted)
    # and the fleet is not just one worker: its observed end to end pools all three
    per_worker = [report(s).end_to_end.observed.value for s in fleet.ledgers]
    assert min(per_worker) <= fleet_rep.end_to_end.observed.value <= max(per_worker)


def test_report_prometheus_on_the_command_line_is_the_fleets(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = fleet.total
    _converged(fleet.prometheus.url, expected.runs.runs)
    argv = ["report", "--prometheus", fleet.prometheus.url, "--window", "none", "-f", "json"]
    assert cli.main(argv) == 0
    got = json.loads(capsys.readouterr().out)
    want = json.loads(report(expected).to_json())
    counts = [(c["kind"], c["name"], c["executions"], c["failures"]) for c in got["components"]]
    assert sorted(counts) == sorted(
        (c["kind"], c["name"], c["executions"], c["failures"]) for c in want["components"]
    )
    assert got["end_to_end"]["observed"] == want["end_to_end"]["observed"]


def test_fleet_snapshot_over_a_window_and_graph_discovery(fleet: Fleet) -> None:
    expected = fleet.total
    exact = _converged(fleet.prometheus.url, expected.runs.runs)
    # graph omitted: Prometheus holds one coordgap graph, so it is found
    assert fleet_snapshot(fleet.prometheus.url, window=None) == exact
    # increase() over a window extrapolates and misses each series' first scrape:
    # never more components than exist, never more runs than the exact total (+ rounding).
    windowed = fleet_snapshot(fleet.prometheus.url, graph=GRAPH, window="10m")
    assert set(windowed.nodes) <= set(exact.nodes)
    assert set(windowed.handoffs) <= set(exact.handoffs)
    assert windowed.runs.runs <= 2 * exact.runs.runs
    with pytest.raises(coordgap.ConfigurationError, match="PromQL duration"):
        fleet_snapshot(fleet.prometheus.url, graph=GRAPH, window="1 hour")


def test_workers_and_prometheus_listen_on_loopback_only(fleet: Fleet) -> None:
    prometheus = fleet.prometheus
    addresses = servers.listening_addresses(prometheus.proc.pid)
    assert addresses
    assert all(a.rsplit(":", 1)[0] in ("127.0.0.1", "::ffff:127.0.0.1") for a in addresses)


def test_grafana_dashboard_queries_run_on_prometheus(fleet: Fleet) -> None:
    """Every PromQL in the shipped dashboard parses and, on a live fleet, returns series."""
    import urllib.parse
    import urllib.request

    prometheus = fleet.prometheus
    _converged(prometheus.url, fleet.total.runs.runs)
    # increase() and rate() need two samples of a series in the window: wait two more
    # scrapes (1 s apart), or a fast worker's series may hold a single sample
    time.sleep(2.5)
    path = Path(__file__).parents[2] / "examples" / "grafana" / "coordgap-dashboard.json"
    dashboard = json.loads(path.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    empty = []
    for expr in exprs:
        concrete = (
            expr.replace("$graph", GRAPH)
            .replace("$__rate_interval", "10m")
            .replace("$__range", "10m")
        )
        body = urllib.parse.urlencode({"query": concrete}).encode()
        with urllib.request.urlopen(prometheus.url + "/api/v1/query", data=body, timeout=10) as r:
            payload = json.load(r)
        assert payload["status"] == "success", (concrete, payload)
        if not payload["data"]["result"]:
            empty.append(concrete)
    assert not empty
