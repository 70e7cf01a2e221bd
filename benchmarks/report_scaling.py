"""How report() scales: time and memory against components and recorded runs.

The claim to check: a report costs O(components), never O(runs), because the
ledger keeps one row of counters per component whatever the number of runs.

    .venv/bin/python benchmarks/report_scaling.py            # up to 10^6 runs
    .venv/bin/python benchmarks/report_scaling.py --max-runs 100000

Each recorded run is one RunOutcome plus four component events taken in turn
from a linear graph (so every component accumulates counts while the work per
run stays constant). Events are built once and reused: they are immutable, and
building them is not what is measured. "report CPU ms" is process CPU time (robust
on a shared machine), "wall ms" the elapsed time; both are medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from collections.abc import Iterable

from coordgap._ledger import Ledger
from coordgap._report import report
from coordgap.events import HandoffOutcome, NodeOutcome, RunOutcome

G = "bench"


def deep_size(obj: object, seen: set[int] | None = None) -> int:
    """Bytes held by ``obj`` and everything it references (containers and slots)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, list | tuple | set | frozenset):
        size += sum(deep_size(x, seen) for x in obj)
    for name in getattr(type(obj), "__slots__", ()):
        if hasattr(obj, name):
            size += deep_size(getattr(obj, name), seen)
    return size


def ledger_bytes(ledger: Ledger) -> int:
    parts: Iterable[object] = (
        ledger._nodes,
        ledger._handoffs,
        ledger._routers,
        ledger._router_sources,
        ledger._runs,
    )
    return sum(deep_size(p) for p in parts)


def component_events(components: int) -> list[object]:
    """A linear graph with ~components/2 nodes and as many handoffs; some fail."""
    n = max(1, components // 2)
    names = [f"node{i}" for i in range(n)]
    events: list[object] = []
    prev = "__start__"
    for i, name in enumerate(names):
        events.append(HandoffOutcome(G, prev, name, "edge", i % 7 != 3, 0, 0))
        events.append(NodeOutcome(G, name, True, 1, True, 0, 1000))
        if i % 5 == 0:
            events.append(NodeOutcome(G, name, False, 1, True, 0, 1000))
        prev = name
    return events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="report() timings per cell")
    args = parser.parse_args(argv)
    run_counts = [r for r in (10**3, 10**4, 10**5, 10**6) if r <= args.max_runs]
    ok_run = RunOutcome(G, "ok", True, 0, 0)
    bad_run = RunOutcome(G, "error", False, 0, 0)

    header = (
        f"{'components':>10}  {'runs':>9}  {'report CPU ms':>13}  {'wall ms':>7}  "
        f"{'report peak KiB':>15}  {'ledger KiB':>10}  {'record s':>8}"
    )
    print(header)
    print("-" * len(header))
    for components in (10, 100, 1000):
        events = component_events(components)
        ledger = Ledger(G)
        record = ledger.record
        recorded = 0
        cursor = 0
        for target in run_counts:
            t0 = time.perf_counter()
            while recorded < target:
                for _ in range(4):
                    record(events[cursor])  # type: ignore[arg-type]
                    cursor = (cursor + 1) % len(events)
                record(bad_run if recorded % 10 == 0 else ok_run)
                recorded += 1
            record_s = time.perf_counter() - t0
            timings, cpu = [], []
            for _ in range(args.repeat):
                t, c = time.perf_counter(), time.process_time()
                rep = report(ledger)
                timings.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
            tracemalloc.start()
            report(ledger)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            n_components = len(rep.components)
            print(
                f"{n_components:>10}  {recorded:>9}  {statistics.median(cpu) * 1e3:>13.2f}  "
                f"{statistics.median(timings) * 1e3:>7.2f}  "
                f"{peak / 1024:>15.0f}  {ledger_bytes(ledger) / 1024:>10.0f}  {record_s:>8.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
