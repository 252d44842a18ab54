"""How the gateway is served (`unillm.server.run`): TCP_NODELAY, access log, worker processes."""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

from tests.servers import free_port, open_files, wait_ready
from tests.test_server_support import run_in_thread
from unillm import Client
from unillm.server.app import create_app
from unillm.server.keys import KeyStore
from unillm.server.run import AppFactory, listen, serve, uvicorn_config
from unillm.testing import FakeProvider, Reply

MSG = [{"role": "user", "content": "2+2?"}]


def write_config(fake: FakeProvider, tmp_path: Path) -> Path:
    """unillm.toml: the openai provider pointed at ``fake``, a SQLite ledger, no cache."""
    table = fake.providers("openai")["openai"]
    lines = [f"ledger = {json.dumps(f'sqlite:///{tmp_path}/l.db')}", 'cache = "off"', "",
             "[providers.openai]", *(f"{k} = {json.dumps(v)}" for k, v in table.items()), "max_retries = 0"]
    path = tmp_path / "unillm.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_connections_accepted_on_listen_socket_have_nagle_off_under_asyncio():
    """uvicorn answers in two writes; with Nagle on the second waits ~40 ms for an ACK."""
    async def accepted_nodelay() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                sock = transport.get_extra_info("socket")
                seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        listener = listen("127.0.0.1", 0)
        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        _, writer = await asyncio.open_connection("127.0.0.1", listener.getsockname()[1])
        try:
            return await asyncio.wait_for(seen, 5)
        finally:
            writer.close()
            server.close()
            await server.wait_closed()

    assert asyncio.run(accepted_nodelay()) != 0


def test_listen_refuses_a_taken_port_and_resolves_names():
    taken = listen("127.0.0.1", 0)
    taken.listen()
    try:
        with pytest.raises(OSError):
            listen("127.0.0.1", taken.getsockname()[1]).close()
    finally:
        taken.close()
    sock = listen("localhost", 0)
    assert sock.proto == socket.IPPROTO_TCP and sock.getsockname()[1] > 0
    sock.close()


def test_factory_built_gateway_serves_the_openai_sdk_and_records_the_call(tmp_path):
    with FakeProvider() as fake:
        fake.queue(Reply(text="Four.", usage={"input_tokens": 10, "output_tokens": 2}))
        factory = AppFactory(str(write_config(fake, tmp_path)))
        secret, _ = KeyStore(factory.client().ledger.store).create(user="ann")
        config = uvicorn_config(factory, log_level="warning", loop="asyncio")
        assert config.factory is True
        for url in run_in_thread(config, listen("127.0.0.1", 0)):
            sdk = openai.OpenAI(base_url=url + "/v1", api_key=secret, max_retries=0)
            raw = sdk.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)
            assert raw.parse().choices[0].message.content == "Four."
            ledger_id = raw.headers["x-unillm-ledger-id"]
    rows = list(factory.client().ledger.records())
    assert [r.id for r in rows] == [ledger_id] and rows[0].tags["user"] == "ann"


def test_served_app_opens_its_client_at_startup_and_closes_it_at_shutdown(tmp_path):
    """uvicorn runs the app's lifespan: the ledger is usable while serving, closed after."""
    with FakeProvider() as fake:
        fake.queue(Reply(text="Four.", usage={"input_tokens": 10, "output_tokens": 2}))
        client = Client(config=str(write_config(fake, tmp_path)))
        app = create_app(client)
        secret, _ = app.state.gateway.keys.create(user="ann")
        config = uvicorn_config(app, log_level="warning", loop="asyncio")
        assert config.lifespan == "on"
        for url in run_in_thread(config, listen("127.0.0.1", 0)):
            sdk = openai.OpenAI(base_url=url + "/v1", api_key=secret, max_retries=0)
            assert sdk.chat.completions.create(model="gpt-4o-mini", messages=MSG).choices
            assert client.ledger.store.last_cursor() is not None  # open while serving
            assert any(f.endswith(".db") for f in open_files(tmp_path))
    assert open_files(tmp_path) == []  # shut down: the ledger's files were closed


PROTOCOLS = pytest.mark.parametrize("protocol", ["GuardedHttpToolsProtocol", "GuardedH11Protocol"])


def _first_write(app: Any, request: bytes, protocol: str) -> tuple[bytes, bytes]:
    """(first write of the gateway's protocol to its transport, what the client read by then),
    serving ``request`` over a socket pair."""
    from uvicorn.server import ServerState

    from unillm.server import protocol as protocols

    writes: list[bytes] = []

    class Recorded:  # asyncio's transport, each write noted
        def __init__(self, transport: Any) -> None:
            self._transport = transport

        def write(self, data: bytes) -> None:
            writes.append(bytes(data))
            self._transport.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._transport, name)

    class Recording(getattr(protocols, protocol)):  # type: ignore[misc]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(Recorded(transport))

    async def run() -> tuple[bytes, bytes]:
        loop = asyncio.get_running_loop()
        server_end, client_end = socket.socketpair()
        config = uvicorn_config(app, log_level="warning", lifespan="off")
        transport, _ = await loop.connect_accepted_socket(
            lambda: Recording(config, ServerState(), {}), sock=server_end)
        client_end.setblocking(False)
        try:
            await loop.sock_sendall(client_end, request)
            read = await asyncio.wait_for(loop.sock_recv(client_end, 65536), 10)
            while b"\r\n\r\n" not in read:
                read += await asyncio.wait_for(loop.sock_recv(client_end, 65536), 10)
            return writes[0], read
        finally:
            transport.close()
            client_end.close()

    return asyncio.run(run())


@PROTOCOLS
def test_a_response_head_and_body_leave_in_one_write(tmp_path, protocol):
    """uvicorn writes the head, then the body: two segments, two wake-ups of the client."""
    client = Client(ledger=f"sqlite:///{tmp_path}/l.db", cache="off")
    try:
        first, _ = _first_write(create_app(client), b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n", protocol)
    finally:
        client.close()
    assert first.startswith(b"HTTP/1.1 200 ") and b'"status":"ok"' in first


@PROTOCOLS
def test_a_response_head_whose_body_is_late_is_not_held(tmp_path, protocol):
    """A streamed response whose first chunk has not come yet still sends its head at once."""
    from starlette.responses import StreamingResponse

    never = asyncio.Event()

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        async def body() -> Any:
            await never.wait()
            yield b"late"
        await StreamingResponse(body(), media_type="text/plain")(scope, receive, send)

    first, read = _first_write(slow, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", protocol)
    assert first.startswith(b"HTTP/1.1 200 ") and read.startswith(b"HTTP/1.1 200 ")


def test_app_factory_survives_pickling_for_worker_processes(tmp_path):
    factory = AppFactory("unillm.toml", {"ledger": f"sqlite:///{tmp_path}/l.db"})
    assert pickle.loads(pickle.dumps(factory)) == factory


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("access_log", [False, True])
def test_access_log_is_off_unless_asked_for(tmp_path, access_log):
    client = Client(ledger=f"sqlite:///{tmp_path}/l.db", cache="off")
    app = create_app(client)
    logger = logging.getLogger("uvicorn.access")
    saved = logger.handlers[:], logger.propagate, logger.level
    handler = _Records()
    logger.addHandler(handler)  # uvicorn's Config strips the logger's handlers when access_log is off
    options = {"access_log": True} if access_log else {}
    config = uvicorn_config(app, log_level="info", log_config=None, **options)
    try:
        for url in run_in_thread(config, listen("127.0.0.1", 0)):
            import httpx
            assert httpx.get(url + "/health").status_code == 200
    finally:
        logger.handlers[:], logger.propagate, logger.level = saved
        client.close()
    assert len(handler.records) == (1 if access_log else 0)


def test_workers_need_an_app_factory(tmp_path):
    app = create_app(Client(ledger=f"sqlite:///{tmp_path}/l.db", cache="off"))
    with pytest.raises(ValueError, match="AppFactory"):
        serve(app, workers=2)


def test_two_worker_processes_share_the_port_and_the_ledger(tmp_path):
    with FakeProvider() as fake:
        for _ in range(4):
            fake.queue(Reply(text="ok", usage={"input_tokens": 3, "output_tokens": 1}))
        config = write_config(fake, tmp_path)
        secret, _ = KeyStore(AppFactory(str(config)).client().ledger.store).create(user="bob")
        port = free_port()
        code = ("from unillm.server.run import AppFactory, serve; "
                f"serve(AppFactory({str(config)!r}), port={port}, workers=2, loop='asyncio', "
                "log_level='warning')")
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parents[1])
        try:
            sdk = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=secret, max_retries=0)
            wait_ready(f"http://127.0.0.1:{port}/health", proc)
            answers = [sdk.chat.completions.create(model="gpt-4o-mini", messages=MSG) for _ in range(4)]
        finally:
            proc.terminate()
            proc.wait(20)
    assert [a.choices[0].message.content for a in answers] == ["ok"] * 4
    rows = list(AppFactory(str(config)).client().ledger.records())
    assert len(rows) == 4 and {r.tags["user"] for r in rows} == {"bob"}


def test_dashboard_keys_are_redacted_from_uvicorn_logs() -> None:
    import logging

    from unillm.server.run import RedactKeys
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/dashboard?since=7d&key=ulk_secret123", "1.1", 200), None)
    assert RedactKeys().filter(record)
    assert "ulk_secret123" not in record.getMessage() and "key=***" in record.getMessage()


def test_without_httptools_the_gateway_serves_with_h11(tmp_path):
    """httptools is the default protocol when installed (``unillm[server]`` pulls it); an install
    without it still serves, with `GuardedH11Protocol` (whose guards `tests/test_server_limits.py`
    runs), and asking for httptools is one ConfigError."""
    script = """
import sys
sys.modules["httptools"] = None  # as if not installed
import httpx
from unillm import Client, errors
from unillm.server import protocol
from unillm.server.app import create_app
from unillm.server.run import listen, uvicorn_config
from tests.test_server_support import run_in_thread
assert protocol.default_protocol() is protocol.GuardedH11Protocol
client = Client(ledger="sqlite:///" + sys.argv[1], cache="off")
try:
    uvicorn_config(create_app(client), http="httptools")
except errors.ConfigError as exc:
    print("refused:", exc)
config = uvicorn_config(create_app(client), log_level="warning")
assert config.http is protocol.GuardedH11Protocol
for url in run_in_thread(config, listen("127.0.0.1", 0)):
    print(httpx.get(url + "/health").status_code)
"""
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "l.db")], capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).parent.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "refused: http = 'httptools' needs the httptools package" in out.stdout
    assert out.stdout.strip().endswith("200")
