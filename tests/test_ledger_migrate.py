"""``unillm ledger migrate --to postgresql://...``: an SQLite ledger copied into a real
PostgreSQL server exactly, checked, and idempotent."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from click.testing import CliRunner

from unillm.cli import cli
from unillm.ledger import CallRecord, open_store

from .servers import pg_url, postgres_server, postgres_url, workload  # noqa: F401

BYS = [(), ("model",), ("day", "status"), ("week",), ("user", "section")]


def run(*args, env=None):
    return CliRunner().invoke(cli, ["ledger", "migrate", *args], env=env)


@pytest.fixture
def sqlite_url(tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    store = open_store(url)
    store.record_many(workload(2345))
    store.close()
    return url


def totals(output: str) -> tuple[int, int, str, str]:
    copied = re.search(r"copied (\d+) new records?.*\((\d+) already there\)", output)
    cost = re.search(r"cost \$([\d.]+) in source, \$([\d.]+) in target", output)
    assert copied and cost, output
    return int(copied[1]), int(copied[2]), cost[1], cost[2]


def test_copies_exactly_and_prints_the_checks(sqlite_url, pg_url) -> None:
    r = run("--from", sqlite_url, "--to", pg_url)
    assert r.exit_code == 0, r.output
    src, dst = open_store(sqlite_url), open_store(pg_url)
    expected_cost = sum((x.total_usd for x in src.records() if x.total_usd is not None), Decimal(0))
    assert totals(r.output) == (2345, 0, str(expected_cost), str(expected_cost))
    assert "checked: 2345 records in both" in r.output
    assert list(dst.records()) == list(src.records())
    for by in BYS:
        assert dst.summary(by=by) == src.summary(by=by)
    src.close()
    dst.close()


def test_rerun_copies_only_what_is_new(sqlite_url, pg_url) -> None:
    assert run("--from", sqlite_url, "--to", pg_url).exit_code == 0
    again = run("--from", sqlite_url, "--to", pg_url)
    assert again.exit_code == 0, again.output
    assert totals(again.output)[:2] == (0, 2345)
    src = open_store(sqlite_url)
    src.record(CallRecord(provider="openai", model="gpt-4o", total_usd=Decimal("0.5")))
    src.close()
    third = run("--to", pg_url, env={"UNILLM_LEDGER": sqlite_url})  # --from from the env
    assert third.exit_code == 0, third.output
    assert totals(third.output)[:2] == (1, 2345)
    dst = open_store(pg_url)
    (row,) = dst.summary()
    assert row["calls"] == 2346
    dst.close()


def test_a_different_record_under_the_same_id_is_reported(sqlite_url, pg_url) -> None:
    src = open_store(sqlite_url)
    first = next(src.records())
    src.close()
    dst = open_store(pg_url)
    dst.record(first.replace(total_usd=first.total_usd + 1 if first.total_usd else Decimal(1)))
    dst.close()
    r = run("--from", sqlite_url, "--to", pg_url)
    assert r.exit_code == 1
    assert f"record {first.id} differs" in r.output


def test_bad_targets_are_one_clean_line_without_secrets(sqlite_url) -> None:
    r = run("--from", sqlite_url, "--to", "postgresql://bob:hunter2@127.0.0.1:1/x?connect_timeout=2")
    assert r.exit_code == 1 and "Error:" in r.output and "hunter2" not in r.output
    assert "Connection refused" in r.output
    same = run("--from", sqlite_url, "--to", sqlite_url)
    assert same.exit_code == 1 and "same ledger" in same.output
