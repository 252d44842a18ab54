"""Tracing with ``ledger = "off"``: spans and metrics come from what the call holds (no
`CallRecord` is built for them), with every attribute a ledger client's span has but the
``unillm.ledger_id`` of a row that does not exist (the real OpenTelemetry SDK; official SDKs
talking to FakeProvider). Shares the SDK providers test_telemetry installs."""

from __future__ import annotations

from decimal import Decimal

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace

from unillm import Client
from unillm.testing import Reply

from .test_telemetry import CLIENT, EXPORTER, HI, INTERNAL, READER, USAGE, _clear  # noqa: F401 - the autouse fixture

_PER_CALL = {"unillm.call_id", "unillm.ledger_id", "gen_ai.response.id"}


def _pair(fake, tmp_path, **provider):
    providers = {"openai": {**fake.providers("openai")["openai"], **provider}}
    on = Client(providers=providers, ledger=f"sqlite:///{tmp_path}/l.db", telemetry="otel", sleep=lambda s: None)
    off = Client(providers=providers, ledger="off", telemetry="otel", sleep=lambda s: None)
    return on, off


def _attempts():
    return [s for s in EXPORTER.get_finished_spans() if s.kind == CLIENT]


def _strip(span) -> dict[str, object]:
    return {k: v for k, v in span.attributes.items() if k not in _PER_CALL}


def _same(a, b) -> None:
    assert _strip(a) == _strip(b) and a.name == b.name and a.status.status_code == b.status.status_code


def test_a_plain_call_without_a_ledger_has_every_attribute_but_the_ledger_id(fake, tmp_path) -> None:
    on, off = _pair(fake, tmp_path, max_retries=0)
    fake.queue(Reply(text="hi", usage=USAGE), Reply(text="hi", usage=USAGE))
    r_on = on.chat(model="gpt-4o-mini", messages=HI, max_tokens=50)
    r_off = off.chat(model="gpt-4o-mini", messages=HI, max_tokens=50)
    with_ledger, without = _attempts()
    _same(with_ledger, without)
    a = without.attributes
    assert "unillm.ledger_id" not in a and r_off.ledger_id is None
    assert with_ledger.attributes["unillm.ledger_id"] == r_on.ledger_id
    assert a["unillm.call_id"] and a["unillm.call_id"] != with_ledger.attributes["unillm.call_id"]
    assert Decimal(a["unillm.cost_usd"]) == r_off.cost.total_usd and a["gen_ai.usage.input_tokens"] == 100
    assert a["unillm.usage.source"] == "provider" and list(a["gen_ai.response.finish_reasons"]) == ["stop"]


def test_a_stream_without_a_ledger_ends_its_span_at_the_end_and_when_closed(fake, tmp_path) -> None:
    on, off = _pair(fake, tmp_path, max_retries=0)
    for client in (on, off):
        fake.queue(Reply(text="a streamed answer", usage=USAGE))
        for _ in client.chat(model="gpt-4o-mini", messages=HI, stream=True):
            pass
    _same(*_attempts())
    EXPORTER.clear()
    fake.queue(Reply(text="a long streamed answer " * 20, usage=USAGE, chunk_size=4))
    stream = off.chat(model="gpt-4o-mini", messages=HI, stream=True)
    next(iter(stream))
    assert not _attempts()
    stream.close()
    (span,) = _attempts()
    assert span.attributes["unillm.status"] == "partial" and "unillm.ledger_id" not in span.attributes


def test_retries_without_a_ledger_keep_the_parent_and_no_span_names_a_row(fake, tmp_path) -> None:
    _, off = _pair(fake, tmp_path)
    fake.queue(Reply(status=500, error="boom"), Reply(text="second", usage=USAGE))
    with trace.get_tracer("app").start_as_current_span("handler") as outer:
        off.chat(model="gpt-4o-mini", messages=HI)
    spans = [s for s in EXPORTER.get_finished_spans() if s.name != "handler"]
    (parent,) = [s for s in spans if s.kind == INTERNAL]
    first, second = sorted(_attempts(), key=lambda s: s.attributes["unillm.attempt"])
    assert first.parent.span_id == outer.get_span_context().span_id == parent.parent.span_id
    assert second.parent.span_id == parent.context.span_id and first.attributes["unillm.retried"]
    assert parent.attributes["unillm.status"] == "ok" and parent.attributes["unillm.attempts"] == 2
    assert first.attributes["unillm.call_id"] == second.attributes["unillm.call_id"]
    assert not [s for s in spans if "unillm.ledger_id" in s.attributes]


def test_a_callback_without_a_ledger_gets_its_record_and_the_span_names_no_row(fake, tmp_path) -> None:
    _, off = _pair(fake, tmp_path, max_retries=0)
    got: list[object] = []
    off.on("call", got.append)
    fake.queue(Reply(text="hi", usage=USAGE))
    off.chat(model="gpt-4o-mini", messages=HI)
    assert off.events.flush() and len(got) == 1
    (span,) = _attempts()
    assert "unillm.ledger_id" not in span.attributes
    assert span.attributes["unillm.call_id"] == got[0].call_id  # type: ignore[attr-defined]


def _calls_ok(model: str) -> int:
    for rm in READER.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == "unillm.client.calls":
                    return sum(int(p.value) for p in m.data.data_points
                               if p.attributes.get("gen_ai.request.model") == model
                               and p.attributes.get("unillm.status") == "ok")
    return 0


def test_metrics_count_a_call_without_a_ledger(fake, tmp_path) -> None:
    _, off = _pair(fake, tmp_path, max_retries=0)
    before = _calls_ok("gpt-4o-mini")
    fake.queue(Reply(text="hi", usage=USAGE))
    off.chat(model="gpt-4o-mini", messages=HI)
    assert _calls_ok("gpt-4o-mini") == before + 1
