"""Frozen event values: the one currency between interception and the sinks.

Interception emits one event per node attempt, handoff, router decision and
run; sinks (the ledger, the metrics and span sinks, your own callables) receive
them and never reach back into the graph. This module imports neither
LangGraph nor OpenTelemetry, so events can be built by hand in tests.

A sink is any callable ``sink(event) -> None``::

    seen = []
    app = coordgap.instrument(builder, sinks=[seen.append])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = [
    "Event",
    "HandoffKind",
    "HandoffOutcome",
    "NodeOutcome",
    "RouterOutcome",
    "RunOutcome",
    "RunStatus",
    "Sink",
]

HandoffKind: TypeAlias = Literal["edge", "join", "conditional", "command", "send"]
"""How state moved from source to target."""

RunStatus: TypeAlias = Literal["ok", "error", "interrupted"]
"""How a run ended."""


@dataclass(frozen=True, slots=True)
class NodeOutcome:
    """One attempt of one node.

    ``final`` is False for an attempt that failed and will be retried by the
    node's RetryPolicy; the execution's outcome is the final attempt's.
    """

    graph: str
    node: str
    ok: bool
    attempt: int
    final: bool
    start_ns: int
    end_ns: int
    step: int | None = None
    error_type: str | None = None
    contract: str | None = None
    fields: tuple[str, ...] = ()
    fault: bool = False
    run_id: int = 0
    captured: str | None = None

    @property
    def duration_s(self) -> float:
        """Duration of the attempt in seconds."""
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def first_attempt_ok(self) -> bool:
        """True when the node succeeded on its first attempt."""
        return self.ok and self.attempt == 1


@dataclass(frozen=True, slots=True)
class HandoffOutcome:
    """One transfer of state from ``source`` to ``target``.

    Closed when the target starts (its requires/edge contracts checked), or at
    the source when the route was invalid.
    """

    graph: str
    source: str
    target: str
    kind: HandoffKind
    ok: bool
    start_ns: int
    end_ns: int
    error_type: str | None = None
    contract: str | None = None
    fields: tuple[str, ...] = ()
    fault: bool = False
    run_id: int = 0
    captured: str | None = None


@dataclass(frozen=True, slots=True)
class RouterOutcome:
    """One decision of a router (a conditional-edge path function)."""

    graph: str
    router: str
    source: str
    ok: bool
    targets: tuple[str, ...]
    start_ns: int
    end_ns: int
    error_type: str | None = None
    fault: bool = False
    run_id: int = 0


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """One run: one invoke/stream of the instrumented graph.

    ``clean`` is True when the run finished without any failed component.
    ``error_at`` names the node that ran last when the run raised and no
    component failure explains it (a ``GraphRecursionError``, say).
    """

    graph: str
    status: RunStatus
    clean: bool
    start_ns: int
    end_ns: int
    error_type: str | None = None
    run_id: int = 0
    error_at: str | None = None


Event: TypeAlias = NodeOutcome | HandoffOutcome | RouterOutcome | RunOutcome
"""Anything a sink receives."""

Sink: TypeAlias = Callable[[Event], None]
"""A callable that receives every event; it must not raise (errors are swallowed and counted)."""
