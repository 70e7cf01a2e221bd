"""The declared shape of a graph: nodes, static edges, joins, routers, Command destinations.

Pure data, extracted once at instrument() time (see ``_compat.topology_of``),
so the report and coverage can compare what was declared with what happened.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "HANDOFF_ARROW",
    "UNKNOWN",
    "DeclaredHandoff",
    "DeclaredRouter",
    "Topology",
    "handoff_name",
    "handoff_pair",
    "parse_handoff",
    "path_of",
]

HANDOFF_ARROW = " -> "
"""The one spelling of a handoff in every report, API and command: ``source -> target``."""

UNKNOWN = "__unknown__"
"""The target of a route that named no node (LangGraph's own names are ``__start__``/``__end__``)."""


def handoff_name(source: str, target: str) -> str:
    """Return the name of the handoff from ``source`` to ``target``: ``"a -> b"``.

    Example::

        >>> handoff_name("supervisor", "__unknown__")
        'supervisor -> __unknown__'
    """
    return f"{source}{HANDOFF_ARROW}{target}"


def parse_handoff(text: str) -> tuple[str, str] | None:
    """Return (source, target) of a handoff name, or None when ``text`` names no handoff.

    Accepts exactly what :func:`handoff_name` prints, spaces around ``->`` optional
    (``"a->b"``). Subgraph nodes keep their ``outer/inner`` names.

    Example::

        >>> parse_handoff("writer/polish -> review")
        ('writer/polish', 'review')
    """
    if not isinstance(text, str) or "->" not in text:
        return None
    source, _, target = text.partition("->")
    source, target = source.strip(), target.strip()
    if not source or not target or "->" in target:
        return None
    return source, target


@dataclass(frozen=True, slots=True)
class DeclaredHandoff:
    """An edge the builder declares: ``kind`` is edge, join, conditional or command."""

    source: str
    target: str
    kind: str


@dataclass(frozen=True, slots=True)
class DeclaredRouter:
    """A conditional edge: its path function's name, its source, and its path map targets.

    ``targets`` is None when the router has no path map (it may return any node).
    """

    name: str
    source: str
    targets: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Topology:
    """The declared graph; node names are namespaced by subgraph (``outer/inner``)."""

    graph: str
    nodes: tuple[str, ...]
    handoffs: tuple[DeclaredHandoff, ...] = ()
    routers: tuple[DeclaredRouter, ...] = ()
    subgraphs: tuple[str, ...] = ()
    """Nodes that are compiled subgraphs; their inner nodes are listed in ``nodes``."""
    entry: tuple[str, ...] = field(default=())
    """Targets reachable directly from START."""
    max_attempts: Mapping[str, int] = field(default_factory=dict, hash=False)
    """Per node with a ``RetryPolicy``, the attempts LangGraph allows a task (absent: 1)."""

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict."""
        return {
            "graph": self.graph,
            "nodes": list(self.nodes),
            "handoffs": [[h.source, h.target, h.kind] for h in self.handoffs],
            "routers": [
                [r.name, r.source, None if r.targets is None else list(r.targets)]
                for r in self.routers
            ],
            "subgraphs": list(self.subgraphs),
            "entry": list(self.entry),
            "max_attempts": dict(self.max_attempts),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Topology:
        """Rebuild a Topology from :meth:`to_dict` output."""
        handoffs = tuple(DeclaredHandoff(*h) for h in data.get("handoffs", ()))  # type: ignore[attr-defined]
        routers = tuple(
            DeclaredRouter(r[0], r[1], None if r[2] is None else tuple(r[2]))
            for r in data.get("routers", ())  # type: ignore[attr-defined]
        )
        return cls(
            graph=str(data["graph"]),
            nodes=tuple(data.get("nodes", ())),  # type: ignore[arg-type]
            handoffs=handoffs,
            routers=routers,
            subgraphs=tuple(data.get("subgraphs", ())),  # type: ignore[arg-type]
            entry=tuple(data.get("entry", ())),  # type: ignore[arg-type]
            max_attempts=dict(data.get("max_attempts", {})),  # type: ignore[call-overload]
        )


# -- reading the names users give components: analyze, a -> b, ("a", "b") ------------

_OLD_ARROW = "\u2192"


def _modern(text: str, stacklevel: int) -> str:
    if _OLD_ARROW not in text:
        return text
    fixed = text.replace(_OLD_ARROW, "->")
    warnings.warn(
        f"{text!r}: name handoffs {handoff_name('a', 'b')!r} "
        f"(e.g. {' -> '.join(p.strip() for p in fixed.split('->'))!r}); "
        f"the arrow {_OLD_ARROW!r} is deprecated",
        DeprecationWarning,
        stacklevel=stacklevel + 1,
    )
    return fixed


def handoff_pair(ref: object, *, stacklevel: int = 3) -> tuple[str, str] | None:
    """Return (source, target) when ``ref`` names a handoff, else None.

    Accepts ``"a -> b"``, ``"a->b"``, ``("a", "b")``; ``"a → b"`` with a DeprecationWarning.

    Example::

        >>> handoff_pair("supervisor -> __unknown__")
        ('supervisor', '__unknown__')
    """
    if isinstance(ref, tuple) and len(ref) == 2 and all(isinstance(x, str) for x in ref):
        return (ref[0], ref[1])
    if not isinstance(ref, str):
        return None
    return parse_handoff(_modern(ref, stacklevel + 1))


def path_of(text: str | object, *, stacklevel: int = 3) -> list[str]:
    """Return the nodes of a path ``"a -> c -> b"`` (or a list of names) in order.

    Example::

        >>> path_of("retrieve -> cache -> analyze")
        ['retrieve', 'cache', 'analyze']
    """
    if isinstance(text, str):
        return [p.strip() for p in _modern(text, stacklevel + 1).split("->")]
    if isinstance(text, list | tuple):
        return [str(p) for p in text]
    return [str(text)]
