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
def test_bad_options_fail_at_instrument_time_with_the_fix(kwargs: dict[str, Any], message: str) -> None:
    """Each bad option raises ConfigurationError (a ValueError) that names the problem."""
    with pytest.raises(coordgap.ConfigurationError, match=message if "Did you" in message else re.escape(message)):
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
    compiled = looping(2).compile(
        checkpointer=saver, store=store, interrupt_after=["done"], name="loopy"
    ).with_config(recursion_limit=7)
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


def test_all_public_names_are_exported() -> None:
    """__all__ is sorted, each name resolves, and each says it lives in coordgap."""
    assert sorted(coordgap.__all__) == coordgap.__all__
    for name in coordgap.__all__:
        value = getattr(coordgap, name)
        assert getattr(value, "__module__", "coordgap") == "coordgap", name
    assert set(coordgap.__all__) <= set(dir(coordgap))
    with pytest.raises(AttributeError):
        coordgap.not_a_name  # noqa: B018


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
