"""Bad input to coordgap's own API fails at once with a ConfigurationError naming the fix."""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
from graphs_basic import State, linear
from langgraph.func import entrypoint
from langgraph.graph import StateGraph
from pydantic import BaseModel

import coordgap
from coordgap import ConfigurationError


class Model(BaseModel):
    n: int


@pytest.mark.parametrize(
    "graph, needle",
    [
        (42, "StateGraph"),
        ("graph", "StateGraph"),
        (None, "StateGraph"),
        (lambda s: s, "StateGraph"),
    ],
)
def test_a_non_graph_is_refused(graph: Any, needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        coordgap.instrument(graph)


def test_a_functional_api_graph_is_refused_with_the_alternative() -> None:
    @entrypoint()
    def workflow(x: int) -> int:
        return x

    with pytest.raises(ConfigurationError, match="StateGraph"):
        coordgap.instrument(workflow)


def test_a_compiled_graph_without_builder_is_refused() -> None:
    compiled = linear().compile()
    compiled.builder = None  # type: ignore[assignment]
    with pytest.raises(ConfigurationError, match="builder"):
        coordgap.instrument(compiled)


def test_unknown_node_names_get_close_suggestions() -> None:
    with pytest.raises(ConfigurationError) as caught:
        coordgap.instrument(linear(), contracts={"nn1": coordgap.Contract(requires=Model)})
    message = str(caught.value)
    assert "'nn1'" in message and "Did you mean" in message and "'n1'" in message
    with pytest.raises(ConfigurationError, match=r"Did you mean 'n1'"):
        coordgap.instrument(linear(), contracts={"N1": coordgap.Contract(requires=Model)})


def test_unknown_handoff_nodes_get_close_suggestions() -> None:
    with pytest.raises(ConfigurationError, match="Did you mean"):
        coordgap.instrument(linear(), handoffs={("n0", "n11"): Model})
    with pytest.raises(ConfigurationError, match="no edge"):
        coordgap.instrument(linear(), handoffs={("n0", "n2"): Model})
    with pytest.raises(ConfigurationError, match="tuple"):
        coordgap.instrument(linear(), handoffs={"n0 to n1": Model})
    # the handoff's one spelling, as the report prints it, names the same edge
    assert coordgap.instrument(linear(), handoffs={"n0 -> n1": Model}) is not None
    with pytest.raises(ConfigurationError, match="END"):
        coordgap.instrument(linear(), handoffs={("n3", "__end__"): Model})


@pytest.mark.parametrize(
    "spec", [42, "Model", object(), coordgap.Contract(requires=Model), [Model]]
)
def test_contracts_that_are_neither_models_nor_callables_are_refused(spec: Any) -> None:
    with pytest.raises(ConfigurationError):
        coordgap.instrument(linear(), contracts={"n1": coordgap.Contract(requires=spec)})
    with pytest.raises(ConfigurationError):
        coordgap.contract(ensures=spec)


def test_a_contracts_value_that_is_not_a_contract_is_refused_with_the_wrapper() -> None:
    with pytest.raises(ConfigurationError, match=r"coordgap\.Contract"):
        coordgap.instrument(linear(), contracts={"n1": Model})
    with pytest.raises(ConfigurationError, match="dict"):
        coordgap.instrument(linear(), contracts=[("n1", coordgap.Contract(requires=Model))])


def test_contract_on_an_object_without_attributes_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="instrument"):
        coordgap.contract(requires=Model)(len)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"on_violation": "warn"}, "on_violation"),
        ({"spans": "some"}, "span mode"),
        ({"metrics": "yes"}, "metrics"),
        ({"sinks": [42]}, "callable"),
        ({"capture_values": -1}, "capture_values"),
        ({"capture_values": "all"}, "capture_values"),
        ({"name": ""}, "name"),
        ({"name": 42}, "name"),
    ],
)
def test_wrong_option_values_are_refused(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        coordgap.instrument(linear(), **kwargs)


def test_a_bad_span_mode_from_the_environment_names_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("COORDGAP_SPANS", "everything")
    with pytest.raises(ConfigurationError, match="COORDGAP_SPANS"):
        coordgap.instrument(linear())


def test_errors_are_raised_before_anything_runs() -> None:
    calls: list[int] = []
    b = StateGraph(State)
    b.add_node("a", lambda s: calls.append(1) or {})
    b.set_entry_point("a")
    with pytest.raises(ConfigurationError):
        coordgap.instrument(b, contracts={"b": coordgap.Contract(requires=Model)})
    assert calls == []


def test_instrumenting_twice_warns_and_does_not_double_count() -> None:
    app = coordgap.instrument(linear(), metrics=False, spans="off")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = coordgap.instrument(app)
    assert again is app
    assert any("already instrumented" in str(w.message) for w in caught)
    again.invoke({"n": 0})
    assert coordgap.ledger(app).snapshot().nodes["n0"].executions == 1


def test_ledger_and_uninstrument_of_a_bare_graph_name_the_fix() -> None:
    for fn in (coordgap.ledger, coordgap.uninstrument):
        with pytest.raises(ConfigurationError, match=r"coordgap\.instrument"):
            fn(linear().compile())
        with pytest.raises(ConfigurationError):
            fn(42)


def test_uninstrument_returns_what_was_given() -> None:
    builder = linear()
    assert coordgap.uninstrument(coordgap.instrument(builder, metrics=False)) is builder


# -- report module (helper-1), when present -----------------------------------------------------


def _report_module() -> Any:
    return pytest.importorskip("coordgap.report")


def _sample_report() -> Any:
    rep = _report_module()
    app = coordgap.instrument(linear(), metrics=False, spans="off")
    app.invoke({"n": 0})
    return rep.report(app)


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.5, 1.5, 95])
def test_confidences_outside_zero_one_are_refused(confidence: float) -> None:
    rep = _report_module()
    app = coordgap.instrument(linear(), metrics=False, spans="off")
    app.invoke({"n": 0})
    with pytest.raises(ConfigurationError, match="between 0 and 1"):
        rep.report(app, confidence=confidence)


@pytest.mark.parametrize("threshold", [-0.1, 1.1, 97])
def test_thresholds_outside_zero_one_are_refused(threshold: float) -> None:
    testing = pytest.importorskip("coordgap.testing")
    app = coordgap.instrument(linear(), metrics=False, spans="off")
    app.invoke({"n": 0})
    with pytest.raises(ConfigurationError):
        testing.assert_reliability(app, end_to_end=threshold)


def test_report_of_a_non_graph_names_the_fix() -> None:
    rep = _report_module()
    with pytest.raises(ConfigurationError):
        rep.report(42)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda text: text[: len(text) // 2],  # truncated
        lambda text: "not json at all",
        lambda text: json.dumps({"hello": "world"}),
        lambda text: json.dumps([1, 2, 3]),
        lambda text: text.replace('"runs": 1', '"runs": "many"', 1),
        lambda text: text.replace('"components": [', '"components": 7, "x": [', 1),
    ],
    ids=["truncated", "not-json", "foreign", "array", "wrong-type", "wrong-shape"],
)
def test_a_corrupted_report_json_is_refused(mutate: Any) -> None:
    rep = _report_module()
    text = _sample_report().to_json()
    rep.Report.from_json(text)  # the intact one loads
    with pytest.raises(ConfigurationError):
        rep.Report.from_json(mutate(text))


def test_a_report_json_of_another_schema_version_is_refused() -> None:
    rep = _report_module()
    data = json.loads(_sample_report().to_json())
    keys = [k for k in data if "version" in k.lower() or k == "schema"]
    assert keys, f"the report JSON carries no schema version: {sorted(data)}"
    for key in keys:
        data[key] = 999 if not isinstance(data[key], str) else "coordgap.report/999"
    with pytest.raises(ConfigurationError, match="version"):
        rep.Report.from_json(json.dumps(data))
