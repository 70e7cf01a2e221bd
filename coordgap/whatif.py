"""What-if planning: what end to end would a retry, a fallback or a hardened handoff buy?

The report predicts end to end by solving the graph's absorbing chain (every node,
handoff and router reliability on its state or transition, the routing rates as
observed; ``coordgap._chain``). A what-if changes some reliabilities and solves the
same chain again -- on loops and branches too, where a product of ``r^visits``
would be biased -- and propagates the report's uncertainty to the new figure (the
delta method, as for the report's own prediction):

- **retries** ``{"analyze": 3}``: the node's *task* gets up to 3 attempts
  (LangGraph's ``RetryPolicy(max_attempts=3)``). A task is the node and the
  routers on it: LangGraph runs a conditional edge inside its source's task, so
  a retry retries the router too. Its reliability becomes ``1 - (1 - p1)^3``
  with ``p1`` the measured *first-attempt* reliability of the task (when the
  node already has a ``RetryPolicy``: ``first_attempt_ok / executions``, which
  counts a router failure on a retried attempt; without one: the node's
  reliability times its routers'). The routers on the node then count as part
  of the task. The number is attempts in total, whatever the graph has now:
  ``{"analyze": 1}`` is the node without its retries. Attempts are assumed to
  fail independently; a failure that repeats on every attempt (a bad input, a
  broken contract the retry does not fix) makes it optimistic.
- **fallback** ``{"retrieve -> analyze": "retrieve -> cache -> analyze"}`` or
  ``{"analyze": 0.9}``: when the component fails, an alternative is tried:
  ``r + (1 - r) · r_alt``, where ``r_alt`` is a number or the product of the
  nodes and handoffs along the alternative path (measured, or given in
  ``reliability=``). Independence again.
- **perfect** ``["retrieve -> analyze"]``: the component never fails (``r = 1``).
  For the routes that named no node (``a -> __unknown__``) that means they go
  where the valid routes out of ``a`` go.
- **reliability** ``{"synthesize": 0.99}``: the component's reliability is
  set to the value.

Overrides apply in that order: ``reliability`` first (it replaces the
measured value, first attempt included), then ``retries``, ``fallback`` and
``perfect``. Handoffs are named ``"a -> b"`` (``"a->b"`` and ``("a", "b")``
too; the old ``"a→b"`` still works, with a DeprecationWarning).

:func:`recommend` searches the cheapest set of retries and hardened
handoffs/routers that lifts the predicted end to end to a target -- by default
its *lower bound* at the report's confidence, so that the plan still reaches the
target when the measured reliabilities were a little lucky. The cost model
(units are arbitrary, only their ratio matters):

- one extra attempt on a node costs ``retry_cost`` (1): retries are one line
  of configuration, but every extra attempt costs latency and tokens when it
  fires; going from the graph's current ``max_attempts`` to ``k`` costs the
  difference;
- hardening a handoff or router (a contract plus a repair or a deterministic
  fallback, so it no longer fails) costs ``harden_cost`` (3): it is code to
  write and keep.

Node failures are only ever fixed by retries here: a node cannot be made
perfect by configuration. Among plans of equal cost the one with fewer
changes wins, then the one with the higher prediction.

Example::

    rep = coordgap.report(app)
    print(what_if(rep, retries={"analyze": 3}, perfect=["retrieve -> analyze"]))
    plan = recommend(rep, target=0.95)
    print(plan)
    rep2 = what_if(rep, **plan.as_kwargs()).report
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ._chain import Chain
from ._names import handoff_pair, path_of
from ._predict import Param, log_variance_of, param_key
from ._stats import log_variance
from ._stats import z as _z
from .errors import ConfigurationError
from .report import (
    ComponentReport,
    EndToEnd,
    Estimate,
    Report,
    _assemble,
    _Draft,
    chain_of,
    params_of,
)
from .topology import handoff_name

__all__ = [
    "Plan",
    "PlanStep",
    "WhatIf",
    "WhatIfChange",
    "recommend",
    "retried",
    "what_if",
    "what_if_command",
]

Ref = str | tuple[str, str]
PlanOn = Literal["low", "point"]

INDEPENDENCE = (
    "retries and fallbacks assume independent attempts: eventual = 1 - (1 - r1)^k, "
    "fallback = r + (1 - r) * r_alt"
)

NO_DATA = "no data: the report has no finished runs, so there is nothing to predict from"


# -- naming components ----------------------------------------------------------------


def _component(rep: Report, ref: Ref) -> ComponentReport:
    """Return the component a name refers to: node, router, or handoff (``a -> b``, ``(a, b)``)."""
    pair = handoff_pair(ref, stacklevel=4)
    if pair is not None:
        if pair in rep.handoffs:
            return rep.handoffs[pair]
    elif isinstance(ref, str):
        if ref in rep.nodes:
            return rep.nodes[ref]
        if ref in rep.routers:
            return rep.routers[ref]
    known = sorted([*rep.nodes, *rep.routers, *(handoff_name(a, b) for a, b in rep.handoffs)])
    raise ConfigurationError(
        f"{ref!r} is not a component of graph {rep.graph!r}; known: {', '.join(known)}"
    )


def _label(c: ComponentReport) -> str:
    return c.label


def _key(c: ComponentReport) -> str:
    return param_key(c.kind, c.name)


def retried(r1: float, attempts: int) -> float:
    """Return the eventual reliability of ``attempts`` independent tries at ``r1`` each.

    Example::

        >>> round(retried(0.96, 3), 6)
        0.999936
    """
    if attempts < 1:
        raise ConfigurationError(f"attempts must be at least 1 (got {attempts!r})")
    return 1.0 - (1.0 - r1) ** attempts


# -- the model: the report's chain, re-solved with other reliabilities --------------------


@dataclass(frozen=True)
class _Model:
    """The predicted end to end as a function of the components' reliabilities."""

    rep: Report
    chain: Chain
    params: Mapping[str, Param]
    comps: Mapping[str, ComponentReport]
    routers_at: Mapping[str, tuple[str, ...]]
    z: float
    intervals: bool

    @classmethod
    def of(cls, rep: Report) -> _Model:
        chain = chain_of(rep)
        params = params_of(rep)
        comps = {_key(c): c for c in rep.components}
        routers_at: dict[str, list[str]] = {}
        for c in rep.routers.values():
            routers_at.setdefault(c.source or "", []).append(_key(c))
        intervals = any(p.var > 0 for p in params.values())
        return cls(
            rep,
            chain,
            params,
            comps,
            {k: tuple(v) for k, v in routers_at.items()},
            _z(rep.confidence),
            intervals,
        )

    @property
    def has_data(self) -> bool:
        return self.rep.predicted is not None and bool(self.chain.params() & set(self.params))

    def counted(self, key: str) -> bool:
        return key in self.params and key in self.chain.params()

    def evaluate(
        self, params: Mapping[str, Param], *, interval: bool = True
    ) -> tuple[float, float, float]:
        """Return (point, low, high) of predicted end to end with these parameters."""
        theta = {k: p.theta() for k, p in params.items()}
        sol = self.chain.solve(theta)
        value = sol.value(self.chain.start)
        if not interval or not self.intervals or value <= 0.0:
            return value, value, value
        grad, rate_grad, _ = self.chain.gradient(theta, sol)
        sd = math.sqrt(log_variance_of(self.chain, params, value, grad, rate_grad))
        return (
            value,
            max(0.0, value * math.exp(-self.z * sd)),
            min(1.0, value * math.exp(self.z * sd)),
        )

    def naive(self, params: Mapping[str, Param]) -> float:
        theta = {k: (1.0 if p.coordination else p.theta()) for k, p in params.items()}
        return self.chain.solve(theta).value(self.chain.start)

    # -- a node's task and its retries ---------------------------------------------------

    def first_attempt(self, node: str, params: Mapping[str, Param]) -> tuple[float, float]:
        """Return (p1, Var p1): the first-attempt reliability of the node's task."""
        c = self.comps[node]
        routers = [params[r] for r in self.routers_at.get(c.name, ()) if r in params]
        has_policy = c.max_attempts > 1 or c.attempts > c.executions
        if c.first_attempt is not None and c.first_attempt.value is not None and c.executions:
            ok = round(c.first_attempt.value * c.executions)
            p1 = ok / c.executions
            var = p1 * p1 * log_variance(ok, c.executions)
            if has_policy:
                # With a RetryPolicy a router failure on a retried attempt is a failed
                # attempt of the node: the first-attempt share already holds the routers.
                return p1, var
        else:
            p = params.get(node)
            if p is None:
                return 0.0, 0.0
            p1, var = p.value, p.var
        for r in routers:
            var = var * r.value * r.value + p1 * p1 * r.var
            p1 *= r.value
        return p1, var

    def with_retries(
        self, params: dict[str, Param], node: str, attempts: int, p1: float, var1: float
    ) -> tuple[float, Estimate]:
        """Set the node's task to ``attempts`` tries at ``p1``; return (r, its Estimate)."""
        c = self.comps[node]
        r = retried(p1, attempts)
        slope = attempts * (1.0 - p1) ** (attempts - 1)
        params[node] = Param(node, "node", r, slope * slope * var1, False)
        for rk in self.routers_at.get(c.name, ()):
            if rk in params:
                params[rk] = Param(rk, "router", 1.0, 0.0, True)
        if c.first_attempt is not None and c.first_attempt.value is not None and self.intervals:
            fa = c.first_attempt
            lo, hi = retried(fa.low, attempts), retried(fa.high, attempts)
            return r, Estimate(r, min(lo, r), max(hi, r), "wilson")
        return r, Estimate(r, r, r, "given")


# -- what_if ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WhatIfChange:
    """One change, and what it alone does to the predicted end to end and the gap."""

    kind: str
    """``reliability``, ``retries``, ``fallback`` or ``perfect``."""
    component: str
    description: str
    before: float | None
    after: float | None
    visits: float
    predicted: float | None
    """Predicted end to end with this change alone."""
    delta_predicted: float
    gap: float | None
    """The coordination gap (naive - predicted) with this change alone."""
    delta_gap: float
    predicted_low: float | None = None
    predicted_high: float | None = None
    """The interval of ``predicted`` (propagated from the report's counts)."""


@dataclass(frozen=True)
class WhatIf:
    """The result of :func:`what_if`: a new predicted report and what each change moved.

    ``report`` is a full :class:`~coordgap.report.Report` (basis ``what-if``, or
    ``audit`` for a what-if on an audit: no observed side) that every renderer
    accepts; its predicted end to end carries the interval propagated from the
    counts the base report was made of.
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
    def interval(self) -> Estimate:
        """Predicted end to end with every change, with its interval."""
        return self.report.end_to_end.predicted

    @property
    def naive(self) -> float | None:
        """Naive end to end (handoffs and routers perfect) with every change."""
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
        b, a = self.base.end_to_end.predicted, self.interval
        return {
            "graph": self.base.graph,
            "before": {
                "predicted": self.base.predicted,
                "low": None if b.value is None else b.low,
                "high": None if b.value is None else b.high,
                "naive": self.base.naive,
                "gap": self.base.gap,
            },
            "after": {
                "predicted": self.predicted,
                "low": None if a.value is None else a.low,
                "high": None if a.value is None else a.high,
                "naive": self.naive,
                "gap": self.gap,
            },
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
                    "low": c.predicted_low,
                    "high": c.predicted_high,
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
        from .render import fmt, fmt_signed

        b = self.base
        if b.predicted is None:
            return f"what-if on {b.graph!r}\n  {NO_DATA}"
        lines = [
            f"what-if on {b.graph!r}",
            f"  predicted end to end  {_with_interval(b.end_to_end.predicted)} -> "
            f"{_with_interval(self.interval)}  ({fmt_signed(self.delta_predicted)})",
            f"  naive                 {fmt(b.naive)} -> {fmt(self.naive)}",
            f"  coordination gap      {fmt(b.gap)} -> {fmt(self.gap)}  "
            f"({fmt_signed(self.delta_gap)})",
        ]
        if self.changes:
            lines.append("each change alone:")
            width = max(len(c.description) for c in self.changes)
            for c in self.changes:
                lines.append(
                    f"  {c.description:<{width}}  r {fmt(c.before, 4)} -> {fmt(c.after, 4)}  "
                    f"end to end {fmt_signed(c.delta_predicted, 4)}  "
                    f"gap {fmt_signed(c.delta_gap, 4)}"
                )
        lines += [f"assumes: {a}" for a in self.assumptions]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def _with_interval(e: Estimate) -> str:
    from .render import fmt

    if e.value is None:
        return "-"
    if e.method in ("given", "none") or e.low == e.high:
        return fmt(e.value)
    return f"{fmt(e.value)} [{fmt(e.low)}, {fmt(e.high)}]"


def _f(x: float | None) -> str:
    from .render import fmt

    return fmt(x)


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
        retries: node name -> attempts of its task in total
            (``RetryPolicy(max_attempts=k)``); the eventual reliability is
            ``1 - (1 - p1)^k`` with ``p1`` the task's measured first-attempt
            reliability (independent attempts); routers on the node are part of
            its task.
        fallback: component -> a reliability, or an alternative path
            (``"a -> c -> b"`` or ``["a", "c", "b"]``) tried when the component
            fails: ``r + (1 - r) · r_alt``.
        perfect: components that never fail.
        reliability: component -> reliability to assume instead of the measured
            one; also the reliability of nodes and handoffs that only exist on
            a fallback path.

    The new predicted end to end comes with the interval the report's counts
    allow (delta method through the chain), so a change is never more certain
    than the data behind it.

    Raises:
        ConfigurationError: an unknown component, a reliability outside [0, 1],
            attempts below 1, or a fallback path through an unknown component.

    Example::

        w = what_if(rep, retries={"analyze": 3}, perfect=["retrieve -> analyze"],
                    reliability={"synthesize": 0.99})
        print(w.predicted, w.interval.low, w.delta_predicted, w.gap)
    """
    model = _Model.of(rep)
    steps: list[tuple[str, ComponentReport, str, Any]] = []
    extra: dict[str, float] = {}  # reliabilities of components only on fallback paths
    overridden: dict[str, float] = {}
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
        overridden[_key(c)] = float(value)
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
        steps.append(("fallback", c, f"{_label(c)} falls back to {alt}", r_alt))
    for ref in perfect or ():
        c = _component(rep, ref)
        steps.append(("perfect", c, f"{_label(c)} perfect", 1.0))

    def apply(
        params: dict[str, Param],
        shown: dict[str, Estimate],
        step: tuple[str, ComponentReport, str, Any],
    ) -> None:
        kind, c, _desc, value = step
        key = _key(c)
        cur = params.get(key)
        u_base = cur.u_base if cur is not None else None
        if kind == "reliability":
            params[key] = Param(key, c.kind, value, 0.0, c.kind != "node", u_base)
            shown[key] = Estimate(value, value, value, "given")
        elif kind == "retries":
            if key in overridden:
                p1 = overridden[key]
                for rk in model.routers_at.get(c.name, ()):
                    if rk in params:
                        p1 *= params[rk].value
                var1 = 0.0
            else:
                p1, var1 = model.first_attempt(key, params)
            _, est = model.with_retries(params, key, value, p1, var1)
            shown[key] = est
            for rk in model.routers_at.get(c.name, ()):
                if rk in params:
                    shown[rk] = Estimate(1.0, 1.0, 1.0, "given")
        elif kind == "fallback":
            r = cur.value if cur is not None else (c.reliability.value or 0.0)
            new = r + (1.0 - r) * value
            var = (cur.var if cur is not None else 0.0) * (1.0 - value) ** 2
            params[key] = Param(key, c.kind, new, var, c.kind != "node", u_base)
            old = shown.get(key, c.reliability)
            lo = old.low + (1.0 - old.low) * value
            hi = old.high + (1.0 - old.high) * value
            shown[key] = Estimate(new, min(lo, new), max(hi, new), old.method)
        else:
            params[key] = Param(key, c.kind, 1.0, 0.0, c.kind != "node", u_base)
            shown[key] = Estimate(1.0, 1.0, 1.0, "given")

    base_params = dict(model.params)
    changes: list[WhatIfChange] = []
    base_e = rep.end_to_end.predicted
    base_point = base_e.value or 0.0
    base_gap = rep.gap or 0.0
    combined = dict(base_params)
    shown: dict[str, Estimate] = {}
    for step in steps:
        key = _key(step[1])
        alone = dict(base_params)
        if step[0] in ("fallback", "retries") and key in overridden:
            # a fallback or a retry on an overridden value starts from the override
            apply(alone, {}, ("reliability", step[1], "", overridden[key]))
        apply(alone, {}, step)
        apply(combined, shown, step)
        before = base_params[key].value if key in base_params else step[1].reliability.value
        after = alone[key].value if key in alone else None
        figures: tuple[float, float, float, float] | None = None
        if model.has_data and model.counted(key):
            point, low, high = model.evaluate(alone)
            figures = (point, low, high, model.naive(alone) - point)
        elif model.has_data:
            figures = (base_point, base_e.low, base_e.high, base_gap)
        changes.append(
            WhatIfChange(
                kind=step[0],
                component=_label(step[1]),
                description=step[2],
                before=before,
                after=after,
                visits=step[1].visits,
                predicted=None if figures is None else figures[0],
                delta_predicted=0.0 if figures is None else figures[0] - base_point,
                gap=None if figures is None else figures[3],
                delta_gap=0.0 if figures is None else figures[3] - base_gap,
                predicted_low=None if figures is None else figures[1],
                predicted_high=None if figures is None else figures[2],
            )
        )
    assumptions = []
    if any(s[0] in ("retries", "fallback") for s in steps):
        assumptions.append(INDEPENDENCE)
    unvisited = [c.component for c in changes if not model.counted(param_key_of(rep, c.component))]
    if unvisited and model.has_data:
        assumptions.append(
            "no effect on components with no data in the report: " + ", ".join(unvisited)
        )
    if not model.has_data:
        assumptions.append(NO_DATA)
    new = _rebuild(rep, model, combined, shown, steps, assumptions)
    return WhatIf(base=rep, report=new, changes=tuple(changes), assumptions=tuple(assumptions))


def param_key_of(rep: Report, label: str) -> str:
    """Return the chain parameter of the component labelled ``label``."""
    for c in rep.components:
        if c.label == label:
            return _key(c)
    return label


def _norm(ref: Ref) -> str:
    pair = handoff_pair(ref, stacklevel=5)
    if pair is not None:
        return handoff_name(*pair)
    return str(ref)


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
    path = path_of(alt, stacklevel=5)
    if c.kind == "handoff":
        if len(path) < 2 or path[0] != c.source or path[-1] != c.target:
            raise ConfigurationError(
                f"the fallback of handoff {_label(c)} must be a path from {c.source} to "
                f"{c.target}, e.g. '{c.source} -> other -> {c.target}' (got {alt!r})"
            )
        nodes, hops = path[1:-1], list(itertools.pairwise(path))
    else:
        nodes, hops = path, list(itertools.pairwise(path))

    def rate_of(name: str, pair: tuple[str, str] | None) -> float:
        key = name if pair is None else handoff_name(*pair)
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
    model: _Model,
    params: Mapping[str, Param],
    shown: Mapping[str, Estimate],
    steps: Sequence[tuple[str, ComponentReport, str, Any]],
    assumptions: Sequence[str],
) -> Report:
    """Return a Report with the new reliabilities; every figure re-solved on the same chain."""
    drafts = []
    estimates: dict[tuple[str, str], Estimate] = {}
    for c in rep.components:
        key = _key(c)
        fa = c.first_attempt
        drafts.append(
            _Draft(
                c.kind,
                c.name,
                c.executions,
                c.failures,
                c.in_product,
                c.source,
                c.target,
                {
                    "attempts": c.attempts,
                    "attempt_failures": c.attempt_failures,
                    "first_attempt_ok": (
                        0 if fa is None or fa.value is None else round(fa.value * c.executions)
                    ),
                    "contract_failures": c.contract_failures,
                    "faults": c.faults,
                    "error_types": c.error_types,
                    "kinds": c.kinds,
                    "targets": c.targets,
                    "max_attempts": c.max_attempts,
                },
                visits=c.visits,
            )
        )
        estimates[(c.kind, c.name)] = shown.get(key, c.reliability)
    e = rep.end_to_end
    notes = (
        *(n for n in rep.notes if n not in rep.findings),
        "what-if: " + "; ".join(s[2] for s in steps) if steps else "what-if: no change",
        *assumptions,
    )
    return _assemble(
        graph=rep.graph,
        basis="audit" if rep.basis == "audit" else "what-if",
        confidence=rep.confidence,
        drafts=drafts,
        chain=model.chain,
        params=params,
        end_to_end=EndToEnd(
            observed=Estimate(None, 0.0, 1.0, "none"),
            predicted=Estimate(None, 0.0, 1.0, "none"),
            naive=Estimate(None, 0.0, 1.0, "none"),
            run_errors=Estimate(None, 0.0, 1.0, "none"),
            runs=e.runs,
            finished=e.finished,
            clean=e.clean,
            ok=e.ok,
            error=e.error,
            interrupted=e.interrupted,
            error_types=e.error_types,
            error_at=e.error_at,
        ),
        visits_method="given",
        notes=tuple(notes),
        internal_errors=rep.internal_errors,
        estimates=estimates,
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
    low: float | None = None
    """The lower bound of ``predicted`` at the report's confidence."""

    @property
    def description(self) -> str:
        """E.g. ``analyze: 3 attempts`` or ``harden retrieve -> analyze``."""
        if self.kind == "retries":
            return f"{self.component}: {self.attempts} attempts"
        return f"harden {self.component}"


@dataclass(frozen=True)
class Plan:
    """The result of :func:`recommend`: the cheapest changes reaching ``target``, cheapest first.

    ``on`` says what had to reach the target: ``low`` (the lower bound of the
    predicted end to end at ``confidence``) or ``point``. ``before``/``after``
    are the predicted end to end (None without data), ``before_low``/``after_low``
    their lower bounds. ``no_data`` is True when the report had nothing to plan on.
    """

    target: float
    before: float | None
    after: float | None
    reached: bool
    steps: tuple[PlanStep, ...]
    cost: float
    cost_model: Mapping[str, float] = field(default_factory=dict)
    on: str = "low"
    confidence: float = 0.95
    before_low: float | None = None
    after_low: float | None = None
    no_data: bool = False

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
            "on": self.on,
            "confidence": self.confidence,
            "before": self.before,
            "before_low": self.before_low,
            "after": self.after,
            "after_low": self.after_low,
            "reached": self.reached,
            "no_data": self.no_data,
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
                    "low": s.low,
                }
                for s in self.steps
            ],
        }

    def to_text(self) -> str:
        """Return the plan as text, cheapest step first."""
        from .render import fmt

        if self.no_data:
            return f"no plan for {fmt(self.target)}: {NO_DATA}"
        head = "reaches" if self.reached else "cannot reach"
        bounded = (
            self.on == "low" and self.before_low is not None and self.before_low != self.before
        )
        if bounded:
            what = f"lower bound at {self.confidence * 100:g} %"
        elif self.on == "low":
            what = "given reliabilities: no interval"
        else:
            what = "point estimate"
        low = f" (low {fmt(self.before_low)} -> {fmt(self.after_low)})" if bounded else ""
        lines = [
            f"plan {head} {fmt(self.target)} ({what}): predicted {fmt(self.before)} -> "
            f"{fmt(self.after)}{low}, cost {self.cost:g}"
        ]
        if not self.steps:
            lines.append("  nothing to change" if self.reached else "  no change helps")
        for s in self.steps:
            bound = "" if s.low is None or not bounded else f" (low {fmt(s.low, 4)})"
            lines.append(
                f"  {s.description:<36} cost {s.cost:<4g} r {fmt(s.before, 4)} -> "
                f"{fmt(s.after, 4)}  end to end {fmt(s.predicted, 4)}{bound}"
            )
        lines.append(f"assumes: {INDEPENDENCE}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


@dataclass(frozen=True, slots=True)
class _Option:
    key: str
    component: str
    kind: str
    attempts: int | None
    cost: float
    w: float
    """Surrogate: log of predicted with this change alone minus log predicted now."""


_PER_CELL = 3
_MAX_EVALUATIONS = 4000


def recommend(
    rep: Report,
    target: float,
    *,
    max_attempts: int = 5,
    retry_cost: float = 1.0,
    harden_cost: float = 3.0,
    on: PlanOn = "low",
) -> Plan:
    """Return the cheapest set of retries and hardened handoffs that reaches ``target``.

    Args:
        rep: the report to plan on.
        target: the end to end to reach (0 < target <= 1).
        max_attempts: the most attempts a retry may propose for one node (a node
            whose ``RetryPolicy`` already allows as many gets no retry option).
        retry_cost: cost of one extra attempt on a node.
        harden_cost: cost of making a handoff or router never fail.
        on: ``"low"`` (default): the plan must lift the *lower bound* of the
            predicted end to end, at the report's confidence, to the target --
            a plan made on a lucky sample still reaches it; ``"point"``: the
            point estimate.

    Among plans of equal cost the one with fewer changes wins, then the one with
    the higher prediction. Plans are searched on the same chain as the report (a
    Pareto front over cost and changes, each candidate checked by solving the
    chain). When ``target`` cannot be reached the plan with the highest figure is
    returned with ``reached=False``; with no data, ``no_data=True`` and no step.

    Example::

        plan = recommend(rep, 0.95)
        for step in plan.steps:       # cheapest first
            print(step.description, step.cost, step.predicted, step.low)
        what_if(rep, **plan.as_kwargs()).interval.low >= 0.95
    """
    if isinstance(target, bool) or not isinstance(target, int | float) or not 0.0 < target <= 1.0:
        raise ConfigurationError(f"target must be in (0, 1] (got {target!r})")
    if not isinstance(max_attempts, int) or max_attempts < 1:
        raise ConfigurationError(f"max_attempts must be an integer >= 1 (got {max_attempts!r})")
    if retry_cost < 0 or harden_cost < 0:
        raise ConfigurationError("costs must not be negative")
    if on not in ("low", "point"):
        raise ConfigurationError(f"on must be 'low' or 'point' (got {on!r})")
    cost_model = {
        "retry_cost": retry_cost,
        "harden_cost": harden_cost,
        "max_attempts": max_attempts,
    }
    model = _Model.of(rep)
    if not model.has_data:
        return Plan(
            float(target),
            None,
            None,
            False,
            (),
            0.0,
            cost_model,
            on,
            rep.confidence,
            no_data=True,
        )
    base = dict(model.params)
    before, before_low, _ = model.evaluate(base)

    def metric(point: float, low: float) -> float:
        return low if on == "low" else point

    def with_options(options: Iterable[_Option]) -> dict[str, Param]:
        params = dict(base)
        for o in options:
            c = model.comps[o.key]
            if o.kind == "retries":
                p1, var1 = model.first_attempt(o.key, base)
                model.with_retries(params, o.key, o.attempts or 1, p1, var1)
            else:
                cur = params[o.key]
                params[o.key] = Param(o.key, c.kind, 1.0, 0.0, True, cur.u_base)
        return params

    # One group of options per component: keep as is, or one change.
    groups: list[list[_Option]] = []
    log_before = math.log(before) if before > 0 else -math.inf
    for key in sorted(model.params):
        if not model.counted(key):
            continue
        c = model.comps[key]
        p = model.params[key]
        options: list[_Option] = []
        if c.kind == "node":
            current = max(1, c.max_attempts)
            p1, _ = model.first_attempt(key, base)
            for k in range(current + 1, max_attempts + 1):
                if retried(p1, k) <= p.value and not model.routers_at.get(c.name):
                    continue
                options.append(_Option(key, c.label, "retries", k, retry_cost * (k - current), 0.0))
        elif p.value < 1.0:
            options.append(_Option(key, c.label, "harden", None, harden_cost, 0.0))
        if not options:
            continue
        scored = []
        for o in options:
            point = model.evaluate(with_options([o]), interval=False)[0]
            w = (math.log(point) if point > 0 else -math.inf) - log_before
            scored.append(_Option(o.key, o.component, o.kind, o.attempts, o.cost, w))
        groups.append(scored)

    # The front: per (cost, number of changes), the few best plans by the surrogate.
    cells: dict[tuple[float, int], list[tuple[float, tuple[_Option, ...]]]] = {
        (0.0, 0): [(0.0, ())]
    }
    for options in groups:
        grown: dict[tuple[float, int], list[tuple[float, tuple[_Option, ...]]]] = {}
        for (cost, n), entries in cells.items():
            for w, partial in entries:
                grown.setdefault((cost, n), []).append((w, partial))
                for o in options:
                    cell = (round(cost + o.cost, 9), n + 1)
                    grown.setdefault(cell, []).append((w + o.w, (*partial, o)))
        cells = {
            cell: heapq.nlargest(_PER_CELL, entries, key=lambda e: e[0])
            for cell, entries in grown.items()
        }

    candidates = sorted(
        ((cost, n, -w, plan) for (cost, n), entries in cells.items() for w, plan in entries),
        key=lambda c: (c[0], c[1], c[2]),
    )
    target_f = float(target)
    best: tuple[float, float, float, tuple[_Option, ...]] | None = None  # metric, point, low
    chosen: tuple[_Option, ...] | None = None
    if metric(before, before_low) >= target_f - 1e-12:
        chosen = ()
    else:
        for evaluated, (_cost, _n, _negw, plan) in enumerate(candidates):
            if evaluated >= _MAX_EVALUATIONS:
                break
            pt, low, _ = model.evaluate(with_options(plan), interval=on == "low")
            m = metric(pt, low)
            if best is None or m > best[0] + 1e-12:
                best = (m, pt, low, plan)
            if m >= target_f - 1e-12:
                chosen = plan
                break
        if chosen is None:
            chosen = best[3] if best is not None else ()

    # Cheapest first; among equal costs the step that buys more first.
    ordered = sorted(chosen, key=lambda o: (o.cost, -o.w, o.component))
    steps: list[PlanStep] = []
    applied: list[_Option] = []
    for o in ordered:
        prev = with_options(applied)[o.key].value
        applied.append(o)
        params = with_options(applied)
        point, low, _ = model.evaluate(params)
        steps.append(
            PlanStep(
                kind=o.kind,
                component=o.component,
                attempts=o.attempts,
                cost=o.cost,
                before=prev,
                after=params[o.key].value,
                predicted=point,
                low=low,
            )
        )
    after, after_low, _ = model.evaluate(with_options(applied))
    return Plan(
        target=target_f,
        before=before,
        after=after,
        reached=metric(after, after_low) >= target_f - 1e-9,
        steps=tuple(steps),
        cost=sum(s.cost for s in steps),
        cost_model=cost_model,
        on=on,
        confidence=rep.confidence,
        before_low=before_low,
        after_low=after_low,
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
        "--perfect", action="append", metavar="COMPONENT", help="e.g. 'retrieve -> analyze'"
    )
    p.add_argument(
        "--reliability", action="append", metavar="COMPONENT=R", help="e.g. synthesize=0.99"
    )
    p.add_argument(
        "--fallback",
        action="append",
        metavar="COMPONENT=R|PATH",
        help="e.g. analyze=0.9 or 'a -> b=a -> c -> b'",
    )
    p.add_argument("--target", type=float, help="also print the cheapest plan reaching TARGET")
    p.add_argument(
        "--on",
        choices=("low", "point"),
        default="low",
        help="plan on the lower bound of predicted (default) or on the point estimate",
    )
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
        plan = recommend(rep, args.target, max_attempts=args.max_attempts, on=args.on)
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
    """Run ``coordgap what-if FILE [--retries node=k] [--perfect 'a -> b'] ... [--target 0.95]``.

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
