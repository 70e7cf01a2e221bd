"""Every name coordgap puts on the wire: spans, attributes, metrics, units, env vars.

A change of convention is one edit here. Attribute values are bounded: node
names that exist in the graph, exception class names, contract names and the
fixed vocabularies below, never free text taken from the graph's state.
"""

from __future__ import annotations

from typing import Final

# -- instrumentation scope ---------------------------------------------------------

SCOPE_NAME: Final = "coordgap"
"""Name of the OpenTelemetry tracer and meter coordgap creates."""

# -- span names --------------------------------------------------------------------

SPAN_RUN: Final = "coordgap.run"
"""One span per run (one invoke/stream of the graph)."""

SPAN_NODE: Final = "coordgap.node"
"""One span per node execution attempt, child of the run span."""

SPAN_HANDOFF: Final = "coordgap.handoff"
"""A failed handoff; a successful one is recorded on the target's node span (spans="all")."""

SPAN_ROUTER: Final = "coordgap.router"
"""A router (conditional-edge path function) that raised or chose an invalid route."""


# -- attribute keys ----------------------------------------------------------------

ATTR_GRAPH: Final = "coordgap.graph"
"""The graph's name as given to instrument(name=...) or the compiled graph's name."""

ATTR_NODE: Final = "coordgap.node"
"""A node name, namespaced by subgraph with '/' (``outer/inner``)."""

ATTR_STEP: Final = "coordgap.step"
"""LangGraph's superstep number of a node execution."""

ATTR_ATTEMPT: Final = "coordgap.attempt"
"""Attempt number of a node execution under a RetryPolicy (1-based)."""

ATTR_SOURCE: Final = "coordgap.handoff.source"
"""Handoff source: a node name or ``__start__``."""

ATTR_TARGET: Final = "coordgap.handoff.target"
"""Handoff target: a node name, ``__end__``, or ``__unknown__`` for an invalid route."""

ATTR_HANDOFF_KIND: Final = "coordgap.handoff.kind"
"""One of: edge, join, conditional, command, send."""

ATTR_RECEIVED_FROM: Final = "coordgap.handoff.received_from"
"""On a node span (spans="all"): the sources of the handoffs the node received, in order."""

ATTR_RECEIVED_KINDS: Final = "coordgap.handoff.received_kinds"
"""On a node span (spans="all"): the kinds of those handoffs, aligned with received_from."""

ATTR_ROUTER: Final = "coordgap.router"
"""A router's name (its path function's name)."""

ATTR_OUTCOME: Final = "coordgap.outcome"
"""ok or error for components; ok, error or interrupted for runs."""

ATTR_CONTRACT: Final = "coordgap.contract"
"""Name of the contract that was broken."""

ATTR_CONTRACT_FIELDS: Final = "coordgap.contract.fields"
"""Field paths that broke the contract (paths only, never values)."""

ATTR_FAULT: Final = "coordgap.fault"
"""True when the failure was injected by coordgap.faults, never set on real failures."""

ATTR_FIRST_ATTEMPT: Final = "coordgap.first_attempt"
"""For node metrics: whether the execution succeeded on its first attempt."""

ATTR_ERROR_TYPE: Final = "error.type"
"""OpenTelemetry's standard attribute: the exception class name or a coordgap failure class."""

ATTR_CAPTURED_INPUT: Final = "coordgap.captured.input"
"""State captured on a failure, only with instrument(capture_values=...)."""

# -- names other conventions define -------------------------------------------------
# coordgap's spans also carry the attributes tracing backends read to show a span and to
# draw an agent graph. The strings are copied here, so the core install needs no
# convention package; tests/test_semconv_peers.py holds each one equal to its package's
# (``openinference-semantic-conventions``, the ``openinference`` extra; the GenAI names to
# ``opentelemetry-semantic-conventions``, which the OpenTelemetry SDK installs).

OPENINFERENCE_SPAN_KIND: Final = "openinference.span.kind"
"""OpenInference: how a backend (Phoenix, Arize, Langfuse) shows a span. Stable."""

SPAN_KIND_AGENT: Final = "AGENT"
"""openinference.span.kind of a run span (coordgap.run): one invoke of the agent (the graph)."""

SPAN_KIND_CHAIN: Final = "CHAIN"
"""openinference.span.kind of a node span (coordgap.node): a step of the agent."""

SPAN_KIND_GUARDRAIL: Final = "GUARDRAIL"
"""openinference.span.kind of a failed handoff (coordgap.handoff): coordgap's check of the
state passed between two nodes."""

SPAN_KIND_DECISION: Final = "DECISION"
"""openinference.span.kind of a failed router (coordgap.router): a routing decision."""

GRAPH_NODE_ID: Final = "graph.node.id"
"""OpenInference: the node a span stands for in the agent graph a backend draws (Arize's
"Agent Graph & Path"): the graph's name on a run span, the node's qualified name on a
node span, a handoff's target on a handoff span, the router's name on a router span."""

GRAPH_NODE_PARENT_ID: Final = "graph.node.parent_id"
"""OpenInference: the node's parent in that graph: the graph's name for a node of the graph
(the container node for a subgraph's node, ``outer`` for ``outer/inner``); a handoff's
source on a handoff span (so the failed handoff is the edge source -> target); a router's
source node on a router span. Absent on the run span (the root)."""

GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
"""OpenTelemetry GenAI (in development, behind the switch below): the operation a span is."""

GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
"""OpenTelemetry GenAI (in development): the graph's name on a run span, the node's on a
node span."""

GEN_AI_INVOKE_WORKFLOW: Final = "invoke_workflow"
"""gen_ai.operation.name of a run span: a coordinated process of several steps (the graph)."""

GEN_AI_INVOKE_AGENT: Final = "invoke_agent"
"""gen_ai.operation.name of a node span: one step (agent) the graph invoked."""

# -- metric names and units ---------------------------------------------------------

METRIC_NODE_EXECUTIONS: Final = "coordgap.node.executions"
"""Counter: node executions by outcome (after retries)."""

METRIC_NODE_ATTEMPTS: Final = "coordgap.node.attempts"
"""Counter: node attempts by outcome (each retry is an attempt)."""

METRIC_NODE_DURATION: Final = "coordgap.node.duration"
"""Histogram: node attempt duration."""

METRIC_NODE_TIME: Final = "coordgap.node.time"
"""Counter (seconds): time spent in node attempts; with ``coordgap.node.attempts`` it gives
the mean duration. Always exported; the distribution is the opt-in histogram above."""

METRIC_HANDOFF_TRANSFERS: Final = "coordgap.handoff.transfers"
"""Counter: handoffs by source, target, kind and outcome."""

METRIC_ROUTER_DECISIONS: Final = "coordgap.router.decisions"
"""Counter: router decisions by router and outcome."""

METRIC_ROUTER_CHOICES: Final = "coordgap.router.choices"
"""Counter: targets routers chose, by router and target (a decision can choose several)."""

METRIC_RUN_COMPLETIONS: Final = "coordgap.run.completions"
"""Counter: runs by outcome (ok, error, interrupted)."""

METRIC_RUN_CLEAN: Final = "coordgap.run.clean"
"""Counter: finished runs in which no component failed."""

METRIC_INTERNAL_ERRORS: Final = "coordgap.internal.errors"
"""Counter: errors inside coordgap itself, swallowed so the graph runs on."""

METRIC_RELIABILITY: Final = "coordgap.reliability"
"""Gauge: reliability per component (node, handoff, router)."""

METRIC_END_TO_END: Final = "coordgap.end_to_end"
"""Gauge: end to end reliability, attribute coordgap.estimate = predicted | observed | naive."""

METRIC_GAP: Final = "coordgap.gap"
"""Gauge: the coordination gap (naive - predicted)."""

ATTR_COMPONENT: Final = "coordgap.component"
"""For the reliability gauge: node, handoff or router."""

ATTR_ESTIMATE: Final = "coordgap.estimate"
"""For the end to end gauge: predicted, observed or naive."""

UNIT_COUNT: Final = "{count}"
UNIT_SECONDS: Final = "s"
UNIT_RATIO: Final = "1"

# -- fixed vocabularies ---------------------------------------------------------------

START: Final = "__start__"
"""Handoff source for the graph's entry (LangGraph's START)."""

END: Final = "__end__"
"""Handoff target for the graph's exit (LangGraph's END)."""

UNKNOWN_TARGET: Final = "__unknown__"
"""Target of a route that names no node: the name itself is never exported."""

OTHER_ERROR_TYPE: Final = "other"
"""error.type once the cap on distinct error types is reached."""

ERROR_CONTRACT: Final = "ContractViolation"
"""error.type of a broken contract."""

ERROR_INVALID_ROUTE: Final = "InvalidRoute"
"""error.type of a route to a node that does not exist (LangGraph ignores it silently)."""

ERROR_UNDELIVERED: Final = "Undelivered"
"""error.type of a handoff whose target never started although the run finished."""

# -- environment variables ------------------------------------------------------------

ENV_SPANS: Final = "COORDGAP_SPANS"
"""Default span mode when instrument(spans=None): all, failures or off."""

ENV_RAISE_INTERNAL: Final = "COORDGAP_RAISE_INTERNAL"
"""When 1/true, coordgap's internal errors are re-raised instead of failing open (our tests)."""

ENV_SEMCONV_OPT_IN: Final = "OTEL_SEMCONV_STABILITY_OPT_IN"
"""OpenTelemetry's own switch for conventions still in development (a comma-separated list).
When it lists :data:`SEMCONV_OPT_IN_GEN_AI`, coordgap's spans carry the GenAI agent attributes
above; ``instrument(gen_ai=True/False)`` overrides it."""

SEMCONV_OPT_IN_GEN_AI: Final = "gen_ai_latest_experimental"
"""The value of ``OTEL_SEMCONV_STABILITY_OPT_IN`` that opts in to the latest GenAI conventions."""
