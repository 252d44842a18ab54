"""The reads analytics and ``unillm ledger migrate`` need are the store's (no SQL above it),
the same on SQLite and PostgreSQL: ranked (dearest, newest), by_ids, copy_in."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from tests.conftest import rec
from unillm.ledger import NullStore
from unillm.types import Cost

from .servers import any_store, pg_url, postgres_server, postgres_url  # noqa: F401

T0 = datetime(2026, 5, 1, 12, tzinfo=timezone.utc)


def _some(n: int = 5) -> list:
    return [rec(started_at=T0 + timedelta(minutes=i), tags={"user": "ann" if i % 2 else "bob"},
                cost=Cost(output_usd=Decimal(f"0.{i}00000000000000001"))) for i in range(n)]


def test_ranked_by_cost_and_by_recency_with_filters(any_store) -> None:
    recs = _some()
    any_store.record_many(recs)
    dearest = any_store.ranked("cost", limit=2)
    assert [r.id for r in dearest] == [recs[4].id, recs[3].id]
    assert dearest[0] == recs[4]  # the whole record, money exact
    newest = any_store.ranked("recent", since=T0 + timedelta(minutes=1), where={"user": "ann"}, limit=10)
    assert [r.id for r in newest] == [recs[3].id, recs[1].id]
    assert any_store.ranked("recent", until=T0 + timedelta(minutes=1), limit=10) == [recs[0]]  # until: exclusive


def test_by_ids_reads_back_exactly_what_is_stored(any_store) -> None:
    recs = _some(3)
    any_store.record_many(recs[:2])
    assert any_store.by_ids([r.id for r in recs]) == {r.id: r for r in recs[:2]}
    assert any_store.by_ids([]) == {}


def test_copy_in_skips_the_ids_already_stored_in_one_go(any_store) -> None:
    recs = _some(4)
    any_store.record(recs[0])
    assert any_store.copy_in(recs) == 3
    assert any_store.copy_in(recs) == 0
    assert sorted(r.id for r in any_store.records()) == sorted(r.id for r in recs)


def test_the_null_store_answers_every_read_with_nothing() -> None:
    store = NullStore()
    assert store.ranked("cost") == [] and store.by_ids(["x"]) == {}
