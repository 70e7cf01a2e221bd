"""Bare and instrumented graphs behave identically: outputs, errors, streams, checkpoints, drawings."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from graphs_basic import (
    commanding,
    fan_out_in,
    interrupting,
    linear,
    looping,
    retrying,
    sending,
    with_subgraph,
)
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

import coordgap

BUILDERS = {
    "linear": lambda: linear(4),
    "looping": lambda: looping(3),
    "fan_out_in": fan_out_in,
    "commanding": commanding,
    "sending": sending,
    "subgraph": with_subgraph,
    "retrying": lambda: retrying(1),
}

PARALLEL = {"fan_out_in", "sending"}

STREAM_MODES = ["values", "updates", "debug", "tasks", "checkpoints", "custom"]

_VOLATILE = re.compile(
    r"'(id|checkpoint_id|task_id|timestamp|ts|thread_ts|parent_checkpoint_id|run_id)': '[^']*'"
)
_UUIDISH = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")


def masked(value: Any) -> str:
    """Render a value with ids and timestamps (different in any two runs) blanked out."""
    text = _VOLATILE.sub(lambda m: f"'{m.group(1)}': '*'", repr(value))
    text = re.sub(r"datetime\.datetime\([^)]*\)", "datetime(*)", text)
    return _UUIDISH.sub("*", text)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_invoke_output_is_identical(name: str) -> None:
    """invoke returns the same state bare and instrumented."""
    bare = BUILDERS[name]().compile()
    app = coordgap.instrument(BUILDERS[name]())
    assert bare.invoke({"n": 0}) == app.invoke({"n": 0})


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_ainvoke_output_is_identical(name: str) -> None:
    """ainvoke returns the same state bare and instrumented."""
    bare = BUILDERS[name]().compile()
    app = coordgap.instrument(BUILDERS[name]())
    assert asyncio.run(bare.ainvoke({"n": 0})) == asyncio.run(app.ainvoke({"n": 0}))


@pytest.mark.parametrize("mode", STREAM_MODES)
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_stream_chunks_are_identical(name: str, mode: str) -> None:
    """Every stream mode yields the same chunks (ids and timestamps masked)."""
    bare = BUILDERS[name]().compile(checkpointer=InMemorySaver())
    app = coordgap.instrument(BUILDERS[name]().compile(checkpointer=InMemorySaver()))
    cfg = {"configurable": {"thread_id": "t"}}
    got_bare = [masked(c) for c in bare.stream({"n": 0}, cfg, stream_mode=mode, subgraphs=True)]
    got_app = [masked(c) for c in app.stream({"n": 0}, cfg, stream_mode=mode, subgraphs=True)]
    if name in PARALLEL:
        # tasks of one superstep finish in any order, bare or not
        got_bare, got_app = sorted(got_bare), sorted(got_app)
    assert got_bare == got_app


@pytest.mark.parametrize("name", ["linear", "subgraph", "sending"])
def test_astream_chunks_are_identical(name: str) -> None:
    """astream yields the same chunks in several modes at once."""

    async def collect(graph: Any) -> list[str]:
        return [
            masked(c)
            async for c in graph.astream({"n": 0}, stream_mode=["values", "updates", "custom"])
        ]

    bare = BUILDERS[name]().compile()
    app = coordgap.instrument(BUILDERS[name]())
    assert asyncio.run(collect(bare)) == asyncio.run(collect(app))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_checkpoint_history_is_identical(name: str) -> None:
    """The checkpoint history (values, next, metadata) is the same."""

    def history(graph: Any) -> list[str]:
        cfg = {"configurable": {"thread_id": "h"}}
        graph.invoke({"n": 0}, cfg)
        return [
            masked((s.values, s.next, {k: v for k, v in s.metadata.items()}))
            for s in graph.get_state_history(cfg)
        ]

    bare = BUILDERS[name]().compile(checkpointer=InMemorySaver())
    app = coordgap.instrument(BUILDERS[name]().compile(checkpointer=InMemorySaver()))
    assert history(bare) == history(app)


def test_sqlite_checkpointer_history_is_identical(tmp_path: Any) -> None:
    """With the SQLite checkpointer the saved history is the same."""
    sqlite = pytest.importorskip("langgraph.checkpoint.sqlite")
    import sqlite3

    def history(graph_builder: Any, path: str, instrumented: bool) -> list[str]:
        conn = sqlite3.connect(path, check_same_thread=False)
        saver = sqlite.SqliteSaver(conn)
        graph = graph_builder.compile(checkpointer=saver)
        if instrumented:
            graph = coordgap.instrument(graph)
        cfg = {"configurable": {"thread_id": "s"}}
        graph.invoke({"n": 0}, cfg)
        out = [masked((s.values, s.next)) for s in graph.get_state_history(cfg)]
        conn.close()
        return out

    assert history(looping(3), str(tmp_path / "a.db"), False) == history(
        looping(3), str(tmp_path / "b.db"), True
    )


def test_interrupt_and_resume_behave_identically() -> None:
    """interrupt() pauses and Command(resume=...) resumes the same way (interrupt ids aside)."""

    def drive(graph: Any) -> list[str]:
        cfg = {"configurable": {"thread_id": "i"}}
        first = graph.invoke({"n": 0}, cfg)
        state = graph.get_state(cfg)
        second = graph.invoke(Command(resume="yes"), cfg)
        return [masked(first), masked(state.next), masked(second)]

    bare = interrupting().compile(checkpointer=InMemorySaver())
    app = coordgap.instrument(interrupting().compile(checkpointer=InMemorySaver()))
    assert drive(bare) == drive(app)


def test_static_interrupt_before_is_kept() -> None:
    """interrupt_before from compile() survives instrumenting the compiled graph."""
    cfg = {"configurable": {"thread_id": "b"}}
    compiled = linear(3).compile(checkpointer=InMemorySaver(), interrupt_before=["n1"])
    app = coordgap.instrument(compiled)
    assert app.interrupt_before_nodes == ["n1"]
    app.invoke({"n": 0}, cfg)
    assert app.get_state(cfg).next == ("n1",)
    assert app.invoke(None, cfg)["log"] == ["n0", "n1", "n2"]
    runs = coordgap.ledger(app).snapshot().runs
    assert (runs.interrupted, runs.ok) == (1, 1)


def test_node_exception_is_the_same_object_type_and_message() -> None:
    """A node's exception reaches the caller with the same type and message."""

    def run(graph: Any) -> tuple[type[BaseException], str]:
        with pytest.raises(Exception) as info:
            graph.invoke({"n": 0})
        return type(info.value), str(info.value)

    assert run(retrying(5).compile()) == run(coordgap.instrument(retrying(5)))


def test_recursion_error_is_unchanged() -> None:
    """GraphRecursionError keeps its type and message."""
    from langgraph.errors import GraphRecursionError

    def run(graph: Any) -> str:
        with pytest.raises(GraphRecursionError) as info:
            graph.invoke({"n": 0}, {"recursion_limit": 4})
        return str(info.value)

    assert run(looping(100).compile()) == run(coordgap.instrument(looping(100)))


def test_drawings_are_identical() -> None:
    """get_graph() draws the same Mermaid, also with xray into subgraphs."""
    for make in BUILDERS.values():
        bare, app = make().compile(), coordgap.instrument(make())
        assert bare.get_graph().draw_mermaid() == app.get_graph().draw_mermaid()
        assert bare.get_graph(xray=True).draw_mermaid() == app.get_graph(xray=True).draw_mermaid()
        assert bare.get_graph().to_json() == app.get_graph().to_json()


def test_user_builder_is_not_mutated_and_runnable_is_reachable() -> None:
    """The user's builder is untouched and app.builder.nodes[...].runnable is the user's runnable."""
    builder = looping(3)
    nodes_before = dict(builder.nodes)
    branches_before = {k: dict(v) for k, v in builder.branches.items()}
    app = coordgap.instrument(builder)
    assert builder.compiled is False
    assert builder.nodes == nodes_before
    assert {k: dict(v) for k, v in builder.branches.items()} == branches_before
    assert app.builder.nodes["work"].runnable is builder.nodes["work"].runnable


def test_instrumented_graph_is_a_compiled_state_graph_usable_as_subgraph() -> None:
    """The result is a CompiledStateGraph and works as a node of another graph."""
    from graphs_basic import State
    from langgraph.graph import END, START, StateGraph
    from langgraph.graph.state import CompiledStateGraph

    inner = coordgap.instrument(linear(2), name="inner")
    assert isinstance(inner, CompiledStateGraph)
    outer = StateGraph(State)
    outer.add_node("inner", inner)
    outer.add_edge(START, "inner")
    outer.add_edge("inner", END)
    assert outer.compile().invoke({"n": 0})["log"] == ["n0", "n1"]
    assert coordgap.ledger(inner).snapshot().runs.runs == 1


def test_batch_and_with_config_keep_instrumentation() -> None:
    """batch() runs every input; with_config() copies keep recording into the same ledger."""
    app = coordgap.instrument(linear(2))
    assert [r["n"] for r in app.batch([{"n": 0}, {"n": 5}])] == [2, 7]
    app.with_config(tags=["x"]).invoke({"n": 0})
    assert coordgap.ledger(app).snapshot().runs.runs == 3


def _sequence_graph(fail: bool = False) -> Any:
    from graphs_basic import State
    from langchain_core.runnables import RunnableLambda
    from langgraph.graph import END, START, StateGraph

    def middle(d: dict[str, Any]) -> dict[str, Any]:
        if fail:
            raise ArithmeticError("middle step")
        return {**d, "log": ["seq"]}

    b = StateGraph(State)
    b.add_node(
        "seq",
        RunnableLambda(lambda s: {"n": s["n"] + 1}) | RunnableLambda(middle) | RunnableLambda(dict),
    )

    async def tail(state: State) -> dict[str, Any]:
        return {"log": ["tail"]}

    b.add_node("tail", tail)
    b.add_edge(START, "seq")
    b.add_edge("seq", "tail")
    b.add_edge("tail", END)
    return b


def test_sequence_nodes_keep_the_callback_tree() -> None:
    """A `a | b | c` node: astream_events (the LangChain callback tree) is the same as bare."""

    async def events(graph: Any) -> list[tuple[str, str, tuple[str, ...]]]:
        return [
            (e["event"], e["name"], tuple(sorted(e.get("tags", []))))
            async for e in graph.astream_events({"n": 0}, version="v2")
        ]

    bare = _sequence_graph().compile()
    app = coordgap.instrument(_sequence_graph())
    assert asyncio.run(events(bare)) == asyncio.run(events(app))
    assert asyncio.run(bare.ainvoke({"n": 0})) == asyncio.run(app.ainvoke({"n": 0}))
    seq = coordgap.ledger(app).snapshot().nodes["seq"]
    assert (seq.executions, seq.failures) == (2, 0)


def test_sequence_node_failing_in_a_middle_step_is_one_failed_execution() -> None:
    """An exception in any step of a sequence node is the node's failure, raised unchanged."""
    app = coordgap.instrument(_sequence_graph(fail=True))
    with pytest.raises(ArithmeticError, match="middle step"):
        asyncio.run(app.ainvoke({"n": 0}))
    seq = coordgap.ledger(app).snapshot().nodes["seq"]
    assert (seq.executions, seq.failures, dict(seq.error_types)) == (1, 1, {"ArithmeticError": 1})


def test_messages_stream_mode_is_identical() -> None:
    """stream_mode='messages' (LLM tokens through callbacks) yields the same chunks, sync and async."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langgraph.graph import END, START, MessagesState, StateGraph

    def build() -> Any:
        model = GenericFakeChatModel(messages=iter([AIMessage(content="hello there friend")] * 9))

        def call(state: MessagesState) -> dict[str, Any]:
            return {"messages": [model.invoke(state["messages"])]}

        b = StateGraph(MessagesState)
        b.add_node("call", call)
        b.add_edge(START, "call")
        b.add_edge("call", END)
        return b

    def run(graph: Any) -> list[str]:
        return [
            masked(c) for c in graph.stream({"messages": [("human", "hi")]}, stream_mode="messages")
        ]

    async def arun(graph: Any) -> list[str]:
        return [
            masked(c)
            async for c in graph.astream({"messages": [("human", "hi")]}, stream_mode="messages")
        ]

    chunks = run(build().compile())
    assert len(chunks) == 5
    assert chunks == run(coordgap.instrument(build()))
    assert asyncio.run(arun(build().compile())) == asyncio.run(arun(coordgap.instrument(build())))
