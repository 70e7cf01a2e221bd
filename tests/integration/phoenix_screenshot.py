"""Write the Phoenix screenshots in ``docs/img/``: ``bash scripts/phoenix-screenshot``.

Starts a real Arize Phoenix on 127.0.0.1 (``servers.start_phoenix``: a temporary working
directory, no telemetry, no external resources), runs the research agent of
``examples/phoenix/handoff_failures.py`` (seeded, so the same runs every time) twice, and
renders Phoenix's own UI in headless Chromium (Debian's ``chromium``, see ``browser.py``)::

    docs/img/phoenix-openinference-trace.png  OpenInference traces the graph, coordgap
                                              spans="failures": one trace, the failed
                                              handoff (a guardrail) under the LangGraph span
    docs/img/phoenix-coordgap-trace.png       coordgap alone, spans="all": the run (an
                                              agent), its nodes (chains), the failures
    docs/img/phoenix-failed-handoffs.png      the Spans tab filtered on failed handoffs

Options: ``--out DIR`` (default ``docs/img``), ``--runs N`` (default 12).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import coordgap
from coordgap import semconv as sc
from coordgap.otlp import configure_otlp

from .browser import browser_for_screenshots, chromium
from .servers import phoenix_installed, start_phoenix

ROOT = Path(__file__).resolve().parents[2]
WITH_OPENINFERENCE = "research-agent-openinference"
ALONE = "research-agent-coordgap"
VIEWPORT = {"width": 1600, "height": 1000}


def _example() -> Any:
    path = ROOT / "examples" / "phoenix" / "handoff_failures.py"
    spec = importlib.util.spec_from_file_location("phoenix_handoff_failures", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def send(url: str, project: str, *, runs: int, spans: str, openinference: bool) -> None:
    """Run the example agent ``runs`` times into ``project``, OpenInference on or off."""
    example = _example()
    tp, mp = configure_otlp(
        url,
        service_name="research-agent",
        resource_attributes={"openinference.project.name": project},
        metrics=False,
    )
    instrumentor = None
    if openinference:
        from openinference.instrumentation.langchain import LangChainInstrumentor

        instrumentor = LangChainInstrumentor()
        instrumentor.instrument(tracer_provider=tp)
    try:
        app = coordgap.instrument(
            example.build(random.Random(7)),
            name="research-agent",
            handoffs={("retrieve", "analyze"): example.Retrieved},
            spans=spans,
            tracer_provider=tp,
            meter_provider=mp,
        )
        for i in range(runs):
            try:
                app.invoke({"question": f"question {i}"})
            except TimeoutError:
                pass
        tp.force_flush(timeout_millis=30_000)
    finally:
        if instrumentor is not None:
            instrumentor.uninstrument()
        tp.shutdown()
        mp.shutdown()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def spans_of(url: str, project: str, at_least: int) -> list[dict[str, Any]]:
    """Poll Phoenix's REST API until the project holds ``at_least`` spans (bounded)."""
    deadline = time.monotonic() + 60
    query = urllib.parse.urlencode({"limit": 1000})
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            spans = _get(f"{url}/v1/projects/{urllib.parse.quote(project)}/spans?{query}")["data"]
        except urllib.error.HTTPError:
            spans = []
        if len(spans) >= at_least:
            time.sleep(1.0)
            return list(
                _get(f"{url}/v1/projects/{urllib.parse.quote(project)}/spans?{query}")["data"]
            )
        time.sleep(0.5)
    raise RuntimeError(f"Phoenix holds {len(spans)} spans of {project}, expected {at_least}")


def project_id(url: str, name: str) -> str:
    return next(p["id"] for p in _get(f"{url}/v1/projects")["data"] if p["name"] == name)


def showcase_trace(spans: list[dict[str, Any]]) -> str:
    """Return a trace with a broken handoff contract and a failed router in it."""
    by_trace: dict[str, set[str]] = {}
    for s in spans:
        kind = s["attributes"].get(sc.ATTR_ERROR_TYPE) if s["name"] == sc.SPAN_HANDOFF else None
        tags = by_trace.setdefault(s["context"]["trace_id"], set())
        tags.add(s["name"])
        if kind:
            tags.add(kind)
    for trace, tags in sorted(by_trace.items()):
        if {sc.SPAN_ROUTER, sc.ERROR_CONTRACT} <= tags:
            return trace
    raise RuntimeError("no run with both a broken handoff contract and a failed router")


def shoot_trace(context: Any, url: str, project: str, trace: str, span: str, out: Path) -> Path:
    """Open ``trace`` from the project's list, select ``span`` and its Attributes tab."""
    page = context.new_page()
    try:
        page.set_viewport_size(VIEWPORT)
        page.goto(f"{url}/projects/{project}", wait_until="networkidle")
        page.click(f"a[href*='{trace}']")
        tree = page.locator("[data-testid=trace-tree]").first
        tree.get_by_text(span, exact=True).first.click()
        page.get_by_role("tab", name="Attributes").click()
        page.wait_for_timeout(1500)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
    finally:
        page.close()
    return out


def shoot_filter(context: Any, url: str, project: str, condition: str, out: Path) -> Path:
    """The project's Spans tab with ``condition`` typed into its filter."""
    page = context.new_page()
    try:
        page.set_viewport_size(VIEWPORT)
        page.goto(f"{url}/projects/{project}", wait_until="networkidle")
        editor = page.locator(".cm-content").first
        editor.click()
        page.keyboard.press("Control+A")
        page.keyboard.type(condition)
        page.keyboard.press("Enter")
        page.wait_for_timeout(2500)
        page.screenshot(path=str(out))
    finally:
        page.close()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Write the screenshots; return 0, or 2 when Phoenix or a browser cannot be had."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--runs", type=int, default=12)
    args = parser.parse_args(argv)
    if not phoenix_installed():
        print("needs Phoenix: pip install -e '.[test,phoenix]'", file=sys.stderr)
        return 2
    binary = browser_for_screenshots()
    if binary is None:
        return 2
    with tempfile.TemporaryDirectory(prefix="coordgap-phoenix-") as tmp:
        server = start_phoenix(Path(tmp))
        try:
            url = server.url
            send(url, WITH_OPENINFERENCE, runs=args.runs, spans="failures", openinference=True)
            send(url, ALONE, runs=args.runs, spans="all", openinference=False)
            joined = spans_of(url, WITH_OPENINFERENCE, args.runs * 3)
            alone = spans_of(url, ALONE, args.runs * 3)
            with chromium(binary) as context:
                written = [
                    shoot_trace(
                        context,
                        url,
                        project_id(url, WITH_OPENINFERENCE),
                        showcase_trace(joined),
                        sc.SPAN_HANDOFF,
                        args.out / "phoenix-openinference-trace.png",
                    ),
                    shoot_trace(
                        context,
                        url,
                        project_id(url, ALONE),
                        showcase_trace(alone),
                        sc.SPAN_RUN,
                        args.out / "phoenix-coordgap-trace.png",
                    ),
                    shoot_filter(
                        context,
                        url,
                        project_id(url, WITH_OPENINFERENCE),
                        f"span_kind == '{sc.SPAN_KIND_GUARDRAIL}'",
                        args.out / "phoenix-failed-handoffs.png",
                    ),
                ]
        finally:
            server.stop()
    for out in written:
        print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
