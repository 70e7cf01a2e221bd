"""One self-contained HTML page of a report: the graph in inline SVG, the gap as a waterfall.

``Report.to_html()`` (and ``coordgap report FILE --format html``, and
``pytest --coordgap-report-file=reliability.html``) render through here. The
page needs no network: the styles are inline, the pictures are inline SVG,
there is no script, font or image from anywhere. Hovering any node, handoff,
router or bar shows its interval, counts and error types (SVG ``<title>``).

What is drawn:

- **the graph**, laid out by ``grandalf``'s Sugiyama layout (what LangGraph's own
  ASCII drawing uses), top to bottom: one box per node (a subgraph is a cluster
  box around its inner nodes), one path per handoff, ``START``/``END`` pills, an
  "invalid route" marker per source whose routes named no node, and each router
  as a small diamond on the bottom edge of its source node, where its routes
  leave;
- **reliability as colour and as line weight**: the bands of :data:`BANDS` set
  the colour *and* the stroke width, and every node and every handoff that
  failed carries its figure as text, so the picture reads without colour;
- **coverage**: a declared handoff never taken is dashed; a dropped handoff
  (``Undelivered``) and a failed one are labelled on the path;
- **the coordination gap as a waterfall**: naive (nodes only), minus each
  handoff's and router's ``gap_share``, equals predicted; observed beside it
  with its interval.

Pure: ``Report -> str``, no I/O. ``grandalf`` is imported when a page is drawn
(``pip install 'coordgap[html]'``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from ._coverage import coverage
from ._plan import recommend
from ._stats import Estimate
from .errors import CoordgapError
from .render import fault_rows
from .semconv import END, ERROR_INVALID_ROUTE, ERROR_UNDELIVERED, START, UNKNOWN_TARGET
from .topology import handoff_name

if TYPE_CHECKING:
    # the report renders itself through here (rep.to_html()): its types only
    from ._report import ComponentReport, Report

__all__ = ["BANDS", "band", "render_html", "render_html_page"]

INSTALL_HINT = "pip install 'coordgap[html]'"

_MINUS, _TIMES, _DASH = "\u2212", "\u00d7", "\u2013"  # typeset signs, not ASCII look-alikes

BANDS: tuple[tuple[float, str, str], ...] = (
    (0.99, "good", "≥ 0.99"),
    (0.95, "fair", f"0.95 {_DASH} 0.99"),
    (0.90, "poor", f"0.90 {_DASH} 0.95"),
    (0.0, "bad", "< 0.90"),
)
"""(lowest reliability, class, legend text), best first. The text report reds below 0.95
and yellows below 0.99; the page splits its red band once more, at 0.90."""

_WIDTH = {"good": 1.5, "fair": 2.5, "poor": 3.5, "bad": 4.5, "none": 1.5}
"""Stroke width per band, px: worse is heavier, so the picture reads without colour."""


def band(value: float | None) -> str:
    """Return the band class of a reliability: good, fair, poor, bad, or none (no data).

    Example::

        >>> band(0.97), band(None)
        ('fair', 'none')
    """
    if value is None or math.isnan(value):
        return "none"
    for low, name, _ in BANDS:
        if value >= low:
            return name
    return "bad"


def _e(text: object) -> str:
    """Escape any text for HTML and SVG, attributes included."""
    return html.escape(str(text), quote=True)


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def _interval(e: Estimate | None) -> str:
    if e is None or e.value is None or e.method in ("given", "none"):
        return ""
    return f"[{e.low:.3f}, {e.high:.3f}]"


def _counts(table: Mapping[str, int]) -> str:
    return ", ".join(
        f"{k} {_TIMES}{v}" for k, v in sorted(table.items(), key=lambda kv: (-kv[1], kv[0]))
    )


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _n(x: float) -> str:
    """A coordinate for SVG: one decimal, no trailing zeros."""
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _last(name: str) -> str:
    return name.rsplit("/", 1)[-1]


# -- the graph: vertices, clusters, layout ------------------------------------------------

_CHAR = 7.3  # px per character of the 12 px monospace labels (a slight overestimate)
_NODE_H = 42.0
_PAD = 14.0  # inside a cluster box
_CLUSTER_HEAD = 22.0  # the cluster's title band
_XSPACE = 34.0
_YSPACE = 42.0
_COMPONENT_GAP = 40.0
_NAME_CHARS = 28


@dataclass(eq=False)
class _Vertex:
    """One box of the drawing: a node, a subgraph cluster, START/END, an invalid-route marker."""

    kind: str  # node, subgraph, start, end, unknown, ghost
    name: str  # the node's name; for an invalid-route marker, its source
    parent: str | None  # the cluster it is drawn in
    w: float = 0.0
    h: float = 0.0
    x: float = 0.0  # top-left, relative to its parent's origin until placed
    y: float = 0.0
    routes: dict[tuple[str, str], list[tuple[float, float]]] = field(default_factory=dict)
    """For a cluster: the routes of handoffs drawn inside it, relative to its origin."""

    @property
    def cx(self) -> float:
        return self.x + self.w / 2.0

    @property
    def cy(self) -> float:
        return self.y + self.h / 2.0


@dataclass
class _Drawing:
    width: float
    height: float
    vertices: dict[str, _Vertex]  # by key (see _Scene.key_of)
    routes: dict[tuple[str, str], list[tuple[float, float]]]  # absolute, per handoff


class _Scene:
    """The report's graph as boxes and edges, before layout."""

    def __init__(self, rep: Report) -> None:
        self.rep = rep
        names: list[str] = list(rep.nodes)
        endpoints: list[str] = []
        for s, t in rep.handoffs:
            endpoints += [s, t]
        endpoints += [c.source for c in rep.routers.values() if c.source]
        every = [*names, *endpoints]
        # A subgraph is drawn as a box around what is known inside it (``sub/...``).
        self.containers = {n for n in names if any(m.startswith(n + "/") for m in every)}
        self.vertices: dict[str, _Vertex] = {}
        for n in names:
            self._add(n, "subgraph" if n in self.containers else "node", n)
        for s, t in rep.handoffs:
            for end in (s, t):
                if end == t and _last(t) == UNKNOWN_TARGET:
                    self._add(self.key_of(s, t), "unknown", s)
                elif end not in self.vertices:
                    leaf = _last(end)
                    kind = "start" if leaf == START else "end" if leaf == END else "ghost"
                    self._add(end, kind, end)
        for c in rep.routers.values():
            if c.source and c.source not in self.vertices:
                self._add(c.source, "ghost", c.source)

    def key_of(self, source: str, target: str) -> str:
        """The vertex key a handoff ends at (invalid routes: one marker per source)."""
        if _last(target) == UNKNOWN_TARGET:
            return f"\x00unknown\x00{source}"
        return target

    def parent_of(self, name: str) -> str | None:
        best: str | None = None
        for c in self.containers:
            if c != name and name.startswith(c + "/") and (best is None or len(c) > len(best)):
                best = c
        return best

    def _add(self, key: str, kind: str, name: str) -> None:
        parent = self.parent_of(name)  # an invalid-route marker is drawn beside its source
        v = _Vertex(kind, name, parent)
        if kind in ("node", "ghost"):
            c = self.rep.nodes.get(name)
            second = _node_caption(c, self.rep)
            chars = max(len(_short(_last_or_full(name, parent), _NAME_CHARS)), len(second))
            v.w, v.h = max(84.0, chars * _CHAR + 22.0), _NODE_H
        elif kind in ("start", "end"):
            inner = parent is not None
            v.w, v.h = (48.0, 22.0) if inner else (64.0, 26.0)
        elif kind == "unknown":
            v.w, v.h = len(_marker(self.rep, name)[0]) * _CHAR * 0.95 + 18.0, 26.0
        self.vertices[key] = v

    def layout(self) -> _Drawing:
        """Place every box and route every handoff (grandalf, cluster by cluster, inside out)."""
        lib = _grandalf()
        members: dict[str | None, list[str]] = {}
        for key, v in self.vertices.items():
            members.setdefault(v.parent, []).append(key)
        # Each handoff is laid out in the innermost cluster holding both ends, between the
        # children of that cluster that hold them (a handoff into a subgraph meets its box).
        lifted: dict[str | None, list[tuple[str, str, tuple[str, str]]]] = {}
        self_loops: list[tuple[str, str]] = []
        for s, t in self.rep.handoffs:
            a, b = s, self.key_of(s, t)
            if a == b:
                self_loops.append((s, t))
                continue
            level = self._common(a, b)
            la, lb = self._child_at(a, level), self._child_at(b, level)
            if la == lb:
                self_loops.append((s, t))
                continue
            lifted.setdefault(level, []).append((la, lb, (s, t)))
        self.self_loops = self_loops

        def depth(c: str | None) -> int:
            return -1 if c is None else c.count("/")

        for level in sorted((c for c in members if c is not None), key=depth, reverse=True):
            box = self.vertices[level]
            w, h, routes = _layout_level(
                lib,
                [self.vertices[k] for k in members[level]],
                members[level],
                lifted.get(level, []),
            )
            c = self.rep.nodes.get(level)
            title = (
                _short(_last_or_full(level, box.parent), _NAME_CHARS) + " " + _cluster_caption(c)
            )
            box.w = max(w + 2 * _PAD, len(title) * _CHAR + 2 * _PAD)
            box.h = h + 2 * _PAD + _CLUSTER_HEAD
            shift = (box.w - w) / 2.0
            for k in members[level]:
                self.vertices[k].x += shift
                self.vertices[k].y += _PAD + _CLUSTER_HEAD
            box.routes = {
                key: [(x + shift, y + _PAD + _CLUSTER_HEAD) for x, y in pts]
                for key, pts in routes.items()
            }
        top = members.get(None, [])
        width, height, routes = _layout_level(
            lib, [self.vertices[k] for k in top], top, lifted.get(None, [])
        )
        # Place clusters' contents (and their routes) at absolute positions, outside in.
        for key in top:
            self._place(self.vertices[key], members, routes)
        return _Drawing(width, height, self.vertices, routes)

    def _place(
        self,
        v: _Vertex,
        members: Mapping[str | None, list[str]],
        routes: dict[tuple[str, str], list[tuple[float, float]]],
    ) -> None:
        if v.kind != "subgraph":
            return
        for key, pts in v.routes.items():
            routes[key] = [(x + v.x, y + v.y) for x, y in pts]
        for k in members.get(v.name, []):
            child = self.vertices[k]
            child.x += v.x
            child.y += v.y
            self._place(child, members, routes)

    def _chain(self, key: str) -> list[str | None]:
        """The clusters around a vertex, innermost first, ending with None (the top)."""
        out: list[str | None] = []
        p = self.vertices[key].parent
        while p is not None:
            out.append(p)
            p = self.vertices[p].parent
        out.append(None)
        return out

    def _common(self, a: str, b: str) -> str | None:
        around_b = set(self._chain(b))
        for c in self._chain(a):
            if c in around_b:
                return c
        return None

    def _child_at(self, key: str, level: str | None) -> str:
        """The vertex that stands for ``key`` among the children of ``level``."""
        while self.vertices[key].parent != level:
            parent = self.vertices[key].parent
            if parent is None:
                break
            key = parent
        return key


def _last_or_full(name: str, parent: str | None) -> str:
    """Inside its cluster a node shows its own name (``n0``), elsewhere the full ``sub/n0``."""
    if parent is not None and name.startswith(parent + "/"):
        return name[len(parent) + 1 :]
    return name


def _cluster_caption(c: ComponentReport | None) -> str:
    value = c.reliability.value if c is not None else None
    return f"subgraph · {_f(value) if value is not None else 'no data'}"


def _node_caption(c: ComponentReport | None, rep: Report) -> str:
    if c is None:
        return "not in the report"
    if c.reliability.value is None:
        return "no data"
    if rep.basis == "audit":
        return f"assumed {_f(c.reliability.value)}"
    return f"{_f(c.reliability.value)} · n {c.executions}"


class _View:
    """What grandalf reads and writes on a vertex: its size and its centre."""

    def __init__(self, w: float, h: float) -> None:
        self.w, self.h = w, h
        self.xy = (0.0, 0.0)


class _EdgeView:
    def __init__(self) -> None:
        self.pts: list[tuple[float, float]] = []

    def setpath(self, pts: list[tuple[float, float]]) -> None:
        self.pts = pts


def _grandalf() -> Any:
    try:
        from grandalf.graphs import Edge, Vertex, graph_core
        from grandalf.layouts import SugiyamaLayout
    except ImportError as exc:
        raise ImportError(
            f"the HTML report lays the graph out with grandalf, which is not installed: "
            f"{INSTALL_HINT}"
        ) from exc

    return SimpleNamespace(
        Edge=Edge, Vertex=Vertex, graph_core=graph_core, SugiyamaLayout=SugiyamaLayout
    )


def _layout_level(
    lib: Any,
    boxes: Sequence[_Vertex],
    keys: Sequence[str],
    edges: Sequence[tuple[str, str, tuple[str, str]]],
) -> tuple[float, float, dict[tuple[str, str], list[tuple[float, float]]]]:
    """Lay out one level (the top, or one cluster's inside); set each box's top-left.

    Returns the level's width, height and the route of each handoff drawn at it.
    Connected parts are laid out one by one and set side by side, left to right.
    """
    if not boxes:
        return 0.0, 0.0, {}
    gv = {k: lib.Vertex(k) for k in keys}
    box_of = dict(zip(keys, boxes, strict=True))
    pair_edges: dict[tuple[str, str], Any] = {}
    for a, b, _ in edges:
        if (a, b) not in pair_edges:  # several handoffs lifted onto one pair share a route
            pair_edges[(a, b)] = lib.Edge(gv[a], gv[b])
    pair_pts: dict[tuple[str, str], list[tuple[float, float]]] = {}
    x0 = 0.0
    height = 0.0
    for part, part_edges in _connected_parts(keys, list(pair_edges)):
        # grandalf's own Graph splits parts through a set of edges, whose order (and so the
        # layout) would change from run to run; each part is built here in a fixed order.
        comp = lib.graph_core([gv[k] for k in part], [pair_edges[e] for e in part_edges])
        order = list(comp.sV)
        for v in order:
            v.view = _View(box_of[v.data].w, box_of[v.data].h)
        for e in comp.sE:
            e.view = _EdgeView()
        sug = lib.SugiyamaLayout(comp)
        sug.xspace, sug.yspace = _XSPACE, _YSPACE
        sug.dw, sug.dh = 18.0, 18.0  # the bends of long edges take little room
        roots = [v for v in order if box_of[v.data].kind == "start"]
        roots = roots or [v for v in order if not v.e_in()] or order[:1]
        sug.init_all(roots=roots, optimize=True)
        sug.route_edge = _centre_to_centre
        sug.draw()
        # grandalf centres each box in its layer; align the tops instead, so a tall
        # subgraph box does not push the small boxes beside it halfway down.
        tallest: dict[float, float] = {}
        for v in order:
            row = round(v.view.xy[1], 3)
            tallest[row] = max(tallest.get(row, 0.0), v.view.h)
        centre: dict[str, tuple[float, float]] = {}
        for v in order:
            x, y = v.view.xy
            centre[v.data] = (x, y - tallest[round(y, 3)] / 2.0 + v.view.h / 2.0)
        raw: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for e in comp.sE:
            a, b = e.v[0].data, e.v[1].data
            bends = [(float(px), float(py)) for px, py in e.view.pts[1:-1]]
            raw[(a, b)] = [centre[a], *bends, centre[b]]
        left = min(centre[k][0] - box_of[k].w / 2.0 for k in centre)
        top = min(centre[k][1] - box_of[k].h / 2.0 for k in centre)
        right = max(centre[k][0] + box_of[k].w / 2.0 for k in centre)
        bottom = max(centre[k][1] + box_of[k].h / 2.0 for k in centre)
        for pts in raw.values():
            for px, py in pts[1:-1]:
                left, right = min(left, px - 6.0), max(right, px + 6.0)
                top, bottom = min(top, py), max(bottom, py)
        for k, (cx, cy) in centre.items():
            box = box_of[k]
            box.x = cx - box.w / 2.0 - left + x0
            box.y = cy - box.h / 2.0 - top
        for (a, b), pts in raw.items():
            moved = [(px - left + x0, py - top) for px, py in pts]
            moved[0] = _clip(box_of[a], moved[1])
            moved[-1] = _clip(box_of[b], moved[-2])
            pair_pts[(a, b)] = moved
        x0 += right - left + _COMPONENT_GAP
        height = max(height, bottom - top)
    routes = {key: list(pair_pts.get((a, b), [])) for a, b, key in edges}
    return x0 - _COMPONENT_GAP, height, routes


def _connected_parts(
    keys: Sequence[str], pairs: Sequence[tuple[str, str]]
) -> list[tuple[list[str], list[tuple[str, str]]]]:
    """Split a level into connected parts, vertices and edges in their given order."""
    root = {k: k for k in keys}

    def find(k: str) -> str:
        while root[k] != k:
            root[k] = root[root[k]]
            k = root[k]
        return k

    for a, b in pairs:
        root[find(a)] = find(b)
    parts: dict[str, tuple[list[str], list[tuple[str, str]]]] = {}
    for k in keys:
        parts.setdefault(find(k), ([], []))[0].append(k)
    for a, b in pairs:
        parts[find(a)][1].append((a, b))
    return list(parts.values())


def _centre_to_centre(edge: Any, pts: list[tuple[float, float]]) -> None:
    """grandalf's edge router, doing nothing: paths are clipped to the final boxes instead."""


def _clip(box: _Vertex, toward: tuple[float, float]) -> tuple[float, float]:
    """Return where the line from the box's centre to ``toward`` leaves the box."""
    cx, cy = box.cx, box.cy
    dx, dy = toward[0] - cx, toward[1] - cy
    if dx == 0 and dy == 0:
        return (cx, cy)
    scale = min(
        (box.w / 2.0) / abs(dx) if dx else math.inf,
        (box.h / 2.0) / abs(dy) if dy else math.inf,
    )
    scale = min(scale, 1.0)
    return (cx + dx * scale, cy + dy * scale)


# -- the graph: SVG --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Routes:
    """What the page knows about routes beyond the report's counts (coverage, when available)."""

    never: frozenset[tuple[str, str]]
    undeclared: Mapping[tuple[str, str], str]
    runs: int


def _routes_of(rep: Report) -> tuple[_Routes, Any]:
    """Never-taken and undeclared handoffs: from coverage with a snapshot, else from counts."""
    cov: Any = None
    if rep.snapshot is not None:
        try:
            cov = coverage(rep)
        except CoordgapError:
            cov = None
    if cov is not None and cov.has_topology:
        never = frozenset(e.key for e in cov.missed_edges)
        undeclared = {e.key: e.cause for e in cov.drift}
        return _Routes(never, undeclared, cov.runs), cov
    never = frozenset(
        key for key, c in rep.handoffs.items() if rep.basis != "audit" and c.executions == 0
    )
    return _Routes(never, {}, rep.end_to_end.runs), cov


def _est_line(c: ComponentReport, pct: str) -> str:
    r = c.reliability
    if r.value is None:
        return "reliability: no data"
    iv = _interval(r)
    return f"reliability {_f(r.value)}" + (f" {iv} ({pct})" if iv else " (given)")


def _common_lines(c: ComponentReport, rep: Report) -> list[str]:
    lines: list[str] = []
    if c.error_types:
        lines.append(f"error types: {_counts(c.error_types)}")
    if c.contract_failures:
        lines.append(f"contract failures: {c.contract_failures}")
    if c.faults:
        lines.append(f"injected faults: {c.faults}")
    if c.in_product:
        lines.append(f"visits per run {c.visits:.2f}")
        if c.gap_share is not None:
            lines.append(f"share of the gap {c.gap_share:.4f}")
        if c.if_perfect is not None:
            lines.append(f"if it never failed: end to end {_f(c.if_perfect)} (+{c.gain:.3f})")
    elif rep.basis != "audit" and c.executions > 0:
        lines.append("not in the product")
    return lines


def _node_title(c: ComponentReport | None, v: _Vertex, rep: Report, pct: str) -> str:
    if c is None:
        return f"{v.name}\nnot a node of this report"
    lines = [f"node {c.name}" if v.kind != "subgraph" else f"subgraph {c.name}", _est_line(c, pct)]
    if rep.basis != "audit":
        lines.append(f"{c.executions} executions, {c.failures} failed")
    if c.first_attempt is not None:
        lines.append(
            f"first attempt {_f(c.first_attempt.value)} {_interval(c.first_attempt)}; "
            f"{c.attempts} attempts, {c.attempt_failures} failed"
        )
    if v.kind == "subgraph":
        lines.append("a subgraph: its inner nodes are counted, not the box")
    lines += _common_lines(c, rep)
    return "\n".join(lines)


def _handoff_title(c: ComponentReport, rep: Report, routes: _Routes, pct: str) -> str:
    s, t = c.source or "", c.target or ""
    if _last(t) == UNKNOWN_TARGET:
        lines = [
            f"routes out of {s} that reached no node: {_counts(c.error_types) or 'none counted'}",
            f"of {c.executions} routes out of {s}; a router's own failures count on its line",
            _est_line(c, pct),
        ]
    else:
        kinds = f" ({', '.join(c.kinds)})" if c.kinds else ""
        lines = [f"handoff {handoff_name(s, t)}{kinds}", _est_line(c, pct)]
        if rep.basis != "audit":
            lines.append(f"{c.executions} transfers, {c.failures} failed")
    if (s, t) in routes.never:
        lines.append(f"declared, never taken in {routes.runs} runs")
    if (s, t) in routes.undeclared:
        lines.append(f"undeclared (drift): {routes.undeclared[(s, t)]}")
    dropped = c.error_types.get(ERROR_UNDELIVERED, 0)
    if dropped:
        lines.append(f"dropped: {dropped} handoffs whose target never started")
    lines += _common_lines(c, rep)
    return "\n".join(lines)


def _router_title(c: ComponentReport, rep: Report, pct: str) -> str:
    lines = [f"router {c.name} (on {c.source})", _est_line(c, pct)]
    if rep.basis != "audit":
        lines.append(f"{c.executions} decisions, {c.failures} failed")
    if c.targets:
        lines.append(f"chose: {_counts(c.targets)}")
    lines += _common_lines(c, rep)
    return "\n".join(lines)


def _path_d(
    pts: Sequence[tuple[float, float]], bend: float
) -> tuple[str, tuple[float, float], tuple[float, float]]:
    """Return an SVG path through ``pts``, the point its label sits at, and its end direction.

    Two points and a ``bend``: a quadratic curve bulging ``bend`` px to the left of
    travel (two handoffs in opposite directions then part). More points: a smooth
    Catmull-Rom curve through them (grandalf's bends of a long edge).
    """
    (x0, y0), (x1, y1) = pts[0], pts[-1]
    if len(pts) == 2:
        if not bend:
            mid = ((x0 + x1) / 2.0, (y0 + y1) / 2.0)
            return f"M{_n(x0)},{_n(y0)} L{_n(x1)},{_n(y1)}", mid, (x1 - x0, y1 - y0)
        dx, dy = x1 - x0, y1 - y0
        length = math.hypot(dx, dy) or 1.0
        cx = (x0 + x1) / 2.0 + bend * dy / length
        cy = (y0 + y1) / 2.0 - bend * dx / length
        mid = (0.25 * x0 + 0.5 * cx + 0.25 * x1, 0.25 * y0 + 0.5 * cy + 0.25 * y1)
        return (
            f"M{_n(x0)},{_n(y0)} Q{_n(cx)},{_n(cy)} {_n(x1)},{_n(y1)}",
            mid,
            (x1 - cx, y1 - cy),
        )
    parts = [f"M{_n(x0)},{_n(y0)}"]
    ext = [pts[0], *pts, pts[-1]]
    c2 = pts[0]
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        c1 = (p1[0] + (p2[0] - p0[0]) / 6.0, p1[1] + (p2[1] - p0[1]) / 6.0)
        c2 = (p2[0] - (p3[0] - p1[0]) / 6.0, p2[1] - (p3[1] - p1[1]) / 6.0)
        parts.append(f"C{_n(c1[0])},{_n(c1[1])} {_n(c2[0])},{_n(c2[1])} {_n(p2[0])},{_n(p2[1])}")
    mid = (
        pts[len(pts) // 2]
        if len(pts) % 2
        else (
            (pts[len(pts) // 2 - 1][0] + pts[len(pts) // 2][0]) / 2.0,
            (pts[len(pts) // 2 - 1][1] + pts[len(pts) // 2][1]) / 2.0,
        )
    )
    return " ".join(parts), mid, (x1 - c2[0], y1 - c2[1])


def _arrow(tip: tuple[float, float], direction: tuple[float, float], size: float) -> str:
    dx, dy = direction
    length = math.hypot(dx, dy) or 1.0
    ux, uy = dx / length, dy / length
    bx, by = tip[0] - ux * size, tip[1] - uy * size
    half = size * 0.5
    pts = [tip, (bx + uy * half, by - ux * half), (bx - uy * half, by + ux * half)]
    return " ".join(f"{_n(x)},{_n(y)}" for x, y in pts)


_MARGIN = 16.0
_LOOP_ROOM = 40.0  # right of the drawing, for self-loops


def _svg_graph(rep: Report, routes: _Routes, uid: str) -> str:
    """Return the graph as inline SVG: clusters, then handoffs, then boxes, then routers."""
    scene = _Scene(rep)
    drawing = scene.layout()
    pct = f"{rep.confidence * 100:g} % interval"
    clusters: list[str] = []
    boxes: list[str] = []
    for v in drawing.vertices.values():
        (clusters if v.kind == "subgraph" else boxes).append(_svg_vertex(v, rep, pct))
    # Handoffs drawn straight between the same two points (both directions of a pair, or
    # several handoffs lifted onto one subgraph box) bend apart.
    seen: dict[tuple[tuple[int, int], tuple[int, int]], int] = {}
    edges: list[str] = []
    for key, c in rep.handoffs.items():
        pts = drawing.routes.get(key)
        bend = 0.0
        if pts and len(pts) == 2 and key not in scene.self_loops:
            a = (round(pts[0][0]), round(pts[0][1]))
            b = (round(pts[1][0]), round(pts[1][1]))
            pair = (a, b) if a <= b else (b, a)
            k = seen.get(pair, 0)
            seen[pair] = k + 1
            reverse = key[::-1] in rep.handoffs and key[::-1] not in scene.self_loops
            bend = 16.0 if reverse else 16.0 * ((k + 1) // 2) * (-1) ** k
        loop_at = drawing.vertices.get(key[0]) if key in scene.self_loops or not pts else None
        edges.append(_svg_handoff(c, rep, routes, pct, pts, bend, loop_at))
    by_source: dict[str, list[ComponentReport]] = {}
    for c in rep.routers.values():
        by_source.setdefault(c.source or "", []).append(c)
    diamonds: list[str] = []
    for src, group in by_source.items():
        at = drawing.vertices.get(src)
        if at is not None:
            diamonds += [
                _svg_router(c, rep, pct, at, i - (len(group) - 1) / 2.0)
                for i, c in enumerate(group)
            ]
    width = drawing.width + 2 * _MARGIN + _LOOP_ROOM
    height = drawing.height + 2 * _MARGIN
    label = f"graph {rep.graph}: nodes, handoffs and routers coloured by reliability"
    return (
        f'<svg class="graph" id="{uid}-graph" viewBox="0 0 {_n(width)} {_n(height)}" '
        f'width="{_n(width)}" height="{_n(height)}" role="img" '
        # A wide graph shrinks to its panel down to 3/4 of its size, then scrolls sideways.
        f'style="min-width:{_n(width * 0.75)}px" aria-labelledby="{uid}-graph-title">'
        f'<title id="{uid}-graph-title">{_e(label)}</title>'
        f'<g transform="translate({_n(_MARGIN)},{_n(_MARGIN)})">'
        f'<g class="clusters">{"".join(clusters)}</g>'
        f'<g class="edges">{"".join(edges)}</g>'
        f'<g class="boxes">{"".join(boxes)}</g>'
        f'<g class="routers">{"".join(diamonds)}</g>'
        "</g></svg>"
    )


def _svg_vertex(v: _Vertex, rep: Report, pct: str) -> str:
    """One box: a node, a subgraph's cluster, START/END, or an invalid-route marker."""
    x, y, w, h = v.x, v.y, v.w, v.h
    if v.kind == "subgraph":
        c = rep.nodes.get(v.name)
        b = band(c.reliability.value if c else None)
        label = _short(_last_or_full(v.name, v.parent), _NAME_CHARS)
        return (
            f'<g class="node subgraph b-{b}" data-node="{_e(v.name)}" tabindex="0">'
            f"<title>{_e(_node_title(c, v, rep, pct))}</title>"
            f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" rx="10"/>'
            f'<text class="cluster-title" x="{_n(x + 10)}" y="{_n(y + 15)}">'
            f'{_e(label)} <tspan class="sub">{_e(_cluster_caption(c))}</tspan></text></g>'
        )
    if v.kind in ("node", "ghost"):
        c = rep.nodes.get(v.name)
        b = band(c.reliability.value if c else None)
        label = _short(_last_or_full(v.name, v.parent), _NAME_CHARS)
        if v.kind == "node":
            never = c is not None and c.executions == 0 and rep.basis != "audit"
            head = f'<g class="node b-{b}{" never" if never else ""}" data-node="{_e(v.name)}"'
        else:  # named by a handoff or a router, but not a node of the report
            head = f'<g class="ghost b-none" data-ghost="{_e(v.name)}"'
        return (
            f'{head} tabindex="0"><title>{_e(_node_title(c, v, rep, pct))}</title>'
            f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" rx="7"/>'
            f'<text class="name" x="{_n(x + w / 2)}" y="{_n(y + 17)}">{_e(label)}</text>'
            f'<text class="value" x="{_n(x + w / 2)}" y="{_n(y + 33)}">'
            f"{_e(_node_caption(c, rep))}</text></g>"
        )
    if v.kind in ("start", "end"):
        word = "START" if v.kind == "start" else "END"
        return (
            f'<g class="terminal {v.kind}" data-terminal="{_e(v.name)}">'
            f"<title>{_e(v.name)}</title>"
            f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" rx="{_n(h / 2)}"/>'
            f'<text x="{_n(x + w / 2)}" y="{_n(y + h / 2 + 4)}">'
            f"{word if v.parent is None else word.lower()}</text></g>"
        )
    # An invalid-route marker: routes out of v.name that reached no node.
    text, types = _marker(rep, v.name)
    title = f"routes out of {v.name} that reached no node: {_counts(types) or 'none counted'}"
    return (
        f'<g class="invalid-route" data-source="{_e(v.name)}">'
        f"<title>{_e(title)}</title>"
        f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" rx="4"/>'
        f'<text x="{_n(x + w / 2)}" y="{_n(y + h / 2 + 4)}">{_e(text)}</text></g>'
    )


def _marker(rep: Report, source: str) -> tuple[str, Mapping[str, int]]:
    """The text of the invalid-route marker of ``source``, and the error types behind it."""
    types: dict[str, int] = {}
    for (s, t), c in rep.handoffs.items():
        if s == source and _last(t) == UNKNOWN_TARGET:
            for k, n in c.error_types.items():
                types[k] = types.get(k, 0) + n
    count = sum(types.values())
    word = "invalid route" if set(types) <= {ERROR_INVALID_ROUTE} else "no route"
    return (f"✕ {word} {_TIMES}{count}" if count else f"✕ {word}"), types


def _svg_handoff(
    c: ComponentReport,
    rep: Report,
    routes: _Routes,
    pct: str,
    pts: Sequence[tuple[float, float]] | None,
    bend: float,
    loop_at: _Vertex | None,
) -> str:
    """One handoff: its path (a loop on ``loop_at`` for a self-handoff), arrowhead and label."""
    key = (c.source or "", c.target or "")
    b = band(c.reliability.value)
    invalid = _last(key[1]) == UNKNOWN_TARGET
    dropped = c.error_types.get(ERROR_UNDELIVERED, 0)
    classes = ["handoff", f"b-{b}"]
    for cls, on in (
        ("never", key in routes.never),
        ("undeclared", key in routes.undeclared),
        ("invalid", invalid),
        ("dropped", bool(dropped)),
        ("failed", bool(c.failures) and not invalid),
    ):
        if on:
            classes.append(cls)
    if loop_at is not None or not pts:
        at = loop_at or _Vertex("node", key[0], None)
        x1, y1 = at.x + at.w, at.cy
        d = (
            f"M{_n(x1)},{_n(y1 - 9)} C{_n(x1 + 34)},{_n(y1 - 26)} "
            f"{_n(x1 + 34)},{_n(y1 + 26)} {_n(x1 + 1)},{_n(y1 + 9)}"
        )
        mid, direction, tip = (x1 + 21, y1), (-1.0, -0.5), (x1 + 1, y1 + 9)
    else:
        d, mid, direction = _path_d(pts, bend)
        tip = pts[-1]
    label = ""
    if invalid:
        label = ""  # the marker at its end says it
    elif dropped:
        label = f"⊘ {dropped} dropped"
    elif c.failures:
        label = f"{_f(c.reliability.value)} ✕{c.failures}"
    elif rep.basis == "audit" and c.reliability.value is not None and c.reliability.value < 1:
        label = _f(c.reliability.value)
    text = (
        f'<text class="edge-label" x="{_n(mid[0] + 6)}" y="{_n(mid[1] + 4)}">{_e(label)}</text>'
        if label
        else ""
    )
    return (
        f'<g class="{" ".join(classes)}" data-handoff="{_e(f"{key[0]} -> {key[1]}")}" '
        f'tabindex="0"><title>{_e(_handoff_title(c, rep, routes, pct))}</title>'
        f'<path d="{d}" style="stroke-width:{_WIDTH[b]}px"/>'
        f'<polygon class="arrow" points="{_arrow(tip, direction, 7.0 + _WIDTH[b])}"/>'
        f"{text}</g>"
    )


def _svg_router(c: ComponentReport, rep: Report, pct: str, at: _Vertex, slot: float) -> str:
    """A router: a diamond on the bottom edge of its source, ``slot`` places from the middle."""
    b = band(c.reliability.value)
    cx, cy, r = at.cx + slot * 20.0, at.y + at.h, 7.5
    points = " ".join(
        f"{_n(px)},{_n(py)}" for px, py in ((cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy))
    )
    mark = (
        f'<text class="router-label" x="{_n(cx + r + 3)}" y="{_n(cy + 4)}">'
        f"{_e(_f(c.reliability.value))} ✕{c.failures}</text>"
        if c.failures
        else ""
    )
    return (
        f'<g class="router b-{b}" data-router="{_e(c.name)}" tabindex="0">'
        f"<title>{_e(_router_title(c, rep, pct))}</title>"
        f'<polygon points="{points}" style="stroke-width:{max(1.5, _WIDTH[b] - 1)}px"/>'
        f"{mark}</g>"
    )


def _legend() -> str:
    items = [f'<li><span class="swatch b-{name}"></span>{_e(text)}</li>' for _, name, text in BANDS]
    items.append('<li><span class="swatch b-none"></span>no data</li>')
    lines = [
        '<li><svg width="34" height="10" aria-hidden="true"><path class="key never" d="M1,5 H33"/></svg>'
        "declared, never taken</li>",
        '<li><svg width="34" height="10" aria-hidden="true"><path class="key heavy" d="M1,5 H33"/></svg>'
        "heavier line: less reliable</li>",
        '<li><svg width="16" height="16" aria-hidden="true"><polygon class="key diamond" '
        'points="8,1 15,8 8,15 1,8"/></svg>router, on its source</li>',
        "<li><b>0.944 ✕22</b> reliability and failures · <b>⊘ 3 dropped</b> target never "
        "started · <b>✕ invalid route</b> named no node</li>",
    ]
    return (
        '<div class="legend"><ul class="bands">'
        + "".join(items)
        + '</ul><ul class="lines">'
        + "".join(lines)
        + '</ul><p class="hint">Hover a node, handoff or router for its interval, counts '
        "and error types. Unlabelled handoffs never failed.</p></div>"
    )


# -- the gap as a waterfall ------------------------------------------------------------------

_WF_LABEL = 184.0
_WF_BAR = 270.0
_WF_VALUE = 58.0
_WF_ROW = 24.0
_WF_MAX_ROWS = 10


def _axis(values: Iterable[float]) -> float:
    """Return the left end of the waterfall's axis (its right end is 1.0)."""
    low = min(values, default=0.0)
    for span in (0.05, 0.1, 0.2, 0.25, 0.5, 1.0):
        if low >= 1.0 - span + 0.02 * span:
            return 1.0 - span
    return 0.0


def _svg_waterfall(rep: Report, uid: str) -> str:
    e = rep.end_to_end
    naive, predicted = e.naive.value, e.predicted.value
    if naive is None or predicted is None:
        return '<p class="empty">no data: the waterfall needs at least one counted node.</p>'
    coord = sorted(
        (c for c in (*rep.handoffs.values(), *rep.routers.values()) if (c.gap_share or 0.0) > 0),
        key=lambda c: (-(c.gap_share or 0.0), c.kind, c.name),
    )
    # label, class, from, to, value, title. A step bar (a loss) goes from the level before
    # it to the level after it; a total bar (naive, predicted, observed) from the axis.
    rows: list[tuple[str, str, float, float, str, str]] = []
    rows.append(
        (
            "naive (nodes only)",
            "naive",
            0.0,
            naive,
            _f(naive),
            f"naive: nodes only, {_f(naive)} {_interval(e.naive)}".rstrip(),
        )
    )
    level = naive
    shown = coord if len(coord) <= _WF_MAX_ROWS else coord[: _WF_MAX_ROWS - 1]
    for c in shown:
        share = c.gap_share or 0.0
        rows.append(
            (
                f"{_MINUS} ◆ {c.label}" if c.kind == "router" else f"{_MINUS} {c.label}",
                f"loss {c.kind}",
                level,
                level - share,
                f"{_MINUS}{share:.3f}",
                f"{c.kind} {c.label}: loses {share:.4f} of end to end; "
                f"reliability {_f(c.reliability.value)} {_interval(c.reliability)}".rstrip(),
            )
        )
        level -= share
    rest = coord[len(shown) :]
    if rest:
        share = sum(c.gap_share or 0.0 for c in rest)
        rows.append(
            (
                f"{_MINUS} {len(rest)} more",
                "loss",
                level,
                level - share,
                f"{_MINUS}{share:.3f}",
                "; ".join(f"{c.label} {c.gap_share or 0.0:.4f}" for c in rest),
            )
        )
        level -= share
    residual = level - predicted
    if abs(residual) > 1e-9:
        # Should the model's shares not add up to naive - predicted (a model composing the
        # components over the graph need not split its gap into independent shares), the
        # rest is shown as such: the bars always add up.
        rows.append(
            (
                f"{_MINUS} interaction" if residual > 0 else "+ interaction",
                "loss rest",
                level,
                predicted,
                f"{-residual:+.{3 if abs(residual) >= 5e-4 else 5}f}".replace("-", _MINUS),
                "the part of the gap no single handoff or router explains",
            )
        )
        level = predicted
    rows.append(
        (
            "= predicted",
            f"total b-{band(predicted)}",
            0.0,
            predicted,
            _f(predicted),
            f"predicted end to end {_f(predicted)} {_interval(e.predicted)}".rstrip(),
        )
    )
    observed = e.observed.value
    if observed is not None:
        rows.append(
            (
                "observed",
                f"observed b-{band(observed)}",
                0.0,
                observed,
                _f(observed),
                f"observed: {e.clean} clean of {e.finished} finished runs, {_f(observed)} "
                f"{_interval(e.observed)}".rstrip(),
            )
        )
    lows = [naive, predicted, e.predicted.low if e.predicted.method != "none" else predicted]
    if observed is not None:
        lows += [observed, e.observed.low]
    lo = _axis(lows)

    def x(v: float) -> float:
        return _WF_LABEL + (max(lo, min(1.0, v)) - lo) / (1.0 - lo) * _WF_BAR

    top = 8.0
    height = top + len(rows) * _WF_ROW + 30.0
    width = _WF_LABEL + _WF_BAR + _WF_VALUE + 8.0
    out = [
        f'<svg class="waterfall" id="{uid}-waterfall" viewBox="0 0 {_n(width)} {_n(height)}" '
        f'width="{_n(width)}" height="{_n(height)}" role="img" '
        f'aria-labelledby="{uid}-waterfall-title">'
        f'<title id="{uid}-waterfall-title">naive {_f(naive)} minus each handoff&#39;s and '
        f"router&#39;s loss equals predicted {_f(predicted)}</title>"
    ]
    # Ticks and grid.
    step = (1.0 - lo) / 5.0
    axis_y = top + len(rows) * _WF_ROW + 4.0
    for i in range(6):
        tv = lo + i * step
        tx = x(tv)
        out.append(
            f'<line class="grid" x1="{_n(tx)}" y1="{_n(top - 4)}" x2="{_n(tx)}" y2="{_n(axis_y)}"/>'
            f'<text class="tick" x="{_n(tx)}" y="{_n(axis_y + 14)}">{tv:.{2 if step >= 0.01 else 3}f}</text>'
        )
    prev_edge: float | None = None
    for i, (label, cls, a, b, value, title) in enumerate(rows):
        y = top + i * _WF_ROW
        xa, xb = sorted((x(a), x(b)))
        wbar = max(1.5, xb - xa)
        if prev_edge is not None and cls.startswith(("loss", "total")):
            out.append(
                f'<line class="connector" x1="{_n(prev_edge)}" y1="{_n(y - _WF_ROW + 17)}" '
                f'x2="{_n(prev_edge)}" y2="{_n(y + 3)}"/>'
            )
        whisker = ""
        if cls.startswith("total") and e.predicted.method not in ("given", "none"):
            whisker = _whisker(x(e.predicted.low), x(e.predicted.high), y)
        if cls.startswith("observed"):
            whisker = _whisker(x(e.observed.low), x(e.observed.high), y)
        out.append(
            f'<g class="bar {cls}" data-from="{a:.9f}" data-to="{b:.9f}"><title>{_e(title)}</title>'
            f'<text class="label" x="{_n(_WF_LABEL - 8)}" y="{_n(y + 14)}">'
            f"{_e(_short(label, 24))}</text>"
            f'<rect x="{_n(xa)}" y="{_n(y + 3)}" width="{_n(wbar)}" height="{_n(_WF_ROW - 8)}" rx="2"/>'
            f"{whisker}"
            f'<text class="value" x="{_n(_WF_LABEL + _WF_BAR + 8)}" y="{_n(y + 14)}">'
            f"{_e(value)}</text></g>"
        )
        prev_edge = None if cls.startswith("observed") else x(b)  # the level after this bar
    out.append(
        f'<line class="axis" x1="{_n(x(lo))}" y1="{_n(axis_y)}" x2="{_n(x(1.0))}" y2="{_n(axis_y)}"/>'
    )
    out.append("</svg>")
    return "".join(out)


def _whisker(xl: float, xh: float, y: float) -> str:
    cy = y + _WF_ROW / 2.0 - 1.0
    return (
        f'<path class="whisker" d="M{_n(xl)},{_n(cy)} H{_n(xh)} '
        f'M{_n(xl)},{_n(cy - 5)} V{_n(cy + 5)} M{_n(xh)},{_n(cy - 5)} V{_n(cy + 5)}"/>'
    )


# -- tables ------------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], classes: str) -> str:
    """An HTML table; cells are already escaped HTML.

    ``classes`` has one letter per column: ``n`` numeric (right, no wrap), ``i`` an
    interval (no wrap), ``t`` text.
    """
    names = {"n": ' class="num"', "i": ' class="iv"', "t": ""}
    head = "".join(
        f'<th scope="col"{names[k]}>{h}</th>' for h, k in zip(header, classes, strict=True)
    )
    body = "".join(
        "<tr>"
        + "".join(f"<td{names[k]}>{cell}</td>" for cell, k in zip(row, classes, strict=True))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _rel_cell(e: Estimate) -> str:
    b = band(e.value)
    return f'<span class="dot b-{b}" aria-hidden="true"></span>{_f(e.value)}'


def _weakest(rep: Report) -> str:
    if rep.predicted is None:
        return '<p class="empty">no data</p>'
    if not rep.weakest:
        return '<p class="empty">No component costs anything: every counted one never failed.</p>'
    rows = [
        [
            str(i),
            f'<code>{_e(c.label)}</code> <span class="kind">{c.kind}</span>',
            _rel_cell(c.reliability),
            _e(_interval(c.reliability)),
            _f(c.if_perfect),
            f"+{c.gain:.3f}",
        ]
        for i, c in enumerate(rep.weakest[:8], 1)
    ]
    header = ["#", "component", "reliability", "interval", "if perfect", "gain"]
    classes = "ttninn"
    if rep.basis == "audit":  # assumed figures have no interval
        rows = [r[:3] + r[4:] for r in rows]
        header, classes = header[:3] + header[4:], "ttnnn"
    return _table(header, rows, classes) + (
        '<p class="hint">If perfect: predicted end to end were this component never to '
        "fail; gain: what that adds.</p>"
    )


def _next_target(predicted: float) -> float | None:
    """The next round target above ``predicted``: a 0.05 step up to 0.95, then 0.99, 0.999."""
    steps = [round(0.05 * k, 2) for k in range(1, 20)] + [0.99, 0.999]
    for t in steps:
        if t >= predicted + 0.01 or (t > predicted and t >= 0.99):
            return t
    return None


def _plan(rep: Report) -> tuple[str, str]:
    """Return the what-if panel's heading and body: the cheapest plan to the next target."""
    predicted = rep.predicted
    if predicted is None:
        return "What would help", '<p class="empty">no data</p>'
    target = _next_target(predicted)
    if target is None:
        return "What would help", (
            f'<p class="empty">Predicted end to end is already {_f(predicted)}: '
            "nothing to plan.</p>"
        )
    heading = f"What would reach {target:g}"
    try:
        plan = recommend(rep, target)
    except (CoordgapError, ValueError, ArithmeticError) as exc:
        return heading, f'<p class="empty">no plan: {_e(exc)}</p>'
    verdict = "reaches" if plan.reached else "cannot reach"
    intro = (
        f"<p>The cheapest plan {verdict} {target:g}: predicted {_f(plan.before)} → "
        f"<b>{_f(plan.after)}</b> at cost {plan.cost:g} (an extra attempt costs 1, hardening "
        "a handoff or router 3).</p>"
    )
    if not plan.steps:
        return heading, intro + '<p class="empty">No change helps.</p>'
    rows = [
        [
            _e(s.description),
            f"{s.cost:g}",
            f"{s.before:.4f} → {s.after:.4f}",
            _f(s.predicted),
        ]
        for s in plan.steps
    ]
    table = _table(["change", "cost", "reliability", "end to end after"], rows, "tnnn")
    foot = (
        '<p class="hint">Retries and fallbacks assume independent attempts; try others with '
        "<code>coordgap.what_if(rep, retries=..., perfect=...)</code>.</p>"
    )
    return heading, intro + table + foot


def _run_errors(rep: Report) -> str:
    e = rep.end_to_end
    if rep.basis == "audit":
        return '<p class="empty">An audit has no runs.</p>'
    if e.runs == 0:
        return '<p class="empty">no data: no run yet.</p>'
    parts = [
        f"<p><b>{e.error}</b> of {e.finished} finished runs raised "
        f"(run errors {_f(e.run_errors.value)} {_e(_interval(e.run_errors))}); "
        f"{e.ok} finished ok, {e.clean} clean; {e.interrupted} interrupted (paused, not "
        "finished).</p>"
    ]
    snap = rep.snapshot
    if snap is None:
        if e.error:
            parts.append(
                '<p class="hint">Which exceptions ended them is kept in the ledger snapshot, '
                "not in a saved report.</p>"
            )
        return "".join(parts)
    if snap.runs.error_types:
        rows = [
            [f"<code>{_e(k)}</code>", str(v)]
            for k, v in sorted(snap.runs.error_types.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        parts.append(_table(["error type", "runs"], rows, "tn"))
    if snap.runs.error_at:
        rows = [
            [f"<code>{_e(k)}</code>", str(v)]
            for k, v in sorted(snap.runs.error_at.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        parts.append(
            "<p>Runs that raised with no failed component to blame, by the node that ran "
            "last:</p>" + _table(["node", "runs"], rows, "tn")
        )
    return "".join(parts)


def _faults_panel(rep: Report) -> str:
    fd = rep.fault_detection
    if fd is None:
        return ""
    rows = [
        [
            f"<code>{_e(guard)}</code>",
            str(n),
            _f(share.value),
            _e(_interval(share)),
            _e(words),
        ]
        for guard, words, n, share in fault_rows(fd)
    ]
    return (
        '<section class="panel"><h2>Which guard met each injected fault</h2>'
        f"<p><b>{fd.injected}</b> faults injected by <code>coordgap.faults</code>; "
        f"{_f(fd.detected.value)} {_e(_interval(fd.detected))} stopped before the caller, "
        f"{_f(fd.recovered.value)} {_e(_interval(fd.recovered))} recovered.</p>"
        + _table(["guard", "faults", "share", "interval", "what happened"], rows, "tnnit")
        + "</section>"
    )


def _routes_panel(rep: Report, routes: _Routes, cov: Any) -> str:
    parts: list[str] = []
    if cov is not None:
        parts.append(
            f"<p>Coverage <b>{cov.percent:.0f} %</b>: nodes {_e(cov.node_coverage)}, "
            f"handoffs {_e(cov.edge_coverage)}, router targets "
            f"{_e(cov.router_target_coverage)}.</p>"
        )
    failed: list[list[str]] = []
    if cov is not None:
        for f in cov.failed_routes:
            failed.append(
                [f"<code>{_e(f.label)}</code>", f"<code>{_e(f.error_type)}</code>", str(f.count)]
            )
    else:
        for (s, t), c in rep.handoffs.items():
            for et, n in sorted(c.error_types.items()):
                if _last(t) == UNKNOWN_TARGET or et == ERROR_UNDELIVERED:
                    label = handoff_name(s, t)
                    failed.append([f"<code>{_e(label)}</code>", f"<code>{_e(et)}</code>", str(n)])
    if failed:
        parts.append("<h3>Failed and dropped routes</h3>")
        parts.append(_table(["route", "error type", "count"], failed, "ttn"))
    never = [k for k in rep.handoffs if k in routes.never]
    if never:
        parts.append('<h3>Declared, never taken</h3><ul class="plain">')
        parts += [f"<li><code>{_e(handoff_name(s, t))}</code></li>" for s, t in never]
        parts.append("</ul>")
    if cov is not None and cov.missed_nodes:
        parts.append(
            "<p>Nodes never run: "
            + ", ".join(f"<code>{_e(n)}</code>" for n in cov.missed_nodes)
            + "</p>"
        )
    if routes.undeclared:
        parts.append('<h3>Taken, but declared nowhere</h3><ul class="plain">')
        parts += [
            f'<li><code>{_e(handoff_name(s, t))}</code> <span class="hint">{_e(cause)}</span></li>'
            for (s, t), cause in routes.undeclared.items()
        ]
        parts.append("</ul>")
    if not parts:
        if rep.basis == "audit":
            return '<p class="empty">An audit has no runs: nothing was taken yet.</p>'
        return '<p class="empty">No failed, dropped or never-taken route.</p>'
    if cov is None and rep.basis != "audit":
        parts.append(
            '<p class="hint">Declared routes come from the saved counts: a report loaded from '
            "JSON lists the handoffs it was saved with.</p>"
        )
    return "".join(parts)


def _components(rep: Report) -> str:
    audit = rep.basis == "audit"
    rows = []
    for c in rep.components:
        name = f"<code>{_e(c.label)}</code>"
        rel = _rel_cell(c.reliability)
        gain = f"+{c.gain:.3f}" if c.in_product else "-"
        if audit:
            rows.append([c.kind, name, rel, f"{c.visits:.2f}", gain])
        else:
            rows.append(
                [
                    c.kind,
                    name,
                    str(c.executions),
                    str(c.failures),
                    rel,
                    _e(_interval(c.reliability)),
                    _f(c.first_attempt.value) if c.first_attempt else "-",
                    f"{c.visits:.2f}",
                    gain,
                    _e(_counts(c.error_types)),
                ]
            )
    if audit:
        return _table(["kind", "component", "reliability", "visits", "gain"], rows, "ttnnn")
    pct = f"{rep.confidence * 100:g} % interval"
    return _table(
        [
            "kind",
            "component",
            "n",
            "failed",
            "reliability",
            pct,
            "first try",
            "visits",
            "gain",
            "errors",
        ],
        rows,
        "ttnnninnnt",
    )


# -- the page ----------------------------------------------------------------------------------


def _figure(label: str, e: Estimate | None, value: float | None, note: str) -> str:
    v = value if e is None else e.value
    b = band(v) if label != "coordination gap" else "gap"
    iv = _interval(e) if e is not None else ""
    return (
        f'<div class="figure b-{b}"><div class="flabel">{_e(label)}</div>'
        f'<div class="fvalue">{_e(_f(v))}</div>'
        f'<div class="finterval">{_e(iv) or "&#160;"}</div>'
        f'<div class="fnote">{_e(note)}</div></div>'
    )


def _section(rep: Report, uid: str) -> str:
    e = rep.end_to_end
    routes, cov = _routes_of(rep)
    audit = rep.basis == "audit"
    pct = f"{rep.confidence * 100:g} %"
    if audit:
        meta = "audit: assumed reliabilities, no runs"
    else:
        meta = (
            f"{e.runs} runs · {e.finished} finished · {e.interrupted} interrupted · {pct} intervals"
        )
    figures = []
    if not audit:
        figures.append(
            _figure("observed", e.observed, None, f"clean runs {e.clean} of {e.finished}")
        )
    figures.append(_figure("predicted", e.predicted, None, "from the components"))
    figures.append(_figure("naive", e.naive, None, "nodes only"))
    figures.append(_figure("coordination gap", None, rep.gap, f"naive {_MINUS} predicted"))
    if not audit:
        figures.append(_figure("run errors", e.run_errors, None, f"{e.error} runs raised"))
    heading, plan = _plan(rep)
    notes = list(rep.notes)
    if rep.internal_errors:
        notes.append(f"{rep.internal_errors} internal errors inside coordgap (counted, not raised)")
    notes_html = (
        '<section class="panel notes"><h2>Notes</h2><ul>'
        + "".join(f"<li>{_e(n)}</li>" for n in notes)
        + "</ul></section>"
        if notes
        else ""
    )
    if rep.nodes or rep.handoffs:
        graph = _svg_graph(rep, routes, uid)
    else:
        graph = '<p class="empty">no data: no node or handoff in this report.</p>'
    title = "audit" if audit else "report"
    return (
        f'<section class="report" id="{uid}">'
        f"<header><h1>coordgap {title} <code>{_e(rep.graph)}</code></h1>"
        f'<p class="meta">{_e(meta)}</p></header>'
        f'<div class="figures">{"".join(figures)}</div>'
        '<div class="row">'
        f'<section class="panel graph-panel"><h2>Graph</h2><div class="scroll">{graph}</div>'
        f"{_legend()}</section>"
        '<div class="stack">'
        '<section class="panel gap-panel"><h2>The coordination gap</h2>'
        "<p>Nodes alone promise the naive figure; each handoff and router takes its share; "
        "what is left is predicted. Observed is measured on whole runs.</p>"
        f'<div class="scroll">{_svg_waterfall(rep, uid)}</div></section>'
        f'<section class="panel"><h2>Weakest links</h2>{_weakest(rep)}</section>'
        f'<section class="panel"><h2>{_e(heading)}</h2>{plan}</section>'
        "</div></div>"
        '<div class="row even">'
        f'<section class="panel"><h2>Run-level errors</h2>{_run_errors(rep)}</section>'
        f'<section class="panel"><h2>Routes</h2>{_routes_panel(rep, routes, cov)}</section>'
        "</div>"
        f"{_faults_panel(rep)}"
        f'<section class="panel"><h2>Every component</h2><div class="scroll">{_components(rep)}'
        "</div></section>"
        f"{notes_html}</section>"
    )


def render_html(rep: Report) -> str:
    """Return one self-contained HTML page of the report (no network, no script).

    Raises:
        ImportError: ``grandalf`` is not installed (``pip install 'coordgap[html]'``).

    Example::

        Path("reliability.html").write_text(render_html(coordgap.report(app)))
    """
    return render_html_page([rep], title=f"coordgap: {rep.graph}")


def render_html_page(reports: Sequence[Report], *, title: str | None = None) -> str:
    """Return one HTML page holding every report in ``reports``, one section each.

    The pytest plugin writes the session's graphs this way. With no report the
    page says that no instrumented graph ran.

    Example::

        Path("session.html").write_text(render_html_page([rep_a, rep_b]))
    """
    from . import __version__

    if reports:
        sections = "".join(_section(rep, f"r{i}") for i, rep in enumerate(reports))
    else:
        sections = (
            '<section class="report"><p class="empty">No instrumented graph ran.</p></section>'
        )
    page_title = title or "coordgap reliability"
    page = (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f'<meta name="generator" content="coordgap {_e(__version__)}">'
        f"<title>{_e(page_title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{sections}"
        f"<footer>coordgap {_e(__version__)} · one self-contained page: no script, no "
        "network.</footer></main></body></html>\n"
    )
    # ASCII only (every other character as a reference): the page survives any encoding
    # of the stream it is written to, e.g. `coordgap report -f html > page.html`.
    return page.encode("ascii", "xmlcharrefreplace").decode("ascii")


# -- style ---------------------------------------------------------------------------------------

PALETTES: dict[str, dict[str, str]] = {
    "light": {
        "bg": "#ffffff",
        "fg": "#1f2328",
        "muted": "#59636e",
        "panel": "#f6f8fa",
        "border": "#d1d9e0",
        "good": "#1a7f37",
        "good-bg": "#dafbe1",
        "fair": "#7d5a00",
        "fair-bg": "#fff8c5",
        "poor": "#bc4c00",
        "poor-bg": "#ffe8d5",
        "bad": "#cf222e",
        "bad-bg": "#ffebe9",
        "none": "#818b98",
        "none-bg": "#f6f8fa",
        "naive": "#0969da",
        "loss": "#cf222e",
    },
    "dark": {
        "bg": "#0d1117",
        "fg": "#e6edf3",
        "muted": "#9198a1",
        "panel": "#151b23",
        "border": "#3d444d",
        "good": "#3fb950",
        "good-bg": "#12261e",
        "fair": "#d29922",
        "fair-bg": "#272115",
        "poor": "#db6d28",
        "poor-bg": "#2d1b0f",
        "bad": "#f85149",
        "bad-bg": "#301516",
        "none": "#7d8590",
        "none-bg": "#151b23",
        "naive": "#4493f8",
        "loss": "#f85149",
    },
}
"""The page's colours, light and dark. Text (fg, muted, the band colours) keeps a WCAG
contrast of at least 4.5 on bg, panel and every band's background (tests check it)."""


def _vars(palette: Mapping[str, str]) -> str:
    return "".join(f"--{k}:{v};" for k, v in palette.items())


_CSS = (
    ":root{" + _vars(PALETTES["light"]) + "color-scheme:light dark}"
    "@media screen and (prefers-color-scheme:dark){:root{" + _vars(PALETTES["dark"]) + "}}"
    """
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
 font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1440px;margin:0 auto;padding:20px 24px 32px}
code,.graph text,.waterfall text{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,
 "Liberation Mono",monospace}
code{font-size:12.5px}
h1{font-size:21px;margin:0 0 2px;font-weight:600}
h1 code{font-size:19px}
h2{font-size:15px;margin:0 0 10px;font-weight:600}
h3{font-size:13px;margin:14px 0 6px;font-weight:600}
.meta,.hint,.empty{color:var(--muted)}
.meta{margin:0 0 14px}
.hint{font-size:12.5px}
.report+.report{margin-top:40px;border-top:2px solid var(--border);padding-top:20px}
.figures{display:flex;flex-wrap:wrap;gap:10px;margin-bottom:14px}
.figure{flex:1 1 150px;border:1px solid var(--border);border-left:5px solid var(--c);
 border-radius:8px;padding:8px 12px;background:var(--panel)}
.flabel{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.fvalue{font-size:26px;font-weight:600;font-variant-numeric:tabular-nums;line-height:1.2}
.finterval,.fnote{font-size:12px;color:var(--muted);font-variant-numeric:tabular-nums}
.row{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:14px;margin-bottom:14px}
.row.even{grid-template-columns:minmax(0,1fr) minmax(0,1fr)}
.stack{display:flex;flex-direction:column;gap:14px;min-width:0}
.panel{border:1px solid var(--border);border-radius:8px;padding:12px 14px;background:var(--bg);
 min-width:0}
section.panel+section.panel{margin-top:0}
.report>.panel{margin-bottom:14px}
.scroll{overflow-x:auto}
.panel p{margin:6px 0}
svg{max-width:100%;height:auto;display:block}
svg.graph{margin:0 auto}
.b-good{--c:var(--good);--t:var(--good-bg)}
.b-fair{--c:var(--fair);--t:var(--fair-bg)}
.b-poor{--c:var(--poor);--t:var(--poor-bg)}
.b-bad{--c:var(--bad);--t:var(--bad-bg)}
.b-none{--c:var(--none);--t:var(--none-bg)}
.b-gap{--c:var(--loss)}
.node rect{fill:var(--t);stroke:var(--c);stroke-width:1.5px}
.node.b-fair rect{stroke-width:2.5px}.node.b-poor rect{stroke-width:3.5px}
.node.b-bad rect{stroke-width:4.5px}
.node.never rect{stroke-dasharray:5 3}
.node.subgraph rect{fill:var(--panel);stroke-dasharray:none}
.ghost rect{fill:var(--bg);stroke:var(--none);stroke-dasharray:3 3}
.graph text{font-size:12px;fill:var(--fg);text-anchor:middle}
.graph text.value{font-size:11px;fill:var(--muted)}
.graph text.cluster-title{text-anchor:start;font-weight:600}
.graph tspan.sub{font-weight:400;fill:var(--muted);font-size:11px}
.terminal rect{fill:var(--panel);stroke:var(--muted);stroke-width:1.2px}
.terminal text{font-size:10.5px;letter-spacing:.06em;fill:var(--muted)}
.invalid-route rect{fill:var(--bad-bg);stroke:var(--bad);stroke-width:2px;stroke-dasharray:4 2}
.invalid-route text{fill:var(--bad);font-weight:600;font-size:11px}
.handoff path{fill:none;stroke:var(--c)}
.handoff .arrow{fill:var(--c)}
.handoff.never path{stroke-dasharray:7 5}
.handoff.invalid path{stroke-dasharray:2 4;stroke-linecap:round}
.graph text.edge-label,.graph text.router-label{text-anchor:start;font-size:11px;
 font-weight:600;fill:var(--c);paint-order:stroke;stroke:var(--bg);stroke-width:4px;
 stroke-linejoin:round}
.handoff:hover path,.handoff:focus path{stroke-width:6px !important}
.node:hover rect,.node:focus rect{filter:brightness(.96)}
.router polygon{fill:var(--c);stroke:var(--bg)}
.legend{margin-top:10px;font-size:12.5px;color:var(--muted)}
.legend ul{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:4px 16px}
.legend ul+ul{margin-top:6px}
.legend li{display:flex;align-items:center;gap:6px}
.legend svg{display:inline-block}
.swatch{display:inline-block;width:14px;height:14px;border-radius:3px;background:var(--t);
 border:2px solid var(--c)}
.dot{display:inline-block;width:9px;height:9px;border-radius:50%;background:var(--c);
 margin-right:6px;vertical-align:baseline}
path.key{fill:none;stroke:var(--muted);stroke-width:2px}
path.key.never{stroke-dasharray:7 5}
path.key.heavy{stroke-width:4.5px;stroke:var(--bad)}
polygon.key.diamond{fill:var(--muted)}
.waterfall text{font-size:12px;fill:var(--fg)}
.waterfall .label{text-anchor:end}
.waterfall .tick{text-anchor:middle;fill:var(--muted);font-size:11px}
.waterfall .grid{stroke:var(--border);stroke-width:1px}
.waterfall .axis{stroke:var(--muted);stroke-width:1px}
.waterfall .connector{stroke:var(--muted);stroke-width:1px;stroke-dasharray:2 2}
.bar.naive rect{fill:var(--naive)}
.bar.loss rect{fill:var(--loss)}
.bar.loss.rest rect{fill:var(--muted)}
.bar.total rect{fill:var(--c)}
.bar.observed rect{fill:var(--t);stroke:var(--c);stroke-width:2px}
.whisker{stroke:var(--fg);stroke-width:1.5px;fill:none}
table{border-collapse:collapse;width:100%;font-size:13px;font-variant-numeric:tabular-nums}
th,td{padding:4px 8px;border-bottom:1px solid var(--border);text-align:left;vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:12px}
.num{text-align:right;white-space:nowrap}
.iv{white-space:nowrap;color:var(--muted)}
.kind{color:var(--muted);font-size:12px}
ul.plain{margin:4px 0;padding-left:18px}
.notes ul{margin:0;padding-left:18px}
footer{margin-top:24px;color:var(--muted);font-size:12px}
@media (max-width:980px){.row,.row.even{grid-template-columns:minmax(0,1fr)}}
@media print{
 body{font-size:10.5pt}
 main{max-width:none;padding:0}
 .row,.row.even{grid-template-columns:minmax(0,1fr)}
 .panel,.figure,svg{break-inside:avoid}
 .scroll{overflow:visible}
 svg.graph{min-width:0 !important}
}
"""
)
