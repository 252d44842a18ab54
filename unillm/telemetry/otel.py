"""OpenTelemetry spans following the GenAI semantic conventions (metrics: `unillm.telemetry.meters`).

Needs ``unillm[otel]`` (``opentelemetry-api``); spans and metrics go to the global
``TracerProvider``/``MeterProvider`` the application set up (an SDK, an exporter).

Spans. One CLIENT span per HTTP attempt, ``chat {model}``, a child of the caller's current
span. When a call makes a second attempt (a retry, or the next model of a ``[[fallbacks]]``
chain) it gets one INTERNAL span for the whole ``chat()``, ``chat {requested model}``,
opened then: the second and later attempts are its children; it starts when the first
attempt did and links to that attempt's span, which (begun before anyone knew another would
follow) stays the caller's child. A call answered at its first attempt, the usual case, is
one span. A stream's attempt span ends when the stream ends or is closed (its ledger row).
A cache hit, a rule or budget refusal: one span from its row.
Attributes: ``gen_ai.operation.name`` ("chat"), ``gen_ai.provider.name`` (and the older
``gen_ai.system``), ``gen_ai.request.model``, ``gen_ai.request.max_tokens``,
``gen_ai.response.model``, ``gen_ai.usage.input_tokens`` (cache reads and writes included),
``gen_ai.usage.output_tokens``, ``gen_ai.response.finish_reasons``, ``error.type``; and
``unillm.*``: ``cost_usd`` (exact decimal text; absent when unpriced, then
``unillm.unpriced`` = true), ``status``, ``cache.status``, ``rule``, ``deployment``,
``budget`` ("held" or "denied"), ``usage.source``, ``attempt``, ``retried`` (only when
true), ``call_id``, ``ledger_id`` (only with a ledger: with none there is no row),
``requested_model``. Prompt and answer
(``gen_ai.input.messages``, ``gen_ai.output.messages``) only with ``log_content = true``.

The attempt span's W3C ``traceparent`` is put in the vendor request's headers where the
adapter's SDK takes per-request headers (OpenAI-compatible vendors, Anthropic, Google and
Cohere, via `TRACE_HEADERS`), and the span is the current one while the request is sent, so
an SDK's or HTTP library's own instrumentation nests inside it (and its ``traceparent`` wins).
"""

from __future__ import annotations

import json
import time
from typing import Any

from opentelemetry import baggage, context, propagate, trace
from opentelemetry.propagators.composite import CompositePropagator

from ..events import FAILED
from .meters import PROVIDER_NAMES, meters
from .outcome import Outcome

_ENDS = frozenset({"ok", "unpriced", "partial", "cache_hit"})
_CLIENT, _INTERNAL = trace.SpanKind.CLIENT, trace.SpanKind.INTERNAL


class _Trace:
    """The spans of one chat(): the first one's context and start, the parent once a second
    is due (and its context), the attempt in flight."""

    __slots__ = ("first", "t0", "parent", "ctx", "span")

    def __init__(self) -> None:
        self.first: Any = None
        self.t0 = 0
        self.parent: Any = None
        self.ctx: Any = None
        self.span: Any = None


class Tracing:
    def __init__(self, *, log_content: bool = False, ledger: bool = True) -> None:
        from .. import __version__
        self.tracer = trace.get_tracer("unillm", __version__)
        self.meters = meters()
        self.log_content = log_content
        self.ledger = ledger

    # ── spans ──

    def attempt(self, call: Any) -> tuple[dict[str, str], object]:
        """Start the span of ``call``'s attempt (at the second, the call's parent span),
        current until `detach` (an SDK's own spans nest in it); the headers that carry it."""
        tr = self._trace(call)
        if tr.span is not None:  # the previous attempt left without a row (an exception of ours)
            tr.span.end()
            tr.span = None
        provider = PROVIDER_NAMES.get(call.ref.provider, call.ref.provider)
        request = call.request
        attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
                                 "gen_ai.system": provider, "gen_ai.request.model": call.ref.model,
                                 "unillm.attempt": call.attempt}
        if call.requested_model != call.ref.model:
            attrs["unillm.requested_model"] = call.requested_model
        if request.max_tokens is not None:
            attrs["gen_ai.request.max_tokens"] = request.max_tokens
        if request.temperature is not None:
            attrs["gen_ai.request.temperature"] = request.temperature
        if self.log_content:
            attrs["gen_ai.input.messages"] = json.dumps(
                [m.model_dump(mode="json", exclude_none=True) for m in request.messages], default=str)
        span = tr.span = self._start(tr, f"chat {call.ref.model}", attrs, time.time_ns(), call.requested_model)
        ctx = trace.set_span_in_context(span)
        return _headers(span, ctx), context.attach(ctx)

    def detach(self, token: object) -> None:
        context.detach(token)  # type: ignore[arg-type]

    def recorded(self, rec: Any, call: Any, resp: Any, held: bool) -> None:
        tr = self._trace(call) if call is not None else None
        span = tr.span if tr is not None else None
        if span is None:  # no attempt was sent: a cache hit or a refusal, a span from its row
            provider = PROVIDER_NAMES.get(rec.provider, rec.provider)
            model, requested = rec.sent_model or rec.model, rec.requested_model or rec.model
            attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
                     "gen_ai.system": provider, "gen_ai.request.model": model}
            if requested != model:
                attrs["unillm.requested_model"] = requested
            start = time.time_ns() - int((rec.latency_ms or 0.0) * 1e6)
            if tr is None:
                span = self.tracer.start_span(f"chat {model}", kind=_CLIENT, attributes=attrs, start_time=start)
            else:
                span = self._start(tr, f"chat {model}", attrs, start, requested)
        else:
            tr.span = None  # type: ignore[union-attr]
        self._finish_span(span, rec, resp, held)
        self.meters.record(rec)
        if tr is not None and tr.parent is not None and rec.status in _ENDS:
            _finish_parent(tr.parent, rec)
            tr.parent = None

    def finished(self, call: Any, status: str, resp: Any, cost: Any, error: BaseException | None,
                 saved: Any) -> None:
        """`recorded`, for an answered call that makes no ledger row (see `Outcome`)."""
        out = Outcome(call, status, resp.usage, cost, error, saved, resp.model or call.ref.model)
        self.recorded(out, call, resp, call.reservation is not None)

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
            tr.parent.set_attributes({"error.type": type(err).__name__, "unillm.attempts": call.attempt})
            tr.parent.set_status(trace.StatusCode.ERROR, str(err)[:200])
            tr.parent.end()
            tr.parent = None

    def _trace(self, call: Any) -> _Trace:
        tr: _Trace | None = call.obs
        if tr is None:
            tr = call.obs = _Trace()
        return tr

    def _start(self, tr: _Trace, name: str, attrs: dict[str, Any], start: int, requested: str) -> Any:
        """A span of the call ``tr`` follows: the first, the caller's child; a later one, the
        child of the call's parent span, opened now if this is the second."""
        if tr.first is None:
            span = self.tracer.start_span(name, kind=_CLIENT, attributes=attrs, start_time=start)
            tr.first, tr.t0 = span.get_span_context(), start
            return span
        if tr.parent is None and tr.ctx is None:
            tr.parent = self.tracer.start_span(
                f"chat {requested}", kind=_INTERNAL, start_time=tr.t0, links=[trace.Link(tr.first)],
                attributes={"gen_ai.operation.name": "chat", "unillm.requested_model": requested})
            tr.ctx = trace.set_span_in_context(tr.parent)
        return self.tracer.start_span(name, context=tr.ctx, kind=_CLIENT, attributes=attrs, start_time=start)

    def _finish_span(self, span: Any, rec: Any, resp: Any, held: bool) -> None:
        attrs: dict[str, Any] = {"gen_ai.response.model": rec.model, "gen_ai.usage.input_tokens": rec.prompt_tokens,
                                 "gen_ai.usage.output_tokens": rec.output_tokens, "unillm.status": rec.status}
        if self.ledger and rec.id is not None:
            attrs["unillm.ledger_id"] = rec.id
        if rec.retried:
            attrs["unillm.retried"] = True
        if rec.call_id is not None:
            attrs["unillm.call_id"] = rec.call_id
        if rec.total_usd is not None:
            attrs["unillm.cost_usd"] = str(rec.total_usd)
        elif rec.status != "cache_hit":
            attrs["unillm.unpriced"] = True
        if rec.saved_usd:
            attrs["unillm.saved_usd"] = str(rec.saved_usd)
        if rec.usage_source is not None:
            attrs["unillm.usage.source"] = rec.usage_source
        if rec.cache_status is not None:
            attrs["unillm.cache.status"] = rec.cache_status
        if rec.rule is not None:
            attrs["unillm.rule"] = rec.rule
        if rec.deployment is not None:
            attrs["unillm.deployment"] = rec.deployment
        if rec.fallback_from is not None:
            attrs["unillm.fallback_from"] = rec.fallback_from
        if held:
            attrs["unillm.budget"] = "held"
        elif rec.status == "budget_denied":
            attrs["unillm.budget"] = "denied"
        if resp is not None:
            self._response_attrs(attrs, resp)
        if rec.status in FAILED or rec.error_class is not None:
            attrs["error.type"] = rec.error_class or rec.status
            span.set_status(trace.StatusCode.ERROR)
        span.set_attributes(attrs)
        span.end()

    def _response_attrs(self, attrs: dict[str, Any], resp: Any) -> None:
        reasons = [c.finish_reason for c in resp.choices if c.finish_reason]
        if reasons:
            attrs["gen_ai.response.finish_reasons"] = reasons
        if getattr(resp, "id", None):
            attrs["gen_ai.response.id"] = resp.id
        if self.log_content and resp.choices:
            attrs["gen_ai.output.messages"] = json.dumps(
                [c.message.model_dump(mode="json", exclude_none=True) for c in resp.choices], default=str)


_W3C = frozenset({"traceparent", "tracestate", "baggage"})
_fast_textmap: list[Any] = [None, False]  # the global propagator last seen, and whether it is the default


def _headers(span: Any, ctx: Any) -> dict[str, str]:
    """The propagator's headers for ``span`` (``ctx``). The default one (W3C trace context and
    baggage) is written here, in a few string operations; any other is asked."""
    textmap = propagate.get_global_textmap()
    if textmap is not _fast_textmap[0]:
        _fast_textmap[:] = [textmap, type(textmap) is CompositePropagator and set(textmap.fields) == _W3C]
    headers: dict[str, str] = {}
    if not _fast_textmap[1] or baggage.get_all(ctx):
        propagate.inject(headers, context=ctx)
        return headers
    sc = span.get_span_context()
    if sc.is_valid:
        headers["traceparent"] = f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{sc.trace_flags:02x}"
        if sc.trace_state:
            headers["tracestate"] = sc.trace_state.to_header()
    return headers


def _finish_parent(parent: Any, rec: Any) -> None:
    attrs: dict[str, Any] = {"gen_ai.response.model": rec.model, "unillm.status": rec.status,
                             "unillm.attempts": rec.attempt}
    if rec.total_usd is not None:
        attrs["unillm.cost_usd"] = str(rec.total_usd)
    parent.set_attributes(attrs)
    parent.end()
