"""Routing bars of issue 18 that need more than one call to show: the dead deployment's
request bound over a long (injected) time, no routing SQL on a pick when nothing changed nor
on the event loop, in-flight leases that lapse when their process dies, TPM reserved before
sending. The official OpenAI SDK talks to FakeProvider throughout."""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.test_routing import MSG, PRICES, TWO, Clock, _client, fakes  # noqa: F401
from unillm import errors
from unillm.ledger import open_store
from unillm.routing import DeploymentSpec, Router, RoutingSettings, SQLState
from unillm.testing import Reply

ROUTE_SQL = "unillm_route_state"


def _trace(client) -> list[tuple[str, str]]:
    """(thread name, statement) of every SQL statement the ledger's connection runs."""
    seen: list[tuple[str, str]] = []
    client.ledger.store._conn.set_trace_callback(lambda sql: seen.append((threading.current_thread().name, sql)))
    return seen


class WallClock(Clock):
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:  # type: ignore[override]
        return self.now


# ── the dead primary: cooldown_after requests, then one probe per cooldown_seconds ──

def test_dead_deployment_gets_cooldown_after_plus_one_probe_per_cooldown(tmp_path, fakes):  # noqa: F811
    """Ten simulated minutes of a call every 2 s from two clients sharing the ledger (as two
    processes would): the dead deployment receives 3 requests, then one probe every 30 s."""
    dead, live, _ = fakes
    dead.default = Reply(status=503, error="down")
    clock = Clock()
    routing = {"strategy": "ordered", "cooldown_after": 3, "cooldown_seconds": 30}
    a = _client(tmp_path, fakes, TWO, clock=clock, routing=routing)
    b = _client(tmp_path, fakes, TWO, clock=clock, routing=routing)
    elapsed = 600
    for i in range(elapsed // 2):
        assert (a if i % 2 else b).chat("gpt-4o", MSG).provider == "west"
        clock.advance(2)
    allowed = 3 + elapsed // 30  # cooldown_after + one probe per cooldown_seconds
    assert len(dead.requests) <= allowed
    assert len(dead.requests) >= allowed - 2  # it is probed, not abandoned
    assert len(live.requests) == elapsed // 2
    a.close()
    b.close()


def test_a_pick_runs_no_sql_when_nothing_changed(tmp_path):
    """Picks read the shared health once per state_ttl, in one query for every deployment."""
    store = open_store(f"sqlite:///{tmp_path}/l.db")
    clock = WallClock()
    deps = [DeploymentSpec(model="m", provider="east"), DeploymentSpec(model="m", provider="west"),
            DeploymentSpec(model="n", provider="east")]
    router = Router(deps, RoutingSettings(strategy="ordered", state_ttl=1.0), SQLState(lambda: store), clock)
    router.refresh()  # (their rows made)
    router.done("east/m", error=errors.ServerError("down"))  # something to read
    clock.now += 1.0
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    picks = [router.pick("m") for _ in range(50)]
    assert {p.deployment.label for p in picks} == {"east/m"}
    reads = [s for s in statements if ROUTE_SQL in s]
    assert len(reads) == 1 and reads[0].lstrip().upper().startswith("SELECT"), reads  # one read, all deployments
    clock.now += 1.0  # past state_ttl: read again, once
    router.pick("n")
    router.pick("m")
    assert len([s for s in statements if ROUTE_SQL in s]) == 2
    store.close()


# ── async: the pick's SQL runs on the store's threads ──

def test_async_routed_calls_run_no_sql_on_the_loop(tmp_path, fakes):  # noqa: F811
    """Dead primary, its cooldown, a half-open probe and an RPM-counted deployment: every
    routing statement runs on the ledger's threads, none on the loop."""
    fakes[0].default = Reply(status=503, error="down")
    clock = Clock()
    deps = [{"model": "gpt-4o", "provider": "east"}, {"model": "gpt-4o", "provider": "west", "rpm": 1000}]
    client = _client(tmp_path, fakes, deps, clock=clock,
                     routing={"strategy": "ordered", "cooldown_after": 2, "cooldown_seconds": 30})
    seen = _trace(client)

    async def main() -> str:
        for i in range(8):
            if i == 4:
                clock.advance(31)  # half-open: the probe's claim is a write
            assert (await client.achat("gpt-4o", MSG)).provider == "west"
            stream = await client.achat("gpt-4o", MSG, stream=True)
            async for _ in stream:
                pass
        return threading.current_thread().name
    loop_thread = asyncio.run(main())
    routing = [t for t, sql in seen if ROUTE_SQL in sql]
    assert routing, "routing ran no SQL"
    assert loop_thread not in {t for t, _ in seen}
    assert len(fakes[0].requests) == 3  # two to trip it, one probe
    client.close()


@pytest.mark.parametrize("state", ["memory", "ledger"])
def test_least_busy_under_50_concurrent_async_calls(tmp_path, fakes, state):  # noqa: F811
    for f in fakes[:2]:
        f.default = Reply(delay=0.05)
    client = _client(tmp_path, fakes, TWO, routing={"strategy": "least-busy", "state": state},
                     **({"ledger": "off"} if state == "memory" else {}))
    router = client._router
    worst = [0]
    lock = threading.Lock()
    pick = router.pick

    def watched(*a, **kw):  # the in-flight counts as each pick leaves them
        got = pick(*a, **kw)
        if got is not None:
            with lock:
                flights = [s["in_flight"] for s in router.status()]
                worst[0] = max(worst[0], max(flights) - min(flights))
        return got
    router.pick = watched

    async def main():
        return await asyncio.gather(*(client.achat("gpt-4o", MSG) for _ in range(50)))
    assert len(asyncio.run(main())) == 50 and worst[0] <= 1
    assert abs(len(fakes[0].requests) - len(fakes[1].requests)) <= 1
    assert [s["in_flight"] for s in client.route_status()] == [0, 0]
    client.close()


# ── in-flight leases ──

def test_a_process_killed_mid_call_leaves_no_deployment_busy(tmp_path, fakes):  # noqa: F811
    east, west, _ = fakes
    east.default = Reply(delay=60)
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES)
    ledger = f"sqlite:///{tmp_path}/ledger.db"
    worker = Path(__file__).with_name("_route_worker.py")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, str(worker), "hang", east.base_url("openai"),
                             west.base_url("openai"), ledger, str(prices)], env=env)
    try:
        give_up = time.monotonic() + 60
        while not east.requests and proc.poll() is None and time.monotonic() < give_up:
            time.sleep(0.05)
        assert east.requests, "the worker's call never reached its deployment"
    finally:
        proc.kill()
        proc.wait()
    clock = Clock()
    clock.now = datetime.now(timezone.utc)
    client = _client(tmp_path, fakes, TWO, clock=clock, ledger=ledger, routing={"strategy": "least-busy"})
    busy = {s["deployment"]: s["in_flight"] for s in client.route_status()}
    assert busy == {"east/gpt-4o": 1, "west/gpt-4o": 0}  # its lease lives until the call's deadline
    assert client.explain("gpt-4o", MSG)["route"]["deployment"] == "west/gpt-4o"
    clock.advance(21)  # past the dead call's call_deadline (20 s): its lease has lapsed
    busy = {s["deployment"]: s["in_flight"] for s in client.route_status()}
    assert busy == {"east/gpt-4o": 0, "west/gpt-4o": 0}
    assert client.explain("gpt-4o", MSG)["route"]["deployment"] == "east/gpt-4o"
    client.close()


# ── TPM, before sending ──

def test_tpm_is_reserved_at_pick_and_settled_to_usage(tmp_path, fakes):  # noqa: F811
    deps = [{"model": "gpt-4o", "provider": "east", "tpm": 200}, {"model": "gpt-4o", "provider": "west", "tpm": 100000}]
    client = _client(tmp_path, fakes, deps, routing={"strategy": "ordered"})
    first = client.chat("gpt-4o", MSG, max_tokens=100)
    assert first.provider == "east"
    used = {s["deployment"]: s["tpm_used"] for s in client.route_status()}
    assert used["east/gpt-4o"] == first.usage.total_tokens < 100  # settled: the reservation is gone
    held = client._router.pick("gpt-4o", tokens=150)  # in flight elsewhere, 150 tokens reserved
    assert held.deployment.label == "east/gpt-4o" and held.reserved == 150
    second = client.chat("gpt-4o", MSG, max_tokens=100)  # would pass east's 200 once sent
    assert second.provider == "west" and len(fakes[0].requests) == 1
    client._router.done(held.deployment.label, tokens=20, pick=held)
    assert client.chat("gpt-4o", MSG, max_tokens=100).provider == "east"
    client.close()


def test_every_deployment_at_its_tpm_is_a_rate_limit_error_with_the_earliest_retry(tmp_path, fakes):  # noqa: F811
    clock = Clock()
    deps = [{"model": "gpt-4o", "provider": "east", "tpm": 100}, {"model": "gpt-4o", "provider": "west", "tpm": 100}]
    client = _client(tmp_path, fakes, deps, clock=clock, routing={"strategy": "ordered"})
    a = client._router.pick("gpt-4o", tokens=100)
    clock.advance(10)
    b = client._router.pick("gpt-4o", tokens=100)
    assert (a.deployment.label, b.deployment.label) == ("east/gpt-4o", "west/gpt-4o")
    with pytest.raises(errors.RateLimitError) as exc:
        client.chat("gpt-4o", MSG, max_tokens=10)
    assert exc.value.retry_after == pytest.approx(51.0)  # east's window frees first (61 - 10)
    assert not fakes[0].requests and not fakes[1].requests
    clock.advance(52)
    assert client.chat("gpt-4o", MSG, max_tokens=10).provider == "east"
    client.close()


def test_weighted_holds_its_share_when_some_deployments_are_counted(tmp_path):
    """3:1 over 4,000 picks, the 1 counted atomically (an RPM) and the 3 from the cache."""
    store = open_store(f"sqlite:///{tmp_path}/l.db")
    deps = [DeploymentSpec(model="m", provider="east", weight=3),
            DeploymentSpec(model="m", provider="west", rpm=1_000_000)]
    router = Router(deps, RoutingSettings(), SQLState(lambda: store), WallClock())
    counts: collections.Counter[str] = collections.Counter()
    for _ in range(4000):
        p = router.pick("m")
        counts[p.deployment.label] += 1
        router.done(p.deployment.label, pick=p)
    assert abs(counts["east/m"] / 4000 - 0.75) <= 0.03, counts
    store.close()
