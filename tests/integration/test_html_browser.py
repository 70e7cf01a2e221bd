"""The HTML report in a real browser: headless Chromium (Debian's), driven by Playwright.

The page is opened from a ``file://`` path. Every request and console message
is recorded: the page must make no request but its own and log nothing. The
DOM is then queried: one box per node and one path per handoff (counted from
the report's snapshot and declared topology, not from the page), a tooltip on
each, no overlapping boxes, labels that fit their boxes as really rendered,
readable contrast in light and dark, and a PDF for print.

Chromium is installed from Debian when missing (as root); where it cannot be
had the tests skip, or fail under ``CI=true`` (``servers.unavailable``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from coverage_graphs import research_agent
from langgraph.graph import END, START, StateGraph

import coordgap
from coordgap._report import Report

from . import browser, servers
from .screenshot import example_report

HOSTILE = '<img src=x onerror="alert(1)">'


@pytest.fixture(scope="module")
def chromium_binary() -> str:
    if not browser.playwright_installed():
        servers.unavailable("playwright is not installed: pip install -e '.[test]'")
    binary = browser.ensure_chromium()
    if binary is None:
        servers.unavailable(
            "chromium is not installed and cannot be (needs root and apt-get): "
            "apt-get install -y chromium"
        )
        raise AssertionError("unreachable")
    return binary


@pytest.fixture(scope="module")
def context(chromium_binary: str) -> Iterator[Any]:
    started = browser.chromium(chromium_binary)
    try:
        ctx = started.__enter__()
    except Exception as exc:
        servers.unavailable(f"Chromium did not start: {exc}")
        raise  # unreachable: unavailable() skips or fails
    try:
        yield ctx
    finally:
        started.__exit__(None, None, None)


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Report]]:
    """Pages to open: the example agent (every kind of thing drawn), no data, an audit, hostile."""
    tmp = tmp_path_factory.mktemp("html")
    reports = {
        "example": example_report(300),
        "empty": coordgap.report(coordgap.instrument(research_agent(sends=True), name="fresh")),
        "audit": coordgap.audit(
            research_agent(), nodes=0.97, branches={"cross_check->retrieve": 0.2}
        ),
        "hostile": _hostile_report(),
    }
    out: dict[str, tuple[Path, Report]] = {}
    for name, rep in reports.items():
        path = tmp / f"{name}.html"
        path.write_text(rep.to_html(), encoding="utf-8")
        out[name] = (path, rep)
    return out


def _hostile_report() -> Report:
    from graphs_basic import State, step

    b = StateGraph(State)
    b.add_node(HOSTILE, step("x"))
    b.add_edge(START, HOSTILE)
    b.add_edge(HOSTILE, END)
    app = coordgap.instrument(b, name="</title><script>alert(2)</script>", spans="off")
    app.invoke({"n": 0})
    return coordgap.report(app)


class Visit:
    """One page opened in the browser, with everything it asked for and said."""

    def __init__(self, context: Any, path: Path, scheme: str = "light") -> None:
        self.url = path.resolve().as_uri()
        self.page = context.new_page()
        self.requests: list[str] = []
        self.console: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.console.append((m.type, m.text)))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)
        self.page.emulate_media(color_scheme=scheme)
        self.page.set_viewport_size({"width": 1440, "height": 900})
        self.page.goto(self.url, wait_until="load")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def js(self, script: str, arg: Any = None) -> Any:
        return self.page.evaluate(script, arg)

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def visit(context: Any) -> Iterator[Any]:
    opened: list[Visit] = []

    def open_page(path: Path, scheme: str = "light") -> Visit:
        v = Visit(context, path, scheme)
        opened.append(v)
        return v

    yield open_page
    for v in opened:
        v.close()


@pytest.mark.parametrize("name", ["example", "empty", "audit", "hostile"])
def test_the_page_loads_with_no_console_message_and_no_request(
    visit: Any, pages: dict[str, tuple[Path, Report]], name: str
) -> None:
    v = visit(pages[name][0])
    v.page.wait_for_load_state("networkidle")
    assert v.requests == [v.url]  # the page itself, nothing else
    assert v.console == []
    assert v.errors == []
    assert v.dialogs == []  # a hostile node name ran nothing
    assert v.js("document.querySelectorAll('script, link, img, iframe, object').length") == 0
    assert v.js("performance.getEntriesByType('resource').length") == 0


def test_one_shape_per_node_and_handoff_in_the_dom(
    visit: Any, pages: dict[str, tuple[Path, Report]]
) -> None:
    path, rep = pages["example"]
    snap = rep.snapshot
    assert snap is not None and snap.topology is not None
    nodes = set(snap.nodes) | set(snap.topology.nodes)
    handoffs = {f"{s} -> {t}" for s, t in snap.handoffs} | {
        f"{h.source} -> {h.target}" for h in snap.topology.handoffs
    }
    v = visit(path)
    found = v.js(
        """() => {
        const svg = document.querySelector('svg.graph');
        const each = (sel, key, shape) => [...svg.querySelectorAll(sel)].map(g => ({
            key: g.dataset[key],
            shapes: g.querySelectorAll(':scope > ' + shape).length,
            title: (g.querySelector(':scope > title') || {}).textContent || '',
        }));
        return {
            nodes: each('g.node', 'node', 'rect'),
            handoffs: each('g.handoff', 'handoff', 'path'),
            routers: each('g.router', 'router', 'polygon'),
        };
    }"""
    )
    assert sorted(n["key"] for n in found["nodes"]) == sorted(nodes)
    assert sorted(h["key"] for h in found["handoffs"]) == sorted(handoffs)
    assert sorted(r["key"] for r in found["routers"]) == sorted(rep.routers)
    for item in (*found["nodes"], *found["handoffs"], *found["routers"]):
        assert item["shapes"] == 1, item
        assert "reliability" in item["title"], item  # the tooltip on hover
    analyze = next(n for n in found["nodes"] if n["key"] == "analyze")
    c = rep.nodes["analyze"]
    assert f"[{c.reliability.low:.3f}, {c.reliability.high:.3f}]" in analyze["title"]
    for error_type in c.error_types:
        assert error_type in analyze["title"]


def test_rendered_boxes_do_not_overlap_and_labels_fit(
    visit: Any, pages: dict[str, tuple[Path, Report]]
) -> None:
    v = visit(pages["example"][0])
    boxes = v.js(
        """() => [...document.querySelectorAll(
            'svg.graph g.node:not(.subgraph), svg.graph g.terminal, svg.graph g.invalid-route'
        )].map(g => {
            const r = g.querySelector(':scope > rect').getBoundingClientRect();
            const labels = [...g.querySelectorAll(':scope > text')].map(
                t => t.getBoundingClientRect().width);
            return {key: g.dataset.node || g.dataset.terminal || g.dataset.source,
                    x: r.x, y: r.y, w: r.width, h: r.height, widest: Math.max(0, ...labels)};
        })"""
    )
    assert len(boxes) > 10
    for i, a in enumerate(boxes):
        assert a["widest"] <= a["w"] - 4, a  # the text as Chromium laid it out fits its box
        for b in boxes[i + 1 :]:
            apart = (
                a["x"] + a["w"] <= b["x"] + 0.5
                or b["x"] + b["w"] <= a["x"] + 0.5
                or a["y"] + a["h"] <= b["y"] + 0.5
                or b["y"] + b["h"] <= a["y"] + 0.5
            )
            assert apart, (a["key"], b["key"])
    inside = v.js(
        """() => {
        const svg = document.querySelector('svg.graph');
        const outer = svg.getBoundingClientRect();
        return [...svg.querySelectorAll('rect, path, polygon, text')].every(el => {
            const r = el.getBoundingClientRect();
            return r.left >= outer.left - 1 && r.right <= outer.right + 1
                && r.top >= outer.top - 1 && r.bottom <= outer.bottom + 1;
        });
    }"""
    )
    assert inside


def test_hover_and_focus_highlight(visit: Any, pages: dict[str, tuple[Path, Report]]) -> None:
    v = visit(pages["example"][0])
    node = v.page.locator('svg.graph g.node[data-node="analyze"] > rect')
    before = node.evaluate("el => getComputedStyle(el).filter")
    node.hover()
    assert before == "none" and node.evaluate("el => getComputedStyle(el).filter") != "none"
    edge = v.page.locator('svg.graph g.handoff[data-handoff="retrieve -> analyze"]')
    width = edge.locator("path").evaluate("el => getComputedStyle(el).strokeWidth")
    edge.focus()
    assert width != "6px"
    assert edge.locator("path").evaluate("el => getComputedStyle(el).strokeWidth") == "6px"


def _rgb(css: str) -> tuple[float, float, float]:
    r, g, b = (float(x) for x in re.findall(r"[\d.]+", css)[:3])
    return r, g, b


def _contrast(a: str, b: str) -> float:
    def lum(css: str) -> float:
        def ch(c: float) -> float:
            s = c / 255
            return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

        r, g, b = _rgb(css)
        return 0.2126 * ch(r) + 0.7152 * ch(g) + 0.0722 * ch(b)

    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("scheme, background", [("light", "rgb(255, 255, 255)"), ("dark", "rgb(13, 17, 23)")])  # fmt: skip
def test_both_colour_schemes_keep_text_readable(
    visit: Any, pages: dict[str, tuple[Path, Report]], scheme: str, background: str
) -> None:
    v = visit(pages["example"][0], scheme)
    assert v.js("getComputedStyle(document.body).backgroundColor") == background
    pairs = v.js(
        """() => [...document.querySelectorAll('svg.graph g.node:not(.subgraph)')].flatMap(g => {
            const fill = getComputedStyle(g.querySelector(':scope > rect')).fill;
            return [...g.querySelectorAll(':scope > text')].map(
                t => [g.dataset.node, getComputedStyle(t).fill, fill]);
        })"""
    )
    assert pairs
    for node, text, fill in pairs:
        assert _contrast(text, fill) >= 4.5, (scheme, node, text, fill)
    body = v.js(
        "[getComputedStyle(document.body).color, getComputedStyle(document.body).backgroundColor]"
    )
    assert _contrast(*body) >= 7


def test_prints_to_pdf(visit: Any, pages: dict[str, tuple[Path, Report]], tmp_path: Path) -> None:
    v = visit(pages["example"][0])
    v.page.emulate_media(media="print")
    assert (
        v.js("getComputedStyle(document.querySelector('.row')).gridTemplateColumns").count("px")
        == 1
    )
    pdf = v.page.pdf(path=str(tmp_path / "report.pdf"), format="A4", print_background=True)
    assert pdf.startswith(b"%PDF") and len(pdf) > 20_000


def test_screenshot(context: Any, pages: dict[str, tuple[Path, Report]], tmp_path: Path) -> None:
    """The screenshot docs/img/report-html.png is made this way (``bash scripts/html-screenshot``)."""
    out = browser.screenshot(context, pages["example"][0], tmp_path / "report.png", height=1275)
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 50_000
    assert int.from_bytes(data[16:20], "big") == 1440 and int.from_bytes(data[20:24], "big") == 1275
    docs = Path(__file__).resolve().parents[2] / "docs" / "img" / "report-html.png"
    assert docs.is_file(), "run bash scripts/html-screenshot"
