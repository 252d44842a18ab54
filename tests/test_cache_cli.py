"""``unillm cache stats | clear | prune`` through click's CliRunner."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from unillm.cache import make_entry
from unillm.cache.disk import DiskCache
from unillm.cli import cli
from unillm.cli.cache import group
from unillm.types import ChatResponse, Choice, ResponseMessage


@pytest.fixture(autouse=True)
def no_cache_env(monkeypatch) -> None:
    """The developer's own UNILLM_CACHE must not leak in (conftest clears keys and home)."""
    monkeypatch.delenv("UNILLM_CACHE", raising=False)


def entry(namespace: str = "default"):
    return make_entry(ChatResponse(id="r", created=1, model="m", provider="openai",
                                   choices=[Choice(message=ResponseMessage(content="hi"), finish_reason="stop")]),
                      namespace=namespace)


@pytest.fixture
def url(tmp_path: Path) -> str:
    cache = DiskCache(tmp_path / "c")
    cache.set("a", entry("prod"))
    cache.set("b", entry("prod"))
    cache.set("c", entry("exp"))
    cache.set("old", entry("exp"), ttl=1e-6)
    cache.close()
    return f"disk://{tmp_path}/c"


def run(*args: str, obj=None):
    return CliRunner().invoke(group, list(args), obj=obj, catch_exceptions=False)


def test_stats_shows_entries_and_size(url: str) -> None:
    out = run("stats", "--cache", url)
    assert out.exit_code == 0
    assert "entries" in out.output and " 4" in out.output and "KB" in out.output
    assert "n/a (no ledger stats)" in out.output


def test_stats_json_with_ledger_hit_rate_and_savings(url: str) -> None:
    seen = []

    def ledger_stats(ledger_url):
        seen.append(ledger_url)
        return {"calls": 8, "hits": 2, "saved_usd": Decimal("0.0123")}

    out = run("stats", "--cache", url, "--ledger", "sqlite:///x.db", "--format", "json",
              obj={"ledger_stats": ledger_stats})
    data = json.loads(out.output)
    assert data["entries"] == 4 and data["size_bytes"] > 0
    assert (data["hits"], data["calls"], data["hit_rate"], data["saved_usd"]) == (2, 8, 0.25, "0.0123")
    assert seen == ["sqlite:///x.db"]
    table = run("stats", "--cache", url, obj={"ledger_stats": ledger_stats}).output
    assert "25.0% (2 of 8 calls)" in table and "$0.0123" in table


def test_clear_one_namespace_then_all(url: str) -> None:
    assert run("clear", "--cache", url, "--namespace", "prod").output.strip() == \
        "removed 2 entries from namespace 'prod'"
    assert json.loads(run("stats", "--cache", url, "--format", "json").output)["entries"] == 2
    assert run("clear", "--cache", url).output.strip() == "removed 2 entries"


def test_prune_removes_expired(url: str) -> None:
    assert run("prune", "--cache", url).output.strip() == "pruned 1 expired entry"
    assert run("prune", "--cache", url).output.strip() == "pruned 0 expired entries"


def test_default_cache_comes_from_the_environment(monkeypatch, url: str) -> None:
    monkeypatch.setenv("UNILLM_CACHE", url)
    assert "removed 4 entries" in run("clear").output


def test_default_cache_is_under_unillm_home(tmp_path: Path) -> None:
    # conftest points UNILLM_HOME at a temporary directory
    data = json.loads(run("stats", "--format", "json").output)
    assert data["entries"] == 0 and "unillm-home/cache" in data["url"]


def test_a_bad_url_is_one_clean_line() -> None:
    out = CliRunner().invoke(cli, ["cache", "stats", "--cache", "s3://nope"])
    assert out.exit_code == 1
    assert out.output.strip().startswith("Error: cache: unknown cache scheme 's3'")
    assert "Traceback" not in out.output


def test_the_group_is_reachable_from_the_unillm_command(url: str) -> None:
    out = CliRunner().invoke(cli, ["cache", "prune", "--cache", url])
    assert out.exit_code == 0 and "pruned 1" in out.output


def test_stats_counts_skips_by_reason_from_the_ledger(tmp_path: Path) -> None:
    from unillm import Client
    from unillm.testing import FakeProvider
    hi = [{"role": "user", "content": "hi"}]
    ledger, cache = f"sqlite:///{tmp_path / 'l.db'}", f"disk://{tmp_path}/cache"
    with FakeProvider() as fake:
        client = Client(ledger=ledger, cache=cache, cache_sampled=False, providers=fake.providers())
        client.chat(model="gpt-4o-mini", messages=hi)                          # skipped:sampled
        client.chat(model="gpt-4o-mini", messages=hi, temperature=0.5)         # skipped:sampled
        client.chat(model="gpt-4o-mini", messages=hi, temperature=0, cache=False)  # skipped:disabled
        client.chat(model="gpt-4o-mini", messages=hi, temperature=0)           # stored
        client.chat(model="gpt-4o-mini", messages=hi, temperature=0)           # hit
        client.close()
    out = CliRunner().invoke(group, ["stats", "--cache", cache, "--ledger", ledger, "--format", "json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["cache_status"] == {"skipped:sampled": 2, "hit": 1, "skipped:disabled": 1, "stored": 1}
    table = CliRunner().invoke(group, ["stats", "--cache", cache, "--ledger", ledger])
    assert "2 sampled, 1 disabled" in table.output.splitlines()[-1], table.output
