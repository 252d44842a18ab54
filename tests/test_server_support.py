"""Shared pieces of the gateway tests: a served gateway (uvicorn in a thread, upstream FakeProvider)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")

from unillm import Client
from unillm.server.app import create_app
from unillm.testing import FakeProvider

PROVIDER_SECRET = "sk-upstream-SECRET-do-not-leak-42"


@dataclass
class Served:
    url: str
    app: Any
    client: Client
    admin: str

    @property
    def gateway(self) -> Any:
        return self.app.state.gateway

    def key(self, **fields: Any) -> str:
        secret, _ = self.gateway.keys.create(**fields)
        return secret

    def openai(self, key: str | None = None, **kw: Any) -> Any:
        import openai
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key or self.admin, max_retries=0, **kw)

    def aopenai(self, key: str | None = None) -> Any:
        import openai
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=key or self.admin, max_retries=0)


def upstream_providers(fake: FakeProvider, **settings: Any) -> dict[str, dict[str, Any]]:
    """Every provider pointed at ``fake``, no retries (tests script each answer)."""
    return {name: {**table, "max_retries": 0, **settings} for name, table in fake.providers().items()}


def run_in_thread(config: Any, sock: socket.socket) -> Iterator[str]:
    """uvicorn on ``sock`` in a daemon thread; yields its URL once started, stops it after."""
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def serve_app(app: Any) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # proto set: asyncio then disables Nagle
    sock.bind(("127.0.0.1", 0))
    yield from run_in_thread(uvicorn.Config(app, log_level="warning", lifespan="off"), sock)


def make_served(fake: FakeProvider, tmp_path: Path, *, limiter: Any = None,
                **client_settings: Any) -> Iterator[Served]:
    providers = upstream_providers(fake, **client_settings.pop("provider_settings", {}))
    client = Client(providers=providers, ledger=f"sqlite:///{tmp_path}/l.db", **client_settings)
    app = create_app(client, limiter=limiter)
    admin, _ = app.state.gateway.keys.create(user="root", project="ops", admin=True)
    try:
        for url in serve_app(app):
            yield Served(url, app, client, admin)
    finally:
        client.close()


@pytest.fixture
def upstream() -> Iterator[FakeProvider]:
    with FakeProvider(api_key=PROVIDER_SECRET) as fake:
        yield fake


@pytest.fixture
def served(upstream: FakeProvider, tmp_path: Path) -> Iterator[Served]:
    yield from make_served(upstream, tmp_path)
