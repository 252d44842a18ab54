"""The PostgreSQL store against a real server: the store contract, parity with SQLite,
migrations and concurrency across processes, transactions, secrets kept out of errors."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import rec
from unillm import errors
from unillm.ledger import CallRecord, open_store
from unillm.ledger.migrations import MIGRATIONS, migrate
from unillm.ledger.postgres import PostgresStore, pyformat
from unillm.ledger.records import new_id
from unillm.types import Cost, Usage

from .servers import pg_url, postgres_server, postgres_url, workload  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(pg_url):
    s = open_store(pg_url)
    yield s
    s.close()


def run_processes(script: str, *argv_lists: list[str], timeout: float = 120) -> list[str]:
    """Run ``script`` in one Python process per argv list, all at once; their stdouts."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *argv],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for argv in argv_lists]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err
        outs.append(out)
    return outs


# ── the contract ─────────────────────────────────────────────────────────────

def test_record_round_trips_every_field(store) -> None:
    r = CallRecord.from_parts(
        provider="anthropic", model="claude-sonnet-4-5", requested_model="sonnet",
        usage=Usage(input_tokens=10, cache_read_tokens=2, cache_write_tokens=3, output_tokens=7,
                    reasoning_tokens=4, source="tiktoken"),
        cost=Cost(input_usd=Decimal("0.00003"), cache_read_usd=Decimal("0.0000006"),
                  cache_write_usd=Decimal("0.00001125"), output_usd=Decimal("0.000105"),
                  other_usd=Decimal("0.000000000000000001"), price_version="p@2025-01-01"),
        status="partial", latency_ms=123.456, ttft_ms=12.5, rule="cheap", shadow_rule="shadow",
        fallback_from="openai/gpt-4o", saved_usd=Decimal("0.5"), saved_reason="rule",
        fingerprint="abc", tags={"user": "u1", "naïve": "it's 100%?"}, section="agent:a/llm:b",
        stream=True, prompt="what's 5% of '?'", response="¼", ended_at=datetime.now(timezone.utc))
    store.record(r)
    (back,) = list(store.records())
    assert back == r
    assert back.total_usd == Decimal("0.000146850000000001")
    assert isinstance(store, PostgresStore)


def test_money_is_stored_as_sqlite_stores_it(store) -> None:
    store.record(rec(cost=Cost(input_usd=Decimal("1234567.123456789012345678"))))
    with store.transaction() as tx:
        row = tx.execute("SELECT input_usd, total_nano, total_atto FROM ledger_calls").fetchone()
    assert row == ("1234567.123456789012345678", 1234567123456789, 12345678)


def test_records_filters_pages_and_limits(store) -> None:
    t0 = datetime(2025, 3, 1, tzinfo=timezone.utc)
    recs = [rec(started_at=t0 + timedelta(seconds=i), tags={"user": f"u{i % 3}"},
                section="agent:a" if i % 2 else "agent:a/x") for i in range(2503)]
    store.record_many(recs)
    assert [r.id for r in store.records()] == [r.id for r in recs]  # across three pages
    assert len(list(store.records(limit=1001))) == 1001
    assert len(list(store.records(where={"user": "u1"}))) == 834
    assert len(list(store.records(where={"tag:user": ["u0", "u2"]}))) == 1669
    assert len(list(store.records(since=t0 + timedelta(seconds=2500)))) == 3
    assert len(list(store.records(until=t0 + timedelta(seconds=10), where={"section": "agent:a"}))) == 10


def test_tail_follows_new_records(store) -> None:
    assert store.last_cursor() == 0
    store.record_many([rec() for _ in range(5)])
    recs, cursor = store.tail(None, limit=3)
    assert len(recs) == 3
    more, cursor2 = store.tail(cursor)
    assert len(more) == 2 and cursor2 == store.last_cursor()
    assert store.tail(cursor2) == ([], cursor2)


# ── parity with SQLite ───────────────────────────────────────────────────────

SUMMARIES = [
    {}, {"by": ["model"]}, {"by": ["provider", "status"]}, {"by": ["day"]}, {"by": ["hour"]},
    {"by": ["week"]}, {"by": ["month", "model"]}, {"by": ["user"]}, {"by": ["tag:project", "week"]},
    {"by": ["section"]}, {"by": "model,day"},
    {"by": ["model"], "where": {"section": "agent:a"}},
    {"by": ["user"], "where": {"user": None}},
    {"by": ["model"], "where": {"status": ["error", "cache_hit"], "project": "bot"}},
    {"by": ["week"], "since": datetime(2025, 2, 1, tzinfo=timezone.utc),
     "until": datetime(2025, 2, 10, 12, tzinfo=timezone.utc)},
]


def test_summaries_equal_sqlite_on_the_same_records(store, tmp_path) -> None:
    recs = workload(400)
    sqlite = open_store(f"sqlite:///{tmp_path}/parity.db")
    sqlite.record_many(recs)
    for r in recs[:50]:  # one at a time too
        r2 = r.replace(id=new_id())  # a new call with the same figures
        sqlite.record(r2)
        store.record(r2)
    store.record_many(recs)
    for kw in SUMMARIES:
        assert store.summary(**kw) == sqlite.summary(**kw), kw
    by_id = lambda recs: sorted(recs, key=lambda r: r.id)  # ties in started_at
    assert by_id(store.records()) == by_id(sqlite.records())
    (total,) = store.summary()
    assert total["calls"] == 450 and total["cost_usd"] == sum(
        r.total_usd for r in sqlite.records() if r.total_usd is not None)
    weeks = {row["week"] for row in store.summary(by=["week"])}
    assert "2025-01-20" in weeks and "2025-01-27" in weeks  # Mondays
    sqlite.close()


# ── transactions ─────────────────────────────────────────────────────────────

def _make_counter(store) -> None:
    with store.transaction() as tx:
        tx.execute("CREATE TABLE IF NOT EXISTS t_counter (name TEXT PRIMARY KEY, n BIGINT)")
        tx.execute("INSERT INTO t_counter VALUES ('c', 0) ON CONFLICT (name) DO NOTHING")


def _counter(store) -> int:
    with store.transaction() as tx:
        return tx.execute("SELECT n FROM t_counter WHERE name = ?", ("c",)).fetchone()[0]


def test_transaction_commits_row_and_statements_together(store) -> None:
    _make_counter(store)
    with store.transaction() as tx:
        tx.execute("UPDATE t_counter SET n = n + ? WHERE name = ?", (5, "c"))
        tx.record(rec(model="a"))
        store.record(rec(model="b"))  # same thread: joins the open transaction
    assert _counter(store) == 5 and len(list(store.records())) == 2

    with pytest.raises(RuntimeError, match="boom"):
        with store.transaction() as tx:
            tx.execute("UPDATE t_counter SET n = n + 1 WHERE name = 'c'")
            tx.record(rec(model="lost"))
            with store.transaction() as inner:  # nested: the same transaction
                assert inner is tx
                store.record(rec(model="lost too"))
                assert len(list(store.records())) == 4  # visible inside
            raise RuntimeError("boom")
    assert _counter(store) == 5
    assert [r.model for r in store.records()] == ["a", "b"]


def test_other_threads_do_not_join_and_do_not_see_uncommitted_rows(store) -> None:
    seen = []
    with store.transaction() as tx:
        tx.record(rec(model="pending"))
        t = threading.Thread(target=lambda: (store.record(rec(model="other")),
                                             seen.append(len(list(store.records())))))
        t.start()
        t.join()
    assert seen == [1]  # the other thread committed its own row, without ours
    assert sorted(r.model for r in store.records()) == ["other", "pending"]


def test_for_update_serialises_read_then_write_across_processes(store, pg_url, tmp_path) -> None:
    _make_counter(store)
    assert store.dialect.for_update == " FOR UPDATE"
    script = """
        import os, sys, time
        from unillm.ledger import open_store
        store = open_store(sys.argv[1])
        suffix = store.dialect.for_update if sys.argv[3] == "lock" else ""
        while not os.path.exists(sys.argv[2]):  # start together
            time.sleep(0.005)
        for _ in range(25):
            with store.transaction() as tx:
                n = tx.execute("SELECT n FROM t_counter WHERE name = ?" + suffix, ("c",)).fetchone()[0]
                tx.execute("SELECT pg_sleep(0.002)")  # widen the race window
                tx.execute("UPDATE t_counter SET n = ? WHERE name = ?", (n + 1, "c"))
        store.close()
    """
    def race(mode: str) -> int:
        go = tmp_path / f"go-{mode}"
        threading.Timer(3.0, go.touch).start()
        run_processes(script, *([pg_url, str(go), mode] for _ in range(4)))
        n = _counter(store)
        with store.transaction() as tx:
            tx.execute("UPDATE t_counter SET n = 0")
        return n
    assert race("lock") == 100  # every read-then-write held the row lock: no lost update
    assert race("none") < 100   # the same race without the lock loses updates


# ── migrations and concurrency ───────────────────────────────────────────────

def test_migrations_recorded_once_and_not_rerun(store, pg_url) -> None:
    with store.transaction() as tx:
        names = [r[0] for r in tx.execute("SELECT name FROM unillm_migrations ORDER BY name")]
    assert names == [m.name for m in MIGRATIONS]
    again = open_store(pg_url)
    assert migrate(again._locked, again.dialect) == []
    again.close()


def test_a_database_made_by_the_oldest_schema_is_migrated(pg_url) -> None:
    old = PostgresStore(pg_url, migrations=MIGRATIONS[:1])
    with old.transaction() as tx:
        tx.execute("INSERT INTO ledger_calls (id, started_at, provider, model, status, total_nano, "
                   "total_atto) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   ("old1", "2025-01-02T03:04:05.000000Z", "openai", "gpt-4o", "ok", 1500, 7))
    old.close()
    new = open_store(pg_url)
    r2 = rec(prompt="p", response="q")
    new.record(r2)
    first, second = new.records()
    assert (first.id, first.total_usd, first.prompt) == ("old1", Decimal("0.000001500000000007"),
                                                         None)
    assert second == r2
    new.close()


def test_four_processes_open_a_fresh_database_and_write_at_once(pg_url) -> None:
    script = """
        import sys
        from unillm.ledger import CallRecord, open_store
        store = open_store(sys.argv[1])
        for i in range(50):
            store.record(CallRecord(provider="openai", model=f"m{sys.argv[2]}", input_tokens=i))
        print(len(list(store.records())))
        store.close()
    """
    run_processes(script, *([pg_url, str(i)] for i in range(4)))
    store = open_store(pg_url)
    rows = store.summary(by=["model"])
    assert [(r["model"], r["calls"], r["input_tokens"]) for r in rows] == [
        (f"m{i}", 50, sum(range(50))) for i in range(4)]
    with store.transaction() as tx:
        applied = tx.execute("SELECT name, COUNT(*) FROM unillm_migrations GROUP BY name").fetchall()
    assert sorted(applied) == [(m.name, 1) for m in MIGRATIONS]
    store.close()


def test_threads_share_one_store(store) -> None:
    def work(k: int) -> None:
        for i in range(40):
            store.record(rec(tags={"t": str(k)}, tin=i))
    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r["calls"] for r in store.summary(by=["t"])] == [40] * 8


def _child_records(store, q) -> None:
    store.record(rec(model="child"))
    q.put(len(list(store.records())))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_pool_and_leaves_the_parents_alone(store) -> None:
    store.record(rec(model="parent"))
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_records, args=(store, q))
    p.start()
    assert q.get(timeout=60) == 2
    p.join(60)
    assert p.exitcode == 0
    store.record(rec(model="parent again"))  # the parent's pooled connection still works
    assert sorted(r.model for r in store.records()) == ["child", "parent", "parent again"]


# ── URLs, errors and secrets ─────────────────────────────────────────────────

def test_url_options_and_schemes(pg_url) -> None:
    s = open_store(pg_url.replace("postgresql://", "postgresql+psycopg://") +
                   "?pool_max=3&pool_timeout=5&application_name=unillm-test")
    assert (s.pool_max, s.pool_timeout) == (3, 5.0)
    with s.transaction() as tx:
        assert tx.execute("SELECT current_setting('application_name')").fetchone()[0] == \
            "unillm-test"
    s.close()
    with pytest.raises(errors.ConfigError, match="pool_max must be a number"):
        open_store(pg_url + "?pool_max=lots")


def test_password_auth_and_no_password_in_errors_or_repr(postgres_server, postgres_url) -> None:
    import psycopg
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS secret_role")
        conn.execute("CREATE ROLE secret_role LOGIN SUPERUSER PASSWORD 'hunter2-Secret'")
    good = postgres_server.url(user="secret_role:hunter2-Secret")
    s = open_store(good)
    s.record(rec())
    assert "hunter2" not in repr(s) and "hunter2" not in s.url and len(list(s.records())) == 1
    s.close()
    with pytest.raises(errors.ConfigError) as exc:
        open_store(postgres_server.url(user="secret_role:wrong-Secret%2Fpw"))
    text = f"{exc.value} {exc.value.value!r} {exc.value.__cause__!r}"
    assert "password authentication failed" in text
    assert "wrong-Secret" not in text and "***" in text
    with pytest.raises(errors.ConfigError) as exc:  # nothing listens on port 1
        open_store("postgresql://bob:hunter2@127.0.0.1:1/x?connect_timeout=2")
    assert "hunter2" not in str(exc.value) and "Connection refused" in str(exc.value)


def test_a_lost_database_is_a_ledger_error_without_secrets(postgres_url) -> None:
    import psycopg
    url = postgres_url.rsplit("/", 1)[0] + "/doomed"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS doomed")
        conn.execute("CREATE DATABASE doomed")
    s = open_store(url)
    s.record(rec())
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE doomed WITH (FORCE)")
    with pytest.raises(errors.LedgerError, match="the ledger database postgresql://"):
        s.record(rec())
    s.close()


def test_placeholders_translate_outside_quotes_only() -> None:
    assert pyformat("SELECT '?', \"a?\" FROM t WHERE x = ? AND y LIKE '5%'") == \
        "SELECT '?', \"a?\" FROM t WHERE x = %s AND y LIKE '5%%'"


# ── many hosts, one budget ───────────────────────────────────────────────────

@pytest.mark.slow
def test_processes_with_their_own_clients_never_overshoot_a_shared_budget(fake, pg_url) -> None:
    """8 processes x 4 threads x 5 calls, separate Clients, one PostgreSQL ledger."""
    import json

    from unillm import Client
    from unillm.testing import Reply
    fake.default = Reply(usage={"input_tokens": 5, "output_tokens": 50})
    limit = Decimal("0.002")  # admits about 40% of the calls
    budget = [{"name": "shared", "limit_usd": str(limit)}]
    worker = str(Path(__file__).with_name("_budget_worker.py"))
    outs = run_processes(f"import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path({worker!r})",
                         *([worker, "stress", fake.base_url("openai"), pg_url, json.dumps(budget)]
                           for _ in range(8)), timeout=300)
    results = [json.loads(out.strip().splitlines()[-1]) for out in outs]
    admitted, denied = sum(r["ok"] for r in results), sum(r["denied"] for r in results)
    assert [e for r in results for e in r["errors"]] == []
    assert admitted + denied == 160 and 0 < admitted < 160
    one, two = Client(ledger=pg_url), Client(ledger=pg_url, budgets=budget)
    recs = list(one.ledger.records())
    spent = sum((r.total_usd for r in recs if r.status == "ok"), Decimal(0))
    assert spent <= limit                                           # zero overshoot
    assert sum(r.status == "ok" for r in recs) == admitted == len(fake.requests)
    assert sum(r.status == "budget_denied" for r in recs) == denied
    (status,) = two.budgets.status()
    assert status["spent_usd"] == spent and status["in_flight"] == 0
    by = ["model", "status", "day"]
    assert one.ledger.summary(by=by) == two.ledger.summary(by=by)  # two readers, one truth
    assert one.ledger.summary()[0]["cost_usd"] == spent
    one.close()
    two.close()


def test_the_pool_survives_a_server_restart(postgres_server, monkeypatch) -> None:
    from tests.servers import PostgresServer, create_database
    from unillm.ledger import postgres
    monkeypatch.setattr(postgres, "IDLE_CHECK_SECONDS", 0.0)  # as if the pool sat idle a while
    server = PostgresServer(postgres_server.bindir).start()
    try:
        s = open_store(create_database(server.url()))
        s.record(rec(model="before"))
        server.restart()  # every pooled connection is now dead
        s.record(rec(model="after"))
        with s.transaction() as tx:
            tx.record(rec(model="in a transaction"))
        assert [r["model"] for r in s.summary(by=["model"])] == ["after", "before",
                                                                 "in a transaction"]
        s.close()
    finally:
        server.stop()
