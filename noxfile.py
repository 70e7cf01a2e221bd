"""The test suite on both ends of the supported LangGraph range (``langgraph>=1.0,<2``).

    nox                                   # tests-newest: the README's environment
    nox -s tests-lowest                   # the lowest supported LangGraph set
    nox -s tests-lowest -- tests/test_counting.py -x     # pytest arguments after --

``bash scripts/test`` (what CI runs) runs the same two environments: the main suite in
``.venv``, then the lowest set in ``.venv-lowest``. nox is installed with the test extra
(``.venv/bin/nox``); its environments live in ``.nox/``.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests-newest"]
nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"

LOWEST = "tests/constraints-lowest.txt"
"""The lowest LangGraph, its family and the test-only pins that go with them."""

PYTEST = ("-p", "no:cacheprovider", "-n", "2", "tests", "examples")
NOT_PHOENIX = ("--ignore", "tests/integration/test_phoenix.py")


@nox.session(name="tests-newest")
def tests_newest(session: nox.Session) -> None:
    """The whole suite on the newest LangGraph, every test extra installed."""
    session.install("--upgrade", "-e", ".[test,phoenix]")
    session.run("python", "-m", "pytest", *(session.posargs or PYTEST))


@nox.session(name="tests-lowest")
def tests_lowest(session: nox.Session) -> None:
    """The suite on the lowest supported LangGraph (1.0.0; see tests/constraints-lowest.txt).

    Not there: the agent corpus (its packages need a newer langchain-core; its tests skip)
    and the Phoenix integration tests (arize-phoenix needs aiosqlite>=0.22.1, which the
    sqlite checkpointer of LangGraph 1.0's checkpoint line cannot use).
    """
    session.install("-e", ".[test-core]", "-c", LOWEST)
    session.run("python", "-m", "pytest", *(session.posargs or PYTEST), *NOT_PHOENIX)
