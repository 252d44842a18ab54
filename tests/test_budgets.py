"""Budgets as a user relies on them: refused before sending, never overshot, alerts once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from unillm import Client, errors
from unillm.cli import cli
from unillm.testing import FakeProvider, Reply

HI = [{"role": "user", "content": "hi"}]
WORKER = Path(__file__).with_name("_budget_worker.py")
# gpt-4o-mini: $0.15 / 1M input, $0.60 / 1M output
USAGE = {"input_tokens": 5, "output_tokens": 50}


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def make(fake: FakeProvider, tmp_path: Path, budgets: list, **kw) -> Client:
    kw.setdefault("ledger", f"sqlite:///{tmp_path / 'ledger.db'}")
    return Client(providers=fake.providers(), budgets=budgets, sleep=lambda s: None, **kw)


def ok_spend(client: Client) -> Decimal:
    return sum((r.total_usd for r in client.ledger.records() if r.total_usd is not None), Decimal(0))


def test_refused_before_sending_with_every_detail(fake: FakeProvider, tmp_path: Path) -> None:
    fake.default = Reply(usage=USAGE)
    client = make(fake, tmp_path, [{"name": "tiny", "scope": {"project": "bot"}, "limit_usd": "0.0001"}])
    admitted = 0
    with pytest.raises(errors.BudgetExceededError) as info:
        for _ in range(20):
            client.chat(model="gpt-4o-mini", messages=HI, max_tokens=50, tags={"project": "bot"})
            admitted += 1
    err = info.value
    assert len(fake.requests) == admitted == 3       # $0.0000308 each: the 4th worst case does not fit
    assert err.budget == "tiny" and err.scope == {"project": "bot"} and err.period.startswith("20")
    assert err.limit == Decimal("0.0001") and err.spent == 3 * Decimal("0.00003075")
    assert err.reserved == 0 and err.estimate > err.limit - err.spent and err.resets_at
    statuses = [r.status for r in client.ledger.records()]
    assert statuses.count("ok") == 3 and statuses.count("budget_denied") == 1
    # another project is outside the budget's scope
    client.chat(model="gpt-4o-mini", messages=HI, max_tokens=50, tags={"project": "other"})
    assert ok_spend(client) <= Decimal("0.0001") + 1 * Decimal("0.00003075")


def test_missing_max_tokens_gets_a_cap_the_budget_can_pay(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path, [{"name": "b", "limit_usd": "0.001"}])
    client.chat(model="gpt-4o-mini", messages=HI)
    sent = fake.requests[-1].json
    cap = sent.get("max_tokens") or sent.get("max_completion_tokens")
    # (0.001 - prompt) / 0.0000006 per token ~ 1666, below the 4096 default maximum
    assert 1600 < cap < 1667
    big = make(fake, tmp_path / "2", [{"name": "b", "limit_usd": 100}])
    big.chat(model="gpt-4o-mini", messages=HI)      # the model's own maximum output, from the price book
    assert (fake.requests[-1].json.get("max_tokens") or fake.requests[-1].json["max_completion_tokens"]) == 16384
    big.chat(model="mistral/mistral-small", messages=HI)   # maximum unknown: the documented default
    assert fake.requests[-1].json["max_tokens"] == 4096


def test_per_user_scope_is_one_budget_per_user(fake: FakeProvider, tmp_path: Path) -> None:
    fake.default = Reply(usage=USAGE)
    client = make(fake, tmp_path, [{"name": "per user", "scope": {"user": "*"}, "limit_requests": 2}])
    for user in ("ann", "bob"):
        for _ in range(2):
            client.chat(model="gpt-4o-mini", messages=HI, max_tokens=50, tags={"user": user})
    with pytest.raises(errors.BudgetExceededError) as info:
        client.chat(model="gpt-4o-mini", messages=HI, max_tokens=50, tags={"user": "ann"})
    assert info.value.scope == {"user": "ann"} and info.value.unit == "requests"
    client.chat(model="gpt-4o-mini", messages=HI, max_tokens=50)  # no user tag: outside the budget
    rows = {tuple(r["scope"].items()): r for r in client.budgets.status()}
    assert rows[(("user", "ann"),)]["requests"] == 2 and rows[(("user", "bob"),)]["requests"] == 2


def test_daily_period_resets_at_local_midnight(fake: FakeProvider, tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 3, 28, 22, 30, tzinfo=timezone.utc))   # 23:30 in Paris
    client = make(fake, tmp_path, [{"name": "day", "period": "daily", "timezone": "Europe/Paris",
                                    "limit_requests": 1}], clock=clock)
    client.chat(model="gpt-4o-mini", messages=HI, max_tokens=5)
    with pytest.raises(errors.BudgetExceededError) as info:
        client.chat(model="gpt-4o-mini", messages=HI, max_tokens=5)
    assert info.value.resets_at == "2026-03-28T23:00:00+00:00"         # Paris midnight, before DST
    clock.at = datetime(2026, 3, 28, 23, 0, tzinfo=timezone.utc)
    client.chat(model="gpt-4o-mini", messages=HI, max_tokens=5)         # a new day in Paris
    (row,) = client.budgets.status()
    assert row["period"] == "2026-03-29" and row["resets_at"] == "2026-03-29T22:00:00+00:00"  # after DST


def test_downgrade_reroutes_to_a_cheaper_model(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path, [{"name": "b", "limit_usd": "0.0005", "on_exceed": "downgrade:gpt-4o-mini"}])
    r = client.chat(model="gpt-4o", messages=HI, max_tokens=100)   # gpt-4o worst case $0.001 does not fit
    assert r.model == "gpt-4o-mini" and fake.requests[-1].json["model"] == "gpt-4o-mini"
    (rec,) = list(client.ledger.records())
    assert rec.rule == "budget:b" and rec.requested_model == "gpt-4o" and rec.status == "ok"


def test_warn_admits_and_fires_exceeded_once(fake: FakeProvider, tmp_path: Path) -> None:
    fake.default = Reply(usage=USAGE)
    client = make(fake, tmp_path, [{"name": "soft", "limit_requests": 1, "on_exceed": "warn"}])
    seen: list[dict] = []
    client.on("budget.exceeded", seen.append)
    for _ in range(4):
        client.chat(model="gpt-4o-mini", messages=HI, max_tokens=50)
    assert len(fake.requests) == 4 and len(seen) == 1 and seen[0]["budget"] == "soft"


def test_alerts_fire_exactly_once_under_concurrency(fake: FakeProvider, tmp_path: Path) -> None:
    fake.default = Reply(usage=USAGE)
    client = make(fake, tmp_path, [{"name": "b", "limit_usd": "0.01", "alert_at": [0.001, 0.002]}])
    seen: list[dict] = []
    lock = threading.Lock()
    client.on("budget.alert", lambda e: (lock.acquire(), seen.append(e), lock.release()))

    def work() -> None:
        for _ in range(5):
            client.chat(model="gpt-4o-mini", messages=HI, max_tokens=50)
    threads = [threading.Thread(target=work) for _ in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(e["threshold"] for e in seen) == [0.001, 0.002]
    assert all(Decimal(e["spent"]) >= Decimal("0.01") * Decimal(str(e["threshold"])) for e in seen)


def test_webhook_is_retried_until_the_receiver_accepts(fake: FakeProvider, tmp_path: Path) -> None:
    got: list[dict] = []
    attempts = []

    class Receiver(BaseHTTPRequestHandler):
        def log_message(self, *a) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            attempts.append(body)
            status = 503 if len(attempts) <= 2 else 200     # fail the first two attempts
            if status == 200:
                got.append(body)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        fake.default = Reply(usage=USAGE)
        client = make(fake, tmp_path, [{"name": "hooked", "limit_usd": "0.00005", "alert_at": [0.5]}],
                      alerts={"webhook": f"http://127.0.0.1:{server.server_address[1]}/hook?token=s3cret"})
        client.budgets.alerts.backoff = 0.01
        client.chat(model="gpt-4o-mini", messages=HI, max_tokens=50)      # spends 61% of the limit
        with pytest.raises(errors.BudgetExceededError):
            client.chat(model="gpt-4o-mini", messages=HI, max_tokens=50)
        assert client.budgets.alerts.flush(10)
    finally:
        server.shutdown()
    events = sorted(e["event"] for e in got)
    assert events == ["budget.alert", "budget.exceeded"] and len(attempts) == 4
    alert = next(e for e in got if e["event"] == "budget.alert")
    assert alert["budget"] == "hooked" and alert["limit"] == "0.00005" and alert["scope"] == {}


def test_a_killed_process_leaves_a_row_counted_at_its_worst_case(fake: FakeProvider, tmp_path: Path) -> None:
    """SIGKILL mid-call: the vendor may bill that call, so its write-ahead row is not lost and its
    hold is not refunded: once the lease lapses it is spend at the hold's worst case, row `unknown`."""
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    budget = [{"name": "b", "limit_usd": "0.001", "limit_requests": 2, "lease_seconds": 3}]
    fake.queue(Reply(delay=30))                           # the worker's call hangs at the vendor
    proc = subprocess.Popen([sys.executable, str(WORKER), "hang", fake.base_url("openai"), ledger,
                             json.dumps(budget)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "calling"
        client = make(fake, tmp_path, budget)
        for _ in range(200):
            if client.budgets.status()[0]["in_flight"] == 1:
                break
            time.sleep(0.05)
        held = client.budgets.status()[0]["reserved_usd"]
        (flight,) = client.budgets.in_flight()              # written ahead, with its hold
        assert held > 0 and flight["reserved_usd"] == held and flight["model"] == "gpt-4o-mini"
        assert list(client.ledger.records()) == []
        time.sleep(3.5)                                   # the live worker's heartbeat keeps its hold
        assert client.budgets.status()[0]["in_flight"] == 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        time.sleep(3.5)                                   # nothing renews it now
        result = CliRunner().invoke(cli, ["budgets", "reconcile", "--ledger", ledger])
        assert result.exit_code == 0 and "1 lapsed call counted at worst case" in result.output
        later = make(fake, tmp_path, budget)
        fake.reset()
        later.chat(model="gpt-4o-mini", messages=HI, max_tokens=5)   # the lapsed hold was counted, not refunded
        rows = {r.status: r for r in later.ledger.records()}
        assert sorted(rows) == ["ok", "unknown"]
        assert rows["unknown"].total_usd == held and rows["unknown"].error_class == "LeaseExpired"
        (status,) = later.budgets.status()
        assert status["in_flight"] == 0 and status["requests"] == 2
        assert status["spent_usd"] == held + rows["ok"].total_usd
        with pytest.raises(errors.BudgetExceededError):   # 2 requests: the dead one counts
            later.chat(model="gpt-4o-mini", messages=HI, max_tokens=5)
        assert later.ledger.summary()[0]["cost_usd"] == status["spent_usd"]
    finally:
        if proc.poll() is None:
            proc.kill()


def test_budget_config_errors_name_index_and_key(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match=r"budgets\[0\] \('x'\)\.on_exceed"):
        Client(budgets=[{"name": "x", "limit_usd": 1, "on_exceed": "explode"}], ledger="off")
    with pytest.raises(errors.ConfigError, match="needs limit_usd"):
        Client(budgets=[{"name": "x"}], ledger="off")
    with pytest.raises(errors.ConfigError, match=r"budgets\[0\] \('x'\)\.perod: unknown key"):
        Client(budgets=[{"name": "x", "limit_usd": 1, "perod": "daily"}], ledger="off")


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(5))
def test_many_processes_never_overshoot(fake: FakeProvider, tmp_path: Path, round_: int) -> None:
    """8 processes x 4 threads x 5 calls against one SQLite ledger; the budget admits about 40%."""
    fake.default = Reply(usage=USAGE)
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    limit = Decimal("0.002")
    budget = [{"name": "shared", "limit_usd": str(limit)}]
    procs = [subprocess.Popen([sys.executable, str(WORKER), "stress", fake.base_url("openai"), ledger,
                               json.dumps(budget)], stdout=subprocess.PIPE, text=True) for _ in range(8)]
    results = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    admitted = sum(r["ok"] for r in results)
    denied = sum(r["denied"] for r in results)
    assert [e for r in results for e in r["errors"]] == []
    assert admitted + denied == 8 * 4 * 5 and 0 < admitted < 160
    client = Client(ledger=ledger)
    recs = list(client.ledger.records())
    spent = sum((r.total_usd for r in recs if r.status == "ok"), Decimal(0))
    assert spent <= limit                                              # zero overshoot
    assert sum(r.status == "ok" for r in recs) == admitted               # every admitted call recorded
    assert sum(r.status == "budget_denied" for r in recs) == denied
    (status,) = Client(ledger=ledger, budgets=budget).budgets.status()
    assert status["spent_usd"] == spent and status["in_flight"] == 0


def test_a_refusal_inside_the_adapter_releases_the_hold_and_is_recorded(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path, [{"name": "b", "limit_usd": 1}])
    with pytest.raises(errors.UnsupportedParamError):   # Anthropic takes no temperature
        client.chat(model="claude-haiku-4-5", messages=HI, temperature=0.5, max_tokens=10, drop_params=False)
    assert fake.requests == []
    (status,) = client.budgets.status()
    assert status["in_flight"] == 0 and status["reserved_usd"] == 0      # the hold was released
    (rec,) = list(client.ledger.records())
    assert rec.status == "error" and rec.error_class == "UnsupportedParamError"


async def test_an_async_stream_dropped_unread_is_recorded_and_releases_its_hold(fake: FakeProvider,
                                                                                   tmp_path: Path) -> None:
    import gc
    client = make(fake, tmp_path, [{"name": "b", "limit_usd": 1}])
    fake.queue(Reply(text="never read", chunk_size=4))
    stream = await client.achat(model="gpt-4o-mini", messages=HI, max_tokens=20, stream=True)
    assert client.budgets.status()[0]["in_flight"] == 1
    del stream
    gc.collect()
    (status,) = client.budgets.status()
    assert status["in_flight"] == 0 and status["requests"] == 1
    (rec,) = list(client.ledger.records())
    assert rec.status == "partial" and rec.stream


def test_budget_pressure_drives_a_rule(fake: FakeProvider, tmp_path: Path) -> None:
    """`budget_used_above` sees the tightest matching budget: once 40% is spent, route to mini."""
    fake.default = Reply(usage={"input_tokens": 1000, "output_tokens": 1000})
    client = make(fake, tmp_path, [{"name": "team", "scope": {"project": "bot"}, "limit_usd": "0.025"}],
                  rules=[{"name": "save when 40% spent", "use": "gpt-4o-mini",
                          "when": {"model": "gpt-4o", "budget_used_above": 0.4}}])
    tags = {"project": "bot"}
    first = client.chat(model="gpt-4o", messages=HI, max_tokens=1000, tags=tags)      # $0.0125: half
    second = client.chat(model="gpt-4o", messages=HI, max_tokens=1000, tags=tags)
    assert first.model == "gpt-4o" and first.rule is None
    assert second.model == "gpt-4o-mini" and second.rule == "save when 40% spent"
    other = client.chat(model="gpt-4o", messages=HI, max_tokens=1000, tags={"project": "else"})
    assert other.model == "gpt-4o"                      # outside the budget's scope: no pressure
