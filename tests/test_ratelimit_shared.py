"""RPM/TPM limits and per-key concurrency are shared by every worker and host: through the
ledger's database (SQLite on one host, PostgreSQL across hosts) or Redis. Real processes,
real servers: N workers no longer give a key N times its limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import (  # noqa: F401
    free_port,
    pg_url,
    postgres_server,
    postgres_url,
    redis_fresh,
    redis_server,
    redis_url,
    wait_ready,
)
from unillm.ledger import open_store
from unillm.server.ratelimit import Limited, RateLimiter
from unillm.server.ratelimit_shared import (
    LimiterUnavailable,
    RedisRateLimiter,
    SQLRateLimiter,
)

ROOT = Path(__file__).resolve().parents[1]

#: a worker process: build the limiter from argv[1] (a ledger URL or redis URL), then try
#: ``argv[2]`` requests of key k1 (rpm 10, tpm 100) and print how many were admitted
WORKER = """
import sys, time
from unillm.ledger import open_store
from unillm.server.ratelimit import Limited
from unillm.server.ratelimit_shared import RedisRateLimiter, SQLRateLimiter
url, tries, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
limiter = RedisRateLimiter(url) if url.startswith("redis") else SQLRateLimiter(open_store(url))
while time.time() < start:
    time.sleep(0.005)
admitted = 0
for _ in range(tries):
    try:
        limiter.admit("k1", 10, None)
        admitted += 1
    except Limited:
        pass
print(admitted)
"""

#: holds ``argv[2]`` in-flight slots of key k1 (limit argv[2]) until stdin closes
HOLDER = """
import sys
from unillm.ledger import open_store
from unillm.server.ratelimit_shared import RedisRateLimiter, SQLRateLimiter
url, n = sys.argv[1], int(sys.argv[2])
limiter = RedisRateLimiter(url) if url.startswith("redis") else SQLRateLimiter(open_store(url))
leases = [limiter.acquire("k1", n) for _ in range(n)]
print("held", flush=True)
sys.stdin.read()
for lease in leases:
    limiter.release("k1", lease)
print("released", flush=True)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def run_workers(url: str, workers: int, tries: int) -> list[int]:
    start = time.time() + 2.0  # every process has imported and connected by then
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, str(tries), repr(start)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
             for _ in range(workers)]
    counts = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        counts.append(int(out))
    return counts


def open_limiter(url: str):
    return RedisRateLimiter(url) if url.startswith("redis") else SQLRateLimiter(open_store(url))


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def shared_url(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/l.db"
        open_store(url).close()  # migrated once, before the workers race
        return url
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
        open_store(url).close()
        return url
    return request.getfixturevalue("redis_fresh")


# ── shared across processes ──────────────────────────────────────────────────

def test_four_processes_admit_a_keys_rpm_once_between_them(shared_url):
    counts = run_workers(shared_url, 4, 10)
    assert sum(counts) == 10, counts  # one process's in-memory limiter would admit 10 in each
    with pytest.raises(Limited) as info:
        open_limiter(shared_url).admit("k1", 10, None)
    assert info.value.limit == "requests per minute" and 0 < info.value.retry_after <= 60


def test_in_memory_limiters_do_not_share_which_is_why_the_default_is_shared():
    a, b = RateLimiter(), RateLimiter()
    for _ in range(10):
        a.admit("k1", 10, None)
        b.admit("k1", 10, None)  # a second worker: another 10 admitted


def test_tokens_counted_by_one_process_limit_another(shared_url):
    clock = [1000.0]
    mine = open_limiter(shared_url)
    mine.clock = lambda: clock[0]
    mine.admit("k1", None, 100)
    mine.add_tokens("k1", 150)
    mine.flush()
    other = open_limiter(shared_url)
    other.clock = lambda: clock[0] + 30
    with pytest.raises(Limited) as info:
        other.admit("k1", None, 100)
    assert info.value.limit == "tokens per minute" and info.value.retry_after == pytest.approx(30)
    other.clock = lambda: clock[0] + 61  # the window has moved past the tokens
    other.admit("k1", None, 100)


def test_concurrency_slots_are_shared_and_released_by_the_process_that_took_them(shared_url):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, shared_url, "2"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        mine = open_limiter(shared_url)
        with pytest.raises(Limited) as info:
            mine.acquire("k1", 2)
        assert info.value.limit == "concurrent requests"
        holder.stdin.close()
        assert holder.stdout.readline().strip() == "released"
        leases = [mine.acquire("k1", 2), mine.acquire("k1", 2)]
        for lease in leases:
            mine.release("k1", lease)
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_workers_slots_lapse_after_their_lease(shared_url):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, shared_url, "1"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    assert holder.stdout.readline().strip() == "held"
    holder.kill()  # SIGKILL: nothing released
    holder.wait()
    mine = open_limiter(shared_url)
    with pytest.raises(Limited):
        mine.acquire("k1", 1)
    mine.clock = lambda: time.time() + mine.lease + 1  # past the lease nobody renewed
    mine.release("k1", mine.acquire("k1", 1))


def test_an_unreachable_store_refuses_rather_than_lets_everything_through():
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    with pytest.raises(LimiterUnavailable) as info:
        limiter.admit("k1", 10, None)
    assert info.value.retry_after == 1.0


# ── the gateway: `unillm serve --workers 4` ──────────────────────────────────

def test_serve_with_four_workers_admits_a_keys_rpm_once(tmp_path):
    from unillm.server.keys import KeyStore
    from unillm.testing import FakeProvider, Reply
    with FakeProvider() as fake:
        for _ in range(16):
            fake.queue(Reply(text="ok", usage={"input_tokens": 3, "output_tokens": 1}))
        table = fake.providers("openai")["openai"]
        config = tmp_path / "unillm.toml"
        config.write_text("\n".join([f"ledger = {json.dumps(f'sqlite:///{tmp_path}/l.db')}",
                                     'cache = "off"', "", "[providers.openai]",
                                     *(f"{k} = {json.dumps(v)}" for k, v in table.items()),
                                     "max_retries = 0"]) + "\n")
        store = open_store(f"sqlite:///{tmp_path}/l.db")
        secret, _ = KeyStore(store).create(user="bob", rpm=3)
        store.close()
        port = free_port()
        code = ("from unillm.server.run import AppFactory, serve; "
                f"serve(AppFactory({str(config)!r}), port={port}, workers=4, loop='asyncio', "
                "log_level='warning')")
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=_env())
        try:
            wait_ready(f"http://127.0.0.1:{port}/health", proc)
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
            codes = []
            for _ in range(16):  # a new connection each: the workers share them out
                r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body,
                               headers={"authorization": f"Bearer {secret}", "connection": "close"},
                               timeout=30)
                codes.append(r.status_code)
        finally:
            proc.terminate()
            proc.wait(30)
    assert codes.count(200) == 3 and codes.count(429) == 13, codes


def test_the_gateway_caps_a_keys_requests_in_flight_streams_included(tmp_path):
    import threading

    import openai

    from tests.test_server_support import make_served
    from unillm.testing import FakeProvider, Reply
    with FakeProvider() as fake:
        fake.queue(Reply(text="slow stream here", usage={"input_tokens": 3, "output_tokens": 4},
                         chunk_delay=0.3))
        for _ in range(3):
            fake.queue(Reply(text="ok", usage={"input_tokens": 3, "output_tokens": 1}))
        for s in make_served(fake, tmp_path, server={"max_concurrent_per_key": 1}):
            key, other = s.key(user="ann"), s.key(user="bob")
            sdk = s.openai(key)
            msg = [{"role": "user", "content": "hi"}]
            stream = sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=msg, stream=True)
            next(iter(stream))  # the stream is open: the key's one slot is taken
            with pytest.raises(openai.RateLimitError) as info:
                sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=msg)
            assert "concurrent requests" in str(info.value)
            s.openai(other).chat.completions.create(model="openai/gpt-4o-mini", messages=msg)  # its own slot
            rest = list(stream)
            assert rest  # the stream ends ...
            for _ in range(50):  # ... and its slot comes back once the response is over
                try:
                    sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=msg)
                    break
                except openai.RateLimitError:
                    threading.Event().wait(0.05)
            else:
                pytest.fail("the slot was never released")
