"""The only module that knows LangGraph's internals.

Everything coordgap needs from LangGraph beyond its documented API lives
here, so a LangGraph upgrade is one file's work. Supported: the 1.x line
(tested on the newest 1.2.x).
"""

from __future__ import annotations

import copy
import operator
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from langchain_core.runnables import Runnable
from langgraph._internal._runnable import RunnableSeq
from langgraph.constants import END, START
from langgraph.errors import GraphBubbleUp, ParentCommand
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.pregel import Pregel
from langgraph.types import Command, RetryPolicy, Send

from .topology import DeclaredHandoff, DeclaredRouter, Topology

_lg_should_retry_on: Callable[[RetryPolicy, Exception], bool] | None
try:  # private, stable across 1.x; the fallback mirrors its behaviour
    from langgraph.pregel._retry import _should_retry_on as _lg_should_retry_on
except ImportError:  # pragma: no cover
    _lg_should_retry_on = None

try:
    from langgraph._internal._config import recast_checkpoint_ns
except ImportError:  # pragma: no cover

    def recast_checkpoint_ns(ns: str) -> str:
        return "|".join(part.split(":")[0] for part in ns.split("|"))


SUPPORTED = ("langgraph >= 1.0, < 2",)
"""The LangGraph versions coordgap supports."""

CONF = "configurable"
CONFIG_KEY_RUNTIME = "__pregel_runtime"
CONFIG_KEY_CHECKPOINT_NS = "checkpoint_ns"
PUSH_TRIGGER = ("__pregel_push",)
NS_SEP = "|"

__all__ = [
    "END",
    "START",
    "Command",
    "CompiledStateGraph",
    "GraphBubbleUp",
    "ParentCommand",
    "Pregel",
    "RunnableSeq",
    "Send",
    "StateGraph",
]


# -- builder -------------------------------------------------------------------------


def copy_builder(builder: StateGraph[Any, Any, Any, Any]) -> StateGraph[Any, Any, Any, Any]:
    """Return a copy of a StateGraph builder that can be changed and compiled freely.

    compile() mutates the builder (node defaults applied to node specs, a
    default error handler added, ``compiled`` set), so the user's builder is
    never the one compiled.
    """
    new = copy.copy(builder)
    new.nodes = {name: copy.copy(spec) for name, spec in builder.nodes.items()}
    new.edges = set(builder.edges)
    new.branches = defaultdict(dict, {k: dict(v) for k, v in builder.branches.items()})
    new.waiting_edges = set(builder.waiting_edges)
    new.channels = dict(builder.channels)
    new.managed = dict(builder.managed)
    new.schemas = dict(builder.schemas)
    if hasattr(builder, "_node_defaults"):
        new._node_defaults = copy.copy(builder._node_defaults)
    new.compiled = False
    return new


def compile_options(graph: CompiledStateGraph[Any, Any, Any, Any]) -> dict[str, Any]:
    """Return the keyword arguments that compile() was given for a compiled graph."""
    return {
        "checkpointer": graph.checkpointer,
        "cache": graph.cache,
        "store": graph.store,
        "interrupt_before": graph.interrupt_before_nodes or None,
        "interrupt_after": graph.interrupt_after_nodes or None,
        "debug": graph.debug,
        "name": graph.name,
    }


def graph_level_settings(graph: CompiledStateGraph[Any, Any, Any, Any]) -> dict[str, Any]:
    """Settings of a compiled graph that compile() does not take, to carry over."""
    return {
        "config": graph.config,
        "retry_policy": graph.retry_policy,
        "step_timeout": graph.step_timeout,
        "stream_mode": graph.stream_mode,
        "stream_eager": graph.stream_eager,
        "cache_policy": graph.cache_policy,
    }


def node_names(builder: StateGraph[Any, Any, Any, Any]) -> list[str]:
    """Return the user's nodes (error-handler nodes LangGraph adds are excluded)."""
    return [n for n, spec in builder.nodes.items() if not getattr(spec, "is_error_handler", False)]


def router_ids(builder: StateGraph[Any, Any, Any, Any]) -> dict[tuple[str, str], str]:
    """Return a unique id per (source, branch name): the name, or name@source when shared."""
    counts: dict[str, int] = defaultdict(int)
    for branches in builder.branches.values():
        for name in branches:
            counts[name] += 1
    return {
        (source, name): name if counts[name] == 1 else f"{name}@{source}"
        for source, branches in builder.branches.items()
        for name in branches
    }


def command_destinations(spec: Any) -> tuple[str, ...]:
    """Return the Command destinations a node declares (``destinations=`` or its return hint)."""
    ends = getattr(spec, "ends", None) or ()
    return tuple(ends.keys()) if isinstance(ends, dict) else tuple(ends)


def subgraph_of(spec: Any) -> CompiledStateGraph[Any, Any, Any, Any] | None:
    """Return the compiled StateGraph a node *is* (added directly as a node), else None."""
    runnable = getattr(spec, "runnable", None)
    if isinstance(runnable, CompiledStateGraph) and isinstance(
        getattr(runnable, "builder", None), StateGraph
    ):
        return runnable
    return None


def topology_of(
    builder: StateGraph[Any, Any, Any, Any], graph_name: str, prefix: str = ""
) -> Topology:
    """Return the declared topology of a builder, subgraphs expanded with ``outer/`` names."""
    nodes: list[str] = []
    handoffs: list[DeclaredHandoff] = []
    routers: list[DeclaredRouter] = []
    subgraphs: list[str] = []
    entry: list[str] = []

    def name(n: str) -> str:
        if n in (START, END):
            return n if not prefix else f"{prefix}{n}"
        return f"{prefix}{n}"

    user_nodes = node_names(builder)
    for n in user_nodes:
        nodes.append(name(n))
        spec = builder.nodes[n]
        for target in command_destinations(spec):
            handoffs.append(DeclaredHandoff(name(n), name(target), "command"))
        sub = subgraph_of(spec)
        if sub is not None:
            subgraphs.append(name(n))
            inner = topology_of(sub.builder, graph_name, prefix=f"{name(n)}/")
            nodes.extend(inner.nodes)
            handoffs.extend(inner.handoffs)
            routers.extend(inner.routers)
            subgraphs.extend(inner.subgraphs)
    for source, target in sorted(builder.edges):
        handoffs.append(DeclaredHandoff(name(source), name(target), "edge"))
        if source == START:
            entry.append(name(target))
    for sources, target in sorted(builder.waiting_edges):
        for source in sources:
            handoffs.append(DeclaredHandoff(name(source), name(target), "join"))
    ids = router_ids(builder)
    for source, branches in sorted(builder.branches.items()):
        for bname, branch in branches.items():
            targets = None if branch.ends is None else tuple(dict.fromkeys(branch.ends.values()))
            routers.append(
                DeclaredRouter(
                    f"{prefix}{ids[(source, bname)]}",
                    name(source),
                    None if targets is None else tuple(name(t) for t in targets),
                )
            )
            for target in targets or ():
                handoffs.append(DeclaredHandoff(name(source), name(target), "conditional"))
                if source == START:
                    entry.append(name(target))
    return Topology(
        graph=graph_name,
        nodes=tuple(nodes),
        handoffs=tuple(dict.fromkeys(handoffs)),
        routers=tuple(routers),
        subgraphs=tuple(subgraphs),
        entry=tuple(dict.fromkeys(entry)),
    )


# -- compiled graph ------------------------------------------------------------------


def pregel_nodes(graph: Pregel[Any, Any, Any, Any]) -> dict[str, Any]:
    """Return the compiled graph's PregelNodes by name."""
    return graph.nodes


def sequence_steps(runnable: Any) -> list[Runnable[Any, Any]] | None:
    """Return the steps LangGraph flattens a node's sequence into, or None for a single step."""
    from langchain_core.runnables import RunnableSequence

    if isinstance(runnable, (RunnableSequence, RunnableSeq)):
        return list(runnable.steps)
    return None


def install_node_runnable(
    pregel_node: Any,
    wrap: Callable[[Runnable[Any, Any]], Runnable[Any, Any]],
    *,
    wrap_steps: Callable[[list[Runnable[Any, Any]]], list[Runnable[Any, Any]]] | None = None,
    wrap_first_writer: bool = False,
) -> None:
    """Make the node run ``wrap(bound)`` in place of its bound runnable.

    ``bound``, ``writers`` and ``flat_writers`` stay as LangGraph built them,
    so drawings (``get_graph``), subgraph discovery and parent-command
    handling are untouched; only the runnable LangGraph executes for the node
    (its cached ``node`` property: bound followed by the writers) is replaced.
    A bound sequence (``prompt | model``) is flattened into the node's steps
    by LangGraph; ``wrap_steps`` then wraps each step so the callback tree
    stays the same. With ``wrap_first_writer`` (the START node, which has no
    bound) the first writer is wrapped instead.
    """
    writers = list(pregel_node.flat_writers)
    bound = pregel_node.bound
    has_bound = bound is not _default_bound()
    parts = sequence_steps(bound) if has_bound and writers else None
    if parts is not None and wrap_steps is not None:
        steps = [*wrap_steps(parts), *writers]
    elif has_bound:
        steps = [wrap(bound), *writers]
    elif wrap_first_writer and writers:
        steps = [wrap(writers[0]), *writers[1:]]
    else:
        return
    trace_policy = getattr(pregel_node, "trace_policy", None)
    if len(steps) == 1:
        runnable = steps[0]
    else:
        try:
            runnable = RunnableSeq(*steps, trace_policy=trace_policy)
        except TypeError:  # pragma: no cover - older 1.x without trace_policy
            runnable = RunnableSeq(*steps)
    pregel_node.__dict__["node"] = runnable


def task_key(config: Any) -> str | None:
    """Return a key unique to one task (its checkpoint namespace holds the task id)."""
    try:
        return str(config[CONF][CONFIG_KEY_CHECKPOINT_NS])
    except Exception:
        return None


def _default_bound() -> Any:
    from langgraph.pregel._read import DEFAULT_BOUND

    return DEFAULT_BOUND


def retry_policies(pregel_node: Any, graph: Pregel[Any, Any, Any, Any]) -> tuple[RetryPolicy, ...]:
    """Return the retry policies that apply to a node (its own, else the graph's)."""
    policy = pregel_node.retry_policy or graph.retry_policy
    if not policy:
        return ()
    if isinstance(policy, RetryPolicy):
        return (policy,)
    return tuple(policy)


def will_retry(policies: Sequence[RetryPolicy], exc: BaseException, attempt: int) -> bool:
    """Return True when LangGraph will retry after ``exc`` failed attempt ``attempt``."""
    if not policies or not isinstance(exc, Exception):
        return False
    for policy in policies:
        if _should_retry_on(policy, exc):
            return attempt < policy.max_attempts
    return False


def _should_retry_on(policy: RetryPolicy, exc: Exception) -> bool:
    if _lg_should_retry_on is not None:
        try:
            return bool(_lg_should_retry_on(policy, exc))
        except Exception:
            pass
    retry_on = policy.retry_on
    if isinstance(retry_on, Sequence) and not isinstance(retry_on, str):
        return isinstance(exc, tuple(retry_on))
    if isinstance(retry_on, type) and issubclass(retry_on, Exception):
        return isinstance(exc, retry_on)
    if callable(retry_on):
        return bool(retry_on(exc))  # type: ignore[call-arg]
    return False


# -- per-call information -------------------------------------------------------------


runtime_attempt: Callable[[Any], int] = operator.attrgetter("execution_info.node_attempt")
"""The attempt number (1-based) held by ``config[CONF][CONFIG_KEY_RUNTIME]`` (C-level: the
probes read it on every node call)."""


def step_of(config: Any) -> int | None:
    """Return LangGraph's superstep number for a node call."""
    try:
        return int(config["metadata"]["langgraph_step"])
    except Exception:
        return None


def is_push(config: Any) -> bool:
    """Return True when the node call was started by a Send."""
    try:
        return tuple(config["metadata"]["langgraph_triggers"]) == PUSH_TRIGGER
    except Exception:
        return False


def thread_key(config: Any, fallback: Any = None) -> tuple[str, str] | None:
    """Return (thread_id, checkpoint_ns) of a run's config (else of ``fallback``, the
    graph's own config), or None without a thread."""
    for candidate in (config, fallback):
        try:
            conf = candidate[CONF]
        except Exception:
            continue
        thread = conf.get("thread_id")
        if thread is not None:
            return (str(thread), str(conf.get(CONFIG_KEY_CHECKPOINT_NS, "")))
    return None


def parent_command_targets_this_graph(exc: ParentCommand, config: Any, task_name: str) -> bool:
    """Return True when a ParentCommand raised inside a node is handled by this graph."""
    try:
        cmd = exc.args[0]
        ns = config[CONF][CONFIG_KEY_CHECKPOINT_NS]
        return cmd.graph in (ns, recast_checkpoint_ns(ns), task_name)
    except Exception:
        return False


def command_gotos(value: Any) -> Iterable[Command[Any]]:
    """Yield the Commands in a node's return value (a Command or a list holding some)."""
    if isinstance(value, Command):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, Command):
                yield item


def goto_list(cmd: Command[Any]) -> Sequence[str | Send]:
    """Return a Command's goto as a list."""
    goto = cmd.goto
    if isinstance(goto, (str, Send)):
        return [goto]
    return list(goto or ())
