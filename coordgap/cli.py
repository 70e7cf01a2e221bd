"""The ``coordgap`` command: report, diff, audit, watch.

::

    coordgap report run.json                      # a saved report or ledger snapshot
    coordgap report run.json -f html > run.html   # one self-contained page (coordgap[html])
    coordgap diff baseline.json run.json          # exit 1 when something dropped significantly
    coordgap audit myapp.graph:builder --nodes retrieve=0.98,analyze=0.96 --handoffs 0.97
    coordgap watch http://localhost:9464/metrics  # live view (needs coordgap[cli])

Exit codes: 0 fine, 1 a significant regression (``diff``), 2 a usage or input error.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ._ledger import LedgerSnapshot
from ._plan import Ref, recommend
from ._report import Report, report
from .errors import ConfigurationError

__all__ = ["main"]

_FORMATS = ("text", "markdown", "json", "mermaid", "html")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``coordgap`` command line; return its exit code.

    Example::

        >>> main(["audit", "myapp:builder", "--nodes", "0.97"])  # doctest: +SKIP
        0
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return int(exc.code or 0)
    try:
        return int(args.run(args, sys.stdout))
    except ConfigurationError as exc:
        print(f"coordgap: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"coordgap: error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="coordgap",
        description="Compounded reliability of LangGraph agents: nodes, handoffs, routers.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def fmt(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--format", "-f", choices=_FORMATS, default="text")
        sp.add_argument("--no-color", action="store_true", help="never colour the text output")

    r = sub.add_parser("report", help="print the report of a saved report or ledger snapshot")
    r.add_argument(
        "file", nargs="?", help="a report (Report.to_json) or a ledger snapshot (to_dict) as JSON"
    )
    r.add_argument("--confidence", type=float, default=0.95)
    r.add_argument(
        "--prometheus", metavar="URL", help="sum a fleet's counters through Prometheus's HTTP API"
    )
    r.add_argument(
        "--window", default="1h", help="PromQL range for increase(); 'none' = latest counters"
    )
    r.add_argument("--graph", help="graph name (optional when Prometheus holds one)")
    fmt(r)
    r.set_defaults(run=_cmd_report)

    d = sub.add_parser("diff", help="compare two saved reports; exit 1 on a significant drop")
    d.add_argument("old", help="the baseline")
    d.add_argument("new", help="the new report")
    d.add_argument("--format", "-f", choices=("text", "json"), default="text")
    d.set_defaults(run=_cmd_diff)

    a = sub.add_parser("audit", help="predict end to end from the topology, before any run")
    a.add_argument("target", help="module:attribute of a StateGraph builder (or a factory)")
    a.add_argument("--nodes", help="0.97 for all, or name=0.98,name=0.96")
    a.add_argument("--handoffs", help="0.97 for all, or 'source -> target=0.97,...'")
    a.add_argument("--routers", help="0.99 for all, or name=0.99,...")
    a.add_argument("--default", type=float, default=1.0, help="reliability of any other component")
    a.add_argument("--branches", help="'source -> target=probability,...' for router choices")
    a.add_argument("--visits", help="name=expected visits per run,...")
    a.add_argument("--boundary", action="store_true", help="count START/END handoffs too")
    fmt(a)
    a.set_defaults(run=_cmd_audit)

    w = sub.add_parser("watch", help="live view from a Prometheus /metrics endpoint")
    w.add_argument("url", help="http(s) URL of the metrics, or a file path")
    w.add_argument("--graph", help="the graph to show when the endpoint serves several")
    w.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    w.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the endpoint")
    w.add_argument("--once", action="store_true", help="print one report and exit")
    fmt(w)
    w.set_defaults(run=_cmd_watch)

    wi = sub.add_parser(
        "what-if", help="predict end to end after retries, fallbacks or hardened handoffs"
    )
    _add_what_if_arguments(wi)
    wi.set_defaults(run=_cmd_what_if)
    return p


def _render(rep: Report, fmt: str, no_color: bool) -> str:
    if fmt == "html":
        try:
            return rep.to_html()
        except ImportError as exc:  # grandalf missing: say how to get it, exit 2
            raise ConfigurationError(str(exc)) from exc
    if fmt == "json":
        return rep.to_json() + "\n"
    if fmt == "markdown":
        return rep.to_markdown()
    if fmt == "mermaid":
        return rep.to_mermaid()
    return rep.to_text(color=False if no_color else None)


def _load(path: str, confidence: float = 0.95) -> Report:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path!r}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(
            f"{path!r} is not JSON ({exc}); save reports with Report.to_json()"
        ) from exc
    if isinstance(data, dict) and "schema" not in data and {"nodes", "runs"} <= data.keys():
        try:
            snap = LedgerSnapshot.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"{path!r} is not a readable ledger snapshot ({exc})") from exc
        return report(snap, confidence=confidence)
    try:
        return Report.from_json(text)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{path!r}: {exc}") from exc


def _cmd_report(args: argparse.Namespace, out: TextIO) -> int:
    if args.prometheus:
        from .fleet import fleet_snapshot

        window = None if args.window.lower() == "none" else args.window
        snap = fleet_snapshot(args.prometheus, graph=args.graph, window=window)
        rep = report(snap, confidence=args.confidence)
    elif args.file is None:
        raise ConfigurationError("coordgap report: give a FILE.json or --prometheus URL")
    else:
        rep = _load(args.file, args.confidence)
    out.write(_render(rep, args.format, args.no_color))
    return 0


def _cmd_diff(args: argparse.Namespace, out: TextIO) -> int:
    old, new = _load(args.old), _load(args.new)
    cmp = new.compare(old)
    if args.format == "json":
        out.write(
            json.dumps(
                {
                    "regressed": cmp.regressed,
                    "changes": [
                        {
                            "kind": c.kind,
                            "name": c.name,
                            "old": c.old.value,
                            "new": c.new.value,
                            "delta": c.delta,
                            "difference": c.difference,
                            "significant": c.significant,
                        }
                        for c in cmp.changes
                    ],
                    "added": list(cmp.added),
                    "removed": list(cmp.removed),
                },
                indent=2,
            )
            + "\n"
        )
    else:
        out.write(str(cmp))
    return 1 if cmp.regressed else 0


def _pairs(text: str | None, what: str) -> float | dict[str, float] | None:
    """Parse ``0.97`` or ``a=0.98,b -> c=0.97`` from the command line."""
    if text is None:
        return None
    text = text.strip()
    try:
        if "=" not in text:
            return float(text)
        out: dict[str, float] = {}
        for item in text.split(","):
            if not item.strip():
                continue
            key, _, value = item.rpartition("=")
            out[key.strip()] = float(value)
        return out
    except ValueError:
        raise ConfigurationError(
            f"--{what} takes a number (0.97) or name=number pairs (a=0.98,b=0.96); got {text!r}"
        ) from None


def _import_target(spec: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(
            f"{spec!r} is not module:attribute; e.g. `coordgap audit myapp.graph:builder`"
        )
    if os.getcwd() not in sys.path:  # like `python -m`, find modules in the current directory
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigurationError(f"{module_name!r} has no attribute {attr!r}") from None
    if inspect.isfunction(obj):  # a factory such as build_graph()
        obj = obj()
    return obj


def _cmd_audit(args: argparse.Namespace, out: TextIO) -> int:
    from ._audit import audit

    graph = _import_target(args.target)
    visits = _pairs(args.visits, "visits")
    branches = _pairs(args.branches, "branches")
    if isinstance(visits, float) or isinstance(branches, float):
        raise ConfigurationError("--visits and --branches take name=number pairs")
    rep = audit(
        graph,
        nodes=_pairs(args.nodes, "nodes"),
        handoffs=_pairs(args.handoffs, "handoffs"),
        routers=_pairs(args.routers, "routers"),
        default=args.default,
        branches=branches,
        visits=visits,
        boundary=args.boundary,
    )
    out.write(_render(rep, args.format, args.no_color))
    return 0


def _fetch(url: str, timeout: float) -> str:
    if "://" not in url:
        return Path(url).read_text(encoding="utf-8")
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return str(resp.read().decode("utf-8", errors="replace"))


def _scrape(args: argparse.Namespace) -> Report:
    from .fleet import snapshot_from_text

    return report(snapshot_from_text(_fetch(args.url, args.timeout), graph=args.graph))


def _cmd_watch(args: argparse.Namespace, out: TextIO) -> int:
    if args.once:
        out.write(_render(_scrape(args), args.format, args.no_color))
        return 0
    try:
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text
    except ImportError:
        raise ConfigurationError(
            "the live view needs rich: pip install 'coordgap[cli]' (or use --once)"
        ) from None
    console = Console(file=out)

    def frame() -> Text:
        stamp = time.strftime("%H:%M:%S")
        try:
            body = _scrape(args).to_text(color=not args.no_color and console.is_terminal)
        except (OSError, ConfigurationError) as exc:
            # Keep watching: the endpoint may come back (a restart, a deploy).
            body = f"cannot read {args.url}: {exc}\n"
        return Text.from_ansi(
            f"{body}\n{args.url} - {stamp} - every {args.interval:g} s, Ctrl-C to stop"
        )

    try:
        if not console.is_terminal:
            # a pipe or a log file: a live region would show nothing until the end, so each
            # frame is printed in turn (an unreachable endpoint says so at once)
            while True:
                out.write(frame().plain + "\n")
                out.flush()
                time.sleep(args.interval)
        with Live(frame(), console=console, auto_refresh=False, screen=False) as live:
            while True:
                time.sleep(args.interval)
                live.update(frame(), refresh=True)
    except (KeyboardInterrupt, BrokenPipeError):
        pass
    return 0


# -- what-if ------------------------------------------------------------------------------


def _name_values(items: Sequence[str] | None, what: str) -> dict[str, str]:
    """Parse repeated ``name=value`` options (``--retries analyze=3``), commas allowed."""
    out: dict[str, str] = {}
    for item in items or ():
        for part in item.split(","):
            name, sep, value = part.rpartition("=")
            if not sep or not name.strip() or not value.strip():
                raise ConfigurationError(f"--{what} takes name=value (got {part!r})")
            out[name.strip()] = value.strip()
    return out


def _add_what_if_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a saved report (Report.to_json) or ledger snapshot (to_dict)")
    p.add_argument("--retries", action="append", metavar="NODE=ATTEMPTS", help="e.g. analyze=3")
    p.add_argument(
        "--perfect", action="append", metavar="COMPONENT", help="e.g. 'retrieve -> analyze'"
    )
    p.add_argument(
        "--reliability", action="append", metavar="COMPONENT=R", help="e.g. synthesize=0.99"
    )
    p.add_argument(
        "--fallback",
        action="append",
        metavar="COMPONENT=R|PATH",
        help="e.g. analyze=0.9 or 'a -> b=a -> c -> b'",
    )
    p.add_argument("--target", type=float, help="also print the cheapest plan reaching TARGET")
    p.add_argument(
        "--on",
        choices=("low", "point"),
        default="low",
        help="plan on the lower bound of predicted (default) or on the point estimate",
    )
    p.add_argument("--max-attempts", type=int, default=5, help="most attempts a plan may propose")
    p.add_argument("--format", "-f", choices=("text", "json"), default="text")


def _number_or_path(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


def _cmd_what_if(args: argparse.Namespace, out: TextIO) -> int:
    rep = _load(args.file)
    retries = {}
    for name, value in _name_values(args.retries, "retries").items():
        try:
            retries[name] = int(value)
        except ValueError as exc:
            raise ConfigurationError(
                f"--retries {name}={value}: attempts must be an integer"
            ) from exc
    reliability: dict[Ref, float] = {}
    for name, value in _name_values(args.reliability, "reliability").items():
        try:
            reliability[name] = float(value)
        except ValueError as exc:
            raise ConfigurationError(f"--reliability {name}={value}: not a number") from exc
    fallback: dict[Ref, float | str] = {}
    for item in args.fallback or ():
        # The component may itself contain "->": split at the first "=".
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigurationError(f"--fallback takes component=reliability|path (got {item!r})")
        fallback[name.strip()] = _number_or_path(value.strip())
    perfect = [p.strip() for item in args.perfect or () for p in item.split(",") if p.strip()]
    from .whatif import what_if

    result = what_if(
        rep, retries=retries, fallback=fallback, perfect=perfect, reliability=reliability
    )
    plan = None
    if args.target is not None:
        plan = recommend(rep, args.target, max_attempts=args.max_attempts, on=args.on)
    if args.format == "json":
        data: dict[str, Any] = {"what_if": result.to_dict()}
        if plan is not None:
            data["plan"] = plan.to_dict()
        out.write(json.dumps(data, indent=2) + "\n")
    else:
        out.write(result.to_text() + "\n")
        if plan is not None:
            out.write(plan.to_text() + "\n")
    return 0
