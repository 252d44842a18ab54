"""Cache-hit rows by group commit (`unillm.ledger.batch`): the caller never waits for their
INSERT, yet every read through the same client sees them, close and a normal exit write
them, and a crash (SIGKILL) loses hit rows only, never a paid one.

Where SQL runs is observed with SQLite's trace hook; threads with `threading.enumerate`;
crashes with real subprocesses killed by a real SIGKILL.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tests.servers import pg_url, postgres_server, postgres_url  # noqa: F401
from unillm import Client
from unillm.ledger.batch import THREAD_NAME
from unillm.testing import FakeProvider, Reply

HI = [{"role": "user", "content": "What is 2 + 2?"}]
USAGE = {"input_tokens": 1000, "output_tokens": 200}


def _client(fake: FakeProvider, tmp_path: Path, cache: str = "memory") -> Client:
    return Client(providers=fake.providers(), ledger=f"sqlite:///{tmp_path}/ledger.db", cache=cache)


def _statuses(path: Path) -> list[str]:
    """The rows another reader (a fresh connection on the file) sees."""
    with sqlite3.connect(path) as conn:
        return sorted(r[0] for r in conn.execute("SELECT status FROM ledger_calls"))


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME and t.is_alive()]


def _trace(client: Client) -> list[tuple[str, str]]:
    statements: list[tuple[str, str]] = []
    client.ledger.store._conn.set_trace_callback(
        lambda sql: statements.append((threading.current_thread().name, sql)))
    return statements


def test_a_hit_waits_for_no_insert_on_the_callers_thread(fake: FakeProvider, tmp_path: Path) -> None:
    fake.queue(Reply(text="4", usage=USAGE))
    client = _client(fake, tmp_path)
    client.chat(model="gpt-4o", messages=HI, temperature=0)  # the miss: its paid row, synchronously
    statements = _trace(client)
    again = client.chat(model="gpt-4o", messages=HI, temperature=0)
    assert again.cached
    mine = threading.current_thread().name
    assert not [sql for who, sql in statements if who == mine and "INSERT" in sql.upper()]
    client.close()
    assert [who for who, sql in statements if "INSERT" in sql.upper()] == [THREAD_NAME]  # by the writer


def test_a_hit_is_in_the_summary_right_after_the_call(fake: FakeProvider, tmp_path: Path) -> None:
    fake.queue(Reply(text="4", usage=USAGE))
    client = _client(fake, tmp_path)
    first = client.chat(model="gpt-4o", messages=HI, temperature=0)
    again = client.chat(model="gpt-4o", messages=HI, temperature=0)
    (row,) = client.ledger.summary()
    assert row["calls"] == 2 and row["cache_hits"] == 1 and row["saved_usd"] == first.cost.total_usd
    assert client.ledger.store.by_ids([again.ledger_id])[again.ledger_id].status == "cache_hit"
    client.close()


def test_every_read_of_the_store_sees_the_hit(fake: FakeProvider, tmp_path: Path) -> None:
    client = _client(fake, tmp_path)
    client.chat(model="gpt-4o", messages=HI, temperature=0)
    hit = client.chat(model="gpt-4o", messages=HI, temperature=0)
    assert [r.id for r in client.ledger.store.ranked("recent", limit=1)] == [hit.ledger_id]
    client.chat(model="gpt-4o", messages=HI, temperature=0)
    assert [r.status for r in client.ledger.store.tail()[0]] == ["ok", "cache_hit", "cache_hit"]
    client.chat(model="gpt-4o", messages=HI, temperature=0)
    assert sum(1 for r in client.ledger.records() if r.status == "cache_hit") == 3
    client.close()


def test_an_async_hit_is_in_the_summary_right_after_it(fake: FakeProvider, tmp_path: Path) -> None:
    client = _client(fake, tmp_path, cache=f"disk:///{tmp_path}/cache")

    async def main() -> list[dict[str, object]]:
        await client.achat(model="gpt-4o", messages=HI, temperature=0)
        await client.achat(model="gpt-4o", messages=HI, temperature=0)
        return client.ledger.summary(by="status")

    rows = asyncio.run(main())
    assert {r["status"]: r["calls"] for r in rows} == {"ok": 1, "cache_hit": 1}
    client.close()


def test_close_writes_the_waiting_hits_and_stops_the_thread(fake: FakeProvider, tmp_path: Path) -> None:
    before = set(_writer_threads())
    client = _client(fake, tmp_path)
    for _ in range(4):
        client.chat(model="gpt-4o", messages=HI, temperature=0)
    assert len(set(_writer_threads()) - before) == 1
    client.close()
    assert set(_writer_threads()) - before == set()
    assert _statuses(tmp_path / "ledger.db") == ["cache_hit"] * 3 + ["ok"]


def test_aclose_writes_the_waiting_hits(fake: FakeProvider, tmp_path: Path) -> None:
    client = _client(fake, tmp_path)

    async def main() -> None:
        for _ in range(3):
            await client.achat(model="gpt-4o", messages=HI, temperature=0)
        await client.aclose()

    asyncio.run(main())
    assert _statuses(tmp_path / "ledger.db") == ["cache_hit", "cache_hit", "ok"]


def test_a_client_dropped_unclosed_writes_its_hits_and_stops_its_thread(fake: FakeProvider,
                                                                         tmp_path: Path) -> None:
    before = set(_writer_threads())
    client = _client(fake, tmp_path)
    client.chat(model="gpt-4o", messages=HI, temperature=0)
    client.chat(model="gpt-4o", messages=HI, temperature=0)
    (thread,) = set(_writer_threads()) - before
    del client
    gc.collect()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert _statuses(tmp_path / "ledger.db") == ["cache_hit", "ok"]


_SCRIPT = """
import os, sys
from unillm import Client
client = Client(providers={providers!r}, ledger="sqlite:///{db}", cache="memory")
for i in range(5):  # five paid calls, each followed by three hits of it
    messages = [{{"role": "user", "content": f"question {{i}}"}}]
    for _ in range(4):
        client.chat(model="gpt-4o-mini", messages=messages, temperature=0)
print("done", flush=True)
if sys.argv[1] == "wait":
    sys.stdin.read()  # until killed
"""


def _run(fake: FakeProvider, tmp_path: Path, mode: str) -> subprocess.Popen[str]:
    script = _SCRIPT.format(providers=fake.providers(), db=tmp_path / "ledger.db")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "UNILLM_HOME": str(tmp_path)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), mode], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_normal_exit_writes_the_waiting_hits(fake: FakeProvider, tmp_path: Path) -> None:
    proc = _run(fake, tmp_path, "exit")  # never closes its client: atexit does
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.strip() == "done"
    assert _statuses(tmp_path / "ledger.db") == ["cache_hit"] * 15 + ["ok"] * 5


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_loses_hit_rows_only_never_a_paid_one(fake: FakeProvider, tmp_path: Path) -> None:
    proc = _run(fake, tmp_path, "wait")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "done"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    statuses = _statuses(tmp_path / "ledger.db")
    assert statuses.count("ok") == 5                        # every paid call is there
    assert set(statuses) <= {"ok", "cache_hit"} and statuses.count("cache_hit") <= 15


def test_a_row_given_twice_is_stored_once_and_blocks_nothing(tmp_path: Path) -> None:
    """A batch retried after its commit went through (or a row handed over twice) must not
    fail on the row's unique id forever and hold every later hit back."""
    from unillm.ledger import CallRecord, open_store
    from unillm.ledger.batch import later
    store = open_store(f"sqlite:///{tmp_path}/ledger.db")
    first = CallRecord(provider="openai", model="gpt-4o", status="cache_hit")
    later(store, first)
    assert len(list(store.records())) == 1
    later(store, first)
    later(store, CallRecord(provider="openai", model="gpt-4o", status="cache_hit"))
    assert len(list(store.records())) == 2 and store.hits.waiting == 0
    store.close()


def test_the_hit_row_is_field_for_field_what_record_for_builds(fake: FakeProvider, tmp_path: Path) -> None:
    """`hit_record` (the hit path's fast row) and the general `record_for` agree on every field
    but the row's own id and clock readings: a field record_for learns is one hit_record must."""
    from unillm import sections
    from unillm.cache.codec import HIT_COST
    from unillm.calls import record_for
    from unillm.ledger.batch import hit_record
    from unillm.ledger.records import FIELDS

    fake.queue(Reply(text="4", usage=USAGE))
    client = Client(providers=fake.providers(), ledger=f"sqlite:///{tmp_path}/ledger.db", cache="memory",
                    tags={"team": "a"})
    client.chat("gpt-4o", HI, temperature=0)  # the miss that stores the answer
    with sections.Section("eval"):
        call = client._prepare("gpt-4o", HI, {"temperature": 0}, {"user": "u1"}, True)
    entry = client._cache_get(call)
    assert entry is not None and entry.cost_usd
    call.request.drop_params = True
    call.request.unsupported("openai", "seed")  # as an adapter that could not honour it does
    resp = entry.response.model_copy(update={"cached": True, "cost": HIT_COST, "cache_status": "hit"})
    fast = hit_record(call, resp, entry.cost_usd, "f" * 32)
    slow = record_for(call, "cache_hit", cost=resp.cost, saved=entry.cost_usd, saved_reason="cache",
                      response=resp, model=resp.model)
    differ = {f for f in FIELDS if (getattr(fast, f), type(getattr(fast, f))) !=
              (getattr(slow, f), type(getattr(slow, f)))}
    assert differ == {"id", "ended_at", "latency_ms"}
    assert fast.id == "f" * 32 and fast.status == "cache_hit" and fast.saved_usd == entry.cost_usd
    assert fast.section == "eval" and fast.tags == {"team": "a", "user": "u1"} and fast.stream
    assert fast.dropped_params == ("seed",)
    fast.tags["x"] = "y"  # each row has its own dicts
    assert "x" not in hit_record(call, resp, None).tags and hit_record(call, resp, None).units == {}
    client.close()


def test_a_hit_row_keeps_the_prompt_and_answer_with_log_content(fake: FakeProvider, tmp_path: Path) -> None:
    fake.queue(Reply(text="4", usage=USAGE))
    client = Client(providers=fake.providers(), ledger=f"sqlite:///{tmp_path}/ledger.db", cache="memory",
                    log_content=True)
    client.chat("gpt-4o", HI, temperature=0)
    hit = client.chat("gpt-4o", HI, temperature=0)
    (row,) = [r for r in client.ledger.records() if r.status == "cache_hit"]
    assert (row.id, row.prompt, row.response) == (hit.ledger_id, "user: What is 2 + 2?", "4")
    client.close()


def test_a_full_batch_is_committed_without_waiting_for_the_interval(tmp_path: Path) -> None:
    """`max_rows` waiting rows wake the writer at once (the interval here is a minute), and
    rows added past it while it commits are not lost or held for the interval either."""
    import time

    from unillm.ledger import CallRecord, open_store
    from unillm.ledger.batch import HitWriter
    store = open_store(f"sqlite:///{tmp_path}/ledger.db")
    writer = HitWriter(store, interval=60.0, max_rows=5)
    for _ in range(12):
        writer.add(CallRecord(provider="openai", model="gpt-4o", status="cache_hit"))
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        deadline = time.monotonic() + 20
        while conn.execute("SELECT count(*) FROM ledger_calls").fetchone()[0] < 10:
            assert time.monotonic() < deadline, "a full batch waited for the interval"
            time.sleep(0.01)
    assert writer.waiting <= 2
    writer.close()
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        assert conn.execute("SELECT count(*) FROM ledger_calls").fetchone()[0] == 12
    store.close()



@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_read_inside_a_transaction_that_rolls_back_loses_no_hit(backend: str, fake: FakeProvider,
                                                                  tmp_path: Path,
                                                                  request: pytest.FixtureRequest) -> None:
    """A read commits the waiting hits first, but not into a transaction the reader has open:
    they would be rolled back with it, gone from the writer's list and from the ledger."""
    from unillm.ledger import open_store
    url = f"sqlite:///{tmp_path}/ledger.db" if backend == "sqlite" else request.getfixturevalue("pg_url")
    client = Client(providers=fake.providers(), ledger=url, cache="memory")
    client.chat(model="gpt-4o", messages=HI, temperature=0)
    client.chat(model="gpt-4o", messages=HI, temperature=0)
    store = client.ledger.store
    assert store.hits is not None and store.hits.waiting == 1
    with pytest.raises(RuntimeError), store.transaction():
        store.tail()  # a read in the open transaction
        raise RuntimeError("the caller's transaction rolls back")
    client.close()
    again = open_store(url)
    try:
        assert sorted(r.status for r in again.tail()[0]) == ["cache_hit", "ok"]
    finally:
        again.close()
