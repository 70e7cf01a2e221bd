"""Write the Prometheus screenshot in ``docs/img/``: ``bash scripts/prometheus-screenshot``.

Runs the fleet of ``test_prometheus_fleet.py`` (three workers of ``fleet_worker.py``,
seeded, serving coordgap's metrics on loopback), a real Prometheus scraping them
(Debian's ``prometheus``, installed when missing and root), and renders Prometheus's own
UI in headless Chromium with one of docs/backends.md's PromQL panels, the fleet-wide
reliability of every handoff::

    docs/img/prometheus-handoff-reliability.png

Option: ``--out DIR`` (default ``docs/img``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from coordgap.fleet import fleet_snapshot

from .browser import chromium, ensure_chromium, playwright_installed
from .servers import HOST, ensure_prometheus, free_port, start_prometheus, stop_fleet

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("fleet_worker.py")
GRAPH = "fleet-demo"
WORKERS = [(11, 0.05, 60), (22, 0.25, 60), (33, 0.50, 60)]  # (seed, fault rate, runs)
PANEL = (
    "sum by (coordgap_handoff_source, coordgap_handoff_target) "
    f'(coordgap_handoff_transfers_total{{coordgap_graph="{GRAPH}", coordgap_outcome="ok"}})\n'
    "/\n"
    "sum by (coordgap_handoff_source, coordgap_handoff_target) "
    f'(coordgap_handoff_transfers_total{{coordgap_graph="{GRAPH}"}})'
)
"""Handoff reliability, per edge, over the workers' whole lives (backends.md's panel with the
raw counters: the workers run once and keep serving, so there is no rate to take)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Write the screenshot; return 0, or 2 when Prometheus or a browser cannot be had."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args(argv)
    if not playwright_installed():
        print("needs playwright: pip install -e '.[test]'", file=sys.stderr)
        return 2
    browser, prometheus_binary = ensure_chromium(), ensure_prometheus()
    if browser is None or prometheus_binary is None:
        print(
            "needs chromium and prometheus: apt-get install -y chromium prometheus", file=sys.stderr
        )
        return 2
    out = args.out / "prometheus-handoff-reliability.png"
    with tempfile.TemporaryDirectory(prefix="coordgap-prometheus-") as tmp:
        work = Path(tmp)
        procs: list[subprocess.Popen[bytes]] = []
        prometheus = None
        try:
            targets = []
            for i, (seed, rate, runs) in enumerate(WORKERS):
                port = free_port()
                procs.append(
                    subprocess.Popen(
                        [sys.executable, str(WORKER), "--port", str(port), "--seed", str(seed),
                         "--fault-rate", str(rate), "--runs", str(runs),
                         "--out", str(work / f"worker-{i}.json")],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL, start_new_session=True,
                    )
                )  # fmt: skip
                targets.append(f"{HOST}:{port}")
            prometheus = start_prometheus(prometheus_binary, work / "prom", targets)
            expected = sum(runs for _, _, runs in WORKERS)
            deadline = time.monotonic() + 90
            while fleet_snapshot(prometheus.url, graph=GRAPH, window=None).runs.runs < expected:
                if time.monotonic() > deadline:
                    raise RuntimeError("Prometheus never saw every run of the fleet")
                time.sleep(0.5)
            query = urllib.parse.urlencode(
                {"g0.expr": PANEL, "g0.tab": "1", "g0.stacked": "0", "g0.show_exemplars": "0"}
            )
            with chromium(browser) as context:
                page = context.new_page()
                page.set_viewport_size({"width": 1440, "height": 760})
                page.goto(f"{prometheus.url}/graph?{query}", wait_until="networkidle")
                page.wait_for_timeout(2000)
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out))
        finally:
            stop_fleet(prometheus, procs)
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
