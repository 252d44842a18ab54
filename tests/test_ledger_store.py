"""The SQLite store: round trips, URLs, migrations, threads, processes, SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import rec
from unillm import errors
from unillm.ledger import CallRecord, NullStore, new_id, open_store
from unillm.ledger.migrations import MIGRATIONS, migrate
from unillm.ledger.sqlite import SQLiteStore
from unillm.types import Cost, Usage

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/ledger.db")
    yield s
    s.close()


def test_record_round_trips_every_field(store):
    r = CallRecord.from_parts(
        provider="anthropic", model="claude-sonnet-4-5", requested_model="sonnet",
        usage=Usage(input_tokens=10, cache_read_tokens=2, cache_write_tokens=3, output_tokens=7,
                    reasoning_tokens=4, source="tiktoken"),
        cost=Cost(input_usd=Decimal("0.00003"), cache_read_usd=Decimal("0.0000006"),
                  cache_write_usd=Decimal("0.00001125"), output_usd=Decimal("0.000105"),
                  other_usd=Decimal("0.01"), price_version="pricing.toml@2025-01-01"),
        status="partial", latency_ms=123.456, ttft_ms=12.5, rule="cheap", shadow_rule="shadow",
        fallback_from="openai/gpt-4o", error_class=None, saved_usd=Decimal("0.5"),
        saved_reason="rule", fingerprint="abc", tags={"user": "u1", "project": "p"},
        section="agent:a/llm:b", stream=True, prompt="hi", response="hello",
        ended_at=datetime.now(timezone.utc))
    store.record(r)
    (back,) = list(store.records())
    assert back == r
    assert back.total_usd == Decimal("0.01014685")


def test_ids_sort_by_creation_time():
    ids = [new_id() for _ in range(5000)]
    assert ids == sorted(ids) and len(set(ids)) == 5000
    old = new_id(now_ms=1_000)
    assert old < ids[0]


def test_records_filters_and_pages(store):
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    store.record_many([rec(started_at=t0 + timedelta(minutes=i), model=f"m{i % 3}")
                       for i in range(2500)])
    assert len(list(store.records())) == 2500
    got = list(store.records(since=t0 + timedelta(minutes=100), until=t0 + timedelta(minutes=200),
                             where={"model": ["m0", "m1"]}))
    assert len(got) == 67 and all(r.model in ("m0", "m1") for r in got)
    assert [r.started_at for r in got] == sorted(r.started_at for r in got)
    assert len(list(store.records(limit=1234))) == 1234


def test_open_store_urls(tmp_path, monkeypatch):
    default = open_store(None)
    assert isinstance(default, SQLiteStore)
    assert Path(default.path) == Path(os.environ["UNILLM_HOME"]) / "ledger.db"
    default.close()
    assert isinstance(open_store("off"), NullStore)
    mem = open_store("sqlite:///:memory:")
    mem.record(rec())
    assert len(list(mem.records())) == 1
    with pytest.raises(errors.ConfigError, match="cannot open the ledger database") as exc:
        open_store("postgresql://bob:hunter2@127.0.0.1:1/ledger?connect_timeout=2")
    assert "hunter2" not in str(exc.value) and "hunter2" not in repr(exc.value.value)
    with pytest.raises(errors.ConfigError, match="'mysql'") as exc:
        open_store("mysql://bob:hunter2@db/x")
    assert "hunter2" not in str(exc.value)
    with pytest.raises(errors.ConfigError, match="three slashes"):
        open_store("sqlite://relative.db")
    with pytest.raises(errors.ConfigError, match="unknown SQLite ledger option"):
        open_store(f"sqlite:///{tmp_path}/x.db?journal=off")


def test_wal_and_synchronous(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/f.db?synchronous=full")
    assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    s.close()


def test_null_store_records_nothing():
    s = NullStore()
    s.record(rec())
    assert list(s.records()) == [] and s.summary(["model"]) == []


def test_migrates_a_database_made_with_the_first_schema(tmp_path):
    path = tmp_path / "old.db"
    old = SQLiteStore(path, migrations=MIGRATIONS[:1])
    old._conn.execute(
        "INSERT INTO ledger_calls (id, started_at, provider, model, status, input_tokens, "
        "output_tokens, total_nano, total_atto, tags) VALUES "
        "('0001', '2025-01-01T00:00:00.000000Z', 'openai', 'gpt-4o', 'ok', 5, 6, 1, 500, "
        "'{\"user\":\"u\"}')")
    cols = {r[1] for r in old._conn.execute("PRAGMA table_info(ledger_calls)")}
    assert "prompt" not in cols
    old.close()

    new = SQLiteStore(path)
    applied = [r[0] for r in new._conn.execute("SELECT name FROM unillm_migrations ORDER BY name")]
    assert applied == [m.name for m in MIGRATIONS]
    (kept,) = list(new.records())
    assert (kept.id, kept.input_tokens, kept.output_tokens, kept.tags) == ("0001", 5, 6, {"user": "u"})
    assert kept.total_usd == Decimal("0.0000000010000005") and kept.prompt is None
    new.record(rec(prompt="p"))
    assert [r.prompt for r in new.records()] == [None, "p"]
    new.close()


def test_a_failing_migration_leaves_nothing_behind(tmp_path):
    from unillm.ledger.migrations import Migration

    def broken(tx, d):
        tx.execute("CREATE TABLE half (x)")
        raise RuntimeError("boom")

    s = SQLiteStore(tmp_path / "m.db")
    with pytest.raises(RuntimeError):
        migrate(s.transaction, s.dialect, [*MIGRATIONS, Migration("9999_broken", broken)])
    tables = {r[0] for r in s._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "half" not in tables
    assert "9999_broken" not in {r[0] for r in s._conn.execute("SELECT name FROM unillm_migrations")}


def test_transaction_commits_ledger_row_with_other_writes(store):
    with store.transaction() as tx:
        tx.execute("CREATE TABLE IF NOT EXISTS counters (k TEXT PRIMARY KEY, v INTEGER)")
        tx.execute("INSERT INTO counters VALUES ('spent', 1)")
        tx.record(rec(id="in-tx"))
    with pytest.raises(ZeroDivisionError):
        with store.transaction() as tx:
            tx.execute("UPDATE counters SET v = 99")
            tx.record(rec(id="rolled-back"))
            1 / 0
    assert [r.id for r in store.records()] == ["in-tx"]
    assert store._conn.execute("SELECT v FROM counters").fetchone()[0] == 1


def test_threads_share_a_store(store):
    def work(t):
        for i in range(200):
            store.record(rec(id=f"t{t}-{i}"))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.id for r in store.records()}) == 1600


async def test_asyncio_tasks_via_to_thread(store):
    await asyncio.gather(*(asyncio.to_thread(store.record, rec(id=f"a{i}")) for i in range(300)))
    assert len(list(store.records())) == 300


_WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from unillm.ledger import CallRecord, open_store
    store = open_store(sys.argv[1])
    tag, n = sys.argv[2], int(sys.argv[3])
    for i in range(n):
        r = CallRecord(provider="openai", model="gpt-4o", id=f"{{tag}}-{{i}}",
                       tags={{"writer": tag}})
        store.record(r)
        print(r.id, flush=True)
""")


def _writer(tmp_path: Path) -> Path:
    script = tmp_path / "writer.py"
    script.write_text(_WRITER.format(root=str(ROOT)))
    return script


def test_four_processes_write_at_once(tmp_path):
    url = f"sqlite:///{tmp_path}/shared.db"  # fresh: all four also race to migrate it
    script = _writer(tmp_path)
    procs = [subprocess.Popen([sys.executable, str(script), url, f"p{k}", "150"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for k in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    store = open_store(url)
    ids = {r.id for r in store.records()}
    assert ids == {f"p{k}-{i}" for k in range(4) for i in range(150)}
    assert {r["writer"]: r["calls"] for r in store.summary(["writer"])} == \
        {f"p{k}": 150 for k in range(4)}


def test_sigkill_loses_no_acknowledged_record(tmp_path):
    url = f"sqlite:///{tmp_path}/crash.db"
    proc = subprocess.Popen([sys.executable, str(_writer(tmp_path)), url, "k", "1000000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    acked: list[str] = []
    deadline = time.monotonic() + 60
    while len(acked) < 300 and time.monotonic() < deadline:
        acked.append(proc.stdout.readline().decode().strip())
    proc.send_signal(signal.SIGKILL)
    rest, _ = proc.communicate(timeout=30)
    acked += [line for line in rest.decode().splitlines() if line.strip()]
    acked = [a for a in acked if a]
    assert proc.returncode == -signal.SIGKILL and len(acked) >= 300
    stored = {r.id for r in open_store(url).records()}
    assert set(acked) <= stored


def test_no_api_key_reaches_the_database(tmp_path):
    """A real call with a key through the SDK; the key's bytes are nowhere in the file."""
    openai = pytest.importorskip("openai")
    from unillm.testing import FakeProvider
    key = "sk-test-SECRET-0123456789abcdef"
    with FakeProvider(api_key=key) as fake:
        client = openai.OpenAI(api_key=key, base_url=fake.url + "/v1")
        resp = client.chat.completions.create(model="gpt-4o-mini",
                                              messages=[{"role": "user", "content": "hi"}])
    store = open_store(f"sqlite:///{tmp_path}/k.db")
    store.record(CallRecord.from_parts(
        provider="openai", model=resp.model,
        usage=Usage(input_tokens=resp.usage.prompt_tokens, output_tokens=resp.usage.completion_tokens),
        prompt="hi", response=resp.choices[0].message.content, tags={"user": "u"}))
    store.close()
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("k.db*"))
    assert b"gpt-4o-mini" in blob or resp.model.encode() in blob
    assert key.encode() not in blob and b"SECRET" not in blob


def test_busy_database_waits_instead_of_failing(tmp_path):
    path = tmp_path / "busy.db"
    s = SQLiteStore(path, timeout=10)
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    t = threading.Timer(0.3, lambda: blocker.execute("COMMIT"))
    t.start()
    s.record(rec(id="after-wait"))
    t.join()
    assert [r.id for r in s.records()] == ["after-wait"]
