"""Renderers of a report: aligned text, Markdown, JSON (versioned), Mermaid.

Each renderer is a pure function ``Report -> str``; none prints. The JSON form
is stable and versioned (``"schema": "coordgap.report/2"``; ``/1`` files are
still read) so reports saved as baselines can be read back by later versions::

    Path("baseline.json").write_text(rep.to_json())
    old = Report.from_json(Path("baseline.json").read_text())
    print(rep.compare(old))
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._stats import Estimate
from .semconv import END, START, UNKNOWN_TARGET

if TYPE_CHECKING:
    # the report is built above this module (its methods render through here): types only
    from ._report import Comparison, ComponentReport, EndToEnd, FaultDetection, Report

__all__ = [
    "fmt",
    "fmt_signed",
    "render_comparison",
    "render_markdown",
    "render_mermaid",
    "render_text",
]

_RED, _YELLOW, _GREEN, _BOLD, _DIM, _RESET = (
    "\x1b[31m",
    "\x1b[33m",
    "\x1b[32m",
    "\x1b[1m",
    "\x1b[2m",
    "\x1b[0m",
)


# -- formatting helpers -----------------------------------------------------------------


def fmt(x: float | None, digits: int = 3) -> str:
    """Return ``x`` with ``digits`` decimals, or more until it stops looking like 0 or 1.

    A reliability of 0.9996 prints as ``0.9996``, never ``1.000``: a figure shows a
    failure whenever there is one.

    Example::

        >>> fmt(0.9996), fmt(0.97), fmt(1.0), fmt(None)
        ('0.9996', '0.970', '1.000', '-')
    """
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return _digits(float(x), digits, signed=False)


def fmt_signed(x: float | None, digits: int = 3) -> str:
    """Return ``x`` with a sign, and enough decimals to tell a small gain from none.

    Example::

        >>> fmt_signed(0.00042), fmt_signed(0.0), fmt_signed(-0.05)
        ('+0.0004', '+0.000', '-0.050')
    """
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return _digits(float(x), digits, signed=True)


def _digits(x: float, digits: int, *, signed: bool) -> str:
    sign = "+" if signed else ""
    for d in range(digits, 9):
        text = f"{x:{sign}.{d}f}"
        shown = float(text)
        if x != 0.0 and shown == 0.0:
            continue  # a small non-zero value must not print as 0
        if x < 1.0 and shown >= 1.0 and not signed:
            continue  # nor a reliability below 1 as 1
        return text
    if not signed and 0.0 < x < 1.0:
        return f"1-{1.0 - x:.1e}"
    return f"{x:{sign}.1e}"


_f = fmt
_signed = fmt_signed


def _interval(e: Estimate | None) -> str:
    if e is None or e.value is None or e.method in ("given", "none"):
        return "-"
    return f"[{fmt(e.low)}, {fmt(e.high)}]"


def _use_color(color: bool | None) -> bool:
    if color is not None:
        return color
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty())


def _paint(text: str, value: float | None, color: bool) -> str:
    if not color or value is None:
        return text
    code = _RED if value < 0.95 else _YELLOW if value < 0.99 else _GREEN
    return f"{code}{text}{_RESET}"


def text_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    right: Sequence[bool],
    paint: Sequence[Sequence[float | None]] | None = None,
    color: bool = False,
) -> list[str]:
    """Return the lines of an aligned text table: the header, then one line per row.

    ``right[i]`` right-aligns column ``i`` (numbers); ``paint`` gives, per row and
    column, a reliability that colours the cell when ``color`` is true. Columns are
    two spaces apart; lines carry no trailing blanks. The one table of the package:
    the text report, comparisons, ``assert_reliability``'s message and the pytest
    plugin's summary are drawn with it.

    Example::

        >>> text_table(["node", "n"], [["a", "10"], ["bb", "9"]], [False, True])
        ['node   n', 'a     10', 'bb     9']
    """
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str], values: Sequence[float | None] | None) -> str:
        out = []
        for i, c in enumerate(cells):
            padded = c.rjust(widths[i]) if right[i] else c.ljust(widths[i])
            if values is not None and values[i] is not None:
                padded = _paint(padded, values[i], color)
            out.append(padded)
        return "  ".join(out).rstrip()

    head = line(header, None)
    lines = [f"{_BOLD}{head}{_RESET}" if color else head]
    for i, row in enumerate(rows):
        lines.append(line(row, paint[i] if paint else None))
    return lines


def _gap_split(rep: Report) -> str:
    parts = []
    for kind, comps in (("handoffs", rep.handoffs.values()), ("routers", rep.routers.values())):
        share = sum(c.gap_share or 0.0 for c in comps)
        if any(c.gap_share is not None for c in comps):
            parts.append(f"{kind} {fmt(share)}")
    return ", ".join(parts)


def _run_errors(e: EndToEnd) -> str:
    text = f"runs that raised ({e.error} / {e.finished})"
    if e.error_types:
        top = sorted(e.error_types.items(), key=lambda kv: (-kv[1], kv[0]))
        shown = ", ".join(f"{t} {n}" for t, n in top[:3])
        more = f", {len(top) - 3} more types" if len(top) > 3 else ""
        text += f": {shown}{more}"
    return text


def _show_first_try(rep: Report) -> bool:
    return any(c.first_attempt is not None for c in rep.nodes.values())


def _weakest(rep: Report, quote: str = "") -> str:
    if rep.weakest:
        return ", ".join(f"{quote}{c.label}{quote} ({fmt_signed(c.gain)})" for c in rep.weakest[:3])
    if rep.end_to_end.unblamed:
        return (
            f"no component: {rep.end_to_end.unblamed} run(s) raised with no component failing "
            "(see the finding above)"
        )
    return ""


FAULT_FATES = (
    ("contract", "a contract caught it"),
    ("retry", "a retry recovered it"),
    ("error_handler", "an error handler took it, the run went on"),
    ("caller", "it reached the caller (the run raised)"),
    ("unnoticed", "no guard saw it"),
)
"""The rows of the fault-detection table: guard, what happened to the fault."""


def fault_rows(fd: FaultDetection) -> list[tuple[str, str, int, Estimate]]:
    """Return (guard, what happened, faults, share of injected) per row of the table."""
    rows = []
    for guard, words in FAULT_FATES:
        n = fd.unnoticed if guard == "unnoticed" else fd.met.get(guard, 0)
        if n or guard != "unnoticed":
            rows.append((guard, words, n, fd.rate(guard)))
    return rows


def _fault_summary(fd: FaultDetection) -> str:
    return (
        f"Stopped before the caller {fmt(fd.detected.value)} {_interval(fd.detected)}, "
        f"recovered {fmt(fd.recovered.value)} {_interval(fd.recovered)}"
    )


LEGEND = (
    "gap = naive - predicted: what handoffs and routers cost end to end",
    "visits = executions per run when nothing fails; gain = predicted end to end if the "
    "component never failed, minus predicted now",
    "first try = tasks that succeeded on their first attempt (nodes with retries)",
)
"""What the less obvious figures mean; printed under the text report."""


def _legend(first_try: bool) -> tuple[str, ...]:
    return LEGEND if first_try else LEGEND[:2]


def _header(rep: Report) -> str:
    e = rep.end_to_end
    if rep.basis == "audit":
        return f"coordgap audit - graph {rep.graph!r} (assumed reliabilities, no runs)"
    if rep.basis == "what-if":
        return (
            f"coordgap what-if - graph {rep.graph!r} (predicted after the changes, from "
            f"{e.finished} finished runs; no observed side)"
        )
    return (
        f"coordgap report - graph {rep.graph!r} - {e.runs} runs "
        f"({e.finished} finished, {e.interrupted} interrupted)"
    )


def _predicted_how(rep: Report) -> str:
    n_in = sum(1 for c in rep.components if c.in_product)
    how = f"absorbing chain over {n_in} components"
    if rep.end_to_end.predicted.method == "delta-log":
        how += ", delta method"
    return how


# -- text -------------------------------------------------------------------------------------


def render_text(rep: Report, *, color: bool | None = None) -> str:
    """Return the report as an aligned text table (what ``print(rep)`` shows).

    Args:
        rep: the report.
        color: ANSI colours on reliabilities; None colours only when stdout
            is a TTY and ``NO_COLOR`` is unset.

    Example::

        print(render_text(coordgap.report(app), color=False))
    """
    color = _use_color(color)
    e = rep.end_to_end
    pct = f"{rep.confidence * 100:g} % interval"
    observed_side = rep.basis == "ledger"
    intervals = rep.basis != "audit"
    lines: list[str] = [_header(rep), ""]
    rows: list[list[str]] = []
    paint: list[list[float | None]] = []
    if observed_side:
        rows.append(
            [
                "observed",
                _f(e.observed.value),
                _interval(e.observed),
                f"clean runs / finished runs ({e.clean} / {e.finished})",
            ]
        )
        paint.append([None, e.observed.value, None, None])
    rows.append(
        [
            "predicted",
            _f(e.predicted.value),
            _interval(e.predicted),
            _predicted_how(rep),
        ]
    )
    paint.append([None, e.predicted.value, None, None])
    rows.append(
        ["naive", _f(e.naive.value), _interval(e.naive), "the same with handoffs, routers perfect"]
    )
    paint.append([None, None, None, None])
    rows.append(["coordination gap", _f(rep.gap), "", _gap_split(rep)])
    paint.append([None, None, None, None])
    if observed_side:
        rows.append(["run errors", _f(e.run_errors.value), _interval(e.run_errors), _run_errors(e)])
        paint.append([None, None, None, None])
    lines += text_table(
        ["end to end", "value", pct if intervals else "", ""],
        rows,
        [False, True, False, False],
        paint,
        color,
    )
    lines.append("")
    if rep.findings:
        lines += [f"finding: {f}" for f in rep.findings]
        lines.append("")

    first_try = _show_first_try(rep)
    rows, paint = [], []
    for c in rep.components:
        r = c.reliability.value
        if rep.basis != "ledger":
            row = [c.kind, c.label, _f(r)]
            if intervals:
                row.append(_interval(c.reliability))
            row += [f"{c.visits:.2f}", _signed(c.gain if c.in_product else None)]
            rows.append(row)
            paint.append([None, None, r, *([None] * (len(row) - 3))])
        else:
            row = [
                c.kind,
                c.label,
                str(c.executions),
                str(c.failures),
                _f(r),
                _interval(c.reliability),
            ]
            if first_try:
                row.append(_f(c.first_attempt.value) if c.first_attempt else "-")
            row += [f"{c.visits:.2f}", _signed(c.gain if c.in_product else None)]
            rows.append(row)
            paint.append([None, None, None, None, r, *([None] * (len(row) - 5))])
    if rep.basis != "ledger":
        header = ["kind", "component", "reliability", *([pct] if intervals else [])]
        header += ["visits", "gain"]
        right = [False, False, True, *([False] if intervals else []), True, True]
    else:
        header = ["kind", "component", "n", "failed", "reliability", pct]
        right = [False, False, True, True, True, False]
        if first_try:
            header.append("first try")
            right.append(True)
        header += ["visits", "gain"]
        right += [True, True]
    lines += text_table(header, rows, right, paint, color)
    weakest = _weakest(rep)
    if weakest:
        lines.append("")
        lines.append(f"weakest: {weakest}")
    fd = rep.fault_detection
    if fd is not None:
        lines.append("")
        lines.append(f"injected faults: {fd.injected} (coordgap.faults) - which guard met each")
        lines += text_table(
            ["guard", "faults", "share", pct, ""],
            [[g, str(n), _f(s.value), _interval(s), words] for g, words, n, s in fault_rows(fd)],
            [False, True, True, False, False],
        )
        lines.append(_fault_summary(fd))
    lines.append("")
    lines += list(_legend(first_try))
    for note in rep.notes:
        if note not in rep.findings:
            lines.append(f"note: {note}")
    return "\n".join(lines) + "\n"


# -- Markdown ------------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(rep: Report) -> str:
    """Return the report as Markdown (a summary table, findings, a component table).

    Example::

        Path("reliability.md").write_text(coordgap.report(app).to_markdown())
    """
    e = rep.end_to_end
    out: list[str] = []
    title = {"audit": "audit", "what-if": "what-if"}.get(rep.basis, "report")
    observed_side = rep.basis == "ledger"
    out.append(f"## coordgap {title}: `{rep.graph}`")
    out.append("")
    if observed_side:
        out.append(f"{e.runs} runs, {e.finished} finished, {e.interrupted} interrupted.")
        out.append("")
    out.append("| end to end | value | interval |")
    out.append("|---|---:|---|")
    if observed_side:
        out.append(
            f"| observed (clean / finished) | {_f(e.observed.value)} | {_interval(e.observed)} |"
        )
    out.append(f"| predicted | {_f(e.predicted.value)} | {_interval(e.predicted)} |")
    out.append(
        f"| naive (handoffs, routers perfect) | {_f(e.naive.value)} | {_interval(e.naive)} |"
    )
    out.append(f"| **coordination gap** | **{_f(rep.gap)}** | {_gap_split(rep)} |")
    if observed_side:
        out.append(
            f"| run errors | {_f(e.run_errors.value)} | {_interval(e.run_errors)} "
            f"{_md_escape(_run_errors(e))} |"
        )
    out.append("")
    if rep.findings:
        out += [f"> **Finding:** {_md_escape(f)}" for f in rep.findings]
        out.append("")
    first_try = _show_first_try(rep)
    if not observed_side:
        out.append("| kind | component | reliability | visits | gain |")
        out.append("|---|---|---:|---:|---:|")
        for c in rep.components:
            out.append(
                f"| {c.kind} | `{_md_escape(c.label)}` | {_f(c.reliability.value)} | "
                f"{c.visits:.2f} | {_signed(c.gain if c.in_product else None)} |"
            )
    else:
        ft_head, ft_rule = (" first try |", "---:|") if first_try else ("", "")
        out.append(
            f"| kind | component | n | failed | reliability | interval |{ft_head} visits | gain |"
        )
        out.append(f"|---|---|---:|---:|---:|---|{ft_rule}---:|---:|")
        for c in rep.components:
            ft = ""
            if first_try:
                ft = f" {_f(c.first_attempt.value) if c.first_attempt else '-'} |"
            out.append(
                f"| {c.kind} | `{_md_escape(c.label)}` | {c.executions} | {c.failures} | "
                f"{_f(c.reliability.value)} | {_interval(c.reliability)} |{ft} {c.visits:.2f} | "
                f"{_signed(c.gain if c.in_product else None)} |"
            )
    weakest = _weakest(rep, "`")
    if weakest:
        out.append("")
        out.append(f"**Weakest links:** {_md_escape(weakest)}")
    fd = rep.fault_detection
    if fd is not None:
        out.append("")
        out.append(
            f"**Injected faults: {fd.injected}** (`coordgap.faults`), by the guard that met each:"
        )
        out.append("")
        out.append("| guard | faults | share | interval | what happened |")
        out.append("|---|---:|---:|---|---|")
        for g, words, n, share in fault_rows(fd):
            out.append(f"| `{g}` | {n} | {_f(share.value)} | {_interval(share)} | {words} |")
        out.append("")
        out.append(f"{_fault_summary(fd)}.")
    out.append("")
    out.append(f"<sub>{_md_escape('. '.join(_legend(first_try)))}.</sub>")
    notes = [n for n in rep.notes if n not in rep.findings]
    if notes:
        out.append("")
        out += [f"> {_md_escape(n)}" for n in notes]
    return "\n".join(out) + "\n"


# -- JSON ----------------------------------------------------------------------------------------


def _mm(text: str) -> str:
    return text.replace('"', "#quot;")


def render_mermaid(rep: Report, *, threshold: float = 0.95) -> str:
    """Return a Mermaid flowchart: each node and handoff labelled with its reliability.

    Components below ``threshold`` get the ``failing`` class (nodes, routers)
    or a red ``linkStyle`` (handoffs); the weakest link gets ``weakest``.
    Routers are diamonds hanging off their source with a dotted link.

    Example::

        Path("graph.mmd").write_text(coordgap.report(app).to_mermaid(threshold=0.97))
    """
    ids: dict[str, str] = {}
    lines = ["flowchart LR"]
    failing: list[str] = []
    weakest_ids: list[str] = []
    weakest = rep.weakest[0] if rep.weakest else None

    def node_id(name: str) -> str:
        if name not in ids:
            ids[name] = f"n{len(ids)}"
            if name == START:
                lines.append(f'  {ids[name]}(["START"])')
            elif name == END:
                lines.append(f'  {ids[name]}(["END"])')
            elif name == UNKNOWN_TARGET:
                lines.append(f'  {ids[name]}[/"invalid route"/]')
            else:
                c = rep.nodes.get(name)
                rel = _f(c.reliability.value) if c else "-"
                lines.append(f'  {ids[name]}["{_mm(name)}<br/>{rel}"]')
                if c is not None and _below(c, threshold):
                    failing.append(ids[name])
                if c is not None and c is weakest:
                    weakest_ids.append(ids[name])
        return ids[name]

    for name in rep.nodes:
        node_id(name)
    link_index = 0
    red_links: list[int] = []
    for (source, target), c in rep.handoffs.items():
        a, b = node_id(source), node_id(target)
        lines.append(f'  {a} -->|"{_f(c.reliability.value)}"| {b}')
        if _below(c, threshold) or c is weakest:
            red_links.append(link_index)
        link_index += 1
    for i, (name, c) in enumerate(rep.routers.items()):
        rid = f"r{i}"
        lines.append(f'  {rid}{{"{_mm(name)}<br/>{_f(c.reliability.value)}"}}')
        if c.source is not None:
            lines.append(f"  {node_id(c.source)} -.- {rid}")
            link_index += 1
        if _below(c, threshold):
            failing.append(rid)
        if c is weakest:
            weakest_ids.append(rid)
    lines.append("  classDef failing fill:#fde2e2,stroke:#c62828,color:#8e0000")
    lines.append("  classDef weakest stroke:#c62828,stroke-width:3px")
    if failing:
        lines.append(f"  class {','.join(failing)} failing")
    if weakest_ids:
        lines.append(f"  class {','.join(weakest_ids)} weakest")
    if red_links:
        lines.append(f"  linkStyle {','.join(map(str, red_links))} stroke:#c62828,stroke-width:2px")
    return "\n".join(lines) + "\n"


def _below(c: ComponentReport, threshold: float) -> bool:
    return c.reliability.value is not None and c.reliability.value < threshold


# -- comparison -----------------------------------------------------------------------------------


def render_comparison(cmp: Comparison) -> str:
    """Return a comparison as text: what got worse first, significant drops marked ``!``.

    Example::

        print(render_comparison(new.compare(old)))
    """
    lines = [
        f"coordgap diff - {cmp.baseline!r} -> {cmp.current!r}: "
        + (
            f"{len(cmp.regressions)} significant drop(s)"
            if cmp.regressed
            else "no significant drop"
        ),
        "",
    ]
    rows = []
    for c in cmp.changes:
        mark = "!" if c.significant and c.worse else ("+" if c.significant else "")
        diff = "-" if c.difference is None else f"[{c.difference[0]:+.3f}, {c.difference[1]:+.3f}]"
        rows.append(
            [
                mark,
                c.kind,
                c.name,
                _f(c.old.value),
                _interval(c.old),
                _f(c.new.value),
                _interval(c.new),
                _signed(c.delta),
                diff,
            ]
        )
    lines += text_table(
        [
            "",
            "kind",
            "component",
            "old",
            "old interval",
            "new",
            "new interval",
            "change",
            "diff interval",
        ],
        rows,
        [False, False, False, True, False, True, False, True, False],
    )
    if cmp.added:
        lines.append("")
        lines.append("new components: " + ", ".join(cmp.added))
    if cmp.removed:
        lines.append("")
        lines.append("gone components: " + ", ".join(cmp.removed))
    return "\n".join(lines) + "\n"
