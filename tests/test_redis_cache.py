"""The Redis cache backend against a real redis-server: the backend contract, TTLs,
namespaces, corrupt entries, and degrading (never failing) when Redis is away."""

from __future__ import annotations

import warnings
from decimal import Decimal

import pytest

from unillm import errors
from unillm.cache import CacheBackend, CacheWarning, open_cache, replay_chunks
from unillm.cache.codec import make_entry
from unillm.cache.redis import RedisCache
from unillm.types import (
    ChatResponse, Choice, ChunkChoice, Delta, ResponseMessage, StreamChunk, Usage,
)

from .servers import (  # noqa: F401
    RedisServer, free_port, redis_binary, redis_fresh, redis_server, redis_url,
)

HI = [{"role": "user", "content": "hi"}]


def entry(text: str = "hello", namespace: str = "default", chunks: bool = False):
    response = ChatResponse(
        id="r", created=1, model="m", provider="openai", usage=Usage(input_tokens=2, output_tokens=3),
        choices=[Choice(message=ResponseMessage(content=text), finish_reason="stop")])
    stream = [StreamChunk(id="r", created=1, model="m", provider="openai",
                          choices=[ChunkChoice(delta=Delta(content=part))])
              for part in ("hel", "lo")] if chunks else None
    return make_entry(response, chunks=stream, namespace=namespace, cost_usd=Decimal("0.00042"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cache(redis_fresh):
    messages: list[str] = []
    c = open_cache(redis_fresh, warn=messages.append)
    c.messages = messages  # type: ignore[attr-defined]
    yield c
    c.close()


@pytest.fixture
def raw(redis_fresh):
    import redis
    with redis.Redis.from_url(redis_fresh) as r:
        yield r


# ── the contract ─────────────────────────────────────────────────────────────

def test_set_get_delete_and_stream_replay(cache) -> None:
    assert isinstance(cache, RedisCache) and isinstance(cache, CacheBackend)
    assert cache.get("k1") is None
    e = entry(chunks=True)
    cache.set("k1", e)
    back = cache.get("k1")
    assert back == e and back is not e
    assert back.cost_usd == Decimal("0.00042")
    assert "".join(c.choices[0].delta.content for c in replay_chunks(back)) == "hello"
    plain = entry("plain answer")
    cache.set("k2", plain)
    assert "".join(c.choices[0].delta.content or "" for c in replay_chunks(cache.get("k2"))
                   if c.choices) == "plain answer"
    cache.delete("k1")
    assert cache.get("k1") is None and cache.get("k2") == plain
    assert cache.messages == []


def test_ttl_is_set_on_entry_and_marker(cache, raw) -> None:
    cache.set("short", entry(), ttl=30)
    cache.set("forever", entry())
    assert 0 < raw.pttl("unillm:cache:e:short") <= 30_000
    assert 0 < raw.pttl("unillm:cache:n:default:short") <= 30_000
    assert raw.pttl("unillm:cache:e:forever") == -1
    cache.set("gone", entry(), ttl=0)  # expired on arrival: not stored
    assert cache.get("gone") is None


def test_default_ttl_prefix_and_timeout_from_the_url(redis_fresh, raw) -> None:
    c = open_cache(redis_fresh + "?ttl=60&prefix=app1:&timeout=0.5")
    assert (c.default_ttl, c.prefix) == (60.0, "app1:")
    c.set("k", entry())
    assert raw.exists("app1:e:k") and 0 < raw.pttl("app1:e:k") <= 60_000
    c.set("k2", entry(), ttl=5)
    assert raw.pttl("app1:e:k2") <= 5_000
    c.close()


def test_an_entry_expires_inside_redis(cache, raw) -> None:
    cache.set("k", entry(), ttl=3600)
    raw.pexpire("unillm:cache:e:k", 1)  # what an hour does, without waiting an hour
    raw.pexpire("unillm:cache:n:default:k", 1)
    import time
    deadline = time.monotonic() + 5
    while raw.exists("unillm:cache:e:k") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.get("k") is None
    assert cache.prune() == 0  # nothing left for us to do


def test_clear_a_namespace_then_everything(cache, raw) -> None:
    for i in range(1200):  # more than one SCAN batch
        cache.set(f"a{i}", entry(namespace="team:a*"))
    for i in range(3):
        cache.set(f"b{i}", entry(namespace="team:b"))
    raw.set("someone-elses-key", b"x")
    assert cache.stats()["entries"] == 1203
    assert cache.clear("team:a") == 0  # no such namespace ("team:a*" is a literal name)
    assert cache.clear("team:a*") == 1200
    assert cache.get("a1") is None and cache.get("b1") is not None
    assert cache.stats()["entries"] == 3
    assert cache.clear() == 3
    assert cache.stats()["entries"] == 0
    assert raw.get("someone-elses-key") == b"x"  # outside our prefix: untouched
    assert raw.keys("unillm:cache:*") == []


def test_stats_count_entries_and_bytes(cache, raw) -> None:
    cache.set("k1", entry("x" * 1000))
    cache.set("k2", entry())
    s = cache.stats()
    assert s["entries"] == 2
    assert s["size_bytes"] == raw.strlen("unillm:cache:e:k1") + raw.strlen("unillm:cache:e:k2")
    assert s["size_bytes"] > 1000 and s["degraded"] is None
    assert s["url"].startswith("redis://127.0.0.1:")


@pytest.mark.parametrize("value", [b"", b"not json", b'{"format":"unillm.cache","v":99}',
                                   b"\x80\x04\x95pickle", b'{"format": "someone-else"}'])
def test_a_corrupt_entry_is_a_miss_and_is_removed(cache, raw, value) -> None:
    raw.set("unillm:cache:e:bad", value)
    assert cache.get("bad") is None
    assert not raw.exists("unillm:cache:e:bad")
    assert cache.messages == []


def test_two_backends_share_entries(redis_fresh) -> None:
    a, b = open_cache(redis_fresh), open_cache(redis_fresh)
    a.set("shared", entry("from a"))
    assert b.get("shared").response.choices[0].message.content == "from a"
    a.close()
    b.close()


# ── failure degrades, with one warning ──────────────────────────────────────

def test_a_closed_port_is_misses_with_one_warning() -> None:
    redis_binary()  # skip (or fail under CI) without redis-py
    messages: list[str] = []
    c = open_cache(f"redis://:hunter2@127.0.0.1:{free_port()}/0?timeout=0.5", warn=messages.append)
    for i in range(5):
        assert c.get(f"k{i}") is None
        c.set(f"k{i}", entry())
        c.delete(f"k{i}")
    assert len(messages) == 1 and "continuing without caching" in messages[0]
    assert "hunter2" not in messages[0] and "hunter2" not in repr(c)
    assert c.stats()["degraded"] and "hunter2" not in str(c.stats())


def test_the_default_warning_is_a_cache_warning() -> None:
    redis_binary()
    c = open_cache(f"redis://127.0.0.1:{free_port()}/0?timeout=0.5")
    with pytest.warns(CacheWarning, match="cannot be read"):
        assert c.get("k") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert c.get("k") is None  # no second warning


def test_server_killed_mid_run_then_back(redis_server) -> None:
    server = RedisServer(redis_binary()).start()
    port = server.port
    messages: list[str] = []
    clock = Clock()
    c = RedisCache(server.url, warn=messages.append, clock=clock, timeout=0.5, retry_after=30)
    c.set("k", entry("before"))
    assert c.get("k").response.choices[0].message.content == "before"
    server.stop()
    for _ in range(3):
        assert c.get("k") is None
        c.set("k2", entry())
    assert len(messages) == 1 and c.stats()["degraded"]
    server = RedisServer(redis_binary(), port=port).start()  # back, empty
    try:
        clock.now += 10
        c.set("k3", entry("while backing off"))  # still backing off: skipped
        clock.now += 30
        c.set("k4", entry("after"))
        assert c.get("k4").response.choices[0].message.content == "after"
        assert c.get("k3") is None and c.degraded is None
        assert len(messages) == 1  # one warning, however long the outage
    finally:
        c.close()
        server.stop()


def test_client_calls_go_on_when_redis_dies(fake) -> None:
    from unillm import Client
    from unillm.testing import Reply
    server = RedisServer(redis_binary()).start()
    client = Client(providers=fake.providers(), ledger="off", cache=server.url)
    try:
        fake.queue(Reply(text="one"), Reply(text="two"), Reply(text="three"))
        first = client.chat(model="gpt-4o-mini", messages=HI, temperature=0)
        again = client.chat(model="gpt-4o-mini", messages=HI, temperature=0)
        assert (first.content, first.cached, again.content, again.cached) == \
            ("one", False, "one", True)
        stream = client.chat(model="gpt-4o-mini", messages=HI, temperature=0, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "one"
        assert len(fake.requests) == 1
        server.stop()
        with pytest.warns(CacheWarning) as caught:
            r = client.chat(model="gpt-4o-mini", messages=HI, temperature=0)
            r2 = client.chat(model="gpt-4o-mini", messages=HI, temperature=0)
        assert (r.content, r.cached, r2.content) == ("two", False, "three")
        assert len(caught) == 1
    finally:
        client.close()
        server.stop()


# ── URLs ─────────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("url, words", [
    ("redis://127.0.0.1:6379/0?size_limit=1GB", "unknown redis cache option 'size_limit'"),
    ("redis://127.0.0.1:6379/0?ttl=-1", "seconds > 0"),
    ("redis://:pw-hunter2@127.0.0.1:6379/0?tll=5", "did you mean 'ttl'"),
])
def test_bad_redis_urls_are_config_errors(url, words) -> None:
    redis_binary()
    with pytest.raises(errors.ConfigError) as info:
        open_cache(url)
    assert words in str(info.value) and "hunter2" not in str(info.value) + repr(info.value.value)


def test_the_cache_cli_works_on_redis(redis_fresh) -> None:
    from click.testing import CliRunner

    from unillm.cli import cli
    c = open_cache(redis_fresh)
    c.set("a", entry(namespace="ns1"))
    c.set("b", entry(namespace="ns2"))
    stats = CliRunner().invoke(cli, ["cache", "stats", "--cache", redis_fresh])
    assert stats.exit_code == 0 and "entries" in stats.output and " 2" in stats.output
    cleared = CliRunner().invoke(cli, ["cache", "clear", "--cache", redis_fresh,
                                       "--namespace", "ns1"])
    assert cleared.exit_code == 0 and "removed 1 entry from namespace 'ns1'" in cleared.output
    assert c.get("a") is None and c.get("b") is not None
    c.close()
