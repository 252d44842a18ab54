"""Usage ingest (single and batch, 422 per field), analytics JSON, health, and the keys/report CLI."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest
from click.testing import CliRunner

from tests.test_server_support import served, upstream  # noqa: F401
from unillm.cli import cli
from unillm.types import Usage

GOOD = {"provider": "openai", "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 500,
        "cache_read_tokens": 200, "user": "dana", "project": "etl", "tags": {"job": "nightly"},
        "timestamp": (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}
#: what a plain (non-admin) key may send: no user/project of its own choosing, and no tag
#: the operator does not allow (this gateway allows none)
PLAIN = {k: v for k, v in GOOD.items() if k not in ("user", "project", "tags")}


def _post(served, path, body, key=None):
    return httpx.post(served.url + path, json=body, headers={"authorization": f"Bearer {key or served.admin}"})


def test_usage_is_priced_exactly_and_recorded(served):
    r = _post(served, "/v1/usage", GOOD)
    assert r.status_code == 201
    out = r.json()
    want = served.client.pricebook.cost("openai", "gpt-4o", Usage(input_tokens=1000, output_tokens=500,
                                                                   cache_read_tokens=200))
    assert Decimal(out["cost"]["total_usd"]) == want.total_usd > 0
    rec = next(iter(served.client.ledger.records(where={"job": "nightly"}, since="2d")))
    assert rec.id == out["id"] and rec.total_usd == want.total_usd
    assert rec.started_at.strftime("%Y-%m-%dT%H:%M:%SZ") == GOOD["timestamp"]
    assert rec.tags["user"] == "dana" and rec.tags["key_id"].startswith("key_")  # admin key: body's tenancy


def test_a_plain_key_records_only_for_its_own_tenant(served):
    key = served.key(user="erin", project="web")
    out = _post(served, "/v1/usage", PLAIN, key).json()
    assert out["tags"]["user"] == "erin" and out["tags"]["project"] == "web" and "job" not in out["tags"]
    refused = _post(served, "/v1/usage", {**PLAIN, "tags": {"job": "nightly"}}, key)
    assert refused.status_code == 422 and refused.json()["error"]["param"] == "tags.job"


@pytest.mark.parametrize(("patch", "fields"), [
    ({"input_tokens": -1}, {"input_tokens"}),
    ({"input_tokens": "12"}, {"input_tokens"}),
    ({"output_tokens": 1.5, "provider": ""}, {"output_tokens", "provider"}),
    ({"model": "gpt-nonexistent"}, {"model"}),
    ({"reasoning_tokens": 900}, {"reasoning_tokens"}),
    ({"timestamp": "yesterday-ish"}, {"timestamp"}),
    ({"tags": {"a": 1}}, {"tags.a"}),
    ({"colour": "red"}, {"colour"}),
])
def test_invalid_usage_is_422_with_every_field_named(served, patch, fields):
    r = _post(served, "/v1/usage", {**GOOD, **patch})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "validation_error"
    assert {e["field"] for e in err["errors"]} == fields
    assert list(served.client.ledger.records(since="2000-01-01")) == []


def test_missing_fields_are_listed(served):
    r = _post(served, "/v1/usage", {"provider": "openai"})
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["error"]["errors"]} == {"model", "input_tokens", "output_tokens"}


def test_batch_is_all_or_nothing(served):
    bad = _post(served, "/v1/usage/batch", {"records": [GOOD, {**GOOD, "output_tokens": -5}, GOOD,
                                                         {**GOOD, "model": "nope-model"}]})
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["error"]["errors"]] == ["records.1.output_tokens", "records.3.model"]
    assert list(served.client.ledger.records(since="2000-01-01")) == []
    ok = _post(served, "/v1/usage/batch", {"records": [GOOD, {**GOOD, "model": "gpt-4o-mini"}]})
    assert ok.status_code == 201 and len(ok.json()["data"]) == 2
    assert len(list(served.client.ledger.records(since="2000-01-01"))) == 2
    assert _post(served, "/v1/usage/batch", {"records": []}).status_code == 422


def test_analytics_sums_exactly_and_scopes_plain_keys(served):
    plain = served.key(user="fay", project="bi")
    items = [{**GOOD, "timestamp": None, "model": m, "user": u}
             for m, u in (("gpt-4o", "a"), ("gpt-4o-mini", "b"), ("gpt-4o", "b"))]
    recs = _post(served, "/v1/usage/batch", {"records": items}).json()["data"]
    mine = _post(served, "/v1/usage", {**PLAIN, "timestamp": None}, plain).json()
    h = {"authorization": f"Bearer {served.admin}"}
    a = httpx.get(served.url + "/v1/analytics?since=1d&by=model", headers=h).json()
    total = sum(Decimal(r["cost"]["total_usd"]) for r in [*recs, mine])
    assert Decimal(a["totals"]["cost_usd"]) == total and a["totals"]["calls"] == 4
    assert {r["model"] for r in a["by_model"]} == {"gpt-4o", "gpt-4o-mini"}
    assert a["by_model"][0]["model"] == "gpt-4o"  # most expensive first
    assert {r["user"] for r in a["by_user"]} == {"a", "b", "fay"}
    assert sum(Decimal(p["cost_usd"]) for p in a["series"]) == total
    assert a["range"]["bucket"] == "hour" and len(a["recent"]) == 4 and a["groups"]
    assert Decimal(a["top_requests"][0]["cost_usd"]) == max(Decimal(r["cost"]["total_usd"]) for r in recs)
    filtered = httpx.get(served.url + "/v1/analytics?since=1d&user=b", headers=h).json()
    assert filtered["totals"]["calls"] == 2
    scoped = httpx.get(served.url + "/v1/analytics?since=1d", headers={"authorization": f"Bearer {plain}"}).json()
    assert scoped["totals"]["calls"] == 1 and Decimal(scoped["totals"]["cost_usd"]) == Decimal(mine["cost"]["total_usd"])
    bad = httpx.get(served.url + "/v1/analytics?since=lastweek", headers=h)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "since"


def test_health_reports_ledger_and_cache(served):
    r = httpx.get(served.url + "/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["ledger"]["ok"] is True and body["cache"]["ok"] in (True, None)


def test_cli_keys_create_list_revoke_and_report(tmp_path):
    ledger = f"sqlite:///{tmp_path}/k.db"
    runner = CliRunner()
    out = runner.invoke(cli, ["keys", "create", "--ledger", ledger, "--user", "gus", "--project", "ml",
                              "--budget-usd", "25", "--rpm", "60", "--format", "json"])
    assert out.exit_code == 0, out.output
    created = json.loads(out.stdout)
    assert created["key"].startswith("ulk_") and created["period"] == "monthly"
    listed = runner.invoke(cli, ["keys", "list", "--ledger", ledger])
    assert created["id"] in listed.stdout and "gus" in listed.stdout and created["key"] not in listed.stdout
    assert runner.invoke(cli, ["keys", "revoke", "--ledger", ledger, created["id"]]).exit_code == 0
    again = runner.invoke(cli, ["keys", "revoke", "--ledger", ledger, created["id"]])
    assert again.exit_code == 1 and "no active key" in again.output
    bad = runner.invoke(cli, ["keys", "create", "--ledger", ledger, "--budget-usd", "lots"])
    assert bad.exit_code == 1 and "budget_usd" in bad.output
    from unillm.ledger import Ledger, open_store
    from unillm.pricing import PriceBook
    Ledger(open_store(ledger), PriceBook.load()).record(provider="openai", model="gpt-4o", input_tokens=10_000,
                                                         output_tokens=2_000, tags={"user": "gus"})
    report = tmp_path / "report.html"
    res = runner.invoke(cli, ["report", "--ledger", ledger, "--since", "7d", "-o", str(report)])
    assert res.exit_code == 0, res.output
    html = report.read_text()
    assert "$0.045" in html and "gus" in html and "<svg" in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # self-contained
    assert "<script" not in html
