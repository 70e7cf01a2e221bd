"""Graphs with known failure rates, simulated run by run and tallied as the ledger counts.

No LangGraph, no coordgap math: a *process* is a small Python function that plays one run
of a graph with the rates of the table below, drawing every random outcome through a
:class:`Draw`, and writing what the ledger would count into a :class:`Tally` (the counting
semantics of ``coordgap.ledger``: a node's executions are tasks, a router decides on its
task's final attempt, a handoff is counted when LangGraph writes it, a contract failure
still delivers, a run that raised is finished but not clean).

Two ways to use a process:

- :func:`simulate` plays ``runs`` runs with a seeded RNG (what a live graph would do);
- :func:`patterns` enumerates every way one run can go, with its probability (a finite
  tree; loops are cut where a path's probability is below ``1e-8``), so that a
  ledger snapshot of ``runs`` runs is one multinomial draw over those patterns
  (:func:`sample`): thousands of 2 000-run snapshots per second, which is what the
  coverage tests need.

Every process comes with its ground truth, derived by hand in its docstring and computed
from the rates with a closed form (never from coordgap's output). ``truth_by_enumeration``
sums the probabilities of the clean patterns: a check of the process against its own
closed form.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from coordgap._ledger import HandoffStats, LedgerSnapshot, NodeStats, RouterStats, RunStats
from coordgap.topology import DeclaredHandoff, DeclaredRouter, Topology

START, END = "__start__", "__end__"


class Draw(Protocol):
    def chance(self, p: float) -> bool: ...

    def pick(self, weights: Sequence[float]) -> int: ...


class _Rng:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, weights: Sequence[float]) -> int:
        x = self.rng.random() * sum(weights)
        for i, w in enumerate(weights):
            x -= w
            if x < 0:
                return i
        return len(weights) - 1


class _Branch(Exception):
    def __init__(self, probs: Sequence[float]) -> None:
        self.probs = probs


class _Replay:
    """Replays a prefix of choices; the first choice beyond it raises _Branch."""

    def __init__(self, forced: Sequence[int]) -> None:
        self.forced = forced
        self.i = 0

    def _next(self, probs: Sequence[float]) -> int:
        if self.i < len(self.forced):
            self.i += 1
            return self.forced[self.i - 1]
        raise _Branch(probs)

    def chance(self, p: float) -> bool:
        if p >= 1.0:
            return True
        if p <= 0.0:
            return False
        return self._next((p, 1.0 - p)) == 0

    def pick(self, weights: Sequence[float]) -> int:
        total = sum(weights)
        return self._next([w / total for w in weights])


class Tally:
    """What the ledger counts for one run (or many: tallies add up)."""

    def __init__(self) -> None:
        self.c: Counter[tuple[Any, ...]] = Counter()
        self.clean = True

    def node(self, name: str, ok: bool, attempts: int = 1, error: str = "Fault") -> None:
        """A task: ``attempts`` attempts, the last one ``ok`` (earlier ones failed)."""
        c = self.c
        c[("n", name, "executions")] += 1
        c[("n", name, "attempts")] += attempts
        c[("n", name, "attempt_failures")] += attempts - 1 + (0 if ok else 1)
        if ok:
            c[("n", name, "first_attempt_ok")] += attempts == 1
        else:
            c[("n", name, "failures")] += 1
            self.clean = False
        if attempts > 1 or not ok:
            c[("ne", name, error)] += attempts - 1 + (0 if ok else 1)

    def handoff(
        self, source: str, target: str, kind: str = "edge", ok: bool = True, error: str = ""
    ) -> None:
        c = self.c
        c[("h", source, target, "transfers")] += 1
        c[("hk", source, target, kind)] += 1
        if not ok:
            c[("h", source, target, "failures")] += 1
            c[("hkf", source, target, kind)] += 1
            c[("he", source, target, error or "ContractViolation")] += 1
            if (error or "ContractViolation") == "ContractViolation":
                c[("h", source, target, "contract_failures")] += 1
            self.clean = False

    def router(self, name: str, source: str, ok: bool, targets: Sequence[str] = ()) -> None:
        c = self.c
        c[("r", name, source, "decisions")] += 1
        for t in targets:
            c[("rt", name, source, t)] += 1
        if not ok:
            c[("r", name, source, "failures")] += 1
            c[("re", name, source, "Fault")] += 1
            self.clean = False

    def run(self, ok: bool, error: str = "Fault", at: str | None = None) -> None:
        """End the run: ``ok`` or raised (``at``: raised with no component to blame)."""
        c = self.c
        c[("run", "runs")] += 1
        if ok:
            c[("run", "ok")] += 1
            c[("run", "clean")] += self.clean
        else:
            c[("run", "error")] += 1
            c[("runerr", error)] += 1
            if at is not None:
                c[("runat", at)] += 1


Process = Callable[[Draw, Tally], None]


@dataclass(frozen=True)
class Row:
    """A graph with known rates: its process, its topology and its hand-derived truth."""

    name: str
    process: Process
    topology: Topology
    truth: float
    history_free: bool = True
    note: str = ""
    audit_row: str = ""
    """The matching row of the audit's table (docs/report.md), if any."""
    extra: Mapping[str, Any] = field(default_factory=dict)


def simulate(row: Row, runs: int, seed: int) -> LedgerSnapshot:
    """Return the snapshot of ``runs`` runs played with ``random.Random(seed)``."""
    draw = _Rng(random.Random(seed))
    t = Tally()
    for _ in range(runs):
        t.clean = True
        row.process(draw, t)
    return snapshot(t.c, row.topology)


_PATTERNS: dict[str, tuple[list[float], list[list[tuple[tuple[Any, ...], int]]], float]] = {}


def patterns(row: Row, prune: float = 1e-8) -> tuple[list[float], list[list[tuple]], float]:
    """Return (cumulative probabilities, tallies, clean probability) of one run's patterns."""
    cached = _PATTERNS.get(row.name)
    if cached is not None:
        return cached
    merged: dict[tuple[Any, ...], float] = {}
    clean_mass = 0.0
    stack: list[tuple[tuple[int, ...], float]] = [((), 1.0)]
    while stack:
        forced, p = stack.pop()
        t = Tally()
        try:
            row.process(_Replay(forced), t)
        except _Branch as b:
            for i, q in enumerate(b.probs):
                if q > 0.0 and p * q >= prune:
                    stack.append(((*forced, i), p * q))
            continue
        key = tuple(sorted(t.c.items()))
        merged[key] = merged.get(key, 0.0) + p
        if t.c[("run", "clean")]:
            clean_mass += p
    total = sum(merged.values())
    assert total > 1.0 - 1e-4, f"{row.name}: pruned {1 - total:.2e} of the probability"
    cum: list[float] = []
    acc = 0.0
    tallies = []
    for key, p in merged.items():
        acc += p / total
        cum.append(acc)
        tallies.append(list(key))
    cum[-1] = 1.0
    out = (cum, tallies, clean_mass / total)
    _PATTERNS[row.name] = out
    return out


def truth_by_enumeration(row: Row) -> float:
    """P(clean run) summed over the enumerated patterns (checks the closed form)."""
    return patterns(row)[2]


def sample(row: Row, runs: int, rng: random.Random) -> LedgerSnapshot:
    """Return the snapshot of ``runs`` runs drawn as one multinomial over the run patterns."""
    cum, tallies, _ = patterns(row)
    picks: Counter[int] = Counter(bisect.bisect_right(cum, rng.random()) for _ in range(runs))
    total: Counter[tuple[Any, ...]] = Counter()
    for k, n in picks.items():
        for key, v in tallies[min(k, len(tallies) - 1)]:
            total[key] += n * v
    return snapshot(total, row.topology)


def snapshot(c: Mapping[tuple[Any, ...], int], topology: Topology) -> LedgerSnapshot:
    """Turn tallied counts into the LedgerSnapshot the ledger would hand out."""
    nodes: dict[str, dict[str, Any]] = {}
    handoffs: dict[tuple[str, str], dict[str, Any]] = {}
    routers: dict[str, dict[str, Any]] = {}
    runs: dict[str, Any] = {"error_types": {}, "error_at": {}}
    for key, v in c.items():
        if not v:
            continue
        tag = key[0]
        if tag == "n":
            nodes.setdefault(key[1], {"error_types": {}})[key[2]] = v
        elif tag == "ne":
            nodes.setdefault(key[1], {"error_types": {}})["error_types"][key[2]] = v
        elif tag in ("h", "hk", "hkf", "he"):
            h = handoffs.setdefault(
                (key[1], key[2]), {"kinds": {}, "kind_failures": {}, "error_types": {}}
            )
            if tag == "h":
                h[key[3]] = v
            else:
                field_ = {"hk": "kinds", "hkf": "kind_failures", "he": "error_types"}[tag]
                h[field_][key[3]] = v
        elif tag in ("r", "rt", "re"):
            r = routers.setdefault(key[1], {"source": key[2], "targets": {}, "error_types": {}})
            if tag == "r":
                r[key[3]] = v
            elif tag == "rt":
                r["targets"][key[3]] = v
            else:
                r["error_types"][key[3]] = v
        elif tag == "run":
            runs[key[1]] = v
        elif tag == "runerr":
            runs["error_types"][key[1]] = v
        elif tag == "runat":
            runs["error_at"][key[1]] = v

    def frozen(d: dict[str, Any]) -> dict[str, Any]:
        return {k: MappingProxyType(x) if isinstance(x, dict) else x for k, x in d.items()}

    return LedgerSnapshot(
        graph=topology.graph,
        nodes=MappingProxyType({k: NodeStats(**frozen(v)) for k, v in nodes.items()}),
        handoffs=MappingProxyType(
            {k: HandoffStats(k[0], k[1], **frozen(v)) for k, v in handoffs.items()}
        ),
        routers=MappingProxyType({k: RouterStats(k, **frozen(v)) for k, v in routers.items()}),
        runs=RunStats(**frozen(runs)),
        topology=topology,
    )


def _topology(
    graph: str,
    nodes: Sequence[str],
    edges: Sequence[tuple[str, str, str]],
    routers: Sequence[tuple[str, str, tuple[str, ...]]] = (),
    max_attempts: Mapping[str, int] | None = None,
) -> Topology:
    return Topology(
        graph=graph,
        nodes=tuple(nodes),
        handoffs=tuple(DeclaredHandoff(s, t, k) for s, t, k in edges),
        routers=tuple(DeclaredRouter(n, s, ts) for n, s, ts in routers),
        entry=tuple(t for s, t, _ in edges if s == START),
        max_attempts=dict(max_attempts or {}),
    )


# -- the rows -------------------------------------------------------------------------------

SEED_NODES = {"retrieve": 0.98, "analyze": 0.96, "cross_check": 0.97, "synthesize": 0.95}
SEED_HANDOFF = 0.97


def linear(d: Draw, t: Tally) -> None:
    """The seed's agent: four nodes in a line, the three handoffs between them at 0.97.

    A node failure raises (the run stops); a handoff failure is a broken contract: the
    target still runs, the run is not clean. Truth: 0.98·0.96·0.97·0.95·0.97³ = 0.7912393.
    """
    prev = START
    t.handoff(START, "retrieve")
    for i, (name, r) in enumerate(SEED_NODES.items()):
        if i:
            ok = d.chance(SEED_HANDOFF)
            t.handoff(prev, name, "edge", ok)
        if not d.chance(r):
            t.node(name, False)
            t.run(False)
            return
        t.node(name, True)
        prev = name
    t.handoff(prev, END)
    t.run(True)


BRANCH = {"a": 0.98, "b": 0.98, "c": 0.83, "c->d": 0.90}


def branch(d: Draw, t: Tally) -> None:
    """START -> a -(router pick, 50/50)-> b -> END | c -> d -> END.

    Paths after a: b alone (0.98) or c, the handoff c -> d and d (0.83·0.90·1 = 0.747).
    Truth: 0.98·(0.5·0.98 + 0.5·0.747) = 0.98·0.8635 = 0.846230.
    """
    t.handoff(START, "a")
    if not d.chance(BRANCH["a"]):
        t.node("a", False)
        t.run(False)
        return
    t.node("a", True)
    if d.pick((0.5, 0.5)) == 0:
        t.router("pick", "a", True, ("b",))
        t.handoff("a", "b", "conditional")
        ok = d.chance(BRANCH["b"])
        t.node("b", ok)
        if not ok:
            t.run(False)
            return
        t.handoff("b", END)
    else:
        t.router("pick", "a", True, ("c",))
        t.handoff("a", "c", "conditional")
        if not d.chance(BRANCH["c"]):
            t.node("c", False)
            t.run(False)
            return
        t.node("c", True)
        t.handoff("c", "d", "edge", d.chance(BRANCH["c->d"]))
        t.node("d", True)
        t.handoff("d", END)
    t.run(True)


LOOP = {"work": 0.9, "check": 0.99, "check->work": 0.98, "back": 0.5}


def geometric_loop(d: Draw, t: Tally) -> None:
    """START -> work -> check -(router: back with probability 0.5)-> work | END.

    One pass succeeds with s = 0.9·0.99 = 0.891; going back also crosses the handoff
    check -> work (0.98). F = s·(0.5 + 0.5·0.98·F), so
    truth = 0.5·s / (1 - 0.5·0.98·s) = 0.4455 / 0.56341 = 0.790720. E[visits of work] = 2.
    """
    t.handoff(START, "work")
    while True:
        if not d.chance(LOOP["work"]):
            t.node("work", False)
            t.run(False)
            return
        t.node("work", True)
        t.handoff("work", "check")
        if not d.chance(LOOP["check"]):
            t.node("check", False)
            t.run(False)
            return
        t.node("check", True)
        if d.chance(LOOP["back"]):
            t.router("again", "check", True, ("work",))
            t.handoff("check", "work", "conditional", d.chance(LOOP["check->work"]))
            continue
        t.router("again", "check", True, (END,))
        t.handoff("check", END, "conditional")
        t.run(True)
        return


COUNTER = {"work": 0.98, "work->check": 0.8, "k": (1, 2, 3, 4, 5)}


def counter_loop(d: Draw, t: Tally) -> None:
    """START -> work -> check -(router: back while count < k)-> work | END, k ~ U{1..5}.

    The router's choice depends on the run's history (its counter), not only on where the
    run is: the Markov assumption does not hold. Every pass crosses work (0.98, raises) and
    the handoff work -> check (0.8, a broken contract: the run goes on, not clean).
    Truth: E[(0.98·0.8)^k] = (1/5)·Σ_{k=1..5} 0.784^k = 0.510909.
    """
    k = COUNTER["k"][d.pick([1.0] * len(COUNTER["k"]))]
    t.handoff(START, "work")
    count = 0
    while True:
        if not d.chance(COUNTER["work"]):
            t.node("work", False)
            t.run(False)
            return
        t.node("work", True)
        count += 1
        t.handoff("work", "check", "edge", d.chance(COUNTER["work->check"]))
        t.node("check", True)
        if count < k:
            t.router("until", "check", True, ("work",))
            t.handoff("check", "work", "conditional")
            continue
        t.router("until", "check", True, (END,))
        t.handoff("check", END, "conditional")
        t.run(True)
        return


def router_first(d: Draw, t: Tally) -> None:
    """START -> a -(router to_b, 0.8, raises)-> b (0.8) -> END. Truth 0.8·0.8 = 0.64.

    The audit's D1: the router decides only after a succeeded; when it raises, the run
    raises and b is never reached.
    """
    t.handoff(START, "a")
    t.node("a", True)
    if not d.chance(0.8):
        t.router("to_b", "a", False)
        t.run(False)
        return
    t.router("to_b", "a", True, ("b",))
    t.handoff("a", "b", "conditional")
    ok = d.chance(0.8)
    t.node("b", ok)
    if not ok:
        t.run(False)
        return
    t.handoff("b", END)
    t.run(True)


FAN = {"a": 0.99, "b": 0.95, "c": 0.90, "d": 0.98, "a->": 0.99, "->d": 0.97}


def fan_out_join(d: Draw, t: Tally) -> None:
    """START -> a -> (b, c in parallel) -> join -> d -> END.

    Both branches always run; the join runs d once for its two handoffs. When b or c
    raises, the superstep raises: the other branch's handoff into the join is lost with the
    run (never delivered, not counted). Handoffs a -> b, a -> c at 0.99 and b -> d, c -> d at
    0.97 are broken contracts (the run goes on). Truth: the product over everything that
    runs, 0.99·0.99²·0.95·0.90·0.97²·0.98 = 0.764964.
    """
    t.handoff(START, "a")
    if not d.chance(FAN["a"]):
        t.node("a", False)
        t.run(False)
        return
    t.node("a", True)
    t.handoff("a", "b", "edge", d.chance(FAN["a->"]))
    t.handoff("a", "c", "edge", d.chance(FAN["a->"]))
    ok_b, ok_c = d.chance(FAN["b"]), d.chance(FAN["c"])
    t.node("b", ok_b)
    t.node("c", ok_c)
    if not (ok_b and ok_c):
        t.run(False)
        return
    t.handoff("b", "d", "join", d.chance(FAN["->d"]))
    t.handoff("c", "d", "join", d.chance(FAN["->d"]))
    ok = d.chance(FAN["d"])
    t.node("d", ok)
    if not ok:
        t.run(False)
        return
    t.handoff("d", END)
    t.run(True)


def retried_router(d: Draw, t: Tally) -> None:
    """The audit's D2: a router (0.5) on node a with RetryPolicy(max_attempts=5).

    LangGraph runs the router inside a's task, so a failed router retries a: a router
    failure on attempts 1-4 is a failed attempt of a; on the 5th it is the router's
    failure and the run raises. Truth: 1 - 0.5⁵ = 0.96875.
    """
    t.handoff(START, "a")
    for attempt in range(1, 6):
        if d.chance(0.5):
            t.node("a", True, attempts=attempt)
            t.router("to_b", "a", True, ("b",))
            t.handoff("a", "b", "conditional")
            t.node("b", True)
            t.handoff("b", END)
            t.run(True)
            return
        if attempt == 5:
            t.node("a", True, attempts=5)
            t.router("to_b", "a", False)
            t.run(False)
            return


def _truths() -> dict[str, float]:
    s = LOOP["work"] * LOOP["check"]
    q = LOOP["back"]
    rk = COUNTER["work"] * COUNTER["work->check"]
    return {
        "linear": math.prod(SEED_NODES.values()) * SEED_HANDOFF**3,
        "branch": BRANCH["a"] * (0.5 * BRANCH["b"] + 0.5 * BRANCH["c"] * BRANCH["c->d"]),
        "geometric loop": (1 - q) * s / (1 - q * LOOP["check->work"] * s),
        "counter loop": sum(rk**k for k in COUNTER["k"]) / len(COUNTER["k"]),
        "router first": 0.8 * 0.8,
        "fan-out join": FAN["a"]
        * FAN["a->"] ** 2
        * FAN["b"]
        * FAN["c"]
        * FAN["->d"] ** 2
        * FAN["d"],
        "retried router": 1 - 0.5**5,
    }


TRUTH = _truths()

ROWS: dict[str, Row] = {
    "linear": Row(
        "linear",
        linear,
        _topology(
            "linear",
            list(SEED_NODES),
            [
                (START, "retrieve", "edge"),
                ("retrieve", "analyze", "edge"),
                ("analyze", "cross_check", "edge"),
                ("cross_check", "synthesize", "edge"),
                ("synthesize", END, "edge"),
            ],
        ),
        TRUTH["linear"],
        audit_row="linear, the seed's agent",
    ),
    "branch": Row(
        "branch",
        branch,
        _topology(
            "branch",
            ["a", "b", "c", "d"],
            [
                (START, "a", "edge"),
                ("a", "b", "conditional"),
                ("a", "c", "conditional"),
                ("b", END, "edge"),
                ("c", "d", "edge"),
                ("d", END, "edge"),
            ],
            [("pick", "a", ("b", "c"))],
        ),
        TRUTH["branch"],
        audit_row="branch 50/50, paths 0.980 / 0.747",
    ),
    "geometric loop": Row(
        "geometric loop",
        geometric_loop,
        _topology(
            "loop",
            ["work", "check"],
            [
                (START, "work", "edge"),
                ("work", "check", "edge"),
                ("check", "work", "conditional"),
                ("check", END, "conditional"),
            ],
            [("again", "check", ("work", END))],
        ),
        TRUTH["geometric loop"],
        audit_row="geometric loop, E[visits] = 2",
    ),
    "counter loop": Row(
        "counter loop",
        counter_loop,
        _topology(
            "counter",
            ["work", "check"],
            [
                (START, "work", "edge"),
                ("work", "check", "edge"),
                ("check", "work", "conditional"),
                ("check", END, "conditional"),
            ],
            [("until", "check", ("work", END))],
        ),
        TRUTH["counter loop"],
        history_free=False,
        audit_row="loop until count = k, k ~ U{1..5}",
    ),
    "router first": Row(
        "router first",
        router_first,
        _topology(
            "router",
            ["a", "b"],
            [(START, "a", "edge"), ("a", "b", "conditional"), ("b", END, "edge")],
            [("to_b", "a", ("b",))],
        ),
        TRUTH["router first"],
        audit_row="router 0.8 in front of node 0.8",
    ),
    "fan-out join": Row(
        "fan-out join",
        fan_out_join,
        _topology(
            "fan",
            ["a", "b", "c", "d"],
            [
                (START, "a", "edge"),
                ("a", "b", "edge"),
                ("a", "c", "edge"),
                ("b", "d", "join"),
                ("c", "d", "join"),
                ("d", END, "edge"),
            ],
        ),
        TRUTH["fan-out join"],
    ),
    "retried router": Row(
        "retried router",
        retried_router,
        _topology(
            "retry",
            ["a", "b"],
            [(START, "a", "edge"), ("a", "b", "conditional"), ("b", END, "edge")],
            [("to_b", "a", ("b",))],
            max_attempts={"a": 5},
        ),
        TRUTH["retried router"],
    ),
}
