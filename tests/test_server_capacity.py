"""`unillm serve` under load (issue 21): a saturated gateway answers 503 + Retry-After instead
of resetting connections, a kept-alive connection lives ``[server] keep_alive_seconds``, and
no request waits on the key table's SQL on the event loop.

The gateway is the real ``python -m unillm serve`` process (its uvicorn, its h11 protocol),
FakeProvider upstream, the official OpenAI SDK or raw sockets as the client."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

from tests.servers import free_port, wait_ready
from tests.test_server_support import make_served
from unillm.server.keys import KeyStore
from unillm.server.run import AppFactory
from unillm.testing import FakeProvider, Reply

REPO = Path(__file__).resolve().parents[1]
MSG = [{"role": "user", "content": "2+2?"}]


@dataclass
class Serve:
    url: str
    key: str
    config: Path
    proc: subprocess.Popen[str]

    def sdk(self) -> Any:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=self.key, max_retries=0)

    def rows(self) -> list[Any]:
        return list(AppFactory(str(self.config)).client().ledger.records())


@contextmanager
def serve(fake: FakeProvider, tmp_path: Path, **server: Any) -> Iterator[Serve]:
    """``unillm serve --config unillm.toml`` with ``[server]`` = ``server``, on a free port."""
    table = fake.providers("openai")["openai"]
    lines = [f"ledger = {json.dumps(f'sqlite:///{tmp_path}/l.db')}", 'cache = "off"', "",
             "[server]", *(f"{k} = {json.dumps(v)}" for k, v in server.items()), "",
             "[providers.openai]", *(f"{k} = {json.dumps(v)}" for k, v in table.items()), "max_retries = 0"]
    config = tmp_path / "unillm.toml"
    config.write_text("\n".join(lines) + "\n")
    secret, _ = KeyStore(AppFactory(str(config)).client().ledger.store).create(user="ann")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "unillm", "serve", "--config", str(config),
                             "--port", str(port), "--log-level", "warning"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**__import__("os").environ, "PYTHONPATH": str(REPO),
                                 "UNILLM_HOME": str(tmp_path / "home")})
    try:
        wait_ready(f"http://127.0.0.1:{port}/health", proc)
        yield Serve(f"http://127.0.0.1:{port}", secret, config, proc)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


# ── saturation ──────────────────────────────────────────────────────────────

async def _warm(gw: Serve) -> None:
    """One call first: the gateway's first call loads the vendor SDK (seconds on a busy host)."""
    await gw.sdk().chat.completions.create(model="gpt-4o-mini", messages=MSG)


def test_a_saturated_gateway_answers_503_with_retry_after_and_serves_what_it_admitted(tmp_path):
    """2 in flight, 1 waiting: of 6 concurrent calls 3 are answered, 3 get 503 at once."""
    with FakeProvider(Reply(text="ok", usage={"input_tokens": 3, "output_tokens": 1}, delay=3.0)) as fake:
        with serve(fake, tmp_path, max_concurrent_requests=2, max_queued_requests=1) as gw:
            async def call() -> Any:
                try:
                    return await gw.sdk().chat.completions.create(model="gpt-4o-mini", messages=MSG)
                except openai.APIStatusError as exc:
                    return exc

            async def main() -> tuple[list[Any], int, int]:
                await _warm(gw)
                calls = [asyncio.ensure_future(call()) for _ in range(6)]
                while sum(c.done() for c in calls) < 3:  # the three refused, first
                    await asyncio.sleep(0.05)
                import httpx
                async with httpx.AsyncClient() as http:  # a busy gateway still answers its probe
                    health = (await http.get(gw.url + "/health", timeout=30)).status_code
                pending = sum(not c.done() for c in calls)
                return list(await asyncio.gather(*calls)), health, pending

            outcomes, health, pending = asyncio.run(main())
            rows = gw.rows()
    answered = [o for o in outcomes if not isinstance(o, Exception)]
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert [a.choices[0].message.content for a in answered] == ["ok"] * 3
    assert len(refused) == 3 and {r.status_code for r in refused} == {503}
    for r in refused:
        assert r.response.headers["retry-after"] == "1"
        assert r.body["code"] == "gateway_saturated" and "max_queued_requests" in r.body["message"]
    assert health == 200 and pending >= 1  # answered while admitted calls were still running
    assert len(fake.requests) == 1 + 3  # the warm-up and the admitted: the refused never reached it
    assert sorted(r.status for r in rows) == ["ok"] * 4


def test_a_request_waits_at_most_queue_timeout_for_a_place(tmp_path):
    with FakeProvider(Reply(text="ok", usage={"input_tokens": 3, "output_tokens": 1}, delay=4.0)) as fake:
        with serve(fake, tmp_path, max_concurrent_requests=1, max_queued_requests=5, queue_timeout=0.5) as gw:
            async def main() -> tuple[Any, Any, float, bool]:
                await _warm(gw)
                first = asyncio.ensure_future(gw.sdk().chat.completions.create(model="gpt-4o-mini", messages=MSG))
                while not fake.requests[1:]:  # the first is upstream, holding the only place
                    await asyncio.sleep(0.05)
                t0 = time.perf_counter()
                with pytest.raises(openai.InternalServerError) as refused:
                    await gw.sdk().chat.completions.create(model="gpt-4o-mini", messages=MSG)
                waited, early = time.perf_counter() - t0, not first.done()
                return await first, refused.value, waited, early

            first, refused, waited, early = asyncio.run(main())
    assert first.choices[0].message.content == "ok"
    assert refused.status_code == 503 and "waited 0.5 s" in refused.body["message"]
    assert waited >= 0.45 and early  # refused after its wait, before the first call finished


# ── keep-alive ──────────────────────────────────────────────────────────────

def _request(key: str) -> bytes:
    return (f"GET /v1/models HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {key}\r\n\r\n").encode()


def _response(conn: socket.socket) -> bytes:
    """One response (these have a content-length), or b"" when the server closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += conn.recv(65536)
    return head


def test_kept_alive_connection_lives_keep_alive_seconds_not_the_head_timeout(tmp_path):
    """Idle between requests longer than header_timeout: still served on the same connection;
    idle past keep_alive_seconds: closed by the gateway."""
    with FakeProvider() as fake, serve(fake, tmp_path, keep_alive_seconds=4, header_timeout=1) as gw:
        host, port = gw.url.removeprefix("http://").split(":")
        conn = socket.create_connection((host, int(port)), timeout=10)
        conn.sendall(_request(gw.key))
        assert _response(conn).startswith(b"HTTP/1.1 200")
        time.sleep(2.0)  # past header_timeout, within keep_alive_seconds
        conn.sendall(_request(gw.key))
        assert _response(conn).startswith(b"HTTP/1.1 200")
        idle = time.monotonic()
        assert conn.recv(65536) == b""  # closed by the gateway after keep_alive_seconds
        assert 3.0 < time.monotonic() - idle < 8.0
        conn.close()


@pytest.mark.parametrize("http", ["GuardedHttpToolsProtocol", "GuardedH11Protocol"])
def test_a_kept_alive_connection_leaves_no_dead_timer_per_request_in_the_loop(http):
    """uvicorn arms a keep-alive timer after every response and cancels it on the next request:
    a busy connection left one dead handle per request in the loop's timer heap, which every
    timer operation of the loop then paid for. The gateway's protocol keeps one per connection."""
    from tests.test_server_support import run_in_thread
    from unillm.server import protocol
    loops: list[asyncio.AbstractEventLoop] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        loops.append(asyncio.get_running_loop())
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    config = protocol.GatewayConfig(app, log_level="warning", lifespan="off", timeout_keep_alive=120,
                                    loop="asyncio", http=getattr(protocol, http))
    for url in run_in_thread(config, sock):
        conn = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10)
        for _ in range(150):
            conn.sendall(b"GET / HTTP/1.1\r\nhost: gw\r\n\r\n")
            assert _response(conn).startswith(b"HTTP/1.1 200")
        timers = list(loops[-1]._scheduled)  # type: ignore[attr-defined] # the loop's timer heap
        conn.close()
    assert len(timers) < 10, f"{len(timers)} timers ({sum(t.cancelled() for t in timers)} cancelled)"


def test_a_slow_head_on_a_kept_alive_connection_still_gets_408(tmp_path):
    with FakeProvider() as fake, serve(fake, tmp_path, keep_alive_seconds=30, header_timeout=1) as gw:
        host, port = gw.url.removeprefix("http://").split(":")
        conn = socket.create_connection((host, int(port)), timeout=10)
        conn.sendall(_request(gw.key))
        assert _response(conn).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        conn.sendall(b"GET /v1/models HTTP/1.1\r\n")  # the head never ends
        for _ in range(4):
            time.sleep(0.3)
            try:
                conn.sendall(b"x-slow: 1\r\n")  # trickling does not reset the clock
            except OSError:
                break
        head = _response(conn)
        assert head.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 5
        conn.close()


# ── key lookups off the loop ────────────────────────────────────────────────

def test_the_key_table_is_read_on_the_ledger_threads_never_the_loop(tmp_path):
    with FakeProvider() as fake, contextmanager(make_served)(fake, tmp_path) as s:
        key = s.key(user="ann")
        threads: list[tuple[str, str]] = []
        s.client.ledger.store._conn.set_trace_callback(
            lambda sql: threads.append((threading.current_thread().name, sql)))
        s.gateway.keys._cache.clear()  # a cold process: the key must be read from the table
        import httpx
        for _ in range(2):
            assert httpx.get(s.url + "/v1/models", headers={"authorization": f"Bearer {key}"}).status_code == 200
        bad = httpx.get(s.url + "/v1/models", headers={"authorization": "Bearer ulk_nope"})
        s.client.ledger.store._conn.set_trace_callback(None)
    assert bad.status_code == 401
    lookups = [name for name, sql in threads if "unillm_keys" in sql]
    assert len(lookups) == 2  # the key once (then cached), the bad key once
    assert all(name.startswith("unillm-ledger") for name in lookups), lookups


# ── the ledger row: inline while the gateway is idle, on the store's threads otherwise ──

def _insert_threads(s: Any, key: str, concurrent: int) -> list[str]:
    """The thread each ledger INSERT ran on, for ``concurrent`` calls sent at once."""
    threads: list[str] = []
    s.client.ledger.store._conn.set_trace_callback(
        lambda sql: threads.append(threading.current_thread().name) if sql.startswith("INSERT") else None)

    async def calls() -> None:
        sdk = openai.AsyncOpenAI(base_url=s.url + "/v1", api_key=key, max_retries=0)
        await asyncio.gather(*(sdk.chat.completions.create(model="gpt-4o-mini", messages=MSG)
                               for _ in range(concurrent)))
        await sdk.close()
    asyncio.run(calls())
    s.client.ledger.store._conn.set_trace_callback(None)
    return threads


def test_an_idle_gateway_writes_the_row_inline_a_busy_one_on_the_ledger_threads(tmp_path):
    with FakeProvider(Reply(text="4", delay=0.3)) as fake, contextmanager(make_served)(fake, tmp_path) as s:
        key = s.key(user="ann")
        _insert_threads(s, key, 1)  # warm: the SDK loaded, the key cached
        alone = _insert_threads(s, key, 1)
        together = _insert_threads(s, key, 4)
    assert alone and not any(name.startswith("unillm-ledger") for name in alone), alone
    offloaded = [name for name in together if name.startswith("unillm-ledger")]
    assert len(together) == 4 and len(offloaded) >= 3, together  # the last may find itself alone


def test_a_gateway_busy_a_moment_ago_writes_a_lone_request_s_row_on_the_ledger_threads(tmp_path, monkeypatch):
    """Under a load of concurrent clients the gateway often finds one request in the app (the
    others in the clients or on the wire): that row must not be written on the loop either."""
    from unillm.server import capacity
    monkeypatch.setattr(capacity, "BUSY_HOLD", 600.0, raising=False)  # "a moment ago", whatever this host's speed
    with FakeProvider(Reply(text="4", delay=0.3)) as fake, contextmanager(make_served)(fake, tmp_path) as s:
        key = s.key(user="ann")
        _insert_threads(s, key, 1)  # warm: the SDK loaded, the key cached
        together = _insert_threads(s, key, 4)
        after = _insert_threads(s, key, 1)
    assert len(together) == 4 and all(name.startswith("unillm-ledger") for name in together), together
    assert after and all(name.startswith("unillm-ledger") for name in after), after


# ── the queue: FIFO, one place handed to one waiter ─────────────────────────

def test_the_queue_admits_waiters_in_arrival_order_skipping_those_that_gave_up():
    from unillm.server.capacity import Capacity
    from unillm.server.limits import Limits
    admitted: list[int] = []
    gates: dict[int, asyncio.Event] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        n = scope["n"]
        admitted.append(n)
        await gates[n].wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def main() -> list[int]:
        cap = Capacity(max_concurrent=2, max_queued=100, queue_timeout=600.0)
        served = Limits(app, max_body_bytes=1024, body_timeout=60.0, capacity=cap)

        async def request(n: int) -> None:
            gates[n] = asyncio.Event()

            async def send(_message: Any) -> None:
                return None
            await served({"type": "http", "path": "/v1/chat/completions", "headers": [], "n": n},
                         None, send)
        tasks = {}
        for n in range(12):
            tasks[n] = asyncio.create_task(request(n))
            await asyncio.sleep(0)  # arrivals in this order
        while len(admitted) < 2:
            await asyncio.sleep(0)
        assert cap.queued == 10
        tasks[5].cancel()  # a waiter that gave up keeps no place
        for n in range(12):
            if n != 5:
                while n not in admitted:
                    await asyncio.sleep(0)
                gates[n].set()
        await asyncio.gather(*(t for n, t in tasks.items() if n != 5))
        assert cap.active == 0 and cap.queued == 0
        return admitted

    assert asyncio.run(asyncio.wait_for(main(), 60)) == [n for n in range(12) if n != 5]
