"""The graph-coverage options of coordgap's pytest plugin.

``--coordgap-coverage`` prints, at the end of the session, the graph coverage
of every graph instrumented during it (nodes, declared edges, router targets
exercised at least once; undeclared transitions; failed routes), like
code-coverage tools do for lines. ``--coordgap-coverage-fail-under=90`` fails
the session when the total is below 90 %, and
``--coordgap-coverage-file=PATH`` writes the result as JSON for CI. Either of
the two implies the first.

The plugin (``coordgap/pytest_plugin.py``) calls :func:`addoption` from its
``pytest_addoption`` and :func:`configure` from its ``pytest_configure``; this
module can also be loaded on its own with ``-p coordgap._coverage_pytest``.
Both functions are idempotent.

Under pytest-xdist each worker collects its own graphs and sends their counts to
the controller when it finishes; the controller adds them up and reports once.
Graphs are told apart by name and declared topology.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from ._coverage import Coverage, coverage
from ._ledger import _LEDGERS, Ledger, LedgerSnapshot, merge_snapshots
from .topology import Topology

__all__ = ["CoveragePlugin", "addoption", "configure", "total_of"]

PLUGIN_NAME = "coordgap-coverage"
_JSON_SCHEMA = "coordgap.coverage-session/1"


# -- collecting every instrumented graph of a process -------------------------------------


class _Collector:
    """Holds every ledger created while active, to report coverage per graph at the end.

    New graphs are announced by ``instrument()``'s observer hook
    (``_instrument.add_observer``); graphs alive when collecting starts are
    taken from the ledger registry.

    Ledgers are held strongly (a ledger is a few dictionaries; it does not keep
    its graph alive), because a graph built inside a test is gone by the time
    the session ends. :meth:`checkpoint` folds each ledger's current snapshot
    into the last with ``max`` (:func:`coordgap._ledger.merge_snapshots`), so
    counts that a later ``Ledger.reset()`` zeroes still count as exercised;
    :meth:`stop` sums the ledgers of one graph and reads coverage off the total.
    """

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self.active = False
        self._ledgers: dict[int, Ledger] = {}
        self._counts: dict[int, LedgerSnapshot] = {}
        self._remove: Any = None

    def start(self) -> None:
        from ._instrument import add_observer

        with self._lock:
            if self.active:
                return
            self.active = True
            for ledger in list(_LEDGERS):  # graphs built before the session started
                self._ledgers.setdefault(id(ledger), ledger)
        self._remove = add_observer(self._seen)

    def _seen(self, app: Any) -> None:
        self.add(app.coordgap_ledger)

    def add(self, ledger: Ledger) -> None:
        with self._lock:
            if self.active:
                self._ledgers.setdefault(id(ledger), ledger)

    def checkpoint(self) -> None:
        with self._lock:
            ledgers = list(self._ledgers.items())
        for key, ledger in ledgers:
            snap = ledger.snapshot()
            with self._lock:
                old = self._counts.get(key)
                self._counts[key] = snap if old is None else merge_snapshots([old, snap], "max")

    def stop(self) -> list[LedgerSnapshot]:
        """Return the counts of every ledger seen (each at its highest), and forget them."""
        if self._remove is not None:
            self._remove()
            self._remove = None
        self.checkpoint()
        with self._lock:
            seen = list(self._counts.values())
            self.active = False
            self._ledgers.clear()
            self._counts.clear()
        return seen


def coverages_of(seen: list[LedgerSnapshot]) -> list[Coverage]:
    """Return one Coverage per distinct graph (name and topology) over these counts."""
    groups: dict[tuple[str, Topology | None], list[LedgerSnapshot]] = {}
    for snap in seen:
        groups.setdefault((snap.graph, snap.topology), []).append(snap)
    out: list[Coverage] = []
    names: dict[str, int] = {}
    for (graph, _topo), snaps in sorted(groups.items(), key=lambda kv: kv[0][0]):
        cov = coverage(merge_snapshots(snaps, "sum"))
        names[graph] = names.get(graph, 0) + 1
        if names[graph] > 1:  # two different graphs under one name
            cov = dataclasses.replace(cov, graph=f"{graph} #{names[graph]}")
        out.append(cov)
    return out


_COLLECTOR = _Collector()
_WORKER_KEY = "coordgap_coverage"


def addoption(parser: Any) -> None:
    """Add the coverage options to the ``coordgap`` option group (call from pytest_addoption)."""
    group = parser.getgroup("coordgap", "coordgap: compounded reliability of LangGraph agents")
    try:
        group.addoption(
            "--coordgap-coverage",
            action="store_true",
            default=False,
            help="report the graph coverage (nodes, edges, router targets exercised; drift) "
            "of every graph instrumented during the session",
        )
    except ValueError:  # already added (the plugin and -p coordgap._coverage_pytest)
        return
    group.addoption(
        "--coordgap-coverage-fail-under",
        type=float,
        default=None,
        metavar="PERCENT",
        help="fail the session when the total graph coverage is below PERCENT "
        "(implies --coordgap-coverage)",
    )
    group.addoption(
        "--coordgap-coverage-file",
        default=None,
        metavar="PATH",
        help="write the graph coverage as JSON to PATH (implies --coordgap-coverage)",
    )


def configure(config: Any) -> None:
    """Start collecting when an option asks for coverage (call from pytest_configure)."""
    opt = config.option
    wanted = (
        getattr(opt, "coordgap_coverage", False)
        or getattr(opt, "coordgap_coverage_fail_under", None) is not None
        or getattr(opt, "coordgap_coverage_file", None) is not None
    )
    if not wanted or config.pluginmanager.has_plugin(PLUGIN_NAME):
        return
    config.pluginmanager.register(CoveragePlugin(config), PLUGIN_NAME)


# Loaded on its own with -p coordgap._coverage_pytest, the module is its own plugin.
pytest_addoption = addoption
pytest_configure = configure


def total_of(coverages: list[Coverage]) -> tuple[int, int, float]:
    """Return (covered, declared, percent) over every graph: nodes and declared edges."""
    covered = sum(c.total.covered for c in coverages)
    total = sum(c.total.total for c in coverages)
    return covered, total, 100.0 * covered / total if total else 100.0


class CoveragePlugin:
    """Collects ledgers for the session; reports, gates and writes JSON at its end."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.fail_under: float | None = config.option.coordgap_coverage_fail_under
        self.path: str | None = config.option.coordgap_coverage_file
        self.coverages: list[Coverage] | None = None
        self.failed = False
        self.worker = hasattr(config, "workerinput")
        self.remote: list[LedgerSnapshot] = []
        _COLLECTOR.start()

    def pytest_runtest_teardown(self, item: Any) -> None:
        # Fold counts in after each test: a later Ledger.reset() must not erase them.
        _COLLECTOR.checkpoint()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        # an xdist worker finished: the counts it collected (pytest calls this hook only
        # where xdist is installed)
        data = getattr(node, "workeroutput", {}).get(_WORKER_KEY)
        if data:
            self.remote += [LedgerSnapshot.from_dict(d) for d in json.loads(data)]

    def pytest_sessionfinish(self, session: Any, exitstatus: int) -> None:
        seen = _COLLECTOR.stop()
        if self.worker:
            self.config.workeroutput[_WORKER_KEY] = json.dumps([s.to_dict() for s in seen])
            return
        self.coverages = coverages_of(seen + self.remote)
        covered, total, percent = total_of(self.coverages)
        if self.path:
            data = {
                "schema": _JSON_SCHEMA,
                "percent": round(percent, 3),
                "covered": covered,
                "total": total,
                "fail_under": self.fail_under,
                "graphs": [c.to_dict() for c in self.coverages],
            }
            Path(self.path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        if self.fail_under is not None and percent < self.fail_under:
            self.failed = True
            if session.exitstatus == 0:
                import pytest

                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.worker:
            return
        from .render import text_table

        tr = terminalreporter
        coverages = self.coverages or []
        tr.write_sep("-", "coordgap graph coverage")
        if not coverages:
            tr.write_line("no graph was instrumented with coordgap during this session")
        rows = []
        for c in coverages:
            n, e, r = c.node_coverage, c.edge_coverage, c.router_target_coverage
            missing = [*c.missed_nodes, *(m.label for m in c.missed_edges)]
            shown = ", ".join(missing[:4]) + (
                f", +{len(missing) - 4} more" if len(missing) > 4 else ""
            )
            rows.append(
                [
                    c.graph,
                    str(c.runs),
                    f"{n.covered}/{n.total}",
                    f"{e.covered}/{e.total}",
                    f"{r.covered}/{r.total}",
                    f"{c.percent:.1f}%",
                    str(len(c.drift)),
                    shown,
                ]
            )
        header = ["graph", "runs", "nodes", "edges", "routes", "cover", "drift", "missing"]
        right = [False, True, True, True, True, True, True, False]
        for line in text_table(header, rows, right):
            tr.write_line(line)
        covered, total, percent = total_of(coverages)
        tr.write_line(f"TOTAL  {covered}/{total} declared nodes and edges: {percent:.1f}%")
        for c in coverages:
            for d in c.drift:
                tr.write_line(
                    f"drift in {c.graph}: {d.label} ({', '.join(d.undeclared_kinds)}): {d.cause}"
                )
            for f in c.failed_routes:
                tr.write_line(f"failed route in {c.graph}: {f.label} {f.error_type} x{f.count}")
        if self.path:
            tr.write_line(f"graph coverage JSON written to {self.path}")
        if self.fail_under is not None:
            if self.failed:
                tr.write_line(
                    f"FAIL Required graph coverage of {self.fail_under:g}% not reached. "
                    f"Total coverage: {percent:.2f}%",
                    red=True,
                    bold=True,
                )
            else:
                tr.write_line(
                    f"Required graph coverage of {self.fail_under:g}% reached. "
                    f"Total coverage: {percent:.2f}%",
                    green=True,
                )
