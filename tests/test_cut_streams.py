"""Cut streams keep every figure the vendor reported (issue 14, finding 2).

Each vendor's recorded stream (tests/data/refs/responses) is served by FakeProvider and cut
at every event boundary; the official SDK reads it through the Client. The ledger row must
hold the vendor's figure for every bucket the vendor had reported before the cut (source
"provider"), and a local count only for the rest (source "tiktoken" or "estimate").

The expected figures are read here straight from the raw events, by each vendor's
documented semantics (tests/data/refs/README.md), not by unillm's converters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ref
from unillm import Client, errors
from unillm.testing import FakeProvider, Reply

BUCKETS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
           "output_tokens", "reasoning_tokens")
HI = [{"role": "user", "content": "Extract order IDs from the following text: Order 12345"}]

# recorded payload -> (model to call, its events as served, vendor-reported buckets of a prefix)
VENDORS = {
    "openai_chat_stream_include_usage": "gpt-4o",
    "openai_chat_stream_include_usage_long": "gpt-4o",
    "anthropic_stream_captured": "claude-sonnet-4-5",
    "anthropic_stream_basic": "claude-sonnet-4-5",
    "gemini_stream_generate_content": "gemini-2.5-flash",
    "cohere_v2_chat_stream_api_reference": "command-r-plus",
}


def _data(event: Any) -> Any:
    return event["data"] if isinstance(event, dict) and set(event) <= {"event", "data"} else event


def reported_openai(events: list[Any]) -> dict[str, int]:
    """The usage chunk (prompt includes cached; completion includes reasoning), if it came."""
    usage = next((e["usage"] for e in reversed(events) if isinstance(e, dict) and e.get("usage")), None)
    if usage is None:
        return {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens", 0)
    return {"input_tokens": usage["prompt_tokens"] - cached, "cache_read_tokens": cached,
            "cache_write_tokens": 0, "cache_write_1h_tokens": 0,
            "output_tokens": usage["completion_tokens"], "reasoning_tokens": reasoning}


def reported_anthropic(events: list[Any]) -> dict[str, int]:
    """message_start: input and cache counts; message_delta: the cumulative output (and input)."""
    out: dict[str, int] = {}
    for e in map(_data, events):
        usage = e.get("message", {}).get("usage") if e["type"] == "message_start" else \
            e.get("usage") if e["type"] == "message_delta" else None
        if usage is None:
            continue
        for ours, theirs in (("input_tokens", "input_tokens"), ("cache_read_tokens", "cache_read_input_tokens"),
                             ("cache_write_tokens", "cache_creation_input_tokens")):
            if e["type"] == "message_start" or theirs in usage:
                out[ours] = usage.get(theirs, 0)
        out.setdefault("cache_write_1h_tokens", (usage.get("cache_creation") or {}).get(
            "ephemeral_1h_input_tokens", 0))
        if e["type"] == "message_delta":  # message_start's output count is provisional
            out["output_tokens"], out["reasoning_tokens"] = usage["output_tokens"], 0
    return out


def reported_gemini(events: list[Any]) -> dict[str, int]:
    """The latest cumulative usageMetadata: output = candidates + thoughts."""
    meta = next((e["usageMetadata"] for e in reversed(events) if "usageMetadata" in e), None)
    if meta is None:
        return {}
    cached, thoughts = meta.get("cachedContentTokenCount", 0), meta.get("thoughtsTokenCount", 0)
    return {"input_tokens": meta["promptTokenCount"] - cached, "cache_read_tokens": cached,
            "cache_write_tokens": 0, "cache_write_1h_tokens": 0,
            "output_tokens": meta.get("candidatesTokenCount", 0) + thoughts, "reasoning_tokens": thoughts}


def reported_cohere(events: list[Any]) -> dict[str, int]:
    """message-end's billed_units, if it came."""
    end = next((e for e in map(_data, events) if e["type"] == "message-end"), None)
    if end is None:
        return {}
    billed = end["delta"]["usage"]["billed_units"]
    return {"input_tokens": int(billed["input_tokens"]), "cache_read_tokens": 0, "cache_write_tokens": 0,
            "cache_write_1h_tokens": 0, "output_tokens": int(billed["output_tokens"]), "reasoning_tokens": 0}


READERS = {"openai": reported_openai, "anthropic": reported_anthropic, "gemini": reported_gemini,
           "cohere": reported_cohere}


def served(name: str) -> list[Any]:
    events = ref(name)
    return events + ["[DONE]"] if name.startswith("openai") else events


def client(fake: FakeProvider, tmp_path: Path) -> Client:
    providers = {n: {**p, "max_retries": 0} for n, p in fake.providers().items()}
    return Client(providers=providers, ledger=f"sqlite:///{tmp_path / 'ledger.db'}", sleep=lambda s: None)


def drain(stream: Any) -> tuple[str, BaseException | None]:
    text = []
    try:
        for chunk in stream:
            text.extend(c.delta.content or "" for c in chunk.choices)
    except errors.ProviderError as exc:
        return "".join(text), exc
    return "".join(text), None


def source_of(rec: Any, bucket: str) -> str:
    return rec.usage_sources.get(bucket, rec.usage_source) if rec.usage_sources else rec.usage_source


def cases() -> list[Any]:
    return [pytest.param(name, cut, id=f"{name}-cut{cut}")
            for name in VENDORS for cut in range(1, len(served(name)))]


@pytest.mark.parametrize(("name", "cut"), cases())
def test_cut_stream_records_exactly_the_vendor_reported_buckets(fake: FakeProvider, tmp_path: Path,
                                                                name: str, cut: int) -> None:
    events = served(name)
    fake.queue(Reply(events=events, cut_after=cut))
    c = client(fake, tmp_path)
    text, err = drain(c.chat(model=VENDORS[name], messages=HI, stream=True))
    assert isinstance(err, errors.ProviderError), "a cut stream must not pass for a complete one"
    [rec] = c.ledger.records()
    assert rec.status == "partial" and rec.stream
    expected = READERS[name.split("_")[0]]([e for e in events[:cut] if e != "[DONE]"])
    for bucket in BUCKETS:
        if bucket in expected:
            assert (bucket, getattr(rec, bucket), source_of(rec, bucket)) == \
                (bucket, expected[bucket], "provider")
        else:
            assert source_of(rec, bucket) in ("tiktoken", "estimate"), bucket
    if "output_tokens" not in expected and text:
        assert rec.output_tokens > 0  # what arrived is counted, never dropped
    if expected and set(expected) != set(BUCKETS):  # mixed: every bucket says where it came from
        assert set(rec.usage_sources) == set(BUCKETS) and rec.usage_source in ("tiktoken", "estimate")
    assert rec.total_usd is not None and rec.total_usd > 0
    c.close()


@pytest.mark.parametrize("name", list(VENDORS))
def test_the_whole_recorded_stream_is_complete_and_all_provider(fake: FakeProvider, tmp_path: Path,
                                                                name: str) -> None:
    """The uncut payload: status ok, every bucket the vendor's (the control for the cuts)."""
    events = served(name)
    fake.queue(Reply(events=events))
    c = client(fake, tmp_path)
    _, err = drain(c.chat(model=VENDORS[name], messages=HI, stream=True))
    assert err is None
    [rec] = c.ledger.records()
    expected = READERS[name.split("_")[0]]([e for e in events if e != "[DONE]"])
    assert rec.status == "ok" and rec.usage_source == "provider" and rec.usage_sources == {}
    assert {b: getattr(rec, b) for b in BUCKETS} == expected
    c.close()


def test_gemini_cut_after_five_of_six_keeps_thinking(fake: FakeProvider, tmp_path: Path) -> None:
    """The issue's numbers: 509 output tokens reported (260 thinking), not a 243-token estimate."""
    fake.queue(Reply(events=ref("gemini_stream_generate_content"), cut_after=5))
    c = client(fake, tmp_path)
    drain(c.chat(model="gemini-2.5-flash", messages=HI, stream=True))
    [rec] = c.ledger.records()
    assert (rec.input_tokens, rec.output_tokens, rec.reasoning_tokens) == (20, 509, 260)
    assert rec.usage_source == "provider" and rec.status == "partial"


def test_anthropic_cut_before_message_stop_is_the_vendors_135_and_10(fake: FakeProvider,
                                                                     tmp_path: Path) -> None:
    events = ref("anthropic_stream_captured")
    fake.queue(Reply(events=events, cut_after=len(events) - 1))
    c = client(fake, tmp_path)
    drain(c.chat(model="claude-sonnet-4-5", messages=HI, stream=True))
    [rec] = c.ledger.records()
    assert (rec.input_tokens, rec.output_tokens, rec.usage_source) == (135, 10, "provider")


def test_anthropic_cut_after_message_start_keeps_its_prompt_and_cache_counts(fake: FakeProvider,
                                                                            tmp_path: Path) -> None:
    start = {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5",
        "stop_reason": None, "usage": {"input_tokens": 40, "cache_read_input_tokens": 5000,
                                       "cache_creation_input_tokens": 2000, "output_tokens": 1}}}
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello there"}}
    fake.queue(Reply(events=[("message_start", start),
                             ("content_block_start", {"type": "content_block_start", "index": 0,
                                                      "content_block": {"type": "text", "text": ""}}),
                             ("content_block_delta", delta), ("ping", {"type": "ping"})], cut_after=3))
    c = client(fake, tmp_path)
    text, err = drain(c.chat(model="claude-sonnet-4-5", messages=HI, stream=True))
    assert text == "Hello there" and err is not None
    [rec] = c.ledger.records()
    assert (rec.input_tokens, rec.cache_read_tokens, rec.cache_write_tokens) == (40, 5000, 2000)
    assert rec.usage_sources["cache_read_tokens"] == "provider"
    assert rec.usage_sources["output_tokens"] == "estimate" and rec.output_tokens >= 2
    assert rec.cache_read_usd is not None and rec.cache_read_usd > 0  # cache-read pricing kept


def test_openai_usage_chunk_received_only_done_missing(fake: FakeProvider, tmp_path: Path) -> None:
    events = ref("openai_chat_stream_include_usage")
    fake.queue(Reply(events=[*events, "[DONE]"], cut_after=len(events)))
    c = client(fake, tmp_path)
    drain(c.chat(model="gpt-4o", messages=HI, stream=True))
    [rec] = c.ledger.records()
    assert (rec.input_tokens, rec.output_tokens, rec.usage_source) == (9, 2, "provider")


async def test_async_cut_stream_keeps_vendor_figures(fake: FakeProvider, tmp_path: Path) -> None:
    fake.queue(Reply(events=ref("gemini_stream_generate_content"), cut_after=5))
    c = client(fake, tmp_path)
    stream = await c.achat(model="gemini-2.5-flash", messages=HI, stream=True)
    with pytest.raises(errors.ProviderError):
        async for _ in stream:
            pass
    [rec] = c.ledger.records()
    assert (rec.output_tokens, rec.reasoning_tokens, rec.usage_source) == (509, 260, "provider")
    await c.aclose()


def test_closing_a_stream_early_keeps_the_cumulative_usage_so_far(fake: FakeProvider, tmp_path: Path) -> None:
    fake.queue(Reply(events=ref("gemini_stream_generate_content")))
    c = client(fake, tmp_path)
    stream = c.chat(model="gemini-2.5-flash", messages=HI, stream=True)
    next(iter(stream)), next(iter(stream))
    stream.close()
    [rec] = c.ledger.records()
    assert rec.status == "partial"
    assert (rec.output_tokens, rec.reasoning_tokens, rec.usage_source) == (100 + 260, 260, "provider")
