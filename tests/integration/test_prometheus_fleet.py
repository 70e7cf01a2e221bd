"""Fleet-wide reliability through a real Prometheus: three workers, one summed snapshot.

Three worker processes (``fleet_worker.py``) run the same instrumented graph
with different seeded fault rates and serve coordgap's metrics on their own
loopback ports; Prometheus scrapes them every second. Each worker writes its
own final ledger; the fleet snapshot built from PromQL must equal their sum
exactly, on every count the metrics carry, and so must every reliability.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

import coordgap
from coordgap._ledger import HandoffStats, LedgerSnapshot, NodeStats, RouterStats, RunStats
from coordgap._report import report
from coordgap.fleet import fleet_snapshot

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


@pytest.fixture(scope="module")
def fleet(
    prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[servers.Server, list[LedgerSnapshot]]]:
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
        yield prometheus, ledgers
    finally:
        if prometheus is not None:
            prometheus.stop()
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=20)


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


def _add(a: dict[str, int], b: Any) -> dict[str, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def _sum(snaps: list[LedgerSnapshot]) -> LedgerSnapshot:
    """Sum the workers' own ledgers, field by field, on what the metrics carry."""
    nodes: dict[str, dict[str, Any]] = {}
    handoffs: dict[tuple[str, str], dict[str, Any]] = {}
    routers: dict[str, dict[str, Any]] = {}
    runs = dict.fromkeys(("runs", "ok", "error", "interrupted", "clean"), 0)
    internal = 0
    for s in snaps:
        for name, n in s.nodes.items():
            fields = ("executions", "failures", "attempts", "attempt_failures", "first_attempt_ok")
            row = nodes.setdefault(name, dict.fromkeys(fields, 0))
            for k in row:
                row[k] += getattr(n, k)
        for key, h in s.handoffs.items():
            hr = handoffs.setdefault(key, {"transfers": 0, "failures": 0, "kinds": {}, "kf": {}})
            hr["transfers"] += h.transfers
            hr["failures"] += h.failures
            hr["kinds"] = _add(hr["kinds"], h.kinds)
            hr["kf"] = _add(hr["kf"], h.kind_failures)
        for name, r in s.routers.items():
            rr = routers.setdefault(name, {"source": r.source, "decisions": 0, "failures": 0})
            rr["decisions"] += r.decisions
            rr["failures"] += r.failures
        for k in runs:
            runs[k] += getattr(s.runs, k)
        internal += s.internal_errors
    return LedgerSnapshot(
        graph=GRAPH,
        nodes=MappingProxyType({k: NodeStats(**v) for k, v in nodes.items()}),
        handoffs=MappingProxyType({
            k: HandoffStats(k[0], k[1], transfers=v["transfers"], failures=v["failures"],
                            kinds=MappingProxyType(v["kinds"]),
                            kind_failures=MappingProxyType(v["kf"]))
            for k, v in handoffs.items()
        }),
        routers=MappingProxyType({k: RouterStats(k, **v) for k, v in routers.items()}),
        runs=RunStats(**runs),
        internal_errors=internal,
    )  # fmt: skip


def _counts(s: LedgerSnapshot) -> dict[str, Any]:
    """Every count the metrics carry, in comparable form (durations are floats: compared apart)."""
    return {
        "nodes": {
            k: (n.executions, n.failures, n.attempts, n.attempt_failures, n.first_attempt_ok)
            for k, n in s.nodes.items()
        },
        "handoffs": {
            k: (h.transfers, h.failures, dict(h.kinds), dict(h.kind_failures))
            for k, h in s.handoffs.items()
        },
        "routers": {k: (r.source, r.decisions, r.failures) for k, r in s.routers.items()},
        "runs": (s.runs.runs, s.runs.ok, s.runs.error, s.runs.interrupted, s.runs.clean),
        "internal_errors": s.internal_errors,
    }


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


def test_fleet_snapshot_equals_sum_of_worker_ledgers(
    fleet: tuple[servers.Server, list[LedgerSnapshot]],
) -> None:
    prometheus, ledgers = fleet
    expected = _sum(ledgers)
    assert expected.runs.runs == sum(runs for _, _, runs in WORKERS)
    # The seeded faults really differ between workers, and some of each kind happened.
    fails = [s.nodes["check"].failures + s.nodes["check"].attempt_failures for s in ledgers]
    assert fails[0] < fails[2], fails
    assert expected.handoffs[("retrieve", "check")].failures > 0
    assert expected.routers["route"].failures > 0

    fleet_snap = _converged(prometheus.url, expected.runs.runs)
    assert _counts(fleet_snap) == _counts(expected)
    for name, n in fleet_snap.nodes.items():
        own = sum(s.nodes[name].duration_s for s in ledgers if name in s.nodes)
        assert n.duration_s == pytest.approx(own, rel=1e-6, abs=1e-9)


def test_fleet_reliabilities_match_the_summed_ledgers(
    fleet: tuple[servers.Server, list[LedgerSnapshot]],
) -> None:
    prometheus, ledgers = fleet
    expected = _sum(ledgers)
    fleet_rep = report(_converged(prometheus.url, expected.runs.runs))
    own_rep = report(expected)
    got = {(c.kind, c.name): c.reliability for c in fleet_rep.components}
    want = {(c.kind, c.name): c.reliability for c in own_rep.components}
    assert got == want
    assert fleet_rep.end_to_end.observed == own_rep.end_to_end.observed
    assert fleet_rep.predicted == pytest.approx(own_rep.predicted)
    # and the fleet is not just one worker: its observed end to end pools all three
    per_worker = [report(s).end_to_end.observed.value for s in ledgers]
    assert min(per_worker) <= fleet_rep.end_to_end.observed.value <= max(per_worker)


def test_fleet_snapshot_over_a_window_and_graph_discovery(
    fleet: tuple[servers.Server, list[LedgerSnapshot]],
) -> None:
    prometheus, ledgers = fleet
    expected = _sum(ledgers)
    exact = _converged(prometheus.url, expected.runs.runs)
    # graph omitted: Prometheus holds one coordgap graph, so it is found
    assert _counts(fleet_snapshot(prometheus.url, window=None)) == _counts(exact)
    # increase() over a window extrapolates and misses each series' first scrape:
    # never more components than exist, never more runs than the exact total (+ rounding).
    windowed = fleet_snapshot(prometheus.url, graph=GRAPH, window="10m")
    assert set(windowed.nodes) <= set(exact.nodes)
    assert set(windowed.handoffs) <= set(exact.handoffs)
    assert windowed.runs.runs <= 2 * exact.runs.runs
    with pytest.raises(coordgap.ConfigurationError, match="PromQL duration"):
        fleet_snapshot(prometheus.url, graph=GRAPH, window="1 hour")


def test_workers_and_prometheus_listen_on_loopback_only(
    fleet: tuple[servers.Server, list[LedgerSnapshot]],
) -> None:
    prometheus, _ = fleet
    addresses = servers.listening_addresses(prometheus.proc.pid)
    assert addresses
    assert all(a.rsplit(":", 1)[0] in ("127.0.0.1", "::ffff:127.0.0.1") for a in addresses)


def test_grafana_dashboard_queries_run_on_prometheus(
    fleet: tuple[servers.Server, list[LedgerSnapshot]],
) -> None:
    """Every PromQL in the shipped dashboard parses and, on a live fleet, returns series."""
    import urllib.parse
    import urllib.request

    prometheus, ledgers = fleet
    _converged(prometheus.url, _sum(ledgers).runs.runs)
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
