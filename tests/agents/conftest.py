"""The agent corpus needs the packages users build agents with (the ``test`` extra pins
them); without them its tests are skipped, not failed. The oracle's own tests need only
LangGraph."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest

_PACKAGES = ("langchain", "langgraph_supervisor", "langgraph_swarm")
_MISSING = [name for name in _PACKAGES if importlib.util.find_spec(name) is None]
_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _MISSING:
        return
    skip = pytest.mark.skip(reason=f"needs {', '.join(_MISSING)} (pip install -e '.[test]')")
    for item in items:
        path = Path(str(item.fspath))
        if path.parent == _HERE and path.name != "test_oracle.py":
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_deprecation_noise() -> object:
    # create_react_agent (and langgraph-supervisor, which calls it) warns that it moved to
    # langchain.agents; the corpus builds it on purpose, as its users still do
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="create_react_agent has been moved")
        yield
