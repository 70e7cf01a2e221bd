"""The one-page HTML report of a supervisor agent with a loop, a subgraph and a fan-out.

No LLM: every node is a few lines of Python, and failures are injected at fixed
rates (:func:`coordgap.faults.inject`, seeded), so every run of this script
writes the same page. The graph has what a real agent has and what the page
draws: a supervisor whose router picks a branch (one branch is declared but
never taken), a ``cross_check -> retrieve`` retry loop, a subgraph (``write``:
``draft -> polish``), a ``Send`` fan-out to ``cite``, handoff contracts that
injected corruption breaks, and a ``Command`` that sometimes names a node that
does not exist (an invalid route LangGraph ignores silently).

Run it::

    python examples/html_report.py --runs 400 --out reliability.html

``scripts/html-screenshot`` renders this page in headless Chromium for the
screenshot in ``docs/img/``.
"""

from __future__ import annotations

import argparse
import operator
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Send
from pydantic import BaseModel
from typing_extensions import NotRequired, TypedDict

import coordgap
from coordgap import faults


class State(TypedDict):
    question: str
    run: int
    tries: NotRequired[int]
    docs: NotRequired[list[str]]
    analysis: NotRequired[str]
    draft: NotRequired[str]
    citations: Annotated[list[str], operator.add]


class Retrieved(BaseModel):
    docs: list[str]


class Analyzed(BaseModel):
    analysis: str


def supervisor(state: State) -> dict[str, Any]:
    return {"tries": 0}


def route(state: State) -> Literal["retrieve", "answer", "escalate"]:
    # "escalate" is declared in the path map but this supervisor never picks it.
    return "answer" if state["run"] % 9 == 0 else "retrieve"


def retrieve(state: State) -> dict[str, Any]:
    return {"docs": ["doc-1", "doc-2"], "tries": state.get("tries", 0) + 1}


@coordgap.contract(requires=Retrieved)
def analyze(state: State) -> Command[Literal["cross_check"]]:
    if state["run"] % 97 == 5:  # a stale tool name: LangGraph drops the route silently
        return Command(goto="fact_check", update={"analysis": "partial"})
    return Command(goto="cross_check", update={"analysis": f"{len(state['docs'])} docs"})


@coordgap.contract(requires=Analyzed)
def cross_check(state: State) -> dict[str, Any]:
    return {}


def verdict(state: State) -> Literal["retrieve", "write"]:
    return "retrieve" if state["run"] % 7 == 3 and state.get("tries", 0) < 2 else "write"


def answer(state: State) -> dict[str, Any]:
    return {"draft": "a short answer"}


def escalate(state: State) -> dict[str, Any]:
    return {"draft": "a human will answer"}


def draft(state: State) -> dict[str, Any]:
    return {"draft": f"draft of {state.get('analysis', '')}"}


def polish(state: State) -> dict[str, Any]:
    return {"draft": state.get("draft", "") + " (polished)"}


def fan(state: State) -> list[Send]:
    return [Send("cite", {**state, "docs": [d]}) for d in state.get("docs", [])]


def cite(state: State) -> dict[str, Any]:
    return {"citations": state.get("docs", [])[:1]}


def build_support_agent() -> StateGraph:
    """Return the agent's builder: supervisor, research loop, ``write`` subgraph, citations.

    Example::

        app = coordgap.instrument(build_support_agent(), name="support_agent")
    """
    writer = StateGraph(State)
    writer.add_node("draft", draft)
    writer.add_node("polish", polish)
    writer.add_edge(START, "draft")
    writer.add_edge("draft", "polish")
    writer.add_edge("polish", END)

    b = StateGraph(State)
    b.add_node("supervisor", supervisor)
    b.add_node("retrieve", retrieve)
    b.add_node("analyze", analyze)
    b.add_node("cross_check", cross_check)
    b.add_node("write", writer.compile())
    b.add_node("cite", cite)
    b.add_node("answer", answer)
    b.add_node("escalate", escalate)
    b.add_edge(START, "supervisor")
    b.add_conditional_edges("supervisor", route, ["retrieve", "answer", "escalate"])
    b.add_edge("retrieve", "analyze")
    b.add_conditional_edges("cross_check", verdict, ["retrieve", "write"])
    b.add_conditional_edges("write", fan, ["cite"])
    b.add_edge("cite", END)
    b.add_edge("answer", END)
    b.add_edge("escalate", END)
    return b


def with_faults(builder: StateGraph, *, seed: int = 11) -> StateGraph:
    """Return a copy of the builder whose nodes, handoffs and routers fail at fixed rates."""
    return faults.inject(
        builder,
        nodes={"analyze": 0.03, "cite": 0.015, "retrieve": 0.005},
        handoffs={("retrieve", "analyze"): 0.04, ("analyze", "cross_check"): 0.01},
        routers={"verdict": 0.01},
        seed=seed,
    )


def run(runs: int = 400, *, seed: int = 11) -> Any:
    """Return the instrumented agent after ``runs`` runs with injected faults."""
    app = coordgap.instrument(
        with_faults(build_support_agent(), seed=seed),
        name="support_agent",
        spans="off",
        metrics=False,
    )
    for i in range(runs):
        try:
            app.invoke({"question": f"question {i}", "run": i, "citations": []})
        except Exception:  # a failed run is counted; the next one goes on
            pass
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Run the agent and write its HTML report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400, help="number of runs (default 400)")
    parser.add_argument("--seed", type=int, default=11, help="fault injection seed")
    parser.add_argument("--out", default="reliability.html", help="where to write the page")
    args = parser.parse_args(argv)
    rep = coordgap.report(run(args.runs, seed=args.seed))
    Path(args.out).write_text(rep.to_html(), encoding="utf-8")
    print(rep)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
