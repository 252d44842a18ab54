"""Budget periods in analytics (``/v1/budgets``, the dashboard, ``unillm report``) are the
budgets' own, in the configured timezone: one period arithmetic (`BudgetSpec.window`)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.test_server_support import make_served, upstream  # noqa: F401
from unillm.server.report import render_report

#: UTC+14: its day starts at 10:00 UTC, so a UTC-only period is wrong 14 hours a day
ZONE = "Pacific/Kiritimati"


@pytest.fixture
def served(upstream, tmp_path: Path):  # noqa: F811
    yield from make_served(upstream, tmp_path, timezone=ZONE)


def _next_local_midnight(now: datetime) -> datetime:
    local = now.astimezone(ZoneInfo(ZONE)).date() + timedelta(days=1)
    return datetime(local.year, local.month, local.day, tzinfo=ZoneInfo(ZONE)).astimezone(timezone.utc)


def test_a_keys_daily_budget_resets_at_local_midnight(served) -> None:
    auth = {"authorization": f"Bearer {served.admin}"}
    made = httpx.post(served.url + "/admin/keys", json={"budget_usd": "5", "period": "daily"}, headers=auth)
    assert made.status_code == 201, made.text
    before = datetime.now(timezone.utc)
    rows = httpx.get(served.url + "/v1/budgets", headers=auth).json()["data"]
    after = datetime.now(timezone.utc)
    (row,) = [r for r in rows if r["budget"] == f"key:{made.json()['id']}"]
    assert datetime.fromisoformat(row["resets_at"]) in {_next_local_midnight(before), _next_local_midnight(after)}
    assert row["period"] in {before.astimezone(ZoneInfo(ZONE)).date().isoformat(),
                             after.astimezone(ZoneInfo(ZONE)).date().isoformat()}


def test_the_report_shows_the_configured_budgets(upstream, tmp_path: Path) -> None:  # noqa: F811
    budgets = [{"name": "team", "scope": {"project": "bot"}, "period": "daily", "limit_usd": "3"}]
    for served in make_served(upstream, tmp_path, timezone=ZONE, budgets=budgets):
        assert "team" in render_report(served.client)
