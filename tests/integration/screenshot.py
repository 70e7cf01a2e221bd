"""Write the HTML report's screenshots in ``docs/img/``: ``bash scripts/html-screenshot``.

Runs the example agent of ``examples/html_report.py`` (seeded faults, so the same
page every time), writes its report as HTML and renders it in headless Chromium
(Debian's ``chromium``, installed when missing and root), light and dark::

    docs/img/report-html.png        the top of the page (1440 x 1275), light
    docs/img/report-html-dark.png   the same, dark
    docs/img/report-html-full.png   the whole page, light

Options: ``--runs N`` (default 400), ``--out DIR`` (default ``docs/img``).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import coordgap
from coordgap._report import Report

from .browser import browser_for_screenshots, chromium, screenshot

ROOT = Path(__file__).resolve().parents[2]
SCREEN = 1275
"""Height of the first-screen shots, px: the figures, the whole graph and the gap."""


def example_report(runs: int) -> Report:
    """Return the report of the example agent (``examples/html_report.py``) after ``runs`` runs."""
    path = ROOT / "examples" / "html_report.py"
    spec = importlib.util.spec_from_file_location("html_report_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # typing.get_type_hints looks its annotations up there
    spec.loader.exec_module(module)
    return coordgap.report(module.run(runs))


def main(argv: Sequence[str] | None = None) -> int:
    """Write the screenshots; return 0, or 2 when no browser can be had."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args(argv)
    binary = browser_for_screenshots()
    if binary is None:
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(example_report(args.runs).to_html(), encoding="utf-8")
        with chromium(binary) as context:
            for name, scheme, height in (
                ("report-html.png", "light", SCREEN),
                ("report-html-dark.png", "dark", SCREEN),
                ("report-html-full.png", "light", None),
            ):
                out = screenshot(context, page, args.out / name, scheme=scheme, height=height)
                print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
