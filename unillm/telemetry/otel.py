"""OpenTelemetry spans and metrics following the GenAI semantic conventions.

Needs ``unillm[otel]`` (``opentelemetry-api``); spans and metrics go to the global
``TracerProvider``/``MeterProvider`` the application set up (an SDK, an exporter).

Spans. One CLIENT span per HTTP attempt, ``chat {model}``, a child of the caller's current
span. When the call may make several attempts (the provider's ``max_retries`` > 0 or a
``[[fallbacks]]`` chain) the attempts are children of one INTERNAL span for the whole
``chat()``, ``chat {requested model}``. A stream's attempt span ends when the stream ends
or is closed (its ledger row). A cache hit, a rule or budget refusal: one span from its row.
Attributes: ``gen_ai.operation.name`` ("chat"), ``gen_ai.provider.name`` (and the older
``gen_ai.system``), ``gen_ai.request.model``, ``gen_ai.request.max_tokens``,
``gen_ai.response.model``, ``gen_ai.usage.input_tokens`` (cache reads and writes included),
``gen_ai.usage.output_tokens``, ``gen_ai.response.finish_reasons``, ``error.type``; and
``unillm.*``: ``cost_usd`` (exact decimal text; absent when unpriced, then
``unillm.unpriced`` = true), ``status``, ``cache.status``, ``rule``, ``deployment``,
``budget`` ("held" or "denied"), ``usage.source``, ``attempt``, ``retried``, ``call_id``,
``ledger_id``, ``requested_model``. Prompt and answer (``gen_ai.input.messages``,
``gen_ai.output.messages``) only with ``log_content = true``.

The attempt span's W3C ``traceparent`` is put in the vendor request's headers where the
adapter's SDK takes per-request headers (OpenAI-compatible vendors and Anthropic, via
`TRACE_HEADERS`), and the span is the current one while the request is sent, so an SDK's
or HTTP library's own instrumentation nests inside it (and its ``traceparent`` wins).

Metrics: histograms ``gen_ai.client.token.usage`` ({token}, ``gen_ai.token.type`` input /
output) and ``gen_ai.client.operation.duration`` (s); counters ``unillm.client.cost``
(USD, a float: the exact figure is the ledger's) and ``unillm.client.calls`` (by
``unillm.status``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from opentelemetry import context, metrics, propagate, trace

from ..events import FAILED

#: unillm's provider names as the conventions' ``gen_ai.provider.name`` values
_PROVIDER_NAMES = {"google": "gcp.gemini", "vertex": "gcp.vertex_ai", "bedrock": "aws.bedrock",
                   "azure": "azure.ai.openai", "mistral": "mistral_ai", "xai": "x_ai"}
_ENDS = frozenset({"ok", "unpriced", "partial", "cache_hit"})


class _Trace:
    """The spans of one chat(): the parent (or None) and the attempt in flight."""

    __slots__ = ("parent", "span", "ctx")

    def __init__(self, parent: Any, ctx: Any) -> None:
        self.parent: Any = parent
        self.ctx: Any = ctx
        self.span: Any = None


class Tracing:
    def __init__(self, *, log_content: bool = False) -> None:
        from .. import __version__
        self.tracer = trace.get_tracer("unillm", __version__)
        meter = metrics.get_meter("unillm", __version__)
        self.log_content = log_content
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=[1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144,
                                                 1048576, 4194304, 16777216, 67108864])
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=[0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56,
                                                 5.12, 10.24, 20.48, 40.96, 81.92])
        self.cost = meter.create_counter("unillm.client.cost", unit="USD", description="Cost of calls")
        self.calls = meter.create_counter("unillm.client.calls", unit="{call}", description="Calls by status")

    # ── spans ──

    def attempt(self, call: Any, several: bool) -> tuple[dict[str, str], object]:
        """Start the span of ``call``'s attempt (and, at the first, the call's parent span),
        current until `detach` (an SDK's own spans nest in it); the headers that carry it."""
        tr: _Trace | None = call.obs
        if tr is None:
            parent = None
            if several:
                parent = self.tracer.start_span(f"chat {call.requested_model}", kind=trace.SpanKind.INTERNAL,
                                                attributes={"gen_ai.operation.name": "chat",
                                                            "unillm.requested_model": call.requested_model})
            tr = call.obs = _Trace(parent, trace.set_span_in_context(parent) if parent is not None else None)
        elif tr.span is not None:  # the previous attempt left without a row (an exception of ours)
            tr.span.end()
        provider = _PROVIDER_NAMES.get(call.ref.provider, call.ref.provider)
        attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
                                 "gen_ai.system": provider, "gen_ai.request.model": call.ref.model,
                                 "unillm.attempt": call.attempt, "unillm.requested_model": call.requested_model}
        if call.request.max_tokens is not None:
            attrs["gen_ai.request.max_tokens"] = call.request.max_tokens
        if call.request.temperature is not None:
            attrs["gen_ai.request.temperature"] = call.request.temperature
        if self.log_content:
            attrs["gen_ai.input.messages"] = json.dumps(
                [m.model_dump(mode="json", exclude_none=True) for m in call.request.messages], default=str)
        span = tr.span = self.tracer.start_span(f"chat {call.ref.model}", context=tr.ctx,
                                                kind=trace.SpanKind.CLIENT, attributes=attrs)
        ctx = trace.set_span_in_context(span)
        headers: dict[str, str] = {}
        propagate.inject(headers, context=ctx)
        return headers, context.attach(ctx)

    def detach(self, token: object) -> None:
        context.detach(token)  # type: ignore[arg-type]

    def recorded(self, rec: Any, call: Any, resp: Any, held: bool) -> None:
        tr: _Trace | None = call.obs if call is not None else None
        span = tr.span if tr is not None else None
        if span is None:  # no attempt was sent: a cache hit or a refusal, a span from its row
            provider = _PROVIDER_NAMES.get(rec.provider, rec.provider)
            end = time.time_ns()
            span = self.tracer.start_span(
                f"chat {rec.sent_model or rec.model}", kind=trace.SpanKind.CLIENT,
                context=tr.ctx if tr is not None else None,
                start_time=end - int((rec.latency_ms or 0.0) * 1e6),
                attributes={"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
                            "gen_ai.system": provider, "gen_ai.request.model": rec.sent_model or rec.model,
                            "unillm.requested_model": rec.requested_model or rec.model})
        else:
            tr.span = None  # type: ignore[union-attr]
        self._finish_span(span, rec, resp, held)
        self._measure(rec)
        if tr is not None and tr.parent is not None and rec.status in _ENDS:
            _finish_parent(tr.parent, rec)
            tr.parent = None

    def failed(self, call: Any, err: BaseException) -> None:
        tr: _Trace | None = call.obs
        if tr is None:
            return
        if tr.span is not None:
            tr.span.set_attribute("error.type", type(err).__name__)
            tr.span.set_status(trace.StatusCode.ERROR)
            tr.span.end()
            tr.span = None
        if tr.parent is not None:
            tr.parent.set_attribute("error.type", type(err).__name__)
            tr.parent.set_attribute("unillm.attempts", call.attempt)
            tr.parent.set_status(trace.StatusCode.ERROR, str(err)[:200])
            tr.parent.end()
            tr.parent = None

    def _finish_span(self, span: Any, rec: Any, resp: Any, held: bool) -> None:
        attrs: dict[str, Any] = {"gen_ai.response.model": rec.model, "gen_ai.usage.input_tokens": rec.prompt_tokens,
                                 "gen_ai.usage.output_tokens": rec.output_tokens, "unillm.status": rec.status,
                                 "unillm.ledger_id": rec.id, "unillm.retried": rec.retried}
        if rec.call_id is not None:
            attrs["unillm.call_id"] = rec.call_id
        if rec.total_usd is not None:
            attrs["unillm.cost_usd"] = str(rec.total_usd)
        elif rec.status not in ("cache_hit",):
            attrs["unillm.unpriced"] = True
        if rec.saved_usd:
            attrs["unillm.saved_usd"] = str(rec.saved_usd)
        for key, value in (("unillm.cache.status", rec.cache_status), ("unillm.rule", rec.rule),
                           ("unillm.deployment", rec.deployment), ("unillm.usage.source", rec.usage_source),
                           ("unillm.fallback_from", rec.fallback_from), ("gen_ai.response.id", None)):
            if value is not None:
                attrs[key] = value
        if held:
            attrs["unillm.budget"] = "held"
        elif rec.status == "budget_denied":
            attrs["unillm.budget"] = "denied"
        if resp is not None:
            reasons = [c.finish_reason for c in resp.choices if c.finish_reason]
            if reasons:
                attrs["gen_ai.response.finish_reasons"] = reasons
            if getattr(resp, "id", None):
                attrs["gen_ai.response.id"] = resp.id
            if self.log_content and resp.choices:
                attrs["gen_ai.output.messages"] = json.dumps(
                    [c.message.model_dump(mode="json", exclude_none=True) for c in resp.choices], default=str)
        if rec.status in FAILED or rec.error_class is not None:
            attrs["error.type"] = rec.error_class or rec.status
            span.set_status(trace.StatusCode.ERROR)
        span.set_attributes(attrs)
        span.end()

    def _measure(self, rec: Any) -> None:
        attrs: dict[str, Any] = {"gen_ai.operation.name": "chat",
                                 "gen_ai.provider.name": _PROVIDER_NAMES.get(rec.provider, rec.provider),
                                 "gen_ai.request.model": rec.sent_model or rec.model,
                                 "gen_ai.response.model": rec.model}
        if rec.error_class is not None:
            attrs["error.type"] = rec.error_class
        if rec.latency_ms is not None and rec.status != "cache_hit":
            self.duration.record(rec.latency_ms / 1000.0, attrs)
        if rec.prompt_tokens or rec.output_tokens:
            self.tokens.record(rec.prompt_tokens, {**attrs, "gen_ai.token.type": "input"})
            self.tokens.record(rec.output_tokens, {**attrs, "gen_ai.token.type": "output"})
        if rec.total_usd:
            self.cost.add(float(rec.total_usd), attrs)
        self.calls.add(1, {**attrs, "unillm.status": rec.status})


def _finish_parent(parent: Any, rec: Any) -> None:
    parent.set_attributes({"gen_ai.response.model": rec.model, "unillm.status": rec.status,
                           "unillm.attempts": rec.attempt})
    if rec.total_usd is not None:
        parent.set_attribute("unillm.cost_usd", str(rec.total_usd))
    parent.end()
