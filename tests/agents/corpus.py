"""The corpus: agents built the way users build them, each with the runs that drive it.

Every :class:`Case` holds a factory that builds a *fresh* compiled graph (new scripted
models, new counters) and the runs to make on it, so a bare graph and an instrumented
one are driven on identical scripts: build twice, make the same runs in the same order.
Models never run in parallel inside one graph, so a script is consumed in one order.

Cases (see :data:`CASES`):

* ``react_*`` / ``create_agent_*``: ``langgraph.prebuilt.create_react_agent`` and
  ``langchain.agents.create_agent`` with tools that succeed, a tool that raises, and a
  call to a tool that does not exist; tool errors handled (``ToolNode(handle_tool_errors=
  True)``; for ``create_agent``, ``ToolRetryMiddleware(max_retries=0,
  on_failure="continue")``, its way of handling them) or not (the default re-raises).
* ``supervisor_*``: ``langgraph_supervisor.create_supervisor`` over two prebuilt workers,
  output modes ``full_history`` and ``last_message``; ``supervisor_ghost`` hands off to a
  worker that does not exist (an extra ``create_handoff_tool(agent_name="ghost")``).
* ``swarm_*``: ``langgraph_swarm.create_swarm`` of prebuilt or ``create_agent`` agents,
  several turns on one thread (``InMemorySaver``); ``swarm_ghost`` hands off to a missing
  ``Carol`` (its next turn then fails in the swarm's START router).
* ``hierarchical_teams``: LangGraph's hierarchical agent teams tutorial: a top supervisor
  routing with ``Command`` to team graphs called from nodes, each team a supervisor of
  prebuilt workers.
* ``map_reduce``: ``Send`` fan-out and a join back; one run also sends to a missing node.
* ``interrupt_subgraph``: ``interrupt()`` inside a subgraph, resumed with
  ``Command(resume=...)``, twice on one thread.
* ``retry_router``: a ``RetryPolicy`` node whose router raises on its first attempt
  (retried), then on every attempt (the run fails).
* ``error_handler``: ``StateGraph.set_node_defaults(error_handler=...)``.
* ``trace_policy``: a node with ``TracePolicy(process_inputs=..., process_outputs=...)``.
* ``cached``: a node with ``CachePolicy`` and an ``InMemoryCache`` (the second run hits).
* ``ping_pong``: two agents handing back and forth until ``GraphRecursionError``.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.cache.memory import InMemoryCache
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import CachePolicy, Command, RetryPolicy, Send, interrupt

from .fakes import ScriptedChatModel, call, say

try:  # LangGraph 1.2 added per-node trace policies and builder-wide node defaults
    from langgraph.types import TracePolicy
except ImportError:  # pragma: no cover - older LangGraph
    TracePolicy = None  # type: ignore[assignment,misc]

HAS_TRACE_POLICY = TracePolicy is not None
HAS_NODE_DEFAULTS = hasattr(StateGraph, "set_node_defaults")


__all__ = ["CASES", "HAS_NODE_DEFAULTS", "HAS_TRACE_POLICY", "Case", "Run", "case"]


@dataclass(frozen=True)
class Run:
    """One run: the input and the config (a thread for multi-turn and resumed runs)."""

    input: Any
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """A graph factory and the runs to make on each graph it builds."""

    name: str
    build: Callable[[Any], Any]
    """``build(checkpointer)`` -> a fresh compiled graph (``None``: the graph's own choice)."""
    runs: tuple[Run, ...]
    threaded: bool = False
    """The runs share a thread: the graph needs a checkpointer."""
    parallel: bool = False
    """Tasks of one superstep may finish in any order (compare chunks as multisets)."""
    raises: bool = False
    """Some run raises."""

    def graph(self, checkpointer: Any = None) -> Any:
        """Return a fresh compiled graph (an ``InMemorySaver``-like checkpointer if threaded)."""
        if checkpointer is None and self.threaded:
            from langgraph.checkpoint.memory import InMemorySaver

            checkpointer = InMemorySaver()
        return self.build(checkpointer)


def _human(text: str) -> dict[str, Any]:
    return {"messages": [HumanMessage(content=text)]}


def _thread(name: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": name}}


# -- tools -------------------------------------------------------------------------------


class ApiDown(RuntimeError):
    """What the flaky tool raises."""


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def lookup(query: str) -> str:
    """Look a topic up."""
    return f"facts about {query}"


@tool
def flaky_api(query: str) -> str:
    """Call an API that is down."""
    raise ApiDown(f"api down for {query}")


TOOLS = [add, lookup, flaky_api]

# One script for the three runs of a single agent: tools that work, a tool that raises,
# a tool that does not exist. With tool errors handled the agent answers after each.
_AGENT_RUNS = (
    Run(_human("what is 2 + 3, and what about cats?")),
    Run(_human("call the api")),
    Run(_human("use a tool you do not have")),
)


def _agent_script(handled: bool) -> list[AIMessage]:
    script = [
        call("add", {"a": 2, "b": 3}),
        call("lookup", {"query": "cats"}),
        say("2 + 3 is 5 and cats are great"),
        call("flaky_api", {"query": "x"}),
    ]
    if handled:
        script.append(say("the api is down, sorry"))
    script += [call("teleport", {"where": "moon"}), say("I cannot teleport")]
    return script


def react_agent(handled: bool) -> Callable[[Any], Any]:
    """create_react_agent with three tools; tool errors handled or re-raised."""

    def build(checkpointer: Any) -> Any:
        from langgraph.prebuilt import ToolNode, create_react_agent

        model = ScriptedChatModel.of(*_agent_script(handled))
        tools = ToolNode(TOOLS, handle_tool_errors=handled)
        return create_react_agent(model, tools, checkpointer=checkpointer)

    return build


def langchain_agent(handled: bool) -> Callable[[Any], Any]:
    """langchain.agents.create_agent with three tools; tool errors handled or re-raised."""

    def build(checkpointer: Any) -> Any:
        from langchain.agents import create_agent
        from langchain.agents.middleware import ToolRetryMiddleware

        model = ScriptedChatModel.of(*_agent_script(handled))
        middleware = [ToolRetryMiddleware(max_retries=0, on_failure="continue")] if handled else []
        return create_agent(model, TOOLS, middleware=middleware, checkpointer=checkpointer)

    return build


# -- langgraph-supervisor ------------------------------------------------------------------


def supervisor(output_mode: str, ghost: bool = False) -> Callable[[Any], Any]:
    """create_supervisor over a research and a math worker (prebuilt agents)."""

    def build(checkpointer: Any) -> Any:
        from langgraph.prebuilt import create_react_agent
        from langgraph_supervisor import create_handoff_tool, create_supervisor

        research = create_react_agent(
            ScriptedChatModel.of(
                call("lookup", {"query": "FAANG headcount"}),
                say("FAANG employs about 1.9 million people"),
                name="research",
            ),
            [lookup],
            name="research_expert",
        )
        math = create_react_agent(
            ScriptedChatModel.of(call("add", {"a": 2, "b": 3}), say("the sum is 5"), name="math"),
            [add],
            name="math_expert",
        )
        if ghost:
            script = [call("transfer_to_ghost")]
        else:
            script = [
                call("transfer_to_research_expert"),
                call("transfer_to_math_expert"),
                say("FAANG employs about 1.9 million people; 2 + 3 = 5"),
            ]
        model = ScriptedChatModel.of(*script, name="supervisor")
        extra = None
        if ghost:  # custom handoff tools replace the default ones: give one per worker too
            extra = [
                create_handoff_tool(agent_name=n)
                for n in ("research_expert", "math_expert", "ghost")
            ]
        workflow = create_supervisor(
            [research, math], model=model, output_mode=output_mode, tools=extra
        )
        return workflow.compile(checkpointer=checkpointer)

    return build


# -- langgraph-swarm -----------------------------------------------------------------------


def swarm(kind: str, ghost: bool = False) -> Callable[[Any], Any]:
    """create_swarm of Alice and Bob (prebuilt or create_agent agents), one thread."""

    def build(checkpointer: Any) -> Any:
        from langgraph_swarm import create_handoff_tool, create_swarm

        if ghost:
            alice_script = [call("transfer_to_carol")]
            bob_script: list[AIMessage] = []
        else:
            alice_script = [
                call("transfer_to_bob", text="Bob knows maths"),
                call("add", {"a": 2, "b": 3}),
                say("5, says Alice"),
            ]
            bob_script = [
                call("add", {"a": 40, "b": 2}),
                say("42"),
                say("Bob again: still 42"),
                call("transfer_to_alice"),
            ]
        alice_tools: list[Any] = [add, create_handoff_tool(agent_name="Bob")]
        if ghost:
            # a hand-written handoff tool (no handoff metadata, so the swarm does not
            # declare Carol as a destination) to an agent that does not exist
            to_carol = create_handoff_tool(agent_name="Carol")
            to_carol.metadata = None
            alice_tools.append(to_carol)
        bob_tools: list[Any] = [add, create_handoff_tool(agent_name="Alice")]
        alice = _agent(
            kind, "Alice", ScriptedChatModel.of(*alice_script, name="alice"), alice_tools
        )
        bob = _agent(kind, "Bob", ScriptedChatModel.of(*bob_script, name="bob"), bob_tools)
        return create_swarm([alice, bob], default_active_agent="Alice").compile(
            checkpointer=checkpointer
        )

    return build


def _agent(kind: str, name: str, model: Any, tools: Sequence[Any]) -> Any:
    if kind == "prebuilt":
        from langgraph.prebuilt import create_react_agent

        return create_react_agent(model, list(tools), name=name)
    from langchain.agents import create_agent

    return create_agent(model, list(tools), name=name)


_SWARM_TURNS = (
    Run(_human("I need Bob: what is 40 + 2?"), _thread("swarm")),
    Run(_human("and again?"), _thread("swarm")),
    Run(_human("back to Alice: 2 + 3?"), _thread("swarm")),
)
_SWARM_GHOST_TURNS = (
    Run(_human("get me Carol"), _thread("ghost")),
    Run(_human("hello?"), _thread("ghost")),
)


# -- hierarchical agent teams (LangGraph tutorial) -------------------------------------------


class TeamState(MessagesState):
    next: str


def _team_supervisor(model: Any, members: Sequence[str]) -> Callable[..., Any]:
    """The tutorial's make_supervisor_node: the LLM names the next worker (or FINISH)."""
    options = ["FINISH", *members]

    def supervisor_node(state: TeamState) -> Command[Any]:
        response = model.invoke(state["messages"])
        goto = str(response.content)
        if goto not in options:
            goto = "FINISH"
        if goto == "FINISH":
            goto = END
        return Command(goto=goto, update={"next": goto})

    return supervisor_node


def _worker_node(agent: Any, name: str) -> Callable[..., Any]:
    def node(state: TeamState) -> Command[Any]:
        result = agent.invoke(state)
        return Command(
            update={"messages": [HumanMessage(content=result["messages"][-1].content, name=name)]},
            goto="supervisor",
        )

    return node


def hierarchical_teams(checkpointer: Any) -> Any:
    """Top supervisor -> research team / writing team (team graphs called from nodes)."""
    from langgraph.prebuilt import create_react_agent

    def team(name: str, workers: dict[str, list[AIMessage]], choices: list[str]) -> Any:
        builder = StateGraph(TeamState)
        sup_model = ScriptedChatModel.of(*[say(c) for c in choices], name=f"{name}_sup")
        builder.add_node(
            "supervisor", _team_supervisor(sup_model, list(workers)), destinations=(*workers, END)
        )
        for worker, script in workers.items():
            agent = create_react_agent(ScriptedChatModel.of(*script, name=worker), [lookup])
            builder.add_node(worker, _worker_node(agent, worker), destinations=("supervisor",))
        builder.add_edge(START, "supervisor")
        return builder.compile()

    research = team(
        "research",
        {
            "search": [call("lookup", {"query": "agents"}), say("agents are programs")],
            "web_scraper": [say("scraped: nothing new")],
        },
        ["search", "web_scraper", "FINISH"],
    )
    writing = team(
        "writing",
        {"note_taker": [say("outline: intro, body")], "doc_writer": [say("the document")]},
        ["note_taker", "doc_writer", "FINISH"],
    )
    top_model = ScriptedChatModel.of(say("research_team"), say("writing_team"), say("FINISH"))

    def call_team(graph: Any, name: str) -> Callable[..., Any]:
        def node(state: TeamState) -> Command[Any]:
            response = graph.invoke({"messages": state["messages"][-1]})
            return Command(
                update={
                    "messages": [HumanMessage(content=response["messages"][-1].content, name=name)]
                },
                goto="supervisor",
            )

        return node

    builder = StateGraph(TeamState)
    builder.add_node(
        "supervisor",
        _team_supervisor(top_model, ["research_team", "writing_team"]),
        destinations=("research_team", "writing_team", END),
    )
    builder.add_node(
        "research_team", call_team(research, "research_team"), destinations=("supervisor",)
    )
    builder.add_node(
        "writing_team", call_team(writing, "writing_team"), destinations=("supervisor",)
    )
    builder.add_edge(START, "supervisor")
    return builder.compile(checkpointer=checkpointer)


# -- plain LangGraph features ----------------------------------------------------------------


class JokeState(TypedDict, total=False):
    topic: str
    subjects: list[str]
    jokes: Annotated[list[str], operator.add]
    best: str


def map_reduce(checkpointer: Any) -> Any:
    """Send one joke task per subject, join at best (a topic 'ghost' also sends to a missing node)."""

    def generate(state: JokeState) -> dict[str, Any]:
        return {"subjects": [f"{state['topic']} {i}" for i in range(3)]}

    def fan_out(state: JokeState) -> list[Send]:
        sends = [Send("joke", {"topic": s}) for s in state["subjects"]]
        if state["topic"] == "ghost":
            sends.append(Send("limerick", {"topic": "ghost"}))
        return sends

    def joke(state: JokeState) -> dict[str, Any]:
        return {"jokes": [f"a joke about {state['topic']}"]}

    def best(state: JokeState) -> dict[str, Any]:
        return {"best": sorted(state["jokes"])[0]}

    b = StateGraph(JokeState)
    b.add_node("generate", generate)
    b.add_node("joke", joke)
    b.add_node("best", best)
    b.add_edge(START, "generate")
    b.add_conditional_edges("generate", fan_out, ["joke"])
    b.add_edge("joke", "best")
    b.add_edge("best", END)
    return b.compile(checkpointer=checkpointer)


class LogState(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    x: int


def interrupt_subgraph(checkpointer: Any) -> Any:
    """A subgraph asks a human (interrupt) between two steps; the parent goes on after it."""

    def prepare(state: LogState) -> dict[str, Any]:
        return {"log": ["prepare"]}

    def ask(state: LogState) -> dict[str, Any]:
        answer = interrupt({"question": "go on?"})
        return {"log": [f"answer={answer}"]}

    inner = StateGraph(LogState)
    inner.add_node("prepare", prepare)
    inner.add_node("ask", ask)
    inner.add_edge(START, "prepare")
    inner.add_edge("prepare", "ask")
    inner.add_edge("ask", END)

    b = StateGraph(LogState)
    b.add_node("intake", lambda s: {"log": ["intake"]})
    b.add_node("review", inner.compile())
    b.add_node("publish", lambda s: {"log": ["publish"]})
    b.add_edge(START, "intake")
    b.add_edge("intake", "review")
    b.add_edge("review", "publish")
    b.add_edge("publish", END)
    return b.compile(checkpointer=checkpointer)


class Flaky(Exception):
    """Raised by the retry case's router; its RetryPolicy retries on it."""


@dataclass
class Calls:
    """Counts calls made by a case's fakes (attempts are invisible to LangGraph's record)."""

    counts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hit(self, name: str) -> int:
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + 1
            return self.counts[name]


def retry_router(checkpointer: Any, calls: Calls | None = None) -> Any:
    """A RetryPolicy node whose router flakes on the first attempt of each x (x=9: always)."""
    calls = calls if calls is not None else Calls()

    def work(state: LogState) -> dict[str, Any]:
        calls.hit("work")
        return {"log": ["work"]}

    def route(state: LogState) -> str:
        n = calls.hit(f"route{state.get('x', 0)}")
        if state.get("x") == 9 or n == 1:
            raise Flaky(f"router flaked (call {n})")
        return "done"

    b = StateGraph(LogState)
    b.add_node(
        "work",
        work,
        retry_policy=RetryPolicy(
            max_attempts=3, initial_interval=0.0, jitter=False, retry_on=Flaky
        ),
    )
    b.add_node("done", lambda s: {"log": ["done"]})
    b.add_edge(START, "work")
    b.add_conditional_edges("work", route, ["done", END])
    b.add_edge("done", END)
    return b.compile(checkpointer=checkpointer)


class Broken(ValueError):
    """Raised by the error-handler case's failing node."""


def error_handler_builder() -> StateGraph[Any]:
    """set_node_defaults(error_handler=...): a failing node is handled, the run goes on."""

    def risky(state: LogState) -> dict[str, Any]:
        if state.get("x") == 1:
            raise Broken("risky failed")
        return {"log": ["risky"]}

    def recover(state: LogState) -> Command[Any]:
        return Command(goto="finish", update={"log": ["recovered"]})

    b = StateGraph(LogState)
    b.set_node_defaults(error_handler=recover)
    b.add_node("risky", risky)
    b.add_node("finish", lambda s: {"log": ["finish"]})
    b.add_edge(START, "risky")
    b.add_edge("risky", "finish")
    b.add_edge("finish", END)
    return b


def error_handler(checkpointer: Any) -> Any:
    return error_handler_builder().compile(checkpointer=checkpointer)


def scrub(value: Any) -> Any:
    """The TracePolicy processor: what a tracer may record of the private node."""
    return {"redacted": True}


def trace_policy_builder() -> StateGraph[Any]:
    """A node whose inputs and outputs tracers must only see scrubbed."""
    b = StateGraph(LogState)
    b.add_node(
        "private",
        lambda s: {"log": ["secret-output"]},
        trace_policy=TracePolicy(process_inputs=scrub, process_outputs=scrub),
    )
    b.add_node("public", lambda s: {"log": ["public"]})
    b.add_edge(START, "private")
    b.add_edge("private", "public")
    b.add_edge("public", END)
    return b


def trace_policy(checkpointer: Any) -> Any:
    return trace_policy_builder().compile(checkpointer=checkpointer)


def cached(checkpointer: Any, calls: Calls | None = None) -> Any:
    """A CachePolicy node (its second run with the same input is served from the cache)."""
    calls = calls if calls is not None else Calls()

    def expensive(state: LogState) -> dict[str, Any]:
        calls.hit("expensive")
        return {"log": [f"computed {state.get('x', 0)}"]}

    b = StateGraph(LogState)
    b.add_node("expensive", expensive, cache_policy=CachePolicy())
    b.add_node("after", lambda s: {"log": ["after"]})
    b.add_edge(START, "expensive")
    b.add_edge("expensive", "after")
    b.add_edge("after", END)
    return b.compile(checkpointer=checkpointer, cache=InMemoryCache())


class ChatState(TypedDict):
    messages: Annotated[list[BaseMessage], add_messages]


def ping_pong(checkpointer: Any) -> Any:
    """Two agents (called from nodes) that keep handing the task to each other."""
    from langgraph.prebuilt import create_react_agent

    researcher = create_react_agent(
        ScriptedChatModel.of(*[say(f"researching, round {i}") for i in range(8)], name="r"),
        [lookup],
    )
    charter = create_react_agent(
        ScriptedChatModel.of(*[say(f"charting, round {i}") for i in range(8)], name="c"),
        [add],
    )

    def node(agent: Any, name: str, other: str) -> Callable[..., Any]:
        def run(state: ChatState) -> Command[Any]:
            result = agent.invoke(state)
            last = result["messages"][-1]
            goto = END if "FINAL ANSWER" in str(last.content) else other
            return Command(update={"messages": [HumanMessage(last.content, name=name)]}, goto=goto)

        return run

    b = StateGraph(ChatState)
    b.add_node(
        "researcher",
        node(researcher, "researcher", "chart_generator"),
        destinations=("chart_generator", END),
    )
    b.add_node(
        "chart_generator",
        node(charter, "chart_generator", "researcher"),
        destinations=("researcher", END),
    )
    b.add_edge(START, "researcher")
    return b.compile(checkpointer=checkpointer)


# -- the catalogue ------------------------------------------------------------------------

CASES: dict[str, Case] = {}


def case(c: Case) -> Case:
    CASES[c.name] = c
    return c


case(Case("react_handled", react_agent(True), _AGENT_RUNS))
case(Case("react_raising", react_agent(False), _AGENT_RUNS, raises=True))
case(Case("create_agent_handled", langchain_agent(True), _AGENT_RUNS))
case(Case("create_agent_raising", langchain_agent(False), _AGENT_RUNS, raises=True))
case(
    Case(
        "supervisor_full_history",
        supervisor("full_history"),
        (Run(_human("FAANG headcount, and 2 + 3?")),),
    )
)
case(
    Case(
        "supervisor_last_message",
        supervisor("last_message"),
        (Run(_human("FAANG headcount, and 2 + 3?")),),
    )
)
case(
    Case(
        "supervisor_ghost", supervisor("full_history", ghost=True), (Run(_human("ask the ghost")),)
    )
)
case(Case("swarm_prebuilt", swarm("prebuilt"), _SWARM_TURNS, threaded=True))
case(Case("swarm_create_agent", swarm("create_agent"), _SWARM_TURNS, threaded=True))
case(
    Case(
        "swarm_ghost", swarm("prebuilt", ghost=True), _SWARM_GHOST_TURNS, threaded=True, raises=True
    )
)
case(Case("hierarchical_teams", hierarchical_teams, (Run(_human("write a report on agents")),)))
case(
    Case(
        "map_reduce",
        map_reduce,
        (Run({"topic": "cats"}), Run({"topic": "ghost"})),
        parallel=True,
    )
)
case(
    Case(
        "interrupt_subgraph",
        interrupt_subgraph,
        (
            Run({"log": []}, _thread("hitl")),
            Run(Command(resume="yes"), _thread("hitl")),
            Run({"log": []}, _thread("hitl")),
            Run(Command(resume="no"), _thread("hitl")),
        ),
        threaded=True,
    )
)
case(Case("retry_router", retry_router, (Run({"x": 0}), Run({"x": 9})), raises=True))
if HAS_NODE_DEFAULTS:
    case(Case("error_handler", error_handler, (Run({"x": 0}), Run({"x": 1}))))
if HAS_TRACE_POLICY:
    case(Case("trace_policy", trace_policy, (Run({"x": 0}),)))
case(Case("cached", cached, (Run({"x": 1}), Run({"x": 1}), Run({"x": 2}))))
case(
    Case(
        "ping_pong",
        ping_pong,
        (Run(_human("chart the GDP"), {"recursion_limit": 6}),),
        raises=True,
    )
)
