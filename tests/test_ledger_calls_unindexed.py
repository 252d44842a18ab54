"""``0018_calls_unindexed``: the ledger rows lose the indexes nothing unillm reads looks them
up by (``call_id``, ``fingerprint``), each a page more in every row's commit; rows written
before keep every field, and reads by time range still use ``started_at``'s index, on SQLite
and on PostgreSQL."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from unillm import Client
from unillm.ledger import CallRecord
from unillm.testing import FakeProvider, Reply
from unillm.types import Cost, Usage

from .migrating import indexes, store_until
from .servers import pg_url, postgres_server, postgres_url  # noqa: F401

HI = [{"role": "user", "content": "hi"}]
CALLS = "ledger_calls"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_calls_keep_only_the_indexes_unillm_reads_and_old_rows_carry_over(
        backend: str, fake: FakeProvider, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url, old = store_until("0017_budget_flights_unindexed", backend, tmp_path, request)
    assert indexes(old, CALLS) == ["ledger_calls_call_id", "ledger_calls_fingerprint", "ledger_calls_started_at"]
    old.record(CallRecord.from_parts(provider="openai", model="gpt-4o-mini", call_id="c1", fingerprint="f1",
                                     usage=Usage(input_tokens=5, output_tokens=10),
                                     cost=Cost(input_usd=Decimal("0.01"), output_usd=Decimal("0.02"))))
    old.close()
    fake.default = Reply(usage={"input_tokens": 5, "output_tokens": 10})
    client = Client(providers=fake.providers(), ledger=url)
    assert indexes(client.ledger.store, CALLS) == ["ledger_calls_started_at"]
    client.chat(model="gpt-4o-mini", messages=HI)
    first, second = sorted(client.ledger.records(), key=lambda r: r.call_id != "c1")
    assert (first.call_id, first.fingerprint, first.total_usd) == ("c1", "f1", Decimal("0.03"))
    assert second.call_id is not None and second.status == "ok"
    client.close()
