"""The one-page HTML report: what the SVG draws, the waterfall, escaping, no network, CLI, pytest.

Reports come from real runs of small instrumented graphs. The page is parsed
back (the SVG with ``xml.etree``, which also proves it is well-formed; the rest
with ``html.parser``), and what it shows is compared with what the report and
the declared topology say, counted here, not by the renderer.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import re
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal

import pytest
from coverage_graphs import research_agent
from graphs_basic import (
    State,
    commanding,
    fan_out_in,
    linear,
    looping,
    sending,
    step,
    with_subgraph,
)
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command
from pydantic import BaseModel

import coordgap
from coordgap import cli, faults
from coordgap._html import PALETTES, render_html_page
from coordgap._ledger import Ledger
from coordgap._report import Report, report
from coordgap.events import HandoffOutcome, NodeOutcome, RunOutcome

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "html_report.py"
HOSTILE = '<img src=x onerror="alert(1)">'


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("html_report_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # typing.get_type_hints looks its annotations up there
    spec.loader.exec_module(module)
    return module


def run(builder: StateGraph, runs: int = 20, name: str = "g", **options: Any) -> Any:
    app = coordgap.instrument(builder, name=name, spans="off", metrics=False, **options)
    for i in range(runs):
        try:
            app.invoke({"run": i, "n": 0})
        except Exception:  # failed runs are counted; the next goes on
            pass
    return app


# -- reading the page back ------------------------------------------------------------------


def graph_svg(page: str, index: int = 0) -> ET.Element:
    """The index-th graph drawing, parsed as XML (it must be well-formed)."""
    found = re.findall(r'<svg class="graph".*?</svg>', page, flags=re.S)
    return ET.fromstring(found[index])


def waterfall_svg(page: str) -> ET.Element:
    (found,) = re.findall(r'<svg class="waterfall".*?</svg>', page, flags=re.S)
    return ET.fromstring(found)


def groups(svg: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in svg.iter("g") if cls in (g.get("class") or "").split()]


def classes(el: ET.Element) -> set[str]:
    return set((el.get("class") or "").split())


def rect(el: ET.Element) -> tuple[float, float, float, float]:
    r = el.find("rect")
    assert r is not None
    return (float(r.get("x", 0)), float(r.get("y", 0)), float(r.get("width", 0)), float(r.get("height", 0)))  # fmt: skip


class Tags(HTMLParser):
    """Every start tag of a page with its attributes, and the page's visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def tags(page: str) -> Tags:
    parser = Tags()
    parser.feed(page)
    parser.close()
    return parser


def expected_nodes_and_handoffs(rep: Report) -> tuple[set[str], set[tuple[str, str]]]:
    """Nodes and handoffs the drawing must show, from the snapshot and the declared topology."""
    snap = rep.snapshot
    assert snap is not None and snap.topology is not None
    nodes = set(snap.nodes) | set(snap.topology.nodes)
    handoffs = set(snap.handoffs) | {(h.source, h.target) for h in snap.topology.handoffs}
    return nodes, handoffs


def band_of(value: float | None) -> str:
    if value is None:
        return "none"
    return "good" if value >= 0.99 else "fair" if value >= 0.95 else "poor" if value >= 0.9 else "bad"  # fmt: skip


# -- graphs --------------------------------------------------------------------------------------


def invalid_command() -> StateGraph:
    calls = itertools.count()

    def go_nowhere(state: State) -> Command[Literal["b"]]:
        target = "nowhere" if next(calls) % 2 else "b"  # every other run names no node
        return Command(goto=target, update={"log": ["a"]})

    b = StateGraph(State)
    b.add_node("a", go_nowhere)
    b.add_node("b", step("b"))
    b.add_edge(START, "a")
    b.add_edge("b", END)
    return b


def supervisor() -> StateGraph:
    def sup(state: State) -> dict[str, Any]:
        return {"n": state.get("n", 0) + 1}

    def route(state: State) -> Literal["a", "b", "__end__"]:
        return "a" if state["n"] == 1 else "b" if state["n"] == 2 else "__end__"

    b = StateGraph(State)
    b.add_node("supervisor", sup)
    b.add_node("a", step("a"))
    b.add_node("b", step("b"))
    b.add_edge(START, "supervisor")
    b.add_conditional_edges("supervisor", route)
    b.add_edge("a", "supervisor")
    b.add_edge("b", "supervisor")
    return b


GRAPHS: dict[str, Callable[[], StateGraph]] = {
    "linear": lambda: linear(4),
    "loop": lambda: looping(3),
    "join": fan_out_in,
    "command": commanding,
    "send": lambda: sending(3),
    "subgraph": with_subgraph,
    "supervisor": supervisor,
    "research": lambda: research_agent(fallback_every=3, sends=True),
    "unannotated-command": lambda: research_agent(command="unannotated"),
    "invalid-route": invalid_command,
}


@pytest.fixture(scope="module")
def support_app() -> Any:
    return load_example().run(300)


@pytest.fixture(scope="module")
def support_page(support_app: Any) -> str:
    return coordgap.report(support_app).to_html()


# -- the graph: one shape per node, one path per handoff -------------------------------------


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_one_box_per_node_and_one_path_per_handoff(name: str) -> None:
    rep = coordgap.report(run(GRAPHS[name](), runs=6, name=name))
    nodes, handoffs = expected_nodes_and_handoffs(rep)
    svg = graph_svg(rep.to_html())
    drawn_nodes = groups(svg, "node")
    assert sorted(g.get("data-node") for g in drawn_nodes) == sorted(nodes)
    assert all(len(g.findall("rect")) == 1 for g in drawn_nodes)
    drawn = groups(svg, "handoff")
    got = [tuple(str(g.get("data-handoff")).split(" -> ")) for g in drawn]
    assert sorted(got) == sorted(handoffs)
    assert all(len(g.findall("path")) == 1 for g in drawn)
    routers = groups(svg, "router")
    assert sorted(g.get("data-router") for g in routers) == sorted(rep.routers)
    assert all(len(g.findall("polygon")) == 1 for g in routers)
    # hover: every node, handoff and router carries its own tooltip
    for g in (*drawn_nodes, *drawn, *routers):
        title = g.find("title")
        assert title is not None and title.text and "reliability" in title.text


def test_the_example_agent_has_every_kind_of_thing_drawn(
    support_app: Any, support_page: str
) -> None:
    rep = coordgap.report(support_app)
    nodes, handoffs = expected_nodes_and_handoffs(rep)
    svg = graph_svg(support_page)
    assert {g.get("data-node") for g in groups(svg, "node")} == nodes
    assert len(groups(svg, "handoff")) == len(handoffs)
    (cluster,) = groups(svg, "subgraph")
    assert cluster.get("data-node") == "write"
    assert {g.get("data-terminal") for g in groups(svg, "terminal")} >= {
        "__start__",
        "__end__",
        "write/__start__",
        "write/__end__",
    }
    assert {g.get("data-router") for g in groups(svg, "router")} == {"route", "verdict", "fan"}


@pytest.mark.parametrize("name", ["subgraph", "research", "supervisor", "send"])
def test_boxes_do_not_overlap_and_inner_nodes_sit_in_their_cluster(name: str) -> None:
    rep = coordgap.report(run(GRAPHS[name](), runs=4, name=name))
    svg = graph_svg(rep.to_html())
    boxes = [
        (g.get("data-node") or g.get("data-terminal") or g.get("data-source"), classes(g), rect(g))
        for g in svg.iter("g")
        if classes(g) & {"node", "terminal", "invalid-route"}
    ]
    clusters = {n: r for n, c, r in boxes if "subgraph" in c}
    plain = [(n, r) for n, c, r in boxes if "subgraph" not in c]
    for i, (a, (ax, ay, aw, ah)) in enumerate(plain):
        for b, (bx, by, bw, bh) in plain[i + 1 :]:
            apart = ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay
            assert apart, (a, b)
    for n, (x, y, w, h) in plain:
        parent = next((c for c in clusters if str(n).startswith(c + "/")), None)
        if parent is not None:
            cx, cy, cw, ch = clusters[parent]
            assert cx <= x and x + w <= cx + cw and cy <= y and y + h <= cy + ch, n


class Counted(BaseModel):
    """The contract the injected handoff faults break (they drop the fields it requires)."""

    n: int


def test_colour_and_line_weight_follow_the_reliability_bands() -> None:
    b = faults.inject(
        linear(5),
        nodes={"n0": 0.002, "n1": 0.03, "n2": 0.07, "n3": 0.2},
        handoffs={("n0", "n1"): 0.15, ("n3", "n4"): 0.03},
        seed=3,
    )
    contracts = {("n0", "n1"): Counted, ("n3", "n4"): Counted}
    rep = coordgap.report(run(b, runs=300, name="bands", handoffs=contracts))
    svg = graph_svg(rep.to_html())
    seen = set()
    for g in groups(svg, "node"):
        expected = band_of(rep.nodes[str(g.get("data-node"))].reliability.value)
        assert f"b-{expected}" in classes(g)
        seen.add(expected)
    assert seen >= {"good", "fair", "poor", "bad"}
    widths: dict[str, set[float]] = {}
    for g in groups(svg, "handoff"):
        s, t = str(g.get("data-handoff")).split(" -> ")
        expected = band_of(rep.handoffs[(s, t)].reliability.value)
        assert f"b-{expected}" in classes(g)
        path = g.find("path")
        assert path is not None
        width = float(re.findall(r"stroke-width:([\d.]+)px", str(path.get("style")))[0])
        widths.setdefault(expected, set()).add(width)
    # one width per band, heavier when worse: readable without colour
    assert all(len(w) == 1 for w in widths.values())
    assert max(widths["good"]) < max(widths["bad"])
    # failed handoffs carry their figure as text
    (failed,) = [g for g in groups(svg, "handoff") if g.get("data-handoff") == "n0 -> n1"]
    c = rep.handoffs[("n0", "n1")]
    label = failed.find("text")
    assert label is not None and label.text == f"{c.reliability.value:.3f} ✕{c.failures}"


def test_invalid_route_goes_to_a_marker_named_by_its_count() -> None:
    rep = coordgap.report(run(invalid_command(), runs=8, name="invalid"))
    svg = graph_svg(rep.to_html())
    (marker,) = groups(svg, "invalid-route")
    assert marker.get("data-source") == "a"
    label = marker.find("text")
    assert label is not None and label.text == "✕ invalid route \u00d74"
    (edge,) = [g for g in groups(svg, "handoff") if g.get("data-handoff") == "a -> __unknown__"]
    assert "invalid" in classes(edge)
    # the edge ends on the marker's box
    path = edge.find("path")
    assert path is not None
    end = [float(v) for v in re.findall(r"[-\d.]+", str(path.get("d")))[-2:]]
    x, y, w, h = rect(marker)
    assert x - 1 <= end[0] <= x + w + 1 and y - 1 <= end[1] <= y + h + 1


def test_never_taken_declared_routes_are_dashed_live_and_from_json() -> None:
    rep = coordgap.report(run(research_agent(), runs=10, name="research"))
    css = re.search(r"<style>(.*)</style>", rep.to_html(), flags=re.S)
    assert css is not None and ".handoff.never path{stroke-dasharray" in css.group(1)
    for r in (rep, Report.from_json(rep.to_json())):
        svg = graph_svg(r.to_html())
        never = {g.get("data-handoff") for g in groups(svg, "handoff") if "never" in classes(g)}
        assert never == {"cross_check -> retrieve"}


def test_dropped_handoff_is_marked_with_its_count() -> None:
    g = "dropped"
    ledger = Ledger(g)
    for i in range(10):
        ledger.record(HandoffOutcome(g, "__start__", "a", "edge", True, 0, 0))
        ledger.record(NodeOutcome(g, "a", True, 1, True, 0, 0))
        ok = i != 4
        ledger.record(
            HandoffOutcome(g, "a", "b", "send", ok, 0, 0, error_type=None if ok else "Undelivered")
        )
        if ok:
            ledger.record(NodeOutcome(g, "b", True, 1, True, 0, 0))
        ledger.record(RunOutcome(g, "ok", ok, 0, 0))
    rep = report(ledger)
    page = rep.to_html()
    (edge,) = [e for e in groups(graph_svg(page), "handoff") if e.get("data-handoff") == "a -> b"]
    assert {"dropped", "failed"} <= classes(edge)
    label = edge.find("text")
    assert label is not None and label.text == "⊘ 1 dropped"
    assert "Undelivered" in "".join(tags(page).text)


# -- the waterfall ------------------------------------------------------------------------------


def test_waterfall_goes_from_naive_through_each_loss_to_predicted(support_app: Any) -> None:
    rep = coordgap.report(support_app)
    bars = groups(waterfall_svg(rep.to_html()), "bar")

    def span(bar: ET.Element) -> tuple[float, float]:
        return float(str(bar.get("data-from"))), float(str(bar.get("data-to")))

    naive, *steps, predicted, observed = bars
    assert "naive" in classes(naive) and span(naive) == (0.0, pytest.approx(rep.naive))
    assert "total" in classes(predicted) and span(predicted)[1] == pytest.approx(rep.predicted)
    assert "observed" in classes(observed)
    level = rep.naive
    for bar in steps:  # each loss starts where the last ended ...
        assert "loss" in classes(bar)
        start, end = span(bar)
        assert start == pytest.approx(level, abs=1e-9) and end < start
        level = end
    assert level == pytest.approx(rep.predicted, abs=1e-9)  # ... and the last ends at predicted
    shares = sorted(c.gap_share for c in rep.components if (c.gap_share or 0) > 0)
    assert len(shares) == len(steps) >= 4  # one bar per handoff or router that loses anything
    assert sorted(a - b for a, b in map(span, steps)) == pytest.approx(shares, abs=1e-9)
    assert span(observed)[1] == pytest.approx(rep.end_to_end.observed.value)
    assert observed.find("path") is not None  # its interval, as a whisker
    title = observed.find("title")
    assert title is not None and f"{rep.end_to_end.observed.low:.3f}" in str(title.text)


@pytest.mark.parametrize("scale, rest", [(1.0, None), (0.5, "\u2212 interaction")])
def test_waterfall_groups_small_losses_and_always_closes(scale: float, rest: str | None) -> None:
    """Past ten rows the smallest losses are one bar; shares that miss the gap get a rest bar."""
    data = coordgap.report(run(linear(14), runs=3)).to_dict()
    data["end_to_end"]["naive"]["value"], data["end_to_end"]["predicted"]["value"] = 0.95, 0.8
    handoffs = [c for c in data["components"] if c["kind"] == "handoff"]
    assert len(handoffs) == 15
    for i, c in enumerate(handoffs):
        c["gap_share"] = scale * 0.15 * (i + 1) / 120  # they add up to 0.15 (scaled)
    rep = Report.from_json(json.dumps(data))
    bars = groups(waterfall_svg(rep.to_html()), "bar")
    labels = [b.findtext("text") for b in bars]
    assert "\u2212 6 more" in labels and len(labels) == 1 + 10 + (rest is not None) + 2
    if rest is not None:
        assert labels[-3] == rest
    level = 0.95
    for b in bars[1:-2]:
        start, end = float(str(b.get("data-from"))), float(str(b.get("data-to")))
        assert start == pytest.approx(level, abs=1e-9)
        level = end
    assert level == pytest.approx(0.8, abs=1e-9)


# -- the tables ---------------------------------------------------------------------------------


def test_weakest_links_and_the_plan_to_the_next_target(support_app: Any, support_page: str) -> None:
    rep = coordgap.report(support_app)
    text = " ".join(tags(support_page).text)
    for c in rep.weakest[:3]:
        assert c.label in text and f"+{c.gain:.3f}" in text
    heading = re.search(r"What would reach ([\d.]+)", text)
    assert heading is not None
    target = float(heading.group(1))
    assert rep.predicted is not None and target > rep.predicted
    plan = rep.recommend(target)
    assert plan.steps and all(s.description in text for s in plan.steps)


def test_run_level_errors_are_named_with_where_they_died() -> None:
    app = run(looping(limit=10**6), runs=3, name="recursion")  # every run hits the limit
    rep = coordgap.report(app)
    assert rep.snapshot is not None
    text = " ".join(tags(rep.to_html()).text)
    assert "GraphRecursionError" in text
    assert "3 of 3 finished runs raised" in text.replace("  ", " ")
    # Where runs died (RunStats.error_at), shown whenever the ledger knows it.
    runs = dataclasses.replace(rep.snapshot.runs, error_at={"work": 3})
    rep = Report.from_snapshot(dataclasses.replace(rep.snapshot, runs=runs))
    text = " ".join(tags(rep.to_html()).text)
    assert "by the node that ran last" in text and "work" in text


def test_a_report_without_data_says_no_data() -> None:
    app = coordgap.instrument(research_agent(sends=True), name="fresh")
    page = coordgap.report(app).to_html()
    svg = graph_svg(page)
    assert {g.get("data-node") for g in groups(svg, "node")} == {
        "retrieve",
        "analyze",
        "cross_check",
        "synthesize",
        "cite",
    }
    assert all("never" in classes(g) for g in groups(svg, "handoff"))
    text = " ".join(tags(page).text)
    assert text.count("no data") >= 4  # waterfall, weakest links, plan, run errors
    assert "no run yet" in text


def test_an_audit_renders_without_an_observed_side() -> None:
    rep = coordgap.audit(
        research_agent(),
        nodes={"retrieve": 0.98, "analyze": 0.96, "cross_check": 0.97, "synthesize": 0.95},
        handoffs=0.97,
        branches={"cross_check->retrieve": 0.1},
    )
    page = rep.to_html()
    svg = graph_svg(page)
    assert {g.get("data-node") for g in groups(svg, "node")} == set(rep.nodes)
    assert len(groups(svg, "handoff")) == len(rep.handoffs)
    assert not any("never" in classes(g) for g in groups(svg, "handoff"))
    text = " ".join(tags(page).text)
    assert "coordgap audit" in text and "An audit has no runs" in text
    assert "observed" not in [b.get("class") for b in groups(waterfall_svg(page), "bar")]


def test_json_report_draws_the_same_graph_as_the_live_one(support_app: Any) -> None:
    live = coordgap.report(support_app)
    saved = Report.from_json(live.to_json())
    a, b = graph_svg(live.to_html()), graph_svg(saved.to_html())
    for cls, attr in (
        ("node", "data-node"),
        ("handoff", "data-handoff"),
        ("router", "data-router"),
    ):
        assert sorted(str(g.get(attr)) for g in groups(a, cls)) == sorted(
            str(g.get(attr)) for g in groups(b, cls)
        )


# -- safety: escaping, no network --------------------------------------------------------------


def hostile_graph() -> StateGraph:
    b = StateGraph(State)
    b.add_node(HOSTILE, step("x"))
    b.add_node("q\"'&<u>", step("y"))
    b.add_edge(START, HOSTILE)
    b.add_edge(HOSTILE, "q\"'&<u>")
    b.add_edge("q\"'&<u>", END)
    return b


def test_hostile_names_are_escaped_everywhere() -> None:
    rep = coordgap.report(run(hostile_graph(), runs=2, name="</title><script>alert(1)</script>"))
    page = rep.to_html()
    found = tags(page)
    assert {t for t, _ in found.tags}.isdisjoint({"script", "img", "u"})
    assert not any(k.startswith("on") for _, attrs in found.tags for k in attrs)
    text = "".join(found.text)
    assert HOSTILE in text and "</title><script>alert(1)</script>" in text
    svg = graph_svg(page)  # still well-formed XML
    assert {g.get("data-node") for g in groups(svg, "node")} == {HOSTILE, "q\"'&<u>"}


def pages() -> Iterator[str]:
    yield coordgap.report(run(research_agent(fallback_every=2, sends=True), runs=6)).to_html()
    yield coordgap.report(run(hostile_graph(), runs=2)).to_html()
    yield coordgap.report(coordgap.instrument(with_subgraph(), name="empty")).to_html()
    yield coordgap.audit(linear(3), nodes=0.97).to_html()
    yield render_html_page([])


def test_the_page_loads_nothing_from_anywhere() -> None:
    for page in pages():
        assert page.startswith("<!doctype html>")
        assert page.isascii()  # any encoding of the output stream keeps it intact
        for pattern in (r"https?:", r"//", r"\burl\(", r"@import"):
            assert not re.search(pattern, page, flags=re.I), pattern
        found = tags(page)
        assert {t for t, _ in found.tags}.isdisjoint({"link", "script", "iframe", "img", "object"})
        for _, attrs in found.tags:
            assert attrs.keys().isdisjoint({"src", "href", "xlink:href", "srcset", "action"})


def test_light_dark_and_print_styles_are_there() -> None:
    page = coordgap.report(run(linear(2), runs=2)).to_html()
    assert '<meta name="color-scheme" content="light dark">' in page
    assert "@media screen and (prefers-color-scheme:dark)" in page
    assert "@media print" in page
    for colour in (*PALETTES["light"].values(), *PALETTES["dark"].values()):
        assert colour in page


def _luminance(colour: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_keeps_its_contrast_in_both_schemes(scheme: str) -> None:
    p = PALETTES[scheme]
    bands = ("good", "fair", "poor", "bad", "none")
    grounds = ["bg", "panel", *(f"{b}-bg" for b in bands)]
    for text in ("fg", "muted"):  # node names and figures sit on the band's tint
        for ground in grounds:
            assert contrast(p[text], p[ground]) >= 4.5, (text, ground)
    for b in ("good", "fair", "poor", "bad"):  # edge labels in the band's colour on the page
        assert contrast(p[b], p["bg"]) >= 4.5, b
    assert contrast(p["bad"], p["bad-bg"]) >= 4.5  # the invalid-route marker
    for b in (*bands, "naive", "loss"):  # lines and bars: 3:1 for graphics
        assert contrast(p[b], p["bg"]) >= 3.0, b


# -- several reports, the extra missing --------------------------------------------------------


def test_a_page_of_several_reports_has_one_section_each() -> None:
    reps = [coordgap.report(run(linear(2), runs=2, name=n)) for n in ("alpha", "beta")]
    page = render_html_page(reps)
    assert page.count('<section class="report"') == 2
    assert graph_svg(page, 1) is not None
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # ids unique across sections
    assert "No instrumented graph ran." in render_html_page([])


@pytest.fixture
def no_grandalf(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import grandalf`` fail as it does where the extra is not installed."""
    for name in [m for m in sys.modules if m == "grandalf" or m.startswith("grandalf.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "grandalf", None)


def test_without_grandalf_one_actionable_error(no_grandalf: None) -> None:
    rep = coordgap.report(run(linear(2), runs=2))
    with pytest.raises(ImportError, match=re.escape("pip install 'coordgap[html]'")):
        rep.to_html()


# -- the command line and the pytest option -------------------------------------------------


def test_cli_report_format_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rep = coordgap.report(run(research_agent(fallback_every=2), runs=6, name="research"))
    saved = tmp_path / "run.json"
    saved.write_text(rep.to_json())
    assert cli.main(["report", str(saved), "--format", "html"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("<!doctype html>") and out.rstrip().endswith("</html>")
    assert {g.get("data-node") for g in groups(graph_svg(out), "node")} == set(rep.nodes)
    snapshot = tmp_path / "snapshot.json"
    assert rep.snapshot is not None
    snapshot.write_text(json.dumps(rep.snapshot.to_dict()))
    assert cli.main(["report", str(snapshot), "-f", "html"]) == 0
    assert "Coverage" in capsys.readouterr().out  # a snapshot brings the declared topology


def test_cli_html_without_grandalf_says_how_to_install_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_grandalf: None
) -> None:
    saved = tmp_path / "run.json"
    saved.write_text(coordgap.report(run(linear(2), runs=2)).to_json())
    assert cli.main(["report", str(saved), "-f", "html"]) == 2
    assert "pip install 'coordgap[html]'" in capsys.readouterr().err


PYTEST_GRAPH = """
import coordgap
from langgraph.graph import StateGraph, START, END
from typing_extensions import TypedDict


class S(TypedDict):
    x: int


def build(name):
    b = StateGraph(S)
    b.add_node("a", lambda s: {"x": s["x"] + 1})
    b.add_node("b", lambda s: {"x": s["x"] * 2})
    b.add_edge(START, "a")
    b.add_edge("a", "b")
    b.add_edge("b", END)
    return coordgap.instrument(b, name=name, spans="off", metrics=False)


def test_alpha():
    app = build("alpha")
    for i in range(5):
        app.invoke({"x": i})


def test_beta():
    app = build("beta")
    for i in range(3):
        app.invoke({"x": i})
"""


def test_pytest_option_writes_one_html_page(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_gen=textwrap.dedent(PYTEST_GRAPH))
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "-p", "coordgap.pytest_plugin",
        "--coordgap-report-file=out/reliability.html",
    )  # fmt: skip
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["coordgap reports written to out/reliability.html"])
    page = (pytester.path / "out" / "reliability.html").read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert page.count('<section class="report"') == 2
    assert "<code>alpha</code>" in page and "<code>beta</code>" in page
    assert {g.get("data-node") for g in groups(graph_svg(page, 1), "node")} == {"a", "b"}


def test_pytest_option_html_without_grandalf_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, no_grandalf: None
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_gen="def test_x():\n    pass\n")
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "-p", "coordgap.pytest_plugin", "--coordgap-report-file=r.html"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "r.html: the HTML report lays the graph out with grandalf" in result.stderr.str()
    assert "pip install 'coordgap[html]'" in result.stderr.str()


def test_the_same_report_draws_the_same_page(support_app: Any) -> None:
    """Layout is deterministic (grandalf is fed in a fixed order): pages and screenshots diff."""
    rep = coordgap.report(support_app)
    first = rep.to_html()
    assert all(rep.to_html() == first for _ in range(5))
