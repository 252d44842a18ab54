"""What people read from ``unillm`` (issue 15, findings 4, 6, 7): names resolved as chat()
resolves them, dimensions checked, latency in ms with one decimal, exact plain money, plurals."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from unillm.cli import cli
from unillm.cli._common import plural, usd
from unillm.ledger import CallRecord, open_store

NOW = datetime.now(timezone.utc)


@pytest.fixture
def url(tmp_path: Path) -> str:
    u = f"sqlite:///{tmp_path.as_posix().lstrip('/')}/out.db"
    store = open_store(u)
    store.record(CallRecord(provider="openai", model="gpt-4o", total_usd=Decimal("0.00000045"),
                            input_tokens=3, output_tokens=0, latency_ms=123.456789012345,
                            started_at=NOW - timedelta(hours=1), tags={"user": "ann"}))
    store.record(CallRecord(provider="openai", model="gpt-4o", total_usd=Decimal("0.0000004500"),
                            input_tokens=3, output_tokens=0, latency_ms=7.26,
                            started_at=NOW - timedelta(hours=2), tags={"user": "bo"}))
    store.close()
    return u


def run(*args: str) -> object:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_a_mistyped_dimension_is_an_error_with_did_you_mean(url: str) -> None:
    out = run("ledger", "summary", "--by", "modle", "--ledger", url)
    assert out.exit_code == 1
    assert "--by 'modle': unknown dimension; did you mean 'model'?" in out.output
    assert "tag:NAME" in out.output and out.output.count("\n") == 1
    out = run("ledger", "summary", "--where", "usr=ann", "--ledger", url)
    assert out.exit_code == 1 and "did you mean 'user'?" in out.output


def test_tags_are_named_with_tag_prefix_and_user_project_are_known(url: str) -> None:
    out = run("ledger", "summary", "--by", "tag:user", "--format", "json", "--ledger", url)
    assert out.exit_code == 0, out.output
    assert sorted(r["tag:user"] for r in json.loads(out.output)) == ["ann", "bo"]
    out = run("ledger", "summary", "--by", "user", "--where", "user=ann", "--format", "json",
              "--ledger", url)
    assert [r["user"] for r in json.loads(out.output)] == ["ann"]


def test_summary_table_prints_plain_money_and_one_decimal_latency(url: str) -> None:
    out = run("ledger", "summary", "--by", "user", "--ledger", url)
    assert out.exit_code == 0, out.output
    lines = {line.split()[0]: line.split() for line in out.output.splitlines()[2:]}
    assert "0.00000045" in lines["ann"] and "123.5" in lines["ann"] and "7.3" in lines["bo"]
    assert "E-" not in out.output and "123.456" not in out.output


def test_usd_and_plural_helpers() -> None:
    assert usd(Decimal("4.500E-7")) == "$0.00000045"
    assert usd(Decimal("0.062395")) == "$0.062395"
    assert usd(Decimal(12)) == "$12.00" and usd(Decimal("-1.5")) == "-$1.50"
    assert usd(Decimal(1).scaleb(3)) == "$1000.00"
    assert plural(1, "fallback") == "1 fallback" and plural(2, "fallback") == "2 fallbacks"
    assert plural(1, "entry", "entries") == "1 entry" and plural(0, "entry", "entries") == "0 entries"


def test_whatif_resolves_an_alias_from_the_config_as_chat_does(tmp_path: Path, url: str) -> None:
    pytest.importorskip("unillm.pricing")
    cfg = tmp_path / "unillm.toml"
    cfg.write_text(f'ledger = "{url}"\n[aliases]\ncheap = "gpt-4o-mini"\n')
    by_alias = run("ledger", "whatif", "--model", "cheap", "--config", str(cfg), "--format", "json")
    assert by_alias.exit_code == 0, by_alias.output
    body = json.loads(by_alias.output)
    assert (body["provider"], body["model"], body["calls"]) == ("openai", "gpt-4o-mini", 2)
    bare = run("ledger", "whatif", "--model", "gpt-4o-mini", "--config", str(cfg), "--format", "json")
    assert json.loads(bare.output) == body
    table = run("ledger", "whatif", "--model", "cheap", "--config", str(cfg)).output
    assert "on openai/gpt-4o-mini: 2 calls would cost the same ($0.0000009 -> $0.0000009)" in table
    unknown = run("ledger", "whatif", "--model", "cheapest", "--config", str(cfg))
    assert unknown.exit_code == 1 and "unknown model 'cheapest'" in unknown.output
    assert "provider=" not in unknown.output and "model='" not in unknown.output  # no Python syntax


def test_client_ledger_whatif_takes_the_readme_name(tmp_path: Path) -> None:
    pytest.importorskip("unillm.pricing")
    from unillm import Client
    client = Client(ledger=f"sqlite:///{tmp_path.as_posix().lstrip('/')}/w.db", cache="off")
    client.ledger.record(provider="openai", model="gpt-4o", input_tokens=1000, output_tokens=100)
    w = client.ledger.whatif("gpt-4o-mini")  # the README's line
    assert (w.provider, w.model, w.calls) == ("openai", "gpt-4o-mini", 1) and w.difference_usd < 0
    client.close()


def test_rules_lint_says_one_fallback(tmp_path: Path) -> None:
    cfg = tmp_path / "unillm.toml"
    cfg.write_text('[[fallbacks]]\nmodel = "gpt-4o"\nthen = ["gpt-4o-mini"]\n')
    out = run("rules", "lint", "--config", str(cfg))
    assert "0 rules, 1 fallback: no problems found" in out.output


def test_client_ledger_whatif_resolves_the_clients_own_aliases(tmp_path) -> None:
    from unillm import Client
    client = Client(ledger=f"sqlite:///{tmp_path / 'l.db'}", aliases={"cheap": "openai/gpt-4o-mini"})
    client.ledger.record(provider="openai", model="gpt-4o", input_tokens=1000, output_tokens=100)
    what = client.ledger.whatif("cheap")
    assert (what.provider, what.model, what.calls) == ("openai", "gpt-4o-mini", 1)
    assert what.difference_usd < 0
