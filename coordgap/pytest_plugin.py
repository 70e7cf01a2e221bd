"""coordgap's pytest plugin (registered through the pytest11 entry point).

What it adds (see ``docs/testing.md``):

- fixture ``coordgap_ledger``: a :class:`coordgap.testing.LedgerScope` holding
  every graph instrumented during the test (setup included), so assertions see
  this test's runs only; ``coordgap_ledger.track(app)`` adopts a graph built
  elsewhere and zeroes its ledger;
- fixture ``coordgap_runs``: how many runs the test should make (the marker's
  ``runs=``, else ``--coordgap-runs`` / ini ``coordgap_runs``, else 100);
- fixture ``coordgap_otel``: in-memory span and metric providers with ids that
  count up and coordgap on a stepping clock for the test
  (:func:`coordgap.testing.capture_telemetry`), to assert exact spans;
- fixture ``coordgap_baselines``: ``assert_no_regression`` in the session's mode
  (:class:`coordgap.testing.Baselines`): it compares, or under
  ``--coordgap-save-baseline`` refreshes each baseline file instead;
- marker ``@pytest.mark.reliability(end_to_end=..., nodes=..., handoffs=...,
  routers=..., per=..., confidence=..., runs=..., min_runs=...)``: after the
  test body, every graph it instrumented must clear the thresholds (the
  marker's keywords override ``--coordgap-confidence`` and ``--coordgap-runs``);
- ``--coordgap-report``: a reliability summary per graph at the end of the
  session; ``--coordgap-report-file PATH`` writes the reports as JSON (or
  Markdown for ``.md``, one HTML page for ``.html``: ``docs/html-report.md``);
  ``--coordgap-save-baseline PATH`` writes them as the
  baseline for ``assert_no_regression``, makes ``coordgap_baselines`` refresh its
  files instead of comparing, and says so at the top and the end of the session.

Thin and lazy: this module imports nothing from coordgap at import time; the
testing helpers are imported when a test uses a fixture or the marker, or an
option asks for a report. Per-test state lives in ``pytest.StashKey``\\ s.
Under pytest-xdist each worker gathers its own graphs; the session summary
merges the workers' counts on the controller. ``-p no:coordgap`` turns all of
it off (the plain assertion helpers keep working).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._ledger import Ledger
    from ._report import Report
    from .testing import Baselines, LedgerScope, TelemetryCapture

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
FIXTURE_BASELINES = "coordgap_baselines"
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

baselines_key = pytest.StashKey["Baselines"]()
"""The session's Baselines (config stash), created when a test first asks for the fixture."""


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
        f"the fixture {FIXTURE_BASELINES} then refreshes its baselines instead of comparing",
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
    from . import _coverage_pytest  # graph coverage options live in their own module

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
    from . import _coverage_pytest

    _coverage_pytest.configure(config)


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.option.coordgap_save_baseline is None:
        return None
    return (
        f"coordgap: SAVING BASELINES to {config.option.coordgap_save_baseline} "
        f"({OPTION_SAVE_BASELINE}): {FIXTURE_BASELINES} writes its baselines, compares nothing"
    )


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


@pytest.fixture
def coordgap_otel() -> Iterator[TelemetryCapture]:
    """In-memory span and metric providers, ids counting up, coordgap on a stepping clock.

    A :class:`coordgap.testing.TelemetryCapture`, fresh for each test: pass
    ``coordgap_otel.tracer_provider`` and ``coordgap_otel.meter_provider`` to
    ``coordgap.instrument``, then assert ``coordgap_otel.spans()`` (span and trace
    ids 1, 2, 3, ...; every time coordgap records is a reading of ``coordgap_otel.clock``,
    1 s, 2 s, 3 s, ... in nanoseconds) and ``coordgap_otel.metrics()``.
    """
    from .testing import capture_telemetry

    with capture_telemetry() as capture:
        yield capture


@pytest.fixture
def coordgap_baselines(request: pytest.FixtureRequest) -> Baselines:
    """``assert_no_regression`` in the session's explicit mode (a coordgap.testing.Baselines).

    ``coordgap_baselines.check(app, "baseline.json")`` compares with the saved report,
    or, under ``--coordgap-save-baseline``, writes the current one there instead (the
    session summary lists every file written).
    """
    config = request.config
    found = config.stash.get(baselines_key, None)
    if found is None:
        from .testing import Baselines

        found = config.stash[baselines_key] = Baselines(
            update=config.option.coordgap_save_baseline is not None
        )
    return found


# -- the session summary ------------------------------------------------------------------


class _SessionReport:
    """Gathers every ledger of the session; prints, writes and saves the reports at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.report_file: str | None = config.option.coordgap_report_file
        self.baseline: str | None = config.option.coordgap_save_baseline
        self.worker = hasattr(config, "workerinput")
        self.remote: list[dict[str, Any]] = []
        self.remote_written: list[str] = []
        self.reports: list[Report] | None = None
        self._ledgers: list[Ledger] = []
        self._remove: Any = None

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        from ._instrument import InstrumentedGraph, add_observer

        def seen(app: InstrumentedGraph) -> None:
            if app.coordgap_ledger is not None:
                self._ledgers.append(app.coordgap_ledger)

        self._remove = add_observer(seen)

    def _written(self) -> list[str]:
        """The baseline files coordgap_baselines wrote, here and on the workers."""
        baselines = self.config.stash.get(baselines_key, None)
        local = list(baselines.written) if baselines is not None else []
        return list(dict.fromkeys([*local, *self.remote_written]))

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        data = getattr(node, "workeroutput", {}).get(_WORKER_KEY)
        if data:
            sent = json.loads(data)
            self.remote.extend(sent["snapshots"])
            self.remote_written.extend(sent["baselines"])

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self._remove is not None:
            self._remove()
            self._remove = None
        from ._ledger import LedgerSnapshot, merge_snapshots

        snaps = [ledger.snapshot() for ledger in self._ledgers]
        if self.worker:
            self.config.workeroutput[_WORKER_KEY] = json.dumps(  # type: ignore[attr-defined]
                {"snapshots": [s.to_dict() for s in snaps], "baselines": self._written()}
            )
            return
        snaps += [LedgerSnapshot.from_dict(d) for d in self.remote]
        by_graph: dict[str, list[LedgerSnapshot]] = {}
        for snap in snaps:
            if snap.runs.runs or any(n.executions for n in snap.nodes.values()):
                by_graph.setdefault(snap.graph, []).append(snap)
        from ._report import report

        self.reports = [report(merge_snapshots(group)) for _, group in sorted(by_graph.items())]
        if self.report_file:
            _write_reports(self.report_file, self.reports)
        if self.baseline and self.reports:
            from .testing import write_baseline

            write_baseline(self.baseline, self.reports)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
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
            # loud: a session that saves baselines checked no regression at all
            tr.write_sep(
                "=",
                f"coordgap: baselines SAVED ({OPTION_SAVE_BASELINE}), no regression checked",
                yellow=True,
                bold=True,
            )
            if self.reports:
                graphs = ", ".join(repr(rep.graph) for rep in self.reports)
                tr.write_line(f"coordgap baseline written to {self.baseline} (graphs {graphs})")
            else:
                tr.write_line("coordgap baseline not written: no instrumented graph ran")
            for path in self._written():
                tr.write_line(f"coordgap baseline refreshed by {FIXTURE_BASELINES}: {path}")


def _summary_lines(reports: Sequence[Report]) -> list[str]:
    from ._stats import Estimate
    from .render import fmt, fmt_signed, text_table

    def est(e: Estimate) -> str:
        if e.value is None:
            return "-"
        return f"{fmt(e.value)} [{fmt(e.low)}, {fmt(e.high)}]"

    header = ["graph", "runs", "observed end to end", "predicted", "gap", "weakest"]
    rows = []
    for rep in reports:
        e = rep.end_to_end
        weakest = ", ".join(f"{c.label} ({fmt_signed(c.gain)})" for c in rep.weakest[:2]) or "-"
        rows.append(
            [rep.graph, str(e.finished), est(e.observed), fmt(e.predicted.value), fmt(rep.gap),
             weakest]
        )  # fmt: skip
    return text_table(header, rows, [False, True, False, True, True, False])


def _write_reports(path: str, reports: Sequence[Report]) -> None:
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
