"""The compounded-reliability report: pure math over a ledger snapshot.

A report answers, for one graph: how reliable is each node, handoff and router
(with a confidence interval); what end to end reliability do those components
predict when composed over the graph; what was observed (clean runs /
finished runs); how much of the loss comes from coordination (the gap between
the prediction with handoffs and routers perfect and the full one); and which
component would buy the most if it were perfect.

Predicted end to end is the probability of reaching the end with no failure in
the absorbing Markov chain of the graph (Cheung's user-oriented reliability
model, IEEE TSE 1980; ``coordgap._chain``): states carry the node and router
reliabilities, transitions the handoff reliabilities and the routing rates
observed per router success. On a linear graph it is the plain product; on
branches and loops it is exact where ``Π r^E[visits]`` is not (Jensen). Its
interval is the delta method through the chain's linear system. See
``docs/report.md`` for the derivations.

This module does no I/O and imports neither LangGraph nor OpenTelemetry, so it
can be tested on hand-built snapshots::

    ledger = Ledger("demo")
    ...  # ledger.record(NodeOutcome(...)), ...
    rep = report(ledger)
    rep.end_to_end.observed.value, rep.end_to_end.predicted.value, rep.gap
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from . import _chain
from ._chain import Chain
from ._ledger import HasLedger, Ledger, LedgerSnapshot
from ._predict import (
    Param,
    Prediction,
    chain_from_counts,
    flat_chain,
    param_key,
    predict,
)
from ._stats import Estimate, wilson_interval
from ._stats import newcombe as _newcombe
from ._stats import z as _z
from .errors import ConfigurationError
from .semconv import START, UNKNOWN_TARGET
from .topology import handoff_name

if TYPE_CHECKING:
    from ._coverage import Coverage
    from ._plan import Plan
    from .whatif import WhatIf

__all__ = [
    "Change",
    "Comparison",
    "ComponentReport",
    "EndToEnd",
    "Estimate",
    "FaultDetection",
    "Report",
    "report",
    "wilson_interval",
]

ComponentKind: TypeAlias = Literal["node", "handoff", "router"]
Basis: TypeAlias = Literal["ledger", "audit", "what-if"]
VisitsMethod: TypeAlias = Literal["flow", "raw", "given"]

SCHEMA: str = "coordgap.report/2"
"""Version tag of the JSON form; bumped on any incompatible change (``/1`` is still read)."""

SCHEMA_V1: str = "coordgap.report/1"

NOT_INDEPENDENT: str = "routing or failures are not independent here"
"""The words of the finding made when observed falls outside predicted's interval."""

_EMPTY: Mapping[str, int] = MappingProxyType({})
_KIND_ORDER = {"node": 0, "handoff": 1, "router": 2}

# Kept for code that imported them from here; they live in coordgap._chain now.
_Diverged = _chain.Diverged
_solve_visits = _chain.solve_visits
_sccs_in_topological_order = _chain.sccs_in_topological_order
_gauss = _chain.gauss


# -- intervals ------------------------------------------------------------------------


_NO_DATA = Estimate(None, 0.0, 1.0, "none")


# -- the report's values --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ComponentReport:
    """One node, handoff or router: its counts, its reliability and its weight.

    ``executions`` are node executions (tasks, after retries), handoff
    transfers or router decisions. ``visits`` is the expected number of
    executions per run when nothing fails (shown for reading; the prediction
    uses the chain, not visits). ``in_product`` is True when the component is a
    factor of the chain: False for subgraph containers (their inner nodes
    count) and for components with no data. ``if_perfect`` is the predicted end
    to end if this component never failed, ``gain`` how much that adds.
    ``gap_share`` (handoffs and routers) is the part of the coordination gap
    this component explains. ``max_attempts`` is the ``RetryPolicy`` a node
    already has (1 without one).

    A handoff whose target is ``__unknown__`` (an invalid route) is reported as
    "routes out of ``source`` that named a real node": ``executions`` are the
    transfers out of the source, ``failures`` the invalid ones not already
    counted as failures of a router on the same source. Perfect, those routes
    would have gone where the valid ones go.
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
    max_attempts: int = 1

    @property
    def key(self) -> str | tuple[str, str]:
        """The key of this component in ``Report.nodes`` / ``handoffs`` / ``routers``."""
        if self.kind == "handoff":
            return (self.source or "", self.target or "")
        return self.name

    @property
    def label(self) -> str:
        """The display name, the one every API accepts: ``analyze``, ``retrieve -> analyze``."""
        if self.kind == "handoff":
            return handoff_name(self.source or "", self.target or "")
        return self.name

    @property
    def retried(self) -> bool:
        """True when some execution needed more than one attempt."""
        return self.attempts > self.executions


@dataclass(frozen=True, slots=True)
class EndToEnd:
    """End to end reliability: observed, predicted, naive, and run-level errors.

    ``observed`` is clean runs / finished runs (a run is clean when it finished
    ok and no component failed). ``run_errors`` is runs that raised / finished
    runs; ``error_types`` counts them per exception class and ``error_at`` the
    runs that raised with no failed component to blame, per node that ran last.
    ``predicted`` is the probability of reaching the end with no failure in the
    graph's absorbing chain, ``naive`` the same with handoffs and routers perfect.
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
    error_types: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    error_at: Mapping[str, int] = field(default_factory=lambda: _EMPTY)

    @property
    def unblamed(self) -> int:
        """Runs that raised with no failed component to blame (see ``error_at``)."""
        return sum(self.error_at.values())


FAULT_GUARDS: tuple[str, ...] = ("contract", "retry", "error_handler", "caller")
"""Who meets an injected fault, in the order a fault meets them (see :class:`FaultDetection`)."""


@dataclass(frozen=True, slots=True)
class FaultDetection:
    """Where the faults of a fault-injection campaign (:mod:`coordgap.faults`) ended up.

    ``met`` counts the injected faults per guard: ``contract`` (a contract caught the
    corrupted handoff), ``retry`` (a later attempt of the node succeeded),
    ``error_handler`` (the run went on: the node's error handler, or the code that
    called a subgraph, took the failure), ``caller`` (the run raised it). ``injected``
    is how many the fault plan fired; the faults no guard met (a corrupted handoff no
    contract checks, a run abandoned mid-retry) are :attr:`unnoticed`.

    Example::

        fd = coordgap.report(app).fault_detection
        fd.rate("retry").value        # share of the injected faults a retry recovered
        fd.recovered.value, fd.rate("caller").value
    """

    injected: int
    met: Mapping[str, int]
    confidence: float = 0.95

    @property
    def unnoticed(self) -> int:
        """Injected faults no guard met."""
        return max(0, self.injected - sum(self.met.values()))

    def rate(self, guard: str) -> Estimate:
        """Share of the injected faults ``guard`` met (``"unnoticed"`` for none), with its
        Wilson interval."""
        if guard == "unnoticed":
            k = self.unnoticed
        elif guard in FAULT_GUARDS:
            k = self.met.get(guard, 0)
        else:
            raise ConfigurationError(
                f"rate({guard!r}): a guard is one of {', '.join(FAULT_GUARDS)} or 'unnoticed'."
            )
        return Estimate.proportion(k, self.injected, self.confidence)

    @property
    def detected(self) -> Estimate:
        """Share a guard stopped before the caller: caught by a contract or recovered."""
        k = sum(self.met.get(g, 0) for g in ("contract", "retry", "error_handler"))
        return Estimate.proportion(k, self.injected, self.confidence)

    @property
    def recovered(self) -> Estimate:
        """Share a retry or an error handler recovered (the run went on as if it had not)."""
        k = self.met.get("retry", 0) + self.met.get("error_handler", 0)
        return Estimate.proportion(k, self.injected, self.confidence)

    def to_dict(self) -> dict[str, Any]:
        return {"injected": self.injected, "met": dict(self.met)}


def _fault_detection(snap: LedgerSnapshot, confidence: float) -> FaultDetection | None:
    if snap.faults_injected is None and not snap.fault_fates:
        return None  # no fault plan on this graph
    met = {g: int(snap.fault_fates.get(g, 0)) for g in FAULT_GUARDS}
    injected = snap.faults_injected
    if injected is None:  # a merged or replayed snapshot: what the guards met is all we know
        injected = sum(met.values())
    return FaultDetection(
        injected=max(injected, sum(met.values())),
        met=MappingProxyType(met),
        confidence=confidence,
    )


@dataclass(frozen=True)
class Report:
    """The compounded-reliability report of one graph.

    Build one with :func:`report` (from a live graph, a ledger or a snapshot),
    :func:`coordgap.audit` (from the topology and assumed reliabilities) or
    :meth:`from_json`. ``findings`` are what the reader must not miss (runs
    that raised with no component to blame; observed outside the predicted
    interval); they are also the first ``notes``. ``chain`` is the absorbing
    chain the predictions were solved on (what-if re-solves it).

    Example::

        rep = coordgap.report(app)
        print(rep)
        rep.end_to_end.observed.value, rep.end_to_end.predicted.low
        rep.nodes["analyze"].reliability.value
        rep.handoffs[("retrieve", "analyze")].failures
        rep.weakest[:1]        # the component whose perfection buys the most, if any
        rep.findings           # e.g. "routing or failures are not independent here"
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
    findings: tuple[str, ...] = ()
    chain: Chain | None = field(default=None, repr=False)
    fault_detection: FaultDetection | None = None
    """Who met the injected faults, when the graph was built by :func:`coordgap.faults.inject`."""

    @property
    def naive(self) -> float | None:
        """Predicted end to end with handoffs and routers perfect (what a per-step view suggests)."""
        return self.end_to_end.naive.value

    @property
    def predicted(self) -> float | None:
        """Predicted end to end: the chain with every component as measured."""
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
    def coverage(self) -> Coverage:
        """Graph coverage and drift: declared vs observed topology (``coordgap.coverage``)."""
        from ._coverage import coverage

        return coverage(self)

    def what_if(self, **changes: Any) -> WhatIf:
        """Deprecated: use ``coordgap.what_if(rep, ...)`` (removed in coordgap 0.3).

        A what-if builds a new report, so it lives above the report, with the planning.
        """
        warnings.warn(
            "Report.what_if() is deprecated (removed in coordgap 0.3): use "
            "coordgap.what_if(rep, retries=..., ...).",
            DeprecationWarning,
            stacklevel=2,
        )
        from .whatif import what_if  # the deprecated path only: planning sits above the report

        return what_if(self, **changes)

    def recommend(self, target: float, **options: Any) -> Plan:
        """Return the cheapest changes whose lower bound reaches ``target``.

        The same as ``coordgap.recommend(rep, target, ...)``; see there for the options.

        Example::

            print(rep.recommend(0.95))
        """
        from ._plan import recommend

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
            visits: the ``visits`` column: ``"flow"`` (default) is the expected
                executions per run when nothing fails, from the routing rates;
                ``"raw"`` is executions / runs as recorded. The prediction is the
                chain's either way.

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
        return report_from_json(text)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready dict of :meth:`to_json` (schema ``coordgap.report/2``)."""
        return report_to_dict(self)

    def to_json(self, *, indent: int | None = 2) -> str:
        """Return the report as JSON (schema ``coordgap.report/2``); see :meth:`from_json`."""
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
    source: HasLedger | Ledger | LedgerSnapshot,
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
        visits: how the ``visits`` column is estimated, see :meth:`Report.from_snapshot`.

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


def _ledger_for(source: HasLedger) -> Ledger:
    # getattr: an untyped caller may pass anything; say what to pass instead
    ledger = getattr(source, "coordgap_ledger", None)
    if isinstance(ledger, Ledger):
        return ledger
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

    @property
    def param(self) -> str:
        return param_key(self.kind, self.name)

    @property
    def kinds(self) -> Mapping[str, int]:
        return self.extra.get("kinds", _EMPTY)  # type: ignore[no-any-return]

    @property
    def error_types(self) -> Mapping[str, int]:
        return self.extra.get("error_types", _EMPTY)  # type: ignore[no-any-return]

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
    max_attempts = dict(topo.max_attempts) if topo is not None else {}
    notes: list[str] = []

    drafts: list[_Draft] = []
    node_names = list(snap.nodes)
    if topo is not None:
        node_names += [n for n in topo.nodes if n not in snap.nodes]
    for name in node_names:
        st = snap.nodes.get(name)
        if st is None:
            drafts.append(
                _Draft("node", name, 0, 0, False, extra={"max_attempts": max_attempts.get(name, 1)})
            )
            continue
        drafts.append(
            _Draft(
                "node",
                name,
                st.executions,
                st.failures,
                st.executions > 0,
                extra={
                    "attempts": st.attempts,
                    "attempt_failures": st.attempt_failures,
                    "first_attempt_ok": st.first_attempt_ok,
                    "contract_failures": st.contract_failures,
                    "faults": st.faults,
                    "error_types": st.error_types,
                    "max_attempts": max_attempts.get(name, 1),
                },
            )
        )

    # Router failures already cover invalid routes out of their source; do not count twice.
    router_failures_at: dict[str, int] = {}
    for r in snap.routers.values():
        router_failures_at[r.source] = router_failures_at.get(r.source, 0) + r.failures
    valid_out: dict[str, int] = {}
    for (src, tgt), h in snap.handoffs.items():
        if tgt != UNKNOWN_TARGET:
            valid_out[src] = valid_out.get(src, 0) + h.transfers

    handoff_keys = list(snap.handoffs)
    if topo is not None:
        seen = set(handoff_keys)
        for dh in topo.handoffs:
            if (dh.source, dh.target) not in seen:
                seen.add((dh.source, dh.target))
                handoff_keys.append((dh.source, dh.target))
    for src, tgt in handoff_keys:
        hs = snap.handoffs.get((src, tgt))
        name = handoff_name(src, tgt)
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
            kinds = hs.kinds or {"command": hs.transfers}
            invalid = max(0, kinds.get("conditional", 0) - router_failures_at.get(src, 0))
            invalid += sum(v for k, v in kinds.items() if k != "conditional")
            total = valid_out.get(src, 0) + invalid
            drafts.append(_Draft("handoff", name, total, invalid, invalid > 0, src, tgt, extra))
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
    per = runs.finished
    static = (
        {(h.source, h.target) for h in topo.handoffs if h.kind in ("edge", "join")}
        if topo is not None
        else set()
    )
    u_base: Mapping[str, float] = {}
    if per > 0:
        build = chain_from_counts(drafts, runs=per, containers=containers, static=static)
        chain = build.chain
        u_base = build.u_base
        notes.extend(build.notes)
    else:
        chain = flat_chain(
            d.param
            for d in drafts
            if d.executions > 0 and d.target != UNKNOWN_TARGET and d.name not in containers
        )
        if any(d.executions for d in drafts):
            notes.append("no finished runs recorded: every component is weighted 1 visit per run")

    if snap.internal_errors:
        notes.append(
            f"{snap.internal_errors} internal error(s) in coordgap: some outcomes may be missing"
        )
    e2e = EndToEnd(
        observed=Estimate.proportion(runs.clean, runs.finished, confidence),
        predicted=_NO_DATA,
        naive=_NO_DATA,
        run_errors=Estimate.proportion(runs.error, runs.finished, confidence),
        runs=runs.runs,
        finished=runs.finished,
        clean=runs.clean,
        ok=runs.ok,
        error=runs.error,
        interrupted=runs.interrupted,
        error_types=MappingProxyType(dict(runs.error_types)),
        error_at=MappingProxyType(dict(runs.error_at)),
    )
    rep = _assemble(
        graph=snap.graph,
        basis="ledger",
        confidence=confidence,
        drafts=drafts,
        chain=chain,
        params=_params(drafts, u_base),
        end_to_end=e2e,
        visits_method=visits_method,
        notes=tuple(notes),
        internal_errors=snap.internal_errors,
        per=per or runs.runs,
    )
    return dataclasses.replace(
        rep, snapshot=snap, fault_detection=_fault_detection(snap, confidence)
    )


def _params(drafts: Iterable[_Draft], u_base: Mapping[str, float]) -> dict[str, Param]:
    """Return the chain's parameters: every component with data, as measured (or given)."""
    out: dict[str, Param] = {}
    for d in drafts:
        key = d.param
        if d.given is not None:
            out[key] = Param(key, d.kind, d.given, 0.0, d.kind != "node")
        elif d.executions <= 0:
            continue
        elif d.target == UNKNOWN_TARGET:
            base = u_base.get(key, 1.0 - d.failures / d.executions)
            out[key] = Param(key, d.kind, 1.0 - d.failures / d.executions, 0.0, True, base)
        else:
            out[key] = Param.measured(key, d.kind, d.executions - d.failures, d.executions)
    return out


def _assemble(
    *,
    graph: str,
    basis: Basis,
    confidence: float,
    drafts: list[_Draft],
    chain: Chain,
    params: Mapping[str, Param],
    end_to_end: EndToEnd,
    visits_method: VisitsMethod,
    notes: tuple[str, ...],
    internal_errors: int,
    per: int = 0,
    estimates: Mapping[tuple[str, str], Estimate] | None = None,
) -> Report:
    """Solve the chain; fill in predicted, naive, visits, gains and gap shares; freeze."""
    z = _z(confidence)
    used = chain.params()
    in_chain = [d for d in drafts if d.param in used and d.param in params]
    given = basis == "audit" or all(p.var == 0.0 and p.n == 0 for p in params.values())
    pred: Prediction | None = None
    if in_chain:
        pred = predict(chain, params, z, given=given)
    method = "given" if given else "delta-log"
    e = end_to_end
    if pred is not None and pred.predicted is not None:
        e = dataclasses.replace(
            e,
            predicted=Estimate(pred.predicted, pred.predicted_low, pred.predicted_high, method),
            naive=Estimate(pred.naive, pred.naive_low, pred.naive_high, method),
        )
    notes_list = list(notes)
    if pred is not None and not pred.exact:
        notes_list.append(
            "a loop through a fan-out was solved by iteration and had not settled: "
            "predicted is a lower bound"
        )

    # Visits: the chain's expected executions per run when nothing fails.
    visits: dict[str, float] = {}
    sv = pred.state_visits if pred is not None else None
    if visits_method == "given":
        visits = {d.param: d.visits for d in drafts}
    elif visits_method == "raw" or sv is None:
        if sv is None and visits_method != "raw" and pred is not None and per > 0:
            notes_list.append(_diverged_note(chain, end_to_end))
        visits = {d.param: (d.executions / per if per > 0 else 1.0) for d in drafts}
    else:
        visits = _component_visits(chain, sv)
        for d in drafts:
            if d.param not in visits:
                visits[d.param] = d.executions / per if per > 0 and d.executions else 0.0

    findings = _findings(e, drafts) if basis == "ledger" else []
    components: list[ComponentReport] = []
    for d in drafts:
        x = d.extra
        key = d.param
        counted = d in in_chain
        if estimates is not None and d.key in estimates:
            rel = estimates[d.key]
        elif d.given is not None:
            rel = Estimate(d.given, d.given, d.given, "given")
        else:
            rel = Estimate.proportion(d.executions - d.failures, d.executions, confidence)
        first = None
        attempts = int(x.get("attempts", 0))
        if d.kind == "node" and attempts > d.executions > 0:
            first = Estimate.proportion(int(x["first_attempt_ok"]), d.executions, confidence)
        perfect = pred.if_perfect.get(key) if pred is not None and counted else None
        gain = 0.0
        if perfect is not None and pred is not None and pred.predicted is not None:
            gain = max(0.0, perfect - pred.predicted)
        share = None
        if pred is not None and counted and d.kind != "node":
            share = pred.gap_share.get(key)
        components.append(
            ComponentReport(
                kind=d.kind,
                name=d.name,
                executions=d.executions,
                failures=d.failures,
                reliability=rel,
                visits=visits.get(key, 0.0) if (d.executions > 0 or d.given is not None) else 0.0,
                in_product=counted,
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
                gap_share=share,
                if_perfect=perfect,
                gain=gain,
                max_attempts=int(x.get("max_attempts", 1)),
            )
        )
    if basis == "ledger":
        findings += _independence_finding(e)
    return _freeze(
        graph=graph,
        basis=basis,
        confidence=confidence,
        components=components,
        end_to_end=e,
        visits_method=visits_method,
        notes=(*findings, *notes_list),
        internal_errors=internal_errors,
        findings=tuple(findings),
        chain=chain,
    )


def _component_visits(chain: Chain, state_visits: Mapping[str, float]) -> dict[str, float]:
    """Expected executions per run of every component, from the states' visits."""
    out: dict[str, float] = {}
    for name, st in chain.states.items():
        v = state_visits.get(name, 0.0)
        for p in st.params:
            out[p] = out.get(p, 0.0) + v
        for g in st.groups:
            for e in g.edges:
                for p in e.params:
                    out[p] = out.get(p, 0.0) + v * e.rate
            if g.u_param is not None:
                out[g.u_param] = out.get(g.u_param, 0.0) + v * g.u_rate
        if st.calls:  # a container: its own visits, though its inner chain is the factor
            key = param_key("node", name)
            out[key] = out.get(key, 0.0) + v
    return out


def _diverged_note(chain: Chain, e: EndToEnd) -> str:
    try:
        chain.visits()
    except _chain.Diverged as exc:
        loop = ", ".join(sorted(str(s) for s in exc.args[0] if s != START))
    else:  # pragma: no cover - only called after a divergence
        loop = "?"
    if e.error:
        return (
            f"in the recorded runs the loop through {loop} was never left except by raising "
            f"({e.error} of {e.finished} runs raised): expected visits per run are undefined, "
            "the visits column shows executions per run, and predicted is what the chain "
            "gives a loop that does not exit"
        )
    return (
        f"the recorded routing rates describe a loop through {loop} that never exits (counts "
        "read mid-update?): the visits column shows executions per run"
    )


def _findings(e: EndToEnd, drafts: Iterable[_Draft]) -> list[str]:
    """Run-level errors no component explains: the first thing a reader must see."""
    n = e.unblamed
    if n <= 0:
        return []
    component_errors: set[str] = set()
    for d in drafts:
        component_errors.update(d.error_types)
    types = {t: c for t, c in e.error_types.items() if t not in component_errors}
    where = ", ".join(
        f"{node}" if c == n else f"{node} x{c}"
        for node, c in sorted(e.error_at.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    what = " or ".join(sorted(types)) if types else "an error"
    runs = "1 run" if n == 1 else f"{n} runs"
    return [
        f"{runs} raised {what} with no component failing (last node: {where}); no component's "
        "reliability accounts for them, so predicted cannot see them"
    ]


def _independence_finding(e: EndToEnd) -> list[str]:
    """Observed outside predicted's interval: the chain's assumptions do not hold here."""
    from .render import fmt

    obs, pred = e.observed, e.predicted
    if obs.value is None or pred.value is None or pred.method != "delta-log":
        return []
    if pred.contains(obs.value):
        return []
    side = "below" if obs.value < pred.low else "above"
    head = (
        f"observed {fmt(obs.value)} is {side} predicted's interval "
        f"[{fmt(pred.low)}, {fmt(pred.high)}]: "
    )
    if side == "below" and e.unblamed:
        return [
            head + f"the {e.unblamed} run(s) that raised with no component failing are "
            "not in any component's reliability (see above)"
        ]
    return [
        head + f"{NOT_INDEPENDENT} (e.g. a loop that exits on a counter, failures that come "
        "together in the same runs, a retry that hides them); predictions and what-ifs "
        "assume independence"
    ]


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
    findings: tuple[str, ...] = (),
    chain: Chain | None = None,
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
        findings=findings,
        chain=chain,
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


# -- the JSON form ------------------------------------------------------------------------


def _est(e: Estimate | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {"value": e.value, "low": e.low, "high": e.high, "method": e.method}


def report_to_dict(rep: Report) -> dict[str, Any]:
    """Return the JSON-ready dict of a report (schema ``coordgap.report/2``)."""
    e = rep.end_to_end
    return {
        "schema": SCHEMA,
        "graph": rep.graph,
        "basis": rep.basis,
        "confidence": rep.confidence,
        "visits_method": rep.visits_method,
        "end_to_end": {
            "observed": _est(e.observed),
            "predicted": _est(e.predicted),
            "naive": _est(e.naive),
            "run_errors": _est(e.run_errors),
            "runs": e.runs,
            "finished": e.finished,
            "clean": e.clean,
            "ok": e.ok,
            "error": e.error,
            "interrupted": e.interrupted,
            "error_types": dict(e.error_types),
            "error_at": dict(e.error_at),
        },
        "findings": list(rep.findings),
        "naive": rep.naive,
        "gap": rep.gap,
        "components": [
            {
                "kind": c.kind,
                "name": c.name,
                "source": c.source,
                "target": c.target,
                "executions": c.executions,
                "failures": c.failures,
                "reliability": _est(c.reliability),
                "first_attempt": _est(c.first_attempt),
                "visits": c.visits,
                "in_product": c.in_product,
                "attempts": c.attempts,
                "attempt_failures": c.attempt_failures,
                "contract_failures": c.contract_failures,
                "faults": c.faults,
                "error_types": dict(c.error_types),
                "kinds": dict(c.kinds),
                "targets": dict(c.targets),
                "gap_share": c.gap_share,
                "if_perfect": c.if_perfect,
                "gain": c.gain,
                "max_attempts": c.max_attempts,
            }
            for c in rep.components
        ],
        "weakest": [[c.kind, c.name] for c in rep.weakest],
        "notes": list(rep.notes),
        "internal_errors": rep.internal_errors,
        "chain": None if rep.chain is None else rep.chain.to_dict(),
        "fault_detection": None if rep.fault_detection is None else rep.fault_detection.to_dict(),
    }


def render_json(rep: Report, *, indent: int | None = 2) -> str:
    """Return the report as JSON; :func:`report_from_json` reads it back unchanged.

    Example::

        Path("baseline.json").write_text(render_json(rep))
    """
    return json.dumps(report_to_dict(rep), indent=indent, sort_keys=False, allow_nan=False)


def _corrupt(why: str) -> ConfigurationError:
    return ConfigurationError(
        f"not a readable coordgap report ({why}); write reports with Report.to_json() or "
        "`coordgap report --format json`, and do not edit them by hand"
    )


def _read_est(data: Any) -> Estimate:
    if not isinstance(data, Mapping):
        raise _corrupt("an estimate is not an object")
    value = data["value"]
    return Estimate(
        None if value is None else float(value),
        float(data["low"]),
        float(data["high"]),
        str(data["method"]),
    )


def report_from_dict(data: Mapping[str, Any]) -> Report:
    """Rebuild a report from :func:`report_to_dict` output (schema checked)."""
    schema = data.get("schema") if isinstance(data, Mapping) else None
    if schema not in (SCHEMA, SCHEMA_V1):
        if isinstance(schema, str) and schema.startswith("coordgap.report/"):
            raise ConfigurationError(
                f"this report was written with schema {schema!r}, but this coordgap reads "
                f"{SCHEMA!r}; install the coordgap version that wrote it, or re-create the "
                "report from the ledger with this version"
            )
        raise _corrupt(f'no "schema": {SCHEMA!r} field')
    try:
        comps = []
        for c in data["components"]:
            fa = c.get("first_attempt")
            comps.append(
                ComponentReport(
                    kind=c["kind"],
                    name=str(c["name"]),
                    executions=int(c["executions"]),
                    failures=int(c["failures"]),
                    reliability=_read_est(c["reliability"]),
                    visits=float(c["visits"]),
                    in_product=bool(c["in_product"]),
                    source=c.get("source"),
                    target=c.get("target"),
                    first_attempt=None if fa is None else _read_est(fa),
                    attempts=int(c.get("attempts", 0)),
                    attempt_failures=int(c.get("attempt_failures", 0)),
                    contract_failures=int(c.get("contract_failures", 0)),
                    faults=int(c.get("faults", 0)),
                    error_types=_proxy(c.get("error_types", {})),
                    kinds=_proxy(c.get("kinds", {})),
                    targets=_proxy(c.get("targets", {})),
                    gap_share=None if c.get("gap_share") is None else float(c["gap_share"]),
                    if_perfect=None if c.get("if_perfect") is None else float(c["if_perfect"]),
                    gain=float(c.get("gain", 0.0)),
                    max_attempts=int(c.get("max_attempts", 1)),
                )
            )
            if comps[-1].kind not in ("node", "handoff", "router"):
                raise _corrupt(f"unknown component kind {comps[-1].kind!r}")
        if data["basis"] not in ("ledger", "audit", "what-if"):
            raise _corrupt(f"unknown basis {data['basis']!r}")
        e = data["end_to_end"]
        end_to_end = EndToEnd(
            observed=_read_est(e["observed"]),
            predicted=_read_est(e["predicted"]),
            naive=_read_est(e["naive"]),
            run_errors=_read_est(e["run_errors"]),
            runs=int(e["runs"]),
            finished=int(e["finished"]),
            clean=int(e["clean"]),
            ok=int(e["ok"]),
            error=int(e["error"]),
            interrupted=int(e["interrupted"]),
            error_types=_proxy(e.get("error_types", {})),
            error_at=_proxy(e.get("error_at", {})),
        )
        weakest = [(str(k), str(n)) for k, n in data.get("weakest", [])]
        known = {(c.kind, c.name) for c in comps}
        if any(ref not in known for ref in weakest):
            raise _corrupt("'weakest' names a component that is not in 'components'")
        fd = data.get("fault_detection")
        rep = _freeze(
            graph=str(data["graph"]),
            basis=data["basis"],
            confidence=float(data["confidence"]),
            components=comps,
            end_to_end=end_to_end,
            visits_method=data.get("visits_method", "flow"),
            notes=tuple(str(n) for n in data.get("notes", [])),
            internal_errors=int(data.get("internal_errors", 0)),
            weakest=weakest,
            findings=tuple(str(f) for f in data.get("findings", [])),
            chain=None if data.get("chain") is None else Chain.from_dict(data["chain"]),
        )
        if fd is None:
            return rep
        return dataclasses.replace(
            rep,
            fault_detection=FaultDetection(
                injected=int(fd["injected"]),
                met=_proxy(fd["met"]),
                confidence=rep.confidence,
            ),
        )
    except ConfigurationError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _corrupt(f"{type(exc).__name__}: {exc}") from exc


def _proxy(data: Any) -> Mapping[str, int]:
    from types import MappingProxyType

    if not isinstance(data, Mapping):
        raise _corrupt("a count table is not an object")
    return MappingProxyType({str(k): int(v) for k, v in data.items()})


def report_from_json(text: str | bytes) -> Report:
    """Rebuild a report from :func:`render_json` output.

    Raises:
        ConfigurationError: the text is not JSON, not a coordgap report, or
            uses another schema version; the message says what to do.

    Example::

        rep = report_from_json(Path("baseline.json").read_text())
    """
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _corrupt(f"invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise _corrupt("the top level is not an object")
    return report_from_dict(data)


# -- Mermaid -----------------------------------------------------------------------------------
