"""Reading an adapter's answer the way the Client does, in each mode."""

from __future__ import annotations

import asyncio
from typing import Any

from unillm.types import ChatRequest


def read_stream(adapter: Any, req: ChatRequest, model: str, mode: str) -> list[Any]:
    """Every chunk of one ``stream`` (``mode`` "sync") or ``astream`` ("async") of ``req``;
    the async side runs on a loop of its own and closes the adapter's clients on it."""
    if mode == "sync":
        return list(adapter.stream(req, model))

    async def read() -> list[Any]:
        try:
            return [c async for c in adapter.astream(req, model)]
        finally:
            await adapter.aclose()
    return asyncio.run(read())
