"""Signed webhooks through the outbox (`unillm.webhooks`): real HTTP receivers on loopback that
verify each signature as the README shows, real SDK calls against FakeProvider as the events'
sources, and processes killed mid-delivery."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import free_port, pg_url, postgres_server, postgres_url  # noqa: F401
from unillm import Client, errors
from unillm.config import load_settings
from unillm.testing import FakeProvider, Reply
from unillm.webhooks import OUTBOX, sign, verify

SECRET = "whsec_0123456789abcdef"
HERE = Path(__file__).parent
USAGE = {"input_tokens": 1000, "output_tokens": 1000}


README = (HERE.parent / "README.md").read_text(encoding="utf-8")


def _readme_block(lang: str, marker: str) -> str:
    (block,) = [b for b in re.findall(rf"```{lang}\n(.*?)```", README, re.DOTALL) if marker in b]
    return block


_snippet: dict[str, Any] = {}
exec(_readme_block("python", "def verified("), _snippet)  # noqa: S102 - the README's own code, run as written


def check_signature(secret: str, headers: Any, body: bytes) -> bool:
    """The README's verification snippet, run as written."""
    ok: bool = _snippet["verified"](secret, headers["unillm-signature"], body)
    return ok


def test_the_readme_webhook_and_metrics_tables_are_valid_config() -> None:
    from unillm._toml import tomllib
    hooks = tomllib.loads(_readme_block("toml", "[[alerts.webhooks]]"))
    metrics = tomllib.loads(_readme_block("toml", "allow_from = "))
    s = load_settings(None, alerts=hooks["alerts"], server=metrics["server"])
    assert s.alerts.webhooks[0].events == ["budget.alert", "budget.exceeded", "api_key.invalid"]
    assert s.server.metrics.enabled and s.server.metrics.allow_from == ["10.0.0.0/8"]
    header = sign(SECRET, int(time.time()), b"{}")
    assert check_signature(SECRET, {"unillm-signature": header}, b"{}") and verify(SECRET, header, b"{}")
    stale = sign(SECRET, int(time.time()) - 600, b"{}")
    assert not check_signature(SECRET, {"unillm-signature": stale}, b"{}") and not verify(SECRET, stale, b"{}")


class Receiver:
    """A loopback endpoint recording each POST; ``statuses`` are answered in turn (then 200)."""

    def __init__(self, statuses: list[int] | None = None, port: int = 0) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses or [])
        self.gets = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("location", outer.url)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802 - what a followed redirect would turn the POST into
                outer.gets += 1
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/unillm?token=t0ken"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.got]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(Reply(usage=USAGE)) as f:
        yield f


def hook(url: str, **kw: Any) -> dict[str, Any]:
    return {"url": url, "secret": SECRET, "retry_initial": 0.05, **kw}


def client_for(fake: FakeProvider, tmp_path: Path, hooks: list[dict[str, Any]], **kw: Any) -> Client:
    providers = {name: {**table, "max_retries": 0} for name, table in fake.providers("openai").items()}
    return Client(providers=providers, ledger=kw.pop("ledger", f"sqlite:///{tmp_path}/l.db"), cache="off",
                  alerts={"webhooks": hooks}, **kw)


def test_webhooks_are_validated_at_load(tmp_path: Path) -> None:
    cases = [({"url": "ftp://hooks.example/x"}, r"alerts\.webhooks\[0\]\.url: must be an http"),
             ({"url": "https://"}, "with a host"),
             ({"url": "https://h:99999/x"}, "must be an http"),
             ({"url": "https://h/x", "events": ["budget.alrt"]}, "did you mean 'budget.alert'"),
             ({"url": "https://h/x", "events": []}, "lists no event"),
             ({"url": "https://h/x", "secret": "short"}, r"secret: .*at least 16"),
             ({"url": "https://h/x", "secrt": "x" * 20}, "secrt")]
    for table, message in cases:
        with pytest.raises(errors.ConfigError, match=message):
            load_settings(None, alerts={"webhooks": [table]})
    with pytest.raises(errors.ConfigError) as caught:  # the secret is never echoed
        load_settings(None, alerts={"webhooks": [{"url": "https://h/x", "secret": "tiny-secret"}]})
    assert "tiny-secret" not in str(caught.value)
    assert load_settings(None, alerts={"webhooks": [{"url": "https://h/x"}]}).alerts.webhooks[0].events == [
        "budget.alert", "budget.exceeded", "optimization.applied", "api_key.invalid", "deployment.cooldown"]
    with pytest.raises(errors.ConfigError, match="need a ledger"):
        Client(ledger="off", alerts={"webhooks": [{"url": "https://h/x"}]})


def test_budget_events_arrive_signed_with_an_idempotency_id(fake: FakeProvider, tmp_path: Path,
                                                            receiver: Receiver) -> None:
    client = client_for(fake, tmp_path, [hook(receiver.url)],
                        budgets=[{"name": "team", "limit_usd": "0.001", "alert_at": [0.5]}])
    client.chat(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=50)
    client.chat(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=50)
    assert client.budgets.alerts.flush(10)
    client.close()
    assert sorted(e["event"] for e in receiver.events()) == ["budget.alert", "budget.exceeded"]
    for headers, body in receiver.got:
        assert check_signature(SECRET, headers, body)
        assert headers["unillm-webhook-id"] == json.loads(body)["id"]
        assert headers["unillm-webhook-timestamp"] == headers["unillm-signature"].split(",")[0][2:]
        assert not check_signature("another-secret-of-16+", headers, body)
        assert not check_signature(SECRET, headers, body.replace(b"team", b"tean"))
    alert = next(e for e in receiver.events() if e["event"] == "budget.alert")
    assert alert["budget"] == "team" and alert["limit"] == "0.001" and alert["threshold"] == 0.5
    store = Client(ledger=f"sqlite:///{tmp_path}/l.db").ledger.store
    with store.transaction() as tx:
        rows = tx.execute(f"SELECT id, state, attempts FROM {OUTBOX}").fetchall()
    assert sorted(r[0] for r in rows) == sorted(e["id"] for e in receiver.events())
    assert {(r[1], r[2]) for r in rows} == {("delivered", 1)}


def test_a_rule_applied_fires_optimization_applied_to_callbacks_and_subscribed_hooks_only(
        fake: FakeProvider, tmp_path: Path, receiver: Receiver) -> None:
    other = Receiver()
    try:
        client = client_for(fake, tmp_path, [hook(receiver.url, events=["optimization.applied"]),
                                             hook(other.url, events=["budget.alert"])],
                            rules=[{"name": "mini", "when": {"model": "gpt-4o"}, "use": "gpt-4o-mini"}])
        seen: list[dict[str, Any]] = []
        client.on("optimization.applied", seen.append)
        r = client.chat(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], tags={"team": "a"})
        client.chat(model="gpt-4o-mini", messages=[{"role": "user", "content": "no rule applies"}])
        assert client.budgets.alerts.flush(10)
        client.close()
    finally:
        other.server.shutdown()
    assert r.rule == "mini"
    (event,) = receiver.events()
    assert {k: event[k] for k in ("event", "rule", "requested_model", "model", "swapped_from", "tags")} == {
        "event": "optimization.applied", "rule": "mini", "requested_model": "gpt-4o",
        "model": "openai/gpt-4o-mini", "swapped_from": "openai/gpt-4o", "tags": {"team": "a"}}
    assert [e["rule"] for e in seen] == ["mini"]
    assert other.got == []  # it listed only budget.alert


async def test_an_async_call_queues_its_event_and_the_thread_writes_it(
        fake: FakeProvider, tmp_path: Path, receiver: Receiver) -> None:
    client = client_for(fake, tmp_path, [hook(receiver.url)],
                        rules=[{"name": "mini", "when": {"model": "gpt-4o"}, "use": "gpt-4o-mini"}])
    await client.achat(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert client.budgets.alerts.flush(10)
    await client.aclose()
    assert [e["event"] for e in receiver.events()] == ["optimization.applied"]


def test_failed_deliveries_are_retried_with_the_same_id_then_given_up(fake: FakeProvider, tmp_path: Path) -> None:
    failing = Receiver([500] * 10)
    try:
        client = client_for(fake, tmp_path, [hook(failing.url, max_attempts=3)],
                            rules=[{"name": "mini", "when": {"model": "gpt-4o"}, "use": "gpt-4o-mini"}])
        client.chat(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        assert client.budgets.alerts.flush(10)
        with client.ledger.store.transaction() as tx:
            (row,) = tx.execute(f"SELECT id, state, attempts, last_error FROM {OUTBOX}").fetchall()
        client.close()
    finally:
        failing.server.shutdown()
    assert len(failing.got) == 3 and {h["unillm-webhook-id"] for h, _ in failing.got} == {row[0]}
    assert row[1:] == ("failed", 3, "HTTP 500")


def test_a_redirect_is_a_failed_attempt_never_followed(fake: FakeProvider, tmp_path: Path) -> None:
    moved = Receiver([302])
    try:
        client = client_for(fake, tmp_path, [hook(moved.url)],
                            rules=[{"name": "mini", "when": {"model": "gpt-4o"}, "use": "gpt-4o-mini"}])
        client.chat(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        assert client.budgets.alerts.flush(10)
        client.close()
    finally:
        moved.server.shutdown()
    assert len(moved.got) == 2 and moved.gets == 0  # posted again, the body never lost to a GET


def test_an_invalid_key_at_the_gateway_is_an_event_without_the_key(fake: FakeProvider, tmp_path: Path,
                                                                   receiver: Receiver) -> None:
    pytest.importorskip("starlette")
    from tests.test_server_support import make_served
    for s in make_served(fake, tmp_path, alerts={"webhooks": [hook(receiver.url, events=["api_key.invalid"])]}):
        secret = s.key(user="ann")
        forged = secret[:-4] + "AAAA"
        for bad in (forged, "sk-live-some-other-vendors-key", forged):
            r = httpx.get(s.url + "/v1/models", headers={"authorization": f"Bearer {bad}"})
            assert r.status_code == 401
        assert s.client.budgets.alerts.flush(10)
    (event,) = receiver.events()  # the next two fall within the minute: counted in the next event
    assert event["event"] == "api_key.invalid" and event["count"] == 1 and event["key_prefix"] == secret[:10]
    assert forged not in receiver.got[0][1].decode() and forged[10:] not in receiver.got[0][1].decode()


def test_invalid_keys_seen_within_the_minute_are_counted_in_the_next_event() -> None:
    from unillm.budgets import Alerts
    from unillm.server.alarms import InvalidKeys
    now = [1000.0]
    alerts, seen = Alerts(), []
    alerts.on("api_key.invalid", seen.append)
    keys = InvalidKeys(alerts, clock=lambda: now[0], every=60)
    for t in (0, 10, 20, 59, 61, 62):
        now[0] = 1000.0 + t
        keys.seen("ulk_" + "x" * 40)
    assert [e["count"] for e in seen] == [1, 4]  # at t=0, then at t=61: 10, 20, 59 and 61
    assert {e["key_prefix"] for e in seen} == {"ulk_xxxxxx"}


def test_the_gateway_resumes_at_startup_what_an_earlier_process_left(fake: FakeProvider, tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    import socket

    import uvicorn

    from tests.test_server_support import run_in_thread
    from unillm.server.app import create_app
    port = free_port()
    hooks = [hook(f"http://127.0.0.1:{port}/hook", timeout=0.5)]
    rules = [{"name": "mini", "when": {"model": "gpt-4o"}, "use": "gpt-4o-mini"}]
    first = client_for(fake, tmp_path, hooks, rules=rules)
    for _ in range(2):  # nobody listens yet: both rows stay pending
        first.chat(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    first.close()
    receiver = Receiver(port=port)
    client = client_for(fake, tmp_path, hooks, rules=rules)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    try:
        for _ in run_in_thread(uvicorn.Config(create_app(client), log_level="warning", lifespan="on"), sock):
            _wait(lambda: len(receiver.got) >= 2)  # no call made: startup resumed the outbox
    finally:
        receiver.server.shutdown()
    assert len({e["id"] for e in receiver.events()}) == 2


def test_the_outbox_works_on_postgresql(fake: FakeProvider, pg_url: str, receiver: Receiver,
                                        tmp_path: Path) -> None:
    client = client_for(fake, tmp_path, [hook(receiver.url)], ledger=pg_url,
                        rules=[{"name": "mini", "when": {"model": "gpt-4o"}, "use": "gpt-4o-mini"}])
    for _ in range(3):
        client.chat(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert client.budgets.alerts.flush(10)
    with client.ledger.store.transaction() as tx:
        states = tx.execute(f"SELECT state, attempts FROM {OUTBOX}").fetchall()
    client.close()
    assert len({e["id"] for e in receiver.events()}) == 3 and [tuple(s) for s in states] == [("delivered", 1)] * 3


def test_no_webhooks_no_outbox(fake: FakeProvider, tmp_path: Path) -> None:
    client = client_for(fake, tmp_path, [], rules=[{"name": "mini", "when": {"model": "gpt-4o"}, "use": "gpt-4o-mini"}])
    assert client.budgets.alerts.outbox is None and not client.budgets.alerts.wants("optimization.applied")
    client.chat(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with client.ledger.store.transaction() as tx:
        assert tx.execute(f"SELECT COUNT(*) FROM {OUTBOX}").fetchone()[0] == 0
    client.close()


def _start(args: list[str], log: Path | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True, env=env)


def _lines(path: Path) -> list[dict[str, Any]]:
    """The receiver's complete lines (one still being written is left for the next read)."""
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.split("\n")[:-1]]


def _wait(cond: Any, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_receiver_and_sender_killed_mid_delivery_every_event_arrives_once_by_id(
        fake: FakeProvider, tmp_path: Path) -> None:
    """The bar: the receiver is killed while a delivery is in flight, the sender is killed with
    rows pending; both restart; deduplicated by idempotency id, every event arrived exactly once,
    each correctly signed."""
    port, log, n = free_port(), tmp_path / "received.jsonl", 6
    table = fake.providers("openai")["openai"]
    config = tmp_path / "unillm.toml"
    config.write_text("\n".join([
        f"ledger = {json.dumps(f'sqlite:///{tmp_path}/l.db')}", 'cache = "off"', "",
        "[providers.openai]", *(f"{k} = {json.dumps(v)}" for k, v in table.items()), "max_retries = 0", "",
        "[[rules]]", 'name = "mini"', 'when = { model = "gpt-4o" }', 'use = "gpt-4o-mini"', "",
        "[[alerts.webhooks]]", f'url = "http://127.0.0.1:{port}/hook"', 'events = ["optimization.applied"]',
        f'secret = "{SECRET}"', "timeout = 1", "retry_initial = 0.2", "retry_max = 1"]) + "\n")
    receiver = _start([str(HERE / "_webhook_receiver.py"), str(port), SECRET, str(log), "3"])
    sender = None
    try:
        assert receiver.stdout and receiver.stdout.readline().strip() == "ready"
        sender = _start([str(HERE / "_webhook_sender.py"), str(config), "send", str(n)])
        assert sender.stdout and sender.stdout.readline().strip() == "sent"  # all n in the outbox
        _wait(lambda: len(_lines(log)) >= 3)  # the third is being delivered: the receiver hangs on it
        receiver.send_signal(signal.SIGKILL)
        receiver.wait(10)
        time.sleep(0.5)  # the sender sees the failure and schedules its retries
        sender.send_signal(signal.SIGKILL)
        sender.wait(10)
        before = {e["id"] for e in _lines(log)}
        assert len(before) == 3
        receiver = _start([str(HERE / "_webhook_receiver.py"), str(port), SECRET, str(log)])
        assert receiver.stdout and receiver.stdout.readline().strip() == "ready"
        sender = _start([str(HERE / "_webhook_sender.py"), str(config), "resume"])
        assert sender.stdout and sender.stdout.readline().strip() == "flushed"
        sender.wait(20)
    finally:
        for proc in (receiver, sender):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
    got = _lines(log)
    ids = [e["id"] for e in got]
    assert len(set(ids)) == n and len(ids) > n  # each exactly once after dedup; at least once before
    assert all(e["signed"] and e["fresh"] and e["header_id"] == e["id"] for e in got)
    assert {e["body"]["event"] for e in got} == {"optimization.applied"}
    store = Client(ledger=f"sqlite:///{tmp_path}/l.db").ledger.store
    with store.transaction() as tx:
        rows = tx.execute(f"SELECT id, state FROM {OUTBOX}").fetchall()
    assert {r[0] for r in rows} == set(ids) and {r[1] for r in rows} == {"delivered"}
