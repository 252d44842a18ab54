"""``0018_calls_unindexed``: the ledger rows lose the indexes nothing unillm reads looks them
up by (``call_id``, ``fingerprint``), each a page more in every row's commit; rows written
before keep every field, and reads by time range still use ``started_at``'s index, on SQLite
and on PostgreSQL."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from unillm import Client
from unillm.ledger import CallRecord
from unillm.ledger.migrations import MIGRATIONS
from unillm.ledger.postgres import PostgresStore
from unillm.ledger.sqlite import SQLiteStore
from unillm.testing import FakeProvider, Reply
from unillm.types import Cost, Usage

from .servers import pg_url, postgres_server, postgres_url  # noqa: F401

HI = [{"role": "user", "content": "hi"}]


def _indexes(store: Any) -> list[str]:
    """The named indexes on the calls table (not the primary key's or the unique id's)."""
    with store.transaction() as tx:
        if tx.dialect.name == "sqlite":
            rows = tx.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'ledger_calls' AND type = 'index' "
                              "AND sql IS NOT NULL").fetchall()
        else:
            rows = tx.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'ledger_calls' "
                              "AND indexname NOT LIKE '%pkey' AND indexname NOT LIKE '%_id_key'").fetchall()
    return sorted(r[0] for r in rows)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_calls_keep_only_the_indexes_unillm_reads_and_old_rows_carry_over(
        backend: str, fake: FakeProvider, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    first17 = MIGRATIONS[:17]
    assert first17[-1].name == "0017_budget_flights_unindexed"
    old: Any
    if backend == "sqlite":
        url, old = f"sqlite:///{tmp_path / 'l.db'}", SQLiteStore(tmp_path / "l.db", migrations=first17)
    else:
        url = request.getfixturevalue("pg_url")
        old = PostgresStore(url, migrations=first17)
    assert _indexes(old) == ["ledger_calls_call_id", "ledger_calls_fingerprint", "ledger_calls_started_at"]
    old.record(CallRecord.from_parts(provider="openai", model="gpt-4o-mini", call_id="c1", fingerprint="f1",
                                     usage=Usage(input_tokens=5, output_tokens=10),
                                     cost=Cost(input_usd=Decimal("0.01"), output_usd=Decimal("0.02"))))
    old.close()
    fake.default = Reply(usage={"input_tokens": 5, "output_tokens": 10})
    client = Client(providers=fake.providers(), ledger=url)
    assert _indexes(client.ledger.store) == ["ledger_calls_started_at"]
    client.chat(model="gpt-4o-mini", messages=HI)
    first, second = sorted(client.ledger.records(), key=lambda r: r.call_id != "c1")
    assert (first.call_id, first.fingerprint, first.total_usd) == ("c1", "f1", Decimal("0.03"))
    assert second.call_id is not None and second.status == "ok"
    client.close()
