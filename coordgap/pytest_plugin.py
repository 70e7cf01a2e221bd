"""coordgap's pytest plugin (registered through the pytest11 entry point).

What it adds (see ``docs/testing.md``):

- fixture ``coordgap_ledger``: a :class:`coordgap.testing.LedgerScope` holding
  every graph instrumented during the test (setup included), so assertions see
  this test's runs only; ``coordgap_ledger.track(app)`` adopts a graph built
  elsewhere and zeroes its ledger;
- fixture ``coordgap_runs``: how many runs the test should make (the marker's
  ``runs=``, else ``--coordgap-runs`` / ini ``coordgap_runs``, else 100);
- marker ``@pytest.mark.reliability(end_to_end=..., nodes=..., handoffs=...,
  routers=..., per=..., confidence=..., runs=..., min_runs=...)``: after the
  test body, every graph it instrumented must clear the thresholds (the
  marker's keywords override ``--coordgap-confidence`` and ``--coordgap-runs``);
- ``--coordgap-report``: a reliability summary per graph at the end of the
  session; ``--coordgap-report-file PATH`` writes the reports as JSON (or
  Markdown for ``.md``, one HTML page for ``.html``: ``docs/html-report.md``);
  ``--coordgap-save-baseline PATH`` writes them as the
  baseline for ``assert_no_regression`` and makes every
  ``assert_no_regression`` refresh its own baseline file instead of comparing.

Thin and lazy: this module imports nothing from coordgap at import time; the
testing helpers are imported when a test uses a fixture or the marker, or an
option asks for a report. Per-test state lives in ``pytest.StashKey``\\ s.
Under pytest-xdist each worker gathers its own graphs; the session summary
merges the workers' counts on the controller. ``-p no:coordgap`` turns all of
it off (the plain assertion helpers keep working).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .testing import LedgerScope

OPTION_REPORT = "--coordgap-report"
OPTION_REPORT_FILE = "--coordgap-report-file"
OPTION_SAVE_BASELINE = "--coordgap-save-baseline"
OPTION_RUNS = "--coordgap-runs"
OPTION_CONFIDENCE = "--coordgap-confidence"
INI_RUNS = "coordgap_runs"
INI_CONFIDENCE = "coordgap_confidence"
MARKER = "reliability"
FIXTURE_LEDGER = "coordgap_ledger"
FIXTURE_RUNS = "coordgap_runs"
DEFAULT_RUNS = 100
DEFAULT_CONFIDENCE = 0.95
SESSION_SCHEMA = "coordgap.session/1"
"""Schema tag of the JSON written by --coordgap-report-file."""
_WORKER_KEY = "coordgap_snapshots"
_HTML_SUFFIXES = (".html", ".htm")
_SESSION_PLUGIN = "coordgap-session-report"

MARKER_KEYWORDS = frozenset(
    {"end_to_end", "nodes", "handoffs", "routers", "per", "confidence", "runs", "min_runs"}
)

scope_key = pytest.StashKey["LedgerScope"]()
"""The item's LedgerScope (created at setup for items that use the fixture or the marker)."""


# -- options, marker ---------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("coordgap", "coordgap: compounded reliability of LangGraph agents")
    group.addoption(
        OPTION_REPORT,
        action="store_true",
        default=False,
        help="print a reliability summary of every graph instrumented during the session",
    )
    group.addoption(
        OPTION_REPORT_FILE,
        default=None,
        metavar="PATH",
        help="write the session's reliability reports to PATH (JSON; Markdown for .md; "
        "one HTML page for .html, needs coordgap[html])",
    )
    group.addoption(
        OPTION_SAVE_BASELINE,
        default=None,
        metavar="PATH",
        help="write the session's reports to PATH as the baseline of assert_no_regression(); "
        "every assert_no_regression() then refreshes its own baseline instead of comparing",
    )
    group.addoption(
        OPTION_RUNS,
        type=int,
        default=None,
        metavar="N",
        help=f"runs per reliability test (fixture {FIXTURE_RUNS}; default {DEFAULT_RUNS})",
    )
    group.addoption(
        OPTION_CONFIDENCE,
        type=float,
        default=None,
        metavar="LEVEL",
        help=f"confidence of the reliability marker's intervals (default {DEFAULT_CONFIDENCE})",
    )
    parser.addini(INI_RUNS, f"runs per reliability test (default {DEFAULT_RUNS})", default=None)
    parser.addini(
        INI_CONFIDENCE,
        f"confidence of the reliability marker (default {DEFAULT_CONFIDENCE})",
        default=None,
    )
    try:  # graph coverage options live in their own module
        from . import _coverage_pytest
    except ImportError:  # pragma: no cover
        return
    _coverage_pytest.addoption(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(end_to_end=None, nodes=None, handoffs=None, routers=None, per=None, "
        "confidence=0.95, runs=None, min_runs=None): after the test, every graph it "
        "instrumented must clear these reliability thresholds (lower bound of the interval)",
    )
    opt = config.option
    _check_report_file(opt.coordgap_report_file)
    if (
        opt.coordgap_report
        or opt.coordgap_report_file is not None
        or opt.coordgap_save_baseline is not None
    ) and not config.pluginmanager.has_plugin(_SESSION_PLUGIN):
        config.pluginmanager.register(_SessionReport(config), _SESSION_PLUGIN)
    try:
        from . import _coverage_pytest
    except ImportError:  # pragma: no cover
        return
    _coverage_pytest.configure(config)


def _check_report_file(path: str | None) -> None:
    """Fail at start-up, not after the whole session, when an HTML report cannot be drawn."""
    if path is None or Path(path).suffix.lower() not in _HTML_SUFFIXES:
        return
    from importlib.util import find_spec

    if find_spec("grandalf") is None:
        raise pytest.UsageError(
            f"{OPTION_REPORT_FILE}={path}: the HTML report lays the graph out with grandalf, "
            "which is not installed: pip install 'coordgap[html]'"
        )


def _setting(config: pytest.Config, option: str, ini: str, default: Any, kind: type) -> Any:
    value = getattr(config.option, option, None)
    if value is not None:
        return value
    raw = config.getini(ini)
    if raw not in (None, "", []):
        try:
            return kind(raw)
        except ValueError:
            raise pytest.UsageError(
                f"ini option {ini}={raw!r}: expected a {kind.__name__}"
            ) from None
    return default


def _marker_kwargs(item: pytest.Item) -> dict[str, Any] | None:
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return None
    if marker.args:
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.{MARKER} takes keyword arguments only "
            "(end_to_end=0.9, handoffs=0.97, ...)."
        )
    unknown = set(marker.kwargs) - MARKER_KEYWORDS
    if unknown:
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.{MARKER} got unknown keyword(s) "
            f"{', '.join(sorted(unknown))}; known: {', '.join(sorted(MARKER_KEYWORDS))}."
        )
    return dict(marker.kwargs)


def _needs_scope(item: pytest.Item) -> bool:
    names = getattr(item, "fixturenames", ())
    return FIXTURE_LEDGER in names or item.get_closest_marker(MARKER) is not None


# -- per test: the scope, the marker ---------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if not _needs_scope(item):
        return
    _marker_kwargs(item)  # a malformed marker fails before the test runs
    from .testing import LedgerScope

    item.stash[scope_key] = LedgerScope().start()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    result = yield  # the test body; if it raised, its failure stands
    kwargs = _marker_kwargs(item)
    scope = item.stash.get(scope_key, None)
    if kwargs is None or scope is None:
        return result
    from .testing import assert_reliability

    config = item.config
    runs = kwargs.pop("runs", None)
    if runs is None:
        runs = _setting(config, "coordgap_runs", INI_RUNS, None, int)
    if kwargs.get("min_runs") is None and runs is not None:
        kwargs["min_runs"] = runs
    if kwargs.get("confidence") is None:
        kwargs["confidence"] = _setting(
            config, "coordgap_confidence", INI_CONFIDENCE, DEFAULT_CONFIDENCE, float
        )
    from .errors import ConfigurationError, ReliabilityError

    message = None
    try:
        assert_reliability(scope, **kwargs)
    except ReliabilityError as exc:
        message = f"@pytest.mark.{MARKER}: {exc}"
    except ConfigurationError as exc:
        message = f"@pytest.mark.{MARKER}: ConfigurationError: {exc}"
    if message is not None:
        # the message is the whole story; a traceback into the plugin would only add noise
        pytest.fail(message, pytrace=False)
    return result


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    scope = item.stash.get(scope_key, None)
    if scope is not None:
        scope.stop()


@pytest.fixture
def coordgap_ledger(request: pytest.FixtureRequest) -> LedgerScope:
    """The graphs instrumented during this test and their ledgers (a LedgerScope).

    Every graph has its own ledger; this scope gathers those built during the
    test (fixtures included), so assertions see this test's runs only. A graph
    built elsewhere joins with ``coordgap_ledger.track(app)`` (its ledger is
    zeroed). ``coordgap.report(coordgap_ledger)`` and
    ``coordgap.assert_reliability(coordgap_ledger, ...)`` work on it.
    """
    found: LedgerScope | None = request.node.stash.get(scope_key, None)
    if found is None:  # e.g. requested dynamically with request.getfixturevalue
        from .testing import LedgerScope

        found = request.node.stash[scope_key] = LedgerScope().start()
    return found


@pytest.fixture
def coordgap_runs(request: pytest.FixtureRequest) -> int:
    """How many runs this reliability test should make.

    The ``runs=`` of ``@pytest.mark.reliability``, else ``--coordgap-runs`` or
    the ini option ``coordgap_runs``, else 100.
    """
    kwargs = _marker_kwargs(request.node) or {}
    runs = kwargs.get("runs")
    if runs is None:
        runs = _setting(request.config, "coordgap_runs", INI_RUNS, DEFAULT_RUNS, int)
    return int(runs)


# -- the session summary ------------------------------------------------------------------


class _SessionReport:
    """Gathers every ledger of the session; prints, writes and saves the reports at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.report_file: str | None = config.option.coordgap_report_file
        self.baseline: str | None = config.option.coordgap_save_baseline
        self.worker = hasattr(config, "workerinput")
        self.remote: list[dict[str, Any]] = []
        self.reports: list[Any] | None = None
        self._ledgers: list[Any] = []
        self._remove: Any = None

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        from ._instrument import add_observer

        def seen(app: Any) -> None:
            self._ledgers.append(app.coordgap_state.ledger)

        self._remove = add_observer(seen)
        if self.baseline is not None:
            from .testing import _BaselineMode

            _BaselineMode.saving = True

    def _snapshots(self) -> list[Any]:
        return [ledger.snapshot() for ledger in self._ledgers]

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        data = getattr(node, "workeroutput", {}).get(_WORKER_KEY)
        if data:
            self.remote.extend(json.loads(data))

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self._remove is not None:
            self._remove()
            self._remove = None
        from ._ledger import LedgerSnapshot
        from .testing import _BaselineMode, merge_snapshots, write_baseline

        _BaselineMode.saving = False
        snaps = self._snapshots()
        if self.worker:
            self.config.workeroutput[_WORKER_KEY] = json.dumps(  # type: ignore[attr-defined]
                [s.to_dict() for s in snaps]
            )
            return
        snaps += [LedgerSnapshot.from_dict(d) for d in self.remote]
        by_graph: dict[str, list[Any]] = {}
        for snap in snaps:
            if snap.runs.runs or any(n.executions for n in snap.nodes.values()):
                by_graph.setdefault(snap.graph, []).append(snap)
        from ._report import report

        self.reports = [report(merge_snapshots(group)) for _, group in sorted(by_graph.items())]
        if self.report_file:
            _write_reports(self.report_file, self.reports)
        if self.baseline and self.reports:
            write_baseline(self.baseline, self.reports)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.worker or self.reports is None:
            return
        tr = terminalreporter
        if self.config.option.coordgap_report:
            tr.write_sep("-", "coordgap reliability")
            if not self.reports:
                tr.write_line("no instrumented graph ran during this session")
            for line in _summary_lines(self.reports):
                tr.write_line(line)
        if self.report_file:
            tr.write_line(f"coordgap reports written to {self.report_file}")
        if self.baseline:
            if self.reports:
                tr.write_line(f"coordgap baseline written to {self.baseline}")
            else:
                tr.write_line("coordgap baseline not written: no instrumented graph ran")


def _summary_lines(reports: list[Any]) -> list[str]:
    from .render import fmt, fmt_signed

    def est(e: Any) -> str:
        if e.value is None:
            return "-"
        return f"{fmt(e.value)} [{fmt(e.low)}, {fmt(e.high)}]"

    header = ["graph", "runs", "observed end to end", "predicted", "gap", "weakest"]
    rows = []
    for rep in reports:
        e = rep.end_to_end
        weakest = ", ".join(f"{c.label} ({fmt_signed(c.gain)})" for c in rep.weakest[:2]) or "-"
        gap = fmt(rep.gap)
        pred = fmt(e.predicted.value)
        rows.append([rep.graph, str(e.finished), est(e.observed), pred, gap, weakest])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in [header, *rows]]  # fmt: skip


def _write_reports(path: str, reports: list[Any]) -> None:
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix.lower() in (".md", ".markdown"):
        body = "\n\n".join(rep.to_markdown() for rep in reports) or "No instrumented graph ran."
        p.write_text(body + "\n", encoding="utf-8")
        return
    if p.suffix.lower() in _HTML_SUFFIXES:
        from ._html import render_html_page

        p.write_text(render_html_page(reports, title="coordgap: test session"), encoding="utf-8")
        return
    data = {"schema": SESSION_SCHEMA, "reports": [rep.to_dict() for rep in reports]}
    p.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
