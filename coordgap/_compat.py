"""The only module that knows LangGraph's internals.

Everything coordgap needs from LangGraph beyond its documented API lives
here, so a LangGraph upgrade is one file's work. Supported: the 1.x line
(tested on the lowest and the newest release of it, see :data:`SUPPORTED`).
"""

from __future__ import annotations

import copy
import functools
import operator
import re
import sys
import types
import warnings
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from langchain_core.runnables import Runnable
from langgraph.cache.base import BaseCache
from langgraph.constants import END, START
from langgraph.errors import GraphBubbleUp, GraphInterrupt, ParentCommand
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.pregel import Pregel
from langgraph.runtime import Runtime
from langgraph.types import Command, RetryPolicy, Send

from .errors import ConfigurationError
from .topology import DeclaredHandoff, DeclaredRouter, Topology

_lg_should_retry_on: Callable[[RetryPolicy, Exception], bool] | None
try:  # private, stable across 1.x; the fallback mirrors its behaviour
    from langgraph.pregel._retry import _should_retry_on as _lg_should_retry_on
except ImportError:  # pragma: no cover - depends on the installed LangGraph
    _lg_should_retry_on = None

_lg_run_with_retry: Callable[..., Any] | None
_lg_arun_with_retry: Callable[..., Any] | None
try:  # where LangGraph < 1.1.3 counts a task's attempts (see _attempt_from_retry_loop)
    from langgraph.pregel._retry import arun_with_retry as _lg_arun_with_retry
    from langgraph.pregel._retry import run_with_retry as _lg_run_with_retry
except ImportError:  # pragma: no cover - depends on the installed LangGraph
    _lg_run_with_retry = _lg_arun_with_retry = None

_lg_runnable_seq: type[Any] | None
_lg_default_bound: Any
try:  # private: the sequence a task runs (the node, then its writers); see wrap_node_step
    from langgraph._internal._runnable import RunnableSeq as _lg_runnable_seq
    from langgraph.pregel._read import DEFAULT_BOUND as _lg_default_bound
except ImportError:  # pragma: no cover - depends on the installed LangGraph
    _lg_runnable_seq = _lg_default_bound = None

HAS_NODE_ATTEMPT = "execution_info" in getattr(Runtime, "__dataclass_fields__", {})
"""LangGraph >= 1.1.3 gives each task its attempt number (``runtime.execution_info``)."""

try:
    from langgraph._internal._config import recast_checkpoint_ns
except ImportError:  # pragma: no cover - depends on the installed LangGraph

    def recast_checkpoint_ns(ns: str) -> str:
        return "|".join(part.split(":")[0] for part in ns.split("|"))


SUPPORTED = ("langgraph >= 1.0, < 2",)
"""The LangGraph versions coordgap supports (checked once at ``instrument()``); the same range
as ``pyproject.toml``'s dependency and :data:`LOWEST`/:data:`BELOW` (a test keeps them equal)."""

CONF = "configurable"
CONFIG_KEY_RUNTIME = "__pregel_runtime"
CONFIG_KEY_CHECKPOINT_NS = "checkpoint_ns"
CONFIG_KEY_SEND = "__pregel_send"
CONFIG_KEY_READ = "__pregel_read"
CONFIG_KEY_READ_STATE = "__pregel_read_state"
PUSH_TRIGGER = ("__pregel_push",)
TASKS_CHANNEL = "__pregel_tasks"
"""The channel a ``Send`` is written to."""
BRANCH_PREFIX = "branch:to:"
"""A write to ``branch:to:X`` triggers node X in the next superstep."""
JOIN_PREFIX = "join:"
"""``join:a+b:X`` is the barrier of ``add_edge([a, b], X)``; a source writes its own name."""
DEFAULT_ERROR_HANDLER = "__default_error_handler__"
"""The node compile() adds for ``set_node_defaults(error_handler=...)``."""

__all__ = [
    "END",
    "START",
    "BaseCache",
    "Command",
    "CompiledStateGraph",
    "GraphBubbleUp",
    "GraphInterrupt",
    "ParentCommand",
    "Pregel",
    "Send",
    "StateGraph",
]


# -- the installed version ----------------------------------------------------------

LOWEST = (1, 0, 0)
"""The lowest LangGraph release coordgap supports: the ``tests-lowest`` session runs on it."""
BELOW = (2,)
"""The first LangGraph release coordgap does not support (its internals may change there)."""


def installed_version() -> str | None:
    """Return the installed LangGraph's version string, or None when it has no metadata."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("langgraph")
    except PackageNotFoundError:  # pragma: no cover - a vendored LangGraph
        return None


def version_warning() -> str | None:
    """Return a warning when the installed LangGraph is outside :data:`SUPPORTED`, else None.

    Never raises: a version string it cannot read (a local build) is not warned about.
    """
    try:
        installed = installed_version()
        if installed is None:
            return None
        match = re.match(r"\d+(?:\.\d+)*", installed)
        if match is None:
            return None
        release = tuple(int(part) for part in match.group().split("."))
    except Exception:
        return None
    if LOWEST <= release < BELOW:
        return None
    return (
        f"coordgap supports {SUPPORTED[0]} (tested on the lowest and the newest release of "
        f"it); langgraph {installed} is installed. Counting may be wrong where LangGraph's "
        f"internals differ: check the report against a few runs, or pip install "
        f"'{SUPPORTED[0].replace(' ', '')}'."
    )


# -- builder -------------------------------------------------------------------------


def copy_builder(builder: StateGraph[Any, Any, Any, Any]) -> StateGraph[Any, Any, Any, Any]:
    """Return a copy of a StateGraph builder that can be changed and compiled freely.

    compile() changes the builder it is called on (node defaults written into
    the node specs, a default error-handler node added, ``compiled`` set); the
    copy undoes the side effects an earlier compile() had, so a builder that
    was already compiled can be compiled again, and the user's builder is never
    the one compiled.
    """
    new = copy.copy(builder)
    new.nodes = {name: copy.copy(spec) for name, spec in builder.nodes.items()}
    defaults = getattr(builder, "_node_defaults", None)
    if defaults is not None:
        untyped: Any = new  # LangGraph < 1.2 has no node defaults (nor this attribute)
        untyped._node_defaults = copy.copy(defaults)
        if getattr(defaults, "error_handler", None) is not None:
            # compile() refuses to add its default error handler twice
            new.nodes.pop(DEFAULT_ERROR_HANDLER, None)
    new.edges = set(builder.edges)
    new.branches = defaultdict(dict, {k: dict(v) for k, v in builder.branches.items()})
    new.waiting_edges = set(builder.waiting_edges)
    new.channels = dict(builder.channels)
    new.managed = dict(builder.managed)
    new.schemas = dict(builder.schemas)
    new.compiled = False
    return new


def node_runnable(builder: StateGraph[Any, Any, Any, Any], node: str) -> Runnable[Any, Any]:
    """Return the runnable a builder's node runs (the user's function, coerced by LangGraph)."""
    return builder.nodes[node].runnable  # type: ignore[return-value]


def set_node_runnable(builder: StateGraph[Any, Any, Any, Any], node: str, runnable: Any) -> None:
    """Make a (copied) builder's node run ``runnable``, everything else about it kept."""
    builder.nodes[node].runnable = runnable


def set_router_path(
    builder: StateGraph[Any, Any, Any, Any], source: str, name: str, path: Any
) -> None:
    """Make a (copied) builder's conditional edge call ``path``, its path map kept."""
    branches = builder.branches[source]
    branches[name] = branches[name]._replace(path=path)


def router_paths(builder: StateGraph[Any, Any, Any, Any]) -> list[tuple[str, str, Any, Any]]:
    """Return (source, branch name, path runnable, path map or None) per conditional edge."""
    return [
        (source, name, branch.path, branch.ends)
        for source, branches in builder.branches.items()
        for name, branch in branches.items()
    ]


def static_edges(builder: StateGraph[Any, Any, Any, Any]) -> list[tuple[str, str, str]]:
    """Return (source, target, kind) per static edge and per source of a join."""
    out = [(source, target, "edge") for source, target in builder.edges]
    for sources, target in builder.waiting_edges:
        out.extend((source, target, "join") for source in sources)
    return out


def join_channels(
    builder: StateGraph[Any, Any, Any, Any],
) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Return the barrier channel of each join (``join:a+b:c``), with its target and sources."""
    return {
        f"{JOIN_PREFIX}{'+'.join(sources)}:{target}": (target, tuple(sources))
        for sources, target in builder.waiting_edges
    }


def compile_options(graph: CompiledStateGraph[Any, Any, Any, Any]) -> dict[str, Any]:
    """Return the keyword arguments that compile() was given for a compiled graph."""
    return {
        "checkpointer": graph.checkpointer,
        "cache": getattr(graph.cache, "coordgap_inner", graph.cache),
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


def error_handler_names(builder: StateGraph[Any, Any, Any, Any]) -> list[str]:
    """Return the error-handler nodes a compile() of the builder will have."""
    names = [n for n, spec in builder.nodes.items() if getattr(spec, "is_error_handler", False)]
    defaults = getattr(builder, "_node_defaults", None)
    if getattr(defaults, "error_handler", None) is not None and DEFAULT_ERROR_HANDLER not in names:
        names.append(DEFAULT_ERROR_HANDLER)
    return names


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


def max_attempts(spec: Any, graph_policy: Any = None) -> int:
    """Return the attempts a node's RetryPolicy allows a task (1 without one)."""
    policy = getattr(spec, "retry_policy", None) or graph_policy
    if not policy:
        return 1
    policies = (policy,) if isinstance(policy, RetryPolicy) else tuple(policy)
    return max((p.max_attempts for p in policies), default=1)


def builder_of(graph: Any) -> StateGraph[Any, Any, Any, Any] | None:
    """Return the StateGraph a (possibly instrumented) compiled graph was built from, or None."""
    bare = getattr(graph, "coordgap_bare_builder", None)
    if isinstance(bare, StateGraph):
        return bare
    builder = getattr(graph, "builder", None)
    return builder if isinstance(builder, StateGraph) else None


def subgraph_of(spec: Any) -> CompiledStateGraph[Any, Any, Any, Any] | None:
    """Return the compiled StateGraph a node *is* (added directly as a node), else None."""
    runnable = getattr(spec, "runnable", None)
    if isinstance(runnable, CompiledStateGraph) and builder_of(runnable) is not None:
        return runnable
    return None


# -- graphs called from inside a node's function --------------------------------------


def _functions_of(runnable: Any) -> list[tuple[str, types.FunctionType]]:
    out = []
    for attr in ("func", "afunc"):
        fn = getattr(runnable, attr, None)
        fn = getattr(fn, "__func__", fn)
        if isinstance(fn, types.FunctionType):
            out.append((attr, fn))
    return out


def called_subgraphs(spec: Any) -> list[CompiledStateGraph[Any, Any, Any, Any]]:
    """Return the compiled StateGraphs a node's function holds in its closure.

    That is how ``langgraph-supervisor`` runs each worker agent (``agent.invoke``
    inside a wrapper function) and how LangGraph itself finds such subgraphs
    (closures and globals; coordgap reaches closures only).
    """
    found: dict[int, CompiledStateGraph[Any, Any, Any, Any]] = {}
    for _, fn in _functions_of(getattr(spec, "runnable", None)):
        for cell in fn.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if isinstance(value, CompiledStateGraph) and builder_of(value) is not None:
                found.setdefault(id(value), value)
    return list(found.values())


def with_called_subgraphs(runnable: Any, replace: Mapping[int, Any]) -> Any:
    """Return a copy of a node's runnable whose functions call ``replace[id(g)]`` for graph g.

    The user's runnable and functions are not changed: the copy's functions share
    their code, globals and defaults, with new closure cells for the replaced graphs.
    """
    new = copy.copy(runnable)
    clones: dict[int, types.FunctionType] = {}
    for attr, fn in _functions_of(runnable):
        cells = []
        for cell in fn.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:
                cells.append(cell)
                continue
            cells.append(types.CellType(replace[id(value)]) if id(value) in replace else cell)
        clone = types.FunctionType(
            fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, tuple(cells)
        )
        clone.__kwdefaults__ = fn.__kwdefaults__
        clone.__dict__.update(fn.__dict__)
        clone.__qualname__ = fn.__qualname__
        clone.__module__ = fn.__module__
        clone.__doc__ = fn.__doc__
        clone.__annotations__ = fn.__annotations__
        setattr(new, attr, clone)
        clones[id(fn)] = clone
    afunc = getattr(runnable, "afunc", None)
    if isinstance(afunc, functools.partial) and any(id(a) in clones for a in afunc.args):
        # a sync node's async path: LangGraph runs `partial(run_in_executor, None, func)`
        args = tuple(clones.get(id(a), a) for a in afunc.args)
        clone_partial = functools.partial(afunc.func, *args, **afunc.keywords)
        clone_partial.__dict__.update(afunc.__dict__)
        new.afunc = clone_partial
    return new


# -- the declared topology --------------------------------------------------------------


def topology_of(graph: Any, graph_name: str | None = None, prefix: str = "") -> Topology:
    """Return the declared topology of a builder or compiled graph, subgraphs as ``outer/``.

    Subgraphs are nodes that are compiled graphs and nodes whose function calls one
    (see :func:`called_subgraphs`); their inner nodes are expanded with ``outer/`` names.

    Raises:
        ConfigurationError: ``graph`` is not a StateGraph builder or a graph compiled from one.
    """
    builder = graph if isinstance(graph, StateGraph) else builder_of(graph)
    if builder is None:
        raise ConfigurationError(
            f"expected a langgraph StateGraph builder or a graph compiled from one, not "
            f"{type(graph).__name__}. Example: coordgap.audit(builder, nodes=0.97)."
        )
    if graph_name is None:
        graph_name = getattr(graph, "name", None) or "LangGraph"
    policy = getattr(graph, "retry_policy", None)
    nodes: list[str] = []
    handoffs: list[DeclaredHandoff] = []
    routers: list[DeclaredRouter] = []
    subgraphs: list[str] = []
    entry: list[str] = []
    attempts: dict[str, int] = {}

    def name(n: str) -> str:
        return f"{prefix}{n}"

    for n, spec in builder.nodes.items():
        if n == DEFAULT_ERROR_HANDLER and getattr(spec, "is_error_handler", False):
            continue  # added by an earlier compile(); listed below with the other handlers
        nodes.append(name(n))
        tries = max_attempts(spec, policy)
        if tries > 1:
            attempts[name(n)] = tries
        for target in command_destinations(spec):
            handoffs.append(DeclaredHandoff(name(n), name(target), "command"))
        inner = subgraph_of(spec)
        called = [] if inner is not None else called_subgraphs(spec)
        for sub in [inner] if inner is not None else called[:1]:
            subgraphs.append(name(n))
            below = topology_of(sub, graph_name, prefix=f"{name(n)}/")
            nodes.extend(below.nodes)
            handoffs.extend(below.handoffs)
            routers.extend(below.routers)
            subgraphs.extend(below.subgraphs)
            attempts.update(below.max_attempts)
    for n in error_handler_names(builder):
        if name(n) not in nodes:
            nodes.append(name(n))
    for source, target, kind in sorted(static_edges(builder)):
        handoffs.append(DeclaredHandoff(name(source), name(target), kind))
        if source == START:
            entry.append(name(target))
    ids = router_ids(builder)
    for source, bname, _, ends in sorted(router_paths(builder), key=operator.itemgetter(0, 1)):
        targets = None if ends is None else tuple(dict.fromkeys(ends.values()))
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
        max_attempts=attempts,
    )


# -- compiled graph ------------------------------------------------------------------


def pregel_nodes(graph: Pregel[Any, Any, Any, Any]) -> dict[str, Any]:
    """Return the compiled graph's PregelNodes by name."""
    return graph.nodes


def serialize_as_compiled_graph(graph: Any) -> None:
    """Make LangChain serialise ``graph`` (in ``get_graph().to_json()``) as LangGraph's class.

    Its serialiser names an object by ``__module__`` and ``__name__`` when it has a
    ``__name__``, else by its class; a compiled graph has none, so these two instance
    attributes make an instrumented graph draw exactly as a bare one, wherever it is
    drawn (inside a bare parent too), while ``type()`` still tells the truth.
    """
    graph.__dict__["__name__"] = CompiledStateGraph.__name__
    graph.__dict__["__module__"] = CompiledStateGraph.__module__


def wrap_task_runnable(pregel_node: Any, wrap: Callable[[Runnable[Any, Any]], Any]) -> bool:
    """Make LangGraph run ``wrap(task_runnable)`` for the node's tasks; False if it has none.

    The task runnable is what LangGraph executes for a task: the node's own
    runnable followed by its writers (state updates, edges, routers), as
    LangGraph built it (its trace policy included). ``bound``, ``writers`` and
    ``flat_writers`` stay untouched, so drawings, subgraph discovery,
    ``update_state`` and parent-command handling are those of the bare graph.
    """
    runnable = pregel_node.node
    if runnable is None:
        return False
    pregel_node.__dict__["node"] = wrap(runnable)
    return True


def wrap_node_step(pregel_node: Any, wrap: Callable[[Runnable[Any, Any]], Any]) -> bool:
    """Make the node's own step of its task run as ``wrap(step)``; False where it cannot.

    A task runs LangGraph's ``RunnableSeq(node, *writers)``: the sequence opens the
    node's callback run (the span a LangChain tracer makes for the node), then runs its
    first step, the node itself, inside that run's context. Code wrapped around that step
    is the only place where the node's callback run is open while coordgap runs. Call this
    before :func:`wrap_task_runnable` (it reads the same cached sequence). The node's
    ``bound``, writers and drawings stay as they are.
    """
    if _lg_runnable_seq is None:
        return False
    if pregel_node.bound is _lg_default_bound:
        return False  # no node of its own (the graph's entry): only writers
    seq = pregel_node.node
    if type(seq) is not _lg_runnable_seq or not seq.steps:
        return False
    seq.steps[0] = wrap(seq.steps[0])
    return True


def cached_node(key: Any) -> str | None:
    """Return the node a cache key of LangGraph's task writes belongs to (else None).

    A key is ``(namespace, key)``; the namespace of a task's writes is
    ``("__pregel_ns_writes", identifier, node name)``.
    """
    try:
        ns = key[0]
        if ns[0] == "__pregel_ns_writes" and len(ns) >= 3:
            return str(ns[2])
    except Exception:
        return None
    return None


def interrupt_nodes(graph: Pregel[Any, Any, Any, Any]) -> tuple[frozenset[str], frozenset[str]]:
    """Return the nodes a static breakpoint pauses before, and after ("*": every node)."""
    every = frozenset(n for n in graph.nodes if n != START)

    def expand(value: Any) -> frozenset[str]:
        if value == "*":
            return every
        return frozenset(value or ())

    return expand(graph.interrupt_before_nodes), expand(graph.interrupt_after_nodes)


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


def _attempt_from_retry_loop(runtime: Any) -> int:
    """Return the attempt number kept by the retry loop that runs the calling task.

    LangGraph before 1.1.3 hands a task no attempt number: ``run_with_retry`` and
    ``arun_with_retry`` count the failed attempts in their local ``attempts`` (the
    newer ``node_attempt`` is that count + 1). The loop calls the task's runnable
    directly, so its frame is a few frames above this call (probe method, probe
    ``_begin``); no such frame (a task LangGraph runs some other way) means attempt 1.
    """
    frame = sys._getframe(1)
    for _ in range(_RETRY_FRAME_DEPTH):
        if frame.f_code in _RETRY_LOOP_CODES:
            return int(frame.f_locals.get("attempts", 0)) + 1
        back = frame.f_back
        if back is None:
            break
        frame = back
    return 1


_RETRY_FRAME_DEPTH = 6
_RETRY_LOOP_CODES: frozenset[types.CodeType] = frozenset(
    fn.__code__ for fn in (_lg_run_with_retry, _lg_arun_with_retry) if fn is not None
)

runtime_attempt: Callable[[Any], int]
"""The attempt number (1-based) of the task whose ``config[CONF][CONFIG_KEY_RUNTIME]`` is
given (C-level where LangGraph holds it: the probes read it on every task)."""
if HAS_NODE_ATTEMPT:
    runtime_attempt = operator.attrgetter("execution_info.node_attempt")
else:  # pragma: no cover - LangGraph < 1.1.3, tested in the lowest-version session
    runtime_attempt = _attempt_from_retry_loop


def task_writes(config: Any) -> deque[tuple[str, Any]] | None:
    """Return the buffer LangGraph collects a task's writes in, or None outside a task.

    A task's writes (state updates, ``branch:to:X``, join barriers, ``Send``) are
    appended to one deque per task through ``config[CONF][CONFIG_KEY_SEND]``,
    LangGraph's ``writes.extend``; it is cleared before every attempt and applied
    when the superstep ends.
    """
    try:
        buffer = config[CONF][CONFIG_KEY_SEND].__self__
    except Exception:
        return None
    return buffer if type(buffer) is deque else None


def step_of(config: Any) -> int | None:
    """Return LangGraph's superstep number for a task."""
    try:
        return int(config["metadata"]["langgraph_step"])
    except Exception:
        return None


def is_push(config: Any) -> bool:
    """Return True when the task was started by a Send (or is an error handler)."""
    try:
        return tuple(config["metadata"]["langgraph_triggers"]) == PUSH_TRIGGER
    except Exception:
        return False


def task_namespace(config: Any) -> str:
    """Return a task's checkpoint namespace (unique to the task: it holds the task id)."""
    try:
        return str(config[CONF][CONFIG_KEY_CHECKPOINT_NS])
    except Exception:
        return ""


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
    """Return True when a ParentCommand raised inside a task is handled by this graph
    (LangGraph then runs the task's writers with the Command)."""
    try:
        cmd = exc.args[0]
        ns = config[CONF][CONFIG_KEY_CHECKPOINT_NS]
        return cmd.graph in (ns, recast_checkpoint_ns(ns), task_name)
    except Exception:
        return False


def command_of(exc: ParentCommand) -> Command[Any] | None:
    """Return the Command a ParentCommand carries."""
    try:
        cmd = exc.args[0]
    except Exception:
        return None
    return cmd if isinstance(cmd, Command) else None


def goto_targets(cmd: Command[Any]) -> list[str]:
    """Return the node names a Command's goto writes to (Sends and END excluded)."""
    goto = cmd.goto
    items = [goto] if isinstance(goto, (str, Send)) else list(goto or ())
    return [g for g in items if isinstance(g, str) and g != END]


def send_state(payload: Any, config: Any) -> Any:
    """Return the state a Send payload carries when it is LangGraph's own tool-call payload.

    ``create_react_agent`` sends ``{"__type": "tool_call_with_context", "state": ...}``;
    ``langchain.agents.create_agent`` sends a list of tool calls and lets the tool
    node read the state itself. Any other payload is returned unchanged.
    """
    if isinstance(payload, dict) and payload.get("__type") == "tool_call_with_context":
        return payload.get("state")
    if (
        isinstance(payload, list)
        and payload
        and isinstance(payload[-1], dict)
        and payload[-1].get("type") == "tool_call"
    ):
        try:
            conf = config[CONF]
            read_state = conf.get(CONFIG_KEY_READ_STATE)
            if read_state is not None:
                return read_state()
            read = conf.get(CONFIG_KEY_READ)
            channels = read.args[1]
            return read(list(channels), True)
        except Exception:
            return payload
    return payload


def is_control_flow(exc: BaseException) -> bool:
    """Return True for LangGraph's control flow (interrupts, parent commands) and cancellation."""
    return isinstance(exc, GraphBubbleUp) or not isinstance(exc, Exception)


def warn_unsupported_version() -> None:
    """Warn once per process when the installed LangGraph is outside the supported range."""
    global _version_checked
    if _version_checked:
        return
    _version_checked = True
    message = version_warning()
    if message is not None:
        warnings.warn(message, RuntimeWarning, stacklevel=3)


_version_checked = False


def written_channels(writes: Iterable[tuple[str, Any]]) -> list[str]:
    """Return the channels a task wrote, in order (for tests and debugging)."""
    return [channel for channel, _ in writes]
