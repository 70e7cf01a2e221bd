"""A real headless Chromium for the HTML report's tests, driven by Playwright.

The browser is Debian's ``chromium`` (installed through apt when missing and
root, as ``servers.ensure_prometheus`` does for Prometheus): Playwright's own
browser downloads are not used, it is pointed at the system binary. Chromium
runs with a fresh profile and with every background service that would reach
the network turned off, so the only request a page makes is its own.

Used by ``test_html_browser.py`` and by ``scripts/html-screenshot`` (which writes
the screenshots in ``docs/img/``, see ``screenshot.py``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .servers import INSTALL_TIMEOUT_S, timed

CHROMIUM_PACKAGE = "chromium"
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",  # we run as root in containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--metrics-recording-only",
    "--no-default-browser-check",
    "--disable-features=Translate,OptimizationHints,MediaRouter,InterestFeedContentSuggestions",
)


def find_chromium() -> str | None:
    """Return the system Chromium, if any (``COORDGAP_CHROMIUM`` overrides)."""
    given = os.environ.get("COORDGAP_CHROMIUM")
    if given:
        return given if os.access(given, os.X_OK) else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def ensure_chromium() -> str | None:
    """Return the Chromium binary, installing Debian's package when missing and root."""
    found = find_chromium()
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with timed(f"apt-get update + install {CHROMIUM_PACKAGE}"):
        for argv in (
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "--no-install-recommends", CHROMIUM_PACKAGE],
        ):
            subprocess.run(
                argv,
                env=env,
                check=False,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=INSTALL_TIMEOUT_S,
            )
    return find_chromium()


def playwright_installed() -> bool:
    """Return True when the Playwright Python package is importable."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


def browser_for_screenshots() -> str | None:
    """Return the Chromium binary a screenshot script drives, or None after saying on
    stderr what is missing (playwright, or Chromium and the rights to install it)."""
    if not playwright_installed():
        print("needs playwright: pip install -e '.[test]'", file=sys.stderr)
        return None
    binary = ensure_chromium()
    if binary is None:
        print("needs Chromium: apt-get install -y chromium (as root)", file=sys.stderr)
    return binary


@contextlib.contextmanager
def chromium(executable: str) -> Iterator[Any]:
    """Yield a Playwright ``Browser`` on the system Chromium (fresh profile, no background I/O)."""
    from playwright.sync_api import sync_playwright

    with (
        tempfile.TemporaryDirectory(prefix="coordgap-chromium-") as profile,
        sync_playwright() as pw,
    ):
        with timed("chromium start (playwright, system binary)"):
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=executable,
                headless=True,
                args=list(CHROMIUM_ARGS),
                viewport={"width": 1440, "height": 900},
            )
        try:
            yield context
        finally:
            context.close()


def screenshot(
    context: Any,
    page_path: Path,
    out: Path,
    *,
    scheme: str = "light",
    width: int = 1440,
    height: int | None = 1000,
) -> Path:
    """Render ``page_path`` and write a PNG: the first ``height`` pixels, or the whole page."""
    page = context.new_page()
    try:
        page.set_viewport_size({"width": width, "height": height or 900})
        page.emulate_media(color_scheme=scheme)
        page.goto(page_path.resolve().as_uri(), wait_until="load")
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=height is None)
    finally:
        page.close()
    return out
