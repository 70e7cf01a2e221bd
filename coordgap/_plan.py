"""Planning: the cheapest changes that lift predicted end to end to a target.

The model (:class:`_Model`) is the report's absorbing chain, re-solved with other
reliabilities: a node's task with more attempts (``1 - (1 - p1)^k``, ``p1`` its
first-attempt reliability, routers included), a component made perfect. The report's
uncertainty is carried to every figure by the delta method. :func:`coordgap.what_if`
evaluates one set of changes on it; :func:`recommend` searches the cheapest set that
reaches a target -- by default its *lower bound* at the report's confidence, so that
the plan still reaches the target when the measured reliabilities were a little lucky.
The cost model (units are arbitrary, only their ratio matters):

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

This module works on a report's values (its components and chain) and builds no
report, so the report itself can offer ``rep.recommend(target)``.

Example::

    plan = coordgap.recommend(rep, target=0.95)
    print(plan)
    rep2 = coordgap.what_if(rep, **plan.as_kwargs()).report
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ._chain import Chain
from ._checks import checked_probability
from ._predict import Param, chain_of, log_variance_of, param_key, params_of
from ._stats import Estimate, log_variance
from ._stats import z as _z
from .errors import ConfigurationError
from .topology import handoff_name, handoff_pair, path_of

if TYPE_CHECKING:
    from ._report import ComponentReport, Report

__all__ = ["Plan", "PlanStep", "recommend", "retried"]

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


def _alternative(
    rep: Report, c: ComponentReport, alt: float | str | Sequence[str], extra: Mapping[str, float]
) -> float:
    """Return r_alt: a number, or the product of the alternative path's nodes and handoffs."""
    if isinstance(alt, int | float) and not isinstance(alt, bool):
        checked_probability(alt, f"fallback for {_label(c)}", noun="a reliability")
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
