"""The metered path's shortcuts (`observe()` must add little to a raw SDK call): an answer is
parsed as json.loads parses it, the request body is not parsed when the answer names its model, the model a request names is read
without parsing it only when that is certain, and each distinct request line is matched once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal

import pytest

from unillm import Client
from unillm.metering.apis import Exchange
from unillm.metering.meter import Meter, _requested, loads, vendor_usage
from unillm.testing import FakeProvider, Reply


@pytest.fixture
def fake_openai() -> Iterator[FakeProvider]:
    with FakeProvider() as f:
        yield f


def exchange(body: bytes, path: str = "/v1/chat/completions") -> Exchange:
    return Exchange("POST", "http://127.0.0.1:1" + path, "127.0.0.1", 1, path, {"Content-Type": "application/json"},
                    body)


@pytest.mark.parametrize("body", [
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 'say "model": "x"'}]},
    {"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "model": "claude-3-5-haiku-latest"},
    {"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4o", "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"properties": {"model": {"type": "string"}}}}}]},
    {"tools": [{"function": {"parameters": {"properties": {"model": {"type": "string"}}}}}], "messages": []},
    {"model": "caf\u00e9-\"quoted\"", "messages": []},
    {"model": None, "messages": []},
    {"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4o-mini", "max_tokens": 20, "stream": False,
     "temperature": 0.5, "user": "u-1", "seed": None},
    {"messages": [], "model": "gpt-4o", "max_tokens": 5, "stream_options": {"include_usage": True}},
    {"messages": [{"content": "x"}], "tools": [{"model": "nested", "a": 1}]},
    {"x\"model": "not-a-model", "messages": [{"content": "{"}]},
])
def test_the_requested_model_is_what_parsing_the_body_finds(body):
    raw = json.dumps(body, separators=(",", ":")).encode()
    parsed = body.get("model") if isinstance(body.get("model"), str) else None
    assert _requested(exchange(raw)) == parsed
    assert _requested(exchange(json.dumps(body).encode())) == parsed


def test_the_openai_sdks_body_names_its_model_without_being_parsed():
    """openai writes ``messages``, then ``model``, then the scalar options: read from the bytes."""
    body = json.dumps({"messages": [{"role": "user", "content": 'say "model": "x" {'}], "model": "gpt-4o-mini",
                       "max_tokens": 20, "temperature": 0.2, "stream": False}).encode()
    ex = exchange(body)
    assert _requested(ex) == "gpt-4o-mini" and not ex.parsed
    tail_object = exchange(b'{"messages":[{"role":"user"}],"model":"gpt-4o","response_format":{"type":"json"}}')
    assert _requested(tail_object) == "gpt-4o" and tail_object.parsed  # not sure from the bytes: parsed


def test_a_nested_model_key_is_never_taken_for_the_requests():
    body = b'{"tools":[{"parameters":{"model":"nested"}}],"messages":[]}'
    assert _requested(exchange(body)) is None
    assert _requested(exchange(b'{"messages":[],"tools":[{"function":{"model":"nested","strict":true}}]}')) is None
    assert _requested(exchange(b'{"x\\"model":"key-with-a-quote","messages":[]}')) is None
    assert _requested(exchange(b'{"contents":[]}', "/v1beta/models/gemini-2.0-flash:generateContent")) \
        == "gemini-2.0-flash"


def test_an_answer_that_names_its_model_is_priced_without_parsing_the_request():
    client = Client(ledger="off", providers={"openai": {"base_url": "http://127.0.0.1:1/v1", "api_key": "k"}})
    meter = Meter(client, [])
    target = meter.target("POST", "http", "127.0.0.1", 1, "/v1/chat/completions")
    assert target is not None and target is meter.target("POST", "http", "127.0.0.1", 1, "/v1/chat/completions")
    ex = exchange(b'{"messages":[{"role":"user","content":"hi"}],"model":"gpt-4o-mini"}')
    ex.status, ex.response_headers = 200, {"Content-Type": "application/json"}
    ex.response_body = json.dumps({"model": "gpt-4o-mini-2024-07-18", "choices": [],
                                   "usage": {"prompt_tokens": 12, "completion_tokens": 7}}).encode()
    model, usage = vendor_usage(client, target, ex)
    assert (model, usage.input_tokens, usage.output_tokens) == ("gpt-4o-mini-2024-07-18", 12, 7)
    assert not ex.parsed
    assert ex.header("content-type") == "application/json"
    assert ex.response_headers == {"content-type": "application/json"}
    client.close()


def test_a_price_looked_up_once_follows_a_replaced_book(tmp_path, fake_openai):
    """The meter keeps each model's price for the day; a book swapped in (the gateway's hot
    reload, `Client.use_pricebook`) prices the very next answer, never the remembered one."""
    import openai

    import unillm
    client = Client(ledger=f"sqlite:///{tmp_path / 'l.db'}", providers=fake_openai.providers("openai"))
    prices = tmp_path / "prices.toml"
    prices.write_text('[openai."gpt-4o-mini"]\ninput = 1000.0\noutput = 2000.0\nsince = 2020-01-01\n')
    dear = Client(ledger="off", pricing=str(prices)).pricebook
    sdk = openai.OpenAI(base_url=fake_openai.base_url("openai"), api_key="sk-test", max_retries=0)
    cheap = client.pricebook
    with unillm.observe(client):
        for book in (cheap, cheap, dear, cheap):
            client.use_pricebook(book)
            fake_openai.queue(Reply(usage={"input_tokens": 1000, "output_tokens": 1000}))
            sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    costs = [r.total_usd for r in sorted(client.ledger.records(), key=lambda r: r.started_at)]
    assert costs[2] == Decimal(3)  # 1000 tokens at $1000/M in, 1000 at $2000/M out
    assert costs[0] == costs[1] == costs[3] and costs[0] is not None and costs[0] < Decimal("0.01")
    client.close()


@pytest.mark.parametrize("body", [
    b'{"model": "m", "usage": {"prompt_tokens": 1}}', b'{"a": 1}  \r\n', b"{}", b"[1, 2]", b' {"a": 1}',
    b'\xef\xbb\xbf{"a": 1}', '{"a": "\u00e9"}'.encode(), b'{"a": "\\ud800"}', b'{"a": NaN}',
    '{"a": 1}'.encode("utf-16-le"), b'{"a": 1} trailing', b'{"a": 1}{', b"{", b"", b'{"a": 1,}', b'{"a": \xff}',
])
def test_an_answer_is_parsed_exactly_as_json_loads_parses_it(body):
    def outcome(parse):
        try:
            return "ok", parse(body)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            return "error", type(exc)

    got, want = outcome(loads), outcome(json.loads)
    assert got[0] == want[0] and (got[1] == want[1] or repr(got[1]) == repr(want[1]))  # NaN != NaN


def test_with_the_ledger_off_a_raw_call_is_not_priced_since_no_row_would_be_kept(fake_openai):
    """No ledger, no budget: the row a metered request makes would go nowhere, so none is
    made (as chat() makes none); the price book is never even loaded."""
    import openai

    import unillm
    client = Client(ledger="off", providers=fake_openai.providers("openai"))
    sdk = openai.OpenAI(base_url=fake_openai.base_url("openai"), api_key="sk-test", max_retries=0)
    with unillm.observe(client):
        answer = sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert answer.usage is not None and answer.usage.total_tokens > 0
    assert client._pricebook is None
    client.close()
