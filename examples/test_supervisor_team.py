"""The supervisor example's report matches what its scripted models really did."""

from __future__ import annotations

import pytest

pytest.importorskip("langgraph_supervisor")

import supervisor_team


def test_every_misroute_and_timeout_is_counted_and_nothing_else() -> None:
    rep = supervisor_team.main(runs=120, seed=3)
    injected = supervisor_team.INJECTED
    assert injected["misroutes"] > 0 and injected["timeouts"] > 0  # the seed exercises both
    misroute = rep.handoffs[("supervisor", "__unknown__")]
    assert misroute.failures == injected["misroutes"]
    assert misroute.error_types == {"InvalidRoute": injected["misroutes"]}
    assert rep.nodes["research_expert/tools"].failures == injected["timeouts"]
    e2e = rep.end_to_end
    assert e2e.error == injected["timeouts"]
    assert e2e.clean == 120 - injected["misroutes"] - injected["timeouts"]
    failed = {c.label for c in rep.components if c.failures and c.in_product}
    assert failed == {"supervisor -> __unknown__", "research_expert/tools"}
