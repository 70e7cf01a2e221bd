"""coordgap's metrics as the real exporter serves them, and what of a ledger they carry.

:class:`Exporter` is OpenTelemetry's Prometheus exporter (``PrometheusMetricReader``) on a
private ``prometheus_client`` registry: pass ``exporter.meter_provider`` to
``coordgap.instrument`` (which registers ``coordgap._metrics.register_metrics`` on it) and
``exporter.text()`` is the body a ``/metrics`` endpoint would serve. No test writes the
metrics text by hand.

:func:`assert_decoded` holds a snapshot decoded from the metrics to a ledger's own snapshot,
field by field, on everything the metrics carry; and checks that the decoded snapshot has
nothing the metrics do not carry (a decoder that invents a router target fails it).

:func:`everything` is one graph with every kind of outcome the counters carry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import operator
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Annotated, Any, TypedDict

import pytest
from graphs_basic import TransientError, linear
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import BaseModel, Field

import coordgap
from coordgap._ledger import LedgerSnapshot

_EMPTY: Mapping[str, int] = MappingProxyType({})


class Exporter:
    """The real Prometheus exporter, on its own registry; several meter providers may share it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.meter_provider = self.new_meter_provider()

    def new_meter_provider(self) -> MeterProvider:
        """A further meter provider whose reader serves on this exporter's registry."""
        return MeterProvider(metric_readers=[PrometheusMetricReader(registry=self.registry)])

    def text(self) -> str:
        """What ``/metrics`` serves now (the text exposition format, as Prometheus scrapes it)."""
        return generate_latest(self.registry).decode()


def carried(snap: LedgerSnapshot, *, durations: bool = False) -> LedgerSnapshot:
    """The part of ``snap`` that coordgap's counters carry; node durations zeroed unless
    ``durations`` (a float sum: compared apart, approximately).

    Not carried (see ``coordgap._metrics``): contract-failure and fault counts, error types,
    run durations, run error types, ``RunStats.error_at``, the topology. (A router's chosen
    targets are: ``coordgap.router.choices``.)
    """
    return LedgerSnapshot(
        graph=snap.graph,
        nodes=MappingProxyType(
            {
                k: dataclasses.replace(
                    n,
                    contract_failures=0,
                    faults=0,
                    duration_s=n.duration_s if durations else 0.0,
                    error_types=_EMPTY,
                )
                for k, n in snap.nodes.items()
            }
        ),
        handoffs=MappingProxyType(
            {
                k: dataclasses.replace(h, contract_failures=0, faults=0, error_types=_EMPTY)
                for k, h in snap.handoffs.items()
            }
        ),
        routers=MappingProxyType(
            {
                k: dataclasses.replace(r, faults=0, error_types=_EMPTY)
                for k, r in snap.routers.items()
            }
        ),
        runs=dataclasses.replace(snap.runs, duration_s=0.0, error_types=_EMPTY, error_at=_EMPTY),
        topology=None,
        internal_errors=snap.internal_errors,
    )


def assert_decoded(decoded: LedgerSnapshot, own: LedgerSnapshot, durations: bool = True) -> None:
    """``decoded`` (read back from the metrics) equals ``own`` on every carried field."""
    assert decoded == carried(decoded, durations=True), (
        "the decoder filled in a field the metrics do not carry"
    )
    assert carried(decoded) == carried(own)
    if durations:  # a float sum, added up in another order by the histogram
        got = {k: n.duration_s for k, n in decoded.nodes.items()}
        want = {k: n.duration_s for k, n in own.nodes.items()}
        assert got == pytest.approx(want, rel=1e-9, abs=1e-9)


def consistent(snap: LedgerSnapshot) -> list[str]:
    """The invariants a ledger always keeps that ``snap`` breaks (empty: none)."""
    bad: list[Any] = []
    for k, n in snap.nodes.items():
        if not (0 <= n.failures <= n.executions <= n.attempts):
            bad.append(("node", k, n))
        if not (n.attempt_failures <= n.attempts and n.first_attempt_ok <= n.successes):
            bad.append(("node", k, n))
    for k, h in snap.handoffs.items():
        if not (0 <= h.failures <= h.transfers == sum(h.kinds.values())):
            bad.append(("handoff", k, h))
        if sum(h.kind_failures.values()) != h.failures:
            bad.append(("handoff", k, h))
        if any(c > h.kinds.get(kind, 0) for kind, c in h.kind_failures.items()):
            bad.append(("handoff", k, h))
    for k, r in snap.routers.items():
        if not (0 <= r.failures <= r.decisions):
            bad.append(("router", k, r))
    runs = snap.runs
    if runs.runs != runs.ok + runs.error + runs.interrupted or runs.clean > runs.finished:
        bad.append(("runs", runs))
    return [repr(b) for b in bad]


# -- one graph with every kind of outcome the counters carry -------------------------------


class S(TypedDict, total=False):
    n: int
    docs: list[str]
    log: Annotated[list[str], operator.add]


class Docs(BaseModel):
    docs: list[str] = Field(min_length=1)


def everything() -> StateGraph:
    """retrieve (retried) -> check (handoff contract; raises) -> route: b | c | invalid;
    b -> sub (a subgraph) -> END; c -> END. What happens is fixed by the run's ``n``:
    the first attempt fails for even n, n % 3 == 0 breaks the contract, n % 7 == 6
    raises in check, n % 4 picks b, c, b, an invalid route."""
    tried: set[int] = set()

    def retrieve(state: S) -> dict[str, Any]:
        n = state["n"]
        if n % 2 == 0 and n not in tried:
            tried.add(n)
            raise TransientError(f"first try of run {n}")
        return {"docs": ["d"] * (n % 3)}  # no docs breaks the handoff contract

    def check(state: S) -> dict[str, Any]:
        if state["n"] % 7 == 6:
            raise ValueError("bad run")
        return {"log": ["check"]}

    def route(state: S) -> str:
        return ("b", "c", "b", "nowhere")[state["n"] % 4]

    g = StateGraph(S)
    retry = RetryPolicy(max_attempts=2, initial_interval=0.0, jitter=False, retry_on=TransientError)
    g.add_node("retrieve", retrieve, retry_policy=retry)
    g.add_node("check", check)
    g.add_node("b", lambda s: {"log": ["b"]})
    g.add_node("c", lambda s: {"log": ["c"]})
    g.add_node("sub", linear(2).compile())
    g.add_edge(START, "retrieve")
    g.add_edge("retrieve", "check")
    g.add_conditional_edges("check", route)
    g.add_edge("b", "sub")
    g.add_edge("sub", END)
    g.add_edge("c", END)
    return g


def everything_app(meter_provider: MeterProvider, name: str = "everything") -> Any:
    """:func:`everything`, instrumented (with its handoff contract) on ``meter_provider``."""
    return coordgap.instrument(
        everything(),
        name=name,
        handoffs={("retrieve", "check"): Docs},
        spans="off",
        meter_provider=meter_provider,
    )


def run(app: Any, ns: Iterable[int]) -> None:
    """Invoke ``app`` once per ``n``; a run that raises is counted, not propagated."""
    for n in ns:
        with contextlib.suppress(ValueError):
            app.invoke({"n": n})
