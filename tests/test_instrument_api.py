"""instrument()'s own contract: clear errors for bad input, the public surface, providers."""

from __future__ import annotations

import re
from typing import Any

import pytest
from graphs_basic import linear, looping
from pydantic import BaseModel

import coordgap


class M(BaseModel):
    x: int


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"contracts": {"n9": coordgap.Contract(requires=M)}}, "no node 'n9'"),
        ({"contracts": {"nO": coordgap.Contract(requires=M)}}, "Did you mean .*'n0'"),
        ({"contracts": {"n0": M}}, "wrap it as coordgap.Contract"),
        ({"contracts": {"n0": coordgap.Contract(requires=42)}}, "is not a contract"),
        ({"handoffs": {("n0", "n2"): M}}, "declares no edge from 'n0' to 'n2'"),
        ({"handoffs": {("n2", "__end__"): M}}, "has no receiving node"),
        ({"handoffs": {"n0": M}}, "(source, target) tuple"),
        ({"on_violation": "explode"}, "on_violation='explode'"),
        ({"spans": "some"}, "spans='some'"),
        ({"sinks": [42]}, "not callable"),
        ({"capture_values": "yes"}, "capture_values='yes'"),
        ({"name": ""}, "non-empty string"),
    ],
)
def test_bad_options_fail_at_instrument_time_with_the_fix(
    kwargs: dict[str, Any], message: str
) -> None:
    """Each bad option raises ConfigurationError (a ValueError) that names the problem."""
    with pytest.raises(
        coordgap.ConfigurationError, match=message if "Did you" in message else re.escape(message)
    ):
        coordgap.instrument(linear(3), **kwargs)


def test_non_graph_is_rejected_with_an_example() -> None:
    """Passing something that is not a graph names what is expected."""
    with pytest.raises(coordgap.ConfigurationError, match="StateGraph builder"):
        coordgap.instrument(object())


def test_unknown_keyword_is_a_type_error() -> None:
    """Options are keyword-only and unknown ones are rejected by Python itself."""
    with pytest.raises(TypeError):
        coordgap.instrument(linear(2), colour="red")  # type: ignore[call-arg]


def test_functional_api_graph_is_rejected_clearly() -> None:
    """An @entrypoint graph has no builder: the error says so."""
    from langgraph.func import entrypoint

    @entrypoint()
    def flow(x: int) -> int:
        return x

    with pytest.raises(coordgap.ConfigurationError, match="functional API"):
        coordgap.instrument(flow)


def test_ledger_of_a_bare_graph_is_a_clear_error() -> None:
    """coordgap.ledger() on a graph that was not instrumented explains what to pass."""
    with pytest.raises(coordgap.ConfigurationError, match="not instrumented"):
        coordgap.ledger(linear(2).compile())


def test_compiled_graph_options_are_kept() -> None:
    """Instrumenting a compiled graph keeps checkpointer, store, interrupts, name, config."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.store.memory import InMemoryStore

    saver, store = InMemorySaver(), InMemoryStore()
    compiled = (
        looping(2)
        .compile(checkpointer=saver, store=store, interrupt_after=["done"], name="loopy")
        .with_config(recursion_limit=7)
    )
    app = coordgap.instrument(compiled)
    assert app.checkpointer is saver and app.store is store
    assert app.interrupt_after_nodes == ["done"]
    assert app.name == "loopy" and coordgap.ledger(app).graph == "loopy"
    assert app.config == compiled.config


def test_uninstrument_returns_what_was_instrumented() -> None:
    """uninstrument() gives back the original object."""
    builder = linear(2)
    assert coordgap.uninstrument(coordgap.instrument(builder)) is builder


def test_env_var_sets_default_span_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """$COORDGAP_SPANS sets the default span mode; a bad value is named."""
    monkeypatch.setenv("COORDGAP_SPANS", "loud")
    with pytest.raises(coordgap.ConfigurationError, match="COORDGAP_SPANS"):
        coordgap.instrument(linear(2))


def test_user_sinks_receive_every_event_in_order() -> None:
    """A sink sees node, handoff and run events; the run event comes last."""
    seen: list[Any] = []
    app = coordgap.instrument(linear(2), sinks=[seen.append])
    app.invoke({"n": 0})
    kinds = [type(e).__name__ for e in seen]
    assert kinds.count("NodeOutcome") == 2
    assert kinds.count("HandoffOutcome") == 3
    assert kinds[-1] == "RunOutcome"


# Where each public name is defined: coordgap.X must be that very object. A name added to
# __all__ (or moved) must be added here, so the surface changes only on purpose.
DEFINED_IN = {
    "Capture": "coordgap.contracts",
    "Change": "coordgap._report",
    "Comparison": "coordgap._report",
    "ComponentReport": "coordgap._report",
    "ConfigurationError": "coordgap.errors",
    "Contract": "coordgap.contracts",
    "ContractViolation": "coordgap.errors",
    "CoordgapError": "coordgap.errors",
    "Coverage": "coordgap._coverage",
    "EndToEnd": "coordgap._report",
    "Estimate": "coordgap._stats",
    "FaultDetection": "coordgap._report",
    "HandoffOutcome": "coordgap.events",
    "HandoffStats": "coordgap._ledger",
    "InstrumentedGraph": "coordgap._instrument",
    "Ledger": "coordgap._ledger",
    "LedgerScope": "coordgap.testing",
    "LedgerSnapshot": "coordgap._ledger",
    "NodeOutcome": "coordgap.events",
    "NodeStats": "coordgap._ledger",
    "Plan": "coordgap._plan",
    "ReliabilityError": "coordgap.errors",
    "Report": "coordgap._report",
    "RouterOutcome": "coordgap.events",
    "RouterStats": "coordgap._ledger",
    "RunOutcome": "coordgap.events",
    "RunStats": "coordgap._ledger",
    "WhatIf": "coordgap.whatif",
    "assert_no_regression": "coordgap.testing",
    "assert_reliability": "coordgap.testing",
    "audit": "coordgap._audit",
    "capture_events": "coordgap.testing",
    "configure_otlp": "coordgap.otlp",
    "contract": "coordgap.contracts",
    "coverage": "coordgap._coverage",
    "fleet_snapshot": "coordgap.fleet",
    "instrument": "coordgap._instrument",
    "ledger": "coordgap._instrument",
    "recommend": "coordgap._plan",
    "report": "coordgap._report",
    "uninstrument": "coordgap._instrument",
    "what_if": "coordgap.whatif",
    "wilson_interval": "coordgap._stats",
}

# Module paths the docs and the changelog name: each must import (the four of coordgap 0.1
# warn and hand out the same objects as coordgap itself).
PUBLIC_MODULES = (
    "coordgap.cli",
    "coordgap.contracts",
    "coordgap.errors",
    "coordgap.events",
    "coordgap.faults",
    "coordgap.fleet",
    "coordgap.otlp",
    "coordgap.pytest_plugin",
    "coordgap.render",
    "coordgap.semconv",
    "coordgap.testing",
    "coordgap.topology",
    "coordgap.whatif",
)
DEPRECATED_MODULES = {
    "coordgap.audit": "audit",
    "coordgap.coverage": "Coverage",
    "coordgap.ledger": "LedgerSnapshot",
    "coordgap.report": "Report",
}


def test_every_public_name_is_the_object_its_module_defines() -> None:
    """__all__ is sorted; coordgap.X is the object defined in X's module, presented as
    coordgap's; an unknown name is an AttributeError."""
    import importlib

    assert sorted(coordgap.__all__) == coordgap.__all__
    assert set(coordgap.__all__) == set(DEFINED_IN)
    for name in coordgap.__all__:
        value = getattr(coordgap, name)
        assert value is getattr(importlib.import_module(DEFINED_IN[name]), name), name
        assert getattr(value, "__module__", "coordgap") == "coordgap", name
    with pytest.raises(AttributeError):
        coordgap.not_a_name  # noqa: B018


def test_every_public_module_path_imports() -> None:
    """Every documented module imports; the names documented with their module are the
    same objects as coordgap's; coordgap.report is the function, coordgap.faults the module."""
    import importlib
    import types

    for path in PUBLIC_MODULES:
        module = importlib.import_module(path)
        assert isinstance(module, types.ModuleType) and module.__name__ == path
    from coordgap import faults, fleet, otlp, testing, topology

    assert isinstance(faults, types.ModuleType) and callable(faults.inject)
    assert fleet.fleet_snapshot is coordgap.fleet_snapshot
    assert otlp.configure_otlp is coordgap.configure_otlp
    assert testing.assert_reliability is coordgap.assert_reliability
    assert testing.LedgerScope is coordgap.LedgerScope
    assert isinstance(coordgap.ledger(coordgap.instrument(linear(2))).topology, topology.Topology)
    assert callable(coordgap.report) and not isinstance(coordgap.report, types.ModuleType)
    assert coordgap.report is importlib.import_module("coordgap._report").report


@pytest.mark.parametrize(("path", "name"), sorted(DEPRECATED_MODULES.items()))
def test_module_paths_of_coordgap_0_1_still_import_with_a_warning(path: str, name: str) -> None:
    """from coordgap.report import Report (and the three others) works, with a
    DeprecationWarning naming the new import, and gives coordgap's own object."""
    import importlib

    module = importlib.import_module(path)
    with pytest.warns(DeprecationWarning, match=f"from coordgap import {name}"):
        value = getattr(module, name)
    assert value is getattr(coordgap, name)


def test_import_is_lazy() -> None:
    """import coordgap loads neither LangGraph nor OpenTelemetry until a name is used."""
    import subprocess
    import sys

    code = (
        "import sys, coordgap; "
        "print(any(m.startswith(('langgraph', 'opentelemetry', 'pydantic')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_version_matches_metadata() -> None:
    """__version__ agrees with the installed distribution."""
    from importlib.metadata import version

    assert coordgap.__version__ == version("coordgap")
