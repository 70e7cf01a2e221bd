"""Driving a corpus case the same way bare and instrumented, and comparing what came out.

Everything returned here is already masked (``graphs.normalize``: uuids, hex ids,
timestamps, addresses), so two bare runs of a case compare equal; for a case whose
tasks of one superstep finish in any order (``Case.parallel``) chunks are compared as
multisets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from graphs import normalize
from langgraph.graph import StateGraph

import coordgap

from .corpus import Case, Run
from .oracle import Oracle, ledger_view

__all__ = [
    "ALL_MODES",
    "adrive",
    "astream_all",
    "both",
    "config_for",
    "counts",
    "drawings",
    "drive",
    "expected",
    "history",
    "instrumented",
    "restrict",
    "stream_all",
]

ALL_MODES = ["values", "updates", "messages", "debug", "custom", "tasks", "checkpoints"]


def config_for(case: Case, i: int, run: Run, checkpointed: bool) -> dict[str, Any]:
    """The run's config; with a checkpointer, an unthreaded case gets one thread per run."""
    config: dict[str, Any] = {k: v for k, v in run.config.items() if k != "configurable"}
    conf = dict(run.config.get("configurable", {}))
    if checkpointed and "thread_id" not in conf:
        conf["thread_id"] = f"run{i}"
    if conf:
        config["configurable"] = conf
    return config


def instrumented(case: Case, checkpointer: Any = None, **options: Any) -> Any:
    """Return the case's graph instrumented (spans off, so tests stay quiet and fast)."""
    options.setdefault("spans", "off")
    options.setdefault("metrics", False)
    return coordgap.instrument(case.graph(checkpointer), **options)


def _outcome(fn: Any) -> Any:
    try:
        return ("ok", normalize(fn()))
    except Exception as exc:
        return ("raised", type(exc).__name__, normalize(str(exc)))


def drive(graph: Any, case: Case, checkpointed: bool = False) -> list[Any]:
    """Invoke every run of the case; return each output or exception (masked)."""
    return [
        _outcome(lambda r=run, i=i: graph.invoke(r.input, config_for(case, i, r, checkpointed)))
        for i, run in enumerate(case.runs)
    ]


def adrive(graph: Any, case: Case, checkpointed: bool = False) -> list[Any]:
    """``ainvoke`` every run of the case; return each output or exception (masked)."""

    async def go() -> list[Any]:
        out = []
        for i, run in enumerate(case.runs):
            try:
                value = await graph.ainvoke(run.input, config_for(case, i, run, checkpointed))
                out.append(("ok", normalize(value)))
            except Exception as exc:
                out.append(("raised", type(exc).__name__, normalize(str(exc))))
        return out

    return asyncio.run(go())


def _settle(chunks: list[Any], case: Case) -> list[Any]:
    chunks = [normalize(c) for c in chunks]
    return sorted(chunks, key=repr) if case.parallel else chunks


def stream_all(graph: Any, case: Case, *, subgraphs: bool, modes: Any = None) -> list[Any]:
    """Stream every run in every mode at once; return the chunks and outcome per run."""
    out = []
    for i, run in enumerate(case.runs):
        chunks: list[Any] = []
        end: Any = "finished"
        try:
            for chunk in graph.stream(
                run.input,
                config_for(case, i, run, True),
                stream_mode=modes or ALL_MODES,
                subgraphs=subgraphs,
            ):
                chunks.append(chunk)
        except Exception as exc:
            end = ("raised", type(exc).__name__, normalize(str(exc)))
        out.append((_settle(chunks, case), end))
    return out


def astream_all(graph: Any, case: Case, *, subgraphs: bool) -> list[Any]:
    """``astream`` every run in every mode at once; return the chunks and outcome per run."""

    async def go() -> list[Any]:
        out = []
        for i, run in enumerate(case.runs):
            chunks: list[Any] = []
            end: Any = "finished"
            try:
                async for chunk in graph.astream(
                    run.input,
                    config_for(case, i, run, True),
                    stream_mode=ALL_MODES,
                    subgraphs=subgraphs,
                ):
                    chunks.append(chunk)
            except Exception as exc:
                end = ("raised", type(exc).__name__, normalize(str(exc)))
            out.append((_settle(chunks, case), end))
        return out

    return asyncio.run(go())


def history(graph: Any, case: Case) -> list[Any]:
    """The checkpoint history and current state (with subgraphs) of every thread the runs used."""
    threads = dict.fromkeys(
        config_for(case, i, run, True)["configurable"]["thread_id"]
        for i, run in enumerate(case.runs)
    )
    out = []
    for thread in threads:
        cfg = {"configurable": {"thread_id": thread}}
        states = [
            normalize((s.values, s.next, dict(s.metadata or {}), len(s.tasks)))
            for s in graph.get_state_history(cfg)
        ]
        current = graph.get_state(cfg, subgraphs=True)
        tasks = sorted(repr(normalize(t)) for t in current.tasks)
        out.append((thread, states, normalize(current.values), normalize(current.next), tasks))
    return out


def drawings(graph: Any) -> dict[str, Any]:
    """The graph drawn every way users draw it (JSON, xray JSON, Mermaid, xray Mermaid)."""
    return {
        "json": graph.get_graph().to_json(),
        "xray_json": graph.get_graph(xray=True).to_json(),
        "mermaid": graph.get_graph().draw_mermaid(),
        "xray_mermaid": graph.get_graph(xray=True).draw_mermaid(),
    }


def expected(case: Case) -> dict[str, Any]:
    """The oracle's ledger for the case's runs on a fresh bare graph."""
    oracle = Oracle(case.graph())
    for run in case.runs:
        oracle.run(run.input, run.config)
    return oracle.expected()


def counts(case: Case, how: str = "invoke", **options: Any) -> dict[str, Any]:
    """coordgap's ledger (as the oracle's structure) after the case's runs, instrumented,
    made through ``invoke``, ``stream`` (``subgraphs=True``) or ``ainvoke``."""
    app = instrumented(case, **options)

    def config(run: Run) -> Any:
        return dict(run.config) if isinstance(run.config, Mapping) else None

    if how == "ainvoke":

        async def go() -> None:
            for run in case.runs:
                try:
                    await app.ainvoke(run.input, config(run))
                except Exception:
                    pass

        asyncio.run(go())
    for run in case.runs if how != "ainvoke" else ():
        try:
            if how == "stream":
                for _ in app.stream(run.input, config(run), stream_mode="updates", subgraphs=True):
                    pass
            else:
                app.invoke(run.input, config(run))
        except Exception:
            pass
    return ledger_view(coordgap.ledger(app).snapshot())


def both(make: Any, runs: Any, **options: Any) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """Run ``make()`` bare under the oracle and ``instrument(make())``; return
    (coordgap's ledger, the oracle's, the instrumented app). ``runs``: (input, config) pairs."""
    first = make()
    oracle = Oracle(first.compile() if isinstance(first, StateGraph) else first)
    options.setdefault("spans", "off")
    options.setdefault("metrics", False)
    app = coordgap.instrument(make(), **options)
    for input, config in runs:
        oracle.run(input, config)
        try:
            app.invoke(input, config)
        except Exception:
            pass
    return ledger_view(coordgap.ledger(app).snapshot()), oracle.expected(), app


def restrict(ledger: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The part of a ledger under a subgraph prefix (``"Alice/"``), names without it."""

    def strip(name: str) -> str:
        return name[len(prefix) :]

    return {
        "nodes": {strip(k): v for k, v in ledger["nodes"].items() if k.startswith(prefix)},
        "handoffs": {
            (strip(s), strip(t)): v
            for (s, t), v in ledger["handoffs"].items()
            if s.startswith(prefix) and t.startswith(prefix)
        },
    }
