"""What the installed LangGraph can do, for the tests of features some supported releases lack.

coordgap supports ``langgraph>=1.0,<2`` and is tested on both ends of it (``noxfile.py``:
``tests-newest``, ``tests-lowest``). A test of a feature that came later in 1.x is marked
with one of these and skips, with the release that brought the feature, where it is absent.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

import pytest
from langgraph.graph import StateGraph
from packaging.version import Version

LANGGRAPH = Version(version("langgraph"))
"""The installed LangGraph release."""

_ADD_NODE = inspect.signature(StateGraph.add_node).parameters


def _needs(present: bool, feature: str, since: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not present, reason=f"langgraph {LANGGRAPH} has no {feature} (added in {since})"
    )


needs_error_handler = _needs(
    "error_handler" in _ADD_NODE and hasattr(StateGraph, "set_node_defaults"),
    "error-handler nodes (add_node(error_handler=...), set_node_defaults)",
    "1.2.0",
)
needs_node_timeout = _needs(
    "timeout" in _ADD_NODE, "node timeouts (add_node(timeout=...))", "1.2.0"
)
needs_saved_cache_writes = _needs(
    Version("1.2.15") <= LANGGRAPH,
    "cache hits' replayed writes handed to the checkpointer (the oracle reads writes there)",
    "1.2.15",
)
