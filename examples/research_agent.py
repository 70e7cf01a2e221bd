"""The four-node research agent of the worked audit, in pure Python (no LLM).

``retrieve -> analyze -> cross_check -> synthesize``: each node declares what
it requires of the state it receives, so a broken handoff is caught by its
contract. The nodes themselves never fail; :data:`AUDIT_NODES` and
:data:`AUDIT_HANDOFF` are the failure rates of the audit (nodes .98, .96,
.97, .95; each handoff .97), injected with :func:`coordgap.faults.inject`.
Predicted end to end: 0.98 x 0.96 x 0.97 x 0.95 x 0.97^3 = 0.791 (the design brief's
0.795 does not follow from these inputs).

Run it::

    python examples/research_agent.py --runs 1000
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy
from pydantic import BaseModel
from typing_extensions import NotRequired, TypedDict

import coordgap
from coordgap import faults, report

AUDIT_NODES: Mapping[str, float] = {
    "retrieve": 0.98,
    "analyze": 0.96,
    "cross_check": 0.97,
    "synthesize": 0.95,
}
"""Reliability of each node in the audit."""

AUDIT_HANDOFF = 0.97
"""Reliability of each of the three handoffs in the audit."""

AUDIT_END_TO_END = math.prod(AUDIT_NODES.values()) * AUDIT_HANDOFF**3
"""The audit's true end to end reliability: the exact product, 0.7912 (0.791)."""


class State(TypedDict):
    question: str
    docs: NotRequired[list[str]]
    analysis: NotRequired[str]
    checked: NotRequired[bool]
    answer: NotRequired[str]


class Question(BaseModel):
    question: str


class Retrieved(BaseModel):
    docs: list[str]


class Analyzed(BaseModel):
    analysis: str


class CrossChecked(BaseModel):
    checked: bool
    analysis: str


@coordgap.contract(requires=Question)
def retrieve(state: State) -> dict[str, Any]:
    words = state["question"].split()
    return {"docs": [f"doc about {w}" for w in words[:3]] or ["doc about nothing"]}


@coordgap.contract(requires=Retrieved)
def analyze(state: State) -> dict[str, Any]:
    docs = state.get("docs") or []  # a corrupted handoff may have dropped them
    return {"analysis": f"{len(docs)} documents agree"}


@coordgap.contract(requires=Analyzed)
def cross_check(state: State) -> dict[str, Any]:
    return {"checked": bool(state.get("analysis"))}


@coordgap.contract(requires=CrossChecked)
def synthesize(state: State) -> dict[str, Any]:
    verdict = "checked" if state.get("checked") else "unchecked"
    return {"answer": f"{state.get('analysis', 'no analysis')} ({verdict})"}


def build_research_agent(*, retry: Mapping[str, RetryPolicy] | None = None) -> StateGraph:
    """Return the research agent's builder (not compiled), with optional retry policies per node.

    Example::

        app = coordgap.instrument(build_research_agent())
        app.invoke({"question": "why do agents fail"})
    """
    retry = dict(retry or {})
    builder = StateGraph(State)
    for name, fn in (
        ("retrieve", retrieve),
        ("analyze", analyze),
        ("cross_check", cross_check),
        ("synthesize", synthesize),
    ):
        builder.add_node(name, fn, retry_policy=retry.get(name))
    builder.add_edge(START, "retrieve")
    builder.add_edge("retrieve", "analyze")
    builder.add_edge("analyze", "cross_check")
    builder.add_edge("cross_check", "synthesize")
    builder.add_edge("synthesize", END)
    return builder


def with_audit_faults(builder: StateGraph, *, seed: int = 7) -> StateGraph:
    """Return a copy of the builder failing at the audit's rates (nodes raise, handoffs corrupt)."""
    return faults.inject(
        builder,
        nodes={name: round(1.0 - r, 10) for name, r in AUDIT_NODES.items()},
        handoffs=round(1.0 - AUDIT_HANDOFF, 10),
        seed=seed,
    )


def run_many(app: Any, runs: int) -> int:
    """Invoke ``app`` ``runs`` times; return how many runs raised."""
    raised = 0
    for i in range(runs):
        try:
            app.invoke({"question": f"question {i} about agent reliability"})
        except Exception:
            raised += 1
    return raised


def main(argv: Sequence[str] | None = None) -> int:
    """Run the agent N times with the audit's failure rates and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="number of runs (default 1000)")
    parser.add_argument("--seed", type=int, default=7, help="fault injection seed (default 7)")
    parser.add_argument("--no-faults", action="store_true", help="run the agent as written")
    parser.add_argument(
        "--retry", action="store_true", help="give synthesize a RetryPolicy (3 attempts)"
    )
    args = parser.parse_args(argv)
    retry = {"synthesize": RetryPolicy(max_attempts=3, initial_interval=0.0, jitter=False)}
    builder = build_research_agent(retry=retry if args.retry else None)
    if not args.no_faults:
        builder = with_audit_faults(builder, seed=args.seed)
    app = coordgap.instrument(builder, name="research_agent", spans="off", metrics=False)
    run_many(app, args.runs)
    print(report(app))
    print(f"\nthe audit's product (nodes x handoffs): {AUDIT_END_TO_END:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
