"""Deployments, strategies, health and shared state (issue 18), through the real OpenAI SDK
talking to FakeProvider."""

from __future__ import annotations

import asyncio
import collections
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from unillm import Client, errors
from unillm.testing import FakeProvider, Reply

MSG = [{"role": "user", "content": "hi"}]

PRICES = """
[east."gpt-4o"]
input = 2.50
output = 10.00
[west."gpt-4o"]
input = 5.00
output = 15.00
[backup."gpt-4o-mini"]
input = 0.15
output = 0.60
"""


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def fakes():
    with FakeProvider() as a, FakeProvider() as b, FakeProvider() as c:
        yield a, b, c


def _client(tmp_path, fakes, deployments, routing=None, **kw):
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES)
    providers = {name: {"adapter": "openai", "base_url": f.base_url("openai"), "api_key": f.api_key,
                        "max_retries": 2}
                 for name, f in zip(("east", "west", "backup"), fakes)}
    kw.setdefault("ledger", f"sqlite:///{tmp_path}/ledger.db")
    return Client(providers=providers, pricing=str(prices), deployments=deployments,
                  routing=routing or {}, sleep=lambda s: None, **kw)


TWO = [{"model": "gpt-4o", "provider": "east", "weight": 3}, {"model": "gpt-4o", "provider": "west"}]


def test_weighted_three_to_one(tmp_path, fakes):
    client = _client(tmp_path, fakes, TWO, routing={"state": "memory"}, ledger="off")
    n = 4000
    picks = [client._router.pick("gpt-4o") for _ in range(n)]
    counts = collections.Counter(p.deployment.label for p in picks)
    for p in picks:
        client._router.done(p.deployment.label, pick=p)
    assert [s["in_flight"] for s in client.route_status()] == [0, 0]
    assert abs(counts["east/gpt-4o"] / n - 0.75) <= 0.03, counts
    client.close()


def test_each_deployment_priced_by_its_provider_and_recorded(tmp_path, fakes):
    client = _client(tmp_path, fakes, TWO, routing={"strategy": "ordered"})
    resp = client.chat("gpt-4o", MSG)
    assert resp.provider == "east" and len(fakes[0].requests) == 1 and not fakes[1].requests
    rows = list(client.ledger.store.records())
    assert [r.deployment for r in rows] == ["east/gpt-4o"]
    east_cost = resp.cost.total_usd
    fakes[0].default = Reply(status=401, error="bad key")  # not retryable: no other deployment
    with pytest.raises(errors.AuthenticationError):
        client.chat("gpt-4o", MSG)
    client.close()
    c2 = _client(tmp_path, fakes, list(reversed(TWO)), routing={"strategy": "ordered"})
    r2 = c2.chat("gpt-4o", MSG)
    assert r2.provider == "west" and r2.cost.total_usd > east_cost  # west's own, higher, price
    c2.close()


def test_dead_primary_cools_down_and_is_probed(tmp_path, fakes):
    dead, healthy, _ = fakes
    dead.default = Reply(status=503, error="down")
    clock = Clock()
    client = _client(tmp_path, fakes, TWO, clock=clock,
                     routing={"strategy": "ordered", "cooldown_after": 3, "cooldown_seconds": 30})
    for _ in range(20):
        assert client.chat("gpt-4o", MSG).provider == "west"
    assert len(dead.requests) == 3  # cooldown_after, then never while cooling
    clock.advance(31)               # half-open: exactly one probe
    for _ in range(10):
        assert client.chat("gpt-4o", MSG).provider == "west"
    assert len(dead.requests) == 4
    clock.advance(31)
    dead.default = Reply()          # recovered: the probe succeeds, it serves again
    assert client.chat("gpt-4o", MSG).provider == "east"
    assert client.chat("gpt-4o", MSG).provider == "east"
    assert len(dead.requests) == 6
    rows = list(client.ledger.store.records())
    assert {r.deployment for r in rows} == {"east/gpt-4o", "west/gpt-4o"}
    failed = [r for r in rows if r.status != "ok"]
    assert len(failed) == 4 and all(r.deployment == "east/gpt-4o" for r in failed)
    status = {s["deployment"]: s for s in client.route_status()}
    assert status["east/gpt-4o"]["state"] == "healthy"
    client.close()


def test_retry_after_429_cools_that_long(tmp_path, fakes):
    east, west, _ = fakes
    clock = Clock()
    client = _client(tmp_path, fakes, TWO, clock=clock, routing={"strategy": "ordered"})
    east.queue(Reply(status=429, error="slow", headers={"retry-after": "50"}))
    assert client.chat("gpt-4o", MSG).provider == "west"
    clock.advance(40)
    assert client.chat("gpt-4o", MSG).provider == "west"
    st = {s["deployment"]: s["state"] for s in client.route_status()}
    assert st["east/gpt-4o"] == "cooling"
    clock.advance(11)
    assert client.chat("gpt-4o", MSG).provider == "east"
    client.close()


def test_all_deployments_down_falls_back_to_another_model(tmp_path, fakes):
    east, west, backup = fakes
    east.default = west.default = Reply(status=503, error="down")
    client = _client(tmp_path, fakes, TWO, fallbacks=[{"model": "gpt-4o", "then": ["backup/gpt-4o-mini"]}])
    resp = client.chat("gpt-4o", MSG)
    assert resp.provider == "backup"
    # the next deployment before any retry; the last one retries (max_retries) before the fallback
    # (weighted: either may go first)
    assert sorted([len(east.requests), len(west.requests)]) == [1, 3]
    client.close()


def test_rpm_limit_then_rate_limit_error(tmp_path, fakes):
    clock = Clock()
    deps = [{"model": "gpt-4o", "provider": "east", "rpm": 2}, {"model": "gpt-4o", "provider": "west", "rpm": 1}]
    client = _client(tmp_path, fakes, deps, clock=clock, routing={"strategy": "usage"})
    for _ in range(3):
        client.chat("gpt-4o", MSG)
    with pytest.raises(errors.RateLimitError) as exc:
        client.chat("gpt-4o", MSG)
    assert 0 < exc.value.retry_after <= 61
    assert len(fakes[0].requests) == 2 and len(fakes[1].requests) == 1
    clock.advance(61)
    client.chat("gpt-4o", MSG)
    client.close()


def test_cost_and_latency_strategies(tmp_path, fakes):
    client = _client(tmp_path, fakes, list(reversed(TWO)), routing={"strategy": "cost", "state": "memory"},
                     ledger="off")
    assert client.chat("gpt-4o", MSG).provider == "east"  # cheaper, though listed second
    ex = client.explain("gpt-4o", MSG)["route"]
    assert ex["deployment"] == "east/gpt-4o" and "cost" in ex["reason"]
    client.close()
    client = _client(tmp_path, fakes, TWO, routing={"strategy": "latency", "state": "memory"}, ledger="off")
    client._router.done("east/gpt-4o", latency_ms=900.0, release=False)
    client._router.done("west/gpt-4o", latency_ms=20.0, release=False)
    assert client.chat("gpt-4o", MSG).provider == "west"
    assert "latency" in client.explain("gpt-4o", MSG)["route"]["reason"]
    client.close()


def test_unknown_provider_is_a_precise_error(tmp_path, fakes):
    with pytest.raises(errors.ConfigError) as exc:
        _client(tmp_path, fakes, [{"model": "gpt-4o", "provider": "eats"}])
    assert "deployments[0].provider" in str(exc.value) and "east" in str(exc.value)


def test_rpm_limits_hold_across_four_processes(tmp_path, fakes):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES)
    ledger = f"sqlite:///{tmp_path}/shared.db"
    worker = Path(__file__).with_name("_route_worker.py")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    procs = [subprocess.Popen([sys.executable, str(worker), fakes[0].base_url("openai"),
                               fakes[1].base_url("openai"), ledger, str(prices), "8"],
                              stdout=subprocess.PIPE, text=True, env=env) for _ in range(4)]
    outs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert sum(o["ok"] for o in outs) == 12 and sum(o["limited"] for o in outs) == 20
    assert len(fakes[0].requests) == 7 and len(fakes[1].requests) == 5


def test_routes_status_cli_and_summary_by_deployment(tmp_path, fakes):
    from click.testing import CliRunner

    from unillm.cli import cli
    fakes[0].default = Reply(status=503, error="down")
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES)
    config = tmp_path / "unillm.toml"
    config.write_text(f"""
ledger = "sqlite:///{tmp_path}/ledger.db"
pricing = "{prices}"
[routing]
strategy = "ordered"
cooldown_after = 1
[providers.east]
adapter = "openai"
base_url = "{fakes[0].base_url('openai')}"
api_key = "k"
[providers.west]
adapter = "openai"
base_url = "{fakes[1].base_url('openai')}"
api_key = "k"
[[deployments]]
model = "gpt-4o"
provider = "east"
rpm = 100
[[deployments]]
model = "gpt-4o"
provider = "west"
""")
    client = Client(str(config))
    for _ in range(3):
        client.chat("gpt-4o", MSG)
    summary = client.ledger.summary(by=["deployment"])
    client.close()
    by = {row["deployment"] if isinstance(row, dict) else row.deployment: row for row in summary}
    assert set(by) == {"east/gpt-4o", "west/gpt-4o"}
    out = CliRunner().invoke(cli, ["routes", "status", "--config", str(config)])
    assert out.exit_code == 0, out.output
    lines = {line.split()[0]: line for line in out.output.splitlines() if "/gpt-4o" in line}
    assert "cooling until" in lines["east/gpt-4o"] and "1/100" in lines["east/gpt-4o"]
    assert "healthy" in lines["west/gpt-4o"]


def test_streams_and_async_calls_are_routed_and_recorded(tmp_path, fakes):
    fakes[0].default = Reply(status=503, error="down")
    client = _client(tmp_path, fakes, TWO, routing={"strategy": "ordered"})
    stream = client.chat("gpt-4o", MSG, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text and stream.response.provider == "west"

    async def main():
        return await client.achat("gpt-4o", MSG)
    assert asyncio.run(main()).provider == "west"
    rows = list(client.ledger.store.records())
    assert [(r.status, r.deployment) for r in rows] == [
        ("error", "east/gpt-4o"), ("ok", "west/gpt-4o"), ("error", "east/gpt-4o"), ("ok", "west/gpt-4o")]
    flights = {s["deployment"]: s["in_flight"] for s in client.route_status()}
    assert flights == {"east/gpt-4o": 0, "west/gpt-4o": 0}
    client.close()


def test_deployment_name_as_rule_target_and_fallback(tmp_path, fakes):
    deps = [{"model": "smart", "provider": "east", "model_id": "gpt-4o"},
            {"model": "smart", "provider": "west", "model_id": "gpt-4o"}]
    client = _client(tmp_path, fakes, deps, routing={"strategy": "ordered"},
                     rules=[{"name": "to-smart", "when": {"model": "backup/*"}, "use": "smart"}])
    resp = client.chat("backup/gpt-4o-mini", MSG)
    assert resp.provider == "east" and resp.rule == "to-smart"
    assert client.explain("backup/gpt-4o-mini", MSG)["route"]["deployment"] == "east/gpt-4o"
    client.close()
    fakes[2].default = Reply(status=503, error="down")
    client = _client(tmp_path, fakes, deps, routing={"strategy": "ordered"},
                     fallbacks=[{"model": "backup/gpt-4o-mini", "then": ["smart"]}])
    resp = client.chat("backup/gpt-4o-mini", MSG)
    assert resp.provider == "east"
    rows = list(client.ledger.store.records())
    assert rows[-1].deployment == "east/gpt-4o" and rows[-1].fallback_from == "backup/gpt-4o-mini"
    client.close()


def test_rules_lint_knows_deployment_names(tmp_path):
    from click.testing import CliRunner

    from unillm.cli import cli
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES)
    config = tmp_path / "unillm.toml"
    config.write_text(f"""
pricing = "{prices}"
[providers.east]
adapter = "openai"
base_url = "http://127.0.0.1:9/v1"
[[deployments]]
model = "smart"
provider = "east"
model_id = "gpt-4o"
[[rules]]
name = "big"
when = {{ prompt_tokens_above = 1000 }}
use = "smart"
""")
    out = CliRunner().invoke(cli, ["rules", "lint", "--config", str(config)])
    assert out.exit_code == 0 and "smart" not in out.output, out.output


def test_a_deployment_taken_out_is_a_deployment_cooldown_event(tmp_path, fakes):
    """To `client.on` (and so to `[[alerts.webhooks]]`): once per cooldown, with why and until when."""
    dead, _, _ = fakes
    dead.default = Reply(status=503, error="down")
    clock = Clock()
    client = _client(tmp_path, fakes, TWO, clock=clock,
                     routing={"strategy": "ordered", "cooldown_after": 3, "cooldown_seconds": 30})
    events: list[dict] = []
    client.on("deployment.cooldown", events.append)
    for _ in range(10):
        client.chat("gpt-4o", MSG)
    assert [(e["deployment"], e["reason"], e["seconds"]) for e in events] == [("east/gpt-4o", "failures", 30)]
    assert events[0]["error"] == "ServerError" and events[0]["until"].startswith(
        (clock.now + timedelta(seconds=30)).isoformat()[:16])
    clock.advance(31)  # the half-open probe fails: out again, a second event
    client.chat("gpt-4o", MSG)
    assert [e["reason"] for e in events] == ["failures", "probe_failed"]
    client.close()
