"""Overhead of coordgap next to bare LangGraph and the integrations users would pick instead.

Run::

    .venv/bin/python benchmarks/overhead.py            # default profile (a few minutes)
    .venv/bin/python benchmarks/overhead.py --quick    # short profile for CI (< 1 minute)
    .venv/bin/python benchmarks/overhead.py --write-docs   # also regenerate docs/performance.md

Every variant (bare, coordgap in each span mode, a hand-written naive wrapper,
each peer) runs in its own worker process, so peers that patch LangChain
globally cannot touch other rows. The coordinator runs the variants in rounds,
in a shuffled order per round. Each coordgap (and naive) worker also times the bare graph in its own process,
interleaved with the variant: its ratio is to that paired baseline, so a
process that happens to run faster or slower than another (memory layout, the
core it landed on) cancels out. The peers patch LangChain for their whole
process, and uninstrument() did not give OpenLLMetry's process its bare speed
back (measured), so their ratios are to the bare worker's process.

Every worker has the same OpenTelemetry setup: a TracerProvider with a
BatchSpanProcessor into an exporter that only counts, and a MeterProvider
with an InMemoryMetricReader that is never collected during timing (both set
as the global providers too, so peers find them the way they would in an
application). coordgap runs with a pydantic ``requires`` contract on every
node and its metrics on.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import gc
import itertools
import json
import operator
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypedDict

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "performance.md"

BARE = "bare"
COORDGAP_OFF = 'coordgap spans="off"'
COORDGAP_FAILURES = 'coordgap spans="failures"'
COORDGAP_ALL = 'coordgap spans="all"'
OPENINFERENCE = "OpenInference"
OPENLLMETRY = "OpenLLMetry"

NAIVE = "naive wrapper"
"""Per node, what a user might write by hand: a span made current, a counter add, a
pydantic validation of the state. The floor "all" stands on: the SDK's own span costs."""

COORDGAP_VARIANTS = (COORDGAP_OFF, COORDGAP_FAILURES, COORDGAP_ALL)
PEERS = {
    OPENINFERENCE: "openinference.instrumentation.langchain",
    OPENLLMETRY: "opentelemetry.instrumentation.langchain",
}
PEER_PACKAGES = {
    OPENINFERENCE: "openinference-instrumentation-langchain",
    OPENLLMETRY: "opentelemetry-instrumentation-langchain",
}

SCENARIOS = {
    "linear": "6-node linear graph, no-op nodes (invoke)",
    "fanout": "fan-out of 8 with Send, then a join node (invoke)",
    "loop": "one node visited 20 times through a conditional edge back (invoke)",
    "async": "6-node linear graph, async no-op nodes (ainvoke)",
    "sleep": "6-node linear graph, every node sleeps 1 ms (invoke)",
}


@dataclass(frozen=True)
class Profile:
    """How many rounds, and invokes per round per variant, for each scenario."""

    name: str
    rounds: int
    per_round: dict[str, int]
    warmup: int


QUICK = Profile(
    "quick",
    rounds=4,
    per_round={"linear": 40, "fanout": 12, "loop": 8, "async": 40, "sleep": 5},
    warmup=20,
)
DEFAULT = Profile(
    "default",
    rounds=20,
    per_round={"linear": 50, "fanout": 20, "loop": 15, "async": 50, "sleep": 8},
    warmup=50,
)


# -- graphs (used by the workers) ------------------------------------------------------


class LinearState(TypedDict):
    x: int


class FanoutState(TypedDict):
    x: int
    results: Annotated[list[int], operator.add]


class LoopState(TypedDict):
    i: int


def _models() -> dict[str, Any]:
    from pydantic import BaseModel

    class HasX(BaseModel):
        x: int

    class HasResults(BaseModel):
        results: list[int]

    class HasI(BaseModel):
        i: int

    return {"x": HasX, "results": HasResults, "i": HasI}


def _linear(async_nodes: bool = False, sleep_s: float = 0.0) -> tuple[Any, dict[str, str]]:
    from langgraph.graph import END, START, StateGraph

    builder = StateGraph(LinearState)
    names = [f"n{i}" for i in range(6)]
    for name in names:
        if async_nodes:

            async def node(state: LinearState) -> dict[str, int]:
                return {"x": state["x"] + 1}

        elif sleep_s:

            def node(state: LinearState) -> dict[str, int]:
                time.sleep(sleep_s)
                return {"x": state["x"] + 1}

        else:

            def node(state: LinearState) -> dict[str, int]:
                return {"x": state["x"] + 1}

        builder.add_node(name, node)
    builder.add_edge(START, names[0])
    for a, b in itertools.pairwise(names):
        builder.add_edge(a, b)
    builder.add_edge(names[-1], END)
    return builder, {n: "x" for n in names}


def _fanout() -> tuple[Any, dict[str, str]]:
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send

    def split(state: FanoutState) -> dict[str, Any]:
        return {"x": state["x"]}

    def fan(state: FanoutState):
        return [Send("work", {"x": i}) for i in range(8)]

    def work(payload: dict[str, int]) -> dict[str, list[int]]:
        return {"results": [payload["x"]]}

    def join(state: FanoutState) -> dict[str, Any]:
        return {"x": len(state["results"])}

    builder = StateGraph(FanoutState)
    builder.add_node("split", split)
    builder.add_node("work", work)
    builder.add_node("join", join)
    builder.add_edge(START, "split")
    builder.add_conditional_edges("split", fan, ["work"])
    builder.add_edge("work", "join")
    builder.add_edge("join", END)
    return builder, {"split": "x", "work": "x", "join": "results"}


def _loop() -> tuple[Any, dict[str, str]]:
    from langgraph.graph import END, START, StateGraph

    def step(state: LoopState) -> dict[str, int]:
        return {"i": state["i"] + 1}

    def again(state: LoopState) -> str:
        return "step" if state["i"] < 20 else END

    builder = StateGraph(LoopState)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", again, ["step", END])
    return builder, {"step": "i"}


def _naive(builder: Any, fields: dict[str, str], tracer_provider: Any, meter_provider: Any) -> Any:
    """Return a copy of the builder whose nodes each run under a hand-written wrapper."""
    import copy
    import functools
    import inspect

    from langgraph.graph import StateGraph

    tracer = tracer_provider.get_tracer("naive")
    counter = meter_provider.get_meter("naive").create_counter("naive.node.calls")
    models = _models()
    out = StateGraph(builder.state_schema)
    for name, spec in builder.nodes.items():
        fn = spec.runnable.func if spec.runnable.func is not None else spec.runnable.afunc
        model = models[fields[name]]
        attrs = {"node": name}

        def wrap(fn: Any = fn, name: str = name, model: Any = model, attrs: Any = attrs) -> Any:
            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def anode(state: Any) -> Any:
                    with tracer.start_as_current_span(name):
                        counter.add(1, attrs)
                        model.model_validate(state)
                        return await fn(state)

                return anode

            @functools.wraps(fn)
            def node(state: Any) -> Any:
                with tracer.start_as_current_span(name):
                    counter.add(1, attrs)
                    model.model_validate(state)
                    return fn(state)

            return node

        out.add_node(name, wrap())
    out.edges = copy.copy(builder.edges)
    out.branches = copy.deepcopy(builder.branches)
    out.waiting_edges = copy.copy(builder.waiting_edges)
    return out


def build_scenario(scenario: str) -> tuple[Any, dict[str, str], dict[str, Any], bool]:
    """Return (builder, contract field per node, input, is_async) for a scenario."""
    if scenario == "linear":
        builder, fields = _linear()
        return builder, fields, {"x": 0}, False
    if scenario == "async":
        builder, fields = _linear(async_nodes=True)
        return builder, fields, {"x": 0}, True
    if scenario == "sleep":
        builder, fields = _linear(sleep_s=0.001)
        return builder, fields, {"x": 0}, False
    if scenario == "fanout":
        builder, fields = _fanout()
        return builder, fields, {"x": 0, "results": []}, False
    if scenario == "loop":
        builder, fields = _loop()
        return builder, fields, {"i": 0}, False
    raise ValueError(f"unknown scenario {scenario!r}")


# -- worker: one variant, one process ---------------------------------------------------


class CountingExporter:
    """A span exporter that only counts what it is given."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.count += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class Worker:
    """Builds every scenario's graph for one variant and times invokes on request."""

    def __init__(self, variant: str, scenarios: Sequence[str]) -> None:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.variant = variant
        self.exporter = CountingExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(
            BatchSpanProcessor(self.exporter, max_queue_size=65_536)
        )
        self.metric_reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.metric_reader])
        trace.set_tracer_provider(self.tracer_provider)
        metrics.set_meter_provider(self.meter_provider)
        self.instrumentor: Any = None
        if variant == OPENINFERENCE:
            from openinference.instrumentation.langchain import LangChainInstrumentor

            self.instrumentor = LangChainInstrumentor()
            self._instrument_peer()
        elif variant == OPENLLMETRY:
            from opentelemetry.instrumentation.langchain import LangchainInstrumentor

            self.instrumentor = LangchainInstrumentor()
            self._instrument_peer()
        self.loop = asyncio.new_event_loop()
        self.apps: dict[str, tuple[Any, dict[str, Any], bool]] = {}
        # the bare graph again, timed in this process next to the variant (paired baseline)
        self.baselines: dict[str, Any] = {}
        for scenario in scenarios:
            builder, fields, inp, is_async = build_scenario(scenario)
            if variant != BARE and variant not in PEERS:
                self.baselines[scenario] = build_scenario(scenario)[0].compile()
            self.apps[scenario] = (self._app(builder, fields), inp, is_async)
        self.calls = 0
        self.invokes: dict[str, int] = dict.fromkeys(scenarios, 0)
        self.spans: dict[str, int] = dict.fromkeys(scenarios, 0)
        self.collect_ns: dict[str, int] = dict.fromkeys(scenarios, 0)
        self.collect_fixed_ns: dict[str, list[int]] = {sc: [] for sc in scenarios}

    def _app(self, builder: Any, fields: dict[str, str]) -> Any:
        if self.variant == NAIVE:
            return _naive(builder, fields, self.tracer_provider, self.meter_provider).compile()
        if self.variant not in COORDGAP_VARIANTS:
            return builder.compile()
        import coordgap

        models = _models()
        contracts = {node: coordgap.Contract(requires=models[f]) for node, f in fields.items()}
        mode = self.variant.split('"')[1]
        return coordgap.instrument(
            builder,
            name="bench",
            contracts=contracts,
            spans=mode,  # type: ignore[arg-type]
            metrics=True,
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
        )

    def run(self, scenario: str, n: int, record: bool = True) -> tuple[list[int], list[int]]:
        """Invoke the scenario's graph n times, and the bare graph n times in this process;
        return each invoke's wall time in ns (variant, paired bare)."""
        app, inp, is_async = self.apps[scenario]
        baseline = self.baselines.get(scenario)
        self.tracer_provider.force_flush()
        before = self.exporter.count
        self.calls += 1
        paired: list[int] = []
        if baseline is not None and self.calls % 2:
            paired = self._paired(baseline, inp, is_async, n)
        times = self._timed(app, inp, is_async, n)
        if baseline is not None and not self.calls % 2:
            paired = self._paired(baseline, inp, is_async, n)
        self.tracer_provider.force_flush()
        # Metric collection runs off the request path; time it so deferred work is not hidden.
        # A second collection right after costs what any collection costs whatever the runs
        # (the report gauges solve the report); the difference is what the runs added.
        t0 = time.perf_counter_ns()
        self.metric_reader.get_metrics_data()
        t1 = time.perf_counter_ns()
        self.metric_reader.get_metrics_data()
        t2 = time.perf_counter_ns()
        if record:
            self.invokes[scenario] += n
            self.spans[scenario] += self.exporter.count - before
            self.collect_ns[scenario] += max(0, (t1 - t0) - (t2 - t1))
            self.collect_fixed_ns[scenario].append(t2 - t1)
        return times, paired

    def _timed(self, app: Any, inp: Any, is_async: bool, n: int) -> list[int]:
        gc.collect()
        if is_async:
            return self.loop.run_until_complete(_atimed(app, inp, n))
        times = []
        clock = time.perf_counter_ns
        invoke = app.invoke
        for _ in range(n):
            t0 = clock()
            invoke(inp)
            times.append(clock() - t0)
        return times

    def _paired(self, baseline: Any, inp: Any, is_async: bool, n: int) -> list[int]:
        return self._timed(baseline, inp, is_async, n)

    def _instrument_peer(self) -> None:
        if self.variant == OPENLLMETRY:
            self.instrumentor.instrument(
                tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
            )
        else:
            self.instrumentor.instrument(tracer_provider=self.tracer_provider)

    def close(self) -> None:
        if self.instrumentor is not None:
            self.instrumentor.uninstrument()
        self.tracer_provider.shutdown()
        self.loop.close()


async def _atimed(app: Any, inp: Any, n: int) -> list[int]:
    clock = time.perf_counter_ns
    times = []
    for _ in range(n):
        t0 = clock()
        await app.ainvoke(inp)
        times.append(clock() - t0)
    return times


def worker_main(variant: str, scenarios: Sequence[str]) -> None:
    """Serve JSON-line commands on stdin for one variant (the coordinator's other end)."""
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing else may write to the protocol stream
    worker = Worker(variant, scenarios)
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "run":
            times, paired = worker.run(cmd["scenario"], cmd["n"], record=cmd.get("record", True))
            reply: dict[str, Any] = {"times": times, "paired": paired}
        elif cmd["op"] == "spans":
            worker.tracer_provider.force_flush()
            reply = {
                "spans": worker.spans,
                "invokes": worker.invokes,
                "collect_ns": worker.collect_ns,
                "collect_fixed_ns": worker.collect_fixed_ns,
            }
        else:
            worker.close()
            out.write(json.dumps({"bye": True}) + "\n")
            out.flush()
            return
        out.write(json.dumps(reply) + "\n")
        out.flush()


class WorkerProcess:
    """The coordinator's handle on one worker process."""

    def __init__(self, variant: str, scenarios: Sequence[str]) -> None:
        self.variant = variant
        env = dict(os.environ)
        env.pop("COORDGAP_RAISE_INTERNAL", None)  # measure what users run
        env["PYTHONHASHSEED"] = "0"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--worker",
                variant,
                "--scenarios",
                ",".join(scenarios),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(ROOT),
        )

    def wait_ready(self) -> None:
        self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.variant!r} died (exit {self.proc.wait()})")
        return json.loads(line)  # type: ignore[no-any-return]

    def ask(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            self.ask(op="quit")
        except Exception:
            pass
        self.proc.wait(timeout=30)


# -- coordinator ------------------------------------------------------------------------


def installed_peers() -> list[str]:
    """Return the peers whose LangChain instrumentor can be imported here."""
    import importlib.util

    found = []
    for peer, module in PEERS.items():
        try:
            if importlib.util.find_spec(module) is not None:
                found.append(peer)
        except (ImportError, ValueError):
            pass
    return found


@dataclass
class Row:
    """One variant in one scenario."""

    variant: str
    median_us: float
    p90_us: float
    bare_us: float
    """The bare graph's median, timed in the same process, interleaved (the ratio's base)."""
    ratio: float
    overhead_us: float
    spans_per_invoke: float
    invokes: int
    collect_us: float = 0.0
    """Metric collection time the runs added, per invoke (paid by the reader's thread)."""
    collect_fixed_ms: float = 0.0
    """What one collection costs whatever the runs (the report gauges), in ms."""
    ratio_collected: float = 0.0
    """(median + collect_us) / bare: the CPU the user pays, collection included."""


@dataclass
class Table:
    """One scenario's rows, bare first."""

    scenario: str
    description: str
    rows: list[Row] = field(default_factory=list)

    def row(self, variant: str) -> Row:
        return next(r for r in self.rows if r.variant == variant)


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def run_benchmark(
    profile: Profile,
    *,
    scenarios: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    seed: int = 7,
    progress: Callable[[str], None] | None = None,
) -> list[Table]:
    """Run every variant of every scenario, interleaved in rounds; return one table per scenario."""
    scenarios = list(scenarios or SCENARIOS)
    if variants is None:
        variants = [BARE, *COORDGAP_VARIANTS, NAIVE, *installed_peers()]
    variants = list(variants)
    if BARE not in variants:
        variants.insert(0, BARE)
    workers = {v: WorkerProcess(v, scenarios) for v in variants}
    try:
        for w in workers.values():
            w.wait_ready()
        rng = random.Random(seed)
        samples: dict[tuple[str, str], list[int]] = {}
        pairs: dict[tuple[str, str], list[int]] = {}  # the bare graph, in the same process
        for scenario in scenarios:
            n = profile.per_round[scenario]
            for w in workers.values():
                w.ask(op="run", scenario=scenario, n=profile.warmup if n >= 10 else n, record=False)
            for r in range(profile.rounds):
                order = list(variants)
                rng.shuffle(order)
                for v in order:
                    reply = workers[v].ask(op="run", scenario=scenario, n=n)
                    samples.setdefault((scenario, v), []).extend(reply["times"])
                    if reply["paired"]:
                        pairs.setdefault((scenario, v), []).extend(reply["paired"])
                if progress is not None:
                    progress(f"{scenario}: round {r + 1}/{profile.rounds}")
        spans = {v: w.ask(op="spans") for v, w in workers.items()}
    finally:
        for w in workers.values():
            w.close()
    tables = []
    for scenario in scenarios:
        table = Table(scenario, SCENARIOS[scenario])
        for v in variants:
            us = [t / 1e3 for t in samples[(scenario, v)]]
            median = statistics.median(us)
            base = pairs.get((scenario, v)) or samples[(scenario, BARE)]
            bare_median = statistics.median([t / 1e3 for t in base])
            counts = spans[v]
            invokes = counts["invokes"][scenario]
            table.rows.append(
                Row(
                    variant=v,
                    median_us=median,
                    p90_us=_percentile(us, 0.9),
                    bare_us=bare_median,
                    ratio=median / bare_median,
                    overhead_us=median - bare_median,
                    spans_per_invoke=counts["spans"][scenario] / invokes if invokes else 0.0,
                    invokes=len(us),
                    collect_us=(collect_us := counts["collect_ns"][scenario] / invokes / 1e3)
                    if invokes
                    else 0.0,
                    collect_fixed_ms=statistics.median(counts["collect_fixed_ns"][scenario]) / 1e6
                    if counts["collect_fixed_ns"][scenario]
                    else 0.0,
                    ratio_collected=(median + (collect_us if invokes else 0.0)) / bare_median,
                )
            )
        tables.append(table)
    return tables


def save_run(path: Path, tables: Sequence[Table], env: dict[str, str]) -> None:
    """Write a run's tables and the machine they were measured on (``--json``)."""
    path.write_text(
        json.dumps(
            {
                "environment": env,
                "tables": [
                    {"scenario": t.scenario, "rows": [r.__dict__ for r in t.rows]} for t in tables
                ],
            },
            indent=2,
        )
    )


def load_run(path: Path) -> tuple[list[Table], dict[str, str]]:
    """Read a run saved with ``--json``: its tables and the environment it was measured in."""
    data = json.loads(path.read_text())
    tables = [
        Table(t["scenario"], SCENARIOS[t["scenario"]], [Row(**r) for r in t["rows"]])
        for t in data["tables"]
    ]
    return tables, data["environment"]


def format_table(table: Table, markdown: bool = False) -> str:
    """Return one scenario's table as aligned text (or a Markdown table)."""
    header = [
        "variant",
        "median µs",
        "p90 µs",
        "bare µs (same process)",
        "x bare",
        "x bare incl. collection",
        "overhead µs",
        "spans/invoke",
        "collect µs/invoke",
        "collection ms",
    ]
    body = [
        [
            r.variant,
            f"{r.median_us:,.0f}",
            f"{r.p90_us:,.0f}",
            f"{r.bare_us:,.0f}",
            f"{r.ratio:.3f}",
            f"{r.ratio_collected:.3f}",
            f"{r.overhead_us:+,.0f}",
            f"{r.spans_per_invoke:.1f}",
            f"{r.collect_us:.1f}",
            f"{r.collect_fixed_ms:.2f}",
        ]
        for r in table.rows
    ]
    title = f"{table.scenario}: {table.description}, {table.rows[0].invokes} invokes per row"
    if markdown:
        lines = [
            f"### {title}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header))]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    lines = [title, fmt.format(*header), fmt.format(*["-" * w for w in widths])]
    lines += [fmt.format(*row) for row in body]
    return "\n".join(lines)


def targets_summary(tables: Sequence[Table]) -> list[str]:
    """Return one line per target of the performance issue, met or not."""
    lines = []
    linear = next((t for t in tables if t.scenario == "linear"), None)
    if linear is not None:
        # issue 15's targets: off and failures within 3 % of bare, collection included;
        # spans="all" no more than the hand-written naive wrapper (the SDK's own floor)
        naive = next((r for r in linear.rows if r.variant == NAIVE), None)
        limits = [(COORDGAP_OFF, 1.03), (COORDGAP_FAILURES, 1.03)]
        limits.append((COORDGAP_ALL, naive.ratio_collected if naive is not None else 1.20))
        for variant, limit in limits:
            if not any(r.variant == variant for r in linear.rows):
                continue
            ratio = linear.row(variant).ratio_collected
            verdict = "met" if ratio <= limit else f"MISSED by {ratio - limit:.3f}"
            lines.append(
                f"linear, {variant}: {ratio:.3f}x bare, collection included "
                f"(target ≤ {limit:.2f}x): {verdict}"
            )
    for t in tables:
        peers = [r for r in t.rows if r.variant in PEERS]
        if not peers:
            continue
        cheapest = min(peers, key=lambda r: r.overhead_us)
        ours = [r for r in t.rows if r.variant in COORDGAP_VARIANTS]
        if not ours:
            continue
        worst = max(ours, key=lambda r: r.overhead_us)
        half = cheapest.overhead_us / 2
        verdict = "met" if worst.overhead_us <= half else "MISSED"
        lines.append(
            f"{t.scenario}: costliest coordgap mode {worst.variant} adds "
            f"{worst.overhead_us:,.0f} µs; half the cheapest peer ({cheapest.variant}) "
            f"is {half:,.0f} µs: {verdict}"
        )
    return lines


def environment() -> dict[str, str]:
    """Return the date, machine and versions a run was measured on."""
    from importlib.metadata import PackageNotFoundError, version

    versions = []
    for dist in (
        "coordgap",
        "langgraph",
        "langchain-core",
        "opentelemetry-sdk",
        "pydantic",
        *PEER_PACKAGES.values(),
    ):
        try:
            versions.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            versions.append(f"{dist} (not installed)")
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu}, {os.cpu_count()} logical cores, "
        f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load": "load average at the end: "
        + (", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"),
        "versions": ", ".join(versions),
    }


NOTES = """## Where the cost goes

- **Spans are the floor of `spans="all"`.** An OpenTelemetry SDK span started, made current,
  detached and ended costs ~200 k CPU instructions here (callgrind; ~120 k with no attribute
  and no context), more than the whole of coordgap's counting for a 6-node run. `"all"` makes
  7 spans per run (the run and each node); the naive wrapper row above makes 6 and lands at
  about the same ratio. A no-op node is the worst case: with 1 ms of work per node (`sleep`), the same
  spans weigh a fraction of that.
- **In a graph run, every Python call is cold.** Between two calls of a node's probe, LangGraph
  runs through far more code and data than the CPU caches hold, so coordgap's code and data are
  fetched again each time: a node's bookkeeping measured ~1 µs in a tight loop and ~4-6 µs inside
  a run. The hot path is therefore written as few calls as possible: one function per node
  start and one per node end, one lock acquisition each, ledger rows bound at `instrument()`
  time, durations handed to the histogram once per run.
- **What is left with spans off** (in-process, this machine): about 50-65 µs per run for the
  run itself and the probe layers (the run's start and end, the entry, one wrapper call per
  node), about 6-8 µs per node for its bookkeeping, plus the user's own contracts (a pydantic
  validation per node) and metrics. `"failures"` costs the same as `"off"` on the happy path;
  the rows differ by the run-to-run noise (several percent on a shared 2-core VM).
"""


def write_docs(
    tables: Sequence[Table],
    profile: Profile,
    command: str,
    extra_sections: Sequence[str] = (NOTES,),
    env: dict[str, str] | None = None,
) -> Path:
    """Write docs/performance.md from a run's tables (generated; do not edit by hand).

    ``env`` is the machine the run was measured on (default: this one, now).
    """
    env = env or environment()
    parts = [
        "# Performance",
        "",
        "<!-- Generated by benchmarks/overhead.py --write-docs; do not edit by hand. -->",
        "",
        "What coordgap costs per run, next to bare LangGraph and the LangChain instrumentors of "
        "OpenInference and OpenLLMetry, measured in one run with the variants interleaved. "
        "Read the ratios (`x bare`), not the absolute times: they depend on the machine. "
        "Every variant exports to the same counting exporter through a `BatchSpanProcessor`; "
        "coordgap runs with a pydantic `requires` contract on every node and its metrics on "
        "(a `MeterProvider` with an `InMemoryMetricReader`).",
        "",
        f"- date: {env['date']}",
        f"- machine: {env['machine']}",
        f"- python: {env['python']}",
        f"- {env['load']} (other processes share the cores: compare ratios only)",
        f"- versions: {env['versions']}",
        f"- profile: {profile.name} ({profile.rounds} rounds, variants shuffled per round, "
        "each in its own process; coordgap's and the naive wrapper's ratios are to the bare "
        "graph timed in that same process, the peers' to the bare process)",
        f"- reproduce: `{command}`",
        "",
        "## Overhead per run",
        "",
    ]
    for t in tables:
        parts += [format_table(t, markdown=True), ""]
    parts += ["## Targets", ""]
    parts += [f"- {line}" for line in targets_summary(tables)]
    parts.append("")
    for section in extra_sections:
        parts += [section, ""]
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text("\n".join(parts))
    return DOCS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short profile (CI, < 1 minute)")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated subset of: " + ", ".join(SCENARIOS),
    )
    parser.add_argument("--no-peers", action="store_true", help="skip OpenInference/OpenLLMetry")
    parser.add_argument("--write-docs", action="store_true", help="regenerate docs/performance.md")
    parser.add_argument("--json", metavar="PATH", help="also write the tables as JSON")
    parser.add_argument(
        "--from-json",
        metavar="PATH",
        help="print (and with --write-docs, write) a run saved with --json",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    scenarios = [s for s in args.scenarios.split(",") if s]
    if args.worker:
        worker_main(args.worker, scenarios)
        return 0
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    profile = QUICK if args.quick else DEFAULT
    if args.from_json:
        tables, env = load_run(Path(args.from_json))
        for t in tables:
            print(format_table(t))
            print()
        for line in targets_summary(tables):
            print(line)
        if args.write_docs:
            command = ".venv/bin/python benchmarks/overhead.py --write-docs" + (
                " --quick" if args.quick else ""
            )
            path = write_docs(tables, profile, command, env=env)
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    variants = [BARE, *COORDGAP_VARIANTS, NAIVE] + ([] if args.no_peers else installed_peers())
    missing = [p for p in PEERS if p not in variants]
    if missing and not args.no_peers:
        print(
            f"(peers not installed, rows skipped: {', '.join(missing)}; "
            "pip install 'coordgap[bench]')",
            file=sys.stderr,
        )
    start = time.perf_counter()
    tables = run_benchmark(
        profile,
        scenarios=scenarios,
        variants=variants,
        progress=lambda msg: print(f"  {msg}", file=sys.stderr, flush=True),
    )
    for t in tables:
        print(format_table(t))
        print()
    for line in targets_summary(tables):
        print(line)
    print(f"\n({profile.name} profile, {time.perf_counter() - start:.0f} s)")
    env = environment()
    if args.json:
        save_run(Path(args.json), tables, env)
    if args.write_docs:
        command = ".venv/bin/python benchmarks/overhead.py --write-docs" + (
            " --quick" if args.quick else ""
        )
        path = write_docs(tables, profile, command, env=env)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
