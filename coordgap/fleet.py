"""A fleet-wide ledger snapshot, read from Prometheus: every worker's counters, summed.

Each worker process exports coordgap's counters (OpenTelemetry's Prometheus
exporter, ``pip install 'coordgap[prometheus]'``); Prometheus scrapes them all;
:func:`fleet_snapshot` asks Prometheus's HTTP API (``/api/v1/query``, plain
``urllib``) for the sums and returns one :class:`~coordgap.ledger.LedgerSnapshot`,
so the report is the same pure math as for one process::

    snap = fleet_snapshot("http://127.0.0.1:9090", graph="research", window="1h")
    print(coordgap.report(snap))

Two ways to sum, chosen with ``window``:

- ``window="1h"`` (any PromQL duration): ``sum by (...) (increase(metric[1h]))``,
  what happened fleet-wide in the last hour. Survives worker restarts (counter
  resets) and counts workers that have since exited; but Prometheus
  extrapolates ``increase`` to the window's edges, so the counts are estimates
  (rounded to integers), and a series that appeared inside the window loses the
  value of its first scrape (Prometheus 2.x). Use it for dashboards and trends.
- ``window=None``: ``sum by (...) (metric)``, the latest value of every live
  worker's counters, i.e. everything since each worker started. Exact while no
  worker restarts; a worker that exited or restarted drops out (its series goes
  stale). Use it for exact counts, e.g. in tests.

Both forms are written out in ``docs/backends.md`` for Grafana panels.

What the counters do not carry reads as zero or empty in the snapshot:
contract-failure and fault counts, error types, run durations, the targets a
router chose, and the topology (so components that never ran are not listed).
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from . import semconv as sc
from ._ledger import HandoffStats, LedgerSnapshot, NodeStats, RouterStats, RunStats
from ._prometheus import prometheus_name as prom_name
from .errors import ConfigurationError

__all__ = ["fleet_snapshot", "promql", "snapshot_from_samples"]

_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


# The series the exporter serves (verified against opentelemetry-exporter-prometheus):
# counters get "_total"; the "{count}" unit adds no suffix; the histogram in seconds
# becomes <name>_seconds_{bucket,sum,count}.
_SERIES: Mapping[str, tuple[str, tuple[str, ...]]] = {
    sc.METRIC_NODE_EXECUTIONS: (
        prom_name(sc.METRIC_NODE_EXECUTIONS) + "_total",
        (sc.ATTR_NODE, sc.ATTR_OUTCOME, sc.ATTR_FIRST_ATTEMPT),
    ),
    sc.METRIC_NODE_ATTEMPTS: (
        prom_name(sc.METRIC_NODE_ATTEMPTS) + "_total",
        (sc.ATTR_NODE, sc.ATTR_OUTCOME),
    ),
    sc.METRIC_NODE_DURATION: (
        prom_name(sc.METRIC_NODE_DURATION) + "_seconds_sum",
        (sc.ATTR_NODE,),
    ),
    sc.METRIC_HANDOFF_TRANSFERS: (
        prom_name(sc.METRIC_HANDOFF_TRANSFERS) + "_total",
        (sc.ATTR_SOURCE, sc.ATTR_TARGET, sc.ATTR_HANDOFF_KIND, sc.ATTR_OUTCOME),
    ),
    sc.METRIC_ROUTER_DECISIONS: (
        prom_name(sc.METRIC_ROUTER_DECISIONS) + "_total",
        (sc.ATTR_ROUTER, sc.ATTR_SOURCE, sc.ATTR_OUTCOME),
    ),
    sc.METRIC_RUN_COMPLETIONS: (
        prom_name(sc.METRIC_RUN_COMPLETIONS) + "_total",
        (sc.ATTR_OUTCOME,),
    ),
    sc.METRIC_RUN_CLEAN: (prom_name(sc.METRIC_RUN_CLEAN) + "_total", ()),
    sc.METRIC_INTERNAL_ERRORS: (prom_name(sc.METRIC_INTERNAL_ERRORS) + "_total", ()),
}


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def promql(metric: str, *, graph: str, window: str | None = "1h") -> str:
    """Return the PromQL that sums one of coordgap's metrics across the fleet.

    Args:
        metric: an OpenTelemetry metric name from :mod:`coordgap.semconv`
            (``"coordgap.node.executions"``, ...).
        graph: the graph's name (label ``coordgap_graph``).
        window: a PromQL duration for ``increase(...)``, or ``None`` for the
            latest values of the raw counters.

    Example::

        >>> promql("coordgap.run.clean", graph="research", window="1h")
        'sum(increase(coordgap_run_clean_total{coordgap_graph="research"}[1h]))'
    """
    try:
        series, labels = _SERIES[metric]
    except KeyError:
        raise ConfigurationError(
            f"{metric!r} is not one of coordgap's counters: {', '.join(sorted(_SERIES))}"
        ) from None
    selector = f"{series}{{{prom_name(sc.ATTR_GRAPH)}={_quote(graph)}}}"
    if window is not None:
        _check_window(window)
        selector = f"increase({selector}[{window}])"
    by = ", ".join(prom_name(label) for label in labels)
    return f"sum by ({by}) ({selector})" if by else f"sum({selector})"


def _check_window(window: str) -> None:
    if not isinstance(window, str) or not _DURATION.match(window):
        raise ConfigurationError(
            f"window must be a PromQL duration such as '5m', '1h' or '7d', or None (got {window!r})"
        )


def _query(base: str, expr: str, at: float, timeout_s: float) -> list[dict[str, Any]]:
    body = urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"}).encode()
    req = urllib.request.Request(
        base + "/api/v1/query",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            payload = json.load(resp)
    except urllib.error.HTTPError as exc:
        try:
            payload = json.load(exc)
        except (ValueError, OSError):
            raise ConfigurationError(
                f"Prometheus at {base} answered HTTP {exc.code} to {expr!r}"
            ) from exc
    if payload.get("status") != "success":
        raise ConfigurationError(
            f"Prometheus at {base} rejected {expr!r}: "
            f"{payload.get('errorType', 'error')}: {payload.get('error', '')}"
        )
    data = payload["data"]
    if data.get("resultType") != "vector":
        raise ConfigurationError(f"expected an instant vector from {expr!r}, got {data!r}")
    return list(data["result"])


def _graphs(base: str, at: float, timeout_s: float) -> list[str]:
    series = _SERIES[sc.METRIC_RUN_COMPLETIONS][0]
    label = prom_name(sc.ATTR_GRAPH)
    rows = _query(base, f"count by ({label}) ({series})", at, timeout_s)
    return sorted(str(r["metric"].get(label, "")) for r in rows)


def fleet_snapshot(
    url: str,
    *,
    graph: str | None = None,
    window: str | None = "1h",
    at: float | None = None,
    timeout_s: float = 10.0,
) -> LedgerSnapshot:
    """Return one ledger snapshot of ``graph`` summed over every worker Prometheus scrapes.

    Args:
        url: Prometheus's base URL (``http://127.0.0.1:9090``; a path prefix is kept).
        graph: the graph's name; may be omitted when Prometheus holds one graph.
        window: a PromQL duration: counts from ``increase(...[window])``, fleet-wide
            over that window, estimated; ``None``: the latest counter values of the
            live workers, exact (see the module's docstring for the trade-off).
        at: evaluation time (Unix seconds); every query uses the same instant.
            ``None``: now.
        timeout_s: per HTTP request.

    Raises:
        ConfigurationError: a bad ``url`` or ``window``; Prometheus rejected a query;
            ``graph`` omitted while Prometheus holds several graphs (the message lists
            them) or none.
        OSError: Prometheus cannot be reached (``urllib.error.URLError``).

    Example::

        snap = fleet_snapshot("http://127.0.0.1:9090", graph="research", window=None)
        rep = coordgap.report(snap)
        rep.end_to_end.observed.value
    """
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"url must be Prometheus's http(s) base URL (got {url!r})")
    if window is not None:
        _check_window(window)
    base = url.rstrip("/")
    when = time.time() if at is None else at
    if graph is None:
        found = _graphs(base, when, timeout_s)
        if len(found) != 1:
            listed = ", ".join(found) if found else "none"
            raise ConfigurationError(
                f"Prometheus at {base} holds {len(found)} coordgap graphs ({listed}); "
                "pick one with graph=... (CLI: --graph NAME)"
            )
        graph = found[0]
    samples: list[tuple[str, Mapping[str, str], float]] = []
    for metric in _SERIES:
        for row in _query(base, promql(metric, graph=graph, window=window), when, timeout_s):
            samples.append((metric, row["metric"], float(row["value"][1])))
    return snapshot_from_samples(graph, samples)


def snapshot_from_samples(
    graph: str, samples: Iterable[tuple[str, Mapping[str, str], float]]
) -> LedgerSnapshot:
    """Return the snapshot that summed counter samples describe.

    ``samples`` are ``(otel_metric_name, prometheus_labels, value)``; samples that
    differ only in labels coordgap does not read (``instance``, ``job``, ...) add up.
    Values are rounded to integers (``increase`` extrapolates) and failures are
    capped at their totals, so the snapshot is always consistent.

    Example::

        snapshot_from_samples("g", [("coordgap.run.completions", {"coordgap_outcome": "ok"}, 3.0)])
    """
    node_l, out_l, first_l = (
        prom_name(a) for a in (sc.ATTR_NODE, sc.ATTR_OUTCOME, sc.ATTR_FIRST_ATTEMPT)
    )
    src_l, tgt_l, kind_l, router_l = (
        prom_name(a) for a in (sc.ATTR_SOURCE, sc.ATTR_TARGET, sc.ATTR_HANDOFF_KIND, sc.ATTR_ROUTER)
    )
    nodes: dict[str, dict[str, Any]] = {}
    handoffs: dict[tuple[str, str], dict[str, Any]] = {}
    routers: dict[str, dict[str, Any]] = {}
    runs = {"ok": 0, "error": 0, "interrupted": 0, "clean": 0}
    internal = 0

    def node(name: str) -> dict[str, Any]:
        return nodes.setdefault(
            name,
            {"executions": 0, "failures": 0, "attempts": 0, "attempt_failures": 0,
             "first_attempt_ok": 0, "duration_s": 0.0},
        )  # fmt: skip

    for metric, labels, value in samples:
        if not math.isfinite(value):
            continue
        n = max(0, round(value))
        error = labels.get(out_l) == "error"
        if metric == sc.METRIC_NODE_EXECUTIONS:
            row = node(labels.get(node_l, ""))
            row["executions"] += n
            if error:
                row["failures"] += n
            elif labels.get(first_l) == "true":
                row["first_attempt_ok"] += n
        elif metric == sc.METRIC_NODE_ATTEMPTS:
            row = node(labels.get(node_l, ""))
            row["attempts"] += n
            if error:
                row["attempt_failures"] += n
        elif metric == sc.METRIC_NODE_DURATION:
            name = labels.get(node_l, "")
            if name in nodes or value > 0:
                node(name)["duration_s"] += max(0.0, value)
        elif metric == sc.METRIC_HANDOFF_TRANSFERS:
            key = (labels.get(src_l, ""), labels.get(tgt_l, ""))
            h = handoffs.setdefault(key, {"transfers": 0, "failures": 0, "kinds": {}, "kf": {}})
            kind = labels.get(kind_l, "edge")
            h["transfers"] += n
            h["kinds"][kind] = h["kinds"].get(kind, 0) + n
            if error:
                h["failures"] += n
                h["kf"][kind] = h["kf"].get(kind, 0) + n
        elif metric == sc.METRIC_ROUTER_DECISIONS:
            name = labels.get(router_l, "")
            r = routers.setdefault(
                name, {"source": labels.get(src_l, ""), "decisions": 0, "failures": 0}
            )
            r["decisions"] += n
            if error:
                r["failures"] += n
        elif metric == sc.METRIC_RUN_COMPLETIONS:
            outcome = labels.get(out_l, "")
            if outcome in ("ok", "error", "interrupted"):
                runs[outcome] += n
        elif metric == sc.METRIC_RUN_CLEAN:
            runs["clean"] += n
        elif metric == sc.METRIC_INTERNAL_ERRORS:
            internal += n

    node_stats = {}
    for name, v in nodes.items():
        failures = min(v["failures"], v["executions"])
        node_stats[name] = NodeStats(
            executions=v["executions"],
            failures=failures,
            attempts=max(v["attempts"], v["executions"]),
            attempt_failures=min(v["attempt_failures"], max(v["attempts"], v["executions"])),
            first_attempt_ok=min(v["first_attempt_ok"], v["executions"] - failures),
            duration_s=v["duration_s"],
        )
    handoff_stats = {
        key: HandoffStats(
            source=key[0],
            target=key[1],
            transfers=v["transfers"],
            failures=min(v["failures"], v["transfers"]),
            kinds=MappingProxyType({k: c for k, c in v["kinds"].items() if c}),
            kind_failures=MappingProxyType({k: c for k, c in v["kf"].items() if c}),
        )
        for key, v in handoffs.items()
        if v["transfers"] > 0
    }
    router_stats = {
        name: RouterStats(
            router=name,
            source=v["source"],
            decisions=v["decisions"],
            failures=min(v["failures"], v["decisions"]),
        )
        for name, v in routers.items()
        if v["decisions"] > 0
    }
    finished = runs["ok"] + runs["error"]
    return LedgerSnapshot(
        graph=graph,
        nodes=MappingProxyType({k: s for k, s in node_stats.items() if s.attempts > 0}),
        handoffs=MappingProxyType(handoff_stats),
        routers=MappingProxyType(router_stats),
        runs=RunStats(
            runs=runs["ok"] + runs["error"] + runs["interrupted"],
            ok=runs["ok"],
            error=runs["error"],
            interrupted=runs["interrupted"],
            clean=min(runs["clean"], finished),
        ),
        topology=None,
        internal_errors=internal,
    )
