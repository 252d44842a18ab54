"""The response cache through the Client: hits are free, replayed, and accounted."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from unillm import Client, errors
from unillm.testing import FakeProvider, Reply

HI = [{"role": "user", "content": "What is 2 + 2?"}]
USAGE = {"input_tokens": 1000, "output_tokens": 200}


def make(fake: FakeProvider, tmp_path: Path, **kw) -> Client:
    kw.setdefault("cache", f"disk:///{tmp_path / 'cache'}")
    kw.setdefault("providers", fake.providers())
    return Client(ledger=f"sqlite:///{tmp_path / 'ledger.db'}", sleep=lambda s: None, **kw)


def test_a_hit_is_free_and_records_what_it_saved(fake: FakeProvider, tmp_path: Path) -> None:
    fake.queue(Reply(text="4", usage=USAGE))
    client = make(fake, tmp_path)
    first = client.chat(model="gpt-4o", messages=HI, temperature=0)
    again = client.chat(model="gpt-4o", messages=HI, temperature=0)
    assert len(fake.requests) == 1
    assert again.cached and not first.cached and again.content == "4"
    assert again.cost.total_usd == 0 and again.usage == first.usage
    recs = sorted(client.ledger.records(), key=lambda r: r.started_at)
    assert [r.status for r in recs] == ["ok", "cache_hit"]
    assert recs[1].saved_usd == first.cost.total_usd and recs[1].saved_reason == "cache"
    assert recs[1].total_usd == 0 and recs[1].fingerprint == recs[0].fingerprint
    (row,) = client.ledger.summary()
    assert row["cache_hits"] == 1 and row["saved_usd"] == first.cost.total_usd
    assert row["cost_usd"] == first.cost.total_usd


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_what_a_caller_does_to_a_hit_never_reaches_the_next_one(fake: FakeProvider, tmp_path: Path,
                                                                 cache: str) -> None:
    """A hit's response is its own (served in place from a freshly decoded entry): changing
    it, its message or its stream's chunks changes nothing the cache serves next."""
    fake.queue(Reply(text="4", usage=USAGE))
    client = make(fake, tmp_path, **({"cache": "memory"} if cache == "memory" else {}))
    client.chat(model="gpt-4o", messages=HI, temperature=0)
    hit = client.chat(model="gpt-4o", messages=HI, temperature=0)
    hit.choices[0].message.content = "5"
    hit.cached, hit.ledger_id = False, "x"
    for chunk in client.chat(model="gpt-4o", messages=HI, temperature=0, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            chunk.choices[0].delta.content = "6"
    again = client.chat(model="gpt-4o", messages=HI, temperature=0)
    assert (again.content, again.usage.output_tokens, again.cached) == ("4", 200, True)
    assert again.ledger_id not in (None, "x", hit.ledger_id) and again is not hit
    client.close()


def test_equivalent_requests_hit_and_different_ones_do_not(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path)
    client.chat(model="gpt-4o-mini", messages=HI, temperature=0, max_tokens=10, tags={"user": "a"})
    client.chat(model="openai/gpt-4o-mini", messages=HI, temperature=0.0, max_tokens=10, tags={"user": "b"})
    assert len(fake.requests) == 1                     # alias, 0 vs 0.0 and tags do not matter
    client.chat(model="gpt-4o-mini", messages=HI, temperature=0, max_tokens=11)
    client.chat(model="gpt-4o", messages=HI, temperature=0, max_tokens=10)
    assert len(fake.requests) == 3                     # a parameter or a model that changes output


def test_stream_is_stored_and_replayed_as_a_stream(fake: FakeProvider, tmp_path: Path) -> None:
    fake.queue(Reply(text="streamed once, replayed after", chunk_size=5,
                     tool_calls=[{"name": "lookup", "arguments": {"q": "x"}}]))
    client = make(fake, tmp_path)
    live = list(client.chat(model="claude-haiku-4-5", messages=HI, stream=True, cache={"sampled": True}))
    replay_stream = client.chat(model="claude-haiku-4-5", messages=HI, stream=True, cache={"sampled": True})
    replay = list(replay_stream)
    assert len(fake.requests) == 1
    text = lambda chunks: "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)  # noqa: E731
    assert text(replay) == text(live) == "streamed once, replayed after"
    assert [c.choices[0].finish_reason for c in replay if c.choices] == \
        [c.choices[0].finish_reason for c in live if c.choices]
    assert replay[-1].usage == live[-1].usage
    assert replay_stream.response.cached and replay_stream.response.choices[0].message.tool_calls[0].function.name == "lookup"
    # a non-stream call is served from the stored stream too
    plain = client.chat(model="claude-haiku-4-5", messages=HI, cache={"sampled": True})
    assert plain.cached and plain.content == "streamed once, replayed after"


async def test_async_hit_and_async_stream_replay(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path)
    await client.achat(model="gemini-2.5-flash", messages=HI, temperature=0)
    hit = await client.achat(model="gemini-2.5-flash", messages=HI, temperature=0)
    stream = await client.achat(model="gemini-2.5-flash", messages=HI, temperature=0, stream=True)
    chunks = [c async for c in stream]
    assert hit.cached and len(fake.requests) == 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == hit.content


def test_policy_controls(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path)
    first = client.chat(model="gpt-4o-mini", messages=HI)                # sampled, cached by default
    again = client.chat(model="gpt-4o-mini", messages=HI)
    assert len(fake.requests) == 1 and again.cached
    assert (first.cache_status, again.cache_status) == ("stored", "hit")
    warm = client.chat(model="gpt-4o-mini", messages=HI, temperature=0.7)  # temperature is in the key
    assert len(fake.requests) == 2 and warm.cache_status == "stored"
    client.chat(model="gpt-4o-mini", messages=HI, temperature=0)
    skipped = client.chat(model="gpt-4o-mini", messages=HI, temperature=0, cache=False)   # skip
    assert len(fake.requests) == 4 and skipped.cache_status == "skipped:disabled"
    fake.queue(Reply(text="fresh"))
    refreshed = client.chat(model="gpt-4o-mini", messages=HI, temperature=0, cache="refresh")
    assert refreshed.content == "fresh" and refreshed.cache_status == "stored"
    assert client.chat(model="gpt-4o-mini", messages=HI, temperature=0).content == "fresh"  # overwritten
    assert len(fake.requests) == 5
    strict = make(fake, tmp_path / "s", cache_sampled=False)
    r = strict.chat(model="gpt-4o-mini", messages=HI)
    assert not strict.chat(model="gpt-4o-mini", messages=HI).cached and r.cache_status == "skipped:sampled"
    assert strict.chat(model="gpt-4o-mini", messages=HI, temperature=0).cache_status == "stored"
    statuses = [rec.cache_status for rec in sorted(strict.ledger.records(), key=lambda x: x.started_at)]
    assert statuses == ["skipped:sampled", "skipped:sampled", "stored"]


def test_no_cache_unless_one_is_configured(fake: FakeProvider, tmp_path: Path) -> None:
    client = Client(ledger=f"sqlite:///{tmp_path / 'ledger.db'}", providers=fake.providers())
    a = client.chat(model="gpt-4o-mini", messages=HI, temperature=0)
    b = client.chat(model="gpt-4o-mini", messages=HI, temperature=0)
    assert len(fake.requests) == 2 and not b.cached
    assert a.cache_status is None and b.cache_status is None
    assert [r.cache_status for r in client.ledger.records()] == [None, None]
    assert not (tmp_path / "unillm-home" / "cache").exists()   # nothing written to a default cache


def test_cache_disk_means_the_platform_cache_dir(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path, cache="disk")
    client.chat(model="gpt-4o-mini", messages=HI)
    assert client.chat(model="gpt-4o-mini", messages=HI).cached
    assert (tmp_path / "unillm-home" / "cache" / "cache.db").exists()  # $UNILLM_HOME/cache in tests


def test_unstored_answers_say_why(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path, providers={"openai": {**fake.providers()["openai"], "max_retries": 0}})
    fake.queue(Reply(text="x" * 200, chunk_size=10))
    stream = client.chat(model="gpt-4o-mini", messages=HI, stream=True)
    next(iter(stream))
    stream.close()
    fake.queue(Reply(status=500, error="boom"))
    with pytest.raises(errors.ServerError):
        client.chat(model="gpt-4o-mini", messages=HI)
    rows = sorted(client.ledger.records(), key=lambda r: r.started_at)
    assert [(r.status, r.cache_status) for r in rows] == [("partial", "skipped:partial"), ("error", "miss")]


def test_errors_and_partial_streams_are_never_stored(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path, providers={"openai": {**fake.providers()["openai"], "max_retries": 0}})
    fake.queue(Reply(status=500, error="boom"))
    with pytest.raises(errors.ServerError):
        client.chat(model="gpt-4o-mini", messages=HI, temperature=0)
    fake.queue(Reply(text="x" * 200, chunk_size=10))
    stream = client.chat(model="gpt-4o-mini", messages=HI, temperature=0, stream=True)
    next(iter(stream))
    stream.close()
    fake.queue(Reply(text="cut", cut_after=2))
    with pytest.raises(errors.ProviderError):
        list(client.chat(model="gpt-4o-mini", messages=HI, temperature=0, stream=True))
    assert client.cache.stats()["entries"] == 0


def test_hits_do_not_charge_budgets(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path, budgets=[{"name": "one call", "limit_requests": 1}])
    for _ in range(5):
        client.chat(model="gpt-4o-mini", messages=HI, temperature=0, max_tokens=20)
    assert len(fake.requests) == 1
    (status,) = client.budgets.status()
    assert status["requests"] == 1


def test_a_corrupted_cache_directory_never_raises(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path)
    client.chat(model="gpt-4o-mini", messages=HI, temperature=0)
    client.close()
    for f in (tmp_path / "cache").rglob("*"):
        if f.is_file():
            f.write_bytes(b"\x00garbage" * 64)
    again = make(fake, tmp_path)
    with pytest.warns(Warning):
        r = again.chat(model="gpt-4o-mini", messages=HI, temperature=0)
    assert not r.cached and len(fake.requests) == 2


def test_rule_cache_ttl_and_structured_parse_on_hit(fake: FakeProvider, tmp_path: Path) -> None:
    from pydantic import BaseModel

    class Answer(BaseModel):
        value: int

    fake.queue(Reply(text='{"value": 4}'))
    client = make(fake, tmp_path, cache="memory",
                  rules=[{"name": "short ttl", "when": {"model": "gpt-4o-mini"}, "cache_ttl": 60}])
    client.chat(model="gpt-4o-mini", messages=HI, temperature=0, response_format=Answer)
    hit = client.chat(model="gpt-4o-mini", messages=HI, temperature=0, response_format=Answer)
    assert hit.cached and hit.choices[0].message.parsed == Answer(value=4)
    assert Decimal(0) == hit.cost.total_usd
