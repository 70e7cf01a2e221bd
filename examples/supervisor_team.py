"""A langgraph-supervisor team, counted by coordgap: the report a supervisor gets.

Offline and deterministic: the chat models are scripted policies (no API key, no
network), seeded so every run of this script prints the same report. What goes wrong,
as it does with real models:

- the supervisor sometimes hands off to ``fact_checker``, an agent it has a handoff tool
  for but that was never added to the team: LangGraph drops the route and the run
  "succeeds" with an unfinished answer (coordgap: ``supervisor -> __unknown__``);
- the research worker's search tool sometimes times out (the run raises).

Run::

    pip install -e '.[agents]'
    python examples/supervisor_team.py            # 300 runs, then the report
"""

from __future__ import annotations

import logging
import random
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.prebuilt import create_react_agent
from langgraph_supervisor import create_handoff_tool, create_supervisor

import coordgap

MISROUTE_RATE = 0.04
TIMEOUT_RATE = 0.03
INJECTED = {"misroutes": 0, "timeouts": 0}
"""What the policies did, counted here (the ground truth a test holds coordgap's report to)."""


class PolicyModel(BaseChatModel):
    """A chat model whose answer is ``policy(messages)``: an offline stand-in for an LLM."""

    policy: Callable[[Sequence[BaseMessage]], AIMessage]

    @property
    def _llm_type(self) -> str:
        return "policy"

    def bind_tools(self, tools: Any, **kwargs: Any) -> PolicyModel:
        return self  # the policy already knows its tools

    def _generate(self, messages: list[BaseMessage], stop: Any = None, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self.policy(messages))])


def tool_call(name: str, args: dict[str, Any] | None = None) -> AIMessage:
    call_id = f"call_{name}_{random.getrandbits(32):08x}"
    return AIMessage("", tool_calls=[{"name": name, "args": args or {}, "id": call_id}])


def answered_by(messages: Sequence[BaseMessage], agent: str) -> bool:
    return any(getattr(m, "name", None) == agent and isinstance(m, AIMessage) for m in messages)


def supervisor_policy(messages: Sequence[BaseMessage]) -> AIMessage:
    if not answered_by(messages, "research_expert"):
        if random.random() < MISROUTE_RATE:
            INJECTED["misroutes"] += 1
            return tool_call("transfer_to_fact_checker")  # not in the team
        return tool_call("transfer_to_research_expert")
    if not answered_by(messages, "math_expert"):
        return tool_call("transfer_to_math_expert")
    return AIMessage("FAANG employs about 1.9 million people, about 380,000 each.")


def worker_policy(tool: str, args: dict[str, Any], answer: str) -> Callable[..., AIMessage]:
    def policy(messages: Sequence[BaseMessage]) -> AIMessage:
        last = messages[-1]
        if isinstance(last, ToolMessage) and last.name == tool:
            return AIMessage(answer)  # the tool answered: report back
        return tool_call(tool, args)

    return policy


def web_search(query: str) -> str:
    """Search the web."""
    if random.random() < TIMEOUT_RATE:
        INJECTED["timeouts"] += 1
        raise TimeoutError("search backend timed out")
    return "Amazon 1.5M, Meta 70k, Apple 160k, Netflix 14k, Google 180k"


def divide(a: float, b: float) -> float:
    """Divide a by b."""
    return a / b


def build_team() -> Any:
    # langgraph-supervisor builds on create_react_agent, which LangGraph 1.x marks as moved
    warnings.filterwarnings("ignore", message=".*create_react_agent has been moved.*")
    research = create_react_agent(
        PolicyModel(policy=worker_policy("web_search", {"query": "FAANG headcount"}, "1.9M")),
        [web_search],
        name="research_expert",
    )
    math = create_react_agent(
        PolicyModel(policy=worker_policy("divide", {"a": 1.9e6, "b": 5}, "about 380,000")),
        [divide],
        name="math_expert",
    )
    handoffs = [create_handoff_tool(agent_name=n) for n in ("research_expert", "math_expert")]
    handoffs.append(create_handoff_tool(agent_name="fact_checker"))  # never added: a bug
    return create_supervisor(
        [research, math], model=PolicyModel(policy=supervisor_policy), tools=handoffs
    )


def main(runs: int = 300, seed: int = 7) -> coordgap.Report:
    random.seed(seed)
    INJECTED.update(misroutes=0, timeouts=0)
    # LangGraph logs each dropped route ("wrote to unknown channel"); the report counts them
    logging.getLogger("langgraph").setLevel(logging.ERROR)
    app = coordgap.instrument(build_team(), name="supervisor-team", spans="off", metrics=False)
    for i in range(runs):
        try:
            app.invoke({"messages": [{"role": "user", "content": f"FAANG headcount? #{i}"}]})
        except TimeoutError:
            pass  # the run raised; coordgap counted it
    return coordgap.report(app)


if __name__ == "__main__":
    print(main(int(sys.argv[1]) if len(sys.argv) > 1 else 300).to_text(color=False))
