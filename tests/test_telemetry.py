"""OpenTelemetry spans and metrics (the real SDK, in-memory exporters), per-call events and
JSON log lines: official SDKs talking to FakeProvider."""

from __future__ import annotations

import json
import logging
import threading
import time
from decimal import Decimal

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from unillm import Client, errors
from unillm.testing import Reply

HI = [{"role": "user", "content": "a secret prompt"}]
USAGE = {"input_tokens": 100, "output_tokens": 10}
EXPORTER = InMemorySpanExporter()
READER = InMemoryMetricReader()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
trace.set_tracer_provider(_provider)
metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))
CLIENT, INTERNAL = trace.SpanKind.CLIENT, trace.SpanKind.INTERNAL


@pytest.fixture(autouse=True)
def _clear():
    EXPORTER.clear()
    yield
    EXPORTER.clear()


def _client(fake, tmp_path, providers=("openai",), **kw) -> Client:
    return Client(providers=fake.providers(*providers), ledger=f"sqlite:///{tmp_path}/l.db",
                  telemetry="otel", sleep=lambda s: None, **kw)


def _spans():
    return {s.name + ("/parent" if s.kind == INTERNAL else ""): s for s in EXPORTER.get_finished_spans()}


def test_plain_call_one_client_span_with_genai_attributes(fake, tmp_path) -> None:
    client = Client(providers={"openai": {**fake.providers("openai")["openai"], "max_retries": 0}},
                    ledger=f"sqlite:///{tmp_path}/l.db", telemetry="otel")
    fake.queue(Reply(text="the secret answer", usage=USAGE))
    r = client.chat(model="gpt-4o-mini", messages=HI, max_tokens=50)
    (span,) = EXPORTER.get_finished_spans()
    a = dict(span.attributes)
    assert span.name == "chat gpt-4o-mini" and span.kind == CLIENT and span.parent is None
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.system"] == "openai" and a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.request.max_tokens"] == 50 and a["gen_ai.response.model"]
    assert a["gen_ai.usage.input_tokens"] == 100 and a["gen_ai.usage.output_tokens"] == 10
    assert list(a["gen_ai.response.finish_reasons"]) == ["stop"]
    assert Decimal(a["unillm.cost_usd"]) == r.cost.total_usd and a["unillm.ledger_id"] == r.ledger_id
    assert a["unillm.status"] == "ok" and a["unillm.usage.source"] == "provider"
    assert "error.type" not in a
    text = json.dumps({k: str(v) for k, v in a.items()})
    assert "secret" not in text and "sk-" not in text  # no content, no key


def test_traceparent_reaches_the_vendor_and_caller_span_is_parent(fake, tmp_path) -> None:
    client = _client(fake, tmp_path)
    fake.queue(Reply(text="hi", usage=USAGE))
    tracer = trace.get_tracer("app")
    with tracer.start_as_current_span("handler") as outer:
        client.chat(model="gpt-4o-mini", messages=HI)
    spans = _spans()
    attempt = spans["chat gpt-4o-mini"]
    assert "chat gpt-4o-mini/parent" not in spans  # one attempt (retries allowed, none made): one span
    assert attempt.parent.span_id == outer.get_span_context().span_id
    tp = fake.requests[-1].headers["traceparent"]
    assert tp.startswith(f"00-{attempt.context.trace_id:032x}-{attempt.context.span_id:016x}-")


def test_traceparent_to_anthropic(fake, tmp_path) -> None:
    client = _client(fake, tmp_path, providers=("anthropic",))
    fake.queue(Reply(text="hi", usage=USAGE))
    client.chat(model="anthropic/claude-haiku-4-5", messages=HI)
    span = _spans()["chat claude-haiku-4-5"]
    sent = int(fake.requests[-1].headers["traceparent"].split("-")[2], 16)
    # ours, or the SDK's own span (anthropic instruments itself), nested in ours
    by_id = {s.context.span_id: s for s in EXPORTER.get_finished_spans()}
    assert sent == span.context.span_id or by_id[sent].parent.span_id == span.context.span_id


def test_no_traceparent_when_off(fake, tmp_path) -> None:
    client = Client(providers=fake.providers("openai"), ledger=f"sqlite:///{tmp_path}/l.db")
    fake.queue(Reply(text="hi"))
    client.chat(model="gpt-4o-mini", messages=HI)
    assert "traceparent" not in fake.requests[-1].headers and not EXPORTER.get_finished_spans()


def test_retry_attempts_get_one_parent_from_the_second(fake, tmp_path) -> None:
    client = _client(fake, tmp_path)
    fake.queue(Reply(status=500, error="boom"), Reply(status=500, error="boom"), Reply(text="third", usage=USAGE))
    with trace.get_tracer("app").start_as_current_span("handler") as outer:
        client.chat(model="gpt-4o-mini", messages=HI)
    spans = [s for s in EXPORTER.get_finished_spans() if s.name != "handler"]
    parent = next(s for s in spans if s.kind == INTERNAL)
    kids = sorted((s for s in spans if s.kind == CLIENT), key=lambda s: s.attributes["unillm.attempt"])
    caller = outer.get_span_context().span_id
    # the first attempt began as the caller's child; the parent starts with it and links to it
    assert len(kids) == 3 and kids[0].parent.span_id == caller and parent.parent.span_id == caller
    assert all(k.parent.span_id == parent.context.span_id for k in kids[1:])
    assert [link.context.span_id for link in parent.links] == [kids[0].context.span_id]
    assert parent.start_time == kids[0].start_time and parent.end_time >= kids[2].end_time
    assert kids[0].attributes["error.type"] == "ServerError" and kids[0].attributes["unillm.retried"]
    assert kids[0].status.status_code == trace.StatusCode.ERROR
    assert "error.type" not in kids[2].attributes and parent.attributes["unillm.attempts"] == 3
    assert "unillm.retried" not in kids[2].attributes
    heads = [r.headers["traceparent"].split("-")[2] for r in fake.requests]
    assert heads == [f"{k.context.span_id:016x}" for k in kids]  # each attempt its own span id


async def test_fallback_chain_async(fake, tmp_path) -> None:
    client = Client(providers={**fake.providers("openai", "anthropic")}, ledger=f"sqlite:///{tmp_path}/l.db",
                    fallbacks=[{"model": "gpt-4o-mini", "then": ["anthropic/claude-haiku-4-5"]}],
                    telemetry="otel", sleep=lambda s: None, asleep=_no_sleep)
    fake.queue(*[Reply(status=500, error="down")] * 3, Reply(text="from claude", usage=USAGE))
    r = await client.achat(model="gpt-4o-mini", messages=HI)
    spans = EXPORTER.get_finished_spans()
    (parent,) = [s for s in spans if s.kind == INTERNAL]
    kids = [s for s in spans if s.kind == CLIENT and s.name.startswith("chat ")]  # not the SDK's own
    assert [k.attributes["gen_ai.provider.name"] for k in kids] == ["openai"] * 3 + ["anthropic"]
    assert {k.parent.span_id for k in kids[1:]} == {parent.context.span_id} and kids[0].parent is None
    assert kids[3].attributes["unillm.fallback_from"] == "openai/gpt-4o-mini"
    assert parent.attributes["gen_ai.response.model"] == r.model
    assert Decimal(parent.attributes["unillm.cost_usd"]) == r.cost.total_usd


def test_a_call_that_gives_up_ends_its_parent_with_the_error(fake, tmp_path) -> None:
    client = _client(fake, tmp_path)
    fake.queue(*[Reply(status=500, error="down")] * 3)
    with pytest.raises(errors.ServerError):
        client.chat(model="gpt-4o-mini", messages=HI)
    spans = EXPORTER.get_finished_spans()
    (parent,) = [s for s in spans if s.kind == INTERNAL]
    assert parent.attributes["error.type"] == "ServerError" and len(spans) == 4
    assert parent.status.status_code == trace.StatusCode.ERROR


def test_stream_span_ends_when_the_stream_ends(fake, tmp_path) -> None:
    client = _client(fake, tmp_path)
    fake.queue(Reply(text="a streamed answer", usage=USAGE))
    stream = client.chat(model="gpt-4o-mini", messages=HI, stream=True)
    next(iter(stream))
    assert not [s for s in EXPORTER.get_finished_spans() if s.kind == CLIENT]  # still open
    for _ in stream:
        pass
    span = _spans()["chat gpt-4o-mini"]
    assert span.attributes["unillm.status"] == "ok" and span.attributes["gen_ai.usage.output_tokens"] == 10
    assert "chat gpt-4o-mini/parent" not in _spans()


def test_stream_span_ends_when_closed(fake, tmp_path) -> None:
    client = _client(fake, tmp_path)
    fake.queue(Reply(text="a long streamed answer " * 20, usage=USAGE, chunk_size=4))
    stream = client.chat(model="gpt-4o-mini", messages=HI, stream=True)
    next(iter(stream))
    stream.close()
    span = _spans()["chat gpt-4o-mini"]
    assert span.attributes["unillm.status"] == "partial"
    assert span.end_time is not None


def test_cache_hit_span(fake, tmp_path) -> None:
    client = _client(fake, tmp_path, cache="memory")
    fake.queue(Reply(text="cached", usage=USAGE))
    client.chat(model="gpt-4o-mini", messages=HI, temperature=0)
    EXPORTER.clear()
    tracer = trace.get_tracer("app")
    with tracer.start_as_current_span("handler") as outer:
        client.chat(model="gpt-4o-mini", messages=HI, temperature=0)
    (span,) = [s for s in EXPORTER.get_finished_spans() if s.name != "handler"]
    assert span.kind == CLIENT and span.parent.span_id == outer.get_span_context().span_id
    assert span.attributes["unillm.cache.status"] == "hit" and span.attributes["unillm.status"] == "cache_hit"
    assert Decimal(span.attributes["unillm.saved_usd"]) > 0 and len(fake.requests) == 1


def test_content_only_with_log_content(fake, tmp_path) -> None:
    client = _client(fake, tmp_path, log_content=True)
    fake.queue(Reply(text="the secret answer", usage=USAGE))
    client.chat(model="gpt-4o-mini", messages=HI)
    a = _spans()["chat gpt-4o-mini"].attributes
    assert "a secret prompt" in a["gen_ai.input.messages"] and "the secret answer" in a["gen_ai.output.messages"]


def test_metrics(fake, tmp_path) -> None:
    client = _client(fake, tmp_path)
    fake.queue(Reply(text="hi", usage=USAGE))
    client.chat(model="gpt-4o-mini", messages=HI)
    data = READER.get_metrics_data()
    found = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration", "unillm.client.cost",
            "unillm.client.calls"} <= set(found)
    kinds = {dict(p.attributes)["gen_ai.token.type"] for p in found["gen_ai.client.token.usage"].data.data_points}
    assert kinds == {"input", "output"}
    assert found["gen_ai.client.operation.duration"].unit == "s"


def _counters(model: str) -> tuple[float, dict[str, int]]:
    """``unillm.client.cost`` summed, and ``unillm.client.calls`` by status, for calls to ``model``."""
    cost, calls = 0.0, {}
    data = READER.get_metrics_data()  # None before anything was measured
    for rm in data.resource_metrics if data is not None else []:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                points = [p for p in m.data.data_points if p.attributes.get("gen_ai.request.model") == model]
                if m.name == "unillm.client.cost":
                    cost += sum(p.value for p in points)
                elif m.name == "unillm.client.calls":
                    for p in points:
                        status = str(p.attributes["unillm.status"])
                        calls[status] = calls.get(status, 0) + int(p.value)
    return cost, calls


def test_the_counters_sum_every_calls_cost_and_count_calls_by_status(fake, tmp_path) -> None:
    client = _client(fake, tmp_path, providers=("openai",))
    cost0, calls0 = _counters("gpt-4o")
    fake.queue(Reply(text="a", usage=USAGE), Reply(text="b", usage={"input_tokens": 7, "output_tokens": 3}),
               Reply(status=400, error="bad"))
    paid = [client.chat(model="gpt-4o", messages=HI).cost.total_usd for _ in range(2)]
    with pytest.raises(errors.BadRequestError):
        client.chat(model="gpt-4o", messages=HI)
    cost1, calls1 = _counters("gpt-4o")
    assert cost1 - cost0 == pytest.approx(float(sum(paid)))  # the counter is a float at export
    assert calls1.get("ok", 0) - calls0.get("ok", 0) == 2 and calls1.get("error", 0) - calls0.get("error", 0) == 1


# ── events (client.on) ───────────────────────────────────────────────────────

async def _no_sleep(seconds: float) -> None:
    return None


def test_call_events_receive_the_ledger_record(fake, tmp_path) -> None:
    client = Client(providers=fake.providers("openai"), ledger=f"sqlite:///{tmp_path}/l.db", cache="memory",
                    rules=[{"name": "cap", "when": {"model": "gpt-4o-mini"}, "max_tokens": 100}])
    seen: list[tuple[str, object]] = []
    for name in ("call", "call.error", "cache.hit", "rule.applied"):
        client.on(name, lambda rec, name=name: seen.append((name, rec)))
    fake.queue(Reply(text="hi", usage=USAGE), Reply(status=400, error="bad"))
    r = client.chat(model="gpt-4o-mini", messages=HI, temperature=0)
    client.chat(model="gpt-4o-mini", messages=HI, temperature=0)  # a hit
    with pytest.raises(errors.BadRequestError):
        client.chat(model="gpt-4o-mini", messages=[{"role": "user", "content": "other"}], temperature=0)
    assert client.events.flush()
    names = [n for n, _ in seen]
    assert names == ["call", "rule.applied", "call", "cache.hit", "rule.applied", "call", "call.error",
                     "rule.applied"]
    first = seen[0][1]
    assert first.id == r.ledger_id and first.total_usd == r.cost.total_usd  # type: ignore[attr-defined]
    assert first in list(client.ledger.records())
    assert seen[6][1].error_class == "BadRequestError"  # type: ignore[attr-defined]


def test_a_slow_or_failing_callback_never_slows_or_breaks_the_call(fake, tmp_path, caplog) -> None:
    client = Client(providers=fake.providers("openai"), ledger=f"sqlite:///{tmp_path}/l.db")
    release, ran = threading.Event(), []
    client.on("call", lambda rec: release.wait(10))
    client.on("call", lambda rec: 1 / 0)
    client.on("call", lambda rec: ran.append(rec.id))
    fake.queue(Reply(text="hi"))
    t = time.perf_counter()
    r = client.chat(model="gpt-4o-mini", messages=HI)
    assert time.perf_counter() - t < 5 and r.content == "hi"  # the blocked callback did not hold it
    release.set()
    with caplog.at_level(logging.ERROR, logger="unillm.events"):
        assert client.events.flush()
    assert ran == [r.ledger_id] and "ZeroDivisionError" in caplog.text


def test_unknown_event_is_refused(fake, tmp_path) -> None:
    client = Client(providers=fake.providers("openai"), ledger="off")
    with pytest.raises(ValueError, match="unknown event"):
        client.on("calls", print)


def test_events_fire_with_the_ledger_off(fake, tmp_path) -> None:
    client = Client(providers=fake.providers("openai"), ledger="off")
    got: list[object] = []
    client.on("call", got.append)
    fake.queue(Reply(text="hi", usage=USAGE))
    r = client.chat(model="gpt-4o-mini", messages=HI)
    assert client.events.flush() and len(got) == 1 and r.ledger_id is None
    assert got[0].output_tokens == 10  # type: ignore[attr-defined]


def test_payload_is_json_ready_and_exact(fake, tmp_path) -> None:
    from unillm.events import payload
    client = Client(providers=fake.providers("openai"), ledger=f"sqlite:///{tmp_path}/l.db", log_content=True)
    got: list[object] = []
    client.on("call", got.append)
    fake.queue(Reply(text="hi", usage=USAGE))
    r = client.chat(model="gpt-4o-mini", messages=HI)
    client.events.flush()
    data = json.loads(json.dumps(payload(got[0])))
    assert Decimal(data["total_usd"]) == r.cost.total_usd and "prompt" not in data
    assert payload(got[0], content=True)["prompt"]


# ── JSON logs ────────────────────────────────────────────────────────────────

def test_json_log_line_per_call_without_content_or_key(fake, tmp_path, caplog) -> None:
    client = Client(providers=fake.providers("openai"), ledger=f"sqlite:///{tmp_path}/l.db", log_format="json",
                    log_content=True)
    fake.queue(Reply(text="the secret answer", usage=USAGE))
    with caplog.at_level(logging.INFO, logger="unillm.calls"):
        r = client.chat(model="gpt-4o-mini", messages=HI)
    (line,) = [rec.getMessage() for rec in caplog.records if rec.name == "unillm.calls"]
    data = json.loads(line)
    assert data["event"] == "unillm.call" and data["id"] == r.ledger_id and data["status"] == "ok"
    assert Decimal(data["total_usd"]) == r.cost.total_usd and data["output_tokens"] == 10
    assert "secret" not in line and "sk-" not in line


def test_no_json_log_by_default(fake, tmp_path, caplog) -> None:
    client = Client(providers=fake.providers("openai"), ledger=f"sqlite:///{tmp_path}/l.db")
    fake.queue(Reply(text="hi"))
    with caplog.at_level(logging.INFO, logger="unillm.calls"):
        client.chat(model="gpt-4o-mini", messages=HI)
    assert not [rec for rec in caplog.records if rec.name == "unillm.calls"]


def test_bad_setting_is_one_precise_error() -> None:
    with pytest.raises(errors.ConfigError, match="telemetry"):
        Client(telemetry="jaeger", ledger="off")
