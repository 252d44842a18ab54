"""The example protocol through httpx (its "SDK"): one attempt per call, errors translated.

What an adapter provides is `unillm.adapters.base.Adapter`'s abstract methods; retries,
pricing, budgets, the cache and the ledger are the Client's.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from unillm import errors
from unillm.adapters.base import (
    Adapter,
    check_complete,
    error_for_status,
    error_message,
    require,
)
from unillm.types import ChatRequest, ChatResponse, StreamChunk

from . import convert

_PATH = "/example/generate"


class ExampleAdapter(Adapter):
    protocol = "example"

    def _make_client(self, async_: bool) -> Any:
        httpx = require("httpx")
        key = self.settings.resolved_api_key()
        headers = {**self.settings.headers, **({"authorization": f"Bearer {key}"} if key else {})}
        cls = httpx.AsyncClient if async_ else httpx.Client
        return cls(base_url=self.settings.base_url or "", headers=headers, timeout=self.settings.timeout)

    def complete(self, request: ChatRequest, model: str, timeout: float | None = None) -> ChatResponse:
        resp = self.sync_client().post(_PATH, json=convert.to_request(request, model, self.settings),
                                       timeout=_timeout(timeout))
        resp.raise_for_status()
        return convert.from_response(resp.json(), self.provider)

    async def acomplete(self, request: ChatRequest, model: str, timeout: float | None = None) -> ChatResponse:
        resp = await self.async_client().post(_PATH, json=convert.to_request(request, model, self.settings),
                                              timeout=_timeout(timeout))
        resp.raise_for_status()
        return convert.from_response(resp.json(), self.provider)

    def stream_state(self, model: str) -> convert.StreamState:
        return convert.StreamState(self.provider, model)

    def _stream(self, request: ChatRequest, model: str, state: convert.StreamState,
                timeout: float | None = None) -> Iterator[StreamChunk]:
        body = convert.to_request(request, model, self.settings, stream=True)
        with self.sync_client().stream("POST", _PATH, json=body, timeout=_timeout(timeout)) as resp:
            resp.raise_for_status()
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    yield from state.feed(json.loads(line[6:]))
        check_complete(state, self.provider, model, "its done event")

    async def _astream(self, request: ChatRequest, model: str,
                       state: convert.StreamState, timeout: float | None = None) -> AsyncIterator[StreamChunk]:
        body = convert.to_request(request, model, self.settings, stream=True)
        async with self.async_client().stream("POST", _PATH, json=body, timeout=_timeout(timeout)) as resp:
            resp.raise_for_status()
            async for line in resp.aiter_lines():
                if line.startswith("data: "):
                    for chunk in state.feed(json.loads(line[6:])):
                        yield chunk
        check_complete(state, self.provider, model, "its done event")

    def translate_error(self, exc: BaseException, model: str) -> errors.ProviderError | None:
        httpx = require("httpx")
        where: dict[str, Any] = {"provider": self.provider, "model": model}
        if isinstance(exc, httpx.HTTPStatusError):
            try:
                body: Any = exc.response.json()
            except (ValueError, httpx.ResponseNotRead):
                body = None
            return error_for_status(exc.response.status_code, error_message(body, str(exc)), body=body, **where)
        if isinstance(exc, httpx.TimeoutException):
            return errors.TimeoutError(f"no answer within {self.settings.timeout:g}s", **where)
        if isinstance(exc, httpx.TransportError):
            return errors.ConnectionError(f"the connection failed ({type(exc).__name__})", **where)
        if isinstance(exc, json.JSONDecodeError):
            return errors.ResponseError(f"the vendor answered malformed JSON ({exc.msg})", **where)
        return None


def _timeout(seconds: float | None) -> Any:
    """The attempt's timeout (time left to the call's deadline), else the client's own."""
    return require("httpx").USE_CLIENT_DEFAULT if seconds is None else seconds
