"""``unillm ledger ...`` against a real ledger file."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from click.testing import CliRunner

from unillm.cli import cli
from unillm.ledger import CallRecord, open_store

NOW = datetime.now(timezone.utc)


@pytest.fixture
def url(tmp_path):
    u = f"sqlite:///{tmp_path}/cli.db"
    store = open_store(u)
    for i, (model, cost) in enumerate([("gpt-4o", "0.01"), ("gpt-4o", "0.02"),
                                       ("claude-haiku-4-5", "0.005")]):
        store.record(CallRecord(provider="openai" if "gpt" in model else "anthropic", model=model,
                                total_usd=Decimal(cost), input_tokens=100 * (i + 1),
                                output_tokens=10, latency_ms=100.0 + i,
                                started_at=NOW - timedelta(hours=i),
                                tags={"user": "=cmd()" if i == 2 else f"u{i}"}))
    store.record(CallRecord(provider="openai", model="gpt-4o", total_usd=Decimal("9"),
                            started_at=NOW - timedelta(days=30)))
    store.close()
    return u


def run(*args, env=None):
    result = CliRunner().invoke(cli, ["ledger", *args], env=env, catch_exceptions=False)
    return result


def test_summary_json_within_range(url):
    r = run("summary", "--by", "model", "--since", "7d", "--format", "json", "--ledger", url)
    assert r.exit_code == 0, r.output
    rows = {row["model"]: row for row in json.loads(r.output)}
    assert Decimal(rows["gpt-4o"]["cost_usd"]) == Decimal("0.03") and rows["gpt-4o"]["calls"] == 2
    assert rows["claude-haiku-4-5"]["input_tokens"] == 300


def test_summary_table_and_csv_from_env(url):
    r = run("summary", "--by", "provider,user", "--where", "provider=openai", env={"UNILLM_LEDGER": url})
    assert r.exit_code == 0 and "provider" in r.output.splitlines()[0]
    assert "9" in r.output and "anthropic" not in r.output
    r = run("summary", "--by", "user", "--format", "csv", "--ledger", url)
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert "'=cmd()" in [row["user"] for row in rows]


def test_user_errors_are_one_line(url):
    for args in (["summary", "--since", "soonish"], ["summary", "--where", "novalue"],
                 ["summary", "--by", 'a"b']):
        r = CliRunner().invoke(cli, ["ledger", *args, "--ledger", url])
        assert r.exit_code == 1 and r.output.startswith("Error: ") and r.output.count("\n") == 1, r.output
    r = CliRunner().invoke(cli, ["ledger", "summary", "--ledger", "mysql://u:pw@h/db"])
    assert r.exit_code == 1 and "pw" not in r.output.replace("pw@", "") and "'mysql'" in r.output


def test_export_csv_and_jsonl(url, tmp_path):
    out = tmp_path / "out.csv"
    r = run("export", "--format", "csv", "-o", str(out), "--since", "7d", "--ledger", url)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(out.open(newline="")))
    assert len(rows) == 3 and sum(Decimal(r["total_usd"]) for r in rows) == Decimal("0.035")
    r = run("export", "--format", "jsonl", "-o", "-", "--ledger", url)
    assert len(r.output.splitlines()) == 4


def test_tail_follows_new_records(url):
    def late_write():
        time.sleep(0.3)
        s = open_store(url)
        s.record(CallRecord(provider="openai", model="late-model"))
        s.close()

    t = threading.Thread(target=late_write)
    t.start()
    r = run("tail", "-n", "2", "-f", "--interval", "0.2", "--max-polls", "6", "--ledger", url)
    t.join()
    models = [json.loads(line)["model"] for line in r.output.splitlines()]
    assert models[:2] == ["claude-haiku-4-5", "gpt-4o"]
    assert models[-1] == "late-model" and len(models) == 3


def test_whatif_with_the_real_price_book(url):
    pricing = pytest.importorskip("unillm.pricing")
    try:
        book = pricing.PriceBook.load()
        from unillm.types import Usage
        book.cost("openai", "gpt-4o-mini", Usage(input_tokens=1))
        book.cost("anthropic", "claude-haiku-4-5", Usage(input_tokens=1))
    except Exception as exc:  # the price book is another helper's work in progress
        pytest.skip(f"price book not ready: {exc}")
    r = run("whatif", "--model", "openai/gpt-4o-mini", "--format", "json", "--ledger", url)
    assert r.exit_code == 0, r.output
    body = json.loads(r.output)
    assert body["calls"] == 3 and Decimal(body["original_usd"]) == Decimal("0.035")  # no tokens: skipped
    r = CliRunner().invoke(cli, ["ledger", "whatif", "--model", "gpt-4o-mini", "--ledger", url,
                                 "--format", "json"])
    assert r.exit_code == 0 and json.loads(r.output) == body  # resolved as chat() resolves it


def test_a_mistyped_ledger_path_is_an_error_not_a_new_empty_ledger(tmp_path) -> None:
    from click.testing import CliRunner

    from unillm.cli import cli
    missing = tmp_path / "typo" / "ledger.db"
    for args in (["summary"], ["export", "--format", "json", "-o", str(tmp_path / "x.json")], ["whatif", "--model", "gpt-4o"]):
        out = CliRunner().invoke(cli, ["ledger", *args, "--ledger", f"sqlite:///{missing}"])
        assert out.exit_code != 0 and f"no ledger at {missing}" in out.output, args
    assert not missing.parent.exists()
