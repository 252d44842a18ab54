"""The metered path's shortcuts (`observe()` must add little to a raw SDK call): the request
body is not parsed when the answer names its model, the model a request names is read
without parsing it only when that is certain, and each distinct request line is matched once."""

from __future__ import annotations

import json

import pytest

from unillm import Client
from unillm.metering.apis import Exchange
from unillm.metering.meter import Meter, _requested, vendor_usage


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
])
def test_the_requested_model_is_what_parsing_the_body_finds(body):
    raw = json.dumps(body, separators=(",", ":")).encode()
    parsed = body.get("model") if isinstance(body.get("model"), str) else None
    assert _requested(exchange(raw)) == parsed
    assert _requested(exchange(json.dumps(body).encode())) == parsed


def test_a_nested_model_key_is_never_taken_for_the_requests():
    body = b'{"tools":[{"parameters":{"model":"nested"}}],"messages":[]}'
    assert _requested(exchange(body)) is None
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
