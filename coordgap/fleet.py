"""Coordgap's metrics read back into a ledger snapshot: one decoder, two sources.

Each process exports coordgap's counters (``coordgap._metrics``; OpenTelemetry's
Prometheus exporter serves them, ``pip install 'coordgap[prometheus]'``). This
module reads them back, so the report is the same pure math as for a live ledger:

- :func:`fleet_snapshot` asks Prometheus's HTTP API (``/api/v1/query``, plain
  ``urllib``) for the sums over every worker it scrapes::

      snap = fleet_snapshot("http://127.0.0.1:9090", graph="research", window="1h")
      print(coordgap.report(snap))

- :func:`snapshot_from_text` reads the text exposition itself (the body of one
  exporter's ``/metrics``, or a saved scrape); this is what ``coordgap watch`` does.

Both turn what they read into samples ``(metric, labels, value)`` and hand them to
:func:`snapshot_from_samples`, the one decoder of the schema.

Two ways for Prometheus to sum, chosen with ``window``:

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
contract-failure and fault counts, error types (of components and of runs),
where run-level errors died (``RunStats.error_at``), run durations, and the topology
(so components that never ran are not listed).
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from . import semconv as sc
from ._ledger import HandoffStats, LedgerSnapshot, NodeStats, RouterStats, RunStats
from .errors import ConfigurationError

__all__ = ["fleet_snapshot", "promql", "snapshot_from_samples", "snapshot_from_text"]

Sample = tuple[str, Mapping[str, str], float]
"""``(OpenTelemetry metric name, Prometheus labels, value)``: what the decoder reads."""

_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def _prom_name(otel_name: str) -> str:
    """Return the Prometheus form of an OpenTelemetry metric or attribute name."""
    return re.sub(r"[^a-zA-Z0-9_:]", "_", otel_name)


# The series the exporter serves (verified against opentelemetry-exporter-prometheus):
# counters get "_total"; the "{count}" unit adds no suffix; the histogram in seconds
# becomes <name>_seconds_{bucket,sum,count}. Each with the labels it is summed by.
_SERIES: Mapping[str, tuple[str, tuple[str, ...]]] = {
    sc.METRIC_NODE_EXECUTIONS: (
        _prom_name(sc.METRIC_NODE_EXECUTIONS) + "_total",
        (sc.ATTR_NODE, sc.ATTR_OUTCOME, sc.ATTR_FIRST_ATTEMPT),
    ),
    sc.METRIC_NODE_ATTEMPTS: (
        _prom_name(sc.METRIC_NODE_ATTEMPTS) + "_total",
        (sc.ATTR_NODE, sc.ATTR_OUTCOME),
    ),
    sc.METRIC_NODE_TIME: (
        _prom_name(sc.METRIC_NODE_TIME) + "_seconds_total",
        (sc.ATTR_NODE,),
    ),
    sc.METRIC_HANDOFF_TRANSFERS: (
        _prom_name(sc.METRIC_HANDOFF_TRANSFERS) + "_total",
        (sc.ATTR_SOURCE, sc.ATTR_TARGET, sc.ATTR_HANDOFF_KIND, sc.ATTR_OUTCOME),
    ),
    sc.METRIC_ROUTER_DECISIONS: (
        _prom_name(sc.METRIC_ROUTER_DECISIONS) + "_total",
        (sc.ATTR_ROUTER, sc.ATTR_SOURCE, sc.ATTR_OUTCOME),
    ),
    sc.METRIC_ROUTER_CHOICES: (
        _prom_name(sc.METRIC_ROUTER_CHOICES) + "_total",
        (sc.ATTR_ROUTER, sc.ATTR_SOURCE, sc.ATTR_TARGET),
    ),
    sc.METRIC_RUN_COMPLETIONS: (
        _prom_name(sc.METRIC_RUN_COMPLETIONS) + "_total",
        (sc.ATTR_OUTCOME,),
    ),
    sc.METRIC_RUN_CLEAN: (_prom_name(sc.METRIC_RUN_CLEAN) + "_total", ()),
    sc.METRIC_INTERNAL_ERRORS: (_prom_name(sc.METRIC_INTERNAL_ERRORS) + "_total", ()),
}

_METRIC_OF_SERIES: Mapping[str, str] = {series: m for m, (series, _) in _SERIES.items()}

_GRAPH = _prom_name(sc.ATTR_GRAPH)


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _one_graph(found: Iterable[str], where: str) -> str:
    """Return the only graph ``where`` holds; raise, naming them, if it holds several or none."""
    names = sorted(set(found))
    if len(names) != 1:
        listed = ", ".join(names) if names else "none"
        raise ConfigurationError(
            f"{where} holds {len(names)} coordgap graphs ({listed}); "
            "pick one with graph=... (CLI: --graph NAME)"
        )
    return names[0]


# -- from Prometheus's HTTP API --------------------------------------------------------


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
    selector = f"{series}{{{_GRAPH}={_quote(graph)}}}"
    if window is not None:
        _check_window(window)
        selector = f"increase({selector}[{window}])"
    by = ", ".join(_prom_name(label) for label in labels)
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
        series = _SERIES[sc.METRIC_RUN_COMPLETIONS][0]
        rows = _query(base, f"count by ({_GRAPH}) ({series})", when, timeout_s)
        graph = _one_graph(
            (str(r["metric"].get(_GRAPH, "")) for r in rows), f"Prometheus at {base}"
        )
    samples: list[Sample] = []
    for metric in _SERIES:
        for row in _query(base, promql(metric, graph=graph, window=window), when, timeout_s):
            samples.append((metric, row["metric"], float(row["value"][1])))
    return snapshot_from_samples(graph, samples)


# -- from the text exposition ------------------------------------------------------------


def snapshot_from_text(text: str, *, graph: str | None = None) -> LedgerSnapshot:
    """Return the ledger snapshot that coordgap's counters in a Prometheus text scrape describe.

    Args:
        text: the text exposition format, e.g. the body of an exporter's ``/metrics``.
            Samples that differ only in labels coordgap does not own (``instance``,
            ``job``, ``otel_scope_name``, ...) add up.
        graph: the graph to read; may be omitted when the text holds one graph.

    Raises:
        ConfigurationError: the text is not the exposition format; it holds no
            coordgap graph, or several and ``graph`` was not given (the message
            lists them), or not ``graph``.

    Example::

        text = urllib.request.urlopen("http://127.0.0.1:9464/metrics").read().decode()
        rep = coordgap.report(snapshot_from_text(text, graph="research"))
    """
    samples: list[Sample] = []
    for name, labels, value in _text_samples(text):
        metric = _METRIC_OF_SERIES.get(name)
        if metric is not None:
            samples.append((metric, labels, value))
    found = {labels.get(_GRAPH, "") for _, labels, _ in samples}
    if graph is None:
        graph = _one_graph(found, "the metrics text")
    elif graph not in found:
        listed = ", ".join(sorted(found)) or "none"
        raise ConfigurationError(f"the metrics text holds no graph {graph!r} (it holds: {listed})")
    return snapshot_from_samples(graph, samples)


def _text_samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """Yield ``(series, labels, value)``: prometheus_client's parser, or ours without it."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        yield from _parse(text)
        return
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                yield s.name, dict(s.labels), float(s.value)
    except ValueError as exc:
        raise ConfigurationError(
            f"not Prometheus text format ({exc}); point coordgap at the exporter's /metrics URL"
        ) from exc


_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_ESCAPE = re.compile(r"\\(.)")


def _parse(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """Parse the text exposition format (comments, labels, escapes) without prometheus_client."""
    # only "\n" ends a line: splitlines() would also split a label value at U+2028 and kin
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        value = _number(m.group(4)) if m is not None else None
        if m is None or value is None:
            raise ConfigurationError(
                f"line {number} is not Prometheus text format: {line[:80]!r}; point coordgap "
                "at the exporter's /metrics URL"
            )
        labels: dict[str, str] = {}
        body = m.group(3) or ""
        pos = 0
        while pos < len(body):
            lm = _LABEL.match(body, pos)
            if lm is None:
                raise ConfigurationError(f"line {number}: cannot read labels {body!r}")
            labels[lm.group(1)] = _ESCAPE.sub(
                lambda e: "\n" if e.group(1) == "n" else e.group(1), lm.group(2)
            )
            pos = lm.end()
        yield m.group(1), labels, value


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


# -- the decoder -------------------------------------------------------------------------


def snapshot_from_samples(graph: str, samples: Iterable[Sample]) -> LedgerSnapshot:
    """Return the snapshot that coordgap's counter samples describe: the one decoder.

    ``samples`` are ``(otel_metric_name, prometheus_labels, value)``: the metrics
    ``coordgap._metrics`` exports, as Prometheus labels them. Samples of another
    graph (label ``coordgap_graph``) are skipped; samples that differ only in
    labels coordgap does not read (``instance``, ``job``, ...) add up. Values are
    rounded to integers (``increase`` extrapolates) and kept consistent (failures
    at most their totals, attempts at least the executions, clean runs at most the
    finished ones): the exporter reads each counter from its own snapshot of the
    ledger, so counters collected while runs go on can disagree by a few.

    Example::

        snapshot_from_samples("g", [("coordgap.run.completions", {"coordgap_outcome": "ok"}, 3.0)])
    """
    node_l, out_l, first_l = (
        _prom_name(a) for a in (sc.ATTR_NODE, sc.ATTR_OUTCOME, sc.ATTR_FIRST_ATTEMPT)
    )
    src_l, tgt_l, kind_l, router_l = (
        _prom_name(a)
        for a in (sc.ATTR_SOURCE, sc.ATTR_TARGET, sc.ATTR_HANDOFF_KIND, sc.ATTR_ROUTER)
    )
    nodes: dict[str, list[int]] = {}  # executions, failures, first_attempt_ok, attempts, failed
    seconds: dict[str, float] = {}
    handoffs: dict[tuple[str, str], tuple[dict[str, int], dict[str, int]]] = {}
    routers: dict[str, list[Any]] = {}  # source, decisions, failures
    choices: dict[str, dict[str, int]] = {}  # router -> target -> times chosen
    runs = {"ok": 0, "error": 0, "interrupted": 0, "clean": 0}
    internal = 0

    for metric, labels, value in samples:
        if not math.isfinite(value) or labels.get(_GRAPH, graph) != graph:
            continue
        n = max(0, round(value))
        error = labels.get(out_l) == "error"
        if metric == sc.METRIC_NODE_EXECUTIONS:
            row = nodes.setdefault(labels.get(node_l, ""), [0, 0, 0, 0, 0])
            row[0] += n
            if error:
                row[1] += n
            elif labels.get(first_l) == "true":
                row[2] += n
        elif metric == sc.METRIC_NODE_ATTEMPTS:
            row = nodes.setdefault(labels.get(node_l, ""), [0, 0, 0, 0, 0])
            row[3] += n
            if error:
                row[4] += n
        elif metric == sc.METRIC_NODE_TIME:
            name = labels.get(node_l, "")
            seconds[name] = seconds.get(name, 0.0) + max(0.0, value)
        elif metric == sc.METRIC_HANDOFF_TRANSFERS:
            kinds, failed = handoffs.setdefault(
                (labels.get(src_l, ""), labels.get(tgt_l, "")), ({}, {})
            )
            kind = labels.get(kind_l, "edge")
            kinds[kind] = kinds.get(kind, 0) + n
            if error:
                failed[kind] = failed.get(kind, 0) + n
        elif metric == sc.METRIC_ROUTER_DECISIONS:
            r = routers.setdefault(labels.get(router_l, ""), [labels.get(src_l, ""), 0, 0])
            r[1] += n
            if error:
                r[2] += n
        elif metric == sc.METRIC_ROUTER_CHOICES:
            chosen = choices.setdefault(labels.get(router_l, ""), {})
            target = labels.get(tgt_l, "")
            chosen[target] = chosen.get(target, 0) + n
        elif metric == sc.METRIC_RUN_COMPLETIONS:
            outcome = labels.get(out_l, "")
            if outcome in ("ok", "error", "interrupted"):
                runs[outcome] += n
        elif metric == sc.METRIC_RUN_CLEAN:
            runs["clean"] += n
        elif metric == sc.METRIC_INTERNAL_ERRORS:
            internal += n

    node_stats = {}
    for name, (executions, failures, first_ok, attempts, attempt_failures) in nodes.items():
        failures = min(failures, executions)
        attempts = max(attempts, executions)
        if attempts:
            node_stats[name] = NodeStats(
                executions=executions,
                failures=failures,
                attempts=attempts,
                attempt_failures=min(attempt_failures, attempts),
                first_attempt_ok=min(first_ok, executions - failures),
                duration_s=seconds.get(name, 0.0),
            )
    handoff_stats = {}
    for (source, target), (kinds, failed) in handoffs.items():
        transfers = sum(kinds.values())
        kind_failures = {k: min(c, kinds[k]) for k, c in failed.items() if c}
        if transfers:
            handoff_stats[(source, target)] = HandoffStats(
                source=source,
                target=target,
                transfers=transfers,
                failures=sum(kind_failures.values()),
                kinds=MappingProxyType({k: c for k, c in kinds.items() if c}),
                kind_failures=MappingProxyType(kind_failures),
            )
    router_stats = {
        name: RouterStats(
            router=name,
            source=source,
            decisions=decisions,
            failures=min(failures, decisions),
            targets=MappingProxyType({t: c for t, c in choices.get(name, {}).items() if c}),
        )
        for name, (source, decisions, failures) in routers.items()
        if decisions
    }
    return LedgerSnapshot(
        graph=graph,
        nodes=MappingProxyType(node_stats),
        handoffs=MappingProxyType(handoff_stats),
        routers=MappingProxyType(router_stats),
        runs=RunStats(
            runs=runs["ok"] + runs["error"] + runs["interrupted"],
            ok=runs["ok"],
            error=runs["error"],
            interrupted=runs["interrupted"],
            clean=min(runs["clean"], runs["ok"] + runs["error"]),
        ),
        topology=None,
        internal_errors=internal,
    )
