"""What-if planning: what end to end would a retry, a fallback or a hardened handoff buy?

The report predicts end to end as ``Π r_c^v_c`` over every component ``c``
(node, handoff, router) with ``v_c`` its visits per run. A what-if changes
some ``r_c`` and recomputes the product, keeping the visits:

- **retries** ``{"analyze": 3}``: the node gets up to 3 attempts in total
  (LangGraph's ``RetryPolicy(max_attempts=3)``). Its reliability becomes
  ``1 - (1 - r1)^3`` with ``r1`` its *measured first-attempt* reliability
  (its plain reliability when it was never retried). This assumes attempts
  fail independently; a failure that repeats on every attempt (a bad input, a
  broken contract the retry does not fix) makes it optimistic.
- **fallback** ``{"retrieve→analyze": "retrieve→cache→analyze"}`` or
  ``{"analyze": 0.9}``: when the component fails, an alternative path is
  tried: ``r + (1 - r) · r_alt``, where ``r_alt`` is a number or the product
  of the nodes and handoffs along the alternative path (measured, or given in
  ``reliability=``). Independence again.
- **perfect** ``["retrieve→analyze"]``: the component never fails (``r = 1``);
  the product of the rest is what is left.
- **reliability** ``{"synthesize": 0.99}``: the component's reliability is
  set to the value.

Overrides apply in that order: ``reliability`` first (it replaces the
measured value, first attempt included), then ``retries``, ``fallback`` and
``perfect``. Handoffs are named ``"a→b"``, ``"a->b"`` or ``("a", "b")``.

:func:`recommend` searches the cheapest set of retries and hardened
handoffs/routers that lifts the predicted end to end to a target. The cost
model (units are arbitrary, only their ratio matters):

- one extra attempt on a node costs ``retry_cost`` (1): retries are one line
  of configuration, but every extra attempt costs latency and tokens when it
  fires, so 3 attempts cost 2;
- hardening a handoff or router (a contract plus a repair or a deterministic
  fallback, so it no longer fails) costs ``harden_cost`` (3): it is code to
  write and keep.

Node failures are only ever fixed by retries here: a node cannot be made
perfect by configuration. Among plans of equal cost the one with fewer
changes wins, then the one with the higher prediction. The search is exact
(a Pareto front over cost and log-reliability, one component at a time).

Example::

    rep = coordgap.report(app)
    print(what_if(rep, retries={"analyze": 3}, perfect=["retrieve→analyze"]))
    plan = recommend(rep, target=0.95)
    print(plan)
    rep2 = what_if(rep, **plan.as_kwargs()).report
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigurationError
from .report import ComponentReport, Report

__all__ = [
    "Plan",
    "PlanStep",
    "WhatIf",
    "WhatIfChange",
    "recommend",
    "what_if",
    "what_if_command",
]

Ref = str | tuple[str, str]

INDEPENDENCE = (
    "retries and fallbacks assume independent attempts: eventual = 1 - (1 - r1)^k, "
    "fallback = r + (1 - r) * r_alt"
)


# -- naming components ----------------------------------------------------------------


def _split_handoff(text: str) -> tuple[str, str] | None:
    for arrow in ("→", "->"):
        if arrow in text:
            parts = [p.strip() for p in text.split(arrow)]
            if len(parts) == 2 and all(parts):
                return (parts[0], parts[1])
            return None
    return None


def _path(text: str | Sequence[str]) -> list[str]:
    if isinstance(text, str):
        for arrow in ("→", "->"):
            if arrow in text:
                return [p.strip() for p in text.split(arrow)]
        return [text.strip()]
    return [str(p) for p in text]


def _component(rep: Report, ref: Ref) -> ComponentReport:
    """Return the component a name refers to: node, router, or handoff (``a→b``, ``(a, b)``)."""
    if isinstance(ref, tuple):
        if len(ref) == 2 and ref in rep.handoffs:
            return rep.handoffs[ref]
    elif isinstance(ref, str):
        pair = _split_handoff(ref)
        if pair is not None and pair in rep.handoffs:
            return rep.handoffs[pair]
        if pair is None:
            if ref in rep.nodes:
                return rep.nodes[ref]
            if ref in rep.routers:
                return rep.routers[ref]
    known = sorted([*rep.nodes, *rep.routers, *(f"{a}→{b}" for a, b in rep.handoffs)])
    raise ConfigurationError(
        f"{ref!r} is not a component of graph {rep.graph!r}; known: {', '.join(known)}"
    )


def _label(c: ComponentReport) -> str:
    if c.kind == "handoff":
        return f"{c.source}→{c.target}"
    return c.name


# -- the model ----------------------------------------------------------------------------


def _rate(c: ComponentReport) -> float | None:
    return c.reliability.value


def _first_attempt(c: ComponentReport) -> float | None:
    if c.first_attempt is not None and c.first_attempt.value is not None:
        return c.first_attempt.value
    return c.reliability.value


def retried(r1: float, attempts: int) -> float:
    """Return the eventual reliability of ``attempts`` independent tries at ``r1`` each.

    Example::

        >>> round(retried(0.96, 3), 6)
        0.999936
    """
    if attempts < 1:
        raise ConfigurationError(f"attempts must be at least 1 (got {attempts!r})")
    return 1.0 - (1.0 - r1) ** attempts


def _product(factors: Iterable[tuple[float, float]]) -> float:
    """Π r^v; exactly 0 when a visited component has r = 0."""
    log = 0.0
    for r, v in factors:
        if v <= 0:
            continue
        if r <= 0.0:
            return 0.0
        log += v * math.log(r)
    return math.exp(log)


def _counted(c: ComponentReport) -> bool:
    return c.in_product and c.visits > 0 and c.reliability.value is not None


@dataclass(frozen=True, slots=True)
class _Model:
    """The predicted end to end as a function of per-component reliabilities."""

    rates: Mapping[tuple[str, str], float]
    visits: Mapping[tuple[str, str], float]
    kinds: Mapping[tuple[str, str], str]

    @classmethod
    def of(cls, rep: Report) -> _Model:
        rates: dict[tuple[str, str], float] = {}
        visits: dict[tuple[str, str], float] = {}
        kinds: dict[tuple[str, str], str] = {}
        for c in rep.components:
            if _counted(c):
                key = (c.kind, c.name)
                rates[key] = float(c.reliability.value)  # type: ignore[arg-type]
                visits[key] = c.visits
                kinds[key] = c.kind
        return cls(rates, visits, kinds)

    def predicted(self, rates: Mapping[tuple[str, str], float]) -> float:
        return _product((rates[k], self.visits[k]) for k in self.visits)

    def naive(self, rates: Mapping[tuple[str, str], float]) -> float:
        return _product((rates[k], self.visits[k]) for k in self.visits if self.kinds[k] == "node")


# -- what_if ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WhatIfChange:
    """One change, and what it alone does to the predicted end to end and the gap."""

    kind: str
    """``reliability``, ``retries``, ``fallback`` or ``perfect``."""
    component: str
    description: str
    before: float
    after: float
    visits: float
    predicted: float
    """Predicted end to end with this change alone."""
    delta_predicted: float
    gap: float
    """The coordination gap (naive - predicted) with this change alone."""
    delta_gap: float


@dataclass(frozen=True)
class WhatIf:
    """The result of :func:`what_if`: a new predicted report and what each change moved.

    ``report`` is a full :class:`~coordgap.report.Report` (basis ``audit``:
    point values, no observed side) that every renderer accepts.
    """

    base: Report
    report: Report
    changes: tuple[WhatIfChange, ...]
    assumptions: tuple[str, ...] = ()

    @property
    def predicted(self) -> float | None:
        """Predicted end to end with every change."""
        return self.report.predicted

    @property
    def naive(self) -> float | None:
        """Nodes-only product with every change."""
        return self.report.naive

    @property
    def gap(self) -> float | None:
        """Coordination gap with every change."""
        return self.report.gap

    @property
    def delta_predicted(self) -> float:
        """How much every change together moves the predicted end to end."""
        return (self.predicted or 0.0) - (self.base.predicted or 0.0)

    @property
    def delta_gap(self) -> float:
        """How much every change together moves the gap."""
        return (self.gap or 0.0) - (self.base.gap or 0.0)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "graph": self.base.graph,
            "before": {
                "predicted": self.base.predicted,
                "naive": self.base.naive,
                "gap": self.base.gap,
            },
            "after": {"predicted": self.predicted, "naive": self.naive, "gap": self.gap},
            "delta_predicted": self.delta_predicted,
            "delta_gap": self.delta_gap,
            "changes": [
                {
                    "kind": c.kind,
                    "component": c.component,
                    "description": c.description,
                    "before": c.before,
                    "after": c.after,
                    "visits": c.visits,
                    "predicted": c.predicted,
                    "delta_predicted": c.delta_predicted,
                    "gap": c.gap,
                    "delta_gap": c.delta_gap,
                }
                for c in self.changes
            ],
            "assumptions": list(self.assumptions),
        }

    def to_text(self) -> str:
        """Return a plain-text summary: before, after, and each change alone."""
        b = self.base
        lines = [
            f"what-if on {b.graph!r}",
            f"  predicted end to end  {_f(b.predicted)} -> {_f(self.predicted)}  "
            f"({self.delta_predicted:+.3f})",
            f"  naive (nodes only)    {_f(b.naive)} -> {_f(self.naive)}",
            f"  coordination gap      {_f(b.gap)} -> {_f(self.gap)}  ({self.delta_gap:+.3f})",
        ]
        if self.changes:
            lines.append("each change alone:")
            width = max(len(c.description) for c in self.changes)
            for c in self.changes:
                lines.append(
                    f"  {c.description:<{width}}  r {c.before:.4f} -> {c.after:.4f}  "
                    f"end to end {c.delta_predicted:+.4f}  gap {c.delta_gap:+.4f}"
                )
        lines += [f"assumes: {a}" for a in self.assumptions]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def what_if(
    rep: Report,
    *,
    retries: Mapping[str, int] | None = None,
    fallback: Mapping[Ref, float | str | Sequence[str]] | None = None,
    perfect: Iterable[Ref] | None = None,
    reliability: Mapping[Ref, float] | None = None,
) -> WhatIf:
    """Return the predicted report after some changes, and what each change moves.

    Args:
        rep: a report (live, audited, or loaded with ``Report.from_json``).
        retries: node name -> attempts in total (``RetryPolicy(max_attempts=k)``);
            the eventual reliability is ``1 - (1 - r1)^k`` with ``r1`` the
            measured first-attempt reliability (independent attempts).
        fallback: component -> a reliability, or an alternative path
            (``"a→c→b"`` or ``["a", "c", "b"]``) tried when the component
            fails: ``r + (1 - r) · r_alt``.
        perfect: components that never fail.
        reliability: component -> reliability to assume instead of the measured
            one; also the reliability of nodes and handoffs that only exist on
            a fallback path.

    Raises:
        ConfigurationError: an unknown component, a reliability outside [0, 1],
            attempts below 1, or a fallback path through an unknown component.

    Example::

        w = what_if(rep, retries={"analyze": 3}, perfect=["retrieve→analyze"],
                    reliability={"synthesize": 0.99})
        print(w.predicted, w.delta_predicted, w.gap)
    """
    model = _Model.of(rep)
    base_rates = dict(model.rates)
    steps: list[tuple[str, ComponentReport, str, Any]] = []
    extra: dict[str, float] = {}  # reliabilities of components only on fallback paths
    first: dict[tuple[str, str], float] = {}
    for ref, value in (reliability or {}).items():
        _check_rate(f"reliability[{ref!r}]", value)
        try:
            c = _component(rep, ref)
        except ConfigurationError:
            if not fallback:
                raise
            extra[_norm(ref)] = float(value)
            continue
        steps.append(("reliability", c, f"{_label(c)} at {value:g}", float(value)))
        first[(c.kind, c.name)] = float(value)
    for name, k in (retries or {}).items():
        c = _component(rep, name)
        if c.kind != "node":
            raise ConfigurationError(f"retries apply to nodes; {name!r} is a {c.kind}")
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ConfigurationError(f"retries[{name!r}] must be attempts >= 1 (got {k!r})")
        steps.append(("retries", c, f"{_label(c)} with {k} attempts", k))
    for ref, alt in (fallback or {}).items():
        c = _component(rep, ref)
        r_alt = _alternative(rep, c, alt, extra)
        desc = f"{_label(c)} falls back to {alt}"
        steps.append(("fallback", c, desc, r_alt))
    for ref in perfect or ():
        c = _component(rep, ref)
        steps.append(("perfect", c, f"{_label(c)} perfect", 1.0))

    def apply(
        rates: dict[tuple[str, str], float], step: tuple[str, ComponentReport, str, Any]
    ) -> None:
        kind, c, _desc, value = step
        key = (c.kind, c.name)
        current = rates.get(key, _rate(c) or 0.0)
        if kind == "reliability":
            rates[key] = value
        elif kind == "retries":
            r1 = first.get(key)
            if r1 is None:
                r1 = _first_attempt(c) or 0.0
            rates[key] = retried(r1, value)
        elif kind == "fallback":
            rates[key] = current + (1.0 - current) * value
        else:
            rates[key] = 1.0

    changes: list[WhatIfChange] = []
    base_pred = model.predicted(base_rates)
    base_gap = model.naive(base_rates) - base_pred
    combined = dict(base_rates)
    for step in steps:
        key = (step[1].kind, step[1].name)
        alone = dict(base_rates)
        if step[0] == "fallback" and key in first:  # a fallback on an overridden value
            alone[key] = first[key]
        apply(alone, step)
        apply(combined, step)
        pred = model.predicted(alone) if key in model.visits else base_pred
        gap = model.naive(alone) - pred if key in model.visits else base_gap
        changes.append(
            WhatIfChange(
                kind=step[0],
                component=_label(step[1]),
                description=step[2],
                before=base_rates.get(key, _rate(step[1]) or 0.0),
                after=alone.get(key, 0.0),
                visits=step[1].visits,
                predicted=pred,
                delta_predicted=pred - base_pred,
                gap=gap,
                delta_gap=gap - base_gap,
            )
        )
    assumptions = []
    if any(s[0] in ("retries", "fallback") for s in steps):
        assumptions.append(INDEPENDENCE)
    unvisited = [c.component for c in changes if c.visits <= 0]
    if unvisited:
        assumptions.append(
            "no effect on components with no visits in the report: " + ", ".join(unvisited)
        )
    new = _rebuild(rep, combined, steps, assumptions)
    return WhatIf(base=rep, report=new, changes=tuple(changes), assumptions=tuple(assumptions))


def _norm(ref: Ref) -> str:
    if isinstance(ref, tuple):
        return f"{ref[0]}→{ref[1]}"
    pair = _split_handoff(ref)
    return ref if pair is None else f"{pair[0]}→{pair[1]}"


def _check_rate(what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ConfigurationError(f"{what} must be a reliability between 0 and 1 (got {value!r})")


def _alternative(
    rep: Report, c: ComponentReport, alt: float | str | Sequence[str], extra: Mapping[str, float]
) -> float:
    """Return r_alt: a number, or the product of the alternative path's nodes and handoffs."""
    if isinstance(alt, int | float) and not isinstance(alt, bool):
        _check_rate(f"fallback for {_label(c)}", alt)
        return float(alt)
    path = _path(alt)  # type: ignore[arg-type]
    if c.kind == "handoff":
        if len(path) < 2 or path[0] != c.source or path[-1] != c.target:
            raise ConfigurationError(
                f"the fallback of handoff {_label(c)} must be a path from {c.source} to "
                f"{c.target}, e.g. '{c.source}→other→{c.target}' (got {alt!r})"
            )
        nodes, hops = path[1:-1], list(itertools.pairwise(path))
    else:
        nodes, hops = path, list(itertools.pairwise(path))

    def rate_of(name: str, pair: tuple[str, str] | None) -> float:
        key = name if pair is None else f"{pair[0]}→{pair[1]}"
        if key in extra:
            return extra[key]
        found = rep.nodes.get(name) if pair is None else rep.handoffs.get(pair)
        if found is not None and found.reliability.value is not None:
            return float(found.reliability.value)
        if pair is not None:
            return 1.0  # an unmeasured handoff on the alternative path is not modelled
        raise ConfigurationError(
            f"fallback path {alt!r}: no measured reliability for node {name!r}; "
            f"give it with reliability={{{name!r}: ...}}"
        )

    r = 1.0
    for n in nodes:
        r *= rate_of(n, None)
    for pair in hops:
        r *= rate_of("", pair)
    return r


def _rebuild(
    rep: Report,
    rates: Mapping[tuple[str, str], float],
    steps: Sequence[tuple[str, ComponentReport, str, Any]],
    assumptions: Sequence[str],
) -> Report:
    """Return a Report (basis audit) with the new reliabilities; every figure recomputed."""
    from .report import _NO_DATA, _assemble, _Draft

    drafts = []
    for c in rep.components:
        key = (c.kind, c.name)
        counted = _counted(c)
        drafts.append(
            _Draft(
                c.kind,
                c.name,
                c.executions,
                c.failures,
                counted,
                c.source,
                c.target,
                {
                    "attempts": c.attempts,
                    "attempt_failures": c.attempt_failures,
                    "first_attempt_ok": 0,
                    "contract_failures": c.contract_failures,
                    "faults": c.faults,
                    "error_types": c.error_types,
                    "kinds": c.kinds,
                    "targets": c.targets,
                },
                visits=c.visits,
                given=rates.get(key) if counted else None,
            )
        )
    e = rep.end_to_end
    notes = (
        *rep.notes,
        "what-if: " + "; ".join(s[2] for s in steps) if steps else "what-if: no change",
        *assumptions,
    )
    return _assemble(
        graph=rep.graph,
        basis="audit",
        confidence=rep.confidence,
        drafts=drafts,
        observed=_NO_DATA,
        run_errors=_NO_DATA,
        counts={
            "runs": e.runs,
            "finished": e.finished,
            "clean": e.clean,
            "ok": e.ok,
            "error": e.error,
            "interrupted": e.interrupted,
        },
        visits_method=rep.visits_method,
        notes=tuple(notes),
        internal_errors=rep.internal_errors,
    )


# -- recommend ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanStep:
    """One change of a plan: its cost, and the prediction with it and every cheaper step."""

    kind: str
    """``retries`` or ``harden``."""
    component: str
    attempts: int | None
    cost: float
    before: float
    after: float
    predicted: float
    """Predicted end to end with this step and every cheaper step of the plan."""

    @property
    def description(self) -> str:
        """E.g. ``analyze: 3 attempts`` or ``harden retrieve→analyze``."""
        if self.kind == "retries":
            return f"{self.component}: {self.attempts} attempts"
        return f"harden {self.component}"


@dataclass(frozen=True)
class Plan:
    """The result of :func:`recommend`: the cheapest changes reaching ``target``, cheapest first."""

    target: float
    before: float
    after: float
    reached: bool
    steps: tuple[PlanStep, ...]
    cost: float
    cost_model: Mapping[str, float] = field(default_factory=dict)

    def as_kwargs(self) -> dict[str, Any]:
        """Return the plan as :func:`what_if` keyword arguments (retries=..., perfect=...)."""
        retries = {s.component: s.attempts for s in self.steps if s.kind == "retries"}
        perfect = [s.component for s in self.steps if s.kind == "harden"]
        out: dict[str, Any] = {}
        if retries:
            out["retries"] = retries
        if perfect:
            out["perfect"] = perfect
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "target": self.target,
            "before": self.before,
            "after": self.after,
            "reached": self.reached,
            "cost": self.cost,
            "cost_model": dict(self.cost_model),
            "steps": [
                {
                    "kind": s.kind,
                    "component": s.component,
                    "attempts": s.attempts,
                    "cost": s.cost,
                    "before": s.before,
                    "after": s.after,
                    "predicted": s.predicted,
                }
                for s in self.steps
            ],
        }

    def to_text(self) -> str:
        """Return the plan as text, cheapest step first."""
        head = "reaches" if self.reached else "cannot reach"
        lines = [
            f"plan {head} {self.target:.3f}: predicted {self.before:.3f} -> {self.after:.3f}, "
            f"cost {self.cost:g}"
        ]
        if not self.steps:
            lines.append("  nothing to change" if self.reached else "  no change helps")
        for s in self.steps:
            lines.append(
                f"  {s.description:<36} cost {s.cost:<4g} r {s.before:.4f} -> {s.after:.4f}"
                f"  end to end {s.predicted:.4f}"
            )
        lines.append(f"assumes: {INDEPENDENCE}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


@dataclass(frozen=True, slots=True)
class _Option:
    key: tuple[str, str]
    component: str
    kind: str
    attempts: int | None
    cost: float
    rate: float
    w: float  # visits * log(rate), -inf at 0


def recommend(
    rep: Report,
    target: float,
    *,
    max_attempts: int = 5,
    retry_cost: float = 1.0,
    harden_cost: float = 3.0,
) -> Plan:
    """Return the cheapest set of retries and hardened handoffs that reaches ``target``.

    Args:
        rep: the report to plan on.
        target: the predicted end to end to reach (0 < target <= 1).
        max_attempts: the most attempts a retry may propose for one node.
        retry_cost: cost of one extra attempt on a node.
        harden_cost: cost of making a handoff or router never fail.

    The cost model and the independence assumption are in the module
    docstring. When ``target`` cannot be reached the plan with the highest
    prediction is returned with ``reached=False``.

    Example::

        plan = recommend(rep, 0.95)
        for step in plan.steps:       # cheapest first
            print(step.description, step.cost, step.predicted)
        what_if(rep, **plan.as_kwargs()).predicted >= 0.95
    """
    if isinstance(target, bool) or not isinstance(target, int | float) or not 0.0 < target <= 1.0:
        raise ConfigurationError(f"target must be in (0, 1] (got {target!r})")
    if not isinstance(max_attempts, int) or max_attempts < 1:
        raise ConfigurationError(f"max_attempts must be an integer >= 1 (got {max_attempts!r})")
    if retry_cost < 0 or harden_cost < 0:
        raise ConfigurationError("costs must not be negative")
    model = _Model.of(rep)
    by_key: dict[tuple[str, str], ComponentReport] = {(c.kind, c.name): c for c in rep.components}
    before = model.predicted(model.rates)
    cost_model = {
        "retry_cost": retry_cost,
        "harden_cost": harden_cost,
        "max_attempts": max_attempts,
    }

    def w(v: float, r: float) -> float:
        return -math.inf if r <= 0 else v * math.log(r)

    # One group of options per component: keep as is (cost 0) or one change.
    groups: list[list[_Option]] = []
    fixed = 0.0  # log-reliability of the components nothing can change
    for key, r in model.rates.items():
        c = by_key[key]
        v = model.visits[key]
        keep = _Option(key, _label(c), "keep", None, 0.0, r, w(v, r))
        options = [keep]
        if c.kind == "node":
            r1 = _first_attempt(c) or 0.0
            for k in range(2, max_attempts + 1):
                rk = retried(r1, k)
                if rk > r:
                    options.append(
                        _Option(
                            key, keep.component, "retries", k, retry_cost * (k - 1), rk, w(v, rk)
                        )
                    )
        elif r < 1.0:
            options.append(_Option(key, keep.component, "harden", None, harden_cost, 1.0, 0.0))
        if len(options) == 1:
            fixed += keep.w
        else:
            groups.append(options)

    # Exact search: the Pareto front of (cost, log-reliability) over partial plans.
    front: list[tuple[float, float, tuple[_Option, ...]]] = [(0.0, fixed, ())]
    for options in groups:
        grown = [
            (cost + o.cost, total + o.w, chosen if o.kind == "keep" else (*chosen, o))
            for cost, total, chosen in front
            for o in options
        ]
        grown.sort(key=lambda st: (st[0], -st[1], len(st[2])))
        front = [grown[0]]
        for st in grown[1:]:
            if st[1] > front[-1][1]:
                front.append(st)
    need = math.log(target) - 1e-12
    reaching = [st for st in front if st[1] >= need]
    if before >= target - 1e-12:
        chosen: tuple[_Option, ...] = ()
    elif reaching:
        chosen = min(reaching, key=lambda st: (st[0], len(st[2]), -st[1]))[2]
    else:
        chosen = max(front, key=lambda st: (st[1], -st[0]))[2]

    # Cheapest first; among equal costs the step that buys more first.
    def buys(o: _Option) -> float:
        return o.w - w(model.visits[o.key], model.rates[o.key])

    rates = dict(model.rates)
    steps = []
    for o in sorted(chosen, key=lambda o: (o.cost, -buys(o), o.component)):
        prev = rates[o.key]
        rates[o.key] = o.rate
        steps.append(
            PlanStep(
                kind=o.kind,
                component=o.component,
                attempts=o.attempts,
                cost=o.cost,
                before=prev,
                after=o.rate,
                predicted=model.predicted(rates),
            )
        )
    after = model.predicted(rates)
    return Plan(
        target=float(target),
        before=before,
        after=after,
        reached=after >= target - 1e-9,
        steps=tuple(steps),
        cost=sum(s.cost for s in steps),
        cost_model=cost_model,
    )


# -- command line --------------------------------------------------------------------------------


def _pairs(items: Sequence[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or ():
        for part in item.split(","):
            name, sep, value = part.rpartition("=")
            if not sep or not name.strip() or not value.strip():
                raise ConfigurationError(f"--{what} takes name=value (got {part!r})")
            out[name.strip()] = value.strip()
    return out


def _load_report(path: str) -> Report:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path!r}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"{path!r} is not JSON ({exc})") from exc
    if isinstance(data, dict) and "schema" not in data and {"nodes", "runs"} <= data.keys():
        from .ledger import LedgerSnapshot
        from .report import report

        try:
            return report(LedgerSnapshot.from_dict(data))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"{path!r} is not a readable ledger snapshot ({exc})") from exc
    return Report.from_json(text)


def _what_if_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="coordgap what-if",
        description="Predict end to end after retries, fallbacks or hardened handoffs; "
        "or find the cheapest plan reaching a target.",
    )
    add_what_if_arguments(p)
    return p


def add_what_if_arguments(p: argparse.ArgumentParser) -> None:
    """Add the what-if arguments to a parser (``coordgap what-if`` in cli.py)."""
    p.add_argument("file", help="a saved report (Report.to_json) or ledger snapshot (to_dict)")
    p.add_argument("--retries", action="append", metavar="NODE=ATTEMPTS", help="e.g. analyze=3")
    p.add_argument(
        "--perfect", action="append", metavar="COMPONENT", help="e.g. 'retrieve->analyze'"
    )
    p.add_argument(
        "--reliability", action="append", metavar="COMPONENT=R", help="e.g. synthesize=0.99"
    )
    p.add_argument(
        "--fallback",
        action="append",
        metavar="COMPONENT=R|PATH",
        help="e.g. analyze=0.9 or 'a->b=a->c->b'",
    )
    p.add_argument("--target", type=float, help="also print the cheapest plan reaching TARGET")
    p.add_argument("--max-attempts", type=int, default=5, help="most attempts a plan may propose")
    p.add_argument("--format", "-f", choices=("text", "json"), default="text")


def _number_or_path(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


def run_what_if(args: argparse.Namespace, out: Any) -> int:
    """Run a parsed ``what-if`` command, writing to ``out``; return the exit code."""
    rep = _load_report(args.file)
    retries = {}
    for name, value in _pairs(args.retries, "retries").items():
        try:
            retries[name] = int(value)
        except ValueError as exc:
            raise ConfigurationError(
                f"--retries {name}={value}: attempts must be an integer"
            ) from exc
    reliability: dict[Ref, float] = {}
    for name, value in _pairs(args.reliability, "reliability").items():
        try:
            reliability[name] = float(value)
        except ValueError as exc:
            raise ConfigurationError(f"--reliability {name}={value}: not a number") from exc
    fallback: dict[Ref, float | str] = {}
    for item in args.fallback or ():
        # The component may itself contain "->": split at the first "=".
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigurationError(f"--fallback takes component=reliability|path (got {item!r})")
        fallback[name.strip()] = _number_or_path(value.strip())
    perfect = [p.strip() for item in args.perfect or () for p in item.split(",") if p.strip()]
    result = what_if(
        rep, retries=retries, fallback=fallback, perfect=perfect, reliability=reliability
    )
    plan = None
    if args.target is not None:
        plan = recommend(rep, args.target, max_attempts=args.max_attempts)
    if args.format == "json":
        data: dict[str, Any] = {"what_if": result.to_dict()}
        if plan is not None:
            data["plan"] = plan.to_dict()
        out.write(json.dumps(data, indent=2) + "\n")
    else:
        out.write(result.to_text() + "\n")
        if plan is not None:
            out.write(plan.to_text() + "\n")
    return 0


def what_if_command(argv: Sequence[str] | None = None) -> int:
    """Run ``coordgap what-if FILE [--retries node=k] [--perfect a->b] ... [--target 0.95]``.

    Returns 0, or 2 on a usage or input error (message on stderr).

    Example::

        >>> what_if_command(["report.json", "--retries", "analyze=3"])  # doctest: +SKIP
        0
    """
    parser = _what_if_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return run_what_if(args, sys.stdout)
    except (ConfigurationError, OSError) as exc:
        print(f"coordgap what-if: error: {exc}", file=sys.stderr)
        return 2
