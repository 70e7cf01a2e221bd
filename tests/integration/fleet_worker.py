"""One worker of the fleet test: runs an instrumented graph, serves its metrics, writes its ledger.

Usage: ``python fleet_worker.py --port P --seed S --fault-rate F --runs N --out PATH``

Serves coordgap's metrics in Prometheus format on 127.0.0.1:P (OpenTelemetry's
Prometheus exporter on prometheus_client's HTTP server), runs the graph N times
with a node that raises with probability F (seeded), writes the final ledger
snapshot as JSON to PATH (atomically), and keeps serving until it is killed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import start_http_server
from pydantic import BaseModel, Field

import coordgap

GRAPH = "fleet-demo"


class State(TypedDict, total=False):
    n: int
    docs: list[str]
    answer: str


class Retrieved(BaseModel):
    docs: list[str] = Field(min_length=1)


class Transient(RuntimeError):
    """Retried once by the RetryPolicy on ``check``."""


def build(rng: random.Random, fault_rate: float) -> StateGraph:
    def retrieve(state: State) -> dict[str, Any]:
        return {"docs": ["d"] * rng.randint(0, 3)}  # 0 docs breaks the handoff contract

    def check(state: State) -> dict[str, Any]:
        if rng.random() < fault_rate:
            raise Transient("injected")
        return {}

    def route(state: State) -> str:
        roll = rng.random()
        if roll < 0.05:
            return "nowhere"  # invalid route: LangGraph ignores it, coordgap counts it
        return "analyze" if roll < 0.6 else "summarize"

    def analyze(state: State) -> dict[str, Any]:
        return {"answer": "a"}

    def summarize(state: State) -> dict[str, Any]:
        return {"answer": "s"}

    g = StateGraph(State)
    g.add_node("retrieve", retrieve)
    g.add_node(
        "check",
        check,
        retry_policy=RetryPolicy(
            max_attempts=2, retry_on=Transient, initial_interval=0.0, jitter=False
        ),
    )
    g.add_node("analyze", analyze)
    g.add_node("summarize", summarize)
    g.add_edge(START, "retrieve")
    g.add_edge("retrieve", "check")
    g.add_conditional_edges("check", route)
    g.add_edge("analyze", END)
    g.add_edge("summarize", END)
    return g


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--fault-rate", type=float, required=True)
    p.add_argument("--runs", type=int, required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    start_http_server(args.port, addr="127.0.0.1")
    meter_provider = MeterProvider(metric_readers=[PrometheusMetricReader()])
    rng = random.Random(args.seed)
    app = coordgap.instrument(
        build(rng, args.fault_rate),
        name=GRAPH,
        handoffs={("retrieve", "check"): Retrieved},
        spans="off",
        durations=True,  # the dashboard's p95 panel reads the (opt-in) duration histogram
        meter_provider=meter_provider,
    )
    for i in range(args.runs):
        try:
            app.invoke({"n": i})
        except Transient:
            pass
    snapshot = coordgap.ledger(app).snapshot()
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(snapshot.to_dict(), f)
    os.replace(tmp, args.out)
    threading.Event().wait()  # keep serving until killed


if __name__ == "__main__":
    main()
