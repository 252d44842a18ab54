"""What every chat-shaped route shares (``/v1/messages``, ``/v1/responses``): a call through
`Client.achat` with the gateway's keys, tenancy, limits, budgets, metrics and cost headers,
exactly as `chat.completions` makes it, and a stream framed by a route's own `Frames`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .. import errors
from .wire import HTTPError, header_value, unillm_headers


def summary(resp: Any) -> dict[str, Any]:
    """The ``unillm`` object a stream's final event carries: exact cost and the ledger row."""
    h = unillm_headers(resp)
    return {"cost_usd": h["x-unillm-cost"], "cached": resp.cached, "provider": resp.provider,
            "rule": resp.rule, "ledger_id": resp.ledger_id}


class Frames(Protocol):
    """How a route writes a stream: its events for each chunk, for the end, for an error."""

    def chunk(self, chunk: Any) -> list[bytes]: ...

    def end(self, resp: Any) -> list[bytes]: ...

    def error(self, err: HTTPError) -> list[bytes]: ...


class Call:
    """One authenticated, admitted call of ``key`` to ``model`` with the key's tenancy."""

    def __init__(self, gw: Any, key: Any, model: str, tags: dict[str, str]) -> None:
        self.gw, self.key, self.model = gw, key, model
        self.tags = gw.tag_policy.merge(tags, key)  # the key's tenancy is authoritative
        self.t0 = time.perf_counter() if gw.metrics is not None else 0.0

    async def admit(self) -> None:
        self.gw.check_model(self.model, self.key)  # the key's allowed models, too
        await self.gw.admit(self.key)

    def _failed(self, exc: BaseException) -> None:
        if self.gw.metrics is not None and isinstance(exc, Exception):
            self.gw.metrics.failed(self.key, self.model, exc)

    def _finished(self, resp: Any) -> None:
        self.gw.finished(self.key, resp)
        if self.gw.metrics is not None:
            self.gw.metrics.finished(self.key, resp, time.perf_counter() - self.t0)

    async def complete(self, messages: list[Any], params: dict[str, Any]) -> Any:
        try:
            resp = await self.gw.client.achat(self.model, messages, tags=self.tags, **params)
        except Exception as exc:
            self._failed(exc)
            raise
        self._finished(resp)
        return resp

    async def stream(self, messages: list[Any], params: dict[str, Any], frames: Frames) -> Response:
        try:
            chat_stream = await self.gw.client.achat(self.model, messages, stream=True,
                                                     tags=self.tags, **params)
        except Exception as exc:
            self._failed(exc)
            raise
        try:
            first = await chat_stream.__anext__()
        except StopAsyncIteration:
            first = None
        except BaseException:
            await chat_stream.aclose()
            raise
        if self.gw.metrics is not None and first is not None:
            self.gw.metrics.first_token(first.model, first.provider or "", time.perf_counter() - self.t0)
        headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        if first is not None and first.model:
            headers["x-unillm-model"] = header_value(
                f"{first.provider}/{first.model}" if first.provider else first.model)
        return StreamingResponse(self._events(chat_stream, first, frames),
                                 media_type="text/event-stream", headers=headers)

    async def _events(self, chat_stream: Any, first: Any, frames: Frames) -> AsyncIterator[bytes]:
        try:
            if first is not None:
                for frame in frames.chunk(first):
                    yield frame
            async for chunk in chat_stream:
                for frame in frames.chunk(chunk):
                    yield frame
        except errors.UnillmError as exc:
            for frame in frames.error(self.gw.http_error(exc)):
                yield frame
            return
        finally:
            await chat_stream.aclose()  # a client that hung up still gets its partial call recorded
            if chat_stream.response is not None:
                self._finished(chat_stream.response)
        if chat_stream.response is not None:
            for frame in frames.end(chat_stream.response):
                yield frame


def api_key(request: Request) -> str | None:
    """The caller's key: ``x-api-key`` (the Anthropic SDK's header) or a bearer token."""
    key = request.headers.get("x-api-key", "").strip()
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


__all__ = ["Call", "Frames", "api_key", "model", "summary"]


async def model(request: Request) -> Response:
    """``GET /v1/models/{id}``: one entry of ``GET /v1/models`` (ids may hold ``/``), or a 404."""
    from .wire import json_response
    gw = request.app.state.gateway
    gw.authenticate(request)
    wanted = request.path_params["model_id"]
    for entry in gw.model_list():
        if entry["id"] == wanted:
            return json_response(entry)
    raise HTTPError(404, f"the model {wanted!r} is not served by this gateway "
                    "(GET /v1/models lists the models it serves)", code="model_not_found", param="model")
