"""The text exposition read back into a snapshot, through the real exporter.

Every positive test runs a real instrumented graph, serves coordgap's metrics through
OpenTelemetry's Prometheus exporter (``tests/exposition.py``), decodes the text with
``coordgap.fleet.snapshot_from_text`` (what ``coordgap watch`` does) and holds the result
to the ledger's own snapshot, field by field, on everything the metrics carry. Each text
is decoded twice: with prometheus_client's parser and with coordgap's own (used when
prometheus_client is not installed); both must give the same snapshot.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from exposition import (
    Exporter,
    S,
    assert_decoded,
    consistent,
    everything_app,
    run,
)
from graphs import GraphSpec, build, graph_specs, without_async
from graphs_basic import (
    commanding,
    fan_out_in,
    interrupting,
    linear,
    looping,
    retrying,
    sending,
    with_subgraph,
)
from hypothesis import given, settings
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

import coordgap
from coordgap._ledger import LedgerSnapshot
from coordgap.errors import ConfigurationError
from coordgap.fleet import snapshot_from_text
from coordgap.testing import merge_snapshots


@contextlib.contextmanager
def fallback_parser() -> Iterator[None]:
    """prometheus_client's parser made unimportable: coordgap parses the text itself."""
    with mock.patch.dict(sys.modules, {"prometheus_client.parser": None}):
        yield


def decode(text: str, graph: str | None = None) -> LedgerSnapshot:
    """Decode with both parsers; they must agree."""
    snap = snapshot_from_text(text, graph=graph)
    with fallback_parser():
        assert snapshot_from_text(text, graph=graph) == snap
    return snap


def test_the_exposition_decodes_to_the_ledger_field_by_field() -> None:
    exporter = Exporter()
    app = everything_app(exporter.meter_provider)
    run(app, range(14))
    ledger = coordgap.ledger(app)
    ledger.count_internal_error()  # as a swallowed error inside coordgap would
    own = ledger.snapshot()
    text = exporter.text()
    decoded = decode(text)
    assert_decoded(decoded, own)

    # What the text decoder of coordgap <= 0.x got wrong, pinned one by one:
    # the router's decisions and failures, and its chosen targets (not '' for every decision)
    route = decoded.routers["route"]
    assert (route.source, route.decisions, route.failures) == ("check", 12, 3)
    assert dict(route.targets) == dict(own.routers["route"].targets)
    assert dict(own.routers["route"].targets) == {"b": 6, "c": 3, "__unknown__": 3}
    # failed handoffs per kind: the contract failures, the invalid routes
    assert dict(decoded.handoffs[("retrieve", "check")].kind_failures) == {"edge": 5}
    assert dict(decoded.handoffs[("check", "__unknown__")].kind_failures) == {"conditional": 3}
    assert decoded.internal_errors == 1
    # retries: attempts above executions, first-attempt successes below successes
    r = decoded.nodes["retrieve"]
    assert (r.executions, r.attempts, r.attempt_failures, r.first_attempt_ok) == (14, 21, 7, 7)
    assert decoded.nodes["sub/n1"].executions == 6
    assert (decoded.runs.runs, decoded.runs.error, decoded.runs.clean) == (14, 2, 6)


def test_the_report_of_the_decoded_snapshot_is_the_ledgers() -> None:
    exporter = Exporter()
    app = everything_app(exporter.meter_provider)
    run(app, range(14))
    own = coordgap.report(coordgap.ledger(app).snapshot())
    got = coordgap.report(decode(exporter.text()))
    assert {(c.kind, c.name): c.reliability for c in got.components} == {
        (c.kind, c.name): c.reliability for c in own.components
    }
    assert got.end_to_end.observed == own.end_to_end.observed


# -- the graphs of the foundation tests -------------------------------------------------------


def _invoke_all(app: Any, inputs: list[Any], config: dict[str, Any] | None = None) -> None:
    for payload in inputs:
        with contextlib.suppress(Exception):
            app.invoke(payload, config)


CASES: dict[str, tuple[Callable[[], StateGraph], Callable[[Any], None]]] = {
    "loop with a router": (lambda: looping(3), lambda app: _invoke_all(app, [{"n": 0}] * 3)),
    "join": (fan_out_in, lambda app: _invoke_all(app, [{}] * 2)),
    "command": (commanding, lambda app: _invoke_all(app, [{"n": 0}, {"n": 1}, {"n": 2}])),
    "send": (sending, lambda app: _invoke_all(app, [{"n": 3}, {"n": 0}])),
    "subgraph": (with_subgraph, lambda app: _invoke_all(app, [{"n": 0}] * 2)),
    "retried to success": (lambda: retrying(fails=2), lambda app: _invoke_all(app, [{"n": 0}])),
    "retries exhausted": (
        lambda: retrying(fails=5, attempts=3),
        lambda app: _invoke_all(app, [{"n": 0}, {"n": 0}]),
    ),
    "recursion limit": (
        lambda: looping(100),
        lambda app: _invoke_all(app, [{"n": 0}], {"recursion_limit": 5}),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_basic_graphs_decode_to_their_ledgers(case: str) -> None:
    graph, drive = CASES[case]
    exporter = Exporter()
    app = coordgap.instrument(
        graph(), name=case, spans="off", meter_provider=exporter.meter_provider
    )
    drive(app)
    own = coordgap.ledger(app).snapshot()
    assert own.runs.runs > 0
    assert_decoded(decode(exporter.text()), own)


def test_interrupted_runs_decode() -> None:
    exporter = Exporter()
    app = coordgap.instrument(
        interrupting().compile(checkpointer=InMemorySaver()),
        name="asks",
        spans="off",
        meter_provider=exporter.meter_provider,
    )
    for i in range(3):
        config = {"configurable": {"thread_id": f"t{i}"}}
        app.invoke({"n": i}, config)
        if i:
            app.invoke(Command(resume="yes"), config)
    own = coordgap.ledger(app).snapshot()
    decoded = decode(exporter.text())
    assert_decoded(decoded, own)
    assert (decoded.runs.interrupted, decoded.runs.ok) == (3, 2)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(graph_specs(max_nodes=5))
def test_random_graphs_decode_to_their_ledgers(spec: GraphSpec) -> None:
    spec = without_async(spec)
    exporter = Exporter()
    saver = InMemorySaver() if spec.has_interrupts else None
    app = coordgap.instrument(
        build(spec).compile(checkpointer=saver),
        name="random",
        spans="off",
        meter_provider=exporter.meter_provider,
    )
    for x in range(4):
        config: dict[str, Any] = {"recursion_limit": 12, "configurable": {"thread_id": f"t{x}"}}
        payload: Any = {"x": x, "log": []}
        for _ in range(3):
            try:
                app.invoke(payload, config)
            except Exception:
                break
            if saver is None or not app.get_state(config).next:
                break
            payload = Command(resume="answer")
    assert_decoded(decode(exporter.text()), coordgap.ledger(app).snapshot())


def test_names_that_need_escaping_come_back_unchanged() -> None:
    names = ['say "hi"', "back\\slash", "two\nlines", "line\u2028separator", "ünïcödé", "a b/c"]
    g = StateGraph(S)
    for name in names:
        g.add_node(name, lambda s: {"log": ["x"]})
    g.add_edge(START, names[0])
    for a, b in itertools.pairwise(names):
        g.add_edge(a, b)
    g.add_edge(names[-1], END)
    exporter = Exporter()
    app = coordgap.instrument(
        g, name='graph "quoted"', spans="off", meter_provider=exporter.meter_provider
    )
    app.invoke({"n": 0})
    decoded = decode(exporter.text())
    assert decoded.graph == 'graph "quoted"'
    assert set(decoded.nodes) == set(names)
    assert_decoded(decoded, coordgap.ledger(app).snapshot())


# -- several graphs, several providers, nothing at all ------------------------------------------


def test_several_graphs_need_a_choice_and_each_decodes_alone() -> None:
    exporter = Exporter()
    alpha = everything_app(exporter.meter_provider, name="alpha")
    run(alpha, range(5))
    beta = coordgap.instrument(
        looping(2), name="beta", spans="off", meter_provider=exporter.new_meter_provider()
    )
    beta.invoke({"n": 0})
    text = exporter.text()
    with pytest.raises(ConfigurationError, match=r"holds 2 coordgap graphs \(alpha, beta\)"):
        snapshot_from_text(text)
    assert_decoded(decode(text, graph="alpha"), coordgap.ledger(alpha).snapshot())
    assert_decoded(decode(text, graph="beta"), coordgap.ledger(beta).snapshot())
    with pytest.raises(ConfigurationError, match=r"no graph 'gamma' \(it holds: alpha, beta\)"):
        snapshot_from_text(text, graph="gamma")


def test_two_graphs_on_one_meter_provider_are_both_exported() -> None:
    """One set of instruments per provider observes every graph on it (the SDK keeps an
    instrument's first callbacks: a second registration would be dropped)."""
    exporter = Exporter()
    alpha = coordgap.instrument(
        linear(2), name="alpha", spans="off", meter_provider=exporter.meter_provider
    )
    beta = coordgap.instrument(
        looping(2), name="beta", spans="off", meter_provider=exporter.meter_provider
    )
    alpha.invoke({"n": 0})
    beta.invoke({"n": 0})
    assert_decoded(decode(exporter.text(), graph="beta"), coordgap.ledger(beta).snapshot())
    assert_decoded(decode(exporter.text(), graph="alpha"), coordgap.ledger(alpha).snapshot())


def test_two_providers_on_one_registry_add_up() -> None:
    """Two instrumented copies of one graph serve on one /metrics: the snapshot is their sum."""
    exporter = Exporter()
    one, two = (
        everything_app(exporter.meter_provider),
        everything_app(exporter.new_meter_provider()),
    )
    run(one, range(6))
    run(two, range(3, 12))
    total = merge_snapshots([coordgap.ledger(one).snapshot(), coordgap.ledger(two).snapshot()])
    assert_decoded(decode(exporter.text()), total)


def test_a_scrape_without_coordgap_says_so() -> None:
    exporter = Exporter()  # nothing instrumented: the exporter serves target_info only
    with pytest.raises(ConfigurationError, match=r"holds 0 coordgap graphs \(none\)"):
        snapshot_from_text(exporter.text())


@pytest.mark.parametrize("parser", ["prometheus_client", "coordgap"])
@pytest.mark.parametrize(
    "text",
    [
        "{{{ nonsense\n",
        'coordgap_run_clean_total{coordgap_graph="g" 1\n',
        "<html>Prometheus</html>",
        'coordgap_run_clean_total{coordgap_graph="g"} one\n',
    ],
)
def test_malformed_text_is_a_configuration_error(parser: str, text: str) -> None:
    with contextlib.ExitStack() as stack:
        if parser == "coordgap":
            stack.enter_context(fallback_parser())
        with pytest.raises(ConfigurationError, match=r"not Prometheus text|cannot read labels"):
            snapshot_from_text(text)


# -- counts collected while runs go on ----------------------------------------------------


def test_a_scrape_that_read_the_runs_before_a_run_ended_and_clean_after_is_consistent() -> None:
    """The exporter reads each counter from its own snapshot of the ledger: a run that ends
    between the two reads leaves ``coordgap.run.clean`` one ahead of the completions. Spliced
    from two real scrapes, one before and one after such a run."""
    exporter = Exporter()
    app = everything_app(exporter.meter_provider)
    run(app, [1])  # clean runs (no attempt fails, docs found, a valid route)
    before = exporter.text()
    run(app, [5])
    after = exporter.text()
    runs = coordgap.ledger(app).snapshot().runs
    assert runs.clean == runs.finished == 2
    lines = [line for line in before.splitlines() if not line.startswith("coordgap_run_clean")]
    lines += [line for line in after.splitlines() if line.startswith("coordgap_run_clean_total")]
    mixed = decode("\n".join(lines) + "\n")
    assert consistent(mixed) == []
    assert mixed.runs.clean == mixed.runs.finished  # capped, not one above
    coordgap.report(mixed)


def test_scrapes_during_runs_are_consistent_and_the_last_is_exact() -> None:
    exporter = Exporter()
    app = everything_app(exporter.meter_provider, name="busy")
    done = threading.Event()

    def work() -> None:
        try:
            run(app, range(100))
        finally:
            done.set()

    worker = threading.Thread(target=work)
    worker.start()
    scrapes = 0
    try:
        while not done.is_set():
            snap = snapshot_from_text(exporter.text())
            assert consistent(snap) == []
            coordgap.report(snap)
            scrapes += 1
    finally:
        worker.join()
    assert scrapes > 1
    own = coordgap.ledger(app).snapshot()
    assert own.runs.runs == 100
    assert_decoded(decode(exporter.text()), own)
