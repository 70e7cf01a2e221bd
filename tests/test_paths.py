"""Each run's path from the captured events: routes, visits, and agentevals' trajectories.

Ground truth from outside coordgap: the route a scripted supervisor was told to take, the
tasks LangGraph's debug stream reports, and agentevals' own extraction of the thread's
trajectory from the checkpointer.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, RetryPolicy, interrupt
from typing_extensions import TypedDict

import coordgap
from coordgap.testing import (
    RunPath,
    assert_path,
    assert_visits,
    capture_events,
    graph_trajectory,
)

WORKERS = ("researcher", "writer", "critic")


class Team(TypedDict, total=False):
    plan: list[str]
    done: Annotated[list[str], operator.add]


def team(*, ask: bool = False, retry_writer: bool = False) -> StateGraph:
    """A supervisor that sends the work to the workers its plan names, one at a time."""

    def supervisor(state: Team) -> dict[str, Any]:
        return {}

    def route(state: Team) -> str:
        plan, done = state.get("plan", []), state.get("done", [])
        return plan[len(done)] if len(done) < len(plan) else END

    def worker(name: str) -> Any:
        calls = {"n": 0}

        def work(state: Team) -> dict[str, Any]:
            if name == "writer" and retry_writer:
                calls["n"] += 1
                if calls["n"] % 2:
                    raise ConnectionError("flaky")
            if ask and name == "critic":
                interrupt("approve?")
            return {"done": [name]}

        return work

    builder = StateGraph(Team)
    builder.add_node("supervisor", supervisor)
    for name in WORKERS:
        retry = RetryPolicy(max_attempts=3, initial_interval=0.0, jitter=False)
        builder.add_node(name, worker(name), retry_policy=retry if name == "writer" else None)
        builder.add_edge(name, "supervisor")
    builder.add_edge(START, "supervisor")
    builder.add_conditional_edges("supervisor", route, [*WORKERS, END])
    return builder


def expected_route(plan: list[str]) -> list[str]:
    route = ["supervisor"]
    for worker in plan:
        route += [worker, "supervisor"]
    return [*route, END]


plans = st.lists(st.sampled_from(WORKERS), max_size=6)


@settings(max_examples=25, deadline=None)
@given(plan=plans)
def test_the_route_is_the_one_the_supervisor_was_told(plan: list[str]) -> None:
    with capture_events() as events:
        app = coordgap.instrument(team(), spans="off", metrics=False)
        app.invoke({"plan": plan})
    (run,) = events.runs
    assert list(run.route()) == expected_route(plan)
    assert_path(events, [START, *expected_route(plan)])
    want = {w: plan.count(w) for w in WORKERS}
    assert_visits(events, {**want, "supervisor": len(plan) + 1})
    assert run.status == "ok" and run.started and run.ended


def debug_tasks(graph: Any, payload: Any, config: Any = None) -> list[str]:
    """The tasks LangGraph reports, in order, subgraph nodes as ``outer/inner``."""
    names = []
    for ns, chunk in graph.stream(payload, config, stream_mode="debug", subgraphs=True):
        if chunk["type"] == "task":
            prefix = "".join(part.split(":")[0] + "/" for part in ns)
            names.append(prefix + chunk["payload"]["name"])
    return names


def nested() -> StateGraph:
    """START -> plan -> research (a subgraph: search -> read) -> write -> END."""

    class S(TypedDict, total=False):
        log: Annotated[list[str], operator.add]

    def step(name: str) -> Any:
        return lambda state: {"log": [name]}

    inner = StateGraph(S)
    inner.add_node("search", step("search"))
    inner.add_node("read", step("read"))
    inner.add_edge(START, "search")
    inner.add_edge("search", "read")
    inner.add_edge("read", END)
    outer = StateGraph(S)
    outer.add_node("plan", step("plan"))
    outer.add_node("research", inner.compile())
    outer.add_node("write", step("write"))
    outer.add_edge(START, "plan")
    outer.add_edge("plan", "research")
    outer.add_edge("research", "write")
    outer.add_edge("write", END)
    return outer


def test_subgraph_nodes_follow_their_node_as_langgraph_reports_them() -> None:
    want = debug_tasks(nested().compile(), {"log": []})
    with capture_events() as events:
        app = coordgap.instrument(nested(), spans="off", metrics=False)
        app.invoke({"log": []})
    (run,) = events.runs
    assert list(run.route(subgraphs=True)) == [*want, END]
    assert run.route() == ("plan", "research", "write", END)
    assert run.steps() == [
        START,
        "plan",
        "research",
        f"research:{START}",
        "research:search",
        "research:read",
        "write",
    ]


def agentevals_steps(graph: Any, config: Any) -> list[list[str]]:
    from agentevals.graph_trajectory.utils import extract_langgraph_trajectory_from_thread

    return extract_langgraph_trajectory_from_thread(graph, config)["outputs"]["steps"]


@settings(max_examples=15, deadline=None)
@given(turns=st.lists(plans, min_size=1, max_size=3))
def test_trajectory_is_what_agentevals_extracts_from_the_thread(
    turns: list[list[str]],
) -> None:
    pytest.importorskip("agentevals")
    config = {"configurable": {"thread_id": "t"}}
    with capture_events() as events:
        app = coordgap.instrument(team(), spans="off", metrics=False)
        app = app.copy(update={"checkpointer": InMemorySaver()})
        for plan in turns:
            app.invoke({"plan": plan, "done": []}, config)
    ours = graph_trajectory(events)
    assert ours["steps"] == agentevals_steps(app, config)
    assert ours["results"] == [{}] * len(turns)  # no state values, ever


def test_an_interrupt_and_its_resume_as_agentevals_writes_them() -> None:
    pytest.importorskip("agentevals")
    config = {"configurable": {"thread_id": "t"}}
    with capture_events() as events:
        app = coordgap.instrument(
            team(ask=True).compile(checkpointer=InMemorySaver()), spans="off", metrics=False
        )
        app.invoke({"plan": ["researcher", "critic"]}, config)
        app.invoke(Command(resume="yes"), config)
    paused, resumed = events.runs
    assert paused.status == "interrupted"
    assert paused.route() == ("supervisor", "researcher", "supervisor", "critic", "__interrupt__")
    assert resumed.route() == ("critic", "supervisor", END)  # the critic ran again
    assert [v.resumed for v in resumed.visits] == [True, False]
    assert graph_trajectory(events)["steps"] == agentevals_steps(app, config)
    with pytest.raises(AssertionError, match="did not begin from an input"):
        assert_path(events, [START, "critic", "supervisor", END])


def test_agentevals_evaluator_scores_the_export() -> None:
    strict = pytest.importorskip("agentevals.graph_trajectory.strict")
    with capture_events() as events:
        app = coordgap.instrument(team(), spans="off", metrics=False)
        app.invoke({"plan": ["researcher"]})
    reference = {"results": [{}], "steps": [[START, "supervisor", "researcher", "supervisor"]]}
    wrong = {"results": [{}], "steps": [[START, "supervisor", "writer", "supervisor"]]}
    ours = graph_trajectory(events)
    assert strict.graph_trajectory_strict_match(outputs=ours, reference_outputs=reference)["score"]
    assert not strict.graph_trajectory_strict_match(outputs=ours, reference_outputs=wrong)["score"]


def test_retried_attempts_are_one_visit() -> None:
    with capture_events() as events:
        app = coordgap.instrument(team(retry_writer=True), spans="off", metrics=False)
        app.invoke({"plan": ["writer", "writer"]})
    (run,) = events.runs
    writer = [v for v in run.visits if v.node == "writer"]
    assert [v.attempts for v in writer] == [2, 2]
    assert all(v.ok for v in writer)
    assert_visits(events, {"writer": 2, "researcher": 0})


def test_a_failed_run_ends_on_the_failed_node() -> None:
    def boom(state: Team) -> dict[str, Any]:
        raise RuntimeError("down")

    builder = team()
    builder.add_node("critic_x", boom)
    with capture_events() as events:
        app = coordgap.instrument(builder, spans="off", metrics=False)
        with pytest.raises(KeyError):
            app.invoke({"plan": ["nobody"]})  # the router names no node: LangGraph raises
    (run,) = events.runs
    assert run.status == "error" and not run.ended
    assert run.route() == ("supervisor",)


def test_failures_name_the_first_difference_and_the_counts() -> None:
    with capture_events() as events:
        app = coordgap.instrument(team(), spans="off", metrics=False)
        app.invoke({"plan": ["researcher", "writer"]})
        app.invoke({"plan": ["critic"]})
    first = events.runs[0]
    assert isinstance(first, RunPath)
    assert str(first) == "supervisor -> researcher -> supervisor -> writer -> supervisor -> __end__"
    with pytest.raises(AssertionError) as info:
        assert_path(events, ["supervisor", "writer", "supervisor", END], run=0)
    message = str(info.value)
    assert "first difference at step 2: took 'researcher', expected 'writer'" in message
    assert_path(first, expected_route(["researcher", "writer"]))
    with pytest.raises(AssertionError, match="critic: ran 1, expected 0"):
        assert_visits(events, {"critic": 0})
    with pytest.raises(AssertionError, match="supervisor: ran 5, expected 1 to 4"):
        assert_visits(events, {"supervisor": range(1, 5)}, run=None)
    counts = assert_visits(events, {"supervisor": 5, "critic": 1}, run=None)
    assert counts == {"supervisor": 5, "researcher": 1, "writer": 1, "critic": 1}


def test_bad_arguments_say_what_to_pass() -> None:
    with capture_events() as events:
        app = coordgap.instrument(team(), name="team", spans="off", metrics=False)
        app.invoke({"plan": []})
    with pytest.raises(coordgap.ConfigurationError, match="run=3: 1 run"):
        assert_path(events, [END], run=3)
    with pytest.raises(coordgap.ConfigurationError, match="graph='other'"):
        assert_path(events, [END], graph="other")
    with pytest.raises(coordgap.ConfigurationError, match="a number of visits or a range"):
        assert_visits(events, {"supervisor": "once"})  # type: ignore[dict-item]
    with pytest.raises(coordgap.ConfigurationError, match="is not a run path"):
        assert_path("supervisor", [END])  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="no run was captured"):
        assert_path([], [END])


def test_a_nested_instrumented_graph_is_reported_in_the_outer_run() -> None:
    class S(TypedDict, total=False):
        log: Annotated[list[str], operator.add]

    # held where instrument() does not look (a closure holding the graph itself would be
    # rebuilt into the outer graph): the inner graph keeps its own runs and is linked
    held: dict[str, Any] = {}

    def call(state: S) -> dict[str, Any]:
        return {"log": held["inner"].invoke({"log": []})["log"]}

    with capture_events() as events:
        held["inner"] = coordgap.instrument(nested(), name="inner", spans="off", metrics=False)
        builder = StateGraph(S)
        builder.add_node("delegate", call)
        builder.add_edge(START, "delegate")
        builder.add_edge("delegate", END)
        outer = coordgap.instrument(builder, name="outer", spans="off", metrics=False)
        outer.invoke({"log": []})
    # the default is the graph whose run ended last: the outer one
    path = assert_path(events, ["delegate", END])
    assert path.graph == "outer"
    assert "delegate/plan" in path.route(subgraphs=True)
    assert_path(events, ["plan", "research", "write", END], graph="inner")
