"""Reliability in unit tests: threshold assertions with confidence, baselines, captured events.

Plain functions, usable with or without the pytest plugin::

    import coordgap
    from coordgap.testing import assert_reliability, assert_no_regression, capture_events

    def test_agent_is_reliable_enough():
        app = coordgap.instrument(build_graph())
        for question in QUESTIONS:
            app.invoke({"question": question})
        assert_reliability(app, end_to_end=0.90, handoffs=0.97, confidence=0.95)

A threshold passes only when the *lower bound* of the Wilson interval clears
it, fails when the upper bound is below it, and otherwise fails as
*undecided*, saying about how many more runs would decide it. See
``docs/testing.md``.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from ._ledger import Ledger, LedgerSnapshot
from .errors import ConfigurationError, ReliabilityError
from .events import Event

if TYPE_CHECKING:
    from ._report import Report

__all__ = [
    "LedgerScope",
    "ThresholdCheck",
    "assert_no_regression",
    "assert_reliability",
    "capture_events",
    "merge_snapshots",
]

BASELINES_SCHEMA = "coordgap.baselines/1"
"""Schema tag of a baseline file holding reports of several graphs (one per graph name)."""

Verdict = Literal["pass", "fail", "undecided"]


# -- capturing events and graphs ---------------------------------------------------------------


@contextmanager
def capture_events() -> Iterator[list[Event]]:
    """Yield a list that receives every event of the graphs instrumented inside the block.

    Events arrive in the order they are emitted (from any thread); after the
    block ends, the list stops growing.

    Example::

        with capture_events() as events:
            app = coordgap.instrument(builder)
            app.invoke({"x": 1})
        assert [type(e).__name__ for e in events][-1] == "RunOutcome"
    """
    from ._instrument import add_observer

    events: list[Event] = []
    active = True

    def sink(event: Event) -> None:
        if active:
            events.append(event)  # list.append is atomic: no lock needed between threads

    remove = add_observer(lambda app: (sink,))
    try:
        yield events
    finally:
        remove()
        active = False


class LedgerScope:
    """The graphs instrumented while the scope is open, and their ledgers.

    Every instrumented graph has its own :class:`~coordgap.Ledger`; a scope
    gathers those of the graphs built during one test (the pytest fixture
    ``coordgap_ledger`` is one), so a test can assert on "whatever it
    instrumented" and tests never see each other's counts. A graph
    instrumented elsewhere (a module-level fixture) joins with :meth:`track`,
    which also zeroes its ledger so the test sees only its own runs.

    With exactly one graph, the scope stands for it: ``coordgap.report(scope)``,
    ``scope.snapshot()`` and ``assert_reliability(scope, ...)`` work directly;
    with several, pick one by name (``scope.ledger("research")``).

    Example::

        with LedgerScope() as scope:
            app = coordgap.instrument(builder)
            app.invoke({...})
        scope.snapshot().runs.runs
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._graphs: list[Any] = []
        self._ledgers: list[Ledger] = []
        self._remove: Any = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> LedgerScope:
        """Start gathering graphs instrumented from now on (idempotent)."""
        if self._remove is None:
            from ._instrument import add_observer

            self._remove = add_observer(self._seen)
        return self

    def stop(self) -> None:
        """Stop gathering; the graphs gathered so far stay."""
        if self._remove is not None:
            self._remove()
            self._remove = None

    def __enter__(self) -> LedgerScope:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _seen(self, app: Any) -> None:
        self._add(app, app.coordgap_state.ledger)

    def _add(self, app: Any, ledger: Ledger) -> None:
        with self._lock:
            if all(known is not ledger for known in self._ledgers):
                self._graphs.append(app)
                self._ledgers.append(ledger)

    def track(self, app: Any, *, reset: bool = True) -> Any:
        """Add a graph instrumented outside the scope; zero its ledger unless ``reset=False``.

        Returns ``app``, so ``app = coordgap_ledger.track(shared_app)`` reads well.
        """
        from ._instrument import ledger as ledger_of

        found = ledger_of(app)
        if reset:
            found.reset()
        self._add(app, found)
        return app

    # -- what was gathered --------------------------------------------------------------------

    @property
    def graphs(self) -> tuple[Any, ...]:
        """The instrumented graphs gathered, in the order they were built."""
        with self._lock:
            return tuple(self._graphs)

    @property
    def ledgers(self) -> tuple[Ledger, ...]:
        """Their ledgers, in the same order."""
        with self._lock:
            return tuple(self._ledgers)

    def __len__(self) -> int:
        return len(self.ledgers)

    def ledger(self, graph: str | None = None) -> Ledger:
        """Return the ledger of the only graph, or of the graph named ``graph``.

        Raises:
            ConfigurationError: no graph, several graphs and no name, or no
                graph of that name.
        """
        ledgers = self.ledgers
        if graph is not None:
            named = [led for led in ledgers if led.graph == graph]
            if len(named) == 1:
                return named[0]
            if not named:
                raise ConfigurationError(
                    f"no graph named {graph!r} was instrumented in this scope; "
                    f"the scope has: {', '.join(repr(led.graph) for led in ledgers) or 'none'}."
                )
            raise ConfigurationError(
                f"{len(named)} graphs named {graph!r} were instrumented in this scope; give "
                "them distinct names with coordgap.instrument(..., name=...)."
            )
        if len(ledgers) == 1:
            return ledgers[0]
        if not ledgers:
            raise ConfigurationError(
                "no graph was instrumented in this scope: call coordgap.instrument(...) inside "
                "the test (or its fixtures), or add one with scope.track(app)."
            )
        raise ConfigurationError(
            f"{len(ledgers)} graphs were instrumented in this scope "
            f"({', '.join(repr(led.graph) for led in ledgers)}); name the one you mean."
        )

    @property
    def coordgap_ledger(self) -> Ledger:
        """The only graph's ledger (lets ``coordgap.report(scope)`` work)."""
        return self.ledger()

    def snapshot(self, graph: str | None = None) -> LedgerSnapshot:
        """Return the snapshot of the only graph's ledger (or the one named ``graph``)."""
        return self.ledger(graph).snapshot()

    def report(self, graph: str | None = None, *, confidence: float = 0.95) -> Report:
        """Return the report of the only graph (or the one named ``graph``)."""
        from ._report import report

        return report(self.ledger(graph), confidence=confidence)

    def reset(self) -> None:
        """Zero every gathered ledger."""
        for led in self.ledgers:
            led.reset()

    def __repr__(self) -> str:
        names = ", ".join(repr(led.graph) for led in self.ledgers)
        return f"<coordgap LedgerScope graphs=[{names}]>"


def merge_snapshots(snapshots: Sequence[LedgerSnapshot]) -> LedgerSnapshot:
    """Return one snapshot whose counts are the sums of several (same graph, e.g. per test).

    The graph name and topology are taken from the first snapshot.

    Example::

        total = merge_snapshots([ledger_a.snapshot(), ledger_b.snapshot()])
    """
    if not snapshots:
        raise ConfigurationError("merge_snapshots() needs at least one snapshot.")
    first = snapshots[0]
    if len(snapshots) == 1:
        return first

    def add(a: Any, b: Any) -> Any:
        values = {}
        for name in type(a).__slots__:
            x, y = getattr(a, name), getattr(b, name)
            if isinstance(x, Mapping):
                merged = dict(x)
                for k, v in y.items():
                    merged[k] = merged.get(k, 0) + v
                values[name] = MappingProxyType(merged)
            elif isinstance(x, (int, float)) and not isinstance(x, bool):
                values[name] = x + y
            else:
                values[name] = x
        return type(a)(**values)

    def combine(maps: Sequence[Mapping[Any, Any]]) -> Mapping[Any, Any]:
        out: dict[Any, Any] = {}
        for m in maps:
            for key, stats in m.items():
                out[key] = stats if key not in out else add(out[key], stats)
        return MappingProxyType(out)

    runs = first.runs
    for snap in snapshots[1:]:
        runs = add(runs, snap.runs)
    return LedgerSnapshot(
        graph=first.graph,
        nodes=combine([s.nodes for s in snapshots]),
        handoffs=combine([s.handoffs for s in snapshots]),
        routers=combine([s.routers for s in snapshots]),
        runs=runs,
        topology=first.topology,
        internal_errors=sum(s.internal_errors for s in snapshots),
    )


# -- thresholds ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ThresholdCheck:
    """One threshold checked against one component (or the end to end) of one graph.

    ``verdict`` is ``pass`` (lower bound >= threshold), ``fail`` (upper bound
    < threshold) or ``undecided``; ``more_runs`` estimates how many more runs
    would decide an undecided one (None when more runs cannot help).
    """

    graph: str
    kind: str
    component: str
    threshold: float
    successes: int
    n: int
    low: float
    high: float
    confidence: float
    verdict: Verdict
    more_runs: int | None = None

    @property
    def value(self) -> float | None:
        """The observed reliability (None without data)."""
        return self.successes / self.n if self.n else None

    @property
    def passed(self) -> bool:
        """True when the threshold is cleared at the stated confidence."""
        return self.verdict == "pass"

    def explain(self) -> str:
        """Return one line saying what was measured and why it did not pass."""
        pct = _pct(self.confidence)
        what = f"{self.kind} {self.component}"
        if self.n == 0:
            return f"{what}: no executions recorded (threshold {self.threshold:g})"
        from .render import fmt

        figures = (
            f"{fmt(self.value)} [{fmt(self.low)}, {fmt(self.high)}] ({self.successes}/{self.n})"
        )
        if self.verdict == "pass":
            return f"{what}: {figures}, lower bound {fmt(self.low)} >= {self.threshold:g}"
        if self.verdict == "fail":
            return (
                f"{what}: {figures} is below {self.threshold:g} at {pct} "
                f"(upper bound {fmt(self.high)} < {self.threshold:g})"
            )
        if self.more_runs is None:
            return (
                f"{what}: {figures} cannot be told apart from {self.threshold:g}: the observed "
                "rate equals the threshold"
            )
        return (
            f"{what}: {figures} straddles {self.threshold:g}: need about "
            f"{_more_runs(self.more_runs)} to decide at {pct}"
        )


def _more_runs(n: int) -> str:
    return "1 more run" if n == 1 else f"{n} more runs"


def _pct(confidence: float) -> str:
    return f"{100 * confidence:g} %"


def _wilson_float(p: float, n: float, z: float) -> tuple[float, float]:
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(max(0.0, p * (1.0 - p) / n + z2n / (4.0 * n)))
    return centre - half, centre + half


def _more_needed(successes: int, n: int, threshold: float, z: float) -> int | None:
    """Return how many more observations, at the observed rate, would decide the threshold."""
    if n <= 0:
        return None
    p = successes / n
    if p == threshold:
        return None
    above = p > threshold

    def decided(m: float) -> bool:
        low, high = _wilson_float(p, m, z)
        return low >= threshold if above else high < threshold

    hi = float(max(n, 1))
    while not decided(hi):
        hi *= 2.0
        if hi > 1e12:
            return None
    lo = float(n)
    while hi - lo > 1.0:
        mid = math.floor((lo + hi) / 2.0)
        if decided(mid):
            hi = mid
        else:
            lo = mid
    return max(1, math.ceil(hi) - n)


def _threshold(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigurationError(f"{what}={value!r}: a threshold is a number in [0, 1].")
    if not 0.0 <= float(value) <= 1.0:
        raise ConfigurationError(
            f"{what}={value!r}: a reliability threshold is a probability in [0, 1] (0.9 for 90 %)."
        )
    return float(value)


def _reports_of(source: Any, confidence: float) -> list[Report]:
    from ._report import Report, report

    if isinstance(source, Report):
        return [source]
    if isinstance(source, LedgerScope):
        ledgers = source.ledgers
        if not ledgers:
            source.ledger()  # raises the "no graph" message
        return [report(led, confidence=confidence) for led in ledgers]
    return [report(source, confidence=confidence)]


def _check(
    graph: str,
    kind: str,
    name: str,
    successes: int,
    n: int,
    threshold: float,
    confidence: float,
    z: float,
    per_run: float,
) -> ThresholdCheck:
    from ._report import wilson_interval

    low, high = wilson_interval(successes, n, confidence)
    more = None
    if low >= threshold and n > 0:
        verdict: Verdict = "pass"
    elif high < threshold:
        verdict = "fail"
    else:
        verdict = "undecided"
        extra = _more_needed(successes, n, threshold, z)
        if extra is not None:
            more = max(1, math.ceil(extra / per_run)) if per_run > 0 else extra
    return ThresholdCheck(
        graph, kind, name, threshold, successes, n, low, high, confidence, verdict, more
    )


def _checks_for(
    rep: Report,
    *,
    end_to_end: float | None,
    nodes: float | None,
    handoffs: float | None,
    routers: float | None,
    per: Mapping[Any, float],
    confidence: float,
) -> list[ThresholdCheck]:
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    e2e = rep.end_to_end
    runs = e2e.finished or e2e.runs
    out: list[ThresholdCheck] = []
    if end_to_end is not None:
        out.append(
            _check(rep.graph, "end to end", "observed", e2e.clean, e2e.finished,
                   end_to_end, confidence, z, 1.0)
        )  # fmt: skip
    from .topology import handoff_pair

    named: dict[tuple[str, Any], float] = {}
    for key, value in per.items():
        pair = handoff_pair(key, stacklevel=5) if isinstance(key, str) else None
        if pair is not None:
            key = pair  # "source -> target", the name the report prints
        if isinstance(key, tuple):
            if key not in rep.handoffs:
                _unknown(key, [f"{s} -> {t}" for s, t in rep.handoffs], "handoff", rep.graph)
            named[("handoff", key)] = value
        elif key in rep.nodes:
            named[("node", key)] = value
        elif key in rep.routers:
            named[("router", key)] = value
        else:
            _unknown(key, [*rep.nodes, *rep.routers], "node or router", rep.graph)
    for kind, table, default in (
        ("node", rep.nodes, nodes),
        ("handoff", rep.handoffs, handoffs),
        ("router", rep.routers, routers),
    ):
        for key, comp in table.items():
            threshold = named.get((kind, key), default)
            if threshold is None:
                continue
            if comp.executions <= 0 and (kind, key) not in named:
                continue  # never reached in these runs: nothing to judge
            per_run = comp.executions / runs if runs else 0.0
            out.append(
                _check(rep.graph, kind, comp.label, comp.executions - comp.failures,
                       comp.executions, threshold, confidence, z, per_run)
            )  # fmt: skip
    return out


def _unknown(key: Any, known: Sequence[str], what: str, graph: str) -> None:
    import difflib

    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigurationError(
        f"per={{{key!r}: ...}}: graph {graph!r} has no {what} {key!r}.{hint} "
        "Name nodes and routers with a string, handoffs 'source -> target' or (source, target)."
    )


def _table(checks: Sequence[ThresholdCheck]) -> list[str]:
    from .render import fmt

    pct = _pct(checks[0].confidence) if checks else "95 %"
    header = ["", "kind", "component", "n", "failed", "reliability", f"{pct} interval",
              "threshold", "verdict"]  # fmt: skip
    rows = []
    for c in checks:
        mark = "" if c.passed else ">>"
        value = fmt(c.value)
        verdict = {"pass": "ok", "fail": "FAIL", "undecided": "UNDECIDED"}[c.verdict]
        if c.verdict == "undecided" and c.more_runs is not None:
            verdict += f" (+{c.more_runs} runs)"
        rows.append([mark, c.kind, c.component, str(c.n), str(c.n - c.successes), value,
                     f"[{fmt(c.low)}, {fmt(c.high)}]", f">= {c.threshold:g}", verdict])  # fmt: skip
    right = {3, 4, 5}
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [
            r[i].rjust(widths[i]) if i in right else r[i].ljust(widths[i])
            for i in range(len(header))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def _failure_message(
    checks: Sequence[ThresholdCheck],
    reports: Sequence[Report],
    confidence: float,
    problems: Sequence[str],
) -> str:
    failed = [c for c in checks if c.verdict == "fail"]
    undecided = [c for c in checks if c.verdict == "undecided"]
    pct = _pct(confidence)
    graphs = ", ".join(repr(r.graph) for r in reports)
    runs = ", ".join(str(r.end_to_end.finished) for r in reports)
    if failed:
        head = f"coordgap: reliability below threshold at {pct} confidence (graph {graphs})"
    elif problems:
        head = f"coordgap: not enough runs to decide at {pct} (graph {graphs})"
    else:
        need = max((c.more_runs or 0) for c in undecided)
        head = (
            f"coordgap: not enough runs to decide at {pct} (graph {graphs}, {runs} finished "
            f"runs): need about {_more_runs(need)} to decide at {pct}"
            if need
            else f"coordgap: cannot decide at {pct} (graph {graphs})"
        )
    lines = [head, ""]
    lines += [f"  {p}" for p in problems]
    if problems:
        lines.append("")
    if checks:
        lines += _table(checks)
        lines.append("")
    lines += [f"failed: {c.explain()}" for c in failed]
    lines += [f"undecided: {c.explain()}" for c in undecided]
    lines += _where_it_goes(checks, reports)
    return "\n".join(lines).rstrip()


def _weakest_of(
    checks: Sequence[ThresholdCheck], reports: Sequence[Report]
) -> list[tuple[str, float]]:
    """The components that cost the most, for graphs whose end-to-end gate did not pass."""
    missed = {c.graph for c in checks if c.kind == "end to end" and not c.passed}
    out: list[tuple[str, float]] = []
    for rep in reports:
        if rep.graph in missed:
            prefix = f"{rep.graph}: " if len(reports) > 1 else ""
            out += [(prefix + c.label, c.gain) for c in rep.weakest[:3]]
    return out


def _where_it_goes(checks: Sequence[ThresholdCheck], reports: Sequence[Report]) -> list[str]:
    """Lines saying where an end to end that missed its gate is lost."""
    from .render import fmt_signed

    missed = {c.graph for c in checks if c.kind == "end to end" and not c.passed}
    lines: list[str] = []
    for rep in reports:
        if rep.graph not in missed:
            continue
        name = f" of {rep.graph!r}" if len(reports) > 1 else ""
        if rep.weakest:
            links = ", ".join(f"{c.label} ({fmt_signed(c.gain)})" for c in rep.weakest[:3])
            lines.append(f"where the end to end{name} is lost (predicted gain if perfect): {links}")
        lines += [f"finding: {f}" for f in rep.findings]
    return ["", *lines] if lines else []


def assert_reliability(
    source: Any,
    *,
    end_to_end: float | None = None,
    nodes: float | None = None,
    handoffs: float | None = None,
    routers: float | None = None,
    per: Mapping[str | tuple[str, str], float] | None = None,
    confidence: float = 0.95,
    min_runs: int | None = None,
) -> tuple[ThresholdCheck, ...]:
    """Return the checks made; raise ReliabilityError unless every threshold is cleared.

    A threshold is cleared when the lower bound of the reliability's Wilson
    interval at ``confidence`` is at or above it. When the upper bound is
    below it, the component fails; in between, the check is *undecided* and
    fails too, saying about how many more runs (at the observed rate) would
    decide it.

    Args:
        source: an instrumented graph, a Ledger, a LedgerSnapshot, a Report,
            or a :class:`LedgerScope` (every graph in it is checked).
        end_to_end: threshold on observed end to end reliability (clean runs
            / finished runs).
        nodes: threshold for every node that ran.
        handoffs: threshold for every handoff that happened.
        routers: threshold for every router that decided.
        per: thresholds for single components, overriding the above: a node
            or router by name, a handoff by ``"source -> target"`` (the name the
            report prints) or ``(source, target)``.
        confidence: the level of every interval (0.95: 95 %).
        min_runs: fail unless at least this many runs finished.

    Raises:
        ReliabilityError: a threshold is not cleared (its message is the table
            of checked components, the offending ones marked ``>>``, and, when the
            end to end missed, the weakest links with their gains); its ``checks``
            attribute holds every :class:`ThresholdCheck`, ``weakest`` the
            ``(component, gain)`` pairs.
        ConfigurationError: a threshold outside [0, 1], a bad confidence, or
            an unknown component in ``per``.

    Example::

        coordgap.assert_reliability(app, end_to_end=0.90, handoffs=0.97, confidence=0.95)
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not ours
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, (int, float))
        or not (0.0 < confidence < 1.0)
    ):
        raise ConfigurationError(
            f"confidence={confidence!r}: use a level strictly between 0 and 1, e.g. 0.95."
        )
    thresholds = {
        "end_to_end": _threshold(end_to_end, "end_to_end"),
        "nodes": _threshold(nodes, "nodes"),
        "handoffs": _threshold(handoffs, "handoffs"),
        "routers": _threshold(routers, "routers"),
    }
    per_checked: dict[Any, float] = {}
    for key, value in (per or {}).items():
        checked = _threshold(value, f"per[{key!r}]")
        if checked is None:
            raise ConfigurationError(f"per[{key!r}]=None: give the component a threshold.")
        per_checked[key] = checked
    if min_runs is not None and (
        isinstance(min_runs, bool) or not isinstance(min_runs, int) or min_runs < 0
    ):
        raise ConfigurationError(f"min_runs={min_runs!r}: pass a non-negative int.")
    if all(v is None for v in thresholds.values()) and not per_checked and min_runs is None:
        raise ConfigurationError(
            "assert_reliability() was given no threshold: pass end_to_end=, nodes=, "
            "handoffs=, routers=, per= or min_runs=."
        )

    reports = _reports_of(source, confidence)
    checks: list[ThresholdCheck] = []
    problems: list[str] = []
    for rep in reports:
        if rep.basis != "ledger":
            raise ConfigurationError(
                f"the report of {rep.graph!r} is an audit (assumed reliabilities, no counts); "
                "assert_reliability() needs measured runs."
            )
        finished = rep.end_to_end.finished
        if min_runs is not None and finished < min_runs:
            problems.append(
                f"graph {rep.graph!r}: only {finished} finished runs, min_runs={min_runs} asks "
                f"for at least {min_runs} (need {min_runs - finished} more runs)"
            )
        elif finished == 0:
            problems.append(
                f"graph {rep.graph!r}: no finished runs recorded, nothing to decide on "
                "(was the graph invoked after coordgap.instrument()?)"
            )
        checks += _checks_for(
            rep,
            end_to_end=thresholds["end_to_end"],
            nodes=thresholds["nodes"],
            handoffs=thresholds["handoffs"],
            routers=thresholds["routers"],
            per=per_checked,
            confidence=confidence,
        )
    if problems or any(not c.passed for c in checks):
        raise ReliabilityError(
            _failure_message(checks, reports, confidence, problems),
            checks=checks,
            problems=problems,
            weakest=_weakest_of(checks, reports),
        )
    return tuple(checks)


# -- baselines -----------------------------------------------------------------------------------


class _BaselineMode:
    """Set by the pytest plugin under ``--coordgap-save-baseline``: record instead of compare."""

    saving = False


def load_baseline(path: str | os.PathLike[str], graph: str | None = None) -> Report:
    """Return the report saved at ``path`` (for ``graph`` when the file holds several).

    Raises:
        ConfigurationError: the file is missing, is not a coordgap report, or
            holds no report for ``graph``.
    """
    from ._report import Report

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(
            f"no baseline at {str(p)!r}: write one with `pytest --coordgap-save-baseline "
            f"{p}` (or save coordgap.report(app).to_json() there)."
        ) from None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("schema") == BASELINES_SCHEMA:
        reports = data.get("reports") or {}
        if graph is None and len(reports) == 1:
            graph = next(iter(reports))
        if graph not in reports:
            raise ConfigurationError(
                f"baseline {str(p)!r} holds reports for {', '.join(map(repr, reports))}, "
                f"none for graph {graph!r}."
            )
        return Report.from_json(json.dumps(reports[graph]))
    return Report.from_json(text)


def write_baseline(path: str | os.PathLike[str], reports: Sequence[Report]) -> None:
    """Write reports as a baseline: one report as is, several keyed by graph name."""
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    if len(reports) == 1:
        p.write_text(reports[0].to_json() + "\n", encoding="utf-8")
        return
    data = {"schema": BASELINES_SCHEMA, "reports": {r.graph: r.to_dict() for r in reports}}
    p.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def assert_no_regression(
    source: Any,
    baseline: str | os.PathLike[str] | Report,
    *,
    confidence: float | None = None,
) -> Any:
    """Return the comparison with a saved report; raise ReliabilityError on a significant drop.

    A drop is significant when the interval of the difference (Newcombe's
    method, at the baseline's confidence unless ``confidence`` is given) lies
    entirely below zero, for any component or for the observed end to end.
    Under ``pytest --coordgap-save-baseline PATH`` nothing is compared: the
    current report is written to ``baseline`` instead (to refresh it).

    Example::

        coordgap.assert_no_regression(app, baseline="tests/reliability-baseline.json")
    """
    __tracebackhide__ = True
    from ._report import Report, report
    from .render import fmt

    if isinstance(source, Report):
        current_graph = source.graph
    elif isinstance(source, LedgerScope):
        current_graph = source.ledger().graph
    else:
        current_graph = None
    if _BaselineMode.saving and not isinstance(baseline, Report):
        rep = (
            source
            if isinstance(source, Report)
            else report(
                source.ledger() if isinstance(source, LedgerScope) else source,
                confidence=confidence or 0.95,
            )
        )
        write_baseline(baseline, [rep])
        return None
    if isinstance(baseline, Report):
        base = baseline
    else:
        if current_graph is None:
            current_graph = report(source).graph
        base = load_baseline(baseline, current_graph)
    level = confidence if confidence is not None else base.confidence
    if isinstance(source, Report):
        current = source
    else:
        target = source.ledger() if isinstance(source, LedgerScope) else source
        current = report(target, confidence=level)
    cmp = current.compare(base)
    if cmp.regressed:
        lines = [
            f"coordgap: reliability regressed against the baseline ({len(cmp.regressions)} "
            f"significant drop(s) at {_pct(level)}; graph {current.graph!r})",
            "",
            str(cmp),
            "",
        ]
        for c in cmp.regressions:
            diff = (
                ""
                if c.difference is None
                else (f", difference [{c.difference[0]:+.3f}, {c.difference[1]:+.3f}] below 0")
            )
            old, new = fmt(c.old.value), fmt(c.new.value)
            lines.append(f"regressed: {c.kind} {c.name}: {old} -> {new}{diff}")
        raise ReliabilityError("\n".join(lines).rstrip(), comparison=cmp)
    return cmp
