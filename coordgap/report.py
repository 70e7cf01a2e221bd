"""The compounded-reliability report: pure math over a ledger snapshot.

A report answers, for one graph: how reliable is each node, handoff and router
(with a confidence interval); what end to end reliability do those components
predict when composed over the graph (``Π r_c^v_c``); what was observed (clean
runs / finished runs); how much of the loss comes from coordination (the gap
between the nodes-only product and the full product); and which component
would buy the most if it were perfect. See ``docs/report.md`` for the
derivations.

This module does no I/O and imports neither LangGraph nor OpenTelemetry, so it
can be tested on hand-built snapshots::

    ledger = Ledger("demo")
    ...  # ledger.record(NodeOutcome(...)), ...
    rep = report(ledger)
    rep.end_to_end.observed.value, rep.end_to_end.predicted.value, rep.gap
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from statistics import NormalDist
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

from .errors import ConfigurationError
from .ledger import Ledger, LedgerSnapshot
from .semconv import ERROR_UNDELIVERED, START, UNKNOWN_TARGET

__all__ = [
    "Change",
    "Comparison",
    "ComponentReport",
    "EndToEnd",
    "Estimate",
    "Report",
    "report",
    "wilson_interval",
]

ComponentKind: TypeAlias = Literal["node", "handoff", "router"]
Basis: TypeAlias = Literal["ledger", "audit"]
VisitsMethod: TypeAlias = Literal["flow", "raw", "given"]

SCHEMA: str = "coordgap.report/1"
"""Version tag of the JSON form; bumped on any incompatible change."""

_EMPTY: Mapping[str, int] = MappingProxyType({})
_KIND_ORDER = {"node": 0, "handoff": 1, "router": 2}


# -- intervals ------------------------------------------------------------------------


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ConfigurationError(
            f"confidence must be between 0 and 1 (got {confidence!r}); use e.g. 0.95"
        )
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Return the Wilson score interval for a binomial proportion.

    Wilson keeps its stated coverage near 0 and 1, where reliabilities live and
    where the textbook (Wald) interval collapses to a point.

    Example::

        >>> low, high = wilson_interval(97, 100)
        >>> round(low, 3), round(high, 3)
        (0.915, 0.99)
    """
    if n <= 0:
        return (0.0, 1.0)
    z = _z(confidence)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n))
    # Exact bounds at the edges: floating error must not put 1.0 outside [low, high].
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def _newcombe(
    s_old: int, n_old: int, s_new: int, n_new: int, confidence: float
) -> tuple[float, float]:
    """Interval for p_new - p_old (Newcombe's hybrid score method, from two Wilsons)."""
    p1, p2 = s_old / n_old, s_new / n_new
    l1, u1 = wilson_interval(s_old, n_old, confidence)
    l2, u2 = wilson_interval(s_new, n_new, confidence)
    d = p2 - p1
    return (d - math.hypot(p2 - l2, u1 - p1), d + math.hypot(u2 - p2, p1 - l1))


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate with its interval.

    ``value`` is None when there is no data. ``method`` says how the interval
    was made: ``wilson`` (a proportion), ``delta-log`` (a product of
    proportions, delta method on its logarithm), ``given`` (an audit input, no
    uncertainty) or ``none``.
    """

    value: float | None
    low: float
    high: float
    method: str = "wilson"

    def __float__(self) -> float:
        if self.value is None:
            return math.nan
        return self.value

    def contains(self, x: float) -> bool:
        """Return True when ``x`` lies in the interval (bounds included)."""
        return self.low <= x <= self.high

    @classmethod
    def proportion(cls, successes: int, n: int, confidence: float) -> Estimate:
        """Return successes / n with its Wilson interval (value None when n is 0)."""
        low, high = wilson_interval(successes, n, confidence)
        return cls(None if n <= 0 else successes / n, low, high, "wilson")


_NO_DATA = Estimate(None, 0.0, 1.0, "none")


# -- the report's values --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ComponentReport:
    """One node, handoff or router: its counts, its reliability and its weight.

    ``executions`` are node executions (after retries), handoff transfers or
    router decisions. ``visits`` is the mean number of executions per run used
    as the exponent in the predicted product. ``in_product`` is False for
    subgraph containers (their inner nodes already count) and for components
    with no data. ``if_perfect`` is the predicted end to end if this component
    never failed, ``gain`` how much that adds. ``gap_share`` (handoffs and
    routers) is the part of the coordination gap this component explains.

    A handoff whose target is ``__unknown__`` (an invalid route) is reported as
    "routes out of ``source`` that named a real node": ``executions`` are all
    transfers out of the source, ``failures`` the invalid ones not already
    counted as failures of a router on the same source.
    """

    kind: ComponentKind
    name: str
    executions: int
    failures: int
    reliability: Estimate
    visits: float
    in_product: bool
    source: str | None = None
    target: str | None = None
    first_attempt: Estimate | None = None
    attempts: int = 0
    attempt_failures: int = 0
    contract_failures: int = 0
    faults: int = 0
    error_types: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    kinds: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    targets: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    gap_share: float | None = None
    if_perfect: float | None = None
    gain: float = 0.0

    @property
    def key(self) -> str | tuple[str, str]:
        """The key of this component in ``Report.nodes`` / ``handoffs`` / ``routers``."""
        if self.kind == "handoff":
            return (self.source or "", self.target or "")
        return self.name

    @property
    def label(self) -> str:
        """A short display name: ``analyze``, ``retrieve -> analyze``, ``router route``."""
        if self.kind == "handoff":
            target = "?" if self.target == UNKNOWN_TARGET else self.target
            return f"{self.source} -> {target}"
        return self.name

    @property
    def retried(self) -> bool:
        """True when some execution needed more than one attempt."""
        return self.attempts > self.executions


@dataclass(frozen=True, slots=True)
class EndToEnd:
    """End to end reliability: observed, predicted, nodes-only, and run-level errors.

    ``observed`` is clean runs / finished runs (a run is clean when it finished
    ok and no component failed). ``run_errors`` is runs that raised / finished
    runs. ``predicted`` is ``Π r_c^v_c`` over every component, ``naive`` the
    same over nodes only.
    """

    observed: Estimate
    predicted: Estimate
    naive: Estimate
    run_errors: Estimate
    runs: int = 0
    finished: int = 0
    clean: int = 0
    ok: int = 0
    error: int = 0
    interrupted: int = 0


@dataclass(frozen=True)
class Report:
    """The compounded-reliability report of one graph.

    Build one with :func:`report` (from a live graph, a ledger or a snapshot),
    :func:`coordgap.audit` (from the topology and assumed reliabilities) or
    :meth:`from_json`.

    Example::

        rep = coordgap.report(app)
        print(rep)
        rep.end_to_end.observed.value, rep.end_to_end.predicted.low
        rep.nodes["analyze"].reliability.value
        rep.handoffs[("retrieve", "analyze")].failures
        rep.weakest[0].label, rep.weakest[0].gain
    """

    graph: str
    basis: Basis
    confidence: float
    nodes: Mapping[str, ComponentReport]
    handoffs: Mapping[tuple[str, str], ComponentReport]
    routers: Mapping[str, ComponentReport]
    end_to_end: EndToEnd
    weakest: tuple[ComponentReport, ...] = ()
    visits_method: VisitsMethod = "flow"
    notes: tuple[str, ...] = ()
    internal_errors: int = 0
    snapshot: LedgerSnapshot | None = field(default=None, repr=False, compare=False)
    """The ledger snapshot this report was computed from (None for audits and JSON)."""

    @property
    def naive(self) -> float | None:
        """Product over nodes only (what a per-step dashboard would suggest)."""
        return self.end_to_end.naive.value

    @property
    def predicted(self) -> float | None:
        """Product over every component, weighted by visits per run."""
        return self.end_to_end.predicted.value

    @property
    def gap(self) -> float | None:
        """The coordination gap: naive - predicted (what handoffs and routers cost)."""
        naive, predicted = self.naive, self.predicted
        if naive is None or predicted is None:
            return None
        return naive - predicted

    @property
    def components(self) -> tuple[ComponentReport, ...]:
        """Every component: nodes, then handoffs, then routers."""
        return (*self.nodes.values(), *self.handoffs.values(), *self.routers.values())

    @property
    def coverage(self) -> Any:
        """Graph coverage and drift: declared vs observed topology (see ``coordgap.coverage``)."""
        from .coverage import coverage

        return coverage(self)

    def what_if(self, **changes: Any) -> Any:
        """Return the predicted report after retries, fallbacks, hardening (``coordgap.whatif``).

        Example::

            rep.what_if(retries={"analyze": 3}, perfect=["retrieve->analyze"])
        """
        from .whatif import what_if

        return what_if(self, **changes)

    def recommend(self, target: float, **options: Any) -> Any:
        """Return the cheapest set of changes that reaches ``target`` under the model."""
        from .whatif import recommend

        return recommend(self, target, **options)

    @classmethod
    def from_prometheus(
        cls,
        url: str,
        *,
        graph: str | None = None,
        window: str | None = "1h",
        confidence: float = 0.95,
    ) -> Report:
        """Return the report of a whole fleet, from PromQL over Prometheus's HTTP API.

        Example::

            coordgap.Report.from_prometheus("http://127.0.0.1:9090", graph="research")
        """
        from .fleet import fleet_snapshot

        return cls.from_snapshot(
            fleet_snapshot(url, graph=graph, window=window), confidence=confidence
        )

    @classmethod
    def from_snapshot(
        cls,
        snapshot: LedgerSnapshot,
        *,
        confidence: float = 0.95,
        visits: Literal["flow", "raw"] = "flow",
    ) -> Report:
        """Return the report of a ledger snapshot.

        Args:
            snapshot: the counts, e.g. ``ledger.snapshot()``.
            confidence: the level of every interval.
            visits: ``"flow"`` (default) derives visits per run from the observed
                routing rates, which stays right when failures cut runs short;
                ``"raw"`` uses executions / runs as recorded.

        Example::

            rep = Report.from_snapshot(ledger.snapshot(), confidence=0.9)
        """
        return _from_snapshot(snapshot, confidence=confidence, visits_method=visits)

    @classmethod
    def from_json(cls, text: str | bytes) -> Report:
        """Rebuild a report from :meth:`to_json` output.

        Raises:
            ConfigurationError: the text is not JSON, not a coordgap report, or
                was written with another schema version.

        Example::

            rep = Report.from_json(Path("baseline.json").read_text())
        """
        from .render import report_from_json

        return report_from_json(text)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready dict of :meth:`to_json` (schema ``coordgap.report/1``)."""
        from .render import report_to_dict

        return report_to_dict(self)

    def to_json(self, *, indent: int | None = 2) -> str:
        """Return the report as JSON (schema ``coordgap.report/1``); see :meth:`from_json`."""
        from .render import render_json

        return render_json(self, indent=indent)

    def to_text(self, *, color: bool | None = None) -> str:
        """Return the aligned text table; colour only when ``color`` (None: stdout is a TTY)."""
        from .render import render_text

        return render_text(self, color=color)

    def to_markdown(self) -> str:
        """Return the report as Markdown tables."""
        from .render import render_markdown

        return render_markdown(self)

    def to_html(self) -> str:
        """Return one self-contained HTML page: the graph coloured by reliability, the gap.

        Needs ``grandalf`` for the layout (``pip install 'coordgap[html]'``);
        the page itself loads nothing from the network. See ``docs/html-report.md``.

        Example::

            Path("reliability.html").write_text(coordgap.report(app).to_html())
        """
        from ._html import render_html

        return render_html(self)

    def to_mermaid(self, *, threshold: float = 0.95) -> str:
        """Return a Mermaid flowchart, components below ``threshold`` highlighted."""
        from .render import render_mermaid

        return render_mermaid(self, threshold=threshold)

    def compare(self, baseline: Report) -> Comparison:
        """Return what changed since ``baseline``, worst first.

        A component (or the end to end) *dropped significantly* when the
        interval of the difference (Newcombe's method) lies entirely below 0.

        Example::

            cmp = coordgap.report(app).compare(Report.from_json(old))
            assert not cmp.regressed, cmp
        """
        return _compare(baseline, self)

    def __str__(self) -> str:
        return self.to_text()


@dataclass(frozen=True, slots=True)
class Change:
    """One line of a comparison: a component (or ``end to end``) before and after."""

    kind: str
    name: str
    old: Estimate
    new: Estimate
    delta: float | None
    difference: tuple[float, float] | None
    """Interval of new - old, when both sides have counts."""
    significant: bool

    @property
    def worse(self) -> bool:
        """True when the reliability went down."""
        return self.delta is not None and self.delta < 0


@dataclass(frozen=True, slots=True)
class Comparison:
    """The result of :meth:`Report.compare`: every change, worst first."""

    baseline: str
    current: str
    changes: tuple[Change, ...]
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    @property
    def worse(self) -> tuple[Change, ...]:
        """Changes where reliability went down."""
        return tuple(c for c in self.changes if c.worse)

    @property
    def regressions(self) -> tuple[Change, ...]:
        """Changes that went down significantly."""
        return tuple(c for c in self.changes if c.worse and c.significant)

    @property
    def regressed(self) -> bool:
        """True when any component or the end to end dropped significantly."""
        return bool(self.regressions)

    def __str__(self) -> str:
        from .render import render_comparison

        return render_comparison(self)


# -- building a report from a snapshot -------------------------------------------------


def report(
    source: object,
    *,
    confidence: float = 0.95,
    visits: Literal["flow", "raw"] = "flow",
) -> Report:
    """Return the compounded-reliability report of an instrumented graph, at any moment.

    Args:
        source: an instrumented graph (anything with a ledger), a
            :class:`~coordgap.ledger.Ledger` or a
            :class:`~coordgap.ledger.LedgerSnapshot`.
        confidence: the level of every interval (0.95: 95 %).
        visits: how visits per run are estimated, see :meth:`Report.from_snapshot`.

    Only the snapshot is taken under the ledger's lock (a few dictionary
    copies); the math runs outside it, so recording threads are not held up.

    Raises:
        ConfigurationError: ``source`` carries no coordgap ledger.

    Example::

        app = coordgap.instrument(builder)
        for q in questions:
            app.invoke({"question": q})
        rep = coordgap.report(app)
        print(rep)
    """
    if isinstance(source, LedgerSnapshot):
        snap = source
    elif isinstance(source, Ledger):
        snap = source.snapshot()
    else:
        snap = _ledger_for(source).snapshot()
    return _from_snapshot(snap, confidence=confidence, visits_method=visits)


def _ledger_for(source: object) -> Ledger:
    ledger = getattr(source, "coordgap_ledger", None)
    if isinstance(ledger, Ledger):
        return ledger
    found: object = None
    try:
        from ._instrument import ledger_of  # lazy: the report must not import LangGraph

        found = ledger_of(source)
    except Exception:  # not instrumented (or no interception installed): say so below
        found = None
    if isinstance(found, Ledger):
        return found
    raise ConfigurationError(
        f"{type(source).__name__} carries no coordgap ledger; pass the graph returned by "
        "coordgap.instrument(...), a coordgap Ledger or a LedgerSnapshot"
    )


@dataclass(slots=True, eq=False)
class _Draft:
    """A component while the report is being assembled (mutable, private)."""

    kind: ComponentKind
    name: str
    executions: int
    failures: int
    in_product: bool
    source: str | None = None
    target: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    visits: float = 0.0
    given: float | None = None  # audit: the assumed reliability

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)

    def rate(self) -> float | None:
        if self.given is not None:
            return self.given
        if self.executions <= 0:
            return None
        return (self.executions - self.failures) / self.executions


def _from_snapshot(
    snap: LedgerSnapshot, *, confidence: float, visits_method: Literal["flow", "raw"]
) -> Report:
    if visits_method not in ("flow", "raw"):
        raise ConfigurationError(f"visits must be 'flow' or 'raw' (got {visits_method!r})")
    _z(confidence)  # validate early, one message
    topo = snap.topology
    containers = set(topo.subgraphs) if topo is not None else set()
    notes: list[str] = []

    drafts: list[_Draft] = []
    node_names = list(snap.nodes)
    if topo is not None:
        node_names += [n for n in topo.nodes if n not in snap.nodes]
    for name in node_names:
        st = snap.nodes.get(name)
        if st is None:
            drafts.append(_Draft("node", name, 0, 0, False))
            continue
        drafts.append(
            _Draft(
                "node",
                name,
                st.executions,
                st.failures,
                name not in containers and st.executions > 0,
                extra={
                    "attempts": st.attempts,
                    "attempt_failures": st.attempt_failures,
                    "first_attempt_ok": st.first_attempt_ok,
                    "contract_failures": st.contract_failures,
                    "faults": st.faults,
                    "error_types": st.error_types,
                },
            )
        )

    # Router failures already cover invalid routes out of their source; do not count twice.
    router_failures_at: dict[str, int] = {}
    for r in snap.routers.values():
        router_failures_at[r.source] = router_failures_at.get(r.source, 0) + r.failures
    out_transfers: dict[str, int] = {}
    for (src, _tgt), h in snap.handoffs.items():
        out_transfers[src] = out_transfers.get(src, 0) + h.transfers

    handoff_keys = list(snap.handoffs)
    if topo is not None:
        seen = set(handoff_keys)
        for dh in topo.handoffs:
            if (dh.source, dh.target) not in seen:
                seen.add((dh.source, dh.target))
                handoff_keys.append((dh.source, dh.target))
    for src, tgt in handoff_keys:
        hs = snap.handoffs.get((src, tgt))
        name = f"{src} -> {tgt}"
        if hs is None:
            drafts.append(_Draft("handoff", name, 0, 0, False, src, tgt))
            continue
        extra = {
            "contract_failures": hs.contract_failures,
            "faults": hs.faults,
            "error_types": hs.error_types,
            "kinds": hs.kinds,
        }
        if tgt == UNKNOWN_TARGET:
            total = out_transfers.get(src, 0)
            failures = max(0, hs.failures - router_failures_at.get(src, 0))
            drafts.append(_Draft("handoff", name, total, failures, failures > 0, src, tgt, extra))
        else:
            drafts.append(
                _Draft(
                    "handoff", name, hs.transfers, hs.failures, hs.transfers > 0, src, tgt, extra
                )
            )

    for name, r in snap.routers.items():
        drafts.append(
            _Draft(
                "router",
                name,
                r.decisions,
                r.failures,
                r.decisions > 0,
                r.source,
                None,
                {"faults": r.faults, "error_types": r.error_types, "targets": r.targets},
            )
        )
    if topo is not None:
        for dr in topo.routers:
            if dr.name not in snap.routers:
                drafts.append(_Draft("router", dr.name, 0, 0, False, dr.source, None))

    for d in drafts:
        # Counts read mid-update (e.g. from a scrape) can show more failures than executions.
        d.failures = min(max(d.failures, 0), d.executions)
    runs = snap.runs
    per = runs.finished if runs.finished > 0 else runs.runs
    if per <= 0:
        for d in drafts:
            d.visits = 1.0 if d.executions > 0 else 0.0
        if any(d.executions for d in drafts):
            notes.append("no finished runs recorded: every component is weighted 1 visit per run")
    elif visits_method == "raw":
        for d in drafts:
            d.visits = d.executions / per
    else:
        note = _flow_visits(snap, drafts, per)
        if note:
            notes.append(note)

    if snap.internal_errors:
        notes.append(
            f"{snap.internal_errors} internal error(s) in coordgap: some outcomes may be missing"
        )
    e2e_counts = {
        "runs": runs.runs,
        "finished": runs.finished,
        "clean": runs.clean,
        "ok": runs.ok,
        "error": runs.error,
        "interrupted": runs.interrupted,
    }
    observed = Estimate.proportion(runs.clean, runs.finished, confidence)
    run_errors = Estimate.proportion(runs.error, runs.finished, confidence)
    rep = _assemble(
        graph=snap.graph,
        basis="ledger",
        confidence=confidence,
        drafts=drafts,
        observed=observed,
        run_errors=run_errors,
        counts=e2e_counts,
        visits_method=visits_method,
        notes=tuple(notes),
        internal_errors=snap.internal_errors,
    )
    return dataclasses.replace(rep, snapshot=snap)


def _flow_visits(snap: LedgerSnapshot, drafts: list[_Draft], per: int) -> str | None:
    """Set each draft's visits per run from the observed routing rates.

    Raw executions / runs under-counts every component that sits after a
    failure, because a failure usually ends the run; the product then
    over-predicts. Routing rates (transfers out of a node per *successful*
    execution of it) and delivery rates (executions per transfer received) are
    not biased by failures, so visits solved from them are the visits of a run
    in which nothing failed -- 1 for each component of a linear graph.
    """
    node_stats = snap.nodes
    success_base: dict[str, float] = {START: float(per)}
    for name, st in node_stats.items():
        success_base[name] = float(st.executions - st.failures)
    # Transfers that reached their target: a failed contract still delivers (interception
    # never changes behaviour), an undelivered handoff by definition does not.
    delivered: dict[tuple[str, str], int] = {}
    inflow: dict[str, int] = {}
    for (src, tgt), h in snap.handoffs.items():
        if tgt in node_stats:
            n = h.transfers - h.error_types.get(ERROR_UNDELIVERED, 0)
            delivered[(src, tgt)] = n
            inflow[tgt] = inflow.get(tgt, 0) + n

    direct: dict[str, float] = {START: 1.0}
    edges: list[tuple[str, str, float]] = []
    for name, st in node_stats.items():
        if inflow.get(name, 0) <= 0:
            # No handoff seen into it (no handoff data, or entered on resume): as recorded.
            direct[name] = st.executions / per
    for (src, tgt), n in delivered.items():
        if n <= 0:
            continue
        share = n / inflow[tgt]
        base = success_base.get(src, 0.0)
        if base <= 0:
            direct[tgt] = direct.get(tgt, 0.0) + node_stats[tgt].executions * share / per
            continue
        # Executions per delivered transfer: 1 on a plain edge, 1/k behind a k-way join.
        delivery = node_stats[tgt].executions / inflow[tgt]
        edges.append((src, tgt, n / base * delivery))
    try:
        v = _solve_visits(direct, edges)
    except _Diverged:
        for d in drafts:
            d.visits = d.executions / per
        return (
            "visits per run could not be solved from routing rates (a loop that never exits); "
            "using executions / runs"
        )

    def per_source(src: str | None, count: int) -> float:
        base = success_base.get(src or "", 0.0)
        if src is None or base <= 0:
            return count / per
        return v.get(src, 0.0) * count / base

    for d in drafts:
        if d.executions <= 0:
            d.visits = 0.0
        elif d.kind == "node":
            d.visits = v.get(d.name, d.executions / per)
        else:  # handoffs and routers happen once per transfer / decision out of their source
            d.visits = per_source(d.source, d.executions)
    return None


class _Diverged(Exception):
    """The visit equations have no finite, non-negative solution."""


def _solve_visits(
    direct: Mapping[str, float], edges: Iterable[tuple[str, str, float]]
) -> dict[str, float]:
    """Solve v_t = direct_t + Σ_s v_s · w(s, t) exactly, strongly connected part by part.

    A graph without cycles is solved in one pass in topological order; each
    cycle (a strongly connected component) is a small dense linear system.
    Nothing iterates to convergence, so a loop that never exits is reported
    (``_Diverged``), never spun on.
    """
    succ: dict[str, list[tuple[str, float]]] = {}
    pred: dict[str, list[tuple[str, float]]] = {}
    nodes: dict[str, None] = dict.fromkeys(direct)
    for s, t, w in edges:
        if w == 0:
            continue
        nodes.setdefault(s)
        nodes.setdefault(t)
        succ.setdefault(s, []).append((t, w))
        pred.setdefault(t, []).append((s, w))
    v: dict[str, float] = {}
    for scc in _sccs_in_topological_order(list(nodes), succ):
        members = set(scc)
        inflow = []
        for t in scc:
            x = direct.get(t, 0.0)
            for s, w in pred.get(t, ()):
                if s not in members:
                    x += v.get(s, 0.0) * w
            inflow.append(x)
        cyclic = len(scc) > 1 or any(t == scc[0] for t, _ in succ.get(scc[0], ()))
        if not cyclic:
            v[scc[0]] = inflow[0]
            continue
        index = {name: i for i, name in enumerate(scc)}
        k = len(scc)
        # (I - W^T) v = inflow, restricted to this component.
        a = [[1.0 if i == j else 0.0 for j in range(k)] for i in range(k)]
        for s in scc:
            for t, w in succ.get(s, ()):
                if t in index:
                    a[index[t]][index[s]] -= w
        solved = _gauss(a, inflow)
        if solved is None or any(x < -1e-9 or x > 1e9 for x in solved):
            raise _Diverged(scc)
        for name, x in zip(scc, solved, strict=True):
            v[name] = max(0.0, x)
    return v


def _gauss(a: list[list[float]], b: list[float]) -> list[float] | None:
    k = len(b)
    m = [[*row, b[i]] for i, row in enumerate(a)]
    for col in range(k):
        piv = max(range(col, k), key=lambda r: abs(m[r][col]))
        if abs(m[piv][col]) < 1e-12:
            return None
        m[col], m[piv] = m[piv], m[col]
        for r in range(col + 1, k):
            f = m[r][col] / m[col][col]
            if f:
                for c in range(col, k + 1):
                    m[r][c] -= f * m[col][c]
    x = [0.0] * k
    for r in range(k - 1, -1, -1):
        x[r] = (m[r][k] - sum(m[r][c] * x[c] for c in range(r + 1, k))) / m[r][r]
    return x


def _sccs_in_topological_order(
    nodes: list[str], succ: Mapping[str, list[tuple[str, float]]]
) -> list[list[str]]:
    """Tarjan's algorithm, iterative (deep graphs must not hit the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = succ.get(node, ())
            recursed = False
            while i < len(children):
                child = children[i][0]
                i += 1
                if child not in index:
                    work.append((node, i))
                    work.append((child, 0))
                    recursed = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if recursed:
                continue
            if low[node] == index[node]:
                scc = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    scc.append(w)
                    if w == node:
                        break
                out.append(scc)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    out.reverse()  # Tarjan emits sinks first
    return out


def _assemble(
    *,
    graph: str,
    basis: Basis,
    confidence: float,
    drafts: list[_Draft],
    observed: Estimate,
    run_errors: Estimate,
    counts: Mapping[str, int],
    visits_method: VisitsMethod,
    notes: tuple[str, ...],
    internal_errors: int,
) -> Report:
    """Compose the products, intervals, gap shares and sensitivities; freeze the report."""
    z = _z(confidence)
    in_product = [d for d in drafts if d.in_product and d.visits > 0 and d.rate() is not None]
    chosen = {id(d) for d in in_product}
    predicted = _product(in_product, z, basis)
    naive = _product([d for d in in_product if d.kind == "node"], z, basis)

    # Gap shares: each coordination component's part of log(naive / predicted).
    coord = [d for d in in_product if d.kind != "node"]
    shares: dict[tuple[str, str], float] = {}
    if predicted.value is not None and naive.value is not None and coord:
        gap = naive.value - predicted.value
        zeros = [d for d in coord if d.rate() == 0.0]
        if zeros:
            shares = {d.key: gap / len(zeros) for d in zeros}
        else:
            logs = {d.key: -d.visits * math.log(d.rate() or 1.0) for d in coord}
            total = sum(logs.values())
            shares = {k: (gap * x / total if total > 0 else 0.0) + 0.0 for k, x in logs.items()}

    # Sensitivity: the product with one factor set to 1.
    if_perfect: dict[tuple[str, str], float] = {}
    if predicted.value is not None:
        zero_count = sum(1 for d in in_product if d.rate() == 0.0)
        log_rest = sum(d.visits * math.log(r) for d in in_product if (r := d.rate()))
        for d in in_product:
            r = d.rate() or 0.0
            if r == 0.0:
                if_perfect[d.key] = math.exp(log_rest) if zero_count == 1 else 0.0
            elif zero_count:
                if_perfect[d.key] = 0.0
            else:
                if_perfect[d.key] = min(1.0, math.exp(log_rest - d.visits * math.log(r)))

    components: list[ComponentReport] = []
    for d in drafts:
        x = d.extra
        if d.given is not None:
            rel = Estimate(d.given, d.given, d.given, "given")
        else:
            rel = Estimate.proportion(d.executions - d.failures, d.executions, confidence)
        first = None
        attempts = int(x.get("attempts", 0))
        if d.kind == "node" and attempts > d.executions > 0:
            first = Estimate.proportion(int(x["first_attempt_ok"]), d.executions, confidence)
        perfect = if_perfect.get(d.key)
        gain = 0.0
        if perfect is not None and predicted.value is not None:
            gain = max(0.0, perfect - predicted.value)
        components.append(
            ComponentReport(
                kind=d.kind,
                name=d.name,
                executions=d.executions,
                failures=d.failures,
                reliability=rel,
                visits=d.visits,
                in_product=id(d) in chosen,
                source=d.source,
                target=d.target,
                first_attempt=first,
                attempts=attempts,
                attempt_failures=int(x.get("attempt_failures", 0)),
                contract_failures=int(x.get("contract_failures", 0)),
                faults=int(x.get("faults", 0)),
                error_types=MappingProxyType(dict(x.get("error_types", {}))),
                kinds=MappingProxyType(dict(x.get("kinds", {}))),
                targets=MappingProxyType(dict(x.get("targets", {}))),
                gap_share=shares.get(d.key) if d.kind != "node" and id(d) in chosen else None,
                if_perfect=perfect,
                gain=gain,
            )
        )
    return _freeze(
        graph=graph,
        basis=basis,
        confidence=confidence,
        components=components,
        end_to_end=EndToEnd(
            observed=observed,
            predicted=predicted,
            naive=naive,
            run_errors=run_errors,
            **counts,
        ),
        visits_method=visits_method,
        notes=notes,
        internal_errors=internal_errors,
    )


def _freeze(
    *,
    graph: str,
    basis: Basis,
    confidence: float,
    components: Iterable[ComponentReport],
    end_to_end: EndToEnd,
    visits_method: VisitsMethod,
    notes: tuple[str, ...],
    internal_errors: int,
    weakest: Iterable[tuple[str, str]] | None = None,
) -> Report:
    """Index components by kind and rank the weakest; shared by the math and from_json."""
    nodes: dict[str, ComponentReport] = {}
    handoffs: dict[tuple[str, str], ComponentReport] = {}
    routers: dict[str, ComponentReport] = {}
    by_ref: dict[tuple[str, str], ComponentReport] = {}
    for c in components:
        by_ref[(c.kind, c.name)] = c
        if c.kind == "node":
            nodes[c.name] = c
        elif c.kind == "handoff":
            handoffs[(c.source or "", c.target or "")] = c
        else:
            routers[c.name] = c
    if weakest is None:
        ranked = sorted(
            (c for c in by_ref.values() if c.in_product and c.gain > 0),
            key=lambda c: (-c.gain, _KIND_ORDER[c.kind], c.name),
        )
    else:
        ranked = [by_ref[ref] for ref in weakest]
    return Report(
        graph=graph,
        basis=basis,
        confidence=confidence,
        nodes=MappingProxyType(nodes),
        handoffs=MappingProxyType(handoffs),
        routers=MappingProxyType(routers),
        end_to_end=end_to_end,
        weakest=tuple(ranked),
        visits_method=visits_method,
        notes=notes,
        internal_errors=internal_errors,
    )


def _product(drafts: list[_Draft], z: float, basis: Basis) -> Estimate:
    """Π r^v with a delta-method interval on log Π r^v.

    Var(log r̂) ≈ (1 - p) / (n p) per component, with p the Jeffreys posterior
    mean (s + ½) / (n + 1) so that a component with no failures yet still
    carries its uncertainty instead of a zero variance. Visits are treated as
    known (their sampling error is much smaller than that of rare failures).
    """
    if not drafts:
        return _NO_DATA
    if basis == "audit":
        log_p = sum(d.visits * math.log(d.rate() or 1e-300) for d in drafts)
        value = 0.0 if any(d.rate() == 0.0 for d in drafts) else math.exp(log_p)
        return Estimate(value, value, value, "given")
    var = 0.0
    log_mle = 0.0
    log_smooth = 0.0
    has_zero = False
    for d in drafts:
        n, f = d.executions, d.failures
        p = (n - f + 0.5) / (n + 1.0)
        var += d.visits * d.visits * (1.0 - p) / (n * p)
        log_smooth += d.visits * math.log(p)
        if f == n:
            has_zero = True
        else:
            log_mle += d.visits * math.log((n - f) / n)
    sd = math.sqrt(var)
    if has_zero:
        return Estimate(0.0, 0.0, min(1.0, math.exp(log_smooth + z * sd)), "delta-log")
    value = math.exp(log_mle)
    return Estimate(
        value,
        max(0.0, math.exp(log_mle - z * sd)),
        min(1.0, math.exp(log_mle + z * sd)),
        "delta-log",
    )


# -- comparison ----------------------------------------------------------------------------


def _compare(old: Report, new: Report) -> Comparison:
    conf = new.confidence
    changes: list[Change] = []
    old_by = {(c.kind, c.name): c for c in old.components}
    new_by = {(c.kind, c.name): c for c in new.components}

    def change(
        kind: str, name: str, a: Estimate, b: Estimate, counts: tuple[int, int, int, int] | None
    ) -> None:
        delta = None if a.value is None or b.value is None else b.value - a.value
        diff = None
        significant = False
        if counts is not None and counts[1] > 0 and counts[3] > 0:
            diff = _newcombe(*counts, conf)
            significant = diff[1] < 0 or diff[0] > 0
        elif delta is not None and a.method != "given" and b.method != "given":
            # Products have no count to test: call it significant when the intervals part.
            significant = b.high < a.low or b.low > a.high
        changes.append(Change(kind, name, a, b, delta, diff, significant))

    e_old, e_new = old.end_to_end, new.end_to_end
    change(
        "end to end",
        "observed",
        e_old.observed,
        e_new.observed,
        (e_old.clean, e_old.finished, e_new.clean, e_new.finished),
    )
    change("end to end", "predicted", e_old.predicted, e_new.predicted, None)
    for ref in new_by.keys() & old_by.keys():
        a, b = old_by[ref], new_by[ref]
        if a.reliability.value is None or b.reliability.value is None:
            continue
        counts: tuple[int, int, int, int] | None = None
        if a.reliability.method == "wilson" and b.reliability.method == "wilson":
            counts = (
                a.executions - a.failures,
                a.executions,
                b.executions - b.failures,
                b.executions,
            )
        change(ref[0], b.label, a.reliability, b.reliability, counts)
    changes.sort(key=lambda c: (c.delta if c.delta is not None else 0.0, c.kind, c.name))
    label_new = {ref: c.label for ref, c in new_by.items()}
    label_old = {ref: c.label for ref, c in old_by.items()}
    return Comparison(
        baseline=old.graph,
        current=new.graph,
        changes=tuple(changes),
        added=tuple(sorted(label_new[r] for r in new_by.keys() - old_by.keys())),
        removed=tuple(sorted(label_old[r] for r in old_by.keys() - new_by.keys())),
    )
