"""Does coordgap stay cheap under concurrency, and does its ledger stay flat in memory?

Run::

    .venv/bin/python benchmarks/scaling.py            # default profile
    .venv/bin/python benchmarks/scaling.py --quick    # short profile (CI)

Three measurements, printed as tables:

- throughput (invokes per second) of the 6-node linear graph with 1, 2, 4, 8
  and 32 threads invoking at once, bare next to coordgap (``spans="failures"``,
  contracts and metrics on), same process, alternating rounds. The Python GIL
  caps throughput for both; what matters is that the ratio does not fall as
  threads are added (the ledger's one lock must not become a point of
  contention);
- the same with 100 concurrent ``ainvoke`` runs on one event loop;
- the memory the ledger holds after 10^6 recorded runs, fed directly with
  events (tracemalloc), at checkpoints: it must stay flat.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import overhead as ob

THREADS = (1, 2, 4, 8, 32)


@dataclass(frozen=True)
class ScalingProfile:
    name: str
    invokes_per_thread_total: int
    """Invokes per round, split over the threads (so every round does the same work)."""
    rounds: int
    async_batches: int
    ledger_runs: int


QUICK = ScalingProfile(
    "quick", invokes_per_thread_total=64, rounds=2, async_batches=2, ledger_runs=100_000
)
DEFAULT = ScalingProfile(
    "default", invokes_per_thread_total=256, rounds=5, async_batches=5, ledger_runs=1_000_000
)


def _apps() -> dict[str, Any]:
    worker_bare = ob.Worker(ob.BARE, ["linear", "async"])
    worker_cg = ob.Worker(ob.COORDGAP_FAILURES, ["linear", "async"])
    return {"bare": worker_bare, "coordgap": worker_cg}


def _threaded_round(app: Any, inp: Any, threads: int, total: int) -> float:
    per = max(1, total // threads)
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        barrier.wait()
        for _ in range(per):
            app.invoke(inp)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    return per * threads / (time.perf_counter() - t0)


async def _async_round(app: Any, inp: Any, concurrent: int) -> float:
    t0 = time.perf_counter()
    await asyncio.gather(*(app.ainvoke(inp) for _ in range(concurrent)))
    return concurrent / (time.perf_counter() - t0)


@dataclass
class ThroughputRow:
    label: str
    bare: float
    coordgap: float

    @property
    def ratio(self) -> float:
        return self.coordgap / self.bare


def measure_throughput(
    profile: ScalingProfile, threads: Sequence[int] = THREADS, concurrent: int = 100
) -> list[ThroughputRow]:
    """Return invokes/s, bare and instrumented, per thread count and for concurrent ainvoke."""
    workers = _apps()
    rows = []
    for n in threads:
        got: dict[str, list[float]] = {"bare": [], "coordgap": []}
        for r in range(profile.rounds):
            order = ["bare", "coordgap"] if r % 2 == 0 else ["coordgap", "bare"]
            for name in order:
                app, inp, _ = workers[name].apps["linear"]
                got[name].append(_threaded_round(app, inp, n, profile.invokes_per_thread_total))
        rows.append(
            ThroughputRow(
                f"{n} thread{'s' if n > 1 else ''}",
                statistics.median(got["bare"]),
                statistics.median(got["coordgap"]),
            )
        )
    loop = asyncio.new_event_loop()
    try:
        got = {"bare": [], "coordgap": []}
        for r in range(profile.async_batches):
            order = ["bare", "coordgap"] if r % 2 == 0 else ["coordgap", "bare"]
            for name in order:
                app, inp, _ = workers[name].apps["async"]
                got[name].append(loop.run_until_complete(_async_round(app, inp, concurrent)))
        rows.append(
            ThroughputRow(
                f"{concurrent} concurrent ainvoke",
                statistics.median(got["bare"]),
                statistics.median(got["coordgap"]),
            )
        )
    finally:
        loop.close()
        for w in workers.values():
            w.close()
    return rows


def measure_ledger_memory(runs: int) -> list[tuple[int, int]]:
    """Feed ``runs`` runs of the 6-node graph's events to a Ledger; return (runs, bytes held)."""
    from coordgap._ledger import Ledger
    from coordgap.events import HandoffOutcome, NodeOutcome, RunOutcome

    nodes = [f"n{i}" for i in range(6)]
    path = ["__start__", *nodes, "__end__"]
    checkpoints = sorted({c for c in (1_000, 10_000, 100_000, runs) if c <= runs})
    tracemalloc.start()
    ledger = Ledger("bench")
    base = tracemalloc.get_traced_memory()[0]
    out = []
    done = 0
    for checkpoint in checkpoints:
        while done < checkpoint:
            done += 1
            t = done * 1_000
            for i, node in enumerate(nodes):
                # every few runs one attempt fails, so error-type maps are exercised too
                ok = (done + i) % 97 != 0
                ledger.record(
                    NodeOutcome(
                        graph="bench",
                        node=node,
                        ok=ok,
                        attempt=1,
                        final=True,
                        start_ns=t,
                        end_ns=t + 500,
                        run_id=done,
                        error_type=None if ok else "ValueError",
                    )
                )
            for a, b in itertools.pairwise(path):
                ledger.record(
                    HandoffOutcome(
                        graph="bench",
                        source=a,
                        target=b,
                        kind="edge",
                        ok=True,
                        start_ns=t,
                        end_ns=t + 1,
                        run_id=done,
                    )
                )
            ledger.record(
                RunOutcome(
                    graph="bench",
                    status="ok",
                    clean=True,
                    start_ns=t,
                    end_ns=t + 4_000,
                    run_id=done,
                )
            )
        out.append((checkpoint, tracemalloc.get_traced_memory()[0] - base))
    tracemalloc.stop()
    snap = ledger.snapshot()
    assert snap.runs.runs == runs, snap.runs
    return out


def format_throughput(rows: Sequence[ThroughputRow]) -> str:
    header = ("concurrency", "bare invokes/s", "coordgap invokes/s", "coordgap / bare")
    body = [(r.label, f"{r.bare:,.0f}", f"{r.coordgap:,.0f}", f"{r.ratio:.3f}") for r in rows]
    return _table(
        'throughput, 6-node linear graph, coordgap spans="failures" + contracts + metrics',
        header,
        body,
    )


def format_memory(rows: Sequence[tuple[int, int]]) -> str:
    header = ("runs recorded", "ledger bytes held (tracemalloc)")
    body = [(f"{n:,}", f"{b:,}") for n, b in rows]
    return _table("ledger memory, 6-node graph (14 events per run)", header, body)


def _table(title: str, header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header))]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    lines = [title, fmt.format(*header), fmt.format(*["-" * w for w in widths])]
    lines += [fmt.format(*row) for row in body]
    return "\n".join(lines)


def run(profile: ScalingProfile) -> list[str]:
    """Run every scaling measurement; return the printed tables."""
    return [
        format_throughput(measure_throughput(profile)),
        format_memory(measure_ledger_memory(profile.ledger_runs)),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short profile (CI)")
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else DEFAULT
    start = time.perf_counter()
    for table in run(profile):
        print(table)
        print()
    print(f"({profile.name} profile, {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
