"""Ledger arithmetic cannot overflow: per-call bounds on what is recorded, and summaries that
stay exact over 10^6 calls of 10^10 tokens each on the dearest model (SQLite and PostgreSQL)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from unillm import errors
from unillm.ledger import CallRecord, Ledger, open_store
from unillm.ledger.facade import MAX_TOKENS
from unillm.ledger.rows import COLUMNS, TABLE
from unillm.pricing import PriceBook
from unillm.types import Usage

from .servers import pg_url, postgres_server, postgres_url  # noqa: F401

ROWS = 10**6
BUCKETS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
           "output_tokens", "reasoning_tokens")


def dearest(book: PriceBook) -> tuple[str, str]:
    """The (provider, model) whose call at the bounds costs the most, tiers included."""
    usage = Usage(**{b: MAX_TOKENS for b in BUCKETS})
    best = max((pm for pm in book.models() if pm.name != "*"),
               key=lambda pm: pm.current.cost(usage).total_usd)
    return best.provider, best.name


def record_at_the_bounds(ledger: Ledger) -> CallRecord:
    provider, model = dearest(ledger.pricebook)
    return ledger.record(provider=provider, model=model, **{b: MAX_TOKENS for b in BUCKETS})


def copy_rows(store, template_id: str, copies: int, series: str) -> None:
    """``copies`` more rows like the template, by one INSERT ... SELECT (fast, no Python loop)."""
    cols = [c for c in COLUMNS]
    picked = ", ".join("id || '-' || CAST(n AS TEXT)" if c == "id" else c for c in cols)
    with store.transaction() as tx:
        tx.execute(f"INSERT INTO {TABLE} ({', '.join(cols)}) SELECT {picked} FROM {TABLE}, {series} "
                   f"WHERE id = ?", (template_id,))


def assert_exact(ledger: Ledger, one: CallRecord) -> None:
    (row,) = ledger.summary(since="2000-01-01")
    assert row["calls"] == ROWS
    assert row["cost_usd"] == one.total_usd * ROWS
    for bucket in ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens",
                   "reasoning_tokens"):
        assert row[bucket] == MAX_TOKENS * ROWS
    (by_model,) = ledger.summary(by=["model", "day", "user"], since="2000-01-01")
    assert by_model["cost_usd"] == one.total_usd * ROWS and by_model["calls"] == ROWS


# ── bounds on what one call may record ───────────────────────────────────────

@pytest.mark.parametrize("bucket", BUCKETS)
def test_a_count_past_the_bound_is_a_clear_error_naming_the_field(tmp_path, bucket):
    ledger = Ledger(open_store(f"sqlite:///{tmp_path}/l.db"), PriceBook.load())
    counts = {"input_tokens": 1, "output_tokens": 1}
    if bucket == "cache_write_1h_tokens":
        counts["cache_write_tokens"] = 10**14
    if bucket == "reasoning_tokens":
        counts["output_tokens"] = 10**14
    counts[bucket] = 10**14
    with pytest.raises(errors.InvalidRequestError) as info:
        ledger.record(provider="openai", model="gpt-4o", **counts)
    assert info.value.param in (bucket, "cache_write_tokens", "output_tokens")
    assert "at most 10,000,000,000" in str(info.value)
    assert list(ledger.records(since="2000-01-01")) == []


def test_an_amount_past_64_bits_is_a_ledger_error_not_an_overflow_error(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/l.db")
    huge = CallRecord(provider="openai", model="gpt-4o", total_usd=Decimal(10**12))  # 10^21 nano
    with pytest.raises(errors.LedgerError, match="64-bit"):
        store.record(huge)
    with pytest.raises(errors.LedgerError, match="64-bit"):
        store.record_many([huge])
    with pytest.raises(errors.LedgerError, match="64-bit"), store.transaction() as tx:
        tx.record(huge)


def test_a_call_at_the_bounds_is_recorded_and_priced_exactly(tmp_path):
    ledger = Ledger(open_store(f"sqlite:///{tmp_path}/l.db"), PriceBook.load())
    one = record_at_the_bounds(ledger)
    assert one.total_usd > 1_000_000  # millions of dollars: the dearest model, 10^10 of each
    (back,) = ledger.records(since="2000-01-01")
    assert back.total_usd == one.total_usd and back.output_tokens == MAX_TOKENS


# ── 10^6 calls at the bounds summarize exactly ───────────────────────────────

@pytest.mark.slow  # ~40 s on a shared 2-core machine: writing a million rows
def test_a_million_calls_at_the_bounds_summarize_exactly_on_sqlite(tmp_path):
    ledger = Ledger(open_store(f"sqlite:///{tmp_path}/l.db"), PriceBook.load())
    one = record_at_the_bounds(ledger)
    # SQLite has no generate_series by default: a recursive CTE counts 1..ROWS-1
    store = ledger.store
    cols = ", ".join(COLUMNS)
    picked = ", ".join("id || '-' || n" if c == "id" else c for c in COLUMNS)
    with store.transaction() as tx:
        tx.execute(f"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ?) "
                   f"INSERT INTO {TABLE} ({cols}) SELECT {picked} FROM {TABLE}, s WHERE id = ?",
                   (ROWS - 1, one.id))
    assert_exact(ledger, one)  # sharded (a big file ledger) ...
    store.shard_min = 10**9
    assert_exact(ledger, one)  # ... and in one query


@pytest.mark.slow
def test_a_million_calls_at_the_bounds_summarize_exactly_on_postgres(pg_url):
    ledger = Ledger(open_store(pg_url), PriceBook.load())
    try:
        one = record_at_the_bounds(ledger)
        copy_rows(ledger.store, one.id, ROWS - 1, f"generate_series(1, {ROWS - 1}) AS s(n)")
        assert_exact(ledger, one)
    finally:
        ledger.close()
