"""``POST /v1/usage`` goes through the same admission as calls: budgets charged (even past the
limit, then calls refused), per-field bounds (422 naming the field), 1-hour cache writes,
reasoning and non-token units, tenancy from the key, and analytics that survive hostile
ingest at the bounds."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest

from tests.test_server_support import make_served, upstream  # noqa: F401
from unillm.ledger.facade import MAX_TOKENS
from unillm.types import Usage

from .test_ledger_overflow import BUCKETS, dearest


def _now(**delta: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


REPORT = {"provider": "openai", "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 1_000_000}
#: $10 of gpt-4o output
REPORT_USD = Decimal("10.0025")

PRICES = (Path(__file__).parent / "data" / "unit_prices.toml").read_text()


def post(s, body, key=None, path="/v1/usage"):
    return httpx.post(s.url + path, json=body, headers={"authorization": f"Bearer {key or s.admin}"})


def problems(r) -> set[str]:
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "validation_error" and err["param"] == err["errors"][0]["field"]
    return {e["field"] for e in err["errors"]}


@pytest.fixture
def budgeted(upstream, tmp_path):
    budgets = [{"name": "bot", "scope": {"project": "bot"}, "period": "monthly", "limit_usd": "1",
                "alert_at": [0.5]}]
    yield from make_served(upstream, tmp_path, budgets=budgets)


@pytest.fixture
def priced(upstream, tmp_path):
    (tmp_path / "prices.toml").write_text(PRICES)
    yield from make_served(upstream, tmp_path, pricing=str(tmp_path / "prices.toml"),
                           server={"allow_tags": ["team", "job"]},
                           budgets=[{"name": "teams", "scope": {"team": "*"}, "period": "daily",
                                     "limit_usd": "100"},
                                    {"name": "desks", "scope": {"desk": "*"}, "period": "daily",
                                     "limit_usd": "100"}])


# ── budgets ──────────────────────────────────────────────────────────────────

def test_ingested_usage_is_charged_even_past_the_limit_and_the_next_call_is_refused(budgeted):
    s = budgeted
    fired = []
    s.client.on("budget.alert", fired.append)
    s.client.on("budget.exceeded", fired.append)
    key = s.key(user="ann", project="bot")
    r = post(s, REPORT, key)
    assert r.status_code == 201, r.text  # money already spent: recorded although it overshoots
    assert Decimal(r.json()["cost"]["total_usd"]) == REPORT_USD
    (row,) = [b for b in s.client.budgets.status() if b["budget"] == "bot"]
    assert row["spent_usd"] == REPORT_USD and row["remaining_usd"] < 0
    s.client.budgets.alerts.flush()
    assert {e["event"] for e in fired} == {"budget.alert", "budget.exceeded"}
    with pytest.raises(openai.RateLimitError) as info:
        s.openai(key).chat.completions.create(model="openai/gpt-4o-mini",
                                              messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["code"] == "budget_exceeded"


def test_a_keys_own_budget_is_charged_by_its_usage_reports(budgeted):
    s = budgeted
    key = s.key(user="bo", project="other", budget_usd="5")
    assert post(s, {"records": [REPORT]}, key, "/v1/usage/batch").status_code == 201
    with pytest.raises(openai.RateLimitError) as info:
        s.openai(key).chat.completions.create(model="openai/gpt-4o-mini",
                                              messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["code"] == "budget_exceeded"
    key_row = [b for b in s.client.budgets.status() if b["scope"] == {"key_id": b["scope"].get("key_id")}
               and b["budget"].startswith("key:")]
    assert key_row and key_row[0]["spent_usd"] == REPORT_USD


def test_a_back_dated_report_is_charged_to_the_current_period(budgeted):
    s = budgeted
    key = s.key(user="cy", project="bot")
    assert post(s, {**REPORT, "timestamp": _now(days=-6)}, key).status_code == 201
    (row,) = [b for b in s.client.budgets.status() if b["budget"] == "bot"]
    assert row["spent_usd"] == REPORT_USD


# ── bounds, each a 422 naming the field ──────────────────────────────────────

@pytest.mark.parametrize(("patch", "field"), [
    ({"input_tokens": MAX_TOKENS + 1}, "input_tokens"),
    ({"output_tokens": 2 * 10**15}, "output_tokens"),
    ({"cache_read_tokens": 10**14}, "cache_read_tokens"),
    ({"cache_write_tokens": 10, "cache_write_1h_tokens": 11}, "cache_write_1h_tokens"),
    ({"reasoning_tokens": 10**14}, "reasoning_tokens"),
    ({"timestamp": _now(days=-8)}, "timestamp"),
    ({"timestamp": _now(hours=2)}, "timestamp"),
    ({"units": {"bogus": 1}}, "units.bogus"),
    ({"units": {"calls": -1}}, "units.calls"),
    ({"units": {"calls": 10**11}}, "units.calls"),
    ({"units": {"calls": [1]}}, "units.calls"),
    ({"units": {"images": 2}}, "units.images"),   # gpt-4o has no per_image price: never a silent $0
    ({"latency_ms": -1}, "latency_ms"),
])
def test_every_bound_is_a_422_naming_the_field(budgeted, patch, field):
    r = post(budgeted, {**REPORT, **patch})
    assert problems(r) == {field}
    assert list(budgeted.client.ledger.records(since="30d")) == []


def test_a_batch_names_the_field_of_the_bad_record_and_writes_nothing(budgeted):
    items = [REPORT, REPORT, {**REPORT, "input_tokens": 10**14}, {**REPORT, "timestamp": _now(days=-30)}]
    r = post(budgeted, {"records": items}, path="/v1/usage/batch")
    assert problems(r) == {"records.2.input_tokens", "records.3.timestamp"}
    assert list(budgeted.client.ledger.records(since="60d")) == []
    assert all(b["spent_usd"] == 0 for b in budgeted.client.budgets.status())


# ── what is accepted ─────────────────────────────────────────────────────────

def test_1h_cache_writes_reasoning_and_units_are_recorded_and_priced_exactly(priced):
    s = priced
    body = {"provider": "anthropic", "model": "claude-sonnet-4-5", "input_tokens": 100,
            "output_tokens": 500, "reasoning_tokens": 200, "cache_write_tokens": 4000,
            "cache_write_1h_tokens": 3000, "timestamp": _now(minutes=-5)}
    out = post(s, body).json()
    want = s.client.pricebook.cost("anthropic", "claude-sonnet-4-5", Usage(
        input_tokens=100, output_tokens=500, reasoning_tokens=200, cache_write_tokens=4000,
        cache_write_1h_tokens=3000))
    assert Decimal(out["cost"]["total_usd"]) == want.total_usd
    assert out["cache_write_1h_tokens"] == 3000 and out["reasoning_tokens"] == 200
    for model, units, usd in (("whisper-1", {"minutes": 1.5}, "0.009"),
                              ("dall-e-3", {"images": 3}, "0.12"),
                              ("tts-1", {"chars": "1234"}, "18.51")):
        out = post(s, {"provider": "openai", "model": model, "input_tokens": 0, "output_tokens": 0,
                       "units": units}).json()
        assert Decimal(out["cost"]["other_usd"]) == Decimal(usd) == Decimal(out["cost"]["total_usd"])
        rec = next(r for r in s.client.ledger.records(since="1d") if r.id == out["id"])
        assert rec.units == {k: Decimal(str(v)) for k, v in units.items()}


# ── tenancy ──────────────────────────────────────────────────────────────────

@pytest.mark.parametrize(("patch", "field"), [
    ({"user": "ann"}, "user"),
    ({"project": "bot"}, "project"),
    ({"tags": {"user": "ann"}}, "tags.user"),
    ({"tags": {"key_id": "key_someone_else"}}, "tags.key_id"),
    ({"tags": {"desk": "trading"}}, "tags.desk"),   # a budget scopes on it: whose budget pays
    ({"tags": {"color": "red"}}, "tags.color"),     # not a name the operator allows
])
def test_a_plain_key_cannot_choose_whose_money_it_reports(priced, patch, field):
    key = priced.key()  # no user, no project
    assert problems(post(priced, {**REPORT, **patch}, key)) == {field}


def test_allowed_tags_pass_and_the_keys_tenancy_wins(priced):
    key = priced.key(user="erin", project="web")
    out = post(priced, {**REPORT, "tags": {"job": "nightly"}}, key).json()
    assert out["tags"]["job"] == "nightly"
    assert out["tags"]["user"] == "erin" and out["tags"]["project"] == "web"
    assert out["tags"]["key_id"].startswith("key_")
    # a budget scopes on `team`: listed in allow_tags or not, a caller never picks whose budget pays
    refused = post(priced, {**REPORT, "tags": {"team": "red", "job": "nightly"}}, key)
    assert problems(refused) == {"tags.team"}
    (team,) = [b for b in priced.client.budgets.status() if b["budget"] == "teams"] or [{"spent_usd": 0}]
    assert Decimal(str(team["spent_usd"])) == 0


def test_an_admin_key_records_on_behalf_of_a_tenant(priced):
    out = post(priced, {**REPORT, "user": "ann", "tags": {"desk": "fx"}}).json()
    assert out["tags"]["user"] == "ann" and out["tags"]["desk"] == "fx"


# ── analytics survive hostile ingest; read failures say so ───────────────────

def test_analytics_work_for_everyone_after_ingest_at_the_bounds(budgeted):
    s = budgeted
    provider, model = dearest(s.client.pricebook)
    hostile = s.key(user="mallory", project="x")
    item = {"provider": provider, "model": model, **{b: MAX_TOKENS for b in BUCKETS}}
    r = post(s, {"records": [item] * 1000}, hostile, "/v1/usage/batch")
    assert r.status_code == 201, r.text
    one = Decimal(r.json()["data"][0]["cost"]["total_usd"])
    assert one * 1000 > Decimal(2**63) / 10**9  # past what SUM of nano-dollars could hold
    other = s.key(user="vic", project="y")
    post(s, REPORT, other)
    for key in (s.admin, hostile, other):
        a = httpx.get(s.url + "/v1/analytics?since=1d&by=user", headers={"authorization": f"Bearer {key}"})
        assert a.status_code == 200, a.text
    a = httpx.get(s.url + "/v1/analytics?since=1d", headers={"authorization": f"Bearer {s.admin}"}).json()
    assert Decimal(a["totals"]["cost_usd"]) == one * 1000 + REPORT_USD
    assert httpx.get(s.url + f"/dashboard?key={s.admin}", follow_redirects=True).status_code == 200
    (total,) = s.client.ledger.summary(since="1d")
    assert total["cost_usd"] == one * 1000 + REPORT_USD and total["output_tokens"] == 1000 * MAX_TOKENS + 10**6


def test_a_failed_read_says_it_is_a_read(budgeted, tmp_path):
    post(budgeted, REPORT)
    with sqlite3.connect(tmp_path / "l.db") as conn:
        conn.execute("ALTER TABLE ledger_calls RENAME TO gone")
    r = httpx.get(budgeted.url + "/v1/analytics", headers={"authorization": f"Bearer {budgeted.admin}"})
    assert r.status_code == 503
    assert r.json()["error"]["message"].startswith("could not read the ledger")
    assert "recorded" not in r.json()["error"]["message"]
    page = httpx.get(budgeted.url + f"/dashboard?key={budgeted.admin}", follow_redirects=True)
    assert page.status_code == 503 and "could not read the ledger" in page.text
    assert "recorded" not in page.text
