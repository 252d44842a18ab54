"""``achat`` does no blocking I/O on the event loop, and ``close``/``aclose`` close what the
Client opened.

Where SQL runs is observed with SQLite's own trace hook (every statement the ledger's
connection executes reports the thread it ran on); what is open with /proc/self/fd and
`threading.enumerate`: the real state, nothing stubbed.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from decimal import Decimal
from pathlib import Path

import pytest

from unillm import Client, errors
from unillm.offload import Offload
from unillm.testing import FakeProvider, Reply

from .servers import (  # noqa: F401  (fixtures)
    open_files,
    pg_url,
    postgres_server,
    postgres_url,
    redis_fresh,
    redis_server,
    redis_url,
)

HI = [{"role": "user", "content": "hi"}]
BUDGET = [{"name": "all", "limit_usd": 100}]
THREADS = ("unillm-ledger", "unillm-cache", "unillm-io", "unillm-budget-heartbeat", "unillm-webhook")


def _client(fake: FakeProvider, tmp_path: Path, **kw: object) -> Client:
    settings = {"ledger": f"sqlite:///{tmp_path}/ledger.db?synchronous=full", "cache": f"disk:///{tmp_path}/cache",
                "budgets": BUDGET, **kw}
    return Client(providers=fake.providers(), **settings)


def _trace(client: Client) -> list[str]:
    """The name of the thread each SQL statement of the ledger's connection runs on."""
    threads: list[str] = []
    client.ledger.store._conn.set_trace_callback(lambda sql: threads.append(threading.current_thread().name))
    return threads


_BEFORE: set[int] = set()


@pytest.fixture(autouse=True)
def _threads_before() -> None:
    """Threads other tests' clients left running are not this test's to close."""
    _BEFORE.clear()
    _BEFORE.update(id(t) for t in threading.enumerate())


def _our_threads() -> list[str]:
    return [t.name for t in threading.enumerate()
            if t.name.startswith(THREADS) and t.is_alive() and id(t) not in _BEFORE]


# ── the async path runs its I/O off the loop ────────────────────────────────

def test_achat_writes_the_ledger_and_holds_budgets_off_the_loop(fake: FakeProvider, tmp_path: Path) -> None:
    client = _client(fake, tmp_path)
    threads = _trace(client)

    async def main() -> str:
        await client.achat(model="gpt-4o-mini", messages=HI, temperature=0)  # miss: hold, call, row
        await client.achat(model="gpt-4o-mini", messages=HI, temperature=0)  # hit: a cache_hit row
        stream = await client.achat(model="gpt-4o-mini", messages=[{"role": "user", "content": "s"}],
                                    stream=True)
        [c async for c in stream]  # its row is written when it ends
        return threading.current_thread().name

    loop_thread = asyncio.run(main())
    client.close()
    assert threads, "the ledger ran no SQL"
    assert loop_thread not in threads
    assert {t.split("_")[0] for t in threads} == {"unillm-ledger"}
    rows = [r.status for r in Client(ledger=f"sqlite:///{tmp_path}/ledger.db").ledger.records()]
    assert sorted(rows) == ["cache_hit", "ok", "ok"]


def test_achat_reads_the_cache_on_its_threads(fake: FakeProvider, tmp_path: Path) -> None:
    client = _client(fake, tmp_path, budgets=[])
    asyncio.run(client.achat(model="gpt-4o-mini", messages=HI, temperature=0))
    assert client.cache.io.threads >= 1  # the lookup ran on the cache's own threads
    client.close()


def test_sync_chat_runs_its_sql_on_the_callers_thread(fake: FakeProvider, tmp_path: Path) -> None:
    client = _client(fake, tmp_path)
    threads = _trace(client)
    client.chat(model="gpt-4o-mini", messages=HI)
    assert set(threads) == {threading.current_thread().name}
    assert client.ledger.store.io.threads == 0 and client.cache.io.threads == 0  # none started
    client.close()


def test_concurrent_achat_never_overshoots(fake: FakeProvider, tmp_path: Path) -> None:
    """60 concurrent achat on one loop, their holds taken on the store's threads, against a
    budget that admits some of them: every admitted call recorded, nothing over the limit,
    no hold left behind."""
    fake.default = Reply(usage={"input_tokens": 5, "output_tokens": 50}, delay=0.05)
    limit = Decimal("0.002")
    budget = [{"name": "shared", "limit_usd": str(limit)}]
    client = Client(providers=fake.providers(), ledger=f"sqlite:///{tmp_path}/ledger.db", budgets=budget)

    async def one(i: int) -> str:
        try:
            await client.achat(model="gpt-4o-mini", messages=[{"role": "user", "content": f"{i}"}], max_tokens=60)
        except errors.BudgetExceededError:
            return "denied"
        return "ok"

    async def main() -> list[str]:
        return list(await asyncio.gather(*(one(i) for i in range(60))))

    outcomes = asyncio.run(main())
    recs = list(client.ledger.records())
    spent = sum((r.total_usd for r in recs if r.status == "ok"), Decimal(0))
    assert 0 < outcomes.count("ok") < 60
    assert spent <= limit                                                   # zero overshoot
    assert sum(r.status == "ok" for r in recs) == outcomes.count("ok")      # every admitted call recorded
    assert sum(r.status == "budget_denied" for r in recs) == outcomes.count("denied")
    (status,) = client.budgets.status()
    assert status["in_flight"] == 0 and status["reserved_usd"] == 0 and status["spent_usd"] == spent
    client.close()


def test_a_cancelled_caller_waits_for_work_that_started() -> None:
    """Cancelling the task awaiting a commit never abandons the commit half-way (whoever
    handles the cancellation must see the row and its hold settled, not settle them again)."""
    off = Offload("unillm-io", 1)
    started, release, done = threading.Event(), threading.Event(), []

    def work() -> None:
        started.set()
        release.wait(30)
        done.append(True)

    async def main() -> None:
        task = asyncio.ensure_future(off.run(work))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 30)
        task.cancel()
        for _ in range(20):
            await asyncio.sleep(0)
        assert not task.done() and not done  # still waiting for the work, not abandoning it
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert done == [True]

    asyncio.run(main())
    off.close()


# ── close and aclose ────────────────────────────────────────────────────────

def test_close_closes_ledger_cache_and_threads(fake: FakeProvider, tmp_path: Path) -> None:
    client = _client(fake, tmp_path)

    async def main() -> None:
        stream = await client.achat(model="gpt-4o-mini", messages=HI, stream=True)
        assert client.budgets._heartbeat.running  # a live hold is renewed while the stream is open
        [c async for c in stream]
        await client.achat(model="gpt-4o-mini", messages=HI, temperature=0)

    asyncio.run(main())
    assert any(p.endswith("ledger.db") for p in open_files(tmp_path))
    assert any(p.endswith("cache.db") for p in open_files(tmp_path))
    client.close()
    assert open_files(tmp_path) == []     # the ledger file and the cache's files are closed
    assert _our_threads() == []            # store, cache, heartbeat threads stopped
    client.close()                         # idempotent


def test_close_stops_the_heartbeat_of_an_open_stream(fake: FakeProvider, tmp_path: Path) -> None:
    client = _client(fake, tmp_path)
    stream = client.chat(model="gpt-4o-mini", messages=HI, stream=True)
    assert client.budgets._heartbeat.running
    client.close()
    assert not client.budgets._heartbeat.running
    assert "unillm-budget-heartbeat" not in _our_threads()
    stream.close()


def test_async_with_closes_everything(fake: FakeProvider, tmp_path: Path) -> None:
    async def main() -> None:
        async with _client(fake, tmp_path) as client:
            await client.achat(model="gpt-4o-mini", messages=HI, temperature=0)
            assert open_files(tmp_path)

    asyncio.run(main())
    assert open_files(tmp_path) == []
    assert _our_threads() == []


def test_with_closes_everything_and_the_client_reopens_on_use(fake: FakeProvider, tmp_path: Path) -> None:
    with _client(fake, tmp_path) as client:
        client.chat(model="gpt-4o-mini", messages=HI)
    assert open_files(tmp_path) == []
    assert [r.status for r in client.ledger.records()] == ["ok"]  # opened anew
    client.close()
    assert open_files(tmp_path) == []


def test_the_default_client_is_closed_at_exit(tmp_path: Path) -> None:
    """`unillm.track`'s module-wide client closes its ledger when the interpreter exits
    (the check is registered first, so it runs after the client's own exit hook)."""
    script = textwrap.dedent("""
        import atexit, os
        def held():
            out = []
            for fd in os.listdir("/proc/self/fd"):
                try:
                    out.append(os.readlink(f"/proc/self/fd/{fd}"))
                except OSError:
                    pass
            return out
        atexit.register(lambda: print("open" if any(p.endswith("ledger.db") for p in held()) else "closed"))
        from unillm import tracking
        tracking._default_client().ledger.records()
        assert any(p.endswith("ledger.db") for p in held())
    """)
    env = {**os.environ, "UNILLM_HOME": str(tmp_path), "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "closed"


def test_postgres_ledger_async_and_closed(fake: FakeProvider, pg_url: str) -> None:  # noqa: F811
    """On PostgreSQL too the async path writes through the store's threads; close() closes
    the connection pool itself (never left to `ConnectionPool.__del__`) and the threads."""
    client = Client(providers=fake.providers(), ledger=pg_url, budgets=BUDGET)

    async def main() -> None:
        await client.achat(model="gpt-4o-mini", messages=HI)
        await client.aclose()

    store = client.ledger.store
    pool = store._pool()
    asyncio.run(main())
    assert pool.closed
    assert store.io.closed and store.io.threads == 0
    assert _our_threads() == []


def test_redis_cache_async_round_trip(fake: FakeProvider, redis_fresh: str,  # noqa: F811
                                      tmp_path: Path) -> None:
    client = Client(providers=fake.providers(), ledger=f"sqlite:///{tmp_path}/l.db", cache=redis_fresh)

    async def main() -> list[bool]:
        first = await client.achat(model="gpt-4o-mini", messages=HI, temperature=0)
        second = await client.achat(model="gpt-4o-mini", messages=HI, temperature=0)
        await client.aclose()
        return [first.cached, second.cached]

    assert asyncio.run(main()) == [False, True]
    assert len(fake.requests) == 1
    assert _our_threads() == []
