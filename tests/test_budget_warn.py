"""``on_exceed = "warn"``: the call goes ahead, and someone is told (a Python warning and a log line)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

from unillm import Client
from unillm.budgets.alerts import BudgetWarning
from unillm.testing import FakeProvider, Reply

HI = [{"role": "user", "content": "hi"}]


def test_warn_budget_over_its_limit_warns_and_logs_once(fake: FakeProvider, tmp_path: Path, caplog) -> None:
    fake.default = Reply(usage={"input_tokens": 1000, "output_tokens": 200})
    client = Client(providers=fake.providers(), ledger=f"sqlite:///{tmp_path / 'l.db'}",
                    budgets=[{"name": "soft-warn-once", "limit_requests": 1, "on_exceed": "warn"}])
    client.chat(model="gpt-4o-mini", messages=HI, max_tokens=50)     # within the limit: silent
    caplog.set_level(logging.WARNING, logger="unillm.budgets")
    with pytest.warns(BudgetWarning, match="budget .soft-warn-once.*over its limit"):
        client.chat(model="gpt-4o-mini", messages=HI, max_tokens=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                # once per budget period
        client.chat(model="gpt-4o-mini", messages=HI, max_tokens=50)
    assert len(fake.requests) == 3
    lines = [r.getMessage() for r in caplog.records if r.name == "unillm.budgets"]
    assert len(lines) == 1 and 'on_exceed = "warn"' in lines[0]
