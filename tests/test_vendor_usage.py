"""Vendor usage is validated at one boundary (issue 14, finding 6).

`unillm.types.vendor_usage` is the only place a vendor's counts become a `Usage`; every
converter calls it. Impossible figures (negative, fractional, a part above its whole) are
never clamped, for any vendor: ``chat()`` raises `UsageError` (a `ResponseError`) carrying
the answer that was paid for, and the ledger row keeps the usage as reported, status
``error``, no cost.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ref
from unillm import Client, errors
from unillm.testing import FakeProvider, Reply
from unillm.types import vendor_usage

HI = [{"role": "user", "content": "hi"}]
MODELS = {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-5", "google": "gemini-2.5-flash",
          "cohere": "command-r-plus"}


def client(fake: FakeProvider, tmp_path: Path) -> Client:
    return Client(providers=fake.providers(), ledger=f"sqlite:///{tmp_path / 'ledger.db'}",
                  cache=f"disk://{tmp_path / 'cache'}", sleep=lambda s: None)


# ── the boundary itself ──────────────────────────────────────────────────────

def test_valid_counts_become_buckets() -> None:
    u = vendor_usage(prompt=100, cache_read=30, cache_write=20, output=50, reasoning=10)
    assert (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens, u.output_tokens) == (50, 30, 20, 50)
    assert u.problem is None and u.source == "provider"


def test_whole_floats_are_counts() -> None:  # Cohere's SDK types billed units as floats
    u = vendor_usage(input=5.0, output=26.0)
    assert (u.input_tokens, u.output_tokens, u.problem) == (5, 26, None)
    assert type(u.input_tokens) is int


def test_reasoning_outside_output_is_added() -> None:  # Gemini: candidates exclude thoughts
    u = vendor_usage(prompt=9, output=1, reasoning=20, reasoning_in_output=False)
    assert (u.output_tokens, u.reasoning_tokens, u.problem) == (21, 20, None)


@pytest.mark.parametrize(("counts", "fault"), [
    ({"input": -5, "output": 3}, "input is negative (-5)"),
    ({"prompt": 10, "output": 3.5}, "output is fractional (3.5)"),
    ({"prompt": 10, "cache_read": 15, "output": 1}, "cache reads (15) and writes (0) exceed the prompt (10)"),
    ({"prompt": 10, "output": 5, "reasoning": 9}, "reasoning (9) exceeds output (5)"),
    ({"input": 1, "cache_write": 5, "cache_write_1h": 6}, "1-hour cache writes (6) exceed all cache writes (5)"),
    ({"input": "12", "output": 1}, "input is not a number ('12')"),
    ({"input": True, "output": 1}, "input is not a number (True)"),
    ({"input": float("nan"), "output": 1}, "input is not finite (nan)"),
])
def test_impossible_counts_are_kept_raw_with_the_problem_named(counts: dict[str, Any], fault: str) -> None:
    u = vendor_usage(**counts)
    assert u.problem is not None and fault in u.problem


def test_nothing_is_clamped() -> None:
    u = vendor_usage(prompt=10, cache_read=15, output=4.2)
    assert (u.input_tokens, u.cache_read_tokens, u.prompt_tokens) == (-5, 15, 10)  # the vendor's prompt
    assert u.output_tokens == 5  # a fraction rounds up (and is named in the problem), never truncated


# ── through chat(), every vendor ─────────────────────────────────────────────

@pytest.mark.parametrize("vendor", list(MODELS))
def test_negative_count_is_a_usage_error_carrying_the_answer(fake: FakeProvider, tmp_path: Path,
                                                           vendor: str) -> None:
    c = client(fake, tmp_path)
    fake.queue(Reply(text="the paid answer", usage={"input_tokens": -7, "output_tokens": 4}))
    with pytest.raises(errors.UsageError) as info:
        c.chat(model=MODELS[vendor], messages=HI)
    err = info.value
    assert isinstance(err, errors.ResponseError) and err.provider == vendor
    assert err.response.content == "the paid answer" and "negative (-7)" in str(err)
    [rec] = c.ledger.records()
    assert (rec.status, rec.error_class, rec.total_usd) == ("error", "UsageError", None)
    assert (rec.input_tokens, rec.output_tokens, rec.usage_source) == (-7, 4, "provider")
    assert err.response.ledger_id == rec.id
    c.close()


def _openai_body(**usage: Any) -> dict[str, Any]:
    body = copy.deepcopy(ref("openai_chat_completion_captured"))
    body["usage"] = usage
    return body


def _gemini_body(**meta: Any) -> dict[str, Any]:
    body = copy.deepcopy(ref("gemini_generate_content_thinking"))
    body["usageMetadata"] = meta
    return body


@pytest.mark.parametrize(("model", "body"), [
    ("gpt-4o", _openai_body(prompt_tokens=10, completion_tokens=5, prompt_tokens_details={"cached_tokens": 15})),
    ("gemini-2.5-flash", _gemini_body(promptTokenCount=10, cachedContentTokenCount=15, candidatesTokenCount=5)),
], ids=["openai", "google"])
def test_cached_above_the_prompt_is_the_same_error_for_openai_and_gemini(fake: FakeProvider, tmp_path: Path,
                                                                        model: str, body: Any) -> None:
    c = client(fake, tmp_path)
    fake.queue(Reply(body=body))
    with pytest.raises(errors.UsageError, match=r"cache reads \(15\) and writes \(0\) exceed the prompt \(10\)"):
        c.chat(model=model, messages=HI)
    [rec] = c.ledger.records()
    assert (rec.status, rec.cache_read_tokens, rec.prompt_tokens) == ("error", 15, 10)


def test_fractional_count_is_not_truncated(fake: FakeProvider, tmp_path: Path) -> None:
    body = copy.deepcopy(ref("cohere_v2_chat_api_reference"))
    body["usage"]["billed_units"] = {"input_tokens": 12.5, "output_tokens": 3}
    c = client(fake, tmp_path)
    fake.queue(Reply(body=body))
    with pytest.raises(errors.UsageError, match=r"input is fractional \(12.5\)"):
        c.chat(model="command-r-plus", messages=HI)
    [rec] = c.ledger.records()
    assert (rec.status, rec.input_tokens) == ("error", 13)


def test_reasoning_above_output_is_an_error(fake: FakeProvider, tmp_path: Path) -> None:
    c = client(fake, tmp_path)
    fake.queue(Reply(body=_openai_body(prompt_tokens=10, completion_tokens=5,
                                       completion_tokens_details={"reasoning_tokens": 9})))
    with pytest.raises(errors.UsageError, match=r"reasoning \(9\) exceeds output \(5\)"):
        c.chat(model="gpt-4o", messages=HI)


def test_bad_usage_is_never_cached(fake: FakeProvider, tmp_path: Path) -> None:
    c = client(fake, tmp_path)
    fake.queue(Reply(text="first", usage={"input_tokens": -1, "output_tokens": 1}), Reply(text="second"))
    with pytest.raises(errors.UsageError):
        c.chat(model="gpt-4o", messages=HI)
    assert c.chat(model="gpt-4o", messages=HI).content == "second"


@pytest.mark.parametrize("vendor", list(MODELS))
def test_stream_with_impossible_final_usage(fake: FakeProvider, tmp_path: Path, vendor: str) -> None:
    c = client(fake, tmp_path)
    fake.queue(Reply(text="streamed and paid", usage={"input_tokens": 3, "output_tokens": -2}))
    stream = c.chat(model=MODELS[vendor], messages=HI, stream=True)
    got = []
    with pytest.raises(errors.UsageError) as info:
        for chunk in stream:
            got.extend(ch.delta.content or "" for ch in chunk.choices)
    assert "".join(got) == "streamed and paid" == info.value.response.content
    [rec] = c.ledger.records()
    assert (rec.status, rec.output_tokens, rec.total_usd) == ("error", -2, None)
    c.close()
