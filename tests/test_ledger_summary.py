"""Summaries checked against sums computed independently, in Decimal, from the records."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from unillm import errors
from unillm.ledger import CallRecord, open_store
from unillm.types import Cost, Usage

T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)  # a Saturday
PRICES = {"gpt-4o": ("2.5", "10"), "claude-sonnet-4-5": ("3", "15"), "gemini-2.5-flash": ("0.3", "2.5"),
          "command-r-plus": ("2.5", "10")}
PROVIDER = {"gpt-4o": "openai", "claude-sonnet-4-5": "anthropic", "gemini-2.5-flash": "google",
            "command-r-plus": "cohere"}


def workload(n: int = 1500, seed: int = 7) -> list[CallRecord]:
    """Several vendors, errors, cache hits, denials, unpriced calls, sections, tags."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        model = rng.choice(list(PRICES))
        status = rng.choices(["ok", "error", "cache_hit", "budget_denied", "unpriced"],
                             [80, 5, 10, 2, 3])[0]
        usage = Usage(input_tokens=rng.randint(1, 9000), cache_read_tokens=rng.randint(0, 500),
                      output_tokens=rng.randint(1, 2000)) if status in ("ok", "unpriced") else Usage()
        pin, pout = (Decimal(p) / 1_000_000 for p in PRICES[model])
        cost = None
        if status == "ok":
            cost = Cost(input_usd=pin * usage.input_tokens, cache_read_usd=pin / 10 * usage.cache_read_tokens,
                        output_usd=pout * usage.output_tokens)
        elif status == "cache_hit":
            cost = Cost()
        out.append(CallRecord.from_parts(
            provider=PROVIDER[model], model=model, usage=usage, cost=cost, status=status,
            started_at=T0 + timedelta(seconds=rng.randint(0, 20 * 86400)),
            latency_ms=None if status == "budget_denied" else round(rng.lognormvariate(6, 0.7), 3),
            saved_usd=Decimal(rng.randint(1, 999)) / 10**7 if status == "cache_hit" else Decimal(0),
            tags={"user": f"u{rng.randint(1, 5)}", "project": rng.choice(["bot", "etl"])},
            section=rng.choice([None, "agent:research", "agent:research/llm:query", "agent:other"])))
    return out


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    recs = workload()
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('s')}/s.db")
    for r in recs[:200]:
        store.record(r)
    store.record_many(recs[200:])
    yield store, recs
    store.close()


def expected(recs, key):
    groups = defaultdict(list)
    for r in recs:
        groups[key(r)].append(r)
    return groups


def nearest_rank(values, p):
    values = sorted(values)
    return values[max(1, math.ceil(p / 100 * len(values))) - 1] if values else None


def check_row(row, recs):
    assert row["calls"] == len(recs)
    assert row["errors"] == sum(r.status == "error" for r in recs)
    assert row["cache_hits"] == sum(r.status == "cache_hit" for r in recs)
    assert row["denied"] == sum(r.status == "budget_denied" for r in recs)
    assert row["unpriced"] == sum(r.status == "unpriced" for r in recs)
    for t in ("input_tokens", "cache_read_tokens", "output_tokens"):
        assert row[t] == sum(getattr(r, t) for r in recs)
    assert row["cost_usd"] == sum((r.total_usd for r in recs if r.total_usd is not None), Decimal(0))
    assert row["saved_usd"] == sum((r.saved_usd for r in recs), Decimal(0))
    lat = [r.latency_ms for r in recs if r.latency_ms is not None]
    for p in (50, 95):
        exact = nearest_rank(lat, p)
        assert row[f"p{p}_latency_ms"] == exact


def test_ungrouped_total_equals_sum_of_every_cost(loaded):
    store, recs = loaded
    (row,) = store.summary([])
    check_row(row, recs)
    assert isinstance(row["cost_usd"], Decimal)


@pytest.mark.parametrize("by, key", [
    (["model"], lambda r: (r.model,)),
    (["provider", "status"], lambda r: (r.provider, r.status)),
    (["day"], lambda r: (r.started_at.strftime("%Y-%m-%d"),)),
    (["hour"], lambda r: (r.started_at.strftime("%Y-%m-%dT%H"),)),
    (["month"], lambda r: (r.started_at.strftime("%Y-%m"),)),
    (["week"], lambda r: ((r.started_at - timedelta(days=r.started_at.weekday())).strftime("%Y-%m-%d"),)),
    (["tag:user", "project"], lambda r: (r.tags["user"], r.tags["project"])),
    (["section"], lambda r: (r.section,)),
])
def test_grouped_rows_match_independent_sums(loaded, by, key):
    store, recs = loaded
    rows = store.summary(by)
    groups = expected(recs, key)
    assert len(rows) == len(groups)
    for row in rows:
        check_row(row, groups[tuple(row[k] for k in by)])


def test_filters_and_time_range(loaded):
    store, recs = loaded
    since, until = T0 + timedelta(days=3), T0 + timedelta(days=9, hours=5)
    rows = store.summary(["model"], since=since, until=until,
                         where={"section": "agent:research", "user": ["u1", "u2"]})
    want = [r for r in recs if since <= r.started_at < until
            and r.section in ("agent:research", "agent:research/llm:query")
            and r.tags["user"] in ("u1", "u2")]
    groups = expected(want, lambda r: (r.model,))
    assert {row["model"] for row in rows} == {k[0] for k in groups}
    for row in rows:
        check_row(row, groups[(row["model"],)])
    none_rows = store.summary([], where={"section": None})
    check_row(none_rows[0], [r for r in recs if r.section is None])


def test_empty_and_bad_dimensions(loaded):
    store, _ = loaded
    assert store.summary(["model"], since=datetime(2030, 1, 1, tzinfo=timezone.utc)) == []
    with pytest.raises(errors.InvalidRequestError) as exc:
        store.summary(['bad"name'])
    assert exc.value.param == "by"
    with pytest.raises(errors.InvalidRequestError) as exc:
        store.summary(["model"], where={"model": 3.5})
    assert exc.value.param == "where.model"


def test_money_beyond_nanodollars_is_exact(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/m.db")
    amounts = [Decimal("0.000000000000000001"), Decimal("1234567.123456789012345678"),
               Decimal("0.0000000375"), Decimal("-0.5")]
    for a in amounts:
        store.record(CallRecord(provider="p", model="m", total_usd=a, saved_usd=a))
    (row,) = store.summary([])
    assert row["cost_usd"] == sum(amounts) == row["saved_usd"]
    assert [r.total_usd for r in store.records()] == amounts
    store.record(CallRecord(provider="p", model="m", total_usd=Decimal("1e-20")))
    assert store.summary([])[0]["cost_usd"] == sum(amounts)  # rounded once, half-even, at record time


def test_parallel_shards_give_the_same_summary(loaded):
    store, recs = loaded
    for by in ([], ["model", "day"], ["user", "status"]):
        single = store.summary(by)
        store.shard_min = 0
        try:
            sharded = store.summary(by)
        finally:
            del store.shard_min
        assert sharded == single
