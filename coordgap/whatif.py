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

:func:`coordgap.recommend` (``coordgap._plan``) searches the cheapest set of such
changes that reaches a target, on the same model.

Example::

    rep = coordgap.report(app)
    print(what_if(rep, retries={"analyze": 3}, perfect=["retrieve -> analyze"]))
    plan = recommend(rep, target=0.95)
    print(plan)
    rep2 = what_if(rep, **plan.as_kwargs()).report
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._checks import checked_probability
from ._plan import (
    INDEPENDENCE,
    NO_DATA,
    Plan,
    PlanStep,
    Ref,
    _alternative,
    _component,
    _key,
    _label,
    _Model,
    _norm,
    param_key_of,
    recommend,
    retried,
)
from ._predict import Param
from ._report import ComponentReport, EndToEnd, Report, _assemble, _Draft
from ._stats import Estimate
from .errors import ConfigurationError

__all__ = [
    "Plan",
    "PlanStep",
    "WhatIf",
    "WhatIfChange",
    "recommend",
    "retried",
    "what_if",
]


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
        checked_probability(value, f"reliability[{ref!r}]", noun="a reliability")
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
