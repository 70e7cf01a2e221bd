"""The main demo: the audit's research agent, run many times with the audit's failure rates.

What it shows, live:

1. ``coordgap.audit`` predicts the end to end from the topology alone
   (naive 0.867, true 0.791, gap 0.076: the exact products of the audit's
   figures; the design brief's 0.870, 0.795 and 0.075 do not follow from them);
2. the agent runs ``--runs`` times with those rates injected (nodes raise,
   handoffs hand over corrupted state that the next node's contract rejects),
   while a live view refreshes the measured report;
3. at the end, the measured report beside the audit: the observed end to end
   agrees with the audit's prediction within the 95 % interval.

Run it::

    python examples/demo.py --runs 2000
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from research_agent import (
    AUDIT_HANDOFF,
    AUDIT_NODES,
    build_research_agent,
    with_audit_faults,
)

import coordgap
from coordgap.render import fmt


def summary_lines(rep: Any, audit: Any) -> list[str]:
    """Return the side-by-side lines: audit (topology) vs measured."""
    e2e = rep.end_to_end
    obs, pred = e2e.observed, e2e.predicted

    def est(e: Any) -> str:
        if e.value is None:
            return "   n/a"
        return f"{fmt(e.value):>6}  [{fmt(e.low)}, {fmt(e.high)}]"

    return [
        f"{'':28}{'audit (topology)':>18}   measured (95 % interval)",
        f"{'naive (nodes only)':28}{fmt(audit.naive):>18}   {est(e2e.naive)}",
        f"{'end to end, predicted':28}{fmt(audit.predicted):>18}   {est(pred)}",
        f"{'end to end, observed':28}{'':>18}   {est(obs)}",
        f"{'coordination gap':28}{fmt(audit.gap):>18}   {fmt(rep.gap):>6}",
        f"runs: {e2e.runs}  clean: {e2e.clean}  raised: {e2e.error}",
        f"audit's end to end ({fmt(audit.predicted)}) inside the observed interval: "
        + ("yes" if obs.value is not None and obs.contains(audit.predicted) else "no"),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return 0 when the observed end to end agrees with the audit."""
    parser = argparse.ArgumentParser(description="coordgap demo: the four-node research agent")
    parser.add_argument("--runs", type=int, default=2000, help="number of runs (default 2000)")
    parser.add_argument("--seed", type=int, default=7, help="fault injection seed")
    parser.add_argument("--plain", action="store_true", help="no live view (plain text)")
    args = parser.parse_args(argv)

    audit = coordgap.audit(build_research_agent(), nodes=dict(AUDIT_NODES), handoffs=AUDIT_HANDOFF)
    print("Audit from the topology alone, before any run:")
    print(
        f"  naive {audit.naive:.3f}   true end to end {audit.predicted:.3f}   gap {audit.gap:.3f}\n"
    )

    app = coordgap.instrument(
        with_audit_faults(build_research_agent(), seed=args.seed),
        name="research_agent",
        spans="off",
        metrics=False,
    )

    def run_once(i: int) -> None:
        try:
            app.invoke({"question": f"question {i} about agent reliability"})
        except Exception:  # injected node failures make some runs raise: that is the point
            pass

    try:
        from rich.console import Console, Group
        from rich.live import Live
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
        from rich.text import Text
    except ImportError:
        args.plain = True

    if args.plain or not sys.stdout.isatty():
        for i in range(args.runs):
            run_once(i)
    else:
        console = Console()
        progress = Progress(TextColumn("runs"), BarColumn(), MofNCompleteColumn(), console=console)
        task = progress.add_task("runs", total=args.runs)

        def view() -> Any:
            rep = coordgap.report(app)
            return Group(progress, Text(rep.to_text()), Text("\n".join(summary_lines(rep, audit))))

        # transient: the live view is cleared when it ends, so the final report below is
        # printed once, not left on screen and then printed again
        with Live(view(), console=console, refresh_per_second=4, transient=True) as live:
            for i in range(args.runs):
                run_once(i)
                progress.advance(task)
                if i % 50 == 49:
                    live.update(view())

    rep = coordgap.report(app)
    print()
    print(rep)
    print()
    print("\n".join(summary_lines(rep, audit)))
    return 0 if rep.end_to_end.observed.contains(audit.predicted) else 1


if __name__ == "__main__":
    raise SystemExit(main())
