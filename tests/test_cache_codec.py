"""Cache entries as JSON data, replayed as responses and as streams of the same chunk shapes."""

from __future__ import annotations

import json
import pickle
from decimal import Decimal

import pytest

from unillm.cache import (
    CachedEntry, CorruptEntry, chunks_from_response, decode, encode, is_storable, make_entry,
    replay_chunks, response_from_chunks,
)
from unillm.cache.codec import ENTRY_SCHEMA_VERSION
from unillm.profiles import build_settings, load_adapter_class
from unillm.testing import Reply
from unillm.types import ChatRequest, ChatResponse, Choice, Cost, ResponseMessage, StreamChunk, Usage

PROTOCOLS = ["openai", "anthropic", "google", "cohere"]
REQUEST = ChatRequest(model="m", messages=[{"role": "user", "content": "weather in Paris?"}],
                      tools=[{"function": {"name": "get_weather"}}])
USAGE = {"input_tokens": 11, "cache_read_tokens": 3, "output_tokens": 9, "reasoning_tokens": 2}


def _adapter(fake, protocol: str):
    settings = build_settings(fake.providers(protocol))[protocol]
    return load_adapter_class(settings.adapter)(settings)


def _reply() -> Reply:
    return Reply(text="It is sunny in Paris today.", usage=USAGE,
                 tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}])


def _shape(chunk: StreamChunk) -> dict:
    """What a consumer sees of a chunk, ids and timestamps aside."""
    return chunk.model_dump(exclude={"created"})


def _response(**kw) -> ChatResponse:
    base = dict(id="r1", created=1700000000, model="gpt-4o-mini", provider="openai",
                choices=[Choice(message=ResponseMessage(content="Hello!"), finish_reason="stop")],
                usage=Usage(input_tokens=10, cache_read_tokens=4, output_tokens=6, reasoning_tokens=2),
                cost=Cost(input_usd=Decimal("0.0000015"), output_usd=Decimal("0.0000036")),
                cached=True, ledger_id="L1", rule="cheap", requested_model="fast")
    return ChatResponse(**{**base, **kw})


# ── encode / decode ──────────────────────────────────────────────────────────

def test_round_trip_keeps_the_answer_and_drops_per_call_fields() -> None:
    resp = _response()
    entry = decode(encode(make_entry(resp, namespace="exp")))
    assert entry.cost_usd == Decimal("0.0000051") and isinstance(entry.cost_usd, Decimal)
    assert entry.namespace == "exp" and entry.provider == "openai" and entry.model == "gpt-4o-mini"
    got = entry.response
    assert got.content == "Hello!" and got.choices[0].finish_reason == "stop"
    assert got.usage == resp.usage
    assert (got.usage.prompt_tokens, got.usage.total_tokens, got.usage.prompt_tokens_details.cached_tokens,
            got.usage.completion_tokens_details.reasoning_tokens) == (14, 20, 4, 2)
    assert (got.cost, got.cached, got.ledger_id, got.rule, got.requested_model) == (None, False, None, None, None)


def test_stored_json_is_data_only_with_no_derived_usage_fields() -> None:
    data = json.loads(encode(make_entry(_response())))
    assert data["format"] == "unillm.cache" and data["v"] == ENTRY_SCHEMA_VERSION
    assert data["cost_usd"] == "0.0000051"  # a decimal string, never a float
    assert set(data["response"]["usage"]) <= {"input_tokens", "cache_read_tokens", "cache_write_tokens",
                                              "cache_write_1h_tokens", "output_tokens", "reasoning_tokens",
                                              "source"}
    assert "cached" not in data["response"] and "ledger_id" not in data["response"]  # defaults: left out
    e = make_entry(_response())
    full = e.model_dump_json(exclude={"response": {"usage": {"prompt_tokens", "completion_tokens",
                                                             "total_tokens", "prompt_tokens_details",
                                                             "completion_tokens_details"}}})
    assert decode(encode(e)) == decode(full)  # an entry written whole (before) reads the same


def test_cost_must_be_decimal() -> None:
    with pytest.raises(TypeError):
        make_entry(_response(cost=None), cost_usd=0.1)  # type: ignore[arg-type]
    assert make_entry(_response(cost=None)).cost_usd is None


GOOD = encode(make_entry(_response()))


@pytest.mark.parametrize("data, why", [
    (GOOD[: len(GOOD) // 2], "truncated"),
    (b"", "truncated"),
    (GOOD[:-1], "truncated"),
    (b"\x00\xff\x10garbage", "truncated"),
    (b'{"hello": "world"}', "foreign"),
    (b"[1, 2, 3]", "foreign"),
    (json.dumps({"format": "other.cache", "v": 1}).encode(), "foreign"),
    (pickle.dumps({"format": "unillm.cache"}), "truncated"),
    (GOOD.replace(b'"v":1', b'"v":99'), "version"),
    (GOOD.replace(b'"output_tokens":6', b'"output_tokens":-6'), "schema"),
])
def test_anything_but_a_valid_entry_is_corrupt(data: bytes, why: str) -> None:
    with pytest.raises(CorruptEntry) as info:
        decode(data)
    words = {"truncated": "not valid JSON", "foreign": "foreign", "version": "schema version 99",
             "schema": "does not match"}
    assert words[why] in str(info.value)


# ── replay ───────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stream_entry_replays_the_same_chunks(fake, protocol: str) -> None:
    fake.queue(_reply())
    live = list(_adapter(fake, protocol).stream(REQUEST, "m"))
    folded = response_from_chunks(live, provider=protocol, model="m")
    entry = decode(encode(make_entry(folded, chunks=live, cost_usd=Decimal("0.01"))))
    replayed = replay_chunks(entry)
    assert [_shape(c) for c in replayed] == [_shape(c) for c in live]
    assert any(c.usage is not None for c in replayed)
    assert any(ch.delta.tool_calls for c in replayed for ch in c.choices)
    assert [ch.finish_reason for c in replayed for ch in c.choices if ch.finish_reason] == ["tool_calls"]
    # the same entry serves a non-stream call through its response
    assert entry.response.content == "It is sunny in Paris today."
    assert entry.response.choices[0].message.tool_calls[0].function.parsed_arguments() == \
        {"city": "Paris", "unit": "c"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_non_stream_entry_replays_as_a_stream_that_folds_back(fake, protocol: str) -> None:
    fake.queue(_reply(), _reply())
    adapter = _adapter(fake, protocol)
    resp = adapter.complete(REQUEST, "m")
    live = list(adapter.stream(REQUEST, "m"))
    entry = decode(encode(make_entry(resp)))
    synthesized = replay_chunks(entry)
    # the kinds of chunk a live stream of this vendor yields: text, tool-call deltas, finish, usage
    def kinds(chunks: list[StreamChunk]) -> set[str]:
        out = set()
        for c in chunks:
            out |= {"usage"} if c.usage else set()
            for ch in c.choices:
                out |= {"text"} if ch.delta.content else set()
                out |= {"tool"} if ch.delta.tool_calls else set()
                out |= {"finish"} if ch.finish_reason else set()
        return out
    assert kinds(synthesized) == kinds(live) == {"text", "tool", "finish", "usage"}
    back = response_from_chunks(synthesized, provider=protocol, model="m")
    live_back = response_from_chunks(live, provider=protocol, model="m")
    assert back.content == live_back.content == resp.content
    assert back.usage == live_back.usage == resp.usage
    assert back.choices[0].finish_reason == resp.choices[0].finish_reason == "tool_calls"
    assert [t.function.model_dump() for t in back.choices[0].message.tool_calls] == \
        [t.function.model_dump() for t in resp.choices[0].message.tool_calls]
    assert back.choices[0].message.tool_calls[0].id == resp.choices[0].message.tool_calls[0].id


def test_replaying_a_hit_cannot_change_the_stored_entry() -> None:
    from unillm.cache.memory import MemoryCache
    cache = MemoryCache()
    cache.set("k", make_entry(_response(), chunks=chunks_from_response(_response())))
    first = replay_chunks(cache.get("k"))
    first[0].choices[0].delta.content = "tampered"
    assert replay_chunks(cache.get("k"))[0].choices[0].delta.content == "Hello!"


def test_response_from_chunks_takes_usage_when_the_stream_had_none() -> None:
    chunks = [c.model_copy(update={"usage": None}) for c in chunks_from_response(_response())]
    usage = Usage(input_tokens=1, output_tokens=1, source="tiktoken")
    assert response_from_chunks(chunks, provider="openai", model="m", usage=usage).usage == usage


# ── what may be stored ───────────────────────────────────────────────────────

@pytest.mark.parametrize("finish, content, complete, ok", [
    ("stop", "hi", True, True),
    ("length", "hi", True, True),
    ("tool_calls", None, True, False),   # no tool calls and no text: nothing to serve
    ("stop", "hi", False, False),        # a partial stream
    ("error", "hi", True, False),
    ("content_filter", "hi", True, False),
    ("stop", "", True, False),
])
def test_is_storable(finish: str, content: str | None, complete: bool, ok: bool) -> None:
    resp = _response(choices=[Choice(message=ResponseMessage(content=content), finish_reason=finish)])
    assert is_storable(resp, complete) is ok


def test_tool_call_only_answers_and_missing_responses() -> None:
    fake_stream = chunks_from_response(_response())
    assert is_storable(None, True) is False
    assert is_storable(_response(choices=[]), True) is False
    folded = response_from_chunks(fake_stream, provider="openai", model="m")
    assert is_storable(folded, True) is True
    assert isinstance(make_entry(folded), CachedEntry)
