"""The four-node research agent of DESIGN.md, as a real LangGraph graph, for coverage tests.

``retrieve -> analyze -> cross_check -> synthesize``, with a conditional fallback
``cross_check -> retrieve`` taken when ``fallback_every`` says so (deterministic:
every k-th run by its ``run`` number; never when 0). Variants make the known
differences between declared and observed topology: ``command="unannotated"``
(analyze hands off with an unannotated ``Command``), ``"annotated"`` (with a
``Command[Literal[...]]`` annotation) or ``None`` (a static edge);
``sends=True`` adds a ``Send`` fan-out from synthesize to ``cite`` through a
router without a path map (``path_map=True`` declares it).
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Send


class ResearchState(TypedDict, total=False):
    run: int
    tries: int
    log: Annotated[list[str], operator.add]


def research_agent(
    *,
    fallback_every: int = 0,
    command: str | None = None,
    sends: bool = False,
    path_map: bool = False,
) -> StateGraph:
    def retrieve(state: ResearchState) -> dict[str, Any]:
        return {"tries": state.get("tries", 0) + 1, "log": ["retrieve"]}

    def analyze_plain(state: ResearchState) -> dict[str, Any]:
        return {"log": ["analyze"]}

    def analyze_unannotated(state: ResearchState):  # no annotation: invisible in get_graph()
        return Command(goto="cross_check", update={"log": ["analyze"]})

    def analyze_annotated(state: ResearchState) -> Command[Literal["cross_check"]]:
        return Command(goto="cross_check", update={"log": ["analyze"]})

    def cross_check(state: ResearchState) -> dict[str, Any]:
        return {"log": ["cross_check"]}

    def verdict(state: ResearchState) -> str:
        k = fallback_every
        again = k > 0 and state.get("run", 0) % k == 0 and state.get("tries", 0) < 2
        return "retry" if again else "ok"

    def synthesize(state: ResearchState) -> dict[str, Any]:
        return {"log": ["synthesize"]}

    def cite(state: ResearchState) -> dict[str, Any]:
        return {"log": ["cite"]}

    def fan(state: ResearchState) -> list[Send]:
        return [Send("cite", {"run": i}) for i in range(2)]

    analyze = {
        None: analyze_plain,
        "unannotated": analyze_unannotated,
        "annotated": analyze_annotated,
    }[command]
    b = StateGraph(ResearchState)
    b.add_node("retrieve", retrieve)
    b.add_node("analyze", analyze)
    b.add_node("cross_check", cross_check)
    b.add_node("synthesize", synthesize)
    b.add_edge(START, "retrieve")
    b.add_edge("retrieve", "analyze")
    if command is None:
        b.add_edge("analyze", "cross_check")
    b.add_conditional_edges("cross_check", verdict, {"retry": "retrieve", "ok": "synthesize"})
    if sends:
        b.add_node("cite", cite)
        if path_map:
            b.add_conditional_edges("synthesize", fan, ["cite"])
        else:
            b.add_conditional_edges("synthesize", fan)
        b.add_edge("cite", END)
    else:
        b.add_edge("synthesize", END)
    return b
