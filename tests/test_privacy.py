"""No state leaked: nothing coordgap produces contains a value from the state, unless asked.

Canary strings sit in every state field, nested in lists and dicts, in the
values pydantic reports as ``input_value``, in a router's invalid return value,
a Command's goto, and the messages of exceptions raised by nodes and contracts.
Every span (name, attributes, events, status), metric data point, log record of
the ``coordgap`` loggers, event, ledger snapshot, report and ContractViolation
message is searched for them. ``capture_values=`` is the one way in.
"""

from __future__ import annotations

import json
import logging
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command
from pydantic import BaseModel, model_validator

import coordgap
from coordgap import _failopen
from coordgap.testing import TelemetryCapture, capture_telemetry

CANARY = "CANARY-q7x3"


def canary(i: int) -> str:
    return f"{CANARY}-{i}"


class Doc(BaseModel):
    url: int  # the state holds strings: validation fails with the canary as input_value
    score: float


class Retrieved(BaseModel):
    question: int
    docs: list[Doc]
    meta: dict[str, int]


class State(TypedDict, total=False):
    question: str
    docs: list[dict[str, Any]]
    meta: dict[str, Any]
    route: str
    log: list[str]


def _state() -> dict[str, Any]:
    return {
        "question": canary(1),
        "docs": [{"url": canary(2), "score": canary(3)}, {"nested": {"deep": [canary(4)]}}],
        "meta": {canary(5): canary(6)},
        "route": canary(7),
    }


def _callable_contract(state: Any) -> bool:
    raise ValueError(f"rejected {state!r}")


def _build() -> StateGraph:
    def retrieve(state: State) -> dict[str, Any]:
        return {"docs": [*state["docs"], {"url": canary(8)}], "meta": {"k": [canary(9)]}}

    def analyze(state: State) -> Command[Any]:
        return Command(goto=state["route"], update={"log": [canary(10)]})  # invalid: ignored

    def check(state: State) -> dict[str, Any]:
        return {"log": [canary(11)]}

    def finish(state: State) -> dict[str, Any]:
        return {"question": canary(12)}

    def router(state: State) -> list[str]:
        return [state["route"], "finish"]  # the first is no node: silently dropped

    b = StateGraph(State)
    b.add_node("retrieve", retrieve)
    b.add_node("analyze", analyze, destinations=("check",))
    b.add_node("check", check)
    b.add_node("finish", finish)
    b.add_edge(START, "retrieve")
    b.add_edge("retrieve", "analyze")
    b.add_edge("analyze", "check")
    b.add_conditional_edges("check", router)
    b.add_edge("finish", END)
    return b


def _build_failing() -> StateGraph:
    def leak(state: State) -> dict[str, Any]:
        raise RuntimeError(f"node failed on {state['question']}")

    def route_to_canary(state: State) -> str:
        return state["route"]

    b = StateGraph(State)
    b.add_node("first", lambda s: {"log": [canary(13)]})
    b.add_node("leak", leak)
    b.add_edge(START, "first")
    b.add_conditional_edges("first", route_to_canary, {"x": "leak"})  # KeyError(canary)
    return b


CONTRACTS = {
    "analyze": coordgap.Contract(requires=Retrieved, ensures=Retrieved),
    "check": coordgap.Contract(requires=_callable_contract),
    "finish": coordgap.Contract(ensures=Retrieved),
}
HANDOFFS = {("retrieve", "analyze"): Retrieved}


def _texts(otel: TelemetryCapture, events: list[Any]) -> list[str]:
    """Every string the captured spans, metric points and events hold."""
    out: list[str] = []
    for span in otel.finished_spans():
        out.append(span.name)
        out.append(repr(dict(span.attributes or {})))
        out.append(repr(span.status.description))
        for ev in span.events:
            out.append(ev.name)
            out.append(repr(dict(ev.attributes or {})))
    out.extend(repr(point["attributes"]) for point in otel.metrics())
    out.extend(repr(e) for e in events)
    return out


def _no_canary(texts: list[str]) -> None:
    leaked = [t for t in texts if CANARY in t]
    assert not leaked, f"state values leaked: {leaked[:3]}"


def _coordgap_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    out = []
    for r in caplog.records:
        if r.name.startswith("coordgap"):
            out.append(r.getMessage())
            if r.exc_info:
                out.append(logging.Formatter().formatException(r.exc_info))
    return out


@pytest.mark.parametrize("spans", ["all", "failures"])
def test_no_state_value_reaches_spans_metrics_events_logs_or_the_ledger(
    spans: str, caplog, coordgap_otel: TelemetryCapture
) -> None:
    events: list[Any] = []
    kwargs: dict[str, Any] = dict(
        spans=spans,
        tracer_provider=coordgap_otel.tracer_provider,
        meter_provider=coordgap_otel.meter_provider,
        sinks=[events.append],
    )
    app = coordgap.instrument(_build(), contracts=CONTRACTS, handoffs=HANDOFFS, **kwargs)
    failing = coordgap.instrument(_build_failing(), **kwargs)
    with caplog.at_level(logging.DEBUG):
        out = app.invoke(_state())
        assert out["question"] == canary(12)  # the graph itself carries the values, of course
        with pytest.raises(KeyError):
            failing.invoke(_state())
    snap = coordgap.ledger(app).snapshot()
    assert snap.nodes["analyze"].contract_failures == 1  # the contracts did fail
    assert any(not e.ok for e in events if hasattr(e, "ok"))
    texts = _texts(coordgap_otel, events)
    texts += _coordgap_logs(caplog)
    for a in (app, failing):
        s = coordgap.ledger(a).snapshot()
        texts += [repr(s), json.dumps(s.to_dict(), default=repr)]
        texts.append(str(coordgap.report(a)) if hasattr(coordgap, "report") else "")
    _no_canary(texts)


def test_contract_violation_messages_hold_no_state_values() -> None:
    for node, contract in CONTRACTS.items():
        app = coordgap.instrument(
            _build(), contracts={node: contract}, on_violation="raise", metrics=False, spans="off"
        )
        with pytest.raises(coordgap.ContractViolation) as caught:
            app.invoke(_state())
        err = caught.value
        text = " ".join(
            [str(err), repr(err), repr(err.args), repr(err.fields), repr(err.error_types)]
        )
        assert CANARY not in text
        assert err.contract and err.node == node


def test_handoff_contract_violation_message_holds_no_state_values() -> None:
    app = coordgap.instrument(
        _build(), handoffs=HANDOFFS, on_violation="raise", metrics=False, spans="off"
    )
    with pytest.raises(coordgap.ContractViolation) as caught:
        app.invoke(_state())
    assert CANARY not in str(caught.value)
    assert caught.value.source == "retrieve"
    # the fields say where, the error types say what, without the values
    assert "docs.0.url" in caught.value.fields
    assert "int_parsing" in caught.value.error_types


def test_internal_error_logs_hold_no_state_values(monkeypatch, caplog) -> None:
    """A contract that raises unexpectedly with the state in its message: logged without it."""
    monkeypatch.delenv("COORDGAP_RAISE_INTERNAL", raising=False)
    monkeypatch.setattr(_failopen, "_logged", set())

    class Exploding(BaseModel):
        question: str

        @model_validator(mode="before")
        @classmethod
        def explode(cls, data: Any) -> Any:
            # not a ValueError: pydantic lets it through instead of a ValidationError
            raise RuntimeError(f"validator bug on {data!r}")

    app = coordgap.instrument(
        _build(),
        contracts={"analyze": coordgap.Contract(requires=Exploding)},
        metrics=False,
        spans="off",
    )
    with caplog.at_level(logging.DEBUG):
        app.invoke(_state())
    assert coordgap.ledger(app).snapshot().internal_errors >= 1
    logs = _coordgap_logs(caplog)
    assert logs
    _no_canary(logs)


# -- opt in ---------------------------------------------------------------------------------------


def _captured(capture: Any) -> list[str]:
    events: list[Any] = []
    app = coordgap.instrument(
        _build(),
        contracts=CONTRACTS,
        handoffs=HANDOFFS,
        capture_values=capture,
        sinks=[events.append],
        metrics=False,
        spans="off",
    )
    app.invoke(_state())
    return [e.captured for e in events if getattr(e, "captured", None) is not None]


def test_capture_values_true_records_the_values() -> None:
    captured = _captured(True)
    assert captured and any(CANARY in c for c in captured)


def test_capture_values_int_truncates() -> None:
    captured = _captured(12)
    assert captured and all(len(c) <= 12 + 3 for c in captured)


def test_capture_values_redaction_callable_is_applied_before_rendering() -> None:
    def redact(value: Any) -> Any:
        return {k: "<redacted>" for k in value} if isinstance(value, dict) else "<redacted>"

    captured = _captured(redact)
    assert captured and not any(CANARY in c for c in captured)
    assert all("<redacted>" in c for c in captured)


def test_capture_object_combines_length_and_redaction() -> None:
    captured = _captured(coordgap.Capture(max_chars=20, redact=lambda v: "R" * 100))
    assert captured == [("R" * 100).__repr__()[:20] + "..."] * len(captured)


def test_captured_values_reach_spans_only_when_asked() -> None:
    def spans_for(capture: Any) -> list[str]:
        with capture_telemetry() as otel:
            app = coordgap.instrument(
                _build(),
                contracts=CONTRACTS,
                capture_values=capture,
                spans="all",
                tracer_provider=otel.tracer_provider,
                metrics=False,
            )
            app.invoke(_state())
            return _texts(otel, [])

    assert not any(CANARY in x for x in spans_for(False))
    assert any(CANARY in x for x in spans_for(True))
