"""`unillm serve` freezes its start-up heap (`unillm.server.heap`), so a full garbage collection
does not walk the SDKs' and the app's objects while requests wait; apps served in-process
(tests, embedding programs) keep their collector as it is."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("uvicorn")

from unillm.server.heap import FreezeHeap
from unillm.server.run import AppFactory, uvicorn_config


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # this test process's objects back in the collector's reach


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_the_heap_is_frozen_at_startup_and_after_the_first_requests(unfrozen):
    app = FreezeHeap(_app, warm_requests=3)
    sent: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def main() -> list[int]:
        counts = []
        await app({"type": "lifespan"}, receive, send)
        counts.append(gc.get_freeze_count())
        gc.unfreeze()
        for _ in range(2):
            await app({"type": "http", "path": "/"}, receive, send)
        counts.append(gc.get_freeze_count())
        for _ in range(3):
            await app({"type": "http", "path": "/"}, receive, send)
        counts.append(gc.get_freeze_count())
        return counts

    at_start, before_warm, warm = asyncio.run(main())
    assert sent[0] == "lifespan.startup.complete"
    assert at_start > 0 and before_warm == 0 and warm > 0
    assert app.frozen == 2


def test_serve_asks_for_a_frozen_heap_and_an_in_process_config_does_not(tmp_path):
    factory = AppFactory(None, {"ledger": f"sqlite:///{tmp_path}/l.db", "cache": "off"})
    assert uvicorn_config(factory, freeze_heap=True).app.freeze_heap is True
    assert uvicorn_config(factory).app.freeze_heap is False
    app = factory()
    assert isinstance(uvicorn_config(app, freeze_heap=True).app, FreezeHeap)
    assert uvicorn_config(app).app is app


def test_unillm_serve_serves_a_frozen_heap(tmp_path, monkeypatch):
    import uvicorn

    from unillm.server.run import listen, serve
    configs: list[Any] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: configs.append(self.config))
    app = AppFactory(None, {"ledger": f"sqlite:///{tmp_path}/l.db", "cache": "off"})()
    sock = listen("127.0.0.1", 0)
    try:
        serve(app, sock=sock, log_level="warning")
    finally:
        sock.close()
    assert isinstance(configs[0].app, FreezeHeap) and configs[0].app.app is app
