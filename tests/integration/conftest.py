"""Session fixtures that run real backends (Phoenix, Prometheus) for the integration tests.

Each backend starts once per session on 127.0.0.1 in a temporary directory
and is stopped at the end. A backend that cannot start skips its tests with
the reason, or fails them under ``CI=true`` (see ``servers.unavailable``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from . import servers


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    """A running Phoenix (HTTP + OTLP/HTTP on one loopback port), stopped after the session."""
    if not servers.phoenix_installed():
        servers.unavailable("arize-phoenix is not installed: pip install -e '.[test,phoenix]'")
    try:
        server = servers.start_phoenix(tmp_path_factory.mktemp("phoenix"))
    except Exception as exc:
        servers.unavailable(f"Phoenix did not start: {exc}")
        raise  # unreachable: unavailable() skips or fails
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    """The prometheus executable, installed from Debian's package when missing (as root)."""
    binary = servers.ensure_prometheus()
    if binary is None:
        servers.unavailable(
            "prometheus is not installed and cannot be (needs root and apt-get): "
            "apt-get install -y prometheus"
        )
        raise AssertionError("unreachable")
    return binary


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if servers.TIMINGS:
        terminalreporter.section("coordgap integration: install and start times")
        for what, seconds in servers.TIMINGS:
            terminalreporter.write_line(f"{seconds:8.1f} s  {what}")
