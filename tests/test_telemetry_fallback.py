"""Spans of a fallback chain that a budget stops (the real OpenTelemetry SDK; official SDKs
talking to FakeProvider). Shares the SDK providers test_telemetry installs."""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace

from unillm import Client, errors
from unillm.testing import Reply

from .test_telemetry import EXPORTER, HI, INTERNAL, USAGE, _clear  # noqa: F401 - the autouse fixture


def test_a_budget_refusal_in_the_fallback_loop_ends_the_parent(fake, tmp_path) -> None:
    providers = fake.providers("openai", "anthropic")
    providers["openai"] = {**providers["openai"], "max_retries": 1}
    client = Client(providers=providers, ledger=f"sqlite:///{tmp_path}/l.db", telemetry="otel",
                    fallbacks=[{"model": "gpt-4o-mini", "then": ["anthropic/claude-opus-4-1"]}],
                    budgets=[{"name": "b", "limit_usd": "0.05", "period": "total"}], sleep=lambda s: None)
    fake.queue(Reply(status=500, error="down"), Reply(status=500, error="down"), Reply(text="x", usage=USAGE))
    with pytest.raises(errors.BudgetExceededError):
        client.chat(model="gpt-4o-mini", messages=HI, max_tokens=2000)
    spans = EXPORTER.get_finished_spans()
    (parent,) = [s for s in spans if s.kind == INTERNAL]
    assert parent.attributes["error.type"] == "BudgetExceededError"
    assert parent.status.status_code == trace.StatusCode.ERROR
    (refused,) = [s for s in spans if s.attributes.get("unillm.status") == "budget_denied"]
    assert refused.parent.span_id == parent.context.span_id and refused.attributes["unillm.budget"] == "denied"
    assert len(fake.requests) == 2  # the fallback model was never sent


def test_headers_written_directly_match_the_propagator(fake, tmp_path) -> None:
    from opentelemetry import baggage, context, propagate
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

    client = Client(providers={"openai": {**fake.providers("openai")["openai"], "max_retries": 0}},
                    ledger=f"sqlite:///{tmp_path}/l.db", telemetry="otel")
    caller = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1),
                         trace_state=TraceState([("vendor", "v1")]))
    ctx = trace.set_span_in_context(NonRecordingSpan(caller))
    for extra in (ctx, baggage.set_baggage("team", "search", ctx)):
        fake.queue(Reply(text="hi", usage=USAGE))
        token = context.attach(extra)
        try:
            client.chat(model="gpt-4o-mini", messages=HI)
        finally:
            context.detach(token)
        span = EXPORTER.get_finished_spans()[-1]
        expected: dict[str, str] = {}
        propagate.inject(expected, context=trace.set_span_in_context(NonRecordingSpan(span.context), extra))
        sent = fake.requests[-1].headers
        assert {k: sent[k] for k in expected} == expected and "tracestate" in expected
    assert "team=search" in fake.requests[-1].headers["baggage"]


@pytest.mark.parametrize(("provider", "model"), [("google", "google/gemini-2.5-flash"),
                                                 ("cohere", "cohere/command-a-03-2025")])
def test_traceparent_to_google_and_cohere(fake, tmp_path, provider, model) -> None:
    client = Client(providers={provider: {**fake.providers(provider)[provider], "max_retries": 0}},
                    ledger=f"sqlite:///{tmp_path}/l.db", telemetry="otel")
    fake.queue(Reply(text="hi", usage=USAGE))
    client.chat(model=model, messages=HI)
    (span,) = [s for s in EXPORTER.get_finished_spans() if s.name.startswith("chat ")]
    sent = fake.requests[-1].headers["traceparent"]
    assert sent.startswith(f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-")
