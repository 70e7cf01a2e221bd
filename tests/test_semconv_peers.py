"""The names coordgap copies from other conventions equal those conventions' packages.

``semconv`` copies them so the core install needs no convention package; where the package
is installed (the ``openinference`` extra; ``opentelemetry-semantic-conventions`` comes with
the OpenTelemetry SDK), these tests hold the copies to it.
"""

from __future__ import annotations

import warnings

import pytest

from coordgap import semconv as sc


def test_openinference_names_equal_the_packages() -> None:
    trace = pytest.importorskip("openinference.semconv.trace")
    attrs, kinds = trace.SpanAttributes, trace.OpenInferenceSpanKindValues
    assert sc.OPENINFERENCE_SPAN_KIND == attrs.OPENINFERENCE_SPAN_KIND
    assert sc.GRAPH_NODE_ID == attrs.GRAPH_NODE_ID
    assert sc.GRAPH_NODE_PARENT_ID == attrs.GRAPH_NODE_PARENT_ID
    assert kinds.AGENT.value == sc.SPAN_KIND_AGENT
    assert kinds.CHAIN.value == sc.SPAN_KIND_CHAIN
    assert kinds.GUARDRAIL.value == sc.SPAN_KIND_GUARDRAIL
    assert kinds.DECISION.value == sc.SPAN_KIND_DECISION


def test_gen_ai_names_equal_the_packages() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the package marks them moved (to the GenAI repo)
        gen_ai = pytest.importorskip(
            "opentelemetry.semconv._incubating.attributes.gen_ai_attributes"
        )
        operations = gen_ai.GenAiOperationNameValues
        assert sc.GEN_AI_OPERATION_NAME == gen_ai.GEN_AI_OPERATION_NAME
        assert sc.GEN_AI_AGENT_NAME == gen_ai.GEN_AI_AGENT_NAME
        assert operations.INVOKE_AGENT.value == sc.GEN_AI_INVOKE_AGENT
        assert operations.INVOKE_WORKFLOW.value == sc.GEN_AI_INVOKE_WORKFLOW


def test_the_gen_ai_opt_in_is_opentelemetrys() -> None:
    """OpenTelemetry's instrumentations read this variable and value for the same opt-in."""
    semconv = pytest.importorskip("opentelemetry.instrumentation._semconv")
    assert sc.ENV_SEMCONV_OPT_IN == semconv.OTEL_SEMCONV_STABILITY_OPT_IN
    assert semconv._StabilityMode.GEN_AI_LATEST_EXPERIMENTAL.value == sc.SEMCONV_OPT_IN_GEN_AI
