"""The oracle is trusted on its own: small graphs whose ledgers are derived by hand here.

Each test writes down, from reading the graph, what LangGraph does (which tasks run, which
handoffs it writes and delivers) and checks that the oracle, reading only LangGraph's
debug stream and write log of a bare run, arrives at exactly that. None of these tests
involves coordgap, except the one checking :func:`ledger_view` on a hand-built snapshot.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.cache.memory import InMemoryCache
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphRecursionError
from langgraph.graph import END, START, StateGraph
from langgraph.types import CachePolicy, Command, RetryPolicy, Send, interrupt
from langgraph_features import needs_error_handler, needs_saved_cache_writes

from .oracle import Oracle, assert_same_ledger, diff_ledgers, empty_ledger, ledger_view


class S(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    x: Annotated[int, operator.add]


def _step(name: str) -> Any:
    def node(state: S) -> dict[str, Any]:
        return {"log": [name]}

    node.__name__ = name
    return node


def expect(
    nodes: dict[str, tuple[int, int]],
    handoffs: dict[tuple[str, str], tuple[int, int, dict[str, int], dict[str, int]]],
    routers: dict[str, tuple[str, int, int, dict[str, int], dict[str, int]]] | None = None,
    runs: tuple[int, int, int, int, int, dict[str, int]] = (1, 1, 0, 0, 1, {}),
) -> dict[str, Any]:
    """Spell a ledger compactly: nodes (executions, failures); handoffs (transfers, failures,
    kinds, error types); routers (source, decisions, failures, targets, error types); runs
    (runs, ok, error, interrupted, clean, error types)."""
    out = empty_ledger()
    out["nodes"] = {k: {"executions": e, "failures": f} for k, (e, f) in nodes.items()}
    out["handoffs"] = {
        k: {"transfers": t, "failures": f, "kinds": kinds, "error_types": errs}
        for k, (t, f, kinds, errs) in handoffs.items()
    }
    out["routers"] = {
        k: {"source": s, "decisions": d, "failures": f, "targets": t, "error_types": e}
        for k, (s, d, f, t, e) in (routers or {}).items()
    }
    r, ok, err, intr, clean, types = runs
    out["runs"] = {
        "runs": r,
        "ok": ok,
        "error": err,
        "interrupted": intr,
        "clean": clean,
        "error_types": types,
    }
    return out


def edge(n: int) -> tuple[int, int, dict[str, int], dict[str, int]]:
    return (n, 0, {"edge": n}, {})


def ok(n: int, kind: str) -> tuple[int, int, dict[str, int], dict[str, int]]:
    return (n, 0, {kind: n}, {})


def failed(n: int, kind: str, error: str) -> tuple[int, int, dict[str, int], dict[str, int]]:
    return (n, n, {kind: n}, {error: n})


def test_linear_graph() -> None:
    b = StateGraph(S)
    b.add_node("a", _step("a"))
    b.add_node("b", _step("b"))
    b.add_edge(START, "a")
    b.add_edge("a", "b")
    b.add_edge("b", END)
    oracle = Oracle(b.compile())
    oracle.invoke({"log": []})
    oracle.invoke({"log": []})
    want = expect(
        {"a": (2, 0), "b": (2, 0)},
        {("__start__", "a"): edge(2), ("a", "b"): edge(2), ("b", "__end__"): edge(2)},
        runs=(2, 2, 0, 0, 2, {}),
    )
    assert_same_ledger(oracle.expected(), want)


def test_branch_with_a_path_map() -> None:
    def pick(state: S) -> str:
        return ["left", "right", "stop"][state["x"]]

    b = StateGraph(S)
    b.add_node("a", _step("a"))
    b.add_node("b", _step("b"))
    b.add_node("c", _step("c"))
    b.add_edge(START, "a")
    b.add_conditional_edges("a", pick, {"left": "b", "right": "c", "stop": END})
    b.add_edge("b", END)
    b.add_edge("c", END)
    oracle = Oracle(b.compile())
    for x in (0, 1, 2):
        oracle.invoke({"x": x})
    want = expect(
        {"a": (3, 0), "b": (1, 0), "c": (1, 0)},
        {
            ("__start__", "a"): edge(3),
            ("a", "b"): ok(1, "conditional"),
            ("a", "c"): ok(1, "conditional"),
            ("a", "__end__"): ok(1, "conditional"),
            ("b", "__end__"): edge(1),
            ("c", "__end__"): edge(1),
        },
        {"pick": ("a", 3, 0, {"b": 1, "c": 1, "__end__": 1}, {})},
        runs=(3, 3, 0, 0, 3, {}),
    )
    assert_same_ledger(oracle.expected(), want)


def test_loop_until_done() -> None:
    def work(state: S) -> dict[str, Any]:
        return {"x": 1}

    def again(state: S) -> str:
        return "work" if state["x"] < 3 else END

    b = StateGraph(S)
    b.add_node("work", work)
    b.add_edge(START, "work")
    b.add_conditional_edges("work", again, ["work", END])
    oracle = Oracle(b.compile())
    oracle.invoke({"x": 0})
    want = expect(
        {"work": (3, 0)},
        {
            ("__start__", "work"): edge(1),
            ("work", "work"): ok(2, "conditional"),
            ("work", "__end__"): ok(1, "conditional"),
        },
        {"again": ("work", 3, 0, {"work": 2, "__end__": 1}, {})},
    )
    assert_same_ledger(oracle.expected(), want)


def test_join_waits_for_both_sides() -> None:
    # step 1: a, b (b writes its half of the join); step 2: c (writes the other half);
    # step 3: d, which takes both join handoffs at once
    b = StateGraph(S)
    for name in "abcd":
        b.add_node(name, _step(name))
    b.add_edge(START, "a")
    b.add_edge(START, "b")
    b.add_edge("a", "c")
    b.add_edge(["b", "c"], "d")
    b.add_edge("d", END)
    oracle = Oracle(b.compile())
    oracle.invoke({"log": []})
    want = expect(
        {"a": (1, 0), "b": (1, 0), "c": (1, 0), "d": (1, 0)},
        {
            ("__start__", "a"): edge(1),
            ("__start__", "b"): edge(1),
            ("a", "c"): edge(1),
            ("b", "d"): ok(1, "join"),
            ("c", "d"): ok(1, "join"),
            ("d", "__end__"): edge(1),
        },
    )
    assert_same_ledger(oracle.expected(), want)


def test_join_whose_other_side_never_wrote_is_undelivered() -> None:
    b = StateGraph(S)
    for name in "xyz":
        b.add_node(name, _step(name))
    b.add_edge(START, "x")
    b.add_edge(["x", "y"], "z")
    oracle = Oracle(b.compile())
    oracle.invoke({"log": []})
    want = expect(
        {"x": (1, 0)},
        {("__start__", "x"): edge(1), ("x", "z"): failed(1, "join", "Undelivered")},
        runs=(1, 1, 0, 0, 0, {}),
    )
    assert_same_ledger(oracle.expected(), want)


def _join_behind_an_interrupt() -> StateGraph[Any]:
    """``a`` routes to ``c`` by Command and to ``b`` by an edge, and is one side of the join
    ``[a, b] -> c``; ``c`` asks for input every time it runs."""

    def a(state: S) -> Command[Any]:
        return Command(goto="c", update={"log": ["a"]})

    def c(state: S) -> dict[str, Any]:
        return {"log": [f"c={interrupt('ok?')}"]}

    b = StateGraph(S)
    b.add_node("a", a, destinations=("c",))
    b.add_node("b", _step("b"))
    b.add_node("c", c)
    b.add_edge(START, "a")
    b.add_edge("a", "b")
    b.add_edge(["a", "b"], "c")
    return b


def test_join_completed_in_its_targets_interrupted_step_is_taken_the_step_after() -> None:
    # step 1: a writes branch:to:c, branch:to:b and its side of the join. step 2: b writes
    # the other side while c (run by the Command; the barrier holds only a) interrupts. On
    # resume c runs step 2 again on the same checkpoint: the barrier it sees still holds
    # only a, so it takes no join handoff; b's side lands when step 2 ends, and in step 3 c
    # runs again on the complete barrier: it takes both join handoffs, then interrupts.
    oracle = Oracle(_join_behind_an_interrupt().compile(checkpointer=InMemorySaver()))
    cfg = {"configurable": {"thread_id": "t"}}
    oracle.invoke({"log": []}, cfg)
    oracle.invoke(Command(resume="1"), cfg)
    oracle.invoke(Command(resume="2"), cfg)
    assert not oracle.graph.get_state(cfg).next
    # LangGraph's own record: the barrier as each superstep's tasks saw it
    saved = {
        s.metadata["step"]: oracle.saver.get_tuple(s.config).checkpoint["channel_values"]
        for s in oracle.graph.get_state_history(cfg)
    }
    seen = {step: values.get("join:a+b:c") for step, values in saved.items()}
    assert seen[1] == {"a"} and seen[2] == {"a", "b"}
    want = expect(
        {"a": (1, 0), "b": (1, 0), "c": (2, 0)},
        {
            ("__start__", "a"): edge(1),
            ("a", "b"): edge(1),
            ("a", "c"): (2, 0, {"command": 1, "join": 1}, {}),
            ("b", "c"): ok(1, "join"),
            ("c", "__end__"): edge(2),
        },
        runs=(3, 1, 0, 2, 1, {}),
    )
    assert_same_ledger(oracle.expected(), want)


def test_send_fan_out_is_one_handoff_per_send() -> None:
    def fan(state: S) -> list[Send]:
        return [Send("w", {"x": i}) for i in range(3)]

    b = StateGraph(S)
    b.add_node("gen", _step("gen"))
    b.add_node("w", _step("w"))
    b.add_edge(START, "gen")
    b.add_conditional_edges("gen", fan, ["w"])
    b.add_edge("w", END)
    oracle = Oracle(b.compile())
    oracle.invoke({"log": []})
    want = expect(
        {"gen": (1, 0), "w": (3, 0)},
        {
            ("__start__", "gen"): edge(1),
            ("gen", "w"): ok(3, "send"),
            ("w", "__end__"): edge(3),
        },
        {"fan": ("gen", 1, 0, {"w": 3}, {})},
    )
    assert_same_ledger(oracle.expected(), want)


def _reproducer_1() -> StateGraph[Any]:
    inner = StateGraph(S)
    inner.add_node("agent", lambda s: {"log": ["a"]})
    inner.add_node("tools", lambda s: Command(graph=Command.PARENT, goto="worker"))
    inner.add_edge(START, "agent")
    inner.add_edge("agent", "tools")
    inner.add_edge("tools", "agent")
    p = StateGraph(S)
    p.add_node("sup", inner.compile(), destinations=("worker",))
    p.add_node("worker", lambda s: {"log": ["w"]})
    p.add_edge(START, "sup")
    return p


def test_subgraph_leaving_through_command_parent_hands_off_from_the_parent_node() -> None:
    # tools raises ParentCommand: its static edge back to agent is never written; the
    # parent task `sup` writes branch:to:worker; worker has no out-edge: it ends the run
    oracle = Oracle(_reproducer_1().compile())
    oracle.invoke({"log": []})
    want = expect(
        {"sup": (1, 0), "sup/agent": (1, 0), "sup/tools": (1, 0), "worker": (1, 0)},
        {
            ("__start__", "sup"): edge(1),
            ("sup/__start__", "sup/agent"): edge(1),
            ("sup/agent", "sup/tools"): edge(1),
            ("sup", "worker"): ok(1, "command"),
            ("worker", "__end__"): edge(1),
        },
    )
    assert_same_ledger(oracle.expected(), want)


def test_command_parent_also_writes_the_parent_nodes_static_edge() -> None:
    # LangGraph runs the parent node's writers on the Command: its static edge is written
    # too, so both `w` (the goto) and `v` (the edge) run
    inner = StateGraph(S)
    inner.add_node("t", lambda s: Command(graph=Command.PARENT, goto="w", update={"log": ["t"]}))
    inner.add_edge(START, "t")
    p = StateGraph(S)
    p.add_node("sub", inner.compile(), destinations=("w",))
    p.add_node("w", _step("w"))
    p.add_node("v", _step("v"))
    p.add_edge(START, "sub")
    p.add_edge("sub", "v")
    oracle = Oracle(p.compile())
    out = oracle.invoke({"log": []})
    assert sorted(out["log"]) == ["t", "v", "w"]
    want = expect(
        {"sub": (1, 0), "sub/t": (1, 0), "w": (1, 0), "v": (1, 0)},
        {
            ("__start__", "sub"): edge(1),
            ("sub/__start__", "sub/t"): edge(1),
            ("sub", "w"): ok(1, "command"),
            ("sub", "v"): edge(1),
            ("w", "__end__"): edge(1),
            ("v", "__end__"): edge(1),
        },
    )
    assert_same_ledger(oracle.expected(), want)


def test_invalid_routes_are_failed_handoffs_to_unknown() -> None:
    def route(state: S) -> Any:
        return "nowhere"

    b = StateGraph(S)
    b.add_node("r", _step("r"))
    b.add_node("c", lambda s: Command(goto="ghost"))
    b.add_node("s", _step("s"))
    b.add_edge(START, "r")
    b.add_edge(START, "c")
    b.add_edge(START, "s")
    b.add_conditional_edges("r", route)

    def spray(state: S) -> list[Send]:
        return [Send("phantom", {})]

    b.add_conditional_edges("s", spray, ["r"])
    oracle = Oracle(b.compile())
    oracle.invoke({"log": []})
    want = expect(
        {"r": (1, 0), "c": (1, 0), "s": (1, 0)},
        {
            ("__start__", "r"): edge(1),
            ("__start__", "c"): edge(1),
            ("__start__", "s"): edge(1),
            ("r", "__unknown__"): failed(1, "conditional", "InvalidRoute"),
            ("c", "__unknown__"): failed(1, "command", "InvalidRoute"),
            ("s", "__unknown__"): failed(1, "send", "InvalidRoute"),
        },
        {
            "route": ("r", 1, 1, {"__unknown__": 1}, {"InvalidRoute": 1}),
            "spray": ("s", 1, 1, {"__unknown__": 1}, {"InvalidRoute": 1}),
        },
        runs=(1, 1, 0, 0, 0, {}),
    )
    assert_same_ledger(oracle.expected(), want)


def test_node_failure_hands_off_nothing_and_the_run_errors() -> None:
    def boom(state: S) -> dict[str, Any]:
        raise ZeroDivisionError("boom")

    b = StateGraph(S)
    b.add_node("a", _step("a"))
    b.add_node("b", boom)
    b.add_edge(START, "a")
    b.add_edge("a", "b")
    b.add_edge("b", END)
    oracle = Oracle(b.compile())
    with pytest.raises(ZeroDivisionError):
        oracle.invoke({"log": []})
    want = expect(
        {"a": (1, 0), "b": (1, 1)},
        {("__start__", "a"): edge(1), ("a", "b"): edge(1)},
        runs=(1, 0, 1, 0, 0, {"ZeroDivisionError": 1}),
    )
    assert_same_ledger(oracle.expected(), want)


class Flaky(Exception):
    pass


def test_router_retried_by_the_nodes_retry_policy() -> None:
    # LangGraph runs the router inside the node's task: a retried router failure is a
    # failed attempt nobody sees; a router failing on the last attempt fails the task, and
    # the failure is the router's (the node did its work)
    calls: dict[str, int] = {}

    def route(state: S) -> str:
        calls[str(state["x"])] = calls.get(str(state["x"]), 0) + 1
        if state["x"] == 9 or calls[str(state["x"])] == 1:
            raise Flaky("flaky router")
        return "done"

    b = StateGraph(S)
    policy = RetryPolicy(max_attempts=3, initial_interval=0.0, jitter=False, retry_on=Flaky)
    b.add_node("work", _step("work"), retry_policy=policy)
    b.add_node("done", _step("done"))
    b.add_edge(START, "work")
    b.add_conditional_edges("work", route, ["done", END])
    oracle = Oracle(b.compile())
    oracle.invoke({"x": 0})
    with pytest.raises(Flaky):
        oracle.invoke({"x": 9})
    assert calls == {"0": 2, "9": 3}
    want = expect(
        {"work": (2, 0), "done": (1, 0)},
        {
            ("__start__", "work"): edge(2),
            ("work", "done"): ok(1, "conditional"),
            ("done", "__end__"): edge(1),
        },
        {"route": ("work", 2, 1, {"done": 1}, {"Flaky": 1})},
        runs=(2, 1, 1, 0, 1, {"Flaky": 1}),
    )
    assert_same_ledger(oracle.expected(), want)


def test_router_at_start_raising_fails_the_run() -> None:
    def entry(state: S) -> str:
        return {0: "a"}[state["x"]]

    b = StateGraph(S)
    b.add_node("a", _step("a"))
    b.add_conditional_edges(START, entry, ["a"])
    oracle = Oracle(b.compile())
    oracle.invoke({"x": 0})
    with pytest.raises(KeyError):
        oracle.invoke({"x": 1})
    want = expect(
        {"a": (1, 0)},
        {("__start__", "a"): ok(1, "conditional"), ("a", "__end__"): edge(1)},
        {"entry": ("__start__", 2, 1, {"a": 1}, {"KeyError": 1})},
        runs=(2, 1, 1, 0, 1, {"KeyError": 1}),
    )
    assert_same_ledger(oracle.expected(), want)


def test_interrupt_keeps_pending_handoffs_for_the_resumed_run() -> None:
    # step 1: `ask` interrupts while `b` finishes and writes branch:to:c; that handoff
    # waits for the resume, where `ask` runs again and `c` then starts
    def ask(state: S) -> dict[str, Any]:
        return {"log": [f"answer={interrupt('ok?')}"]}

    b = StateGraph(S)
    b.add_node("ask", ask)
    b.add_node("b", _step("b"))
    b.add_node("c", _step("c"))
    b.add_edge(START, "ask")
    b.add_edge(START, "b")
    b.add_edge("b", "c")
    oracle = Oracle(b.compile(checkpointer=InMemorySaver()))
    cfg = {"configurable": {"thread_id": "t"}}
    oracle.invoke({"log": []}, cfg)
    first = oracle.expected()
    assert first["runs"]["interrupted"] == 1
    assert ("b", "c") not in first["handoffs"]
    oracle.invoke(Command(resume="yes"), cfg)
    want = expect(
        {"ask": (1, 0), "b": (1, 0), "c": (1, 0)},
        {
            ("__start__", "ask"): edge(1),
            ("__start__", "b"): edge(1),
            ("b", "c"): edge(1),
            ("ask", "__end__"): edge(1),
            ("c", "__end__"): edge(1),
        },
        runs=(2, 1, 0, 1, 1, {}),
    )
    assert_same_ledger(oracle.expected(), want)


def test_interrupt_inside_a_subgraph_is_no_execution_until_resumed() -> None:
    def ask(state: S) -> dict[str, Any]:
        return {"log": [f"answer={interrupt('ok?')}"]}

    inner = StateGraph(S)
    inner.add_node("ask", ask)
    inner.add_edge(START, "ask")
    b = StateGraph(S)
    b.add_node("review", inner.compile())
    b.add_edge(START, "review")
    oracle = Oracle(b.compile(checkpointer=InMemorySaver()))
    cfg = {"configurable": {"thread_id": "t"}}
    oracle.invoke({"log": []}, cfg)
    assert oracle.expected()["nodes"] == {}
    oracle.invoke(Command(resume="yes"), cfg)
    want = expect(
        {"review": (1, 0), "review/ask": (1, 0)},
        {
            ("__start__", "review"): edge(1),
            ("review/__start__", "review/ask"): edge(1),
            ("review/ask", "review/__end__"): edge(1),
            ("review", "__end__"): edge(1),
        },
        runs=(2, 1, 0, 1, 1, {}),
    )
    assert_same_ledger(oracle.expected(), want)


@needs_error_handler
def test_error_handler_runs_as_a_node_and_routes_on() -> None:
    def risky(state: S) -> dict[str, Any]:
        raise ValueError("risky")

    def recover(state: S) -> Command[Any]:
        return Command(goto="finish", update={"log": ["recovered"]})

    b = StateGraph(S)
    b.set_node_defaults(error_handler=recover)
    b.add_node("risky", risky)
    b.add_node("finish", _step("finish"))
    b.add_edge(START, "risky")
    b.add_edge("risky", "finish")
    oracle = Oracle(b.compile())
    assert oracle.invoke({"log": []})["log"] == ["recovered", "finish"]
    want = expect(
        {"risky": (1, 1), "__default_error_handler__": (1, 0), "finish": (1, 0)},
        {
            ("__start__", "risky"): edge(1),
            ("__default_error_handler__", "finish"): ok(1, "command"),
            ("finish", "__end__"): edge(1),
        },
        runs=(1, 1, 0, 0, 0, {}),
    )
    assert_same_ledger(oracle.expected(), want)


@needs_saved_cache_writes
def test_cache_hit_is_an_execution_whose_writes_are_replayed() -> None:
    calls: list[int] = []

    def expensive(state: S) -> dict[str, Any]:
        calls.append(1)
        return {"log": ["computed"]}

    b = StateGraph(S)
    b.add_node("expensive", expensive, cache_policy=CachePolicy())
    b.add_node("after", _step("after"))
    b.add_edge(START, "expensive")
    b.add_edge("expensive", "after")
    oracle = Oracle(b.compile(cache=InMemoryCache()))
    oracle.invoke({"x": 1})
    oracle.invoke({"x": 1})
    assert len(calls) == 1
    want = expect(
        {"expensive": (2, 0), "after": (2, 0)},
        {
            ("__start__", "expensive"): edge(2),
            ("expensive", "after"): edge(2),
            ("after", "__end__"): edge(2),
        },
        runs=(2, 2, 0, 0, 2, {}),
    )
    assert_same_ledger(oracle.expected(), want)


def test_recursion_error_drops_the_handoff_left_pending() -> None:
    b = StateGraph(S)
    b.add_node("p", _step("p"))
    b.add_node("q", _step("q"))
    b.add_edge(START, "p")
    b.add_edge("p", "q")
    b.add_edge("q", "p")
    oracle = Oracle(b.compile())
    with pytest.raises(GraphRecursionError):
        oracle.invoke({"log": []}, {"recursion_limit": 3})
    # p, q, p ran; the last p's handoff to q was written but the run died
    want = expect(
        {"p": (2, 0), "q": (1, 0)},
        {("__start__", "p"): edge(1), ("p", "q"): edge(1), ("q", "p"): edge(1)},
        runs=(1, 0, 1, 0, 0, {"GraphRecursionError": 1}),
    )
    assert_same_ledger(oracle.expected(), want)


def test_dead_end_node_ends_by_edge() -> None:
    b = StateGraph(S)
    b.add_node("a", _step("a"))
    b.add_edge(START, "a")
    oracle = Oracle(b.compile())
    oracle.invoke({"log": []})
    assert oracle.expected()["handoffs"][("a", "__end__")] == {
        "transfers": 1,
        "failures": 0,
        "kinds": {"edge": 1},
        "error_types": {},
    }


def test_diff_names_phantoms_and_misses() -> None:
    want = expect({"a": (1, 0)}, {("a", "b"): edge(1)})
    got = expect({"a": (2, 0)}, {("a", "c"): edge(1)}, runs=(1, 1, 0, 0, 0, {}))
    lines = diff_ledgers(got, want)
    assert "nodes a: executions 2, want 1" in lines
    assert any(line.startswith("handoffs a -> b: missing") for line in lines)
    assert any(line.startswith("handoffs a -> c: phantom") for line in lines)
    assert "runs: clean 0, want 1" in lines
    with pytest.raises(AssertionError, match="phantom"):
        assert_same_ledger(got, want)


def test_ambiguous_kinds_accept_any_of_their_options() -> None:
    want = expect({}, {("a", "b"): (3, 0, {"command|edge": 2, "edge": 1}, {})})
    assert diff_ledgers(expect({}, {("a", "b"): (3, 0, {"command": 1, "edge": 2}, {})}), want) == []
    wrong = expect({}, {("a", "b"): (3, 0, {"send": 1, "edge": 2}, {})})
    assert diff_ledgers(wrong, want)


def test_ledger_view_reads_a_coordgap_snapshot() -> None:
    from types import MappingProxyType

    from coordgap._ledger import HandoffStats, LedgerSnapshot, NodeStats, RouterStats, RunStats

    snap = LedgerSnapshot(
        graph="g",
        nodes=MappingProxyType(
            {
                "a": NodeStats(executions=2, failures=1, attempts=3),
                "paused": NodeStats(attempts=1),
            }
        ),
        handoffs=MappingProxyType(
            {
                ("a", "__unknown__"): HandoffStats(
                    "a",
                    "__unknown__",
                    transfers=1,
                    failures=1,
                    kinds=MappingProxyType({"command": 1}),
                    error_types=MappingProxyType({"InvalidRoute": 1}),
                )
            }
        ),
        routers=MappingProxyType(
            {"r": RouterStats("r", "a", decisions=1, targets=MappingProxyType({"b": 1}))}
        ),
        runs=RunStats(runs=2, ok=1, error=1, clean=1, error_types=MappingProxyType({"X": 1})),
    )
    want = expect(
        {"a": (2, 1)},
        {("a", "__unknown__"): failed(1, "command", "InvalidRoute")},
        {"r": ("a", 1, 0, {"b": 1}, {})},
        runs=(2, 1, 1, 0, 1, {"X": 1}),
    )
    assert ledger_view(snap) == want
