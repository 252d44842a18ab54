"""What users read: client.explain, `unillm budgets status`, `unillm cache stats` with savings."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from click.testing import CliRunner

from unillm import Client
from unillm.cli import cli
from unillm.testing import FakeProvider, Reply

CLASSIC = {"name": "short prompts go to mini",
           "when": {"model": "gpt-4o", "prompt_tokens_below": 100, "keywords_none": ["code", "analysis"]},
           "use": "gpt-4o-mini"}


def test_client_explain_says_why(tmp_path: Path) -> None:
    client = Client(rules=[CLASSIC], ledger="off")
    short = client.explain(model="gpt-4o", messages=[{"role": "user", "content": "capital of France?"}])
    assert short["decision"]["use"] == "gpt-4o-mini" and short["changes"] == {"model": "gpt-4o-mini"}
    (rule,) = short["rules"]
    assert rule["matched"] and {c["name"] for c in rule["conditions"] if c["held"]} >= {"prompt_tokens_below"}
    coding = client.explain(model="gpt-4o", messages=[{"role": "user", "content": "write code for me"}])
    assert coding["changes"] == {}
    failed = [c for c in coding["rules"][0]["conditions"] if not c["held"]]
    assert [c["name"] for c in failed] == ["keywords_none"]


def _config(tmp_path: Path, fake: FakeProvider) -> Path:
    cfg = tmp_path / "unillm.toml"
    cfg.write_text(f'''
ledger = "sqlite:///{tmp_path / 'ledger.db'}"
cache = "disk:///{tmp_path / 'cache'}"
[providers.openai]
base_url = "{fake.base_url('openai')}"
api_key = "k"
[[budgets]]
name = "team"
scope = {{ project = "bot" }}
period = "monthly"
limit_usd = 5
alert_at = [0.5]
''')
    return cfg


def test_budgets_status_cli(tmp_path: Path, fake: FakeProvider) -> None:
    cfg = _config(tmp_path, fake)
    fake.default = Reply(usage={"input_tokens": 1000, "output_tokens": 1000})
    client = Client.from_config(cfg)
    r = client.chat(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=1000,
                    tags={"project": "bot"})
    out = CliRunner().invoke(cli, ["budgets", "status", "--config", str(cfg), "--format", "json"])
    assert out.exit_code == 0, out.output
    (row,) = json.loads(out.output)
    assert row["budget"] == "team" and row["scope"] == {"project": "bot"}
    assert Decimal(row["spent_usd"]) == r.cost.total_usd and Decimal(row["remaining_usd"]) == 5 - r.cost.total_usd
    now = datetime.now(timezone.utc)
    assert row["period"] == now.strftime("%Y-%m")
    table = CliRunner().invoke(cli, ["budgets", "status", "--config", str(cfg)])
    assert "team" in table.output and "project=bot" in table.output and f"${r.cost.total_usd.normalize():f}" in table.output
    missing = CliRunner().invoke(cli, ["budgets", "status", "--config", str(tmp_path / "nope.toml")])
    assert missing.exit_code != 0 and "config file not found" in missing.output


def test_cache_stats_reads_hit_rate_and_savings_from_the_ledger(tmp_path: Path, fake: FakeProvider) -> None:
    cfg = _config(tmp_path, fake)
    client = Client.from_config(cfg)
    msgs = [{"role": "user", "content": "hi"}]
    first = client.chat(model="gpt-4o-mini", messages=msgs, temperature=0, max_tokens=10)
    for _ in range(3):
        client.chat(model="gpt-4o-mini", messages=msgs, temperature=0, max_tokens=10)
    client.close()
    out = CliRunner().invoke(cli, ["cache", "stats", "--cache", f"disk:///{tmp_path / 'cache'}",
                                   "--ledger", f"sqlite:///{tmp_path / 'ledger.db'}", "--format", "json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["entries"] == 1 and data["hits"] == 3 and data["calls"] == 4
    assert Decimal(data["saved_usd"]) == 3 * first.cost.total_usd
