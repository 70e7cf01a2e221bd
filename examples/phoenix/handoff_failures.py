"""Send coordgap's failure spans to a local Arize Phoenix and look at them there.

Start Phoenix first (loopback only, no telemetry)::

    pip install 'coordgap[phoenix]'
    PHOENIX_HOST=127.0.0.1 PHOENIX_PORT=6006 PHOENIX_TELEMETRY_ENABLED=false \\
        PHOENIX_ALLOW_EXTERNAL_RESOURCES=false phoenix serve

then run ``python examples/phoenix/handoff_failures.py`` and open
http://127.0.0.1:6006, project ``coordgap-demo`` (see README.md beside this file).

The graph is a small research agent with three kinds of coordination failure:
a handoff whose state breaks the next node's contract, a node that raises,
and a router that names a node that does not exist (LangGraph ignores that
route silently; coordgap records it).
"""

from __future__ import annotations

import os
import random
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field

import coordgap
from coordgap.otlp import configure_otlp

ENDPOINT = os.environ.get("PHOENIX_ENDPOINT", "http://127.0.0.1:6006")
PROJECT = os.environ.get("PHOENIX_PROJECT", "coordgap-demo")
RUNS = 40


class State(TypedDict, total=False):
    question: str
    docs: list[str]
    findings: str
    answer: str


class Retrieved(BaseModel):
    """What ``analyze`` needs: at least one document."""

    docs: list[str] = Field(min_length=1)


def build(rng: random.Random) -> StateGraph:
    def retrieve(state: State) -> dict[str, Any]:
        return {"docs": [f"doc-{i}" for i in range(rng.choice([0, 1, 2, 3]))]}

    def analyze(state: State) -> dict[str, Any]:
        if rng.random() < 0.1:
            raise TimeoutError("the model did not answer")
        return {"findings": f"{len(state.get('docs', []))} docs"}

    def decide(state: State) -> str:
        roll = rng.random()
        if roll < 0.07:
            return "cross_check_v2"  # renamed node: LangGraph drops this route silently
        return "cross_check" if roll < 0.5 else "synthesize"

    def cross_check(state: State) -> dict[str, Any]:
        return {}

    def synthesize(state: State) -> dict[str, Any]:
        return {"answer": "..."}

    g = StateGraph(State)
    for name, fn in [
        ("retrieve", retrieve),
        ("analyze", analyze),
        ("cross_check", cross_check),
        ("synthesize", synthesize),
    ]:
        g.add_node(name, fn)
    g.add_edge(START, "retrieve")
    g.add_edge("retrieve", "analyze")
    g.add_conditional_edges("analyze", decide)
    g.add_edge("cross_check", "synthesize")
    g.add_edge("synthesize", END)
    return g  # fmt: skip


def main() -> None:
    # Phoenix takes traces only, so metrics=False; the project is a resource attribute.
    tp, mp = configure_otlp(
        ENDPOINT,
        service_name="research-agent",
        resource_attributes={"openinference.project.name": PROJECT},
        metrics=False,
    )
    app = coordgap.instrument(
        build(random.Random(7)),
        name="research-agent",
        handoffs={("retrieve", "analyze"): Retrieved},
        spans="failures",  # "all" also sends a span per node execution
        tracer_provider=tp,
        meter_provider=mp,
    )
    for i in range(RUNS):
        try:
            app.invoke({"question": f"question {i}"})
        except TimeoutError:
            pass
    tp.shutdown()  # flushes the batch of spans
    mp.shutdown()
    print(coordgap.ledger(app).snapshot().runs)
    print(f"open {ENDPOINT} and pick the project {PROJECT!r}")


if __name__ == "__main__":
    main()
