"""Rebuild a ledger snapshot from coordgap's counters in Prometheus text format.

This is what OpenTelemetry's Prometheus exporter serves (dots become
underscores, counters get ``_total``), so ``coordgap watch URL`` and a fleet
report can build the same :class:`~coordgap.report.Report` as a live ledger.
Samples that differ only in labels coordgap does not know (``instance``,
``job``, ``otel_scope_name``, ...) are summed: several processes serving the
same graph add up to one fleet-wide snapshot.

``prometheus_client``'s parser is used when it is installed; otherwise a small
parser of the exposition format (comments, labels, escapes) does the job.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from types import MappingProxyType

from ._ledger import HandoffStats, LedgerSnapshot, NodeStats, RouterStats, RunStats
from .errors import ConfigurationError
from .semconv import (
    ATTR_FIRST_ATTEMPT,
    ATTR_GRAPH,
    ATTR_HANDOFF_KIND,
    ATTR_NODE,
    ATTR_OUTCOME,
    ATTR_ROUTER,
    ATTR_SOURCE,
    ATTR_TARGET,
    METRIC_HANDOFF_TRANSFERS,
    METRIC_NODE_ATTEMPTS,
    METRIC_NODE_EXECUTIONS,
    METRIC_ROUTER_DECISIONS,
    METRIC_RUN_CLEAN,
    METRIC_RUN_COMPLETIONS,
)

__all__ = ["prometheus_name", "snapshot_from_prometheus_text"]


def prometheus_name(otel_name: str) -> str:
    """Return the Prometheus form of an OpenTelemetry metric or attribute name.

    Example::

        >>> prometheus_name("coordgap.node.executions")
        'coordgap_node_executions'
    """
    return re.sub(r"[^a-zA-Z0-9_:]", "_", otel_name)


_P = prometheus_name
_GRAPH, _NODE, _OUTCOME, _FIRST = (
    _P(ATTR_GRAPH),
    _P(ATTR_NODE),
    _P(ATTR_OUTCOME),
    _P(ATTR_FIRST_ATTEMPT),
)
_SOURCE, _TARGET, _KIND, _ROUTER = (
    _P(ATTR_SOURCE),
    _P(ATTR_TARGET),
    _P(ATTR_HANDOFF_KIND),
    _P(ATTR_ROUTER),
)
_METRICS = {
    _P(m): m
    for m in (
        METRIC_NODE_EXECUTIONS,
        METRIC_NODE_ATTEMPTS,
        METRIC_HANDOFF_TRANSFERS,
        METRIC_ROUTER_DECISIONS,
        METRIC_RUN_COMPLETIONS,
        METRIC_RUN_CLEAN,
    )
}


def _samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
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


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), value)


def _parse(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """A minimal parser of the text exposition format, for when prometheus_client is absent."""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
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
            labels[lm.group(1)] = _unescape(lm.group(2))
            pos = lm.end()
        yield m.group(1), labels, float(m.group(4))


def snapshot_from_prometheus_text(text: str, graph: str | None = None) -> LedgerSnapshot:
    """Return the ledger snapshot that coordgap's counters in ``text`` describe.

    Args:
        text: a Prometheus text-format scrape (e.g. the body of ``/metrics``).
        graph: the graph to read; may be omitted when the text holds one graph.

    The snapshot has no topology (the counters do not carry it). Node
    durations, contract failures and fault counts are not exported as
    counters and read as 0.

    Raises:
        ConfigurationError: the text is not Prometheus format, or it holds
            several graphs and ``graph`` was not given (the message lists them).

    Example::

        text = urllib.request.urlopen("http://localhost:9464/metrics").read().decode()
        rep = coordgap.report(snapshot_from_prometheus_text(text, graph="research"))
    """
    rows: list[tuple[str, dict[str, str], float]] = []
    graphs: set[str] = set()
    for name, labels, value in _samples(text):
        base = name[:-6] if name.endswith("_total") else name
        if base not in _METRICS or not math.isfinite(value):
            continue
        rows.append((_METRICS[base], labels, value))
        graphs.add(labels.get(_GRAPH, ""))
    if graph is None:
        if len(graphs) > 1:
            raise ConfigurationError(
                f"the metrics hold several graphs ({', '.join(sorted(graphs))}); pick one with "
                "graph=... (CLI: --graph NAME)"
            )
        graph = next(iter(graphs), "")

    nodes: dict[str, dict[str, int]] = {}
    handoffs: dict[tuple[str, str], dict[str, object]] = {}
    routers: dict[str, dict[str, object]] = {}
    runs = {"runs": 0, "ok": 0, "error": 0, "interrupted": 0, "clean": 0}
    for metric, labels, value in rows:
        if labels.get(_GRAPH, "") != graph:
            continue
        n = round(value)
        error = labels.get(_OUTCOME) == "error"
        if metric == METRIC_NODE_EXECUTIONS:
            row = nodes.setdefault(labels.get(_NODE, ""), _node_row())
            row["executions"] += n
            if error:
                row["failures"] += n
            elif labels.get(_FIRST) == "true":
                row["first_attempt_ok"] += n
        elif metric == METRIC_NODE_ATTEMPTS:
            row = nodes.setdefault(labels.get(_NODE, ""), _node_row())
            row["attempts"] += n
            if error:
                row["attempt_failures"] += n
        elif metric == METRIC_HANDOFF_TRANSFERS:
            key = (labels.get(_SOURCE, ""), labels.get(_TARGET, ""))
            h = handoffs.setdefault(key, {"transfers": 0, "failures": 0, "kinds": {}})
            h["transfers"] = int(h["transfers"]) + n  # type: ignore[call-overload]
            if error:
                h["failures"] = int(h["failures"]) + n  # type: ignore[call-overload]
            kinds: dict[str, int] = h["kinds"]  # type: ignore[assignment]
            kind = labels.get(_KIND, "edge")
            kinds[kind] = kinds.get(kind, 0) + n
        elif metric == METRIC_ROUTER_DECISIONS:
            r = routers.setdefault(
                labels.get(_ROUTER, ""),
                {"source": labels.get(_SOURCE, ""), "decisions": 0, "failures": 0, "targets": {}},
            )
            r["decisions"] = int(r["decisions"]) + n  # type: ignore[call-overload]
            if error:
                r["failures"] = int(r["failures"]) + n  # type: ignore[call-overload]
            targets: dict[str, int] = r["targets"]  # type: ignore[assignment]
            target = labels.get(_TARGET, "")
            targets[target] = targets.get(target, 0) + n
        elif metric == METRIC_RUN_COMPLETIONS:
            outcome = labels.get(_OUTCOME, "ok")
            if outcome in ("ok", "error", "interrupted"):
                runs[outcome] += n
                runs["runs"] += n
        elif metric == METRIC_RUN_CLEAN:
            runs["clean"] += n
    return LedgerSnapshot(
        graph=graph,
        nodes=MappingProxyType({k: NodeStats(**v) for k, v in nodes.items()}),  # type: ignore[arg-type]
        handoffs=MappingProxyType(
            {
                key: HandoffStats(
                    source=key[0],
                    target=key[1],
                    transfers=int(v["transfers"]),  # type: ignore[call-overload]
                    failures=int(v["failures"]),  # type: ignore[call-overload]
                    kinds=MappingProxyType(dict(v["kinds"])),  # type: ignore[call-overload]
                )
                for key, v in handoffs.items()
            }
        ),
        routers=MappingProxyType(
            {
                name: RouterStats(
                    router=name,
                    source=str(v["source"]),
                    decisions=int(v["decisions"]),  # type: ignore[call-overload]
                    failures=int(v["failures"]),  # type: ignore[call-overload]
                    targets=MappingProxyType(dict(v["targets"])),  # type: ignore[call-overload]
                )
                for name, v in routers.items()
            }
        ),
        runs=RunStats(**runs),  # type: ignore[arg-type]
        topology=None,
    )


def _node_row() -> dict[str, int]:
    return {
        "executions": 0,
        "failures": 0,
        "attempts": 0,
        "attempt_failures": 0,
        "first_attempt_ok": 0,
    }
