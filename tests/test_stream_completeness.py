"""A stream is complete only when its vendor says so (issue 14, finding 8).

Anything else is ``partial`` (or, before any chunk, an ``error`` a fallback may answer),
raises `ResponseError`, and is never cached; the same for all four vendors, each read
through its official SDK from FakeProvider.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ref
from tests.test_cut_streams import drain
from unillm import Client, errors
from unillm.testing import FakeProvider, Reply

HI = [{"role": "user", "content": "why is the sky blue?"}]
MODELS = {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-5", "google": "gemini-2.5-flash",
          "cohere": "command-r-plus"}
FALLBACK = "gpt-4o-mini"


def client(fake: FakeProvider, tmp_path: Path, **kw: Any) -> Client:
    kw.setdefault("providers", fake.providers())
    return Client(ledger=f"sqlite:///{tmp_path / 'ledger.db'}", cache=f"disk://{tmp_path / 'cache'}",
                  sleep=lambda s: None, **kw)


def unfinished(vendor: str) -> list[Any]:
    """A well-formed stream that ends cleanly (HTTP-wise) before the vendor's finish signal."""
    if vendor == "openai":
        return [e for e in ref("openai_chat_stream_include_usage")[:3]] + ["[DONE]"]
    if vendor == "anthropic":
        return [e for e in ref("anthropic_stream_captured") if e["event"] not in ("message_delta", "message_stop")]
    if vendor == "google":
        return ref("gemini_stream_generate_content")[:4]
    return ref("cohere_v2_chat_stream_api_reference")[:-1]


@pytest.mark.parametrize("vendor", list(MODELS))
def test_a_stream_ending_without_the_vendors_finish_is_partial_and_never_cached(
        fake: FakeProvider, tmp_path: Path, vendor: str) -> None:
    c = client(fake, tmp_path)
    fake.queue(Reply(events=unfinished(vendor)))
    text, err = drain(c.chat(model=MODELS[vendor], messages=HI, stream=True))
    assert text and isinstance(err, errors.ResponseError)
    assert err.provider == vendor
    fake.queue(Reply(text="the whole answer"))
    again = c.chat(model=MODELS[vendor], messages=HI)   # the cut answer was not stored
    assert again.content == "the whole answer" and not again.cached
    rows = list(c.ledger.records())
    assert [r.status for r in rows[:1]] == ["partial"] and rows[0].cache_status != "stored"
    assert len(fake.requests) == 2
    c.close()


@pytest.mark.parametrize("vendor", list(MODELS))
def test_an_empty_200_stream_is_an_error_a_fallback_answers(fake: FakeProvider, tmp_path: Path,
                                                             vendor: str) -> None:
    c = client(fake, tmp_path, fallbacks=[{"model": MODELS[vendor], "then": [FALLBACK]}])
    fake.queue(Reply(events=[]), Reply(text="from the fallback"))
    text, err = drain(c.chat(model=MODELS[vendor], messages=HI, stream=True))
    assert err is None and text == "from the fallback"
    first, second = c.ledger.records()
    assert (first.status, first.error_class, first.total_usd) == ("error", "ResponseError", None)
    assert (second.status, second.fallback_from) == ("ok", f"{vendor}/{MODELS[vendor]}")
    assert len(fake.requests) == 2  # a ResponseError is not retried
    c.close()


def test_google_empty_stream_without_fallback_raises_and_is_not_ok(fake: FakeProvider, tmp_path: Path) -> None:
    c = client(fake, tmp_path)
    fake.queue(Reply(events=[]))
    with pytest.raises(errors.ResponseError, match="finishReason"):
        c.chat(model="gemini-2.5-flash", messages=HI, stream=True)
    [rec] = c.ledger.records()
    assert rec.status == "error" and rec.total_usd is None


def test_google_stream_closed_after_four_events_is_not_served_from_cache(fake: FakeProvider,
                                                                        tmp_path: Path) -> None:
    c = client(fake, tmp_path)
    fake.queue(Reply(events=ref("gemini_stream_generate_content")[:4]),
               Reply(events=ref("gemini_stream_generate_content")))
    text, err = drain(c.chat(model="gemini-2.5-flash", messages=HI, stream=True))
    assert isinstance(err, errors.ResponseError)
    full, err = drain(c.chat(model="gemini-2.5-flash", messages=HI, stream=True))
    assert err is None and len(full) > len(text) and full.startswith(text)
    first, second = c.ledger.records()
    assert (first.status, second.status) == ("partial", "ok")
    assert len(fake.requests) == 2


@pytest.mark.parametrize("where", ["first", "middle"])
def test_cohere_malformed_event_is_a_response_error(fake: FakeProvider, tmp_path: Path, where: str) -> None:
    events = ref("cohere_v2_chat_stream_api_reference")
    bad = ("content-delta", '{"type": "content-delta", "index": 0, "delta": {"message": ')
    served = [bad, *events] if where == "first" else [*events[:5], bad, *events[5:]]
    c = client(fake, tmp_path, fallbacks=[{"model": "command-r-plus", "then": [FALLBACK]}])
    fake.queue(Reply(events=served), Reply(text="from the fallback"))
    text, err = drain(c.chat(model="command-r-plus", messages=HI, stream=True))
    rows = list(c.ledger.records())
    if where == "first":  # nothing reached the caller: the fallback answers
        assert err is None and text == "from the fallback"
        assert [(r.status, r.error_class) for r in rows] == [("error", "ResponseError"), ("ok", None)]
    else:  # part of the answer would be lost: never an "ok" answer with a hole in it
        assert isinstance(err, errors.ResponseError) and "not valid JSON" in str(err)
        assert [r.status for r in rows] == ["partial"]


@pytest.mark.parametrize("vendor", list(MODELS))
def test_an_html_page_answering_a_stream_is_a_response_error_not_retried(fake: FakeProvider, tmp_path: Path,
                                                                         vendor: str) -> None:
    c = client(fake, tmp_path)
    fake.queue(Reply(raw=b"<html><body><h1>Bad gateway</h1></body></html>"))
    with pytest.raises(errors.ResponseError):
        drain(c.chat(model=MODELS[vendor], messages=HI, stream=True))
    assert len(fake.requests) == 1  # the profile allows 2 retries: none were made
    [rec] = c.ledger.records()
    assert rec.status in ("error", "partial") and rec.error_class == "ResponseError"


@pytest.mark.parametrize("vendor", list(MODELS))
async def test_async_stream_without_finish_is_partial(fake: FakeProvider, tmp_path: Path, vendor: str) -> None:
    c = client(fake, tmp_path)
    fake.queue(Reply(events=unfinished(vendor)))
    stream = await c.achat(model=MODELS[vendor], messages=HI, stream=True)
    with pytest.raises(errors.ResponseError):
        async for _ in stream:
            pass
    [rec] = c.ledger.records()
    assert rec.status == "partial"
    await c.aclose()
